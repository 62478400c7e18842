//! The message a committed write publishes.

use crate::store::Committed;

/// An account's state moved to `seq`; every type in `types` now has state `seq`.
#[derive(actix::Message, Clone, Debug, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct StateChanged {
    pub account_id: String,
    pub seq: i64,
    pub types: Vec<String>,
}

impl From<Committed> for StateChanged {
    fn from(c: Committed) -> Self {
        StateChanged {
            account_id: c.account_id,
            seq: c.seq,
            types: c.types.into_iter().collect(),
        }
    }
}
