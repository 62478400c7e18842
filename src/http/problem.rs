//! RFC 7807 problem responses (`application/problem+json`) for every HTTP-level error.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde_json::{Value, json};

use crate::jmap::error::RequestError;

pub const CONTENT_TYPE: &str = "application/problem+json";

/// A JMAP request-level error (RFC 8620 §3.6.1).
pub fn request_error(e: &RequestError) -> HttpResponse {
    respond(
        StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST),
        e.to_problem(),
    )
}

/// A problem that is not a JMAP request error: `about:blank` with the status's title.
pub fn status(status: StatusCode, detail: impl Into<String>) -> HttpResponse {
    respond(
        status,
        json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or(""),
            "status": status.as_u16(),
            "detail": detail.into(),
        }),
    )
}

/// A store or internal failure: logged, and reported without internals.
pub fn internal(context: &str, error: impl std::fmt::Display) -> HttpResponse {
    log::error!("{context}: {error}");
    status(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{context}: the server cannot answer now; try again"),
    )
}

fn respond(status: StatusCode, body: Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(CONTENT_TYPE)
        .insert_header(("Cache-Control", "no-store"))
        .body(body.to_string())
}

/// 404 for any unknown path.
pub async fn not_found() -> HttpResponse {
    status(StatusCode::NOT_FOUND, "no such resource")
}

/// `405` for a known path asked with a method it does not take; `allow` lists those it takes.
pub async fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut response = status(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("this resource takes {allow}"),
    );
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(allow) {
        response
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, value);
    }
    response
}
