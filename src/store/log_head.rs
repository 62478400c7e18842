//! Where SQLite's change log ends, and which accounts were written after a given end: how the
//! SQLite bus (`push::local_bus`) finds the writes of other processes without reading every
//! account each time the database changed.
//!
//! SQLite numbers a table's rows (`rowid`) one above the highest in use, and takes one writer at a
//! time, so change-log rows are numbered in commit order: the rows a reader has not seen are those
//! above the highest it saw. Numbers are reused only after the highest rows are deleted, and the
//! change log loses rows only with their account (`herald user remove`), in a transaction that
//! announces the access epoch (`store::access_epoch`): the bus reads every account then. Any code
//! that deletes change-log rows must announce the epoch in the same transaction. (An operator's
//! `VACUUM` renumbers the rows of a log that lost some, downwards: the next check finds the end
//! lower than it was and reads every account too.)

use diesel::RunQueryDsl;
use diesel::sql_types::{BigInt, Text};

use super::{AnyConnection, StoreError};

#[derive(diesel::QueryableByName)]
struct Head {
    #[diesel(sql_type = BigInt)]
    head: i64,
}

#[derive(diesel::QueryableByName)]
struct Position {
    #[diesel(sql_type = Text)]
    account_id: String,
    #[diesel(sql_type = BigInt)]
    seq: i64,
}

/// The number of the newest change-log row; 0 for an empty log. SQLite only.
pub fn log_head(conn: &mut AnyConnection) -> Result<i64, StoreError> {
    let AnyConnection::Sqlite(c) = conn else {
        return Err(not_sqlite());
    };
    Ok(
        diesel::sql_query("SELECT COALESCE(MAX(rowid), 0) AS head FROM change_log")
            .get_result::<Head>(c)?
            .head,
    )
}

// NOT INDEXED: otherwise SQLite groups along the (account_id, seq) index and reads all of it,
// filtering by row number (24 ms for 10 rows of 235,000); without it, it reads the range of row
// numbers and groups apart (0.2 ms).
const WRITTEN_AFTER: &str = "SELECT account_id, MAX(seq) AS seq FROM change_log NOT INDEXED \
                             WHERE rowid > ? GROUP BY account_id";

/// Each account with change-log rows numbered above `head`, and its newest seq among them.
/// SQLite only.
pub fn written_after(
    conn: &mut AnyConnection,
    head: i64,
) -> Result<Vec<(String, i64)>, StoreError> {
    let AnyConnection::Sqlite(c) = conn else {
        return Err(not_sqlite());
    };
    Ok(diesel::sql_query(WRITTEN_AFTER)
        .bind::<BigInt, _>(head)
        .load::<Position>(c)?
        .into_iter()
        .map(|p| (p.account_id, p.seq))
        .collect())
}

fn not_sqlite() -> StoreError {
    StoreError::Invalid("the change log's row numbers are SQLite's".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ChangeOp, Store, accounts, users, write};

    fn account_of(conn: &mut AnyConnection, user: &str) -> String {
        let u = users::create(conn, user, "pw").unwrap();
        accounts::personal_account(conn, &u.id).unwrap()
    }

    fn write_one(conn: &mut AnyConnection, account: &str) -> i64 {
        let ((), committed) = write(conn, account, |txn| {
            txn.record("Mailbox", "m1", ChangeOp::Updated);
            Ok(())
        })
        .unwrap();
        committed.unwrap().seq
    }

    #[test]
    fn the_accounts_written_after_a_head_are_listed_with_their_newest_seq() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}/t.db", dir.path().display()), 2).unwrap();
        let mut conn = store.conn().unwrap();
        let (alice, bob) = (account_of(&mut conn, "alice"), account_of(&mut conn, "bob"));
        let empty = log_head(&mut conn).unwrap();
        write_one(&mut conn, &alice);
        let head = log_head(&mut conn).unwrap();
        assert!(head > empty);
        assert_eq!(written_after(&mut conn, head).unwrap(), vec![]);
        let a2 = write_one(&mut conn, &alice);
        let b1 = write_one(&mut conn, &bob);
        let a3 = write_one(&mut conn, &alice);
        assert!(a3 > a2);
        let mut after = written_after(&mut conn, head).unwrap();
        after.sort();
        let mut expected = vec![(alice.clone(), a3), (bob.clone(), b1)];
        expected.sort();
        assert_eq!(after, expected);
        let newest = log_head(&mut conn).unwrap();
        assert_eq!(written_after(&mut conn, newest).unwrap(), vec![]);
    }

    #[test]
    fn only_the_rows_after_the_head_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&format!("sqlite://{}/t.db", dir.path().display()), 2).unwrap();
        let mut conn = store.conn().unwrap();
        let AnyConnection::Sqlite(c) = &mut *conn else {
            unreachable!()
        };
        #[derive(diesel::QueryableByName)]
        struct Step {
            #[diesel(sql_type = Text)]
            detail: String,
        }
        let plan: Vec<String> = diesel::sql_query(format!(
            "EXPLAIN QUERY PLAN {}",
            WRITTEN_AFTER.replace('?', "5")
        ))
        .load::<Step>(c)
        .unwrap()
        .into_iter()
        .map(|s| s.detail)
        .collect();
        assert!(
            plan.iter().any(|d| d.contains("rowid>")),
            "a search by row number: {plan:?}"
        );
        assert!(!plan.iter().any(|d| d.contains("SCAN")), "{plan:?}");
    }
}
