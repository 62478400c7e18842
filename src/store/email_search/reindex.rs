//! `herald reindex`: the search text and the address sort keys of stored emails extracted again
//! from their messages.
//!
//! What is indexed is decided at import (`mail::Email::search_text`, `store::email::sort_key`);
//! when that changes (text parts only, HTML block elements, attachments; Unicode-aware sort
//! keys), emails stored before keep the old values until they are indexed again. This reads each
//! email's message, extracts them as today, and replaces its search row and sort keys, in batches
//! of [`BATCH`] emails per transaction, so that a running server's writes wait at most one batch.
//! Messages are parsed outside the transaction.

use diesel::prelude::*;

use super::{PendingText, insert_all};
use crate::mail;
use crate::store::schema::{email_search, emails};
use crate::store::{AnyConnection, StoreError, blobs};

/// Emails per transaction.
const BATCH: i64 = 200;

/// Indexes every email of `account_id` again; returns how many.
pub fn reindex_account(conn: &mut AnyConnection, account_id: &str) -> Result<u64, StoreError> {
    let mut after = String::new();
    let mut done = 0u64;
    loop {
        let rows: Vec<(String, String, i64)> = emails::table
            .filter(emails::account_id.eq(account_id))
            .filter(emails::id.gt(&after))
            .order(emails::id.asc())
            .select((emails::id, emails::blob_id, emails::received_at))
            .limit(BATCH)
            .load(conn)?;
        let Some((last, _, _)) = rows.last() else {
            return Ok(done);
        };
        after = last.clone();
        let mut pending = Vec::with_capacity(rows.len());
        let mut sort_keys = Vec::with_capacity(rows.len());
        for (email_id, blob_id, received_at) in rows {
            let Some(email) = blobs::read(conn, &blob_id)?.and_then(|raw| mail::Email::parse(&raw))
            else {
                log::warn!("reindex: email {email_id} has no readable message {blob_id}");
                continue;
            };
            sort_keys.push((
                email_id.clone(),
                crate::store::email::sort_key(&email, "From"),
                crate::store::email::sort_key(&email, "To"),
            ));
            pending.push(PendingText {
                email_id,
                received_at,
                text: email.search_text(),
            });
        }
        done += pending.len() as u64;
        conn.transaction::<_, StoreError, _>(|conn| {
            // Emails destroyed since they were read are left out (their search rows went with
            // them).
            let ids: Vec<&String> = pending.iter().map(|p| &p.email_id).collect();
            let still: std::collections::HashSet<String> = emails::table
                .filter(emails::account_id.eq(account_id))
                .filter(emails::id.eq_any(&ids))
                .select(emails::id)
                .load::<String>(conn)?
                .into_iter()
                .collect();
            let pending: Vec<PendingText> = pending
                .into_iter()
                .filter(|p| still.contains(&p.email_id))
                .collect();
            for p in &pending {
                // Deleting the row drops its words from the index (a trigger on SQLite, the row's
                // own column on PostgreSQL).
                diesel::delete(email_search::table.find((account_id, &p.email_id)))
                    .execute(conn)?;
            }
            for (email_id, from_sort, to_sort) in &sort_keys {
                diesel::update(emails::table.find((account_id, email_id)))
                    .set((emails::from_sort.eq(from_sort), emails::to_sort.eq(to_sort)))
                    .execute(conn)?;
            }
            insert_all(conn, account_id, pending)
        })?;
    }
}
