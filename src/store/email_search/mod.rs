//! The full-text index of email text (RFC 8621 §4.4.1 `text`, `from`, `to`, `cc`, `bcc`,
//! `subject` and `body` conditions), kept in the transaction that stores the email, so a message
//! is findable the moment its change is pushed.
//!
//! `email_search` holds each email's decoded text (for snippets); the index holds its words as
//! [`crate::mail::search`] cuts and folds them, so both backends match by the same rules:
//!
//! - **SQLite**: `email_fts`, a contentless FTS5 table (the text is in `email_search` already)
//!   with the `ascii` tokenizer, which only splits the folded words at their spaces. Its rowid is
//!   `email_search.fts_docid`, an `INTEGER` of our own, because `VACUUM` may renumber a table's
//!   implicit rowids; a trigger drops the index row with the `email_search` row. Every word is
//!   indexed after its account's key ([`search::fts5_account_key`]), so a word's list holds one
//!   account's emails and a query reads only those: neither every account's matches nor an
//!   intersection with the account's whole list (17 ms for a rare word at a million messages,
//!   when the account was an indexed column). The email id is stored, unindexed, for the
//!   matches to name their email without a join.
//! - **PostgreSQL**: one `tsvector` column per field, written as literals (no parser or
//!   dictionary of the database re-cuts the words), under one multi-column GIN index, which
//!   serves a condition on any of them.
//!
//! Emails stored before the index existed are indexed by [`index_backlog`] in the background
//! when the server starts (the migration only adds the empty index). On SQLite, a search of
//! several terms asks for the words that complete a prefix, listed by `email_fts_words`
//! (`fts5vocab`), rather than for the prefix ([`complete_prefixes`]).

use diesel::prelude::*;

use super::query_sql::{Dialect, Sql, execute, load};
use super::static_sql::{SqlParam, StaticSql};
use super::{AnyConnection, StoreError};
use crate::jmap::methods::email_query::{Condition, SearchText};
use crate::mail;
use crate::mail::search::{self, SearchTerm};

mod backlog;
mod completions;
mod reindex;

pub use backlog::index_backlog;
pub use completions::complete_prefixes;
pub use reindex::reindex_account;

/// The searchable fields, in the order of the index's columns: FTS5 column names (the same as
/// `email_search`'s) and PostgreSQL `tsvector` column names.
const FIELDS: [(&str, &str); 6] = [
    ("from_text", "from_doc"),
    ("to_text", "to_doc"),
    ("cc_text", "cc_doc"),
    ("bcc_text", "bcc_doc"),
    ("subject_text", "subject_doc"),
    ("body_text", "body_doc"),
];

/// The FTS5 columns a `text` condition searches (all but the account's).
const TEXT_COLUMNS: &str = "from_text to_text cc_text bcc_text subject_text body_text";

fn field_texts(t: &mail::SearchText) -> [&str; 6] {
    [&t.from, &t.to, &t.cc, &t.bcc, &t.subject, &t.body]
}

/// The search text of an email stored in the current write, to be stored and indexed at the
/// write's end ([`insert_all`]).
pub struct PendingText {
    pub email_id: String,
    /// The email's receivedAt, which PostgreSQL's search rows keep to sort matches by.
    pub received_at: i64,
    pub text: mail::SearchText,
}

/// Stores and indexes the search text of the emails a write stored, in its transaction, after
/// everything else it wrote.
///
/// Last, because FTS5 writes the words it holds in memory to disk at every statement savepoint,
/// which SQLite takes for any statement that may fail halfway (foreign keys, upserts): indexed
/// one email at a time between the email's other rows, an import wrote a segment per message and
/// spent its time merging them; indexed together, a write's words go to disk once.
pub fn insert_all(
    conn: &mut AnyConnection,
    account_id: &str,
    pending: Vec<PendingText>,
) -> Result<(), StoreError> {
    match Dialect::of(conn) {
        Dialect::Sqlite => {
            for p in pending {
                insert_sqlite(conn, account_id, &p.email_id, &p.text)?;
            }
        }
        Dialect::Postgres => {
            for chunk in pending.chunks(PG_ROWS_PER_INSERT) {
                insert_postgres(conn, account_id, chunk)?;
            }
            if pending.len() >= PG_MERGE_AFTER_ROWS {
                merge_pending_words(conn)?;
            }
        }
    }
    Ok(())
}

