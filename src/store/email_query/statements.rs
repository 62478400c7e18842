//! The statements of one Email/query: where the rows come from (the account's emails, a
//! mailbox's memberships in order, or the text index's matches), the sort, and the window, the
//! count and the anchor's index built on them.

use diesel::prelude::*;
use diesel::sql_types::Text;

use super::count;
use super::filter::{push_all_in_thread, push_filter, push_has_keyword, push_some_in_thread};
use crate::jmap::methods::email_query::{
    Condition, EmailQuery, EmailSort, Filter, Operator, SortKey,
};
use crate::store::email_search;
use crate::store::query_sql::{Dialect, Param, Sql, TextPlan, load};
use crate::store::static_sql::StaticSql;
use crate::store::{AnyConnection, StoreError};

// Sort keys kept on `emails` by the email store (src/store/email/).
const COL_SENT_AT: &str = "e.sent_at";
const COL_FROM_SORT: &str = "e.from_sort";
const COL_TO_SORT: &str = "e.to_sort";
const COL_SUBJECT_SORT: &str = "e.base_subject";

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
    let f = match filter? {
        Filter::Operator(Operator::And, parts) => parts.iter().find(|f| is_text_condition(f))?,
        f => f,
    };
    match f {
        Filter::Condition(c) if email_search::has_text_terms(c) => Some(c),
        _ => None,
    }
}

fn is_text_condition(f: &Filter) -> bool {
    matches!(f, Filter::Condition(c) if email_search::has_text_terms(c))
}

/// `c` without its text conditions.
fn strip_text(c: &mut Condition) {
    for t in c.search_texts_mut() {
        *t = None;
    }
}

