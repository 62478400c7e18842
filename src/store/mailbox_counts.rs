//! Mailbox counts (RFC 8621 §2: `totalEmails`, `unreadEmails`, `totalThreads`, `unreadThreads`),
//! maintained in the transaction of every change that moves them, so that reading them costs the
//! same at a million messages as at a thousand.
//!
//! | table | holds |
//! | --- | --- |
//! | `mailbox_threads` | per mailbox and thread: the thread's emails in the mailbox, and how many of those are unread; a row exists while there is one |
//! | `mailbox_counts` | per mailbox: the four counts |
//!
//! A thread counts in a mailbox's `totalThreads` while its row exists, and in `unreadThreads` while
//! the row's `unread` is above zero (Herald counts a thread as unread in a mailbox when one of its
//! emails *in that mailbox* is unread, MBX-06). Every change is one of two events, applied by
//! [`email_entered`]/[`email_left`] and [`unread_flipped`]; [`recount`] computes the same numbers
//! from scratch, for `herald check` and for the tests that compare the two.
//!
//! The SQL is hand-written (upserts and `RETURNING`, which `MultiConnection` does not offer) and
//! runs on the concrete backend with `$n` parameters, numbered in order of first use so SQLite
//! binds them in the same order as PostgreSQL.

use std::collections::{BTreeMap, HashMap};

use diesel::RunQueryDsl;
use diesel::sql_types::{BigInt, Text};

use super::query_sql::{Dialect, Sql, load};
use super::static_sql::{SqlParam, StaticSql};
use super::{AnyConnection, StoreError};
use crate::jmap::methods::mailbox::MailboxCounts;

#[derive(diesel::QueryableByName)]
struct ThreadRow {
    #[diesel(sql_type = BigInt)]
    emails: i64,
    #[diesel(sql_type = BigInt)]
    unread: i64,
}

#[derive(diesel::QueryableByName)]
struct ThreadRowOf {
    #[diesel(sql_type = Text)]
    mailbox_id: String,
    #[diesel(sql_type = Text)]
    thread_id: String,
    #[diesel(sql_type = BigInt)]
    emails: i64,
    #[diesel(sql_type = BigInt)]
    unread: i64,
}

#[derive(diesel::QueryableByName)]
struct CountsRow {
    #[diesel(sql_type = Text)]
    mailbox_id: String,
    #[diesel(sql_type = BigInt)]
    total_emails: i64,
    #[diesel(sql_type = BigInt)]
    unread_emails: i64,
    #[diesel(sql_type = BigInt)]
    total_threads: i64,
    #[diesel(sql_type = BigInt)]
    unread_threads: i64,
}

impl CountsRow {
    fn counts(&self) -> MailboxCounts {
        MailboxCounts {
            total_emails: self.total_emails.max(0) as u64,
            unread_emails: self.unread_emails.max(0) as u64,
            total_threads: self.total_threads.max(0) as u64,
            unread_threads: self.unread_threads.max(0) as u64,
        }
    }
}

/// Runs `sql` with text parameters `text` then integer parameters `ints`, on either backend.
fn execute(
    conn: &mut AnyConnection,
    sql: &'static str,
    text: &[&str],
    ints: &[i64],
) -> Result<(), StoreError> {
    StaticSql::new(sql, params(text, ints)).run(conn)?;
    Ok(())
}

fn params(text: &[&str], ints: &[i64]) -> Vec<SqlParam> {
    text.iter()
        .map(|t| SqlParam::Text((*t).to_owned()))
        .chain(ints.iter().map(|i| SqlParam::Int(*i)))
        .collect()
}

/// The upsert that adds to (mailbox, thread) rows, around its `VALUES` rows; macros, so that
/// the one-row text stays a `&'static str` (kept prepared, see `static_sql`).
macro_rules! thread_upsert_head {
    () => {
        "INSERT INTO mailbox_threads AS t (account_id, mailbox_id, thread_id, emails, unread) VALUES "
    };
}
macro_rules! thread_upsert_tail {
    () => {
        " ON CONFLICT (account_id, mailbox_id, thread_id) DO UPDATE \
         SET emails = t.emails + excluded.emails, unread = t.unread + excluded.unread \
         RETURNING mailbox_id, thread_id, emails, unread"
    };
}

