//! RFC 5322 / MIME messages as RFC 8621 §4.1 sees them, without I/O.
//!
//! [`Email::parse`] turns a message's bytes (mail-parser 0.11 does the MIME work, including
//! charsets and RFC 2047/2231) into an owned model: the top-level header fields in order, the
//! body-part tree, the `textBody`/`htmlBody`/`attachments` decomposition of RFC 8621 §4.1.4, and
//! each leaf part's bytes after transfer decoding. [`render`] turns that model into Email properties
//! for Email/get and Email/parse; [`Email::thread_ids`], [`Email::base_subject`] and
//! [`Email::search_text`] serve threading and search.
//!
//! Parsing never panics: garbage, truncated input and broken headers give whatever could be
//! recovered, and only an empty input is unparsable.

pub mod auto_reply;
pub mod blob_id;
pub mod body;
pub mod dsn;
pub mod header;
pub mod html;
pub mod params;
pub mod render;
pub mod search;
pub mod summary;
pub mod text;
pub mod transfer;

use mail_parser::{Encoding, HeaderValue, Message, MessageParser, PartType};

pub use body::{BodyPart, BodyValue};
pub use header::{EmailAddress, Header, HeaderForm, HeaderProperty, PropertyError};
pub use render::{
    BodyProperty, DEFAULT_BODY_PROPERTIES, DEFAULT_GET_PROPERTIES, DEFAULT_PARSE_PROPERTIES,
    EmailProperty, FetchOptions, PropertySelection, render_email,
};
pub use summary::{StoredSummary, Summary};

/// A boundary that cannot occur in a part body: it makes mail-parser's MIME decoders read to the
/// end of the slice they are given.
const NO_BOUNDARY: &[u8] = b"\0herald\0no\0boundary\0";

/// The deepest multipart nesting followed; deeper parts are left out of the structure.
const MAX_DEPTH: usize = 64;

/// A parsed message.
#[derive(Clone, Debug)]
pub struct Email {
    /// The message's size in octets.
    pub size: u64,
    /// The top-level header fields, in order, names in their original case (EML-05).
    pub headers: Vec<Header>,
    /// The body structure (`bodyStructure`; does not recurse into `message/rfc822`).
    pub structure: BodyPart,
    /// `partId`s of `textBody`, `htmlBody` and `attachments` (RFC 8621 §4.1.4).
    pub text_body: Vec<String>,
    pub html_body: Vec<String>,
    pub attachments: Vec<String>,
}

/// What the store keeps about a message for threading (RFC 8621 §3; RFC 5256 §2.1 style).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadIds {
    /// The ids of `Message-ID` (usually one).
    pub message_id: Vec<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
}

/// Text of a message for search (RFC 8621 §4.4.1 filter conditions).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchText {
    /// `name <email>` entries of each field, joined by `, `.
    pub from: String,
    pub to: String,
    pub cc: String,
    pub bcc: String,
    pub subject: String,
    /// The text of every `text/*` part of `textBody` (HTML converted to text), then of the
    /// `text/*` attachments and attached messages ([`Email::attached_text`]), joined by blank
    /// lines.
    pub body: String,
}

/// How much of one attachment's text is searched: enough for a document's words, not a
/// 50 MB log file in the index.
const ATTACHMENT_TEXT_MAX: usize = 64 * 1024;

/// How deep attached messages inside attached messages are searched.
const ATTACHED_MESSAGE_DEPTH: usize = 3;

impl Email {
    /// Parses a message. `None` only for input with nothing to parse (empty), or, as a last line
    /// of defence, input that made the MIME parser fail unexpectedly.
    pub fn parse(raw: &[u8]) -> Option<Email> {
        // A panic inside the parser must not take a dispatcher thread down with it.
        std::panic::catch_unwind(|| Self::parse_unguarded(raw))
            .ok()
            .flatten()
    }

    fn parse_unguarded(raw: &[u8]) -> Option<Email> {
        if raw.is_empty() {
            return None;
        }
        let message = MessageParser::default().parse(raw)?;
        if message.parts.is_empty() {
            return None;
        }
        let source = message.raw_message.as_ref();
        let headers = headers_of(source, &message.parts[0].headers);
        let structure = build_part(&message, 0, false, 0);
        let (text_body, html_body, attachments) = body::decompose(&structure);
        Some(Email {
            size: raw.len() as u64,
            headers,
            structure,
            text_body,
            html_body,
            attachments,
        })
    }

    /// The leaf part with this `partId`.
    pub fn part(&self, part_id: &str) -> Option<&BodyPart> {
        self.structure.find(part_id)
    }

