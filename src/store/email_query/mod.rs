//! Email/query in SQL: the filter and sort of [`crate::jmap::methods::email_query`] become one `SELECT`
//! over the indexed columns of `emails`, with windowing (`LIMIT`/`OFFSET`, anchors through
//! `ROW_NUMBER()`) and `collapseThreads` (one row per thread through `ROW_NUMBER() OVER
//! (PARTITION BY thread_id …)`) done by the database.
//!
//! The statements are raw SQL, because their shape depends on the filter; they run on the
//! concrete backend with `$n` parameters, which both SQLite and PostgreSQL accept (numbered in
//! order of appearance, never reused). Text conditions go through the full-text index
//! ([`super::email_search`]: FTS5 on SQLite, GIN over `tsvector`s on PostgreSQL), one
//! `e.id IN (…)` per condition.
//!
//! Plan for the common case, `inMailbox` sorted by `receivedAt` descending: a filter whose top
//! level requires a mailbox is driven from that mailbox's memberships (`em0`), and `receivedAt`
//! sorts by the membership's copy of it, so the rows come from the `email_mailboxes_received`
//! index `(account_id, mailbox_id, received_at, email_id)` in order: no sort step, and `LIMIT`
//! stops the walk early (the `explain` test in `tests/integration/email_query.rs` checks the plan). Without a
//! mailbox, `emails_received_id (account_id, received_at, id)` (this module's migration) serves.
//!
//! Header conditions read `email_headers` (one row per header field: lowercase name and
//! normalised lowercase value), filled lazily from the stored messages the first time a query
//! with a header condition runs on an account (see [`ensure_headers_indexed`]).

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

mod filter;
mod statements;

#[cfg(test)]
use filter::contains_pattern;
use statements::{
    Walk, lone_text_condition, push_from_where, select_count, select_ids, select_index_of,
    window_text_plan,
};
pub use statements::{explain_ids_sql, sqlite_query_plan};

use super::changelog::{self};
use super::email_search;
use super::query_sql::{Dialect, Sql, TextPlan, load};
use super::{AnyConnection, StoreContext, StoreError};
use crate::jmap::changes::state_string;
use crate::jmap::error::MethodError;
use crate::jmap::methods::email_query::{
    DATA_TYPE, EmailQuery, EmailQueryStore, Filter, QueryPage, QueryWindow, SnippetSource,
    WindowStart, normalise, window_start,
};

// Columns the snippets read: the subject on `emails`, the body text in `email_search s`.
const COL_SUBJECT: &str = "e.subject";
const COL_SEARCH_BODY: &str = "s.body_text";

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = Text)]
    id: String,
}

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct SnippetRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    subject: String,
    #[diesel(sql_type = Text)]
    body: String,
}

// ---------------------------------------------------------------------------------------------
// the store

fn count(conn: &mut AnyConnection, sql: &Sql) -> Result<Option<i64>, StoreError> {
    Ok(load!(conn, sql, CountRow)?.first().map(|r| r.n))
}

