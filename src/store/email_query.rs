//! Email/query in SQL: the filter and sort of [`crate::jmap::email_query`] become one `SELECT`
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

use std::collections::{BTreeSet, HashSet};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use super::changelog::{self, ChangesError};
use super::email_search;
use super::query_sql::{Dialect, Param, Sql, TextPlan, load};
use super::{AnyConnection, StoreContext, StoreError};
use crate::jmap::changes::state_string;
use crate::jmap::email_query::{
    Condition, DATA_TYPE, EmailQuery, EmailQueryStore, EmailSort, Filter, HeaderCondition,
    Operator, QueryPage, QueryWindow, SnippetSource, SortKey, WindowStart, normalise, window_start,
};
use crate::jmap::error::MethodError;

// The columns this module reads, kept by the email store (src/store/email.rs): sort keys and
// flags on `emails`, searchable text in `email_search s`.
const COL_SENT_AT: &str = "e.sent_at";
const COL_FROM_SORT: &str = "e.from_sort";
const COL_TO_SORT: &str = "e.to_sort";
const COL_SUBJECT_SORT: &str = "e.base_subject";
const COL_HAS_ATTACHMENT: &str = "e.has_attachment";
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
// filter → SQL

/// `LIKE` pattern for "contains `term`", escaping `\`, `%` and `_`.
fn contains_pattern(term: &str) -> String {
    let mut p = String::with_capacity(term.len() + 2);
    p.push('%');
    for c in term.chars() {
        if matches!(c, '\\' | '%' | '_') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// `column` contains every one of `substrings` (lowercase).
fn push_contains_all(sql: &mut Sql, column: &str, substrings: &[String]) {
    if substrings.is_empty() {
        sql.push("1=1");
        return;
    }
    for (i, part) in substrings.iter().enumerate() {
        if i > 0 {
            sql.push(" AND ");
        }
        sql.push("lower(")
            .push(column)
            .push(") LIKE ")
            .text(&contains_pattern(part))
            .push(" ESCAPE '\\'");
    }
}

fn push_has_keyword(sql: &mut Sql, email: &str, keyword: &str) {
    sql.push("EXISTS (SELECT 1 FROM email_keywords k WHERE k.account_id = ")
        .push(email)
        .push(".account_id AND k.email_id = ")
        .push(email)
        .push(".id AND k.keyword = ")
        .text(keyword)
        .push(")");
}

fn push_some_in_thread(sql: &mut Sql, keyword: &str) {
    sql.push(
        "EXISTS (SELECT 1 FROM emails t JOIN email_keywords k \
         ON k.account_id = t.account_id AND k.email_id = t.id \
         WHERE t.account_id = e.account_id AND t.thread_id = e.thread_id AND k.keyword = ",
    )
    .text(keyword)
    .push(")");
}

fn push_all_in_thread(sql: &mut Sql, keyword: &str) {
    sql.push(
        "NOT EXISTS (SELECT 1 FROM emails t WHERE t.account_id = e.account_id \
         AND t.thread_id = e.thread_id AND NOT ",
    );
    push_has_keyword(sql, "t", keyword);
    sql.push(")");
}

fn push_header(sql: &mut Sql, h: &HeaderCondition) {
    sql.push(
        "EXISTS (SELECT 1 FROM email_headers h WHERE h.account_id = e.account_id \
         AND h.email_id = e.id AND h.name = ",
    )
    .text(&h.name);
    if let Some(t) = &h.text {
        sql.push(" AND ");
        push_contains_all(sql, "h.value", t);
    }
    sql.push(")");
}

fn push_condition(sql: &mut Sql, account_id: &str, c: &Condition) {
    let mut first = true;
    let mut and = |sql: &mut Sql| {
        if !first {
            sql.push(" AND ");
        }
        first = false;
    };
    sql.push("(");
    if let Some(m) = &c.in_mailbox {
        and(sql);
        sql.push(
            "EXISTS (SELECT 1 FROM email_mailboxes em WHERE em.account_id = e.account_id \
             AND em.mailbox_id = ",
        )
        .text(m)
        .push(" AND em.email_id = e.id)");
    }
    if let Some(others) = &c.in_mailbox_other_than {
        and(sql);
        sql.push(
            "EXISTS (SELECT 1 FROM email_mailboxes em WHERE em.account_id = e.account_id \
             AND em.email_id = e.id",
        );
        if !others.is_empty() {
            sql.push(" AND em.mailbox_id NOT IN (");
            for (i, m) in others.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.text(m);
            }
            sql.push(")");
        }
        sql.push(")");
    }
    if let Some(t) = c.before {
        and(sql);
        sql.push("e.received_at < ").int(t);
    }
    if let Some(t) = c.after {
        and(sql);
        sql.push("e.received_at >= ").int(t);
    }
    if let Some(n) = c.min_size {
        and(sql);
        sql.push("e.size >= ").int(n as i64);
    }
    if let Some(n) = c.max_size {
        and(sql);
        sql.push("e.size < ").int(n as i64);
    }
    if let Some(k) = &c.all_in_thread_have_keyword {
        and(sql);
        push_all_in_thread(sql, k);
    }
    if let Some(k) = &c.some_in_thread_have_keyword {
        and(sql);
        push_some_in_thread(sql, k);
    }
    if let Some(k) = &c.none_in_thread_have_keyword {
        and(sql);
        sql.push("NOT ");
        push_some_in_thread(sql, k);
    }
    if let Some(k) = &c.has_keyword {
        and(sql);
        push_has_keyword(sql, "e", k);
    }
    if let Some(k) = &c.not_keyword {
        and(sql);
        sql.push("NOT ");
        push_has_keyword(sql, "e", k);
    }
    if let Some(b) = c.has_attachment {
        and(sql);
        sql.push(COL_HAS_ATTACHMENT)
            .push(if b { " = TRUE" } else { " = FALSE" });
    }
    // EQ-04: text searches From, To, Cc, Bcc, Subject and the text body parts, through the index.
    if email_search::has_text_terms(c) {
        and(sql);
        email_search::push_text_match(sql, account_id, c);
    }
    if let Some(h) = &c.header {
        and(sql);
        push_header(sql, h);
    }
    // EQ-03: an empty condition is true.
    if first {
        sql.push("1=1");
    }
    sql.push(")");
}

fn push_filter(sql: &mut Sql, account_id: &str, f: &Filter) {
    match f {
        Filter::Condition(c) => push_condition(sql, account_id, c),
        Filter::Operator(op, parts) => {
            if parts.is_empty() {
                // AND of nothing is true, OR of nothing false, NOT of nothing true.
                sql.push(if *op == Operator::Or {
                    "(1=0)"
                } else {
                    "(1=1)"
                });
                return;
            }
            let (prefix, join) = match op {
                Operator::And => ("(", " AND "),
                Operator::Or => ("(", " OR "),
                // QRY-02: NOT means none of the conditions match.
                Operator::Not => ("NOT (", " OR "),
            };
            sql.push(prefix);
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    sql.push(join);
                }
                push_filter(sql, account_id, p);
            }
            sql.push(")");
        }
    }
}

