//! `POST /jmap/ticket`, and authentication of push streams by header or ticket.
//!
//! Browsers cannot set headers on `EventSource` or `WebSocket`; an authenticated client gets a
//! short-lived, single-use ticket here and passes it as `?ticket=` (see `push::tickets`).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::{AppState, auth, problem};
use crate::jmap::session::Principal;
use crate::push::connections::CapReached;

/// `POST /jmap/ticket`: `{"ticket": "...", "expiresInSeconds": N}`.
pub async fn post_ticket(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let principal = match auth::authenticate(&state, &req).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    match state.push.tickets.issue(principal) {
        Ok(ticket) => HttpResponse::Ok()
            .content_type("application/json")
            .insert_header(("Cache-Control", "no-store"))
            .body(
                json!({
                    "ticket": ticket,
                    "expiresInSeconds": state.push.tickets.ttl().as_secs(),
                })
                .to_string(),
            ),
        Err(e) => problem::status(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// The `ticket` query parameter, if any.
fn ticket_param(req: &HttpRequest) -> Option<String> {
    web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok()?
        .into_inner()
        .remove("ticket")
}

/// Authenticates a push stream: `?ticket=` when present (used up here), else Basic/Bearer.
pub async fn authenticate_stream(
    state: &AppState,
    req: &HttpRequest,
) -> Result<Principal, HttpResponse> {
    match ticket_param(req) {
        Some(ticket) => state
            .push
            .tickets
            .redeem(&ticket)
            .ok_or_else(|| auth::unauthorized("the ticket is unknown, already used or expired")),
        None => auth::authenticate(state, req).await,
    }
}

/// The answer when a push connection cap refuses a user: 429 for the per-user cap, 503 for the
/// node's, as problem JSON with `Retry-After`.
pub fn cap_refused(e: CapReached) -> HttpResponse {
    let status = match e {
        CapReached::PerUser(_) => StatusCode::TOO_MANY_REQUESTS,
        CapReached::Total(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut response = problem::status(status, e.to_string());
    response.headers_mut().insert(
        actix_web::http::header::RETRY_AFTER,
        actix_web::http::header::HeaderValue::from_static("30"),
    );
    response
}
