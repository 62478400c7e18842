//! What both publication paths share (`ClusterBus` on PostgreSQL, `LocalBus` on SQLite): the
//! newest position published per account, so that a write is published once and in order however
//! it was learnt of (announced, or read back from the change log), and the catch-up read.

use std::collections::HashMap;

use actix::Recipient;

use super::StateChanged;
use crate::store::{Store, StoreError, changelog};

/// The local publishers (push registry, webhook sender) and what they have been given.
pub struct Publication {
    publishers: Vec<Recipient<StateChanged>>,
    /// Newest position published per account.
    published: HashMap<String, i64>,
}

impl Publication {
    /// `baseline`: each account's position when the node started (earlier writes are history,
    /// not news).
    pub fn new(publishers: Vec<Recipient<StateChanged>>, baseline: Vec<(String, i64)>) -> Self {
        Publication {
            publishers,
            published: baseline.into_iter().collect(),
        }
    }

    /// The newest position published for `account` (0 for an account never seen).
    pub fn position(&self, account: &str) -> i64 {
        self.published.get(account).copied().unwrap_or(0)
    }

    /// A copy of every account's position, for a catch-up read on another thread.
    pub fn positions(&self) -> HashMap<String, i64> {
        self.published.clone()
    }

    /// Of the accounts' current `positions`, those ahead of what was published, each with the
    /// position published so far.
    pub fn behind(&self, positions: Vec<(String, i64)>) -> Vec<(String, i64)> {
        positions
            .into_iter()
            .filter_map(|(account, seq)| {
                let since = self.position(&account);
                (seq > since).then_some((account, since))
            })
            .collect()
    }

    /// Hands `change` to every publisher, unless it was published already.
    pub fn publish(&mut self, change: StateChanged) {
        let newest = self.published.entry(change.account_id.clone()).or_insert(0);
        if change.seq <= *newest {
            return;
        }
        *newest = change.seq;
        for p in &self.publishers {
            if p.try_send(change.clone()).is_err() {
                log::warn!(
                    "push publisher full or gone; change of {} dropped",
                    change.account_id
                );
            }
        }
    }
}

/// The writes after the positions in `published`, for every account that moved, oldest first
/// per account (`ClusterBus` after a reconnect).
pub fn missed_writes(
    store: &Store,
    published: &HashMap<String, i64>,
) -> Result<Vec<StateChanged>, StoreError> {
    let positions = changelog::positions(&mut *store.conn()?)?;
    let behind: Vec<(String, i64)> = positions
        .into_iter()
        .filter_map(|(account, seq)| {
            let since = published.get(&account).copied().unwrap_or(0);
            (seq > since).then_some((account, since))
        })
        .collect();
    writes_after(store, &behind)
}

/// The writes of each `(account, since)` after `since`, oldest first per account.
pub fn writes_after(
    store: &Store,
    behind: &[(String, i64)],
) -> Result<Vec<StateChanged>, StoreError> {
    let mut conn = store.conn()?;
    let mut out = Vec::new();
    for (account, since) in behind {
        out.extend(
            changelog::writes_since(&mut conn, account, *since)?
                .into_iter()
                .map(StateChanged::from),
        );
    }
    Ok(out)
}