/// The mailbox a filter requires at its top level (alone or in a top-level AND): the query is
/// then driven from that mailbox's memberships, whose `email_mailboxes_received` index
/// `(account_id, mailbox_id, received_at, email_id)` yields the default order directly.
fn driving_mailbox<'a>(sql: &Sql, filter: Option<&'a Filter>) -> Option<&'a str> {
    if sql.text_plan == TextPlan::FromMatches {
        return None;
    }
    match filter? {
        Filter::Condition(c) => c.in_mailbox.as_deref(),
        Filter::Operator(Operator::And, parts) => parts.iter().find_map(|p| match p {
            Filter::Condition(c) => c.in_mailbox.as_deref(),
            _ => None,
        }),
        Filter::Operator(..) => None,
    }
}

/// The text condition a filter requires at its top level (alone or in a top-level AND), which a
/// query can start from: its matches, from the index, sorted, instead of every email in order.
fn driving_text(filter: Option<&Filter>) -> Option<&Condition> {
    let has_text =
        |f: &&Filter| matches!(f, Filter::Condition(c) if email_search::has_text_terms(c));
    match filter? {
        f @ Filter::Condition(_) => Some(f).filter(has_text),
        Filter::Operator(Operator::And, parts) => parts.iter().find(has_text),
        Filter::Operator(..) => None,
    }
    .and_then(|f| match f {
        Filter::Condition(c) => Some(&**c),
        Filter::Operator(..) => None,
    })
}