/// Adds `emails` and `unread` to a (mailbox, thread) row, creating it; returns the row after.
fn add_to_thread(
    conn: &mut AnyConnection,
    keys: [&str; 3],
    emails: i64,
    unread: i64,
) -> Result<ThreadRow, StoreError> {
    // One statement whether the row exists or not (every move and flag change runs it).
    let query = StaticSql::new(
        concat!(
            thread_upsert_head!(),
            "($1, $2, $3, $4, $5)",
            thread_upsert_tail!()
        ),
        params(&keys, &[emails, unread]),
    );
    let row: ThreadRow = match conn {
        AnyConnection::Sqlite(c) => query.load(c)?.pop(),
        AnyConnection::Postgresql(c) => query.load(c)?.pop(),
    }
    .ok_or_else(|| StoreError::Invalid("mailbox_threads row vanished".into()))?;
    if row.emails <= 0 {
        execute(
            conn,
            "DELETE FROM mailbox_threads \
             WHERE account_id = $1 AND mailbox_id = $2 AND thread_id = $3",
            &keys,
            &[],
        )?;
    }
    Ok(row)
}

/// Adds to a mailbox's counts, creating its row.
fn add_to_mailbox(
    conn: &mut AnyConnection,
    account_id: &str,
    mailbox_id: &str,
    deltas: [i64; 4],
) -> Result<(), StoreError> {
    if deltas == [0; 4] {
        return Ok(());
    }
    execute(
        conn,
        "INSERT INTO mailbox_counts AS c \
         (account_id, mailbox_id, total_emails, unread_emails, total_threads, unread_threads) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (account_id, mailbox_id) DO UPDATE \
         SET total_emails = c.total_emails + excluded.total_emails, \
         unread_emails = c.unread_emails + excluded.unread_emails, \
         total_threads = c.total_threads + excluded.total_threads, \
         unread_threads = c.unread_threads + excluded.unread_threads",
        &[account_id, mailbox_id],
        &deltas,
    )
}

/// +1, -1 or 0: how a count over rows with `value > 0` moves when `value` moves by `delta`.
fn crossing(after: i64, delta: i64) -> i64 {
    let before = after - delta;
    i64::from(after > 0) - i64::from(before > 0)
}

fn moved(
    conn: &mut AnyConnection,
    account_id: &str,
    mailbox_id: &str,
    thread_id: &str,
    unread: bool,
    sign: i64,
) -> Result<(), StoreError> {
    let unread = i64::from(unread) * sign;
    let row = add_to_thread(conn, [account_id, mailbox_id, thread_id], sign, unread)?;
    add_to_mailbox(
        conn,
        account_id,
        mailbox_id,
        [
            sign,
            unread,
            crossing(row.emails, sign),
            crossing(row.unread, unread),
        ],
    )
}

/// An email of `thread_id` entered `mailbox_id`.
pub fn email_entered(
    conn: &mut AnyConnection,
    account_id: &str,
    mailbox_id: &str,
    thread_id: &str,
    unread: bool,
) -> Result<(), StoreError> {
    moved(conn, account_id, mailbox_id, thread_id, unread, 1)
}

/// New emails entered mailboxes: `(mailbox, thread, unread)` for each email and mailbox. One
/// statement per few hundred (mailbox, thread) pairs and one per mailbox, however many emails:
/// what an import of many messages needs on PostgreSQL, where each statement is a round trip.
pub fn emails_entered(
    conn: &mut AnyConnection,
    account_id: &str,
    entries: &[(&str, &str, bool)],
) -> Result<(), StoreError> {
    // Several emails of one thread in one mailbox make one row change: a multi-row upsert may
    // not touch a row twice.
    let mut per_thread: BTreeMap<(&str, &str), (i64, i64)> = BTreeMap::new();
    for (mailbox_id, thread_id, unread) in entries {
        let delta = per_thread.entry((mailbox_id, thread_id)).or_default();
        delta.0 += 1;
        delta.1 += i64::from(*unread);
    }
    let pairs: Vec<_> = per_thread.into_iter().collect();
    let mut per_mailbox: BTreeMap<&str, [i64; 4]> = BTreeMap::new();
    for chunk in pairs.chunks(THREAD_ROWS_PER_UPSERT) {
        let mut sql = Sql::new(Dialect::of(conn));
        sql.push(thread_upsert_head!());
        for (i, ((mailbox_id, thread_id), (emails, unread))) in chunk.iter().enumerate() {
            sql.push(if i == 0 { "(" } else { ", (" })
                .text(account_id)
                .push(", ")
                .text(*mailbox_id)
                .push(", ")
                .text(*thread_id)
                .push(", ")
                .int(*emails)
                .push(", ")
                .int(*unread)
                .push(")");
        }
        sql.push(thread_upsert_tail!());
        let after: HashMap<(String, String), (i64, i64)> = load!(conn, &sql, ThreadRowOf)?
            .into_iter()
            .map(|r| ((r.mailbox_id, r.thread_id), (r.emails, r.unread)))
            .collect();
        for ((mailbox_id, thread_id), (emails, unread)) in chunk {
            let &(emails_after, unread_after) = after
                .get(&((*mailbox_id).to_owned(), (*thread_id).to_owned()))
                .ok_or_else(|| StoreError::Invalid("mailbox_threads row vanished".into()))?;
            let counts = per_mailbox.entry(mailbox_id).or_default();
            counts[0] += emails;
            counts[1] += unread;
            counts[2] += crossing(emails_after, *emails);
            counts[3] += crossing(unread_after, *unread);
        }
    }
    for (mailbox_id, deltas) in per_mailbox {
        add_to_mailbox(conn, account_id, mailbox_id, deltas)?;
    }
    Ok(())
}

