//! Binary data over HTTP (RFC 8620 §6): `POST /jmap/upload/{accountId}/` and
//! `GET /jmap/download/{accountId}/{blobId}/{name}?type=`.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde_json::json;

use super::{AppState, auth, problem};
use crate::dispatcher::{DownloadBlob, UploadBlob};
use crate::jmap::error::RequestError;

/// The slowest upload rate allowed for the part of an upload beyond its first
/// `request_body_timeout_secs` (octets per second).
const MIN_UPLOAD_RATE: u64 = 16 * 1024;

/// A `limit` problem (RFC 8620 §3.6.1 `urn:ietf:params:jmap:error:limit`) with an HTTP status of
/// its own: 413 for a too large upload, 429 for too many at once (BIN-06).
fn limit(status: StatusCode, name: &'static str, detail: String) -> HttpResponse {
    let mut body = RequestError::limit(name, detail).to_problem();
    body["status"] = json!(status.as_u16());
    HttpResponse::build(status)
        .content_type(problem::CONTENT_TYPE)
        .insert_header(("Cache-Control", "no-store"))
        .body(body.to_string())
}

/// `POST /jmap/upload/{accountId}/` (BIN-03, BIN-04, BIN-06).
#[expect(
    clippy::too_many_lines,
    reason = "an upload's path in order: credentials, account, slot, body, store, answer"
)]
pub async fn upload(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    mut payload: web::Payload,
) -> HttpResponse {
    let principal = match auth::authenticate(&state, &req).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    let account_id = path.into_inner();
    // The account must be readable (else it does not exist for this user) and writable.
    let Some(access) = principal.account(&account_id) else {
        return problem::status(StatusCode::NOT_FOUND, "no such account");
    };
    if access.read_only {
        return problem::status(StatusCode::FORBIDDEN, "the account is read-only");
    }
    let limits = &state.server.limits;
    let Some(_slot) = state
        .uploads
        .try_acquire(&principal.user_id, limits.max_concurrent_upload)
    else {
        return limit(
            StatusCode::TOO_MANY_REQUESTS,
            "maxConcurrentUpload",
            format!(
                "at most {} uploads may run at once",
                limits.max_concurrent_upload
            ),
        );
    };
    let max = limits.max_size_upload;
    let too_large = || {
        limit(
            StatusCode::PAYLOAD_TOO_LARGE,
            "maxSizeUpload",
            format!("the upload is larger than {max} octets"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return too_large();
    }
    let mut data = Vec::with_capacity(declared.unwrap_or(0).min(max).min(1 << 20) as usize);
    // A body that trickles must not hold the user's upload slot and a connection for ever: it
    // has `request_body_timeout_secs`, plus a second per MIN_UPLOAD_RATE octets it declares.
    let deadline = std::time::Duration::from_secs(
        state.body_timeout_secs + declared.unwrap_or(max).min(max) / MIN_UPLOAD_RATE,
    );
    let read = async {
        while let Some(chunk) = payload.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    return Err(problem::status(
                        StatusCode::BAD_REQUEST,
                        format!("cannot read the body: {e}"),
                    ));
                }
            };
            if (data.len() + chunk.len()) as u64 > max {
                return Err(too_large());
            }
            data.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match actix_web::rt::time::timeout(deadline, read).await {
        Ok(Ok(())) => {}
        Ok(Err(response)) => return response,
        Err(_) => {
            return problem::status(
                StatusCode::REQUEST_TIMEOUT,
                format!("the upload did not arrive within {} s", deadline.as_secs()),
            );
        }
    }
    let media_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let size = data.len();
    let msg = UploadBlob {
        user_id: principal.user_id.clone(),
        account_id: account_id.clone(),
        data,
    };
    match state.dispatcher.send(msg).await {
        // BIN-04: the JSON is typed application/json, never the upload's own type.
        Ok(Ok(blob_id)) => HttpResponse::Created()
            .content_type("application/json")
            .insert_header(("Cache-Control", "no-store"))
            .body(
                json!({"accountId": account_id, "blobId": blob_id, "type": media_type, "size": size})
                    .to_string(),
            ),
        Ok(Err(e)) => problem::internal("upload", e),
        Err(e) => problem::internal("upload", e),
    }
}

/// `GET /jmap/download/{accountId}/{blobId}/{name}?type=` (BIN-10..BIN-13).
pub async fn download(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    query: web::Query<HashMap<String, String>>,
) -> HttpResponse {
    let principal = match auth::authenticate(&state, &req).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    let (account_id, blob_id, name) = path.into_inner();
    let not_found = || problem::status(StatusCode::NOT_FOUND, "no such blob");
    if principal.account(&account_id).is_none() {
        return not_found();
    }
    let msg = DownloadBlob {
        user_id: principal.user_id.clone(),
        account_id,
        blob_id,
    };
    let data = match state.dispatcher.send(msg).await {
        Ok(Ok(Some(data))) => data,
        Ok(Ok(None)) => return not_found(),
        Ok(Err(e)) => return problem::internal("download", e),
        Err(e) => return problem::internal("download", e),
    };
    let media_type = query
        .get("type")
        .map(|t| t.trim())
        .filter(|t| is_media_type(t))
        .unwrap_or("application/octet-stream");
    let content_type = HeaderValue::from_str(media_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let disposition = HeaderValue::from_str(&content_disposition(media_type, &name))
        .unwrap_or(HeaderValue::from_static("attachment"));
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header((header::CONTENT_DISPOSITION, disposition))
        .insert_header((
            header::CACHE_CONTROL,
            "private, immutable, max-age=31536000",
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(data)
}

/// `type/subtype` with optional parameters, printable ASCII only.
fn is_media_type(t: &str) -> bool {
    let essence = t.split(';').next().unwrap_or("").trim();
    let Some((top, sub)) = essence.split_once('/') else {
        return false;
    };
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    token(top) && token(sub) && t.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// Types a browser would render actively: always served as attachments (BIN-13).
fn is_active(media_type: &str) -> bool {
    let essence = media_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence.contains("html")
        || essence.contains("xml")
        || essence.contains("javascript")
        || essence == "image/svg+xml"
        || essence.starts_with("multipart/")
}

/// `Content-Disposition` with the name as filename (BIN-11), RFC 6266 / RFC 8187 `filename*` for
/// non-ASCII names. Images, audio, video, plain text and PDF may show inline; everything else,
/// and every active type, is an attachment.
pub fn content_disposition(media_type: &str, name: &str) -> String {
    let essence = media_type.to_ascii_lowercase();
    let inline = !is_active(media_type)
        && (essence.starts_with("image/")
            || essence.starts_with("audio/")
            || essence.starts_with("video/")
            || essence.starts_with("text/plain")
            || essence.starts_with("application/pdf"));
    let kind = if inline { "inline" } else { "attachment" };
    // An empty name (a part without one) names no file; NULs and other controls none either.
    let name: String = name.chars().filter(|c| !c.is_control()).collect();
    let name = name.as_str();
    if name.is_empty() {
        return kind.to_owned();
    }
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_ascii() && !name.chars().any(|c| c.is_ascii_control()) {
        let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
        return format!("{kind}; filename=\"{escaped}\"");
    }
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_disposition_names_the_file_and_encodes_non_ascii_names() {
        assert_eq!(
            content_disposition("image/png", "a \"b\".png"),
            "inline; filename=\"a \\\"b\\\".png\""
        );
        assert_eq!(
            content_disposition("text/html", "x.html"),
            "attachment; filename=\"x.html\""
        );
        assert_eq!(
            content_disposition("application/zip", "€ rates.zip"),
            "attachment; filename=\"_ rates.zip\"; filename*=UTF-8''%E2%82%AC%20rates.zip"
        );
        assert_eq!(content_disposition("application/pdf", ""), "inline");
        assert_eq!(content_disposition("application/zip", "\0"), "attachment");
        assert_eq!(
            content_disposition("application/zip", "a\0b"),
            "attachment; filename=\"ab\""
        );
    }

    #[test]
    fn only_well_formed_media_types_are_echoed() {
        assert!(is_media_type("text/plain; charset=utf-8"));
        assert!(is_media_type("application/vnd.ms-excel"));
        for bad in ["", "text", "text/", "a/b\r\nX: y", "/x"] {
            assert!(!is_media_type(bad), "{bad:?}");
        }
    }
}
