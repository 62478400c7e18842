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
//! | `emails` | `received_at` | seconds since the epoch; index `emails_received (account_id, received_at)` |
//! | `emails` | `sent_at` | the Date header, seconds, NULL when absent or unparsable (`emails_sent`) |
//! | `emails` | `subject` | the decoded subject (Text form), `''` when absent |
//! | `emails` | `base_subject` | RFC 5256 base subject, lowercased (`Re:`, `Fwd:`, `[list]` stripped) — sort `subject` (`emails_base_subject`) |
//! | `emails` | `from_sort`, `to_sort` | first From / To address: its name, else its email, lowercased, `''` if none (EQ-06; `emails_from_sort`, `emails_to_sort`) |
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

use super::first_row::FirstRowDsl;
use std::collections::{BTreeSet, HashMap};

use diesel::prelude::*;

use super::changelog::{self, ChangeOp, WriteTxn};
use super::schema::{
    email_keywords, email_mailboxes, email_message_ids, email_search, emails, mailboxes,
};
use super::{AnyConnection, StoreContext, StoreError, blobs, mailbox_counts, new_id, now};
use crate::jmap::changes::state_string;
use crate::jmap::error::MethodError;
use crate::jmap::methods::email::{
    CreatedEmail, DATA_TYPE, DELIVERY_TYPE, EmailMeta, EmailOp, EmailStore, NewEmail, OpResult,
    SetEdit, Source, THREAD_TYPE, ThreadEmails, WriteOutcome,
};
use crate::jmap::methods::mailbox::DATA_TYPE as MAILBOX_TYPE;
use crate::jmap::standard::{SetError, SetErrorType};
use crate::mail;

/// What Email/import and `herald deliver` need of a write: the outcome of each operation, or an
/// error that rolls the whole write back.
pub fn apply(
    txn: &mut WriteTxn<'_>,
    user_id: Option<&str>,
    ops: Vec<EmailOp>,
) -> Result<Vec<OpResult>, StoreError> {
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        results.push(match op {
            EmailOp::Create { creation_id, email } => match create(txn, user_id, email)? {
                Ok(c) => OpResult::Created(creation_id, c),
                Err(e) => OpResult::NotCreated(creation_id, e),
            },
            EmailOp::Update {
                key,
                id,
                mailbox_ids,
                keywords,
            } => match update(txn, &id, mailbox_ids.as_ref(), keywords.as_ref())? {
                Ok(()) => OpResult::Updated(id),
                Err(e) => OpResult::NotUpdated(key, e),
            },
            EmailOp::Destroy { key, id } => match destroy(txn, &id)? {
                Ok(()) => OpResult::Destroyed(id),
                Err(e) => OpResult::NotDestroyed(key, e),
            },
        });
    }
    Ok(results)
}

/// Which of `ids` are mailboxes of the account.
fn missing_mailboxes(
    conn: &mut AnyConnection,
    account_id: &str,
    ids: &BTreeSet<String>,
) -> Result<Vec<String>, StoreError> {
    let wanted: Vec<&String> = ids.iter().collect();
    let found: Vec<String> = mailboxes::table
        .filter(mailboxes::account_id.eq(account_id))
        .filter(mailboxes::id.eq_any(&wanted))
        .select(mailboxes::id)
        .load(conn)?;
    Ok(ids.iter().filter(|i| !found.contains(i)).cloned().collect())
}

/// The latest `Received:` time of a message (EIMP-01 default for receivedAt).
fn latest_received(email: &mail::Email) -> Option<i64> {
    email
        .headers
        .iter()
        .filter(|h| h.is("Received"))
        .filter_map(|h| {
            let raw = &h.raw;
            let pos = raw.iter().rposition(|b| *b == b';')?;
            mail::header::date(&raw[pos + 1..])
        })
        .max()
}

/// The sort key of the first address of a field: name, else email, lowercased (EQ-06).
fn sort_key(email: &mail::Email, field: &str) -> String {
    email
        .addresses(field)
        .and_then(|list| list.into_iter().next())
        .map(|a| {
            a.name
                .filter(|n| !n.trim().is_empty())
                .unwrap_or(a.email)
                .to_lowercase()
        })
        .unwrap_or_default()
}

