//! The JMAP protocol layer (RFC 8620, RFC 8621), without I/O.
//!
//! Nothing here touches the network, an actor or the database: a request comes in as bytes or
//! JSON, is parsed and validated ([`request`], [`json`], [`args`]), run call by call with result
//! references resolved ([`dispatch`], [`reference`], [`pointer`]) through the [`methods`] table,
//! and goes out as a [`request::Response`] or an [`error::RequestError`]. Method handlers reach
//! data through their context type, which the store layer implements. This keeps every rule of the
//! protocol testable on its own.

pub mod args;
pub mod capability;
pub mod changes;
pub mod dispatch;
pub mod error;
pub mod json;
pub mod methods;
pub mod patch;
pub mod pointer;
pub mod reference;
pub mod request;
pub mod session;
pub mod standard;
pub mod webhook_policy;