/// Runs one query window in one read snapshot, so the state, the count and the ids agree.
fn run_query(
    conn: &mut AnyConnection,
    account_id: &str,
    q: &EmailQuery,
    w: &QueryWindow,
) -> Result<Result<QueryPage, MethodError>, StoreError> {
    let dialect = Dialect::of(conn);
    super::snapshot::read::<_, StoreError>(conn, |conn| {
        let state = state_string(changelog::type_state(conn, account_id, DATA_TYPE)?);
        let q = &with_completed_prefixes(conn, account_id, q)?;
        let need_total = w.calculate_total || matches!(w.start, WindowStart::Position(p) if p < 0);
        let walk = match w.start {
            WindowStart::Position(p) if p >= 0 => Some(Walk {
                end: (p as u64).saturating_add(w.limit),
                total_wanted: need_total,
            }),
            _ => None,
        };
        let (text_plan, counted) = if w.limit > 0 {
            window_text_plan(conn, account_id, q, walk)?
        } else {
            (TextPlan::MatchList, None)
        };
        let total = if need_total {
            // A lone text condition's matches were just counted by the plan's probe.
            match counted.filter(|_| lone_text_condition(q).is_some()) {
                Some(n) => Some(n),
                None => Some(
                    count(conn, &select_count(dialect, account_id, q))?
                        .unwrap_or(0)
                        .max(0) as u64,
                ),
            }
        } else {
            None
        };
        let anchor_index = match &w.start {
            WindowStart::Anchor { id, .. } => {
                anchor_index(conn, (dialect, text_plan), account_id, q, id)?
            }
            WindowStart::Position(_) => None,
        };
        let start = match window_start(&w.start, total, anchor_index) {
            Ok(s) => s.unwrap_or(0),
            Err(e) => return Ok(Err(e)),
        };
        let ids: Vec<String> = if w.limit == 0 {
            Vec::new()
        } else {
            let select = select_ids(dialect, text_plan, account_id, q, start, w.limit);
            load!(conn, &select, IdRow)?
                .into_iter()
                .map(|r| r.id)
                .collect()
        };
        // QRY-09: `position` is where the ids really start; past the end, that is the total.
        let position = if ids.is_empty() && start > 0 {
            let t = match total {
                Some(t) => t,
                None => count(conn, &select_count(dialect, account_id, q))?.unwrap_or(0) as u64,
            };
            start.min(t)
        } else {
            start
        };
        Ok(Ok(QueryPage {
            state,
            position,
            ids,
            total,
        }))
    })
}

/// `q`, on SQLite with the completions of its prefix terms listed
/// ([`email_search::complete_prefixes`]).
fn with_completed_prefixes<'q>(
    conn: &mut AnyConnection,
    account_id: &str,
    q: &'q EmailQuery,
) -> Result<Cow<'q, EmailQuery>, StoreError> {
    if Dialect::of(conn) != Dialect::Sqlite || q.filter.is_none() {
        return Ok(Cow::Borrowed(q));
    }
    let mut q = q.clone();
    if let Some(f) = &mut q.filter {
        email_search::complete_prefixes(conn, account_id, f)?;
    }
    Ok(Cow::Owned(q))
}

/// How far [`anchor_index`] walks the results before it numbers them all instead.
const ANCHOR_WALK: u64 = 65_536;

/// Where `anchor` is in the results (QRY-06). An anchor is usually near the start (the last id
/// of a page a client has), so the results are read in order, in growing windows, up to
/// [`ANCHOR_WALK`] ids: a cost in proportion to the anchor's index. Beyond that, one statement
/// numbers every result, which costs the whole result but holds no ids in memory.
fn anchor_index(
    conn: &mut AnyConnection,
    (dialect, text_plan): (Dialect, TextPlan),
    account_id: &str,
    q: &EmailQuery,
    anchor: &str,
) -> Result<Option<u64>, StoreError> {
    let (mut offset, mut limit) = (0, 256);
    while offset < ANCHOR_WALK {
        let sql = select_ids(dialect, text_plan, account_id, q, offset, limit);
        let ids = load!(conn, &sql, IdRow)?;
        if let Some(i) = ids.iter().position(|r| r.id == anchor) {
            return Ok(Some(offset + i as u64));
        }
        if (ids.len() as u64) < limit {
            return Ok(None);
        }
        offset += limit;
        limit *= 4;
    }
    Ok(count(conn, &select_index_of(dialect, account_id, q, anchor))?.map(|n| n.max(0) as u64))
}

const CHUNK: usize = 500;

fn push_id_list(sql: &mut Sql, ids: &[String]) {
    sql.push("(");
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.text(id);
    }
    sql.push(")");
}

