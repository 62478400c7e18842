//! Writes that must survive a power cut before Herald says they happened.
//!
//! SQLite runs with `synchronous = NORMAL` (docs/architecture.md): in WAL mode a commit reaches
//! the disk at the next checkpoint, so a power cut or an operating-system crash may undo the last
//! commits (a crash of Herald alone never does). That is fine for a flag a client set, not for a
//! message an MTA handed over: once Herald answers `250`, the MTA deletes its copy, and accepted
//! mail is the receiver's to keep (RFC 5321 §6.1). Such writes commit with `synchronous = FULL`,
//! which syncs the log before the commit returns. PostgreSQL commits durably by default.

use diesel::connection::SimpleConnection;

use super::{AnyConnection, StoreError};

/// Runs `write` (which commits) so that its commit is on disk when it returns.
pub fn write<T>(
    conn: &mut AnyConnection,
    write: impl FnOnce(&mut AnyConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    if !matches!(conn, AnyConnection::Sqlite(_)) {
        return write(conn);
    }
    conn.batch_execute("PRAGMA synchronous = FULL")?;
    let result = write(conn);
    if let Err(e) = conn.batch_execute("PRAGMA synchronous = NORMAL") {
        // Only slower: this connection keeps syncing every commit.
        log::warn!("store: cannot set synchronous = NORMAL again: {e}");
    }
    result
}

#[cfg(test)]
mod tests {
    use diesel::sql_types::BigInt;
    use diesel::{QueryableByName, RunQueryDsl};

    use super::*;
    use crate::store::connection::{StoreUrl, establish};

    #[derive(QueryableByName)]
    struct Synchronous {
        #[diesel(sql_type = BigInt)]
        synchronous: i64,
    }

    fn synchronous(conn: &mut AnyConnection) -> i64 {
        match conn {
            AnyConnection::Sqlite(c) => {
                diesel::sql_query("PRAGMA synchronous")
                    .get_result::<Synchronous>(c)
                    .unwrap()
                    .synchronous
            }
            AnyConnection::Postgresql(_) => unreachable!("a sqlite URL"),
        }
    }

    #[test]
    fn a_durable_write_syncs_its_commit_and_the_connection_goes_back_to_normal() {
        let dir = tempfile::tempdir().unwrap();
        let url = StoreUrl::Sqlite(dir.path().join("h.db").display().to_string());
        let mut conn = establish(&url).unwrap();
        const NORMAL: i64 = 1;
        const FULL: i64 = 2;
        assert_eq!(synchronous(&mut conn), NORMAL);
        let inside = write(&mut conn, |c| Ok(synchronous(c))).unwrap();
        assert_eq!(inside, FULL);
        assert_eq!(synchronous(&mut conn), NORMAL);
        let failed: Result<(), _> = write(&mut conn, |_| Err(StoreError::Invalid("no".into())));
        assert!(failed.is_err());
        assert_eq!(synchronous(&mut conn), NORMAL, "also after a failed write");
    }
}