/// `filter` without the text terms of its [`driving_text`] condition, which a statement that
/// starts from that condition's matches need not check again.
fn without_driving_text(filter: &Filter) -> Filter {
    let strip = |c: &mut Condition| {
        (c.text, c.from, c.to, c.cc, c.bcc, c.subject, c.body) =
            (None, None, None, None, None, None, None);
    };
    let has_text =
        |f: &Filter| matches!(f, Filter::Condition(c) if email_search::has_text_terms(c));
    let mut out = filter.clone();
    match &mut out {
        Filter::Condition(c) => strip(c),
        Filter::Operator(Operator::And, parts) => {
            if let Some(Filter::Condition(c)) = parts.iter_mut().find(|f| has_text(f)) {
                strip(c);
            }
        }
        Filter::Operator(..) => {}
    }
    out
}

/// A window of at most this many matches is sorted from the text index's matches (SQLite); a
/// search with more matches walks the emails in sort order and stops at the window's end.
const TEXT_FIRST_MAX_MATCHES: u64 = 5_000;

/// How the ids of a window are best found, given a text condition at the top level, on SQLite
/// (PostgreSQL's planner has statistics for its index and chooses by itself): from the index's
/// matches when few match, else by walking the emails in order and checking each. Counting, which
/// reads every match anyway, always starts from them.
/// With the plan comes the number of matches when the probe counted them all (fewer than
/// [`TEXT_FIRST_MAX_MATCHES`]).
fn window_text_plan(
    conn: &mut AnyConnection,
    account_id: &str,
    q: &EmailQuery,
) -> Result<(TextPlan, Option<u64>), StoreError> {
    match driving_text(q.filter.as_ref()) {
        Some(c) if email_search::can_drive(Dialect::of(conn), c) => {
            let n = email_search::count_matches_up_to(conn, account_id, c, TEXT_FIRST_MAX_MATCHES)?;
            Ok(if n < TEXT_FIRST_MAX_MATCHES {
                (TextPlan::FromMatches, Some(n))
            } else {
                (TextPlan::CheckEachEmail, None)
            })
        }
        _ => Ok((TextPlan::MatchList, None)),
    }
}

/// The filter's only condition, when it is a text condition the index can count alone.
fn lone_text_condition(dialect: Dialect, q: &EmailQuery) -> Option<&Condition> {
    match &q.filter {
        Some(Filter::Condition(c))
            if !q.collapse_threads
                && email_search::can_drive(dialect, c)
                && **c
                    == (Condition {
                        text: c.text.clone(),
                        from: c.from.clone(),
                        to: c.to.clone(),
                        cc: c.cc.clone(),
                        bcc: c.bcc.clone(),
                        subject: c.subject.clone(),
                        body: c.body.clone(),
                        ..Condition::default()
                    }) =>
        {
            Some(c)
        }
        _ => None,
    }
}

/// `FROM … WHERE <account> AND <filter>`, with `e` the email row (and `em0` its membership of
/// the driving mailbox, if any).
fn push_from_where(sql: &mut Sql, account_id: &str, filter: Option<&Filter>) {
    let driving = driving_text(filter).filter(|c| email_search::can_drive(sql.dialect, c));
    match (sql.text_plan, driving, filter) {
        (TextPlan::FromMatches, Some(c), Some(f)) => {
            // CROSS JOIN: SQLite keeps the matches as the outer loop.
            sql.push(" FROM (");
            email_search::push_matching_ids(sql, account_id, c);
            sql.push(") t CROSS JOIN emails e ON e.id = t.email_id WHERE e.account_id = ")
                .text(account_id)
                .push(" AND ");
            push_filter(sql, account_id, &without_driving_text(f));
        }
        (TextPlan::CheckEachEmail, Some(c), Some(f)) => {
            push_walk(sql, account_id, filter);
            sql.push(" AND ");
            email_search::push_rowid_check(sql, account_id, c);
            sql.push(" AND ");
            push_filter(sql, account_id, &without_driving_text(f));
        }
        _ => {
            sql.text_plan = TextPlan::MatchList;
            push_walk(sql, account_id, filter);
            if let Some(f) = filter {
                sql.push(" AND ");
                push_filter(sql, account_id, f);
            }
        }
    }
}

