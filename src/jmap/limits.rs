//! The core limits (RFC 8620 §2): configured once, advertised in the session, enforced everywhere.

use serde::{Deserialize, Serialize};

/// Core capability limits. Defaults are at or above RFC 8620's suggested minimums.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest upload, in octets.
    pub max_size_upload: u64,
    /// Uploads one user may run at once.
    pub max_concurrent_upload: u64,
    /// Largest API request body, in octets.
    pub max_size_request: u64,
    /// API requests (HTTP and WebSocket together) one user may run at once.
    pub max_concurrent_requests: u64,
    /// Method calls in one request.
    pub max_calls_in_request: u64,
    /// Records one /get may return.
    pub max_objects_in_get: u64,
    /// Creates + updates + destroys in one /set.
    pub max_objects_in_set: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_size_upload: 50_000_000,
            max_concurrent_upload: 4,
            max_size_request: 10_000_000,
            max_concurrent_requests: 8,
            max_calls_in_request: 32,
            max_objects_in_get: 500,
            max_objects_in_set: 500,
        }
    }
}
