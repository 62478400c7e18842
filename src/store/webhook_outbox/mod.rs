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

use diesel::prelude::*;

use super::schema::push_deliveries;
use super::{AnyConnection, StoreError};

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