/// `FROM … WHERE <account>` over the account's emails, or the driving mailbox's memberships.
fn push_walk(sql: &mut Sql, account_id: &str, filter: Option<&Filter>) {
    match driving_mailbox(sql, filter) {
        Some(m) => {
            sql.push(
                " FROM email_mailboxes em0 JOIN emails e \
                 ON e.account_id = em0.account_id AND e.id = em0.email_id \
                 WHERE em0.account_id = ",
            )
            .text(account_id)
            .push(" AND em0.mailbox_id = ")
            .text(m);
        }
        None => {
            sql.push(" FROM emails e WHERE e.account_id = ")
                .text(account_id);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// sort → SQL

fn push_sort_expr(sql: &mut Sql, s: &EmailSort, driving: bool) {
    match &s.key {
        // The membership's copy of receivedAt, when there is one, so its index gives the order.
        SortKey::ReceivedAt => {
            sql.push(if driving {
                "em0.received_at"
            } else {
                "e.received_at"
            });
        }
        SortKey::SentAt => {
            sql.push(COL_SENT_AT);
        }
        SortKey::Size => {
            sql.push("e.size");
        }
        SortKey::From => {
            sql.push(COL_FROM_SORT);
        }
        SortKey::To => {
            sql.push(COL_TO_SORT);
        }
        SortKey::Subject => {
            sql.push(COL_SUBJECT_SORT);
        }
        // QRY-04: false < true.
        SortKey::HasKeyword(k) => {
            sql.push("(CASE WHEN ");
            push_has_keyword(sql, "e", k);
            sql.push(" THEN 1 ELSE 0 END)");
        }
        SortKey::AllInThreadHaveKeyword(k) => {
            sql.push("(CASE WHEN ");
            push_all_in_thread(sql, k);
            sql.push(" THEN 1 ELSE 0 END)");
        }
        SortKey::SomeInThreadHaveKeyword(k) => {
            sql.push("(CASE WHEN ");
            push_some_in_thread(sql, k);
            sql.push(" THEN 1 ELSE 0 END)");
        }
    }
}

fn dir(ascending: bool) -> &'static str {
    if ascending { " ASC" } else { " DESC" }
}

/// The id breaks ties (QRY-05), in the direction of the first comparator so that the
/// `(account_id, received_at, id)` index serves the default sort.
fn id_direction(sort: &[EmailSort]) -> &'static str {
    dir(sort.first().is_none_or(|s| s.ascending))
}

/// `SELECT e.id AS id, e.thread_id AS thread_id, <sort exprs> AS s0.. FROM … WHERE …`: the
/// filtered rows with their sort values, for the window-function forms.
fn push_keyed_rows(sql: &mut Sql, account_id: &str, q: &EmailQuery) {
    sql.push("SELECT e.id AS id, e.thread_id AS thread_id");
    for (i, s) in q.sort.iter().enumerate() {
        sql.push(", ");
        let driving = driving_mailbox(sql, q.filter.as_ref()).is_some();
        push_sort_expr(sql, s, driving);
        sql.push(&format!(" AS s{i}"));
    }
    push_from_where(sql, account_id, q.filter.as_ref());
}

fn keyed_order(q: &EmailQuery, prefix: &str) -> String {
    let mut out = String::new();
    for (i, s) in q.sort.iter().enumerate() {
        out.push_str(&format!("{prefix}s{i}{}, ", dir(s.ascending)));
    }
    out.push_str(&format!("{prefix}id{}", id_direction(&q.sort)));
    out
}

/// The result set as rows `(id, s0..)`: every match, or with `collapseThreads` the first of each
/// thread (EQ-01).
fn push_result_rows(sql: &mut Sql, account_id: &str, q: &EmailQuery) {
    if !q.collapse_threads {
        push_keyed_rows(sql, account_id, q);
        return;
    }
    sql.push("SELECT * FROM (SELECT k.*, ROW_NUMBER() OVER (PARTITION BY k.thread_id ORDER BY ")
        .push(&keyed_order(q, "k."))
        .push(") AS thread_rank FROM (");
    push_keyed_rows(sql, account_id, q);
    sql.push(") k) c WHERE c.thread_rank = 1");
}

/// The ids of the window `[offset, offset + limit)`.
fn select_ids(
    dialect: Dialect,
    text_plan: TextPlan,
    account_id: &str,
    q: &EmailQuery,
    offset: u64,
    limit: u64,
) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.text_plan = text_plan;
    if q.collapse_threads {
        sql.push("SELECT r.id AS id FROM (");
        push_result_rows(&mut sql, account_id, q);
        sql.push(") r ORDER BY ").push(&keyed_order(q, "r."));
    } else {
        // The plain form, so the planner can walk an index in sort order.
        sql.push("SELECT e.id AS id");
        push_from_where(&mut sql, account_id, q.filter.as_ref());
        sql.push(" ORDER BY ");
        let driving = driving_mailbox(&sql, q.filter.as_ref()).is_some();
        for s in &q.sort {
            push_sort_expr(&mut sql, s, driving);
            sql.push(dir(s.ascending)).push(", ");
        }
        sql.push(if driving { "em0.email_id" } else { "e.id" })
            .push(id_direction(&q.sort));
    }
    // Literals, not parameters: SQLite reads a bound LIMIT while planning, which marks the
    // statement expired at every bind, so it would be compiled twice per execution.
    sql.push(" LIMIT ")
        .push(&limit.min(i64::MAX as u64).to_string())
        .push(" OFFSET ")
        .push(&offset.min(i64::MAX as u64).to_string());
    sql
}