/// `filter` without the text terms of its [`driving_text`] condition, which a statement that
/// starts from that condition's matches need not check again.
fn without_driving_text(filter: &Filter) -> Filter {
    let mut out = filter.clone();
    match &mut out {
        Filter::Condition(c) => strip_text(c),
        Filter::Operator(Operator::And, parts) => {
            if let Some(Filter::Condition(c)) = parts.iter_mut().find(|f| is_text_condition(f)) {
                strip_text(c);
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
/// With the plan comes the number of matches when they were all counted: by the probe (fewer
/// than [`TEXT_FIRST_MAX_MATCHES`]) or for the choice of walk ([`walk_plan`]). Runs in the
/// query's transaction (see [`plan_serially`]).
pub(super) fn window_text_plan(
    conn: &mut AnyConnection,
    account_id: &str,
    q: &EmailQuery,
    walk: Option<Walk>,
) -> Result<(TextPlan, Option<u64>), StoreError> {
    match driving_text(q.filter.as_ref()) {
        Some(c) if email_search::can_drive(c) => {
            let n = email_search::count_matches_up_to(conn, account_id, c, TEXT_FIRST_MAX_MATCHES)?;
            if n < TEXT_FIRST_MAX_MATCHES {
                if Dialect::of(conn) == Dialect::Postgres {
                    plan_serially(conn)?;
                }
                Ok((TextPlan::FromMatches, Some(n)))
            } else if Dialect::of(conn) == Dialect::Sqlite {
                match (walk, asked_for_each_email(q)) {
                    (Some(walk), Some(c)) => walk_plan(conn, account_id, c, walk),
                    _ => Ok((TextPlan::CheckEachEmail, None)),
                }
            } else {
                // PostgreSQL's planner walks in sort order by itself when many match.
                Ok((TextPlan::MatchList, None))
            }
        }
        _ => Ok((TextPlan::MatchList, None)),
    }
}

/// Per walked email, what asking the index about its row costs, and per match, what putting it
/// in the list that [`TextPlan::CheckEachEmail`] checks against costs: nanoseconds, measured at
/// a million emails (BENCHMARKS.md, "typed words completed from the index's words").
const ROW_QUESTION_NS: u128 = 32_000;
const LISTED_MATCH_NS: u128 = 135;

/// The condition a walk could ask the index about for each email: a lone text condition of
/// whole words (a prefix is merged again for every question), newest or oldest first (the walk
/// is in the order of an index, so it stops at the window's end).
fn asked_for_each_email(q: &EmailQuery) -> Option<&Condition> {
    lone_text_condition(q)
        .filter(|c| email_search::asks_whole_words(c))
        .filter(|_| matches!(q.sort.as_slice(), [s] if s.key == SortKey::ReceivedAt))
}

/// A window that starts at a known position, as a walk in order sees it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Walk {
    /// Where the walk stops: the window's end.
    pub end: u64,
    /// Whether the query's total is wanted, so every match is counted anyway.
    pub total_wanted: bool,
}

/// SQLite, a lone text condition with at least [`TEXT_FIRST_MAX_MATCHES`] matches: asking the
/// index about each walked email costs the emails walked to fill `[0, end)`, about
/// `end × emails / matches` questions; checking them against a list costs listing every match.
/// The first is less from `sqrt(end × emails × question / listing)` matches on, so the matches
/// are counted up to there (at most about 5 ms at a million emails), or to the end when the
/// total is wanted; the account's emails are bounded above by its mailboxes' maintained counts
/// (an email in two mailboxes counts twice). With the plan comes the number of matches when
/// they were counted to the end.
fn walk_plan(
    conn: &mut AnyConnection,
    account_id: &str,
    c: &Condition,
    walk: Walk,
) -> Result<(TextPlan, Option<u64>), StoreError> {
    let mut sql = Sql::new(Dialect::Sqlite);
    sql.push("SELECT COALESCE(SUM(total_emails), 0) AS n FROM mailbox_counts WHERE account_id = ")
        .text(account_id);
    let emails = count(conn, &sql)?.unwrap_or(0).max(0) as u128;
    let balance = u128::from(walk.end) * emails * ROW_QUESTION_NS / LISTED_MATCH_NS;
    let enough = ((balance as f64).sqrt().ceil() as u64).max(TEXT_FIRST_MAX_MATCHES);
    let counted = if walk.total_wanted {
        // Without a LIMIT, which would make SQLite hand the count every match one by one.
        let mut sql = Sql::new(Dialect::Sqlite);
        email_search::push_match_count(&mut sql, account_id, c);
        Some(count(conn, &sql)?.unwrap_or(0).max(0) as u64)
    } else {
        None
    };
    let n = match counted {
        Some(n) => n,
        None => email_search::count_matches_up_to(conn, account_id, c, enough)?,
    };
    let plan = if n >= enough {
        TextPlan::AskForEachEmail
    } else {
        TextPlan::CheckEachEmail
    };
    Ok((plan, counted.or((n < enough).then_some(n))))
}

/// PostgreSQL, for the rest of the transaction: no parallel workers. Its estimate for an OR
/// over six tsvectors is tens of thousands of matches when the probe just counted fewer than
/// [`TEXT_FIRST_MAX_MATCHES`], and for that many it starts workers, which take longer to start
/// (4–5 ms on 2 cores) than the whole statement takes without them (1.5 ms for a rare word at a
/// million emails).
fn plan_serially(conn: &mut AnyConnection) -> Result<(), StoreError> {
    StaticSql::new("SET LOCAL max_parallel_workers_per_gather = 0", Vec::new()).run(conn)?;
    Ok(())
}

/// The filter's only condition, when it is a text condition the index can count alone.
pub(super) fn lone_text_condition(q: &EmailQuery) -> Option<&Condition> {
    match &q.filter {
        Some(Filter::Condition(c)) if !q.collapse_threads && email_search::can_drive(c) => {
            let mut rest = (**c).clone();
            strip_text(&mut rest);
            (rest == Condition::default()).then_some(&**c)
        }
        _ => None,
    }
}

/// `FROM … WHERE <account> AND <filter>`, with `e` the email row (and `em0` its membership of
/// the driving mailbox, if any).
pub(super) fn push_from_where(sql: &mut Sql, account_id: &str, filter: Option<&Filter>) {
    let driving = driving_text(filter).filter(|c| email_search::can_drive(c));
    match (sql.text_plan, driving, filter) {
        (TextPlan::FromMatches, Some(c), Some(f)) => {
            // The matches are the outer loop, each one's email found by its key. SQLite keeps a
            // CROSS JOIN's order. PostgreSQL guesses tens of thousands of matches for an OR over
            // six tsvectors (a thousand, in fact, at a million messages) and would hash the
            // account's every email (120 ms): a LATERAL subquery it cannot flatten (OFFSET 0)
            // makes it look each match up instead.
            sql.push(" FROM (");
            email_search::push_matching_ids(sql, account_id, c);
            match sql.dialect {
                Dialect::Sqlite => sql.push(") t CROSS JOIN emails e ON e.id = t.email_id"),
                Dialect::Postgres => sql
                    .push(
                        ") t CROSS JOIN LATERAL (SELECT * FROM emails e1 \
                         WHERE e1.id = t.email_id AND e1.account_id = ",
                    )
                    .text(account_id)
                    .push(" OFFSET 0) e"),
            };
            sql.push(" WHERE e.account_id = ")
                .text(account_id)
                .push(" AND ");
            push_filter(sql, account_id, &without_driving_text(f));
        }
        (TextPlan::CheckEachEmail | TextPlan::AskForEachEmail, Some(c), Some(f)) => {
            push_walk(sql, account_id, filter);
            sql.push(" AND ");
            if sql.text_plan == TextPlan::AskForEachEmail {
                email_search::push_row_match(sql, account_id, c);
            } else {
                email_search::push_rowid_check(sql, account_id, c);
            }
            sql.push(" AND ");
            push_filter(sql, account_id, &without_driving_text(f));
        }
        _ => {
            // No text condition to start from: the plain walk, which may use a mailbox's order.
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

/// The lone text condition of a query sorted by receivedAt alone whose few matches
/// ([`TextPlan::FromMatches`]) PostgreSQL sorts from its search rows, without their emails; and
/// the sort's direction.
fn sorted_by_search_rows<'q>(sql: &Sql, q: &'q EmailQuery) -> Option<(&'q Condition, bool)> {
    if sql.dialect != Dialect::Postgres || sql.text_plan != TextPlan::FromMatches {
        return None;
    }
    match q.sort.as_slice() {
        [s] if s.key == SortKey::ReceivedAt => Some((lone_text_condition(q)?, s.ascending)),
        _ => None,
    }
}

/// The ids of the window `[offset, offset + limit)`.
pub(super) fn select_ids(
    dialect: Dialect,
    text_plan: TextPlan,
    account_id: &str,
    q: &EmailQuery,
    offset: u64,
    limit: u64,
) -> Sql {
    let mut sql = Sql::new(dialect);
    sql.text_plan = text_plan;
    if let Some((c, ascending)) = sorted_by_search_rows(&sql, q) {
        email_search::push_matches_by_received(&mut sql, account_id, c, ascending);
    } else if q.collapse_threads {
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

pub(super) fn select_count(dialect: Dialect, account_id: &str, q: &EmailQuery) -> Sql {
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
    if let Some(c) = lone_text_condition(q) {
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
pub(super) fn select_index_of(
    dialect: Dialect,
    account_id: &str,
    q: &EmailQuery,
    anchor: &str,
) -> Sql {
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
    let walk = Walk {
        end: offset + limit,
        total_wanted: false,
    };
    let (text_plan, _) = window_text_plan(conn, account_id, q, Some(walk))?;
    let mut sql = select_ids(Dialect::Sqlite, text_plan, account_id, q, offset, limit);
    sql.text = format!("EXPLAIN QUERY PLAN {}", sql.text);
    let rows = load!(conn, &sql, PlanRow)?;
    Ok(rows.into_iter().map(|r| r.detail).collect())
}
