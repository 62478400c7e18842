//! Reading emails and threads: metadata with the stored list-view summaries, and thread lists.

use std::collections::HashMap;

use diesel::prelude::*;

use crate::jmap::methods::email::EmailMeta;
use crate::mail;
use crate::store::schema::{email_keywords, email_mailboxes, emails};
use crate::store::{AnyConnection, StoreError};

/// The columns of a [`mail::StoredSummary`]: `summary`, `sent_at`, `has_attachment`, `preview`.
type SummaryColumns = (Option<String>, Option<i64>, bool, String);

/// Email id → values of one column, for a batch of emails.
type ByEmail = HashMap<String, Vec<String>>;

/// The mailboxes and the keywords of `ids`, read 500 emails at a time.
fn mailboxes_and_keywords(
    conn: &mut AnyConnection,
    account_id: &str,
    ids: &[&String],
) -> Result<(ByEmail, ByEmail), StoreError> {
    let mut mailbox_map = ByEmail::new();
    let mut keyword_map = ByEmail::new();
    for chunk in ids.chunks(500) {
        let memberships: Vec<(String, String)> = email_mailboxes::table
            .filter(email_mailboxes::account_id.eq(account_id))
            .filter(email_mailboxes::email_id.eq_any(chunk))
            .select((email_mailboxes::email_id, email_mailboxes::mailbox_id))
            .load(conn)?;
        for (e, m) in memberships {
            mailbox_map.entry(e).or_default().push(m);
        }
        let keywords: Vec<(String, String)> = email_keywords::table
            .filter(email_keywords::account_id.eq(account_id))
            .filter(email_keywords::email_id.eq_any(chunk))
            .select((email_keywords::email_id, email_keywords::keyword))
            .load(conn)?;
        for (e, k) in keywords {
            keyword_map.entry(e).or_default().push(k);
        }
    }
    Ok((mailbox_map, keyword_map))
}

/// Metadata of emails by id (or the first `limit` of the account), with their stored summaries
/// when `with_summary` (`None` where the row has none yet).
pub fn metadata(
    conn: &mut AnyConnection,
    account_id: &str,
    ids: Option<&[String]>,
    limit: usize,
    with_summary: bool,
) -> Result<Vec<EmailMeta>, StoreError> {
    let base = (
        emails::id,
        emails::blob_id,
        emails::thread_id,
        emails::size,
        emails::received_at,
    );
    let summary_columns = (
        emails::summary,
        emails::sent_at,
        emails::has_attachment,
        emails::preview,
    );
    let mut query = emails::table
        .filter(emails::account_id.eq(account_id))
        .into_boxed();
    if let Some(ids) = ids {
        query = query.filter(emails::id.eq_any(ids.to_vec()));
    } else {
        query = query
            .order((emails::received_at.asc(), emails::id.asc()))
            .limit(limit as i64);
    }
    type Base = (String, String, String, i64, i64);
    let rows: Vec<(Base, Option<SummaryColumns>)> = if with_summary {
        query
            .select((base, summary_columns))
            .load::<(Base, SummaryColumns)>(conn)?
            .into_iter()
            .map(|(b, s)| (b, Some(s)))
            .collect()
    } else {
        query
            .select(base)
            .load::<Base>(conn)?
            .into_iter()
            .map(|b| (b, None))
            .collect()
    };
    let found: Vec<&String> = rows.iter().map(|r| &r.0.0).collect();
    let (mut mailbox_map, mut keyword_map) = mailboxes_and_keywords(conn, account_id, &found)?;
    Ok(rows
        .into_iter()
        .map(|((id, blob_id, thread_id, size, received_at), columns)| {
            let mut mailbox_ids = mailbox_map.remove(&id).unwrap_or_default();
            mailbox_ids.sort();
            let mut keywords = keyword_map.remove(&id).unwrap_or_default();
            keywords.sort();
            let summary = columns.and_then(|(json, sent_at, has_attachment, preview)| {
                Some(mail::StoredSummary {
                    headers_json: json?,
                    sent_at,
                    has_attachment,
                    preview,
                })
            });
            EmailMeta {
                id,
                blob_id,
                thread_id,
                mailbox_ids,
                keywords,
                size,
                received_at,
                summary,
            }
        })
        .collect())
}

/// Keeps the summary of an email computed from its message (the lazy backfill of emails stored
/// before summaries were): the JSON and the columns it is read with. Like `email_headers`, this
/// is derived from an immutable message, not JMAP data, so it records no change.
pub fn keep_summary(
    conn: &mut AnyConnection,
    account_id: &str,
    email_id: &str,
    summary: &mail::Summary,
) -> Result<(), StoreError> {
    diesel::update(emails::table.find((account_id, email_id)))
        .set((
            emails::summary.eq(summary.headers_json()),
            emails::sent_at.eq(summary.sent_at),
            emails::has_attachment.eq(summary.has_attachment),
            emails::preview.eq(&summary.preview),
        ))
        .execute(conn)?;
    Ok(())
}

/// Threads with their emails sorted by receivedAt, then id (THR-02).
pub fn threads(
    conn: &mut AnyConnection,
    account_id: &str,
    ids: Option<&[String]>,
    limit: usize,
) -> Result<Vec<(String, Vec<String>)>, StoreError> {
    let thread_ids: Vec<String> = match ids {
        Some(ids) => ids.to_vec(),
        None => emails::table
            .filter(emails::account_id.eq(account_id))
            .select(emails::thread_id)
            .distinct()
            .order(emails::thread_id.asc())
            .limit(limit as i64)
            .load(conn)?,
    };
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for chunk in thread_ids.chunks(500) {
        let rows: Vec<(String, String)> = emails::table
            .filter(emails::account_id.eq(account_id))
            .filter(emails::thread_id.eq_any(chunk))
            .order((emails::received_at.asc(), emails::id.asc()))
            .select((emails::thread_id, emails::id))
            .load(conn)?;
        let mut by_thread: HashMap<String, Vec<String>> = HashMap::new();
        for (t, e) in rows {
            by_thread.entry(t).or_default().push(e);
        }
        for t in chunk {
            if let Some(emails) = by_thread.remove(t) {
                out.push((t.clone(), emails));
            }
        }
    }
    Ok(out)
}