/// Finds the thread a new message joins, if any (THR-03).
fn find_thread(
    conn: &mut AnyConnection,
    account_id: &str,
    ids: &BTreeSet<String>,
    base_subject: &str,
) -> Result<Option<String>, StoreError> {
    if ids.is_empty() {
        return Ok(None);
    }
    let wanted: Vec<&String> = ids.iter().collect();
    // The candidates share a message id, so they are few: fetch them through the message-id index
    // and pick the oldest here. An ORDER BY received_at LIMIT 1 let SQLite walk the whole account
    // by date instead, which made imports slow down with the size of the account.
    let candidates: Vec<(String, i64, String)> = email_message_ids::table
        .inner_join(
            emails::table.on(emails::account_id
                .eq(email_message_ids::account_id)
                .and(emails::id.eq(email_message_ids::email_id))),
        )
        .filter(email_message_ids::account_id.eq(account_id))
        .filter(email_message_ids::message_id.eq_any(&wanted))
        .filter(emails::base_subject.eq(base_subject))
        .select((emails::thread_id, emails::received_at, emails::id))
        .load(conn)?;
    Ok(candidates
        .into_iter()
        .min_by(|a, b| (a.1, &a.2).cmp(&(b.1, &b.2)))
        .map(|(thread_id, _, _)| thread_id))
}

/// Inserts one new email, or says why it cannot be.
fn create(
    txn: &mut WriteTxn<'_>,
    user_id: Option<&str>,
    new: NewEmail,
) -> Result<Result<CreatedEmail, SetError>, StoreError> {
    let account_id = txn.account_id().to_owned();
    let missing = missing_mailboxes(txn.conn(), &account_id, &new.mailbox_ids)?;
    if !missing.is_empty() {
        return Ok(Err(SetError::invalid_properties(
            &["mailboxIds"],
            format!("no mailbox {}", missing.join(", ")),
        )));
    }
    let (bytes, given_blob) = match new.source {
        Source::Blob(blob_id) => {
            let bytes = match user_id {
                Some(user) => blobs::read_visible(txn.conn(), &account_id, user, &blob_id)?,
                None => None,
            };
            match bytes {
                Some(b) => (b, Some(blob_id)),
                // Only Email/import names a blob: a bad blobId is `invalidProperties` there
                // (RFC 8621 §4.8, EIMP-02), not Email/set's `blobNotFound`.
                None => {
                    return Ok(Err(SetError::invalid_properties(
                        &["blobId"],
                        format!("no blob {blob_id} in this account"),
                    )));
                }
            }
        }
        Source::Message(bytes) => (bytes, None),
    };
    let Some(email) = mail::Email::parse(&bytes) else {
        return Ok(Err(SetError::new(
            SetErrorType::InvalidEmail,
            "the blob is not a message",
        )));
    };
    // Store the message as its own blob unless the client gave one (a part of another message
    // has a derived id: store its bytes).
    let blob_id = match given_blob.filter(|b| blobs::is_stored_id(b)) {
        Some(b) => b,
        None => blobs::put(txn.conn(), &bytes)?,
    };
    let received_at = new
        .received_at
        .or_else(|| latest_received(&email))
        .unwrap_or_else(now);
    let thread_ids = email.thread_ids();
    let own: BTreeSet<String> = thread_ids.message_id.iter().cloned().collect();
    let related: BTreeSet<String> = thread_ids
        .message_id
        .iter()
        .chain(&thread_ids.in_reply_to)
        .chain(&thread_ids.references)
        .cloned()
        .collect();
    let base_subject = email.base_subject();
    let existing_thread = find_thread(txn.conn(), &account_id, &related, &base_subject)?;
    let thread_created = existing_thread.is_none();
    let thread_id = existing_thread.unwrap_or_else(|| new_id('t'));
    let search = email.search_text();
    let summary = mail::Summary::of(&email);
    let size = bytes.len() as i64;

    diesel::insert_into(emails::table)
        .values((
            emails::account_id.eq(&account_id),
            emails::id.eq(&new.id),
            emails::blob_id.eq(&blob_id),
            emails::thread_id.eq(&thread_id),
            emails::size.eq(size),
            emails::received_at.eq(received_at),
            emails::sent_at.eq(summary.sent_at),
            emails::subject.eq(email.subject().unwrap_or_default()),
            emails::base_subject.eq(&base_subject),
            emails::from_sort.eq(sort_key(&email, "From")),
            emails::to_sort.eq(sort_key(&email, "To")),
            emails::has_attachment.eq(summary.has_attachment),
            emails::preview.eq(&summary.preview),
            emails::summary.eq(summary.headers_json()),
        ))
        .execute(txn.conn())?;
    let unread = is_unread(&new.keywords);
    for m in &new.mailbox_ids {
        insert_membership(txn.conn(), &account_id, &new.id, m, received_at)?;
        mailbox_counts::email_entered(txn.conn(), &account_id, m, &thread_id, unread)?;
    }
    for k in &new.keywords {
        insert_keyword(txn.conn(), &account_id, &new.id, k)?;
    }
    super::email_search::insert(txn.conn(), &account_id, &new.id, &search)?;
    for message_id in &related {
        diesel::insert_into(email_message_ids::table)
            .values((
                email_message_ids::account_id.eq(&account_id),
                email_message_ids::message_id.eq(message_id),
                email_message_ids::email_id.eq(&new.id),
                email_message_ids::thread_id.eq(&thread_id),
                email_message_ids::is_own.eq(own.contains(message_id)),
            ))
            .execute(txn.conn())?;
    }
    blobs::add_reference(txn.conn(), &account_id, &blob_id, DATA_TYPE, &new.id)?;

    txn.record(DATA_TYPE, &new.id, ChangeOp::Created);
    txn.record(
        THREAD_TYPE,
        &thread_id,
        if thread_created {
            ChangeOp::Created
        } else {
            ChangeOp::Updated
        },
    );
    for m in &new.mailbox_ids {
        txn.record(MAILBOX_TYPE, m, ChangeOp::CountsUpdated);
    }
    if new.delivery {
        txn.record(DELIVERY_TYPE, "", ChangeOp::Updated);
    }
    Ok(Ok(CreatedEmail {
        id: new.id,
        blob_id,
        thread_id,
        size,
    }))
}