/// Thread ids of the given emails, and every email id of those threads plus `threads`.
fn expand_to_threads(
    conn: &mut AnyConnection,
    account_id: &str,
    emails: &[String],
    threads: Vec<String>,
) -> Result<BTreeSet<String>, StoreError> {
    let mut thread_ids: BTreeSet<String> = threads.into_iter().collect();
    for chunk in emails.chunks(CHUNK) {
        let mut sql = Sql::default();
        sql.push("SELECT e.thread_id AS id FROM emails e WHERE e.account_id = ")
            .text(account_id)
            .push(" AND e.id IN ");
        push_id_list(&mut sql, chunk);
        thread_ids.extend(load!(&mut *conn, &sql, IdRow)?.into_iter().map(|r| r.id));
    }
    let thread_ids: Vec<String> = thread_ids.into_iter().collect();
    let mut out: BTreeSet<String> = emails.iter().cloned().collect();
    for chunk in thread_ids.chunks(CHUNK) {
        let mut sql = Sql::default();
        sql.push("SELECT e.id AS id FROM emails e WHERE e.account_id = ")
            .text(account_id)
            .push(" AND e.thread_id IN ");
        push_id_list(&mut sql, chunk);
        out.extend(load!(&mut *conn, &sql, IdRow)?.into_iter().map(|r| r.id));
    }
    Ok(out)
}

#[derive(QueryableByName)]
struct UnindexedRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Text)]
    blob_id: String,
}

/// Fills `email_headers` for every email of the account not indexed yet, from the stored
/// message: the header fields in order, names lowercase, values in the Text form (unfolded, RFC
/// 2047 decoded), whitespace-folded and lowercase. A row at position -1 marks an email as done.
///
/// Why lazily: header conditions are rare, and indexing at query time keeps every path that
/// creates emails (import, set, copy, delivery) free of this concern. The rows are an index over
/// immutable messages, not JMAP data, so writing them records no change. Each email is indexed
/// in its own small transaction (delete, then insert), so concurrent queries cannot clash.
fn ensure_headers_indexed(conn: &mut AnyConnection, account_id: &str) -> Result<(), StoreError> {
    use super::schema::email_headers;
    loop {
        let mut sql = Sql::default();
        sql.push("SELECT e.id AS id, e.blob_id AS blob_id FROM emails e WHERE e.account_id = ")
            .text(account_id)
            .push(
                " AND NOT EXISTS (SELECT 1 FROM email_headers h WHERE h.account_id = e.account_id \
                 AND h.email_id = e.id AND h.position = -1) LIMIT 200",
            );
        let rows = load!(&mut *conn, &sql, UnindexedRow)?;
        if rows.is_empty() {
            return Ok(());
        }
        for row in rows {
            let raw = super::blobs::get(conn, &row.blob_id)?.unwrap_or_default();
            let mut fields: Vec<(String, String)> = vec![(String::new(), String::new())];
            if let Some(email) = crate::mail::Email::parse(&raw) {
                fields.extend(email.headers.iter().map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        normalise(&crate::mail::header::text(&h.raw)),
                    )
                }));
            }
            conn.transaction::<_, StoreError, _>(|conn| {
                diesel::delete(
                    email_headers::table
                        .filter(email_headers::account_id.eq(account_id))
                        .filter(email_headers::email_id.eq(&row.id)),
                )
                .execute(conn)?;
                for (i, (name, value)) in fields.iter().enumerate() {
                    diesel::insert_into(email_headers::table)
                        .values((
                            email_headers::account_id.eq(account_id),
                            email_headers::email_id.eq(&row.id),
                            email_headers::position.eq(i as i64 - 1),
                            email_headers::name.eq(name),
                            email_headers::value.eq(value),
                        ))
                        .execute(conn)?;
                }
                Ok(())
            })?;
        }
    }
}

impl EmailQueryStore for StoreContext {
    fn email_query(
        &mut self,
        account_id: &str,
        query: &EmailQuery,
        window: &QueryWindow,
    ) -> Result<QueryPage, MethodError> {
        self.email_prepare(account_id, query)?;
        run_query(self.conn(), account_id, query, window).map_err(MethodError::from)?
    }

    fn email_prepare(&mut self, account_id: &str, query: &EmailQuery) -> Result<(), MethodError> {
        if query.filter.as_ref().is_some_and(Filter::uses_header) {
            ensure_headers_indexed(self.conn(), account_id).map_err(MethodError::from)?;
        }
        Ok(())
    }

