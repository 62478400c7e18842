//! New emails in the store: each message parsed once, its thread found (THR-03), and every row
//! Email/query, Email/get and threading read written in the one write.
//!
//! The emails of a run of creates are written in phases, table by table: parse and check each
//! one, find all their threads with one lookup ([`super::threading`]), then one multi-row
//! statement per table for all of them. On PostgreSQL each statement is a round trip; written
//! email by email, an import spent most of its time on them (BENCHMARKS.md).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::rows::{EmailRow, KeywordRow, MembershipRow, MessageIdRow};
use super::threading::{ThreadFinder, ThreadKey};
use super::{is_unread, missing_mailboxes};
use crate::jmap::methods::email::{
    CreatedEmail, DATA_TYPE, DELIVERY_TYPE, NewEmail, Source, THREAD_TYPE,
};
use crate::jmap::methods::mailbox::DATA_TYPE as MAILBOX_TYPE;
use crate::jmap::standard::{SetError, SetErrorType};
use crate::mail;
use crate::store::batch_insert::insert_rows;
use crate::store::changelog::{ChangeOp, WriteTxn};
use crate::store::email_search::PendingText;
use crate::store::schema::{email_keywords, email_mailboxes, email_message_ids, emails};
use crate::store::{AnyConnection, StoreError, blobs, mailbox_counts, now};

/// The sort key of the first address of a field: name, else email (EQ-06), as the default
/// collation compares it (`mail::text::casemap_key`), so that the store sorts by octets.
pub fn sort_key(email: &mail::Email, field: &str) -> String {
    email
        .addresses(field)
        .and_then(|list| list.into_iter().next())
        .map(|a| {
            mail::text::casemap_key(&a.name.filter(|n| !n.trim().is_empty()).unwrap_or(a.email))
        })
        .unwrap_or_default()
}

/// A new email's message and the blob it was read from (Email/import).
type Message = (Vec<u8>, Option<String>);

/// The message of a new email, and the blob it was read from (Email/import).
fn message_bytes(
    txn: &mut WriteTxn<'_>,
    user_id: Option<&str>,
    source: Source,
) -> Result<Result<Message, SetError>, StoreError> {
    let blob_id = match source {
        Source::Message(bytes) => return Ok(Ok((bytes, None))),
        Source::Blob(blob_id) => blob_id,
    };
    let account_id = txn.account_id().to_owned();
    let bytes = match user_id {
        Some(user) => blobs::read_visible(txn.conn(), &account_id, user, &blob_id)?,
        None => None,
    };
    Ok(match bytes {
        Some(b) => Ok((b, Some(blob_id))),
        // Only Email/import names a blob: a bad blobId is `invalidProperties` there
        // (RFC 8621 §4.8, EIMP-02), not Email/set's `blobNotFound`.
        None => Err(SetError::invalid_properties(
            &["blobId"],
            format!("no blob {blob_id} in this account"),
        )),
    })
}

/// Records what creating an email changed (see the module documentation).
/// `thread` is the email's thread id and whether this write created it.
fn record_created(
    txn: &mut WriteTxn<'_>,
    id: &str,
    mailbox_ids: &BTreeSet<String>,
    delivery: bool,
    (thread_id, thread_created): (&str, bool),
) {
    txn.record(DATA_TYPE, id, ChangeOp::Created);
    let thread_op = if thread_created {
        ChangeOp::Created
    } else {
        ChangeOp::Updated
    };
    txn.record(THREAD_TYPE, thread_id, thread_op);
    for m in mailbox_ids {
        txn.record(MAILBOX_TYPE, m, ChangeOp::CountsUpdated);
    }
    if delivery {
        txn.record(DELIVERY_TYPE, "", ChangeOp::Updated);
    }
}

/// What the emails created in one write share.
#[derive(Default)]
pub(super) struct Batch {
    /// Their search texts, for the caller to store at the end of the write
    /// ([`crate::store::email_search::insert_all`]).
    pub search_texts: Vec<PendingText>,
    /// The mailboxes found to exist so far.
    pub mailboxes_found: HashSet<String>,
}