    /// The last instance of a top-level header field, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&Header> {
        self.headers.iter().rev().find(|h| h.is(name))
    }

    /// `subject` (Text form), if there is a Subject field.
    pub fn subject(&self) -> Option<String> {
        self.header("Subject").map(|h| header::text(&h.raw))
    }

    /// The Addresses form of the last `name` field; `None` when absent.
    pub fn addresses(&self, name: &str) -> Option<Vec<EmailAddress>> {
        self.header(name).map(|h| header::addresses(&h.raw))
    }

    /// The MessageIds form of the last `name` field.
    pub fn message_ids(&self, name: &str) -> Option<Vec<String>> {
        self.header(name).and_then(|h| header::message_ids(&h.raw))
    }

    /// `sentAt` as seconds since the epoch (the Date field), if it parses.
    pub fn sent_at(&self) -> Option<i64> {
        self.header("Date").and_then(|h| header::date(&h.raw))
    }

    /// The time of the most recent `Received:` field (the topmost one), in seconds since the
    /// epoch: Email/import's default `receivedAt` (RFC 8621 §4.8).
    pub fn received_at(&self) -> Option<i64> {
        let received = self.headers.iter().find(|h| h.is("Received"))?;
        let date = received.raw.rsplit(|b| *b == b';').next()?;
        header::date(date)
    }

    /// Message-ID, In-Reply-To and References ids, for threading.
    pub fn thread_ids(&self) -> ThreadIds {
        ThreadIds {
            message_id: self.message_ids("Message-ID").unwrap_or_default(),
            in_reply_to: self.message_ids("In-Reply-To").unwrap_or_default(),
            references: self.message_ids("References").unwrap_or_default(),
        }
    }

    /// The base subject (RFC 5256 §2.1, simplified): `Re:`, `Fwd:`, `Fw:`, `[list]` prefixes and
    /// `(fwd)` trailers removed, white space collapsed, lowercased. For threading by subject.
    pub fn base_subject(&self) -> String {
        text::base_subject(&self.subject().unwrap_or_default())
    }

    /// `hasAttachment` (RFC 8621 §4.1.4): some attachment is not just an inline image referenced
    /// by the HTML body.
    pub fn has_attachment(&self) -> bool {
        self.attachments.iter().any(|id| {
            self.part(id).is_some_and(|p| {
                p.disposition.as_deref() == Some("attachment")
                    || p.cid.is_none()
                    || !text::is_inline_media_type(&p.media_type)
            })
        })
    }

    /// The `text/*` parts among `ids`. RFC 8621 §4.1.4 puts inline images, audio and video in
    /// `textBody` and `htmlBody` too (an iPhone's photo between two text parts); their octets are
    /// not text, and must not reach a preview, the search index or a snippet.
    fn text_parts<'a>(&'a self, ids: &'a [String]) -> impl Iterator<Item = &'a BodyPart> + 'a {
        ids.iter()
            .filter_map(|id| self.part(id))
            .filter(|p| p.media_type.starts_with("text/"))
    }

    /// `preview` (EML-11): at most 256 characters of the first text body part with content,
    /// HTML converted to text, white space collapsed.
    pub fn preview(&self) -> String {
        self.text_parts(&self.text_body)
            .chain(self.text_parts(&self.html_body))
            .map(|part| text::preview(&part.plain_text(), 256))
            .find(|p| !p.is_empty())
            .unwrap_or_default()
    }

    /// From/To/Cc/Bcc/Subject and body text for search.
    pub fn search_text(&self) -> SearchText {
        let list = |name: &str| {
            self.addresses(name)
                .unwrap_or_default()
                .iter()
                .map(|a| match &a.name {
                    Some(n) => format!("{n} <{}>", a.email),
                    None => a.email.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut body = self
            .text_parts(&self.text_body)
            .map(BodyPart::plain_text)
            .collect::<Vec<_>>();
        body.extend(self.attached_text(ATTACHED_MESSAGE_DEPTH));
        let body = body.join("\n\n");
        SearchText {
            from: list("From"),
            to: list("To"),
            cc: list("Cc"),
            bcc: list("Bcc"),
            subject: self.subject().unwrap_or_default(),
            body,
        }
    }
}

impl Email {
    /// The text of the attachments that are text (RFC 8621 §4.4.1: `text` and `body` look in
    /// `text/*` parts and what converts to text): `text/*` attachments, and attached messages
    /// (`message/rfc822`, `message/global`) with their subject and own text, `depth` levels
    /// down; at most [`ATTACHMENT_TEXT_MAX`] octets of each. The HTML alternative of a text
    /// body is not added: it says what the text part says.
    fn attached_text(&self, depth: usize) -> Vec<String> {
        let mut out = Vec::new();
        for part in self.attachments.iter().filter_map(|id| self.part(id)) {
            let mut text = if part.media_type.starts_with("text/") {
                part.plain_text()
            } else if depth > 0
                && matches!(
                    part.media_type.as_str(),
                    "message/rfc822" | "message/global"
                )
                && let Some(inner) = Email::parse(&part.content)
            {
                let mut inner_text = inner.subject().unwrap_or_default();
                for t in inner.text_parts(&inner.text_body) {
                    inner_text.push_str("\n\n");
                    inner_text.push_str(&t.plain_text());
                }
                for t in inner.attached_text(depth - 1) {
                    inner_text.push_str("\n\n");
                    inner_text.push_str(&t);
                }
                inner_text
            } else {
                continue;
            };
            text.truncate(text::char_boundary(&text, ATTACHMENT_TEXT_MAX));
            if !text.trim().is_empty() {
                out.push(text);
            }
        }
        out
    }
}

/// Header fields of a part, from the source bytes the offsets point into.
fn headers_of(source: &[u8], headers: &[mail_parser::Header<'_>]) -> Vec<Header> {
    headers
        .iter()
        .map(|h| {
            let field = source
                .get(h.offset_field as usize..h.offset_start as usize)
                .unwrap_or_default();
            let name_bytes = field.strip_suffix(b":").unwrap_or(field);
            let name = String::from_utf8_lossy(name_bytes).trim().to_owned();
            let name = if name.is_empty() {
                h.name.as_str().to_owned()
            } else {
                name
            };
            let mut raw = source
                .get(h.offset_start as usize..h.offset_end as usize)
                .unwrap_or_default();
            if let Some(r) = raw.strip_suffix(b"\n") {
                raw = r.strip_suffix(b"\r").unwrap_or(r);
            }
            Header {
                name,
                raw: raw.to_vec(),
            }
        })
        .collect()
}

/// A part's media type, lowercased: `text/plain` when absent or malformed, `message/rfc822` for
/// a part of a digest without one (RFC 2046 §5.1.5).
fn media_type_of(content_type: Option<&mail_parser::ContentType<'_>>, in_digest: bool) -> String {
    let media_type = match content_type {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None if in_digest => "message/rfc822".to_owned(),
        None => "text/plain".to_owned(),
    };
    if media_type.contains('/') {
        media_type
    } else {
        "text/plain".to_owned()
    }
}

/// A part's `cid`: its Content-ID, as given.
fn content_id(part: &mail_parser::MessagePart<'_>) -> Option<String> {
    part.headers
        .iter()
        .rev()
        .find(|h| matches!(h.name, mail_parser::HeaderName::ContentId))
        .and_then(|h| match &h.value {
            HeaderValue::Text(t) => Some(t.trim().to_owned()),
            HeaderValue::TextList(l) => l.first().map(|t| t.trim().to_owned()),
            _ => None,
        })
        .filter(|c| !c.is_empty())
}

/// A part's `language`: the tags of its Content-Language header.
fn language(headers: &[header::Header]) -> Option<Vec<String>> {
    headers
        .iter()
        .rev()
        .find(|h| h.is("Content-Language"))
        .map(|h| {
            String::from_utf8_lossy(&h.raw)
                .split(',')
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
        })
        .filter(|l| !l.is_empty())
}

/// A part's `location`: its Content-Location header.
fn location(headers: &[header::Header]) -> Option<String> {
    headers
        .iter()
        .rev()
        .find(|h| h.is("Content-Location"))
        .map(|h| header::text(&h.raw))
        .filter(|l| !l.is_empty())
}

/// A part's `name`: Content-Disposition's `filename`, else Content-Type's `name`, each in its
/// RFC 2231 form when the field has one ([`params::extended`]), else as mail-parser read it
/// (RFC 2047 encoded words included).
fn part_name(
    headers: &[header::Header],
    disposition: Option<&mail_parser::ContentType<'_>>,
    content_type: Option<&mail_parser::ContentType<'_>>,
) -> Option<String> {
    let raw_of = |field: &str| {
        let raw = headers.iter().rev().find(|h| h.is(field))?;
        Some(String::from_utf8_lossy(&raw.raw).into_owned())
    };
    let clean = |n: String| Some(n.trim().to_owned()).filter(|n| !n.is_empty());
    // The RFC 2231 form, else mail-parser's reading (which decodes RFC 2047 words), else the
    // plain value as written (mail-parser keeps only the first of two, an empty extended one).
    let from = |field: &str, parameter: &str, parsed: Option<&mail_parser::ContentType<'_>>| {
        let raw = raw_of(field);
        raw.as_deref()
            .and_then(|r| params::extended(r, parameter))
            .and_then(clean)
            .or_else(|| {
                parsed?
                    .attribute(parameter)
                    .map(str::to_owned)
                    .and_then(clean)
            })
            .or_else(|| params::plain(raw.as_deref()?, parameter).and_then(clean))
    };
    from("Content-Disposition", "filename", disposition)
        .or_else(|| from("Content-Type", "name", content_type))
}

/// Builds the part at `index` and, for a multipart, its children.
fn build_part(message: &Message<'_>, index: usize, in_digest: bool, depth: usize) -> BodyPart {
    let source = message.raw_message.as_ref();
    let Some(part) = message.parts.get(index) else {
        return BodyPart::empty(index);
    };
    let headers = headers_of(source, &part.headers);
    let content_type = part
        .headers
        .iter()
        .rev()
        .find(|h| matches!(h.name, mail_parser::HeaderName::ContentType))
        .and_then(|h| h.value.as_content_type());
    let mut media_type = media_type_of(content_type, in_digest);
    let mut sub_parts = Vec::new();
    let is_multipart = matches!(part.body, PartType::Multipart(_));
    if let PartType::Multipart(ids) = &part.body {
        let digest = media_type == "multipart/digest";
        if depth < MAX_DEPTH {
            for &id in ids {
                let id = id as usize;
                // mail-parser lists children after their parent; anything else would loop.
                if id > index {
                    sub_parts.push(build_part(message, id, digest, depth + 1));
                }
            }
        }
        if !media_type.starts_with("multipart/") {
            media_type = "multipart/mixed".to_owned();
        }
    } else if media_type.starts_with("multipart/") {
        // A multipart without a usable boundary: mail-parser read it as text.
        media_type = "text/plain".to_owned();
    }
    let (content, is_encoding_problem) = if is_multipart {
        (Vec::new(), false)
    } else {
        decoded_content(source, part)
    };
    let charset = if is_multipart {
        None
    } else {
        content_type
            .and_then(|ct| ct.attribute("charset"))
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty())
            .or_else(|| {
                media_type
                    .starts_with("text/")
                    .then(|| "us-ascii".to_owned())
            })
    };
    let disposition_header = part
        .headers
        .iter()
        .rev()
        .find(|h| matches!(h.name, mail_parser::HeaderName::ContentDisposition))
        .and_then(|h| h.value.as_content_type());
    let disposition = disposition_header.map(|d| d.ctype().to_ascii_lowercase());
    let name = part_name(&headers, disposition_header, content_type);
    let (cid, language, location) = (content_id(part), language(&headers), location(&headers));
    BodyPart {
        part_id: (!is_multipart).then(|| (index + 1).to_string()),
        headers,
        size: content.len() as u64,
        is_encoding_problem,
        media_type,
        charset,
        disposition,
        name,
        cid,
        language,
        location,
        sub_parts,
        content,
    }
}

/// Whether a part declares `Content-Transfer-Encoding: base64` (in any case). mail-parser
/// forgets the declaration of a part it could not decode, so the header is read here.
fn declares_base64(part: &mail_parser::MessagePart<'_>) -> bool {
    part.headers
        .iter()
        .rev()
        .find(|h| matches!(h.name, mail_parser::HeaderName::ContentTransferEncoding))
        .is_some_and(|h| match &h.value {
            HeaderValue::Text(t) => t.trim().eq_ignore_ascii_case("base64"),
            _ => false,
        })
}

/// A leaf part's bytes after transfer decoding (EML-10), and whether they could not be decoded
/// as declared. Base64 is decoded here from the part's raw octets, leniently
/// ([`transfer::decode_base64`], RFC 2045 §6.8); mail-parser already decoded other binary parts,
/// and text parts it also converted to UTF-8, so their octets are decoded again here.
fn decoded_content(source: &[u8], part: &mail_parser::MessagePart<'_>) -> (Vec<u8>, bool) {
    let body = source
        .get(part.offset_body as usize..part.offset_end as usize)
        .unwrap_or_default();
    if declares_base64(part) {
        return transfer::decode_base64(body);
    }
    let content = match &part.body {
        PartType::Binary(b) | PartType::InlineBinary(b) => b.to_vec(),
        PartType::Multipart(_) => Vec::new(),
        _ if matches!(part.encoding, Encoding::QuotedPrintable) => {
            mail_parser::parsers::MessageStream::new(body)
                .decode_quoted_printable_mime(NO_BOUNDARY)
                .1
                .into_owned()
        }
        _ => body.to_vec(),
    };
    // mail-parser also flags a message without a body; nothing was mis-decoded there.
    let problem = part.is_encoding_problem && !content.is_empty();
    (content, problem)
}

/// The header fields of `message`: everything before the blank line that ends them (the whole
/// message when there is none), without that blank line.
pub fn header_section(message: &[u8]) -> &[u8] {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 2)
        .or_else(|| message.windows(2).position(|w| w == b"\n\n").map(|i| i + 1))
        .unwrap_or(message.len());
    &message[..end]
}

#[cfg(test)]
mod body_tests;
#[cfg(test)]
mod tests;
