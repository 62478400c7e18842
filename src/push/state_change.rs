//! The message a committed write publishes.

use crate::store::Committed;

/// An account's state moved to `seq`; every type in `types` now has state `seq`.
#[derive(actix::Message, Clone, Debug, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct StateChanged {
    pub account_id: String,
    pub seq: i64,
    pub types: Vec<String>,
    /// When the write committed (ms since the epoch), if known: for the push latency metric.
    pub committed_at_ms: Option<i64>,
}

impl From<Committed> for StateChanged {
    fn from(c: Committed) -> Self {
        StateChanged {
            account_id: c.account_id,
            seq: c.seq,
            types: c.types.into_iter().collect(),
            committed_at_ms: c.committed_at_ms,
        }
    }
}