    fn email_touched_since(
        &mut self,
        account_id: &str,
        since: i64,
        whole_threads: bool,
    ) -> Result<Vec<String>, MethodError> {
        let conn = self.conn();
        let emails = changelog::touched_since(conn, account_id, DATA_TYPE, since)
            .map_err(MethodError::from)?;
        if !whole_threads {
            return Ok(emails);
        }
        let threads = changelog::touched_since(conn, account_id, "Thread", since)
            .map_err(MethodError::from)?;
        Ok(expand_to_threads(conn, account_id, &emails, threads)
            .map_err(MethodError::from)?
            .into_iter()
            .collect())
    }

    fn email_snippet_sources(
        &mut self,
        account_id: &str,
        ids: &[String],
    ) -> Result<Vec<SnippetSource>, MethodError> {
        let conn = self.conn();
        let mut out = Vec::new();
        for chunk in ids.chunks(CHUNK) {
            let mut sql = Sql::default();
            sql.push("SELECT e.id AS id, COALESCE(")
                .push(COL_SUBJECT)
                .push(", '') AS subject, COALESCE(")
                .push(COL_SEARCH_BODY)
                .push(
                    ", '') AS body FROM emails e LEFT JOIN email_search s \
                     ON s.account_id = e.account_id AND s.email_id = e.id \
                     WHERE e.account_id = ",
                )
                .text(account_id)
                .push(" AND e.id IN ");
            push_id_list(&mut sql, chunk);
            let rows = load!(&mut *conn, &sql, SnippetRow)
                .map_err(|e| MethodError::from(StoreError::from(e)))?;
            out.extend(rows.into_iter().map(|r| SnippetSource {
                email_id: r.id,
                subject: r.subject,
                body: r.body,
            }));
        }
        Ok(out)
    }

    fn email_matching(
        &mut self,
        account_id: &str,
        filter: &Filter,
        ids: &[String],
    ) -> Result<HashSet<String>, MethodError> {
        if filter.uses_header() {
            ensure_headers_indexed(self.conn(), account_id).map_err(MethodError::from)?;
        }
        let conn = self.conn();
        let mut filter = filter.clone();
        email_search::complete_prefixes(conn, account_id, &mut filter)
            .map_err(MethodError::from)?;
        let mut out = HashSet::new();
        for chunk in ids.chunks(CHUNK) {
            let mut sql = Sql::new(Dialect::of(conn));
            sql.push("SELECT e.id AS id");
            push_from_where(&mut sql, account_id, Some(&filter));
            sql.push(" AND e.id IN ");
            push_id_list(&mut sql, chunk);
            let rows = load!(&mut *conn, &sql, IdRow)
                .map_err(|e| MethodError::from(StoreError::from(e)))?;
            out.extend(rows.into_iter().map(|r| r.id));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::limits::QueryLimits;
    use crate::jmap::methods::email_query::parse_sort;
    use serde_json::json;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(contains_pattern(r"50%_a\b"), r"%50\%\_a\\b%");
    }

    #[test]
    fn parameters_are_numbered_in_order_of_appearance() {
        let q = EmailQuery {
            filter: Some(
                Filter::parse(
                    &json!({"operator": "NOT", "conditions": [
                        {"inMailbox": "m1"}, {"text": "a b", "minSize": 3}
                    ]}),
                    &QueryLimits::default(),
                )
                .unwrap(),
            ),
            sort: parse_sort(&[], &QueryLimits::default()).unwrap(),
            collapse_threads: false,
        };
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let (sql, params) = explain_ids_sql(dialect, "A", &q, 0, 10);
            let mut numbers = Vec::new();
            let mut rest = sql.as_str();
            while let Some(at) = rest.find('$') {
                rest = &rest[at + 1..];
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                numbers.push(digits.parse::<usize>().unwrap());
            }
            assert_eq!(numbers, (1..=params.len()).collect::<Vec<_>>());
            assert!(sql.contains("NOT ("), "{sql}");
            assert!(
                // The window is literal (see select_ids): a bound LIMIT makes SQLite re-compile.
                sql.ends_with("ORDER BY e.received_at DESC, e.id DESC LIMIT 10 OFFSET 0"),
                "{sql}"
            );
        }
    }
}
