//! Email/set create (RFC 8621 §4.6): an RFC 5322 message built from JMAP properties with
//! mail-builder, then imported like any other message.
//!
//! Supported: `mailboxIds`, `keywords`, `receivedAt`; `from`, `sender`, `to`, `cc`, `bcc`,
//! `replyTo` (EmailAddress[]), `subject`, `sentAt`, `messageId`, `inReplyTo`, `references`;
//! `header:{Name}` / `header:{Name}:asRaw` / `header:{Name}:asText` for other fields; `textBody`
//! and `htmlBody` (one part each, content from `bodyValues`) and `attachments` (by `blobId`), or
//! instead a `bodyStructure` tree (parts by `partId` or `blobId`, with `type`, `name`,
//! `disposition`, `cid`, `language`, `location`). Header properties on body parts are not built.
//! Message-ID and Date are generated when absent (ESET-03, done by mail-builder).

use std::collections::{BTreeSet, HashMap};

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;
use serde_json::{Map, Value};

use crate::jmap::error::MethodError;
use crate::jmap::methods::email::{
    NewEmail, Source, new_email_id, parse_utc_date, read_keywords, read_mailbox_ids,
};
use crate::jmap::standard::{SetError, SetErrorType};
use crate::mail;

/// Reads blob bytes visible to the caller (`None`: no such blob).
pub type BlobReader<'a> = dyn FnMut(&str) -> Result<Option<Vec<u8>>, MethodError> + 'a;

const ADDRESS_FIELDS: &[(&str, &str)] = &[
    ("from", "From"),
    ("sender", "Sender"),
    ("to", "To"),
    ("cc", "Cc"),
    ("bcc", "Bcc"),
    ("replyTo", "Reply-To"),
];

fn invalid(property: &str, why: impl Into<String>) -> SetError {
    SetError::invalid_properties(&[property], why)
}

fn addresses(property: &str, value: &Value) -> Result<Option<Address<'static>>, SetError> {
    let list = match value {
        Value::Null => return Ok(None),
        Value::Array(list) => list,
        _ => return Err(invalid(property, "an EmailAddress[] or null")),
    };
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        let email = item
            .get("email")
            .and_then(Value::as_str)
            .filter(|e| !e.contains(['\r', '\n']))
            .ok_or_else(|| invalid(property, "each address needs an email"))?;
        let name = match item.get("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(n)) => Some(n.replace(['\r', '\n'], " ")),
            Some(_) => return Err(invalid(property, "name is a String or null")),
        };
        out.push(Address::new_address(name, email.to_owned()));
    }
    Ok(Some(Address::new_list(out)))
}

fn message_ids(property: &str, value: &Value) -> Result<Option<MessageId<'static>>, SetError> {
    match value {
        Value::Null => Ok(None),
        Value::Array(list) => {
            let ids = list
                .iter()
                .map(|v| {
                    v.as_str()
                        .filter(|s| !s.is_empty() && !s.contains(['<', '>', ' ', '\r', '\n']))
                        .map(str::to_owned)
                        .ok_or_else(|| invalid(property, "message ids are strings without <>"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Some(MessageId::from(ids)))
        }
        _ => Err(invalid(property, "a String[] or null")),
    }
}

/// One text part of `textBody`/`htmlBody`: its content from `bodyValues`.
fn text_part(
    property: &str,
    value: &Value,
    media_type: &str,
    body_values: &Map<String, Value>,
) -> Result<Option<String>, SetError> {
    let parts = match value {
        Value::Null => return Ok(None),
        Value::Array(p) => p,
        _ => return Err(invalid(property, "an EmailBodyPart[]")),
    };
    // ESET-02: exactly one part of the right type.
    let [part] = parts.as_slice() else {
        return Err(invalid(property, format!("exactly one {media_type} part")));
    };
    let ty = part
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("text/plain");
    if !ty.eq_ignore_ascii_case(media_type) {
        return Err(invalid(property, format!("the part must be {media_type}")));
    }
    if part.get("charset").is_some() || part.get("size").is_some() {
        return Err(invalid(
            property,
            "a part with a partId has no charset or size",
        ));
    }
    if part.get("blobId").is_some_and(|b| !b.is_null()) {
        return Err(invalid(
            property,
            "a part has a partId or a blobId, not both",
        ));
    }
    let part_id = part
        .get("partId")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(property, "the part needs a partId in bodyValues"))?;
    body_value(part_id, body_values).map(|v| Some(v.to_owned()))
}

/// The text of `bodyValues[part_id]`. RFC 8621 §4.6: `isEncodingProblem` and `isTruncated` MUST
/// be false or omitted when creating, whichever property names the part.
fn body_value<'a>(part_id: &str, body_values: &'a Map<String, Value>) -> Result<&'a str, SetError> {
    let body = body_values
        .get(part_id)
        .ok_or_else(|| invalid("bodyValues", format!("no bodyValues entry {part_id:?}")))?;
    for flag in ["isEncodingProblem", "isTruncated"] {
        if body.get(flag).is_some_and(|v| v != &Value::Bool(false)) {
            return Err(invalid("bodyValues", format!("{flag} must be false")));
        }
    }
    body.get("value")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("bodyValues", "a body value needs a string value"))
}

