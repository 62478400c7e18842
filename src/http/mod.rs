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

/// Registers every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/.well-known/jmap", web::get().to(session::well_known))
        .route("/jmap/session", web::get().to(session::get_session))
        .route("/jmap/api", web::post().to(api::post_api))
        .route("/jmap/api/", web::post().to(api::post_api))
        .route("/jmap/ticket", web::post().to(ticket::post_ticket))
        .route("/jmap/ws", web::get().to(ws::upgrade))
        .route("/jmap/eventsource", web::get().to(eventsource::get_stream))
        .route("/jmap/eventsource/", web::get().to(eventsource::get_stream))
        .route("/jmap/upload/{account_id}/", web::post().to(blob::upload))
        .route("/jmap/upload/{account_id}", web::post().to(blob::upload))
        .route(
            "/jmap/download/{account_id}/{blob_id}/{name}",
            web::get().to(blob::download),
        )
        .default_service(web::to(problem::not_found));
}