fn select_count(dialect: Dialect, account_id: &str, q: &EmailQuery) -> Sql {
    let mut sql = Sql::new(dialect);
    // Counting reads every match: from the text index, when there is a text condition to start
    // from, that is never more than walking the emails.
    sql.text_plan = TextPlan::FromMatches;
    // EQ-07: a lone inMailbox reads the mailbox's maintained count (store::mailbox_counts):
    // emails, or threads when collapsed (each thread with an email there is one row).
    if let Some(Filter::Condition(c)) = &q.filter
        && let Some(m) = &c.in_mailbox
        && **c
            == (Condition {
                in_mailbox: Some(m.clone()),
                ..Condition::default()
            })
    {
        sql.push(if q.collapse_threads {
            "SELECT total_threads AS n FROM mailbox_counts WHERE account_id = "
        } else {
            "SELECT total_emails AS n FROM mailbox_counts WHERE account_id = "
        })
        .text(account_id)
        .push(" AND mailbox_id = ")
        .text(m);
        return sql;
    }
    // A lone text condition: every match in the index is one email of the account.
    if let Some(c) = lone_text_condition(dialect, q) {
        email_search::push_match_count(&mut sql, account_id, c);
        return sql;
    }
    // With collapseThreads every thread with a match contributes exactly one row.
    sql.push(if q.collapse_threads {
        "SELECT COUNT(DISTINCT e.thread_id) AS n"
    } else {
        "SELECT COUNT(*) AS n"
    });
    push_from_where(&mut sql, account_id, q.filter.as_ref());
    sql
}

/// The 0-based index of `anchor` in the result, as one row `n`, or no row.
fn select_index_of(dialect: Dialect, account_id: &str, q: &EmailQuery, anchor: &str) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.text_plan = TextPlan::FromMatches;
    sql.push("SELECT z.n AS n FROM (SELECT r.id AS id, ROW_NUMBER() OVER (ORDER BY ")
        .push(&keyed_order(q, "r."))
        .push(") - 1 AS n FROM (");
    push_result_rows(&mut sql, account_id, q);
    sql.push(") r) z WHERE z.id = ").text(anchor);
    sql
}

/// The SQL that returns the ids of `[offset, offset + limit)`, for `EXPLAIN` in tests and
/// benchmarks: `(statement with $n placeholders, parameters as text)`.
pub fn explain_ids_sql(
    dialect: Dialect,
    account_id: &str,
    q: &EmailQuery,
    offset: u64,
    limit: u64,
) -> (String, Vec<String>) {
    let sql = select_ids(dialect, TextPlan::MatchList, account_id, q, offset, limit);
    let params = sql
        .params
        .iter()
        .map(|p| match p {
            Param::Text(s) => s.clone(),
            Param::Int(i) => i.to_string(),
        })
        .collect();
    (sql.text, params)
}

