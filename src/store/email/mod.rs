//! Emails and threads in the store (RFC 8621 §3, §4).
//!
//! # What is stored per email, for Email/query, sorting, threading and search
//!
//! Messages never change, so everything a query needs is computed once, at import, from the parsed
//! message (`crate::mail::Email`) and kept beside the metadata (migration
//! `2026-11-23-000050_email`):
//!
//! | where | column | what |
//! |---|---|---|
//! | `emails` | `id`, `blob_id`, `thread_id`, `size` | metadata (size = octets of the message) |
//! | `emails` | `received_at` | seconds since the epoch; index `emails_received_id (account_id, received_at, id)` |
//! | `emails` | `sent_at` | the Date header, seconds, NULL when absent or unparsable (`emails_sent`) |
//! | `emails` | `subject` | the decoded subject (Text form), `''` when absent |
//! | `emails` | `base_subject` | RFC 5256 base subject, lowercased (`Re:`, `Fwd:`, `[list]` stripped) — sort `subject` (`emails_base_subject`) |
//! | `emails` | `from_sort`, `to_sort` | first From / To address: its name, else its email, as the default collation's key (decomposed, lowercased), `''` if none (EQ-06; `emails_from_sort`, `emails_to_sort`) |
//! | `emails` | `has_attachment`, `preview` | as Email/get returns them |
//! | `emails` | `summary` | JSON: the header-derived list-view properties as Email/get returns them (`crate::mail::summary`); NULL until computed (migration `2026-11-23-000090_email_summary`) |
//! | `email_mailboxes` | `(account_id, mailbox_id, email_id)` + `received_at` | membership, with receivedAt copied (immutable) so `inMailbox` sorted by `receivedAt` is a range scan of `email_mailboxes_received (account_id, mailbox_id, received_at, email_id)` |
//! | `email_keywords` | `(account_id, email_id, keyword)` | lowercase keywords; `email_keywords_keyword (account_id, keyword, email_id)` |
//! | `email_search` | `from_text`, `to_text`, `cc_text`, `bcc_text`, `subject_text`, `body_text` | decoded search text: `name <email>` lists joined by `, `; body = text of the textBody parts (HTML converted) |
//! | `email_message_ids` | `(account_id, message_id, email_id)`, `thread_id`, `is_own` | every id in Message-ID (`is_own`), In-Reply-To and References, without `<>` |
//!
//! Email/get answers `id` … `receivedAt`, the header convenience properties (`messageId`,
//! `inReplyTo`, `references`, `sender`, `from`, `to`, `cc`, `bcc`, `replyTo`, `subject`),
//! `sentAt`, `hasAttachment` and `preview` from these rows alone; only body properties, `headers`
//! and `header:*` read and parse the message. An email stored before `summary` existed gets it
//! computed from its message and written back ([`keep_summary`]) the first time Email/get needs it.
//!
//! Threading (THR-01..03): a new email joins the thread of an existing email that shares any
//! message id with it (in either direction) **and** has the same base subject; otherwise it starts
//! a thread. Threads are never merged afterwards (THR-04 would require re-creating emails), so a
//! thread id never changes.
//!
//! # Changes recorded
//!
//! Every write records, in the same transaction: `Email` created/updated/destroyed; `Thread`
//! created/updated/destroyed when its email list changed; `Mailbox` `CountsUpdated` for every
//! mailbox whose counts may have changed; `EmailDelivery` (object id `""`) only for new mail
//! (Email/import and `herald deliver`, not Email/set create).

mod create;
pub use create::sort_key;
mod read;
mod rows;
mod threading;
mod update;

pub use read::{keep_summary, metadata, threads};
pub use update::destroy;

use std::collections::{BTreeSet, HashSet};

use diesel::prelude::*;

