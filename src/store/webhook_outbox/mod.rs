//! The webhook outbox (`push_deliveries`) in the database.
//!
//! The outbox holds at most one pending delivery per subscription: a PushVerification, or a
//! StateChange into which newer states are merged. A row is claimed with a lease
//! (`claimed_by`, `claimed_until`) while its POST is in flight, so at most one POST per
//! subscription runs, and a node that dies mid-POST only delays the row until the lease runs out.
//! The sender claims due rows in batches ([`claim_due`]: one `UPDATE … RETURNING`; on
//! PostgreSQL the rows are picked `FOR UPDATE SKIP LOCKED`, so concurrent claimers split the due
//! rows instead of queueing on them) and records the outcomes of finished POSTs in batches
//! ([`settle`]); until its outcome is recorded a row stays claimed, so a crash in between only
//! means the delivery is sent again. A single-row [`claim`] is one conditional `UPDATE`: on
//! PostgreSQL a second node's update waits for the first one's row lock and then re-checks its
//! `WHERE` against the claimed row, so it claims nothing (`tests/integration/cluster.rs` races eight
//! claimers of each kind). The lease is `push.claim_lease_secs`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use diesel::prelude::*;

use super::schema::push_deliveries;
use super::static_sql::StaticSql;
use super::{AnyConnection, StoreError};

/// Outbox row kinds.
pub const KIND_VERIFICATION: i32 = 1;
pub const KIND_STATE_CHANGE: i32 = 2;

/// `{"accountId": {"Type": seq}}`: what a pending StateChange will say.
pub type ChangedStates = BTreeMap<String, BTreeMap<String, i64>>;

static OUTBOX_SIGNAL: LazyLock<tokio::sync::watch::Sender<u64>> =
    LazyLock::new(|| tokio::sync::watch::channel(0).0);

/// Bumped whenever a request queues an outbox row (a new subscription's verification), so the
/// webhook sender wakes at once instead of at its next poll. Process-wide: every sender in the
/// process wakes and looks at its own store.
pub fn outbox_signal() -> &'static tokio::sync::watch::Sender<u64> {
    &OUTBOX_SIGNAL
}

/// Starts a transaction's writing before its reads. SQLite answers "database is locked" at once,
/// without waiting, to a transaction that read and then wants to write while another writer is
/// active (waiting could deadlock); a transaction that writes first waits its turn instead
/// (`busy_timeout`), as `changelog::write` does. This write matches no row.
pub(crate) fn take_write_lock(conn: &mut AnyConnection) -> Result<(), StoreError> {
    if let AnyConnection::Postgresql(_) = conn {
        // Row locks, taken by the writes themselves: nothing to do, and a round trip saved.
        return Ok(());
    }
    // Hand-written so that it stays prepared: Diesel never caches an UPDATE, and this runs in
    // every catch-up and settlement.
    StaticSql::new(
        "UPDATE push_cursors SET seq = 0 WHERE subscription_id = ''",
        Vec::new(),
    )
    .run(conn)?;
    Ok(())
}

/// Pending deliveries (the outbox's depth).
pub fn depth(conn: &mut AnyConnection) -> Result<i64, StoreError> {
    Ok(push_deliveries::table.count().get_result(conn)?)
}

mod catch_up;
mod claims;

pub use catch_up::{MissingCursor, catch_up, catch_up_all};
pub use claims::{
    ClaimedDelivery, Settlement, claim, claim_due, complete, destroy_expired, fail, next_wake,
    release_all_claims, settle,
};
