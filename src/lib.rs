//! Herald: a JMAP mail server (RFC 8620, RFC 8621) built around push (RFC 8620 §7, RFC 8887).
//!
//! The layout follows the architecture in ../shared/DESIGN.md:
//! - [`jmap`]: the protocol, without I/O: envelopes, errors, result references, the method table
//!   and the dispatch loop;
//! - [`store`]: Diesel over SQLite or PostgreSQL, and the per-account change log;
//! - [`dispatcher`]: the actor pool that runs requests against the store;
//! - [`http`]: routes, authentication, problem responses;
//! - [`push`]: state changes for push subscribers;
//! - [`server`]: assembling a node; [`config`] and [`cli`]: running one.

pub mod backoff;
pub mod cli;
pub mod config;
pub mod dispatcher;
pub mod http;
pub mod jmap;
pub mod lmtp;
pub mod logging;
pub mod mail;
pub mod memory_trim;
pub mod metrics;
pub mod outbound;
pub mod push;
pub mod random;
pub mod server;
pub mod store;