/// A new email ready to be written: what its rows hold, derived from its message once.
struct Prepared {
    id: String,
    mailbox_ids: BTreeSet<String>,
    keywords: BTreeSet<String>,
    delivery: bool,
    /// The message, when its blob is to be stored with it.
    new_blob: Option<Vec<u8>>,
    blob_id: String,
    size: i64,
    received_at: i64,
    /// Every id in Message-ID, In-Reply-To and References; `own`: those of Message-ID.
    related: BTreeSet<String>,
    own: BTreeSet<String>,
    subject: String,
    base_subject: String,
    from_sort: String,
    to_sort: String,
    summary: mail::Summary,
    summary_json: String,
    search: mail::SearchText,
    /// The email's thread and whether this write starts it (set once all are prepared).
    thread: (String, bool),
}

/// Checks and parses one new email, or says why it cannot be created.
fn prepare(
    txn: &mut WriteTxn<'_>,
    user_id: Option<&str>,
    new: NewEmail,
    mailboxes_found: &mut HashSet<String>,
) -> Result<Result<Prepared, SetError>, StoreError> {
    let account_id = txn.account_id().to_owned();
    let missing = missing_mailboxes(txn.conn(), &account_id, &new.mailbox_ids, mailboxes_found)?;
    if !missing.is_empty() {
        return Ok(Err(SetError::invalid_properties(
            &["mailboxIds"],
            format!("no mailbox {}", missing.join(", ")),
        )));
    }
    let (bytes, given_blob) = match message_bytes(txn, user_id, new.source)? {
        Ok(found) => found,
        Err(e) => return Ok(Err(e)),
    };
    let Some(email) = mail::Email::parse(&bytes) else {
        return Ok(Err(SetError::new(
            SetErrorType::InvalidEmail,
            "the blob is not a message",
        )));
    };
    let thread_ids = email.thread_ids();
    let summary = mail::Summary::of(&email);
    let prepared = Prepared {
        id: new.id,
        mailbox_ids: new.mailbox_ids,
        keywords: new.keywords,
        delivery: new.delivery,
        size: bytes.len() as i64,
        received_at: new
            .received_at
            // EIMP-01: the most recent `Received:` field, the topmost (the last hop's).
            .or_else(|| email.received_at())
            .unwrap_or_else(now),
        own: thread_ids.message_id.iter().cloned().collect(),
        related: thread_ids
            .message_id
            .iter()
            .chain(&thread_ids.in_reply_to)
            .chain(&thread_ids.references)
            .cloned()
            .collect(),
        subject: email.subject().unwrap_or_default(),
        base_subject: email.base_subject(),
        from_sort: sort_key(&email, "From"),
        to_sort: sort_key(&email, "To"),
        summary_json: summary.headers_json(),
        summary,
        search: email.search_text(),
        thread: (String::new(), false),
        // Store the message as its own blob unless the client gave one (a part of another
        // message has a derived id: store its bytes).
        blob_id: match &given_blob {
            Some(b) if blobs::is_stored_id(b) => b.clone(),
            _ => blobs::blob_id_for(&bytes),
        },
        new_blob: match &given_blob {
            Some(b) if blobs::is_stored_id(b) => None,
            _ => Some(bytes),
        },
    };
    Ok(Ok(prepared))
}

/// Creates a run of new emails, or says for each why it cannot be; their search texts join the
/// batch's.
pub(super) fn create_all(
    txn: &mut WriteTxn<'_>,
    user_id: Option<&str>,
    news: Vec<NewEmail>,
    batch: &mut Batch,
) -> Result<Vec<Result<CreatedEmail, SetError>>, StoreError> {
    let mut outcomes = Vec::with_capacity(news.len());
    for new in news {
        outcomes.push(prepare(txn, user_id, new, &mut batch.mailboxes_found)?);
    }
    let account_id = txn.account_id().to_owned();
    let mut ready: Vec<&mut Prepared> = outcomes
        .iter_mut()
        .filter_map(|o| o.as_mut().ok())
        .collect();
    let keys: Vec<ThreadKey<'_>> = ready
        .iter()
        .map(|p| ThreadKey {
            related: &p.related,
            base_subject: &p.base_subject,
        })
        .collect();
    let mut finder = ThreadFinder::load(txn.conn(), &account_id, &keys)?;
    let threads: Vec<(String, bool)> = keys
        .iter()
        .zip(&ready)
        .map(|(key, p)| {
            finder.assign(key, p.received_at, &p.id, || {
                crate::jmap::args::new_ordered_id('t')
            })
        })
        .collect();
    for (p, thread) in ready.iter_mut().zip(threads) {
        p.thread = thread;
    }
    let ready: Vec<&Prepared> = ready.into_iter().map(|p| &*p).collect();
    insert_all_rows(txn.conn(), &account_id, &ready)?;

    Ok(outcomes
        .into_iter()
        .map(|outcome| {
            let p = outcome?;
            record_created(
                txn,
                &p.id,
                &p.mailbox_ids,
                p.delivery,
                (&p.thread.0, p.thread.1),
            );
            batch.search_texts.push(PendingText {
                email_id: p.id.clone(),
                received_at: p.received_at,
                text: p.search,
            });
            Ok(CreatedEmail {
                id: p.id,
                blob_id: p.blob_id,
                thread_id: p.thread.0,
                size: p.size,
            })
        })
        .collect())
}