/// A part made of a blob's bytes: its `charset` kept in Content-Type, and a `message/rfc822`
/// written as it is (RFC 2046 §5.2.1 allows it no other encoding than 7bit, 8bit or binary);
/// mail-builder picks the encoding of the others.
fn blob_part(
    property: &str,
    part: &Value,
    media_type: &str,
    bytes: Vec<u8>,
) -> Result<mail_builder::mime::MimePart<'static>, SetError> {
    use mail_builder::headers::content_type::ContentType;
    use mail_builder::mime::{BodyPart, MimePart};
    let mut content_type = ContentType::new(media_type.to_owned());
    match part.get("charset") {
        None | Some(Value::Null) => {}
        Some(Value::String(c))
            if !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"\";".contains(&b)) =>
        {
            content_type = content_type.attribute("charset", c.clone());
        }
        Some(_) => return Err(invalid(property, "charset is a charset name")),
    }
    if media_type == "message/rfc822" {
        let encoding = mail::transfer::identity_encoding(&bytes);
        Ok(MimePart::new(content_type, BodyPart::Binary(bytes.into())).transfer_encoding(encoding))
    } else {
        Ok(MimePart::new(content_type, BodyPart::Binary(bytes.into())))
    }
}

/// The deepest `bodyStructure` accepted.
const MAX_STRUCTURE_DEPTH: usize = 16;

/// One part of a `bodyStructure`, with its sub-parts: a multipart, a text part whose content is in
/// `bodyValues` (`partId`), or a part made of a blob's bytes (`blobId`).
fn structure_part(
    value: &Value,
    body_values: &Map<String, Value>,
    read_blob: &mut BlobReader<'_>,
    depth: usize,
) -> Result<mail_builder::mime::MimePart<'static>, SetError> {
    use mail_builder::mime::{BodyPart, MimePart};
    let bad = |why: &str| invalid("bodyStructure", why.to_owned());
    if depth > MAX_STRUCTURE_DEPTH {
        return Err(bad("bodyStructure nests too deep"));
    }
    let Value::Object(part) = value else {
        return Err(bad("an EmailBodyPart is an object"));
    };
    let text = |k: &str| part.get(k).and_then(Value::as_str).map(str::to_owned);
    for k in part.keys() {
        let lower = k.to_ascii_lowercase();
        if lower.starts_with("header:content-transfer-encoding") || k == "headers" {
            return Err(bad(&format!("{k} cannot be set on a body part")));
        }
    }
    let media_type = text("type")
        .unwrap_or_else(|| "text/plain".to_owned())
        .to_ascii_lowercase();
    if media_type.contains(['\r', '\n', ';']) || !media_type.contains('/') {
        return Err(bad("type is a media type"));
    }
    let mut mime = if media_type.starts_with("multipart/") {
        let subs = part
            .get("subParts")
            .and_then(Value::as_array)
            .filter(|subs| !subs.is_empty())
            .ok_or_else(|| bad("a multipart needs subParts"))?;
        let children = subs
            .iter()
            .map(|p| structure_part(p, body_values, read_blob, depth + 1))
            .collect::<Result<Vec<_>, _>>()?;
        MimePart::new(media_type, BodyPart::Multipart(children))
    } else {
        match (text("partId"), text("blobId")) {
            (Some(part_id), None) => {
                if part.get("charset").is_some_and(|v| !v.is_null())
                    || part.get("size").is_some_and(|v| !v.is_null())
                {
                    return Err(bad("a part with a partId has no charset or size"));
                }
                if !media_type.starts_with("text/") {
                    return Err(bad("a part with a partId is text/*"));
                }
                let body = body_value(&part_id, body_values)?;
                MimePart::new(media_type, BodyPart::Text(body.to_owned().into()))
            }
            (None, Some(blob_id)) => {
                let bytes = read_blob(&blob_id)
                    .map_err(|e| SetError::new(SetErrorType::ServerFail, e.to_string()))?
                    .ok_or_else(|| {
                        SetError::new(SetErrorType::BlobNotFound, format!("no blob {blob_id}"))
                            .with("notFound", serde_json::json!([blob_id]))
                    })?;
                blob_part("bodyStructure", value, &media_type, bytes)?
            }
            _ => return Err(bad("a part has a partId or a blobId, not both")),
        }
    };
    let clean = |s: String| s.replace(['\r', '\n'], " ");
    match (text("disposition").as_deref(), text("name")) {
        (Some("inline"), _) => mime = mime.inline(),
        (Some(_) | None, Some(name)) => mime = mime.attachment(clean(name)),
        (Some(_), None) => mime = mime.attachment("attachment"),
        (None, None) => {}
    }
    if let Some(cid) = text("cid") {
        mime = mime.cid(clean(cid.trim_matches(['<', '>']).to_owned()));
    }
    if let Some(langs) = part.get("language").and_then(Value::as_array) {
        let joined: Vec<&str> = langs.iter().filter_map(Value::as_str).collect();
        if !joined.is_empty() {
            mime = mime.language(clean(joined.join(", ")));
        }
    }
    if let Some(location) = text("location") {
        mime = mime.location(clean(location));
    }
    Ok(mime)
}

