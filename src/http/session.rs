//! The session resource (RFC 8620 §2) and its well-known alias.

use actix_web::{HttpRequest, HttpResponse, web};

use super::{AppState, auth};
use crate::jmap::session::session_object;

/// `GET /jmap/session`
pub async fn get_session(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let principal = match auth::authenticate(&state, &req).await {
        Ok(p) => p,
        Err(response) => return response,
    };
    HttpResponse::Ok()
        .content_type("application/json")
        // RFC 8620 §2: the session must not be cached.
        .insert_header(("Cache-Control", "no-cache, no-store, must-revalidate"))
        .body(session_object(&state.server, &principal).to_string())
}

/// `GET /.well-known/jmap` redirects to the session resource (RFC 8620 §2.2).
pub async fn well_known(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::TemporaryRedirect()
        .insert_header((
            "Location",
            format!("{}/jmap/session", state.server.base_url),
        ))
        .insert_header(("Cache-Control", "no-cache, no-store, must-revalidate"))
        .finish()
}