/// (mailbox, thread) rows per upsert in [`emails_entered`] (five parameters each).
const THREAD_ROWS_PER_UPSERT: usize = 1000;

/// An email of `thread_id` left `mailbox_id` (moved, or destroyed).
pub fn email_left(
    conn: &mut AnyConnection,
    account_id: &str,
    mailbox_id: &str,
    thread_id: &str,
    unread: bool,
) -> Result<(), StoreError> {
    moved(conn, account_id, mailbox_id, thread_id, unread, -1)
}

/// An email of `thread_id` that stays in `mailbox_id` became unread (`now_unread`) or read.
pub fn unread_flipped(
    conn: &mut AnyConnection,
    account_id: &str,
    mailbox_id: &str,
    thread_id: &str,
    now_unread: bool,
) -> Result<(), StoreError> {
    let delta = if now_unread { 1 } else { -1 };
    let row = add_to_thread(conn, [account_id, mailbox_id, thread_id], 0, delta)?;
    add_to_mailbox(
        conn,
        account_id,
        mailbox_id,
        [0, delta, 0, crossing(row.unread, delta)],
    )
}

/// The maintained counts of every mailbox of an account that has any.
pub fn read(
    conn: &mut AnyConnection,
    account_id: &str,
) -> Result<HashMap<String, MailboxCounts>, StoreError> {
    load_counts(
        conn,
        "SELECT mailbox_id, total_emails, unread_emails, total_threads, unread_threads \
         FROM mailbox_counts WHERE account_id = $1",
        account_id,
    )
}

/// Runs a counts query (one row per mailbox) for an account.
fn load_counts(
    conn: &mut AnyConnection,
    sql: &'static str,
    account_id: &str,
) -> Result<HashMap<String, MailboxCounts>, StoreError> {
    let query = StaticSql::new(sql, vec![SqlParam::Text(account_id.to_owned())]);
    let rows: Vec<CountsRow> = match conn {
        AnyConnection::Sqlite(c) => query.load(c)?,
        AnyConnection::Postgresql(c) => query.load(c)?,
    };
    Ok(rows
        .iter()
        .map(|r| (r.mailbox_id.clone(), r.counts()))
        .collect())
}

/// 1 for an unread membership row `em`, else 0 (MBX-06: neither `$seen` nor `$draft`); a macro,
/// so that the SQL texts stay `&'static str` (kept prepared, see `static_sql`).
macro_rules! unread_of_em {
    () => {
        "CASE WHEN EXISTS (SELECT 1 FROM email_keywords k \
         WHERE k.account_id = em.account_id AND k.email_id = em.email_id \
         AND k.keyword IN ('$seen', '$draft')) THEN 0 ELSE 1 END"
    };
}

/// The counts, counted from the emails.
const RECOUNT_SQL: &str = concat!(
    "\
SELECT x.mailbox_id AS mailbox_id,
       CAST(COUNT(*) AS BIGINT) AS total_emails,
       CAST(SUM(x.unread) AS BIGINT) AS unread_emails,
       CAST(COUNT(DISTINCT x.thread_id) AS BIGINT) AS total_threads,
       CAST(COUNT(DISTINCT CASE WHEN x.unread = 1 THEN x.thread_id END) AS BIGINT) AS unread_threads
FROM (SELECT em.mailbox_id AS mailbox_id, e.thread_id AS thread_id,
             ",
    unread_of_em!(),
    " AS unread
      FROM email_mailboxes em
      JOIN emails e ON e.account_id = em.account_id AND e.id = em.email_id
      WHERE em.account_id = $1) x
GROUP BY x.mailbox_id"
);