fn insert_membership(
    conn: &mut AnyConnection,
    account_id: &str,
    email_id: &str,
    mailbox_id: &str,
    received_at: i64,
) -> Result<(), StoreError> {
    diesel::insert_into(email_mailboxes::table)
        .values((
            email_mailboxes::account_id.eq(account_id),
            email_mailboxes::email_id.eq(email_id),
            email_mailboxes::mailbox_id.eq(mailbox_id),
            email_mailboxes::received_at.eq(received_at),
        ))
        .execute(conn)?;
    Ok(())
}

fn insert_keyword(
    conn: &mut AnyConnection,
    account_id: &str,
    email_id: &str,
    keyword: &str,
) -> Result<(), StoreError> {
    diesel::insert_into(email_keywords::table)
        .values((
            email_keywords::account_id.eq(account_id),
            email_keywords::email_id.eq(email_id),
            email_keywords::keyword.eq(keyword),
        ))
        .execute(conn)?;
    Ok(())
}

fn mailboxes_of(
    conn: &mut AnyConnection,
    account_id: &str,
    email_id: &str,
) -> Result<BTreeSet<String>, StoreError> {
    Ok(email_mailboxes::table
        .filter(email_mailboxes::account_id.eq(account_id))
        .filter(email_mailboxes::email_id.eq(email_id))
        .select(email_mailboxes::mailbox_id)
        .load::<String>(conn)?
        .into_iter()
        .collect())
}