/// Writes of at least this many emails merge the GIN index's pending list at their end.
const PG_MERGE_AFTER_ROWS: usize = 50;

/// PostgreSQL: merges the words waiting in the GIN index's pending list into the index, in
/// bulk, sorted: a third of the cost of inserting them one email at a time, and searches need
/// not scan them (migration `2026-12-07-140100_email_search_words_pending`). Only the index's
/// owner may: a role that is not (the store's tables created by another) leaves them to the
/// next insert that crosses the list's limit, or to autovacuum.
fn merge_pending_words(conn: &mut AnyConnection) -> Result<(), StoreError> {
    StaticSql::new(
        "DO $merge$ BEGIN \
         PERFORM gin_clean_pending_list('email_search_words'::regclass); \
         EXCEPTION WHEN insufficient_privilege THEN NULL; \
         END $merge$",
        Vec::new(),
    )
    .run(conn)?;
    Ok(())
}

/// Search rows per PostgreSQL `INSERT` (15 parameters each): one round trip for many emails.
const PG_ROWS_PER_INSERT: usize = 100;

/// SQLite: stores the search text of an email and indexes it. Fixed texts, so SQLite keeps them
/// prepared; the FTS row first, for `last_insert_rowid()` to name it.
fn insert_sqlite(
    conn: &mut AnyConnection,
    account_id: &str,
    email_id: &str,
    text: &mail::SearchText,
) -> Result<(), StoreError> {
    push_fts_row(conn, account_id, email_id, text)?;
    let mut params = vec![
        SqlParam::Text(account_id.to_owned()),
        SqlParam::Text(email_id.to_owned()),
    ];
    params.extend(field_texts(text).map(|t| SqlParam::Text(t.to_owned())));
    StaticSql::new(
        "INSERT INTO email_search (account_id, email_id, from_text, to_text, cc_text, \
         bcc_text, subject_text, body_text, fts_docid) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, last_insert_rowid())",
        params,
    )
    .run(conn)?;
    Ok(())
}

/// PostgreSQL: stores the search text and `tsvector`s of several emails in one statement.
fn insert_postgres(
    conn: &mut AnyConnection,
    account_id: &str,
    rows: &[PendingText],
) -> Result<(), StoreError> {
    let mut sql = Sql::new(Dialect::Postgres);
    sql.push("INSERT INTO email_search (account_id, email_id, received_at");
    for (text_column, doc_column) in FIELDS {
        sql.push(", ").push(text_column).push(", ").push(doc_column);
    }
    sql.push(") VALUES ");
    for (i, row) in rows.iter().enumerate() {
        sql.push(if i == 0 { "(" } else { ", (" })
            .text(account_id)
            .push(", ")
            .text(&row.email_id)
            .push(", ")
            .int(row.received_at);
        for t in field_texts(&row.text) {
            sql.push(", ")
                .text(t)
                .push(", ")
                .text(search::tsvector_literal(t))
                .push("::tsvector");
        }
        sql.push(")");
    }
    execute!(conn, &sql)?;
    Ok(())
}

