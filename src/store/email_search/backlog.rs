//! Emails stored before the search index existed, indexed in the background when the server
//! starts (the migration that added the index left it empty).

use diesel::prelude::*;
use diesel::sql_types::Text;

use super::{Count, FIELDS, field_texts, push_fts_row};
use crate::mail;
use crate::mail::search;
use crate::store::query_sql::{Dialect, Sql, execute, load};
use crate::store::{AnyConnection, Store, StoreError};

/// Rows indexed per transaction while working off the backlog: short enough not to hold the
/// SQLite write lock for long.
const BACKLOG_BATCH: i64 = 200;

#[derive(QueryableByName)]
struct BacklogRow {
    #[diesel(sql_type = Text)]
    account_id: String,
    #[diesel(sql_type = Text)]
    email_id: String,
    #[diesel(sql_type = Text)]
    from_text: String,
    #[diesel(sql_type = Text)]
    to_text: String,
    #[diesel(sql_type = Text)]
    cc_text: String,
    #[diesel(sql_type = Text)]
    bcc_text: String,
    #[diesel(sql_type = Text)]
    subject_text: String,
    #[diesel(sql_type = Text)]
    body_text: String,
}

fn unindexed(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "fts_docid IS NULL",
        Dialect::Postgres => "body_doc IS NULL",
    }
}

/// Indexes the emails stored before the index existed, [`BACKLOG_BATCH`] per transaction, in
/// key order (so each batch starts where the last ended); returns how many it indexed. Safe to
/// run while the server writes: new emails are indexed as they are stored, and a row that went
/// away or was indexed meanwhile is skipped.
pub fn index_backlog(store: &Store) -> Result<u64, StoreError> {
    let mut conn = store.conn()?;
    let conn: &mut AnyConnection = &mut conn;
    let dialect = Dialect::of(conn);
    let mut sql = Sql::new(dialect);
    sql.push("SELECT COUNT(*) AS n FROM email_search WHERE ")
        .push(unindexed(dialect));
    let backlog = load!(&mut *conn, &sql, Count)?.first().map_or(0, |c| c.n);
    if backlog == 0 {
        return Ok(0);
    }
    log::info!(
        "search index: indexing {backlog} emails stored before it existed; \
         until it is done, searches may miss them"
    );
    let mut done = 0u64;
    let mut after = (String::new(), String::new());
    loop {
        let mut sql = Sql::new(dialect);
        sql.push(
            "SELECT account_id, email_id, from_text, to_text, cc_text, bcc_text, subject_text, \
             body_text FROM email_search WHERE ",
        )
        .push(unindexed(dialect))
        .push(" AND (account_id > ")
        .text(&after.0)
        .push(" OR (account_id = ")
        .text(&after.0)
        .push(" AND email_id > ")
        .text(&after.1)
        .push(")) ORDER BY account_id, email_id LIMIT ")
        .push(&BACKLOG_BATCH.to_string());
        let rows = load!(&mut *conn, &sql, BacklogRow)?;
        let Some(last) = rows.last() else { break };
        after = (last.account_id.clone(), last.email_id.clone());
        conn.transaction::<_, StoreError, _>(|conn| {
            for r in &rows {
                index_existing(conn, r)?;
            }
            Ok(())
        })?;
        done += rows.len() as u64;
        if done % 10_000 < BACKLOG_BATCH as u64 {
            log::info!("search index: {done} of {backlog} emails indexed");
        }
    }
    log::info!("search index: done, {done} emails indexed");
    Ok(done)
}

fn index_existing(conn: &mut AnyConnection, r: &BacklogRow) -> Result<(), StoreError> {
    let text = mail::SearchText {
        from: r.from_text.clone(),
        to: r.to_text.clone(),
        cc: r.cc_text.clone(),
        bcc: r.bcc_text.clone(),
        subject: r.subject_text.clone(),
        body: r.body_text.clone(),
    };
    let dialect = Dialect::of(conn);
    let mut sql = Sql::new(dialect);
    match dialect {
        Dialect::Sqlite => {
            push_fts_row(conn, &r.account_id, &r.email_id, &text)?;
            sql.push("UPDATE email_search SET fts_docid = last_insert_rowid()");
        }
        Dialect::Postgres => {
            sql.push("UPDATE email_search SET ");
            for (i, t) in field_texts(&text).into_iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.push(FIELDS[i].1)
                    .push(" = ")
                    .text(search::tsvector_literal(t))
                    .push("::tsvector");
            }
        }
    }
    sql.push(" WHERE account_id = ")
        .text(&r.account_id)
        .push(" AND email_id = ")
        .text(&r.email_id)
        .push(" AND ")
        .push(unindexed(dialect));
    let updated = execute!(&mut *conn, &sql)?;
    if updated == 0 && dialect == Dialect::Sqlite {
        // Indexed or deleted meanwhile: the FTS row just written belongs to nobody.
        let mut sql = Sql::new(dialect);
        sql.push("DELETE FROM email_fts WHERE rowid = last_insert_rowid()");
        execute!(&mut *conn, &sql)?;
    }
    Ok(())
}