/// The counts of every non-empty mailbox of an account, counted from its emails (slow: for
/// `herald check` and tests).
pub fn recount(
    conn: &mut AnyConnection,
    account_id: &str,
) -> Result<HashMap<String, MailboxCounts>, StoreError> {
    load_counts(conn, RECOUNT_SQL, account_id)
}

/// Mailboxes whose maintained counts differ from a recount: (mailbox, maintained, counted).
pub type Difference = (String, MailboxCounts, MailboxCounts);

/// Compares the maintained counts of an account with a recount.
pub fn check(conn: &mut AnyConnection, account_id: &str) -> Result<Vec<Difference>, StoreError> {
    let kept = read(conn, account_id)?;
    let counted = recount(conn, account_id)?;
    let mut mailboxes: Vec<&String> = kept.keys().chain(counted.keys()).collect();
    mailboxes.sort();
    mailboxes.dedup();
    Ok(mailboxes
        .into_iter()
        .filter_map(|m| {
            let a = kept.get(m).copied().unwrap_or_default();
            let b = counted.get(m).copied().unwrap_or_default();
            (a != b).then(|| (m.clone(), a, b))
        })
        .collect())
}

/// Rebuilds an account's maintained counts from its emails, as one write: every existing
/// mailbox whose counts were wrong is recorded as updated, so that clients that hold the wrong
/// counts are told (a new Mailbox state, pushed). Returns what to publish, if anything changed.
pub fn repair(
    conn: &mut AnyConnection,
    account_id: &str,
) -> Result<Option<super::Committed>, StoreError> {
    use diesel::prelude::*;
    let (_, committed) = super::changelog::write(conn, account_id, |txn| {
        let wrong: Vec<String> = check(txn.conn(), account_id)?
            .into_iter()
            .map(|(mailbox, _, _)| mailbox)
            .collect();
        let existing: Vec<String> = super::schema::mailboxes::table
            .filter(super::schema::mailboxes::account_id.eq(account_id))
            .filter(super::schema::mailboxes::id.eq_any(&wrong))
            .select(super::schema::mailboxes::id)
            .load(txn.conn())?;
        rebuild(txn.conn(), account_id)?;
        for mailbox in existing {
            txn.record("Mailbox", &mailbox, crate::jmap::changes::ChangeOp::Updated);
        }
        Ok(())
    })?;
    if committed.is_none() {
        // Only rows of mailboxes that no longer exist were wrong: nothing for a client to hear.
        use diesel::Connection;
        conn.transaction(|conn| rebuild(conn, account_id))?;
    }
    Ok(committed)
}

/// Replaces an account's maintained counts with a recount (inside the caller's transaction).
fn rebuild(conn: &mut AnyConnection, account_id: &str) -> Result<(), StoreError> {
    for sql in [
        "DELETE FROM mailbox_threads WHERE account_id = $1",
        "DELETE FROM mailbox_counts WHERE account_id = $1",
        concat!(
            "INSERT INTO mailbox_threads (account_id, mailbox_id, thread_id, emails, unread) \
             SELECT em.account_id, em.mailbox_id, e.thread_id, CAST(COUNT(*) AS BIGINT), \
                    CAST(SUM(",
            unread_of_em!(),
            ") AS BIGINT) \
         FROM email_mailboxes em \
         JOIN emails e ON e.account_id = em.account_id AND e.id = em.email_id \
         WHERE em.account_id = $1 \
         GROUP BY em.account_id, em.mailbox_id, e.thread_id"
        ),
        "INSERT INTO mailbox_counts (account_id, mailbox_id, total_emails, unread_emails, \
             total_threads, unread_threads) \
         SELECT account_id, mailbox_id, CAST(SUM(emails) AS BIGINT), \
                CAST(SUM(unread) AS BIGINT), CAST(COUNT(*) AS BIGINT), \
                CAST(SUM(CASE WHEN unread > 0 THEN 1 ELSE 0 END) AS BIGINT) \
         FROM mailbox_threads WHERE account_id = $1 GROUP BY account_id, mailbox_id",
    ] {
        execute(conn, sql, &[account_id], &[])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::crossing;

    #[test]
    fn a_count_over_positive_rows_moves_only_when_a_row_crosses_zero() {
        assert_eq!(crossing(1, 1), 1);
        assert_eq!(crossing(2, 1), 0);
        assert_eq!(crossing(0, -1), -1);
        assert_eq!(crossing(3, -1), 0);
        assert_eq!(crossing(0, 0), 0);
        assert_eq!(crossing(1, 0), 0);
    }
}