fn keywords_of(
    conn: &mut AnyConnection,
    account_id: &str,
    email_id: &str,
) -> Result<BTreeSet<String>, StoreError> {
    Ok(email_keywords::table
        .filter(email_keywords::account_id.eq(account_id))
        .filter(email_keywords::email_id.eq(email_id))
        .select(email_keywords::keyword)
        .load::<String>(conn)?
        .into_iter()
        .collect())
}

/// Whether an email with these keywords counts as unread (MBX-06).
fn is_unread(keywords: &BTreeSet<String>) -> bool {
    !keywords.contains("$seen") && !keywords.contains("$draft")
}

/// Changes an email's mailboxes and keywords (ESET-01).
fn update(
    txn: &mut WriteTxn<'_>,
    id: &str,
    mailbox_edit: Option<&SetEdit>,
    keyword_edit: Option<&SetEdit>,
) -> Result<Result<(), SetError>, StoreError> {
    let account_id = txn.account_id().to_owned();
    let found: Option<(i64, String)> = emails::table
        .find((&account_id, id))
        .select((emails::received_at, emails::thread_id))
        .first_row(txn.conn())
        .optional()?;
    let Some((received_at, thread_id)) = found else {
        return Ok(Err(SetError::not_found()));
    };
    let old_mailboxes = mailboxes_of(txn.conn(), &account_id, id)?;
    let old_keywords = keywords_of(txn.conn(), &account_id, id)?;
    let new_mailboxes =
        mailbox_edit.map_or_else(|| old_mailboxes.clone(), |e| e.apply(&old_mailboxes));
    let new_keywords =
        keyword_edit.map_or_else(|| old_keywords.clone(), |e| e.apply(&old_keywords));
    if new_mailboxes.is_empty() {
        return Ok(Err(SetError::invalid_properties(
            &["mailboxIds"],
            "an email must stay in at least one mailbox (EML-02)",
        )));
    }
    if new_mailboxes.len() > crate::jmap::methods::email::MAX_MAILBOXES_PER_EMAIL {
        return Ok(Err(SetError::new(
            SetErrorType::TooManyMailboxes,
            "too many mailboxes",
        )));
    }
    if new_keywords.len() > crate::jmap::methods::email::MAX_KEYWORDS {
        return Ok(Err(SetError::new(
            SetErrorType::TooManyKeywords,
            "too many keywords",
        )));
    }
    let added: BTreeSet<String> = new_mailboxes.difference(&old_mailboxes).cloned().collect();
    let missing = missing_mailboxes(txn.conn(), &account_id, &added)?;
    if !missing.is_empty() {
        return Ok(Err(SetError::invalid_properties(
            &["mailboxIds"],
            format!("no mailbox {}", missing.join(", ")),
        )));
    }
    let removed: Vec<&String> = old_mailboxes.difference(&new_mailboxes).collect();
    if !removed.is_empty() {
        diesel::delete(
            email_mailboxes::table
                .filter(email_mailboxes::account_id.eq(&account_id))
                .filter(email_mailboxes::email_id.eq(id))
                .filter(email_mailboxes::mailbox_id.eq_any(&removed)),
        )
        .execute(txn.conn())?;
    }
    for m in &added {
        insert_membership(txn.conn(), &account_id, id, m, received_at)?;
    }
    let dropped: Vec<&String> = old_keywords.difference(&new_keywords).collect();
    if !dropped.is_empty() {
        diesel::delete(
            email_keywords::table
                .filter(email_keywords::account_id.eq(&account_id))
                .filter(email_keywords::email_id.eq(id))
                .filter(email_keywords::keyword.eq_any(&dropped)),
        )
        .execute(txn.conn())?;
    }
    for k in new_keywords.difference(&old_keywords) {
        insert_keyword(txn.conn(), &account_id, id, k)?;
    }
    let (was_unread, now_unread) = (is_unread(&old_keywords), is_unread(&new_keywords));
    for m in &removed {
        mailbox_counts::email_left(txn.conn(), &account_id, m, &thread_id, was_unread)?;
    }
    if was_unread != now_unread {
        for m in old_mailboxes.intersection(&new_mailboxes) {
            mailbox_counts::unread_flipped(txn.conn(), &account_id, m, &thread_id, now_unread)?;
        }
    }
    for m in &added {
        mailbox_counts::email_entered(txn.conn(), &account_id, m, &thread_id, now_unread)?;
    }
    if old_mailboxes == new_mailboxes && old_keywords == new_keywords {
        return Ok(Ok(()));
    }
    txn.record(DATA_TYPE, id, ChangeOp::Updated);
    // Counts change in the mailboxes the email entered or left, and in all of its mailboxes when
    // its unread status flipped.
    let mut affected: BTreeSet<String> = old_mailboxes
        .symmetric_difference(&new_mailboxes)
        .cloned()
        .collect();
    if is_unread(&old_keywords) != is_unread(&new_keywords) {
        affected.extend(old_mailboxes.union(&new_mailboxes).cloned());
    }
    for m in affected {
        txn.record(MAILBOX_TYPE, &m, ChangeOp::CountsUpdated);
    }
    Ok(Ok(()))
}