/// The query plan SQLite picks for the ids of a window (`EXPLAIN QUERY PLAN`), one line per
/// step; empty on PostgreSQL.
pub fn sqlite_query_plan(
    conn: &mut AnyConnection,
    account_id: &str,
    q: &EmailQuery,
    offset: u64,
    limit: u64,
) -> Result<Vec<String>, StoreError> {
    #[derive(QueryableByName)]
    struct PlanRow {
        #[diesel(sql_type = Text)]
        detail: String,
    }
    if !matches!(conn, AnyConnection::Sqlite(_)) {
        return Ok(Vec::new());
    }
    let (text_plan, _) = window_text_plan(conn, account_id, q)?;
    let mut sql = select_ids(Dialect::Sqlite, text_plan, account_id, q, offset, limit);
    sql.text = format!("EXPLAIN QUERY PLAN {}", sql.text);
    let rows = load!(conn, &sql, PlanRow)?;
    Ok(rows.into_iter().map(|r| r.detail).collect())
}

// ---------------------------------------------------------------------------------------------
// the store

fn count(conn: &mut AnyConnection, sql: &Sql) -> Result<Option<i64>, StoreError> {
    Ok(load!(conn, sql, CountRow)?.first().map(|r| r.n))
}

/// Runs one query window inside a read transaction, so the state, the count and the ids agree.
fn run_query(
    conn: &mut AnyConnection,
    account_id: &str,
    q: &EmailQuery,
    w: &QueryWindow,
) -> Result<Result<QueryPage, MethodError>, StoreError> {
    let dialect = Dialect::of(conn);
    conn.transaction::<_, StoreError, _>(|conn| {
        let state = state_string(changelog::type_state(conn, account_id, DATA_TYPE)?);
        let need_total = w.calculate_total || matches!(w.start, WindowStart::Position(p) if p < 0);
        let (text_plan, counted) = if w.limit > 0 {
            window_text_plan(conn, account_id, q)?
        } else {
            (TextPlan::MatchList, None)
        };
        let total = if need_total {
            // A lone text condition's matches were just counted by the plan's probe.
            match counted.filter(|_| lone_text_condition(dialect, q).is_some()) {
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
                count(conn, &select_index_of(dialect, account_id, q, id))?.map(|n| n.max(0) as u64)
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
            load!(
                conn,
                &select_ids(dialect, text_plan, account_id, q, start, w.limit),
                IdRow
            )?
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

fn fail(e: StoreError) -> MethodError {
    log::error!("email query store: {e}");
    MethodError::ServerFail("the store failed".into())
}

fn changes_error(e: ChangesError) -> MethodError {
    match e {
        ChangesError::CannotCalculate(why) => {
            MethodError::CannotCalculateChanges(format!("{why:?}"))
        }
        ChangesError::Store(e) => fail(e),
    }
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

fn uses_header(f: &Filter) -> bool {
    match f {
        Filter::Operator(_, parts) => parts.iter().any(uses_header),
        Filter::Condition(c) => c.header.is_some(),
    }
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
        if query.filter.as_ref().is_some_and(uses_header) {
            ensure_headers_indexed(self.conn(), account_id).map_err(fail)?;
        }
        run_query(self.conn(), account_id, query, window).map_err(fail)?
    }

    fn email_touched_since(
        &mut self,
        account_id: &str,
        since: i64,
        whole_threads: bool,
    ) -> Result<Vec<String>, MethodError> {
        let conn = self.conn();
        let emails =
            changelog::touched_since(conn, account_id, DATA_TYPE, since).map_err(changes_error)?;
        if !whole_threads {
            return Ok(emails);
        }
        let threads =
            changelog::touched_since(conn, account_id, "Thread", since).map_err(changes_error)?;
        Ok(expand_to_threads(conn, account_id, &emails, threads)
            .map_err(fail)?
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
            let rows = load!(&mut *conn, &sql, SnippetRow).map_err(|e| fail(e.into()))?;
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
        if uses_header(filter) {
            ensure_headers_indexed(self.conn(), account_id).map_err(fail)?;
        }
        let conn = self.conn();
        let mut out = HashSet::new();
        for chunk in ids.chunks(CHUNK) {
            let mut sql = Sql::new(Dialect::of(conn));
            sql.push("SELECT e.id AS id");
            push_from_where(&mut sql, account_id, Some(filter));
            sql.push(" AND e.id IN ");
            push_id_list(&mut sql, chunk);
            let rows = load!(&mut *conn, &sql, IdRow).map_err(|e| fail(e.into()))?;
            out.extend(rows.into_iter().map(|r| r.id));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jmap::email_query::parse_sort;
    use crate::jmap::limits::QueryLimits;
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