/// Inserts the FTS5 row of an email; its rowid is then `last_insert_rowid()`.
fn push_fts_row(
    conn: &mut AnyConnection,
    account_id: &str,
    email_id: &str,
    text: &mail::SearchText,
) -> Result<(), StoreError> {
    let key = search::fts5_account_key(account_id);
    let mut params = vec![SqlParam::Text(email_id.to_owned())];
    params.extend(field_texts(text).map(|t| SqlParam::Text(search::fts5_document(&key, t))));
    StaticSql::new(
        "INSERT INTO email_fts (email_id, from_text, to_text, cc_text, bcc_text, subject_text, \
         body_text) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        params,
    )
    .run(conn)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// conditions → SQL

/// The text fields of a condition with their index column (`None`: every field), and terms.
fn text_fields(c: &Condition) -> Vec<(Option<usize>, &SearchText)> {
    // `text` first, then one condition per field of FIELDS, in its order.
    std::iter::once(None)
        .chain((0..FIELDS.len()).map(Some))
        .zip(c.search_texts())
        .filter_map(|(field, t)| t.as_ref().map(|t| (field, t)))
        .filter(|(_, t)| !t.terms.is_empty())
        .collect()
}

/// Whether `c` has a text condition with at least one term.
pub fn has_text_terms(c: &Condition) -> bool {
    !text_fields(c).is_empty()
}

/// `e.id IN (…)`: the emails of the account whose text matches every text term of `c`.
pub fn push_text_match(sql: &mut Sql, account_id: &str, c: &Condition) {
    if matches_nothing(c) {
        sql.push("1=0");
        return;
    }
    match sql.dialect {
        Dialect::Sqlite => {
            sql.push("e.id IN (");
            push_matching_ids(sql, account_id, c);
            sql.push(")");
        }
        Dialect::Postgres => {
            sql.push("e.id IN (SELECT s.email_id");
            push_pg_matches(sql, account_id, c);
            sql.push(")");
        }
    }
}

/// PostgreSQL: ` FROM email_search s WHERE <the account's rows whose tsvectors match every text
/// term of c>`, through the GIN index `email_search_words`.
fn push_pg_matches(sql: &mut Sql, account_id: &str, c: &Condition) {
    sql.push(" FROM email_search s WHERE s.account_id = ")
        .text(account_id);
    for (field, t) in &text_fields(c) {
        for term in &t.terms {
            let tsquery = term.tsquery();
            let columns: Vec<&str> = match field {
                None => FIELDS.iter().map(|f| f.1).collect(),
                Some(i) => vec![FIELDS[*i].1],
            };
            sql.push(" AND (");
            for (j, col) in columns.iter().enumerate() {
                if j > 0 {
                    sql.push(" OR ");
                }
                sql.push("s.")
                    .push(col)
                    .push(" @@ ")
                    .text(&tsquery)
                    .push("::tsquery");
            }
            sql.push(")");
        }
    }
}

/// `SELECT <what> FROM email_fts WHERE email_fts MATCH …`, with `what` `email_id` (read per
/// match from the FTS table's stored columns) or `rowid` (from the index alone).
fn push_fts_matches(sql: &mut Sql, what: &str, fts_query: &str) {
    sql.push("SELECT ")
        .push(what)
        .push(" FROM email_fts WHERE email_fts MATCH ")
        .text(fts_query);
}

/// The FTS5 query of the account's emails that match every text term of `c` (which
/// [`can_drive`]).
fn fts_query(account_id: &str, c: &Condition) -> String {
    // The account is in every indexed word, so FTS5 reads only the account's word lists.
    let key = search::fts5_account_key(account_id);
    let mut query = Vec::new();
    for (field, t) in text_fields(c) {
        for term in &t.terms {
            query.push(match field {
                None => format!("{{{}}} : {}", TEXT_COLUMNS, term.fts5_phrase(&key)),
                Some(i) => format!("{} : {}", FIELDS[i].0, term.fts5_phrase(&key)),
            });
        }
    }
    query.join(" AND ")
}

/// Whether a query can start from the matches of `c` ([`push_matching_ids`]): on SQLite, when
/// `c` has text terms and none of them matches nothing.
pub fn can_drive(c: &Condition) -> bool {
    has_text_terms(c) && !matches_nothing(c)
}

/// Whether a text term of `c` matches nothing ([`SearchTerm::nothing`]), and so does `c`.
fn matches_nothing(c: &Condition) -> bool {
    text_fields(c)
        .iter()
        .any(|(_, t)| t.terms.iter().any(SearchTerm::is_nothing))
}

/// The ids of the account's emails that match the
/// text terms of `c`, to start a query from (when [`can_drive`]).
pub fn push_matching_ids(sql: &mut Sql, account_id: &str, c: &Condition) {
    match sql.dialect {
        Dialect::Sqlite => push_fts_matches(sql, "email_id", &fts_query(account_id, c)),
        Dialect::Postgres => {
            // OFFSET 0 keeps the planner from folding the matches into the outer query, where it
            // misjudges how many an OR over six tsvectors yields and walks the account instead.
            sql.push("SELECT s.email_id");
            push_pg_matches(sql, account_id, c);
            sql.push(" OFFSET 0");
        }
    }
}

/// PostgreSQL: `SELECT s.email_id AS id …`, the account's emails that match the text terms of
/// `c`, by receivedAt (then id, in the same direction), from the search rows alone: their copy
/// of receivedAt spares looking up each match's email (migration
/// `2026-12-07-160000_email_search_received`). For a window of few matches; with many, walking
/// the emails in order and stopping at the window's end costs less than sorting them all.
pub fn push_matches_by_received(sql: &mut Sql, account_id: &str, c: &Condition, ascending: bool) {
    let dir = if ascending { " ASC" } else { " DESC" };
    sql.push("SELECT s.email_id AS id");
    push_pg_matches(sql, account_id, c);
    sql.push(" ORDER BY s.received_at")
        .push(dir)
        .push(", s.email_id")
        .push(dir);
}

/// SQLite: whether the email `e` is among the matches of the text terms of `c` (when
/// [`can_drive`]), checked through its search row's index rowid: a lookup per email, but no list
/// of every match's email id to build first, so a walk that stops early stays cheap.
pub fn push_rowid_check(sql: &mut Sql, account_id: &str, c: &Condition) {
    sql.push(
        "EXISTS (SELECT 1 FROM email_search s WHERE s.account_id = e.account_id \
         AND s.email_id = e.id AND s.fts_docid IN (",
    );
    push_fts_matches(sql, "rowid", &fts_query(account_id, c));
    sql.push("))");
}

/// SQLite: whether the email `e` matches the text terms of `c`, asked of the index for its row
/// alone: about 32 µs an email at a million, so for a walk that stops after few emails. Only
/// when `c` [`asks_whole_words`]: the index would merge a prefix's lists again for each email.
pub fn push_row_match(sql: &mut Sql, account_id: &str, c: &Condition) {
    sql.push(
        "EXISTS (SELECT 1 FROM email_search s WHERE s.account_id = e.account_id \
         AND s.email_id = e.id AND EXISTS (SELECT 1 FROM email_fts f WHERE email_fts MATCH ",
    )
    .text(fts_query(account_id, c))
    .push(" AND f.rowid = s.fts_docid))");
}

/// Whether every text term of `c` is whole words: a phrase, or a prefix whose completions are
/// listed ([`complete_prefixes`]).
pub fn asks_whole_words(c: &Condition) -> bool {
    text_fields(c).iter().all(|(_, t)| {
        t.terms
            .iter()
            .all(|term| !term.prefix || !term.completions.is_empty())
    })
}

/// `SELECT COUNT(*) AS n …`, how many of the account's emails match the
/// text terms of `c` (when [`can_drive`]), counted in the index alone.
pub fn push_match_count(sql: &mut Sql, account_id: &str, c: &Condition) {
    match sql.dialect {
        Dialect::Sqlite => {
            sql.push("SELECT COUNT(*) AS n FROM (");
            push_fts_matches(sql, "rowid", &fts_query(account_id, c));
            sql.push(")");
        }
        Dialect::Postgres => {
            sql.push("SELECT COUNT(*) AS n");
            push_pg_matches(sql, account_id, c);
        }
    }
}

/// How many of the account's emails match the text terms of `c` (when [`can_drive`]),
/// counting at most `limit`: the exact number when it is less.
pub fn count_matches_up_to(
    conn: &mut AnyConnection,
    account_id: &str,
    c: &Condition,
    limit: u64,
) -> Result<u64, StoreError> {
    let dialect = Dialect::of(conn);
    let mut sql = Sql::new(dialect);
    sql.push("SELECT COUNT(*) AS n FROM (");
    match dialect {
        Dialect::Sqlite => push_fts_matches(&mut sql, "rowid", &fts_query(account_id, c)),
        Dialect::Postgres => {
            sql.push("SELECT 1");
            push_pg_matches(&mut sql, account_id, c);
        }
    }
    sql.push(" LIMIT ").push(&limit.to_string()).push(") m");
    let n = load!(conn, &sql, Count)?.first().map_or(0, |c| c.n);
    Ok(n.max(0) as u64)
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}
