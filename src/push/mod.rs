//! Push: telling subscribers that an account's state changed (RFC 8620 §7, RFC 8887).
//!
//! The dispatcher publishes one [`StateChanged`] per committed write, after commit, to the
//! [`registry::Registry`], which hands it to the [`hub::AccountHub`] of the account; the hub merges it
//! into the [`slot::ChangeSlot`] of each connection (WebSocket, EventSource) subscribed to that
//! account. See ../shared/DESIGN.md.

pub mod budget;
pub mod cluster_bus;
pub mod connections;
pub mod frame;
pub mod hub;
pub mod local_bus;
pub mod pending;
pub mod position;
pub mod publication;
pub mod registry;
pub mod slot;
pub mod state_change;
pub mod vapid;
pub mod wake;
pub mod webhook;
pub mod webhook_body;
pub mod webpush;

pub use state_change::StateChanged;

/// The data types every account may report (RFC 8620, RFC 8621): a client whose position the
/// change log no longer reaches is told all of them changed.
pub const DATA_TYPES: &[&str] = &[
    "Mailbox",
    "Email",
    "Thread",
    "EmailDelivery",
    "Identity",
    "EmailSubmission",
    "VacationResponse",
];

/// What the HTTP handlers need for push: the registry, the settings and the caps (stream tickets
/// are in the store: `store::tickets`).
pub struct PushState {
    pub registry: actix::Addr<registry::Registry>,
    pub config: crate::config::PushConfig,
    pub caps: connections::ConnectionCaps,
}

impl PushState {
    /// Push state for a node, with a started registry.
    pub fn new(
        registry: actix::Addr<registry::Registry>,
        config: crate::config::PushConfig,
    ) -> Self {
        PushState {
            registry,
            caps: connections::ConnectionCaps::new(
                config.max_connections_per_user,
                config.max_connections,
            ),
            config,
        }
    }
}