/// Reads an Email/set create into a new email whose message is built here.
pub fn read_create(
    props: &Map<String, Value>,
    created: &HashMap<String, String>,
    read_blob: &mut BlobReader<'_>,
) -> Result<Result<NewEmail, SetError>, MethodError> {
    Ok(build(props, created, read_blob))
}

fn read_received_at(value: &Value) -> Result<Option<i64>, SetError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => parse_utc_date(s)
            .map(Some)
            .ok_or_else(|| invalid("receivedAt", "receivedAt is a UTCDate")),
        _ => Err(invalid("receivedAt", "receivedAt is a UTCDate")),
    }
}

/// Adds the `attachments` (RFC 8621 §4.6: EmailBodyParts by blobId) to the message.
fn add_attachments<'x>(
    mut builder: MessageBuilder<'x>,
    value: &Value,
    read_blob: &mut BlobReader<'_>,
) -> Result<MessageBuilder<'x>, SetError> {
    let list = match value {
        Value::Null => return Ok(builder),
        Value::Array(l) => l,
        _ => return Err(invalid("attachments", "an EmailBodyPart[]")),
    };
    for part in list {
        let blob_id = part
            .get("blobId")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("attachments", "an attachment needs a blobId"))?;
        if part.get("partId").is_some_and(|p| !p.is_null()) {
            return Err(invalid(
                "attachments",
                "a part has a partId or a blobId, not both",
            ));
        }
        let bytes = read_blob(blob_id)
            .map_err(|e| SetError::new(SetErrorType::ServerFail, e.to_string()))?
            .ok_or_else(|| {
                SetError::new(SetErrorType::BlobNotFound, format!("no blob {blob_id}"))
                    .with("notFound", serde_json::json!([blob_id]))
            })?;
        let ty = part
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("application/octet-stream")
            .to_ascii_lowercase();
        if ty.contains(['\r', '\n', ';']) || !ty.contains('/') {
            return Err(invalid("attachments", "type is a media type"));
        }
        let name = part
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("attachment")
            .replace(['\r', '\n'], " ");
        let inline = part.get("disposition").and_then(Value::as_str) == Some("inline");
        let mime = blob_part("attachments", part, &ty, bytes)?;
        let mime = match (inline, part.get("cid").and_then(Value::as_str)) {
            (true, Some(cid)) => mime.inline().cid(cid.replace(['\r', '\n'], " ")),
            _ => mime.attachment(name),
        };
        builder.attachments.get_or_insert_with(Vec::new).push(mime);
    }
    Ok(builder)
}