/// Destroys an email: out of every mailbox (ESET-06), its thread updated or destroyed, its blob
/// reference dropped; records the changes. Also used when a mailbox is destroyed with
/// `onDestroyRemoveEmails`.
pub fn destroy(txn: &mut WriteTxn<'_>, id: &str) -> Result<Result<(), SetError>, StoreError> {
    let account_id = txn.account_id().to_owned();
    let thread_id: Option<String> = emails::table
        .find((&account_id, id))
        .select(emails::thread_id)
        .first_row(txn.conn())
        .optional()?;
    let Some(thread_id) = thread_id else {
        return Ok(Err(SetError::not_found()));
    };
    let old_mailboxes = mailboxes_of(txn.conn(), &account_id, id)?;
    let was_unread = is_unread(&keywords_of(txn.conn(), &account_id, id)?);
    for m in &old_mailboxes {
        mailbox_counts::email_left(txn.conn(), &account_id, m, &thread_id, was_unread)?;
    }
    diesel::delete(
        email_mailboxes::table
            .filter(email_mailboxes::account_id.eq(&account_id))
            .filter(email_mailboxes::email_id.eq(id)),
    )
    .execute(txn.conn())?;
    diesel::delete(
        email_keywords::table
            .filter(email_keywords::account_id.eq(&account_id))
            .filter(email_keywords::email_id.eq(id)),
    )
    .execute(txn.conn())?;
    diesel::delete(email_search::table.find((&account_id, id))).execute(txn.conn())?;
    diesel::delete(
        email_message_ids::table
            .filter(email_message_ids::account_id.eq(&account_id))
            .filter(email_message_ids::email_id.eq(id)),
    )
    .execute(txn.conn())?;
    diesel::delete(emails::table.find((&account_id, id))).execute(txn.conn())?;
    blobs::remove_references(txn.conn(), &account_id, DATA_TYPE, id)?;
    let left: i64 = emails::table
        .filter(emails::account_id.eq(&account_id))
        .filter(emails::thread_id.eq(&thread_id))
        .count()
        .get_result(txn.conn())?;
    txn.record(DATA_TYPE, id, ChangeOp::Destroyed);
    txn.record(
        THREAD_TYPE,
        &thread_id,
        if left == 0 {
            ChangeOp::Destroyed
        } else {
            ChangeOp::Updated
        },
    );
    for m in old_mailboxes {
        txn.record(MAILBOX_TYPE, &m, ChangeOp::CountsUpdated);
    }
    Ok(Ok(()))
}

/// The columns of a [`mail::StoredSummary`]: `summary`, `sent_at`, `has_attachment`, `preview`.
type SummaryColumns = (Option<String>, Option<i64>, bool, String);

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
    let mut mailbox_map: HashMap<String, Vec<String>> = HashMap::new();
    let mut keyword_map: HashMap<String, Vec<String>> = HashMap::new();
    for chunk in found.chunks(500) {
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
            let new_state = if txn.has_changes() {
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
