//! `POST /jmap/ticket`, and authentication of push streams by header or ticket.
//!
//! Browsers cannot set headers on `EventSource` or `WebSocket`; an authenticated client gets a
//! short-lived, single-use ticket here and passes it as `?ticket=` (see `store::tickets`).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::{AppState, auth, problem};
use crate::dispatcher::{IssueTicket, IssuedTicket, RedeemTicket};
use crate::jmap::session::Principal;
use crate::push::connections::CapReached;

/// `POST /jmap/ticket`: `{"ticket": "...", "expiresInSeconds": N}`.
pub async fn post_ticket(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let Some(credentials) = auth::credentials(&req) else {
        return auth::unauthorized("authentication required: use HTTP Basic or a Bearer token");
    };
    let ttl_secs = state.push.config.ticket_ttl_secs;
    let issued = state
        .dispatcher
        .send(IssueTicket {
            credentials,
            ttl_secs,
            max_unused: state.push.config.max_tickets,
        })
        .await;
    match issued {
        Ok(Ok(IssuedTicket::Issued(ticket))) => HttpResponse::Ok()
            .content_type("application/json")
            .insert_header(("Cache-Control", "no-store"))
            .body(json!({"ticket": ticket, "expiresInSeconds": ttl_secs}).to_string()),
        Ok(Ok(IssuedTicket::Unauthorized)) => {
            auth::unauthorized("wrong user name, password or token")
        }
        Ok(Ok(IssuedTicket::TooMany)) => problem::status(
            StatusCode::TOO_MANY_REQUESTS,
            "too many unused tickets; use or let expire the ones issued",
        ),
        Ok(Err(e)) => problem::internal("ticket", e),
        Err(e) => problem::internal("ticket", e),
    }
}

/// The `ticket` query parameter, if any.
fn ticket_param(req: &HttpRequest) -> Option<String> {
    web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .ok()?
        .into_inner()
        .remove("ticket")
}

/// Authenticates a push stream: `?ticket=` when present (used up here, on any node), else
/// Basic/Bearer.
pub async fn authenticate_stream(
    state: &AppState,
    req: &HttpRequest,
) -> Result<Principal, HttpResponse> {
    let Some(ticket) = ticket_param(req) else {
        return auth::authenticate(state, req).await;
    };
    match state.dispatcher.send(RedeemTicket(ticket)).await {
        Ok(Ok(Some(principal))) => Ok(principal),
        Ok(Ok(None)) => Err(auth::unauthorized(
            "the ticket is unknown, already used or expired",
        )),
        Ok(Err(e)) => Err(problem::internal("ticket", e)),
        Err(e) => Err(problem::internal("ticket", e)),
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