/// Adds a `header:{Name}[:asRaw|:asText]` property (RFC 8621 §4.1.3) as a header field;
/// `Content-*` fields belong to the body parts and cannot be set this way.
fn add_header_property<'x>(
    builder: MessageBuilder<'x>,
    key: &str,
    value: &Value,
    note_header: &mut impl FnMut(&str) -> Result<(), SetError>,
) -> Result<MessageBuilder<'x>, SetError> {
    let rest = &key["header:".len()..];
    let (name, form) = match rest.split_once(':') {
        Some((n, f)) => (n, Some(f)),
        None => (rest, None),
    };
    let lower = name.to_ascii_lowercase();
    if name.is_empty()
        || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        || lower.starts_with("content-")
    {
        return Err(invalid(key, "not a header that can be set here"));
    }
    let text = match value {
        Value::Null => return Ok(builder),
        Value::String(s) => s.clone(),
        _ => return Err(invalid(key, "a String")),
    };
    note_header(name)?;
    match form {
        None | Some("asRaw") => {
            // RFC 8621 §4.1.2.1: the Raw form is everything after the colon, its leading space
            // included, and mail-builder writes "Name: " itself; without this, each round trip
            // through Email/get and Email/set added a space.
            let verbatim = text
                .strip_prefix([' ', '\t'])
                .map_or(text.clone(), str::to_owned);
            Ok(builder.header(name.to_owned(), Raw::new(verbatim)))
        }
        Some("asText") => Ok(builder.header(name.to_owned(), Text::new(text))),
        Some(_) => Err(invalid(key, "only asRaw and asText can be set")),
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "one arm per Email property (RFC 8621 §4.1), each a line or a call"
)]
fn build(
    props: &Map<String, Value>,
    created: &HashMap<String, String>,
    read_blob: &mut BlobReader<'_>,
) -> Result<NewEmail, SetError> {
    let mut builder = MessageBuilder::new();
    let mut mailbox_ids: Option<BTreeSet<String>> = None;
    let mut keywords = BTreeSet::new();
    let mut received_at = None;
    let mut seen_headers: Vec<String> = Vec::new();
    let empty = Map::new();
    let body_values = match props.get("bodyValues") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Err(invalid("bodyValues", "an object")),
    };
    let mut note_header = |name: &str| -> Result<(), SetError> {
        let lower = name.to_ascii_lowercase();
        if seen_headers.contains(&lower) {
            // ESET-02: no header field given twice.
            return Err(invalid(name, format!("the {name} header is given twice")));
        }
        seen_headers.push(lower);
        Ok(())
    };
    for (key, value) in props {
        match key.as_str() {
            "mailboxIds" => mailbox_ids = Some(read_mailbox_ids(value, created)?),
            "keywords" => keywords = read_keywords(value)?,
            "receivedAt" => received_at = read_received_at(value)?,
            "subject" => match value {
                Value::Null => {}
                Value::String(s) => {
                    note_header("Subject")?;
                    builder = builder.subject(Text::new(s.replace(['\r', '\n'], " ")));
                }
                _ => return Err(invalid("subject", "a String or null")),
            },
            "sentAt" => match value {
                Value::Null => {}
                Value::String(s) => {
                    let t = chrono::DateTime::parse_from_rfc3339(s)
                        .map_err(|_| invalid("sentAt", "a Date (RFC 3339)"))?;
                    note_header("Date")?;
                    builder = builder.header("Date", Raw::new(t.to_rfc2822()));
                }
                _ => return Err(invalid("sentAt", "a Date or null")),
            },
            "messageId" | "inReplyTo" | "references" => {
                let header = match key.as_str() {
                    "messageId" => "Message-ID",
                    "inReplyTo" => "In-Reply-To",
                    _ => "References",
                };
                if let Some(ids) = message_ids(key, value)? {
                    note_header(header)?;
                    builder = builder.header(header, ids);
                }
            }
            k if ADDRESS_FIELDS.iter().any(|(p, _)| *p == k) => {
                let header = ADDRESS_FIELDS
                    .iter()
                    .find(|(p, _)| *p == k)
                    .map_or(k, |(_, h)| *h);
                if let Some(a) = addresses(k, value)? {
                    note_header(header)?;
                    builder = builder.header(header, a);
                }
            }
            "textBody" => {
                if let Some(text) = text_part(key, value, "text/plain", body_values)? {
                    builder = builder.text_body(text);
                }
            }
            "htmlBody" => {
                if let Some(html) = text_part(key, value, "text/html", body_values)? {
                    builder = builder.html_body(html);
                }
            }
            "attachments" => builder = add_attachments(builder, value, read_blob)?,
            "bodyValues" => {}
            "bodyStructure" => {
                // ESET-02: bodyStructure excludes the flat body properties.
                if ["textBody", "htmlBody", "attachments"]
                    .iter()
                    .any(|p| props.get(*p).is_some_and(|v| !v.is_null()))
                {
                    return Err(invalid(
                        "bodyStructure",
                        "bodyStructure cannot be given with textBody, htmlBody or attachments",
                    ));
                }
                if !value.is_null() {
                    builder = builder.body(structure_part(value, body_values, read_blob, 0)?);
                }
            }
            "id" | "blobId" | "threadId" | "size" | "hasAttachment" | "preview" => {
                return Err(invalid(key, format!("{key} is set by the server")));
            }
            "headers" => {
                return Err(invalid(
                    "headers",
                    "use header:{Name} properties instead of headers",
                ));
            }
            k if k.starts_with("header:") => {
                builder = add_header_property(builder, k, value, &mut note_header)?;
            }
            k => return Err(invalid(k, format!("Email has no property {k:?}"))),
        }
    }
    let mailbox_ids = mailbox_ids.ok_or_else(|| invalid("mailboxIds", "mailboxIds is required"))?;
    let message = builder
        .write_to_vec()
        .map_err(|e| SetError::new(SetErrorType::InvalidProperties, e.to_string()))?;
    Ok(NewEmail {
        id: new_email_id(),
        source: Source::Message(message),
        mailbox_ids,
        keywords,
        received_at,
        delivery: false,
    })
}
