//! Push: telling subscribers that an account's state changed (RFC 8620 §7, RFC 8887).
//!
//! The dispatcher publishes one [`StateChanged`] per committed write, after commit. The registry,
//! the per-account hubs, the session actors and the webhook sender that consume it are described
//! in ../shared/DESIGN.md.

pub mod cluster_bus;
pub mod state_change;

pub use state_change::StateChanged;
