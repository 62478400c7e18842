//! Changing an email's mailboxes and keywords, and destroying it, with the counts and changes that
//! follow.

use std::collections::{BTreeSet, HashSet};

use diesel::prelude::*;
use serde_json::{Map, Value, json};

use super::{insert_keyword, insert_membership, is_unread, missing_mailboxes};
use crate::jmap::methods::email::{DATA_TYPE, SetEdit, THREAD_TYPE};
use crate::jmap::methods::mailbox::DATA_TYPE as MAILBOX_TYPE;
use crate::jmap::standard::{SetError, SetErrorType};
use crate::store::changelog::{ChangeOp, WriteTxn};
use crate::store::first_row::FirstRowDsl;
use crate::store::schema::{
    email_keywords, email_mailboxes, email_message_ids, email_search, emails,
};
use crate::store::{AnyConnection, StoreError, mailbox_counts};

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

/// An email stays in at least one mailbox (EML-02), and in at most so many, with at most so many
/// keywords.
fn check_limits(mailboxes: &BTreeSet<String>, keywords: &BTreeSet<String>) -> Result<(), SetError> {
    if mailboxes.is_empty() {
        return Err(SetError::invalid_properties(
            &["mailboxIds"],
            "an email must stay in at least one mailbox (EML-02)",
        ));
    }
    if mailboxes.len() > crate::jmap::methods::email::MAX_MAILBOXES_PER_EMAIL {
        return Err(SetError::new(
            SetErrorType::TooManyMailboxes,
            "too many mailboxes",
        ));
    }
    if keywords.len() > crate::jmap::methods::email::MAX_KEYWORDS {
        return Err(SetError::new(
            SetErrorType::TooManyKeywords,
            "too many keywords",
        ));
    }
    Ok(())
}

/// Changes an email's mailboxes and keywords (ESET-01).
/// Replaces an email's keywords `old` with `new` in the store.
fn write_keywords(
    conn: &mut AnyConnection,
    account_id: &str,
    id: &str,
    old: &BTreeSet<String>,
    new: &BTreeSet<String>,
) -> Result<(), StoreError> {
    let dropped: Vec<&String> = old.difference(new).collect();
    if !dropped.is_empty() {
        diesel::delete(
            email_keywords::table
                .filter(email_keywords::account_id.eq(account_id))
                .filter(email_keywords::email_id.eq(id))
                .filter(email_keywords::keyword.eq_any(&dropped)),
        )
        .execute(conn)?;
    }
    for k in new.difference(old) {
        insert_keyword(conn, account_id, id, k)?;
    }
    Ok(())
}

/// SET-16: a server-set property may be in a patch only with its current value.
fn check_server_set(asked: &Map<String, Value>, current: &Value) -> Result<(), SetError> {
    for (name, value) in asked {
        if current.get(name) != Some(value) {
            return Err(SetError::invalid_properties(
                &[name.as_str()],
                format!("{name} is set by the server and cannot be changed"),
            ));
        }
    }
    Ok(())
}

pub(super) fn update(
    txn: &mut WriteTxn<'_>,
    id: &str,
    mailbox_edit: Option<&SetEdit>,
    keyword_edit: Option<&SetEdit>,
    server_set: &Map<String, Value>,
) -> Result<Result<(), SetError>, StoreError> {
    let account_id = txn.account_id().to_owned();
    let found: Option<(i64, String, String, i64)> = emails::table
        .find((&account_id, id))
        .select((
            emails::received_at,
            emails::thread_id,
            emails::blob_id,
            emails::size,
        ))
        .first_row(txn.conn())
        .optional()?;
    let Some((received_at, thread_id, blob_id, size)) = found else {
        return Ok(Err(SetError::not_found()));
    };
    let current = json!({"id": id, "blobId": blob_id, "threadId": thread_id, "size": size});
    if let Err(e) = check_server_set(server_set, &current) {
        return Ok(Err(e));
    }
    let old_mailboxes = mailboxes_of(txn.conn(), &account_id, id)?;
    let old_keywords = keywords_of(txn.conn(), &account_id, id)?;
    let new_mailboxes =
        mailbox_edit.map_or_else(|| old_mailboxes.clone(), |e| e.apply(&old_mailboxes));
    let new_keywords =
        keyword_edit.map_or_else(|| old_keywords.clone(), |e| e.apply(&old_keywords));
    if let Err(e) = check_limits(&new_mailboxes, &new_keywords) {
        return Ok(Err(e));
    }
    let added: BTreeSet<String> = new_mailboxes.difference(&old_mailboxes).cloned().collect();
    let missing = missing_mailboxes(txn.conn(), &account_id, &added, &mut HashSet::new())?;
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
    write_keywords(txn.conn(), &account_id, id, &old_keywords, &new_keywords)?;
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
