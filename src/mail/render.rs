//! Email properties as JSON (RFC 8621 §4.1, §4.2): property selection, body-part properties,
//! body values.
//!
//! The message-derived properties are rendered here; the store's metadata (`id`, `blobId`,
//! `threadId`, `mailboxIds`, `keywords`, `size`, `receivedAt`) is the caller's: [`render_email`]
//! leaves those keys out and the caller inserts them.

use serde_json::{Map, Value, json};

use super::header::{self, HeaderProperty, PropertyError};
use super::{BodyPart, Email, blob_id};

/// One selectable Email property.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmailProperty {
    // Metadata: filled in by the caller.
    Id,
    BlobId,
    ThreadId,
    MailboxIds,
    Keywords,
    Size,
    ReceivedAt,
    // From the message.
    Headers,
    MessageId,
    InReplyTo,
    References,
    Sender,
    From,
    To,
    Cc,
    Bcc,
    ReplyTo,
    Subject,
    SentAt,
    BodyStructure,
    BodyValues,
    TextBody,
    HtmlBody,
    Attachments,
    HasAttachment,
    Preview,
    Header(HeaderProperty),
}

impl EmailProperty {
    /// Parses a property name (EML-06, EML-07). Unknown names and forbidden header forms are
    /// errors the caller answers with `invalidArguments`.
    pub fn parse(name: &str) -> Result<EmailProperty, PropertyError> {
        if let Some(h) = HeaderProperty::parse(name)? {
            return Ok(EmailProperty::Header(h));
        }
        Ok(match name {
            "id" => EmailProperty::Id,
            "blobId" => EmailProperty::BlobId,
            "threadId" => EmailProperty::ThreadId,
            "mailboxIds" => EmailProperty::MailboxIds,
            "keywords" => EmailProperty::Keywords,
            "size" => EmailProperty::Size,
            "receivedAt" => EmailProperty::ReceivedAt,
            "headers" => EmailProperty::Headers,
            "messageId" => EmailProperty::MessageId,
            "inReplyTo" => EmailProperty::InReplyTo,
            "references" => EmailProperty::References,
            "sender" => EmailProperty::Sender,
            "from" => EmailProperty::From,
            "to" => EmailProperty::To,
            "cc" => EmailProperty::Cc,
            "bcc" => EmailProperty::Bcc,
            "replyTo" => EmailProperty::ReplyTo,
            "subject" => EmailProperty::Subject,
            "sentAt" => EmailProperty::SentAt,
            "bodyStructure" => EmailProperty::BodyStructure,
            "bodyValues" => EmailProperty::BodyValues,
            "textBody" => EmailProperty::TextBody,
            "htmlBody" => EmailProperty::HtmlBody,
            "attachments" => EmailProperty::Attachments,
            "hasAttachment" => EmailProperty::HasAttachment,
            "preview" => EmailProperty::Preview,
            _ => return Err(PropertyError(format!("unknown Email property {name:?}"))),
        })
    }

    /// Whether the store, not the message, supplies this property.
    pub fn is_metadata(&self) -> bool {
        matches!(
            self,
            EmailProperty::Id
                | EmailProperty::BlobId
                | EmailProperty::ThreadId
                | EmailProperty::MailboxIds
                | EmailProperty::Keywords
                | EmailProperty::Size
                | EmailProperty::ReceivedAt
        )
    }
}

/// Email/get's default `properties` (EML-12).
pub const DEFAULT_GET_PROPERTIES: &[&str] = &[
    "id",
    "blobId",
    "threadId",
    "mailboxIds",
    "keywords",
    "size",
    "receivedAt",
    "messageId",
    "inReplyTo",
    "references",
    "sender",
    "from",
    "to",
    "cc",
    "bcc",
    "replyTo",
    "subject",
    "sentAt",
    "hasAttachment",
    "preview",
    "bodyValues",
    "textBody",
    "htmlBody",
    "attachments",
];

/// Email/parse's default `properties` (EPAR-01): Email/get's without the metadata.
pub const DEFAULT_PARSE_PROPERTIES: &[&str] = &[
    "messageId",
    "inReplyTo",
    "references",
    "sender",
    "from",
    "to",
    "cc",
    "bcc",
    "replyTo",
    "subject",
    "sentAt",
    "hasAttachment",
    "preview",
    "bodyValues",
    "textBody",
    "htmlBody",
    "attachments",
];

/// The default `bodyProperties` (EML-12).
pub const DEFAULT_BODY_PROPERTIES: &[&str] = &[
    "partId",
    "blobId",
    "size",
    "name",
    "type",
    "charset",
    "disposition",
    "cid",
    "language",
    "location",
];

