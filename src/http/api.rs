//! `POST /jmap/api` (RFC 8620 §3.1): one Request in, one Response out.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;

use super::{AppState, auth, problem};
use crate::dispatcher::RunRequest;
use crate::jmap::error::RequestError;
use crate::jmap::request::parse_request;

/// `POST /jmap/api`
pub async fn post_api(
    state: web::Data<AppState>,
    req: HttpRequest,
    mut payload: web::Payload,
) -> HttpResponse {
    let principal = match auth::authenticate(&state, &req).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    let limits = &state.server.limits;
    // RFC 8620 §3.6.1: limits are checked before anything runs.
    let Some(_slot) = state
        .requests
        .try_acquire(&principal.user_id, limits.max_concurrent_requests)
    else {
        return problem::request_error(&RequestError::limit(
            "maxConcurrentRequests",
            format!(
                "at most {} requests may run at once",
                limits.max_concurrent_requests
            ),
        ));
    };
    if !is_json(&req) {
        return problem::request_error(&RequestError::not_json(
            "the Content-Type must be application/json",
        ));
    }
    let body = match read_body(&req, &mut payload, limits.max_size_request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let request = match parse_request(&body) {
        Ok(r) => r,
        Err(e) => return problem::request_error(&e),
    };
    match state
        .dispatcher
        .send(RunRequest { principal, request })
        .await
    {
        Ok(Ok(Ok(response))) => HttpResponse::Ok()
            .content_type("application/json")
            .body(serde_json::Value::Object(response.to_json()).to_string()),
        Ok(Ok(Err(e))) => problem::request_error(&e),
        Ok(Err(e)) => problem::internal("request", e),
        Err(e) => problem::internal("request", e),
    }
}

fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Reads the body, refusing more than `max` octets with a `maxSizeRequest` limit error.
async fn read_body(
    req: &HttpRequest,
    payload: &mut web::Payload,
    max: u64,
) -> Result<Vec<u8>, HttpResponse> {
    let too_large = || {
        problem::request_error(&RequestError::limit(
            "maxSizeRequest",
            format!("the request is larger than {max} octets"),
        ))
    };
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0).min(max) as usize);
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            problem::status(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )
        })?;
        if (body.len() + chunk.len()) as u64 > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
