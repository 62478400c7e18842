//! The HTTP face of Herald: routes, authentication and problem responses.

pub mod api;
pub mod auth;
pub mod blob;
pub mod callers;
pub mod cors;
pub mod eventsource;
pub mod failed_logins;
pub mod limiter;
pub mod problem;
pub mod session;
pub mod slot_session;
pub mod ticket;
pub mod ws;
pub mod ws_frames;

use std::sync::Arc;

use actix::Addr;
use actix_web::web;

use crate::dispatcher::Dispatcher;
use crate::jmap::session::ServerInfo;

/// State shared by every request handler.
pub struct AppState {
    pub server: Arc<ServerInfo>,
    pub dispatcher: Addr<Dispatcher>,
    /// Running API requests per user (`maxConcurrentRequests`).
    pub requests: limiter::ConcurrencyLimiter,
    /// Push: registry, settings, connection caps, tickets.
    pub push: Arc<crate::push::PushState>,
    /// Running uploads per user (`maxConcurrentUpload`).
    pub uploads: limiter::ConcurrencyLimiter,
    /// Which user each recently authenticated `Authorization` header belongs to.
    pub callers: callers::CallerHints,
    /// `[server] request_body_timeout_secs`.
    pub body_timeout_secs: u64,
    /// Failed logins per client address (`auth.max_failed_logins_per_minute`).
    pub failed_logins: failed_logins::FailedLogins,
}

/// Registers every route. A known path asked with a method it does not take is answered `405`
/// with `Allow` (RFC 9110 §15.5.6); every `GET` also answers `HEAD` (RFC 9110 §9.1: actix
/// sends the headers without the body).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(readable("/.well-known/jmap", session::well_known))
        .service(readable("/jmap/session", session::get_session))
        .service(posted("/jmap/api", api::post_api))
        .service(posted("/jmap/api/", api::post_api))
        .service(posted("/jmap/ticket", ticket::post_ticket))
        .service(only_get("/jmap/ws", ws::upgrade))
        .service(only_get("/jmap/eventsource", eventsource::get_stream))
        .service(only_get("/jmap/eventsource/", eventsource::get_stream))
        .service(posted("/jmap/upload/{account_id}/", blob::upload))
        .service(posted("/jmap/upload/{account_id}", blob::upload))
        // `{name}` may be empty: a client may expand a part without a name as "".
        .service(readable(
            "/jmap/download/{account_id}/{blob_id}/{name:.*}",
            blob::download,
        ))
        .default_service(web::to(problem::not_found));
}

/// A resource read with `GET` or `HEAD`.
fn readable<F, Args>(path: &'static str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args> + Clone,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler))
        .default_service(web::to(|| problem::method_not_allowed("GET, HEAD")))
}

/// A resource that only takes `POST`.
fn posted<F, Args>(path: &'static str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::post().to(handler))
        .default_service(web::to(|| problem::method_not_allowed("POST")))
}

/// A stream opened with `GET` (a WebSocket upgrade, an EventSource): `HEAD` opens nothing.
fn only_get<F, Args>(path: &'static str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler))
        .default_service(web::to(|| problem::method_not_allowed("GET")))
}
