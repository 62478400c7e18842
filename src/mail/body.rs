//! Body parts (RFC 8621 §4.1.4): the part tree, the textBody/htmlBody/attachments decomposition
//! and body values.

use super::header::Header;
use super::{html, text};

/// One MIME part (EmailBodyPart, EML-10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyPart {
    /// `None` exactly for `multipart/*` parts.
    pub part_id: Option<String>,
    pub headers: Vec<Header>,
    /// `type`, lowercase: `text/plain` by default, `message/rfc822` inside `multipart/digest`.
    pub media_type: String,
    /// Lowercase; `us-ascii` for text without one, `None` for non-text and multipart parts.
    pub charset: Option<String>,
    /// `inline`, `attachment`…, lowercase.
    pub disposition: Option<String>,
    /// From `Content-Disposition: filename` or `Content-Type: name` (RFC 2231/2047 decoded).
    pub name: Option<String>,
    /// `Content-ID` without angle brackets.
    pub cid: Option<String>,
    pub language: Option<Vec<String>>,
    pub location: Option<String>,
    /// Octets after transfer decoding.
    pub size: u64,
    pub sub_parts: Vec<BodyPart>,
    /// The bytes after transfer decoding (what the part's blob holds); empty for multiparts.
    pub content: Vec<u8>,
    /// mail-parser could not decode the part as declared.
    pub is_encoding_problem: bool,
}

/// A `bodyValues` entry (EML-11, EML-13).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BodyValue {
    pub value: String,
    pub is_encoding_problem: bool,
    pub is_truncated: bool,
}

impl BodyPart {
    pub(crate) fn empty(index: usize) -> BodyPart {
        BodyPart {
            part_id: Some((index + 1).to_string()),
            headers: Vec::new(),
            media_type: "text/plain".into(),
            charset: Some("us-ascii".into()),
            disposition: None,
            name: None,
            cid: None,
            language: None,
            location: None,
            size: 0,
            sub_parts: Vec::new(),
            content: Vec::new(),
            is_encoding_problem: true,
        }
    }

    /// Whether this is a `multipart/*` part.
    pub fn is_multipart(&self) -> bool {
        self.part_id.is_none()
    }

    /// The leaf part with `part_id` in this subtree.
    pub fn find(&self, part_id: &str) -> Option<&BodyPart> {
        if self.part_id.as_deref() == Some(part_id) {
            return Some(self);
        }
        self.sub_parts.iter().find_map(|p| p.find(part_id))
    }

    /// Every leaf part of this subtree, in order.
    pub fn leaves(&self) -> Vec<&BodyPart> {
        let mut out = Vec::new();
        self.collect_leaves(&mut out);
        out
    }

    fn collect_leaves<'a>(&'a self, out: &mut Vec<&'a BodyPart>) {
        if self.is_multipart() {
            for p in &self.sub_parts {
                p.collect_leaves(out);
            }
        } else {
            out.push(self);
        }
    }

    /// The content decoded to text with the part's charset; `true` when that was not clean
    /// (unknown charset, invalid octets, or a transfer-encoding problem). Line ends become LF.
    pub fn decoded_text(&self) -> (String, bool) {
        let (value, problem) = text::decode_charset(&self.content, self.charset.as_deref());
        (
            value.replace("\r\n", "\n").replace('\0', ""),
            problem || self.is_encoding_problem,
        )
    }

    /// The text of the part for previews and search: HTML converted to plain text.
    pub fn plain_text(&self) -> String {
        let (value, _) = self.decoded_text();
        if self.media_type == "text/html" {
            html::html_to_text(&value)
        } else {
            value
        }
    }

    /// The `bodyValues` entry of this part, truncated to at most `max_bytes` octets of UTF-8 when
    /// `max_bytes > 0` (EML-13: on a character boundary, and not inside an HTML tag).
    pub fn body_value(&self, max_bytes: usize) -> BodyValue {
        let (mut value, is_encoding_problem) = self.decoded_text();
        let mut is_truncated = false;
        if max_bytes > 0 && value.len() > max_bytes {
            let cut = if self.media_type == "text/html" {
                text::html_cut(&value, max_bytes)
            } else {
                text::char_boundary(&value, max_bytes)
            };
            value.truncate(cut);
            is_truncated = true;
        }
        BodyValue {
            value,
            is_encoding_problem,
            is_truncated,
        }
    }
}

/// RFC 8621 §4.1.4's algorithm: the `partId`s of textBody, htmlBody and attachments.
pub fn decompose(root: &BodyPart) -> (Vec<String>, Vec<String>, Vec<String>) {
    let mut text_body = Vec::new();
    let mut html_body = Vec::new();
    let mut attachments = Vec::new();
    walk(
        std::slice::from_ref(root),
        "mixed",
        false,
        Some(&mut html_body),
        Some(&mut text_body),
        &mut attachments,
    );
    (text_body, html_body, attachments)
}

fn walk(
    parts: &[BodyPart],
    multipart_type: &str,
    in_alternative: bool,
    mut html_body: Option<&mut Vec<String>>,
    mut text_body: Option<&mut Vec<String>>,
    attachments: &mut Vec<String>,
) {
    let text_length = text_body.as_ref().map(|t| t.len());
    let html_length = html_body.as_ref().map(|h| h.len());
    for (i, part) in parts.iter().enumerate() {
        let inline_media = text::is_inline_media_type(&part.media_type);
        let is_inline = part.disposition.as_deref() != Some("attachment")
            && (part.media_type == "text/plain" || part.media_type == "text/html" || inline_media)
            && (i == 0 || (multipart_type != "related" && (inline_media || part.name.is_none())));
        if part.is_multipart() {
            let sub_type = part.media_type.split('/').nth(1).unwrap_or("mixed");
            walk(
                &part.sub_parts,
                sub_type,
                in_alternative || sub_type == "alternative",
                html_body.as_deref_mut(),
                text_body.as_deref_mut(),
                attachments,
            );
            continue;
        }
        let id = part.part_id.clone().unwrap_or_default();
        if !is_inline {
            attachments.push(id);
            continue;
        }
        if multipart_type == "alternative" {
            match part.media_type.as_str() {
                "text/plain" => {
                    if let Some(t) = text_body.as_deref_mut() {
                        t.push(id);
                    }
                }
                "text/html" => {
                    if let Some(h) = html_body.as_deref_mut() {
                        h.push(id);
                    }
                }
                _ => attachments.push(id),
            }
            continue;
        } else if in_alternative {
            if part.media_type == "text/plain" {
                html_body = None;
            }
            if part.media_type == "text/html" {
                text_body = None;
            }
        }
        if let Some(t) = text_body.as_deref_mut() {
            t.push(id.clone());
        }
        if let Some(h) = html_body.as_deref_mut() {
            h.push(id.clone());
        }
        if (text_body.is_none() || html_body.is_none()) && inline_media {
            attachments.push(id);
        }
    }
    if multipart_type == "alternative"
        && let (Some(text), Some(html)) = (text_body, html_body)
    {
        let (tl, hl) = (text_length.unwrap_or(0), html_length.unwrap_or(0));
        if tl == text.len() && hl != html.len() {
            // HTML only: it serves as the text body too.
            text.extend(html[hl..].iter().cloned());
        }
        if hl == html.len() && tl != text.len() {
            // Plain text only: it serves as the HTML body too.
            html.extend(text[tl..].iter().cloned());
        }
    }
}