/// One selectable EmailBodyPart property (EML-10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyProperty {
    PartId,
    BlobId,
    Size,
    Headers,
    Name,
    Type,
    Charset,
    Disposition,
    Cid,
    Language,
    Location,
    SubParts,
    Header(HeaderProperty),
}

impl BodyProperty {
    /// Parses a body property name; `header:…` forms follow the Email rules.
    pub fn parse(name: &str) -> Result<BodyProperty, PropertyError> {
        if let Some(h) = HeaderProperty::parse(name)? {
            return Ok(BodyProperty::Header(h));
        }
        Ok(match name {
            "partId" => BodyProperty::PartId,
            "blobId" => BodyProperty::BlobId,
            "size" => BodyProperty::Size,
            "headers" => BodyProperty::Headers,
            "name" => BodyProperty::Name,
            "type" => BodyProperty::Type,
            "charset" => BodyProperty::Charset,
            "disposition" => BodyProperty::Disposition,
            "cid" => BodyProperty::Cid,
            "language" => BodyProperty::Language,
            "location" => BodyProperty::Location,
            "subParts" => BodyProperty::SubParts,
            _ => {
                return Err(PropertyError(format!(
                    "unknown EmailBodyPart property {name:?}"
                )));
            }
        })
    }
}

/// Which properties to render: each with the key spelled as the client asked (EML-06).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PropertySelection {
    pub properties: Vec<(String, EmailProperty)>,
    pub body_properties: Vec<(String, BodyProperty)>,
}

impl PropertySelection {
    /// From the `properties` and `bodyProperties` arguments (`None` = the given defaults).
    pub fn parse(
        properties: Option<&[String]>,
        body_properties: Option<&[String]>,
        default_properties: &[&str],
    ) -> Result<PropertySelection, PropertyError> {
        let names: Vec<String> = match properties {
            Some(p) => p.to_vec(),
            None => default_properties.iter().map(|s| s.to_string()).collect(),
        };
        let body_names: Vec<String> = match body_properties {
            Some(p) => p.to_vec(),
            None => DEFAULT_BODY_PROPERTIES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let mut selected = Vec::with_capacity(names.len());
        for n in names {
            let p = EmailProperty::parse(&n)?;
            if !selected.iter().any(|(k, _)| *k == n) {
                selected.push((n, p));
            }
        }
        let mut body = Vec::with_capacity(body_names.len());
        for n in body_names {
            let p = BodyProperty::parse(&n)?;
            if !body.iter().any(|(k, _)| *k == n) {
                body.push((n, p));
            }
        }
        Ok(PropertySelection {
            properties: selected,
            body_properties: body,
        })
    }

    /// Whether any selected property comes from the message itself: if not, Email/get can answer
    /// from the store's metadata without reading and parsing the blob.
    pub fn needs_message(&self) -> bool {
        self.properties.iter().any(|(_, p)| !p.is_metadata())
    }

    /// Whether `property` is selected.
    pub fn has(&self, property: &EmailProperty) -> bool {
        self.properties.iter().any(|(_, p)| p == property)
    }
}

/// `fetchTextBodyValues`, `fetchHTMLBodyValues`, `fetchAllBodyValues`, `maxBodyValueBytes`
/// (EML-13).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FetchOptions {
    pub text: bool,
    pub html: bool,
    pub all: bool,
    /// 0 = no limit.
    pub max_bytes: usize,
}