/// Writes the rows of every prepared email, one table at a time.
fn insert_all_rows(
    conn: &mut AnyConnection,
    account_id: &str,
    ready: &[&Prepared],
) -> Result<(), StoreError> {
    // Identical messages share one blob (BIN-05): each stored once.
    let new_blobs: BTreeMap<&str, &[u8]> = ready
        .iter()
        .filter_map(|p| Some((p.blob_id.as_str(), p.new_blob.as_deref()?)))
        .collect();
    let new_blobs: Vec<(&str, &[u8])> = new_blobs.into_iter().collect();
    blobs::put_all(conn, &new_blobs)?;

    let email_rows: Vec<EmailRow<'_>> = ready
        .iter()
        .map(|p| EmailRow {
            account_id,
            id: &p.id,
            blob_id: &p.blob_id,
            thread_id: &p.thread.0,
            size: p.size,
            received_at: p.received_at,
            sent_at: p.summary.sent_at,
            subject: &p.subject,
            base_subject: &p.base_subject,
            from_sort: &p.from_sort,
            to_sort: &p.to_sort,
            has_attachment: p.summary.has_attachment,
            preview: &p.summary.preview,
            summary: Some(&p.summary_json),
        })
        .collect();
    insert_rows!(conn, emails::table, &email_rows, EmailRow::COLUMNS)?;

    let memberships: Vec<MembershipRow<'_>> = ready
        .iter()
        .flat_map(|p| {
            p.mailbox_ids.iter().map(|m| MembershipRow {
                account_id,
                email_id: &p.id,
                mailbox_id: m,
                received_at: p.received_at,
            })
        })
        .collect();
    insert_rows!(
        conn,
        email_mailboxes::table,
        &memberships,
        MembershipRow::COLUMNS
    )?;
    count_entries(conn, account_id, ready)?;

    let keywords: Vec<KeywordRow<'_>> = ready
        .iter()
        .flat_map(|p| {
            p.keywords.iter().map(|k| KeywordRow {
                account_id,
                email_id: &p.id,
                keyword: k,
            })
        })
        .collect();
    insert_rows!(conn, email_keywords::table, &keywords, KeywordRow::COLUMNS)?;

    let message_ids: Vec<MessageIdRow<'_>> = ready
        .iter()
        .flat_map(|p| {
            p.related.iter().map(|message_id| MessageIdRow {
                account_id,
                message_id,
                email_id: &p.id,
                thread_id: &p.thread.0,
                is_own: p.own.contains(message_id),
            })
        })
        .collect();
    insert_rows!(
        conn,
        email_message_ids::table,
        &message_ids,
        MessageIdRow::COLUMNS
    )?;
    // The email row is its message's reference (`blobs::visible`, `blobs::purge`).
    Ok(())
}

/// Counts every prepared email in its mailboxes.
fn count_entries(
    conn: &mut AnyConnection,
    account_id: &str,
    ready: &[&Prepared],
) -> Result<(), StoreError> {
    let entered: Vec<(&str, &str, bool)> = ready
        .iter()
        .flat_map(|p| {
            let unread = is_unread(&p.keywords);
            p.mailbox_ids
                .iter()
                .map(move |m| (m.as_str(), p.thread.0.as_str(), unread))
        })
        .collect();
    mailbox_counts::emails_entered(conn, account_id, &entered)
}
