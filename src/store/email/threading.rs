//! The threads of the emails one write creates (THR-01..03), found with one lookup for all of
//! them.
//!
//! A new email joins the thread of the oldest email (by receivedAt, then id) that shares a message
//! id with it, in either direction, and has the same base subject; otherwise it starts a thread.
//! The candidates already stored are read in one statement per few hundred (message id, base
//! subject) pairs, not one per id and email: on PostgreSQL every statement is a round trip. The
//! emails created earlier in the same write are candidates too, kept in memory as they are
//! assigned, so a reply imported with its parent joins it as it would have one write later.

use std::collections::{BTreeSet, HashMap};

use diesel::sql_types::{BigInt, Text};

use crate::store::query_sql::{Dialect, Sql, load};
use crate::store::{AnyConnection, StoreError};

/// (message id, base subject) pairs per lookup statement (two parameters each).
const PAIRS_PER_LOOKUP: usize = 500;

/// An email a new one may join: the oldest known for one (message id, base subject).
#[derive(Clone, Debug, PartialEq, Eq, diesel::QueryableByName)]
struct Candidate {
    #[diesel(sql_type = Text)]
    message_id: String,
    #[diesel(sql_type = Text)]
    base_subject: String,
    #[diesel(sql_type = BigInt)]
    received_at: i64,
    #[diesel(sql_type = Text)]
    email_id: String,
    #[diesel(sql_type = Text)]
    thread_id: String,
}

impl Candidate {
    fn is_older_than(&self, other: &Candidate) -> bool {
        (self.received_at, &self.email_id) < (other.received_at, &other.email_id)
    }
}

/// What a new email is threaded by.
pub(super) struct ThreadKey<'a> {
    /// Every id in its Message-ID, In-Reply-To and References fields.
    pub related: &'a BTreeSet<String>,
    pub base_subject: &'a str,
}

/// The thread candidates of one write's new emails, by (message id, base subject).
#[derive(Default)]
pub(super) struct ThreadFinder {
    oldest: HashMap<(String, String), Candidate>,
}

impl ThreadFinder {
    /// Reads the stored candidates of every email in `keys`.
    pub fn load(
        conn: &mut AnyConnection,
        account_id: &str,
        keys: &[ThreadKey<'_>],
    ) -> Result<ThreadFinder, StoreError> {
        let mut pairs: Vec<(&str, &str)> = keys
            .iter()
            .flat_map(|k| k.related.iter().map(|id| (id.as_str(), k.base_subject)))
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        let mut finder = ThreadFinder::default();
        for chunk in pairs.chunks(PAIRS_PER_LOOKUP) {
            let sql = lookup_sql(Dialect::of(conn), account_id, chunk);
            for candidate in load!(conn, &sql, Candidate)? {
                finder.offer(candidate);
            }
        }
        Ok(finder)
    }

    /// The thread a new email joins, and whether it starts it; the email becomes a candidate for
    /// the emails assigned after it.
    pub fn assign(
        &mut self,
        key: &ThreadKey<'_>,
        received_at: i64,
        email_id: &str,
        new_thread_id: impl FnOnce() -> String,
    ) -> (String, bool) {
        let joined = key
            .related
            .iter()
            .filter_map(|id| self.oldest.get(&(id.clone(), key.base_subject.to_owned())))
            .reduce(|a, b| if b.is_older_than(a) { b } else { a })
            .map(|c| c.thread_id.clone());
        let created = joined.is_none();
        let thread_id = joined.unwrap_or_else(new_thread_id);
        for id in key.related {
            self.offer(Candidate {
                message_id: id.clone(),
                base_subject: key.base_subject.to_owned(),
                received_at,
                email_id: email_id.to_owned(),
                thread_id: thread_id.clone(),
            });
        }
        (thread_id, created)
    }

    /// Keeps `candidate` if it is the oldest for its pair.
    fn offer(&mut self, candidate: Candidate) {
        let key = (candidate.message_id.clone(), candidate.base_subject.clone());
        match self.oldest.get(&key) {
            Some(known) if !candidate.is_older_than(known) => {}
            _ => {
                self.oldest.insert(key, candidate);
            }
        }
    }
}

/// The stored emails that name one of `pairs`' message ids and have its base subject: few, and
/// found through the message-id and email keys.
fn lookup_sql(dialect: Dialect, account_id: &str, pairs: &[(&str, &str)]) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.push("WITH wanted (message_id, base_subject) AS (VALUES ");
    for (i, (message_id, base_subject)) in pairs.iter().enumerate() {
        sql.push(if i == 0 { "(" } else { ", (" })
            .text(*message_id)
            .push(", ")
            .text(*base_subject)
            .push(")");
    }
    // CROSS JOIN: SQLite then keeps this order (without it, it walked the account's every
    // email and compared its subject with each wanted one).
    sql.push(
        ") SELECT m.message_id AS message_id, e.base_subject AS base_subject, \
         e.received_at AS received_at, e.id AS email_id, e.thread_id AS thread_id \
         FROM wanted w CROSS JOIN email_message_ids m CROSS JOIN emails e \
         WHERE m.account_id = ",
    )
    .text(account_id)
    .push(
        " AND m.message_id = w.message_id \
         AND e.account_id = m.account_id AND e.id = m.email_id \
         AND e.base_subject = w.base_subject",
    );
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn stored(message_id: &str, subject: &str, at: i64, email: &str, thread: &str) -> Candidate {
        Candidate {
            message_id: message_id.into(),
            base_subject: subject.into(),
            received_at: at,
            email_id: email.into(),
            thread_id: thread.into(),
        }
    }

