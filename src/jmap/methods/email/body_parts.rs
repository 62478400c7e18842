//! The body of an Email/set create (RFC 8621 §4.6): its parts, from `bodyValues` (`partId`) or
//! blobs (`blobId`), and the MIME tree they make.
//!
//! With `textBody`/`htmlBody`/`attachments`, the tree is the one mail clients send: the text and
//! HTML as `multipart/alternative`; inline parts with a `cid` (images the HTML shows) with the
//! HTML in a `multipart/related` (RFC 2387), so that a reader neither lists them as attachments
//! nor shows them twice; and the other attachments around all that in `multipart/mixed`.
//! mail-builder would put every part in `multipart/mixed`. A `bodyStructure` is the tree as the
//! client gives it.

use mail_builder::headers::content_type::ContentType;
use mail_builder::mime::{BodyPart, MimePart};
use serde_json::{Map, Value};

use super::create::BlobReader;
use crate::jmap::standard::{SetError, SetErrorType};
use crate::mail;

pub(super) fn invalid(property: &str, why: impl Into<String>) -> SetError {
    SetError::invalid_properties(&[property], why)
}

/// One text part of `textBody`/`htmlBody`: its content from `bodyValues`.
pub(super) fn text_part(
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
) -> Result<MimePart<'static>, SetError> {
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
pub(super) fn structure_part(
    value: &Value,
    body_values: &Map<String, Value>,
    read_blob: &mut BlobReader<'_>,
    depth: usize,
) -> Result<MimePart<'static>, SetError> {
    let bad = |why: &str| invalid("bodyStructure", why.to_owned());
    if depth > MAX_STRUCTURE_DEPTH {
        return Err(bad("bodyStructure nests too deep"));
    }
    let Value::Object(part) = value else {
        return Err(bad("an EmailBodyPart is an object"));
    };
    let text = |k: &str| part.get(k).and_then(Value::as_str).map(str::to_owned);
    for k in part.keys() {
        // RFC 8621 §4.6 lets a client set header fields on a part; Herald does not build them,
        // and refuses them rather than drop them unsaid.
        if k.starts_with("header:") || k == "headers" {
            return Err(bad(&format!(
                "{k}: header fields on body parts are not supported"
            )));
        }
    }
    let media_type = text("type")
        .unwrap_or_else(|| "text/plain".to_owned())
        .to_ascii_lowercase();
    if media_type.contains(['\r', '\n', ';']) || !media_type.contains('/') {
        return Err(bad("type is a media type"));
    }
    let has = |k: &str| part.get(k).is_some_and(|v| !v.is_null());
    let mime = if media_type.starts_with("multipart/") {
        if has("partId") || has("blobId") {
            return Err(bad(
                "a multipart is made of its subParts, not a partId or blobId",
            ));
        }
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
        if has("subParts") {
            return Err(bad("only a multipart has subParts"));
        }
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
    Ok(with_part_headers(mime, part, None))
}

/// Adds what a part says of itself besides its content: `Content-Disposition` (`disposition`,
/// else `default_disposition`, else `attachment` when it has a `name`) with the `name` as
/// filename, and `Content-ID`, `Content-Language`, `Content-Location`.
fn with_part_headers(
    mut mime: MimePart<'static>,
    part: &Map<String, Value>,
    default_disposition: Option<&str>,
) -> MimePart<'static> {
    let text = |k: &str| {
        part.get(k)
            .and_then(Value::as_str)
            .map(|s| s.replace(['\r', '\n'], " "))
    };
    let name = text("name");
    let disposition = text("disposition")
        .map(|d| d.to_ascii_lowercase())
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .or_else(|| default_disposition.map(str::to_owned))
        .or_else(|| name.as_ref().map(|_| "attachment".to_owned()));
    if let Some(disposition) = disposition {
        let mut value = ContentType::new(disposition);
        if let Some(name) = name {
            value = value.attribute("filename", name);
        }
        mime = mime.header("Content-Disposition", value);
    }
    if let Some(cid) = text("cid") {
        mime = mime.cid(cid.trim_matches(['<', '>']).to_owned());
    }
    if let Some(langs) = part.get("language").and_then(Value::as_array) {
        let joined: Vec<&str> = langs.iter().filter_map(Value::as_str).collect();
        if !joined.is_empty() {
            mime = mime.language(joined.join(", ").replace(['\r', '\n'], " "));
        }
    }
    if let Some(location) = text("location") {
        mime = mime.location(location);
    }
    mime
}

/// The body of a create given as `textBody`, `htmlBody` and `attachments`.
#[derive(Default)]
pub(super) struct FlatBody {
    pub text: Option<String>,
    pub html: Option<String>,
    /// Each attachment, and whether it goes with the HTML (inline, with a `cid`).
    pub attachments: Vec<(MimePart<'static>, bool)>,
}

impl FlatBody {
    /// Reads `attachments` (RFC 8621 §4.6: EmailBodyParts by blobId).
    pub fn read_attachments(
        &mut self,
        value: &Value,
        read_blob: &mut BlobReader<'_>,
    ) -> Result<(), SetError> {
        let list = match value {
            Value::Null => return Ok(()),
            Value::Array(l) => l,
            _ => return Err(invalid("attachments", "an EmailBodyPart[]")),
        };
        for part in list {
            let Value::Object(fields) = part else {
                return Err(invalid("attachments", "an EmailBodyPart is an object"));
            };
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
            // RFC 2045 §6.4: a multipart cannot be given as encoded bytes.
            if ty.starts_with("multipart/") {
                return Err(invalid(
                    "attachments",
                    "an attachment cannot be a multipart (give a bodyStructure)",
                ));
            }
            if fields
                .keys()
                .any(|k| k.starts_with("header:") || k == "headers")
            {
                return Err(invalid(
                    "attachments",
                    "header fields on body parts are not supported",
                ));
            }
            let related = part.get("disposition").and_then(Value::as_str) == Some("inline")
                && part.get("cid").and_then(Value::as_str).is_some();
            let mime = blob_part("attachments", part, &ty, bytes)?;
            let mime = with_part_headers(mime, fields, Some("attachment"));
            self.attachments.push((mime, related));
        }
        Ok(())
    }

    /// The MIME tree: `mixed[alternative[text, related[html, inline…]], attachments…]`, each
    /// level left out when it would hold one part. `None` for an empty body.
    pub fn into_mime(self) -> Option<MimePart<'static>> {
        let text = self.text.map(|t| MimePart::new("text/plain", t));
        let mut html = self.html.map(|h| MimePart::new("text/html", h));
        let (related, mut mixed): (Vec<_>, Vec<_>) = self
            .attachments
            .into_iter()
            .partition(|(_, r)| *r && html.is_some());
        if let Some(h) = html.take() {
            html = Some(if related.is_empty() {
                h
            } else {
                let mut parts = vec![h];
                parts.extend(related.into_iter().map(|(p, _)| p));
                MimePart::new("multipart/related", parts)
            });
        }
        let body = match (text, html) {
            (Some(t), Some(h)) => Some(MimePart::new("multipart/alternative", vec![t, h])),
            (t, h) => t.or(h),
        };
        if mixed.is_empty() {
            return body;
        }
        let mut parts: Vec<MimePart<'static>> = body.into_iter().collect();
        parts.extend(mixed.drain(..).map(|(p, _)| p));
        Some(MimePart::new("multipart/mixed", parts))
    }
}