use super::changelog::{self, WriteTxn};
use super::email_search::{self, PendingText};
use super::first_row::FirstRowDsl;
use super::schema::{email_keywords, email_mailboxes, mailboxes};
use super::{AnyConnection, StoreContext, StoreError, blobs};
use crate::jmap::changes::state_string;
use crate::jmap::error::MethodError;
use crate::jmap::methods::email::{
    DATA_TYPE, EmailMeta, EmailOp, EmailStore, NewEmail, OpResult, THREAD_TYPE, ThreadEmails,
    WriteOutcome,
};
use crate::mail;

/// What Email/import and `herald deliver` need of a write: the outcome of each operation, or an
/// error that rolls the whole write back.
pub fn apply(
    txn: &mut WriteTxn<'_>,
    user_id: Option<&str>,
    ops: Vec<EmailOp>,
) -> Result<Vec<OpResult>, StoreError> {
    let mut results = Vec::with_capacity(ops.len());
    let mut batch = create::Batch::default();
    let mut ops = ops.into_iter().peekable();
    while let Some(op) = ops.next() {
        match op {
            EmailOp::Create { creation_id, email } => {
                // A run of creates is written together (see `create`); the other operations
                // see it written.
                let mut run = vec![(creation_id, email)];
                while let Some(EmailOp::Create { creation_id, email }) =
                    ops.next_if(|op| matches!(op, EmailOp::Create { .. }))
                {
                    run.push((creation_id, email));
                }
                let (creation_ids, emails): (Vec<String>, Vec<NewEmail>) = run.into_iter().unzip();
                let created = create::create_all(txn, user_id, emails, &mut batch)?;
                results.extend(creation_ids.into_iter().zip(created).map(
                    |(creation_id, outcome)| match outcome {
                        Ok(c) => OpResult::Created(creation_id, c),
                        Err(e) => OpResult::NotCreated(creation_id, e),
                    },
                ));
            }
            EmailOp::Update {
                key,
                id,
                mailbox_ids,
                keywords,
                server_set,
            } => results.push(
                match update::update(
                    txn,
                    &id,
                    mailbox_ids.as_ref(),
                    keywords.as_ref(),
                    &server_set,
                )? {
                    Ok(()) => OpResult::Updated(id),
                    Err(e) => OpResult::NotUpdated(key, e),
                },
            ),
            EmailOp::Destroy { key, id } => results.push(match destroy(txn, &id)? {
                Ok(()) => {
                    // Created earlier in this write: its text is not stored yet.
                    batch
                        .search_texts
                        .retain(|t: &PendingText| t.email_id != id);
                    OpResult::Destroyed(id)
                }
                Err(e) => OpResult::NotDestroyed(key, e),
            }),
        }
    }
    let account_id = txn.account_id().to_owned();
    email_search::insert_all(txn.conn(), &account_id, batch.search_texts)?;
    Ok(results)
}

/// Which of `ids` are not mailboxes of the account. `known` holds mailboxes found earlier in
/// the same write, which are not looked up again (an import names one mailbox for every
/// message); those found now join it.
pub(super) fn missing_mailboxes(
    conn: &mut AnyConnection,
    account_id: &str,
    ids: &BTreeSet<String>,
    known: &mut HashSet<String>,
) -> Result<Vec<String>, StoreError> {
    // One statement per id (an email is in one mailbox or few): a fixed text stays prepared.
    let mut missing = Vec::new();
    for id in ids {
        if known.contains(id) {
            continue;
        }
        let found: Option<String> = mailboxes::table
            .filter(mailboxes::account_id.eq(account_id))
            .filter(mailboxes::id.eq(id))
            .select(mailboxes::id)
            .first_row(conn)
            .optional()?;
        if found.is_some() {
            known.insert(id.clone());
        } else {
            missing.push(id.clone());
        }
    }
    Ok(missing)
}

/// One membership row (the update path; a create writes its rows together, `create`).
pub(super) fn insert_membership(
    conn: &mut AnyConnection,
    account_id: &str,
    email_id: &str,
    mailbox_id: &str,
    received_at: i64,
) -> Result<(), StoreError> {
    let row = rows::MembershipRow {
        account_id,
        email_id,
        mailbox_id,
        received_at,
    };
    diesel::insert_into(email_mailboxes::table)
        .values(&row)
        .execute(conn)?;
    Ok(())
}