/// Renders the message-derived properties of `selection` for a message whose blob id is
/// `blob_id` (part blob ids derive from it). Metadata keys are left out.
pub fn render_email(
    email: &Email,
    blob_id: &str,
    selection: &PropertySelection,
    fetch: &FetchOptions,
) -> Map<String, Value> {
    let mut out = Map::new();
    let addresses = |name: &str| {
        email.addresses(name).map_or(Value::Null, |list| {
            Value::Array(list.iter().map(|a| a.to_json()).collect())
        })
    };
    let ids = |name: &str| email.message_ids(name).map_or(Value::Null, Value::from);
    let parts = |ids: &[String]| {
        Value::Array(
            ids.iter()
                .filter_map(|id| email.part(id))
                .map(|p| render_part(p, blob_id, &selection.body_properties, false))
                .collect(),
        )
    };
    for (key, property) in &selection.properties {
        let value = match property {
            p if p.is_metadata() => continue,
            EmailProperty::Headers => {
                Value::Array(email.headers.iter().map(|h| h.to_json()).collect())
            }
            EmailProperty::MessageId => ids("Message-ID"),
            EmailProperty::InReplyTo => ids("In-Reply-To"),
            EmailProperty::References => ids("References"),
            EmailProperty::Sender => addresses("Sender"),
            EmailProperty::From => addresses("From"),
            EmailProperty::To => addresses("To"),
            EmailProperty::Cc => addresses("Cc"),
            EmailProperty::Bcc => addresses("Bcc"),
            EmailProperty::ReplyTo => addresses("Reply-To"),
            EmailProperty::Subject => email.subject().map_or(Value::Null, Value::from),
            EmailProperty::SentAt => email
                .sent_at()
                .map_or(Value::Null, |t| Value::from(header::utc_date(t))),
            EmailProperty::BodyStructure => {
                render_part(&email.structure, blob_id, &selection.body_properties, true)
            }
            EmailProperty::BodyValues => Value::Object(body_values(email, fetch)),
            EmailProperty::TextBody => parts(&email.text_body),
            EmailProperty::HtmlBody => parts(&email.html_body),
            EmailProperty::Attachments => parts(&email.attachments),
            EmailProperty::HasAttachment => Value::Bool(email.has_attachment()),
            EmailProperty::Preview => Value::from(email.preview()),
            EmailProperty::Header(h) => h.value(&email.headers),
            _ => continue,
        };
        out.insert(key.clone(), value);
    }
    out
}

/// The `bodyValues` object for `fetch`: text/* parts of textBody, htmlBody, or every part.
pub fn body_values(email: &Email, fetch: &FetchOptions) -> Map<String, Value> {
    let mut wanted: Vec<&BodyPart> = Vec::new();
    let mut candidates: Vec<&BodyPart> = Vec::new();
    if fetch.all {
        candidates.extend(email.structure.leaves());
    } else {
        if fetch.text {
            candidates.extend(email.text_body.iter().filter_map(|id| email.part(id)));
        }
        if fetch.html {
            candidates.extend(email.html_body.iter().filter_map(|id| email.part(id)));
        }
    }
    for p in candidates {
        if p.media_type.starts_with("text/") && !wanted.iter().any(|w| w.part_id == p.part_id) {
            wanted.push(p);
        }
    }
    let mut out = Map::new();
    for p in wanted {
        let v = p.body_value(fetch.max_bytes);
        out.insert(
            p.part_id.clone().unwrap_or_default(),
            json!({"value": v.value, "isEncodingProblem": v.is_encoding_problem, "isTruncated": v.is_truncated}),
        );
    }
    out
}

/// One EmailBodyPart. `with_sub_parts`: bodyStructure always carries `subParts` on multiparts.
pub fn render_part(
    part: &BodyPart,
    email_blob_id: &str,
    properties: &[(String, BodyProperty)],
    with_sub_parts: bool,
) -> Value {
    let mut out = Map::new();
    for (key, property) in properties {
        let value = match property {
            BodyProperty::PartId => part.part_id.clone().map_or(Value::Null, Value::from),
            BodyProperty::BlobId => part
                .part_id
                .as_deref()
                .and_then(|id| blob_id::part(email_blob_id, id))
                .map_or(Value::Null, Value::from),
            BodyProperty::Size => Value::from(part.size),
            BodyProperty::Headers => {
                Value::Array(part.headers.iter().map(|h| h.to_json()).collect())
            }
            BodyProperty::Name => part.name.clone().map_or(Value::Null, Value::from),
            BodyProperty::Type => Value::from(part.media_type.clone()),
            BodyProperty::Charset => part.charset.clone().map_or(Value::Null, Value::from),
            BodyProperty::Disposition => part.disposition.clone().map_or(Value::Null, Value::from),
            BodyProperty::Cid => part.cid.clone().map_or(Value::Null, Value::from),
            BodyProperty::Language => part.language.clone().map_or(Value::Null, Value::from),
            BodyProperty::Location => part.location.clone().map_or(Value::Null, Value::from),
            BodyProperty::SubParts => sub_parts(part, email_blob_id, properties),
            BodyProperty::Header(h) => h.value(&part.headers),
        };
        out.insert(key.clone(), value);
    }
    if with_sub_parts && !out.contains_key("subParts") && part.is_multipart() {
        out.insert(
            "subParts".into(),
            sub_parts(part, email_blob_id, properties),
        );
    }
    Value::Object(out)
}

fn sub_parts(part: &BodyPart, email_blob_id: &str, properties: &[(String, BodyProperty)]) -> Value {
    if !part.is_multipart() {
        return Value::Null;
    }
    Value::Array(
        part.sub_parts
            .iter()
            .map(|p| render_part(p, email_blob_id, properties, true))
            .collect(),
    )
}
