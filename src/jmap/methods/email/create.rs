//! Email/set create (RFC 8621 §4.6): an RFC 5322 message built from JMAP properties with
//! mail-builder, then imported like any other message.
//!
//! Supported: `mailboxIds`, `keywords`, `receivedAt`; `from`, `sender`, `to`, `cc`, `bcc`,
//! `replyTo` (EmailAddress[]), `subject`, `sentAt`, `messageId`, `inReplyTo`, `references`;
//! `header:{Name}` / `header:{Name}:asRaw` / `header:{Name}:asText` for other fields; `textBody`
//! and `htmlBody` (one part each, content from `bodyValues`) and `attachments` (by `blobId`), or
//! instead a `bodyStructure` tree (parts by `partId` or `blobId`, with `type`, `name`,
//! `disposition`, `cid`, `language`, `location`; `body_parts.rs` builds the MIME tree). Header
//! properties on body parts are refused (invalidProperties), as are multiparts given by blob.
//! Message-ID and Date are generated when absent (ESET-03, done by mail-builder).

use std::collections::{BTreeSet, HashMap};

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;
use serde_json::{Map, Value};

use super::body_parts::{FlatBody, invalid, structure_part, text_part};
use crate::jmap::error::MethodError;
use crate::jmap::methods::email::{
    NewEmail, Source, new_email_id, parse_utc_date, read_keywords, read_mailbox_ids,
};
use crate::jmap::standard::{SetError, SetErrorType};

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
    let mut flat = FlatBody::default();
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
            "textBody" => flat.text = text_part(key, value, "text/plain", body_values)?,
            "htmlBody" => flat.html = text_part(key, value, "text/html", body_values)?,
            "attachments" => flat.read_attachments(value, read_blob)?,
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
    if let Some(body) = flat.into_mime() {
        builder = builder.body(body);
    }
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
