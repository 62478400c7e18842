//! `POST /jmap/api` (RFC 8620 §3.1): one Request in, one Response out.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;

use super::{AppState, auth, problem};
use actix_web::http::header::AUTHORIZATION;

use crate::dispatcher::{AuthenticateAndRun, AuthenticatedRun, RunRequest};
use crate::jmap::error::RequestError;
use crate::jmap::request::parse_request;

/// `POST /jmap/api`
///
/// A caller whose `Authorization` header authenticated before (`callers`) costs one dispatcher
/// round trip: its credentials travel with the request and are checked where it runs. Any other
/// caller is authenticated first. Either way the credentials are checked against the store on
/// every request, and nothing but a 401 is answered to credentials that do not hold.
#[expect(
    clippy::too_many_lines,
    reason = "a request's path in order: credentials, body, slot, parse, run, answer"
)]
pub async fn post_api(
    state: web::Data<AppState>,
    req: HttpRequest,
    mut payload: web::Payload,
) -> HttpResponse {
    let Some(credentials) = auth::credentials(&req) else {
        return auth::unauthorized("authentication required: use HTTP Basic or a Bearer token");
    };
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let (user_id, principal) = match state.callers.user_of(&header) {
        Some(user_id) => (user_id, None),
        None => match auth::authenticate(&state, &req).await {
            Ok(p) => {
                state.callers.remember(&header, &p.user_id);
                (p.user_id.clone(), Some(p))
            }
            Err(response) => return response,
        },
    };
    // An answer other than the request's own is only given once the credentials are known to hold.
    let refuse = async |response: HttpResponse, checked: bool| {
        if checked {
            return response;
        }
        match auth::authenticate(&state, &req).await {
            Ok(_) => response,
            Err(unauthorized) => {
                state.callers.forget(&header);
                unauthorized
            }
        }
    };
    let checked = principal.is_some();
    let limits = &state.server.limits;
    if !is_json(&req) {
        let e = RequestError::not_json("the Content-Type must be application/json");
        return refuse(problem::request_error(&e), checked).await;
    }
    // The body is read before a request slot is taken, and within a deadline: a client that
    // trickles its body holds a connection, never the user's slots for running requests.
    let body_timeout = std::time::Duration::from_secs(state.body_timeout_secs);
    let read = read_body(&req, &mut payload, limits.max_size_request);
    let body = match actix_web::rt::time::timeout(body_timeout, read).await {
        Ok(Ok(body)) => body,
        Ok(Err(response)) => return refuse(response, checked).await,
        Err(_) => {
            let why = format!(
                "the request body did not arrive within {} s",
                body_timeout.as_secs()
            );
            return refuse(problem::status(StatusCode::REQUEST_TIMEOUT, why), checked).await;
        }
    };
    // RFC 8620 §3.6.1: limits are checked before anything runs.
    let Some(_slot) = state
        .requests
        .try_acquire(&user_id, limits.max_concurrent_requests)
    else {
        let e = RequestError::limit(
            "maxConcurrentRequests",
            format!(
                "at most {} requests may run at once",
                limits.max_concurrent_requests
            ),
        );
        return refuse(problem::request_error(&e), checked).await;
    };
    let request = match parse_request(&body) {
        Ok(r) => r,
        Err(e) => return refuse(problem::request_error(&e), checked).await,
    };
    let outcome = match principal {
        Some(principal) => state
            .dispatcher
            .send(RunRequest {
                principal,
                request,
                queued_at: std::time::Instant::now(),
            })
            .await
            .map(|r| r.map(AuthenticatedRun::Ran)),
        None => {
            state
                .dispatcher
                .send(AuthenticateAndRun {
                    credentials,
                    user_id,
                    request,
                    queued_at: std::time::Instant::now(),
                })
                .await
        }
    };
    match outcome {
        Ok(Ok(AuthenticatedRun::Ran(Ok(response)))) => HttpResponse::Ok()
            .content_type("application/json")
            .body(serde_json::Value::Object(response.to_json()).to_string()),
        Ok(Ok(AuthenticatedRun::Ran(Err(e)))) => problem::request_error(&e),
        Ok(Ok(AuthenticatedRun::Refused)) => {
            state.callers.forget(&header);
            auth::unauthorized("wrong user name, password or token")
        }
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
