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

/// What one Email/query filter and sort may ask of the database (`[query]`). The database has
/// limits of its own (expression depth, bound variables, ORDER BY terms) that would otherwise
/// surface as `serverFail`; these are lower, and answered as method errors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryLimits {
    /// How deep FilterOperators may nest.
    pub max_filter_depth: usize,
    /// Conditions in one filter, counting each property of a FilterCondition and each word of
    /// its text searches.
    pub max_filter_conditions: usize,
    /// Words and phrases of text searches (`text`, `from`, `to`, `cc`, `bcc`, `subject`, `body`)
    /// in one filter: each is looked up in the full-text index at a cost that grows with the
    /// messages it matches.
    pub max_text_terms: usize,
    /// Ids in one condition (`inMailboxOtherThan`).
    pub max_ids_per_condition: usize,
    /// Comparators in one `sort`.
    pub max_sort_comparators: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            max_filter_depth: 10,
            max_filter_conditions: 100,
            max_text_terms: 4,
            max_ids_per_condition: 1000,
            max_sort_comparators: 10,
        }
    }
}
