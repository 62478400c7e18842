//! Reads that must describe one committed state.
//!
//! A JMAP response pairs data with a state string (RFC 8620 §5.1, §5.5, §5.6): a client stores
//! both and later asks what changed *since that state*. If the rows were read before a write
//! committed and the state after it, the client is told it has a change it never saw, and the
//! next `/changes` or `/queryChanges` leaves it out for good. So every read a method makes for one
//! response runs in one transaction that sees a single snapshot:
//!
//! - SQLite (WAL): a deferred transaction takes its snapshot at its first read and keeps it.
//! - PostgreSQL: `REPEATABLE READ`; the default `READ COMMITTED` gives each statement its own.
//!
//! Inside a transaction that is already open (a write, or a snapshot around the whole method)
//! nothing is opened: the outer one decides what is seen.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use diesel::connection::{AnsiTransactionManager, Connection, TransactionManager};

use super::{AnyConnection, StoreError};

/// Opens a snapshot transaction unless one is open; returns whether this call opened it.
pub fn begin(conn: &mut AnyConnection) -> diesel::QueryResult<bool> {
    let depth =
        <AnyConnection as Connection>::TransactionManager::transaction_manager_status_mut(conn)
            .transaction_depth()?;
    if depth.is_some() {
        return Ok(false);
    }
    match conn {
        AnyConnection::Postgresql(c) => {
            AnsiTransactionManager::begin_transaction_sql(
                c,
                "BEGIN ISOLATION LEVEL REPEATABLE READ",
            )?;
        }
        AnyConnection::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN")?,
    }
    Ok(true)
}

/// Ends a snapshot transaction that [`begin`] opened: committed after success (a method that
/// reads may still have written, e.g. the header index), rolled back after an error.
pub fn end(conn: &mut AnyConnection, succeeded: bool) -> diesel::QueryResult<()> {
    if succeeded {
        <AnyConnection as Connection>::TransactionManager::commit_transaction(conn)
    } else {
        <AnyConnection as Connection>::TransactionManager::rollback_transaction(conn)
    }
}

/// Runs `read` with `owner`'s connection (reached through `conn`) in one snapshot. A panic in
/// `read` rolls the transaction back before it goes on, so the connection never returns to its
/// pool, or to the next method of the request, inside a stale transaction.
pub fn run<O, T, E>(
    owner: &mut O,
    conn: fn(&mut O) -> &mut AnyConnection,
    read: impl FnOnce(&mut O) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<StoreError>,
{
    let opened = begin(conn(owner)).map_err(StoreError::from)?;
    let outcome = catch_unwind(AssertUnwindSafe(|| read(owner)));
    if opened {
        let succeeded = matches!(outcome, Ok(Ok(_)));
        let ended = end(conn(owner), succeeded);
        if let (Ok(Ok(_)), Err(e)) = (&outcome, ended) {
            return Err(StoreError::from(e).into());
        }
    }
    match outcome {
        Ok(result) => result,
        Err(panic) => resume_unwind(panic),
    }
}

/// [`run`] for a bare connection.
pub fn read<T, E>(
    conn: &mut AnyConnection,
    read: impl FnOnce(&mut AnyConnection) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<StoreError>,
{
    run(conn, |c| c, read)
}