/// One keyword row (the update path).
pub(super) fn insert_keyword(
    conn: &mut AnyConnection,
    account_id: &str,
    email_id: &str,
    keyword: &str,
) -> Result<(), StoreError> {
    let row = rows::KeywordRow {
        account_id,
        email_id,
        keyword,
    };
    diesel::insert_into(email_keywords::table)
        .values(&row)
        .execute(conn)?;
    Ok(())
}

/// Whether an email with these keywords counts as unread (MBX-06).
pub(super) fn is_unread(keywords: &BTreeSet<String>) -> bool {
    !keywords.contains("$seen") && !keywords.contains("$draft")
}

fn type_state(
    conn: &mut AnyConnection,
    account_id: &str,
    data_type: &str,
) -> Result<String, StoreError> {
    Ok(state_string(changelog::type_state(
        conn, account_id, data_type,
    )?))
}

impl EmailStore for StoreContext {
    fn email_type_state(
        &mut self,
        account_id: &str,
        data_type: &str,
    ) -> Result<String, MethodError> {
        type_state(self.conn(), account_id, data_type).map_err(MethodError::from)
    }

    fn email_metadata(
        &mut self,
        account_id: &str,
        ids: Option<&[String]>,
        limit: usize,
        with_summary: bool,
    ) -> Result<(String, Vec<EmailMeta>), MethodError> {
        let state = type_state(self.conn(), account_id, DATA_TYPE).map_err(MethodError::from)?;
        let metas = metadata(self.conn(), account_id, ids, limit, with_summary)
            .map_err(MethodError::from)?;
        Ok((state, metas))
    }

    fn email_keep_summary(
        &mut self,
        account_id: &str,
        email_id: &str,
        summary: &mail::Summary,
    ) -> Result<(), MethodError> {
        keep_summary(self.conn(), account_id, email_id, summary).map_err(MethodError::from)
    }

    fn email_blob(
        &mut self,
        account_id: &str,
        user_id: &str,
        blob_id: &str,
    ) -> Result<Option<Vec<u8>>, MethodError> {
        blobs::read_visible(self.conn(), account_id, user_id, blob_id).map_err(MethodError::from)
    }

    fn email_message(&mut self, blob_id: &str) -> Result<Option<Vec<u8>>, MethodError> {
        blobs::get(self.conn(), blob_id).map_err(MethodError::from)
    }

    fn thread_emails(
        &mut self,
        account_id: &str,
        ids: Option<&[String]>,
        limit: usize,
    ) -> Result<(String, Vec<ThreadEmails>), MethodError> {
        let state = type_state(self.conn(), account_id, THREAD_TYPE).map_err(MethodError::from)?;
        let threads = threads(self.conn(), account_id, ids, limit).map_err(MethodError::from)?;
        Ok((state, threads))
    }

    fn email_write(
        &mut self,
        account_id: &str,
        user_id: &str,
        if_in_state: Option<&str>,
        ops: Vec<EmailOp>,
    ) -> Result<WriteOutcome, MethodError> {
        let mut mismatch = false;
        let result = self.write(account_id, |txn| {
            let old_state = type_state(txn.conn(), account_id, DATA_TYPE)?;
            if let Some(expected) = if_in_state
                && expected != old_state
            {
                mismatch = true;
                return Err(StoreError::Invalid("stateMismatch".into()));
            }
            let results = apply(txn, Some(user_id), ops)?;
            // ST-04: the Email state Email/get will report (created and destroyed in one call,
            // an email is no Email change, though the mailbox counts it passed through are).
            let new_state = if txn.changes_type(DATA_TYPE) {
                state_string(txn.seq())
            } else {
                old_state.clone()
            };
            Ok(WriteOutcome {
                old_state,
                new_state,
                results,
            })
        });
        match result {
            _ if mismatch => Err(MethodError::StateMismatch),
            Ok(outcome) => Ok(outcome),
            Err(e) => Err(MethodError::from(e)),
        }
    }
}
