//! The access epoch: how a change of access reaches every server process at once.
//!
//! `herald account share`/`unshare` and `herald user remove` run in their own process (or on
//! another node), so the push registry of a running server cannot be told directly. They bump one counter
//! in their transaction ([`announce`]); on PostgreSQL the same transaction sends
//! `NOTIFY herald_access`, which every node's `ClusterBus` hears; on SQLite the `LocalBus` reads
//! the counter whenever the database changed. Either way the registry audits at once, instead of
//! at its next periodic check.

use diesel::prelude::*;

use super::first_row::FirstRowDsl;
use super::schema::access_epoch;
use super::{AnyConnection, StoreError};

/// The PostgreSQL channel that announces access changes.
pub const ACCESS_CHANNEL: &str = "herald_access";

/// Records that access was given or withdrawn; call inside the transaction that changes it.
pub fn announce(conn: &mut AnyConnection) -> Result<(), StoreError> {
    diesel::update(access_epoch::table.find(1))
        .set(access_epoch::epoch.eq(access_epoch::epoch + 1))
        .execute(conn)?;
    if let AnyConnection::Postgresql(c) = conn {
        diesel::sql_query(format!("NOTIFY {ACCESS_CHANNEL}")).execute(c)?;
    }
    Ok(())
}

/// The current epoch.
pub fn current(conn: &mut AnyConnection) -> Result<i64, StoreError> {
    Ok(access_epoch::table
        .find(1)
        .select(access_epoch::epoch)
        .first_row(conn)?)
}