    #[test]
    fn a_reply_created_in_the_same_write_joins_its_parent() {
        let mut finder = ThreadFinder::default();
        let parent = ids(&["p"]);
        let reply = ids(&["r", "p"]);
        let key = |related| ThreadKey {
            related,
            base_subject: "plans",
        };
        let (t1, created1) = finder.assign(&key(&parent), 10, "e1", || "t1".into());
        let (t2, created2) = finder.assign(&key(&reply), 11, "e2", || "t2".into());
        assert_eq!((t1.as_str(), created1), ("t1", true));
        assert_eq!((t2.as_str(), created2), ("t1", false));
    }

    #[test]
    fn the_oldest_candidate_with_the_same_subject_wins() {
        let mut finder = ThreadFinder::default();
        finder.offer(stored("a", "plans", 20, "e2", "newer"));
        finder.offer(stored("b", "plans", 10, "e1", "older"));
        finder.offer(stored("c", "other", 1, "e0", "other subject"));
        let related = ids(&["a", "b", "c"]);
        let key = ThreadKey {
            related: &related,
            base_subject: "plans",
        };
        let (thread, created) = finder.assign(&key, 30, "e3", || "fresh".into());
        assert_eq!((thread.as_str(), created), ("older", false));
    }

    #[test]
    fn a_subject_that_differs_starts_a_thread() {
        let mut finder = ThreadFinder::default();
        finder.offer(stored("a", "plans", 10, "e1", "t1"));
        let related = ids(&["a"]);
        let key = ThreadKey {
            related: &related,
            base_subject: "lunch",
        };
        let (thread, created) = finder.assign(&key, 30, "e2", || "t2".into());
        assert_eq!((thread.as_str(), created), ("t2", true));
    }

    #[derive(diesel::QueryableByName)]
    struct PlanRow {
        #[diesel(sql_type = Text)]
        detail: String,
    }

    #[test]
    fn stored_candidates_are_found_by_message_id_then_email_key_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = crate::store::Store::open(&url, 1).unwrap();
        let mut conn = store.conn().unwrap();
        let pairs: Vec<(String, String)> = (0..300)
            .map(|i| (format!("m{i}@x"), format!("subject {i}")))
            .collect();
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let mut sql = lookup_sql(Dialect::Sqlite, "a1", &pairs);
        sql.text.insert_str(0, "EXPLAIN QUERY PLAN ");
        let plan: Vec<PlanRow> = load!(&mut *conn, &sql, PlanRow).unwrap();
        let plan: Vec<String> = plan.into_iter().map(|r| r.detail).collect();
        let searches: Vec<&String> = plan.iter().filter(|d| d.starts_with("SEARCH")).collect();
        assert_eq!(searches.len(), 2, "{plan:#?}");
        assert!(
            searches[0].contains("(account_id=? AND message_id=?"),
            "{plan:#?}"
        );
        // By the primary key or by (account, base subject, id): one row either way.
        assert!(
            searches[1].starts_with("SEARCH e ") && searches[1].contains(" id=?)"),
            "{plan:#?}"
        );
    }
}
