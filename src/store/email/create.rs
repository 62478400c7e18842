//! A new email in the store: the message parsed once, its thread found (THR-03), and every row
//! Email/query, Email/get and threading read written in the one write.

use std::collections::{BTreeSet, HashSet};

use diesel::prelude::*;

use super::{insert_keyword, insert_membership, is_unread, missing_mailboxes};
use crate::jmap::methods::email::{
    CreatedEmail, DATA_TYPE, DELIVERY_TYPE, NewEmail, Source, THREAD_TYPE,
};
use crate::jmap::methods::mailbox::DATA_TYPE as MAILBOX_TYPE;
use crate::jmap::standard::{SetError, SetErrorType};
use crate::mail;
use crate::store::changelog::{ChangeOp, WriteTxn};
use crate::store::email_search::PendingText;
use crate::store::schema::{email_message_ids, emails};
use crate::store::{AnyConnection, StoreError, blobs, mailbox_counts, now};

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
    // The candidates share a message id, so they are few: fetch them through the message-id index
    // and pick the oldest here. An ORDER BY received_at LIMIT 1 let SQLite walk the whole account
    // by date instead, which made imports slow down with the size of the account. One statement
    // per id, not one `IN (…)`: a fixed text stays prepared, and a message names few ids.
    let mut candidates: Vec<(String, i64, String)> = Vec::new();
    for id in ids {
        candidates.extend(
            email_message_ids::table
                .inner_join(
                    emails::table.on(emails::account_id
                        .eq(email_message_ids::account_id)
                        .and(emails::id.eq(email_message_ids::email_id))),
                )
                .filter(email_message_ids::account_id.eq(account_id))
                .filter(email_message_ids::message_id.eq(id))
                .filter(emails::base_subject.eq(base_subject))
                .select((emails::thread_id, emails::received_at, emails::id))
                .load::<(String, i64, String)>(conn)?,
        );
    }
    Ok(candidates
        .into_iter()
        .min_by(|a, b| (a.1, &a.2).cmp(&(b.1, &b.2)))
        .map(|(thread_id, _, _)| thread_id))
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

/// Inserts one new email, or says why it cannot be; its search text joins the batch's.
#[expect(
    clippy::too_many_lines,
    reason = "every row a new email has, written in one place"
)]
pub(super) fn create(
    txn: &mut WriteTxn<'_>,
    user_id: Option<&str>,
    new: NewEmail,
    batch: &mut Batch,
) -> Result<Result<CreatedEmail, SetError>, StoreError> {
    let account_id = txn.account_id().to_owned();
    let missing = missing_mailboxes(
        txn.conn(),
        &account_id,
        &new.mailbox_ids,
        &mut batch.mailboxes_found,
    )?;
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
    let thread_id = existing_thread.unwrap_or_else(|| crate::jmap::args::new_ordered_id('t'));
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
    batch.search_texts.push(PendingText {
        email_id: new.id.clone(),
        text: search,
    });
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

    let thread = (thread_id.as_str(), thread_created);
    record_created(txn, &new.id, &new.mailbox_ids, new.delivery, thread);
    Ok(Ok(CreatedEmail {
        id: new.id,
        blob_id,
        thread_id,
        size,
    }))
}
