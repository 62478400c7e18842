//! Mailboxes in the store (their counts: `mailbox_counts`).

use std::collections::HashMap;

use diesel::prelude::*;

use super::changelog::{self, ChangeOp, WriteTxn};
use super::schema::{email_mailboxes, mailbox_subscriptions, mailboxes};
use super::{AnyConnection, StoreContext, StoreError};
use crate::jmap::changes::state_string;
use crate::jmap::error::MethodError;
use crate::jmap::methods::mailbox::{
    DATA_TYPE, DEFAULT_MAILBOXES, Mailbox, MailboxOp, MailboxSnapshot, MailboxStore, Viewer,
};

#[derive(Queryable)]
struct MailboxRow {
    id: String,
    name: String,
    parent_id: Option<String>,
    role: Option<String>,
    sort_order: i64,
    is_subscribed: bool,
}

/// Every mailbox of an account.
pub fn list(conn: &mut AnyConnection, account_id: &str) -> Result<Vec<Mailbox>, StoreError> {
    let rows: Vec<MailboxRow> = mailboxes::table
        .filter(mailboxes::account_id.eq(account_id))
        .select((
            mailboxes::id,
            mailboxes::name,
            mailboxes::parent_id,
            mailboxes::role,
            mailboxes::sort_order,
            mailboxes::is_subscribed,
        ))
        .order(mailboxes::id.asc())
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| Mailbox {
            id: r.id,
            name: r.name,
            parent_id: r.parent_id,
            role: r.role,
            sort_order: r.sort_order,
            is_subscribed: r.is_subscribed,
        })
        .collect())
}

fn insert(conn: &mut AnyConnection, account_id: &str, m: &Mailbox) -> Result<(), StoreError> {
    diesel::insert_into(mailboxes::table)
        .values((
            mailboxes::account_id.eq(account_id),
            mailboxes::id.eq(&m.id),
            mailboxes::name.eq(&m.name),
            mailboxes::parent_id.eq(&m.parent_id),
            mailboxes::role.eq(&m.role),
            mailboxes::sort_order.eq(m.sort_order),
            mailboxes::is_subscribed.eq(m.is_subscribed),
        ))
        .execute(conn)?;
    Ok(())
}

/// Creates the default mailboxes (inbox, drafts, sent, archive, junk, trash) of a new account.
/// Part of creating the account, so it is not a change to report.
pub fn create_defaults(conn: &mut AnyConnection, account_id: &str) -> Result<(), StoreError> {
    for (i, (role, name)) in DEFAULT_MAILBOXES.iter().enumerate() {
        let m = Mailbox {
            id: super::new_id('m'),
            name: (*name).to_owned(),
            parent_id: None,
            role: Some((*role).to_owned()),
            sort_order: (i as i64 + 1) * 10,
            is_subscribed: true,
        };
        insert(conn, account_id, &m)?;
    }
    Ok(())
}

/// Takes the emails out of mailbox `mailbox_id`; emails left in no mailbox are destroyed
/// (RFC 8621 §2.5 `onDestroyRemoveEmails`). Records Email and Thread changes.
fn remove_emails_from(txn: &mut WriteTxn<'_>, mailbox_id: &str) -> Result<(), StoreError> {
    let account_id = txn.account_id().to_owned();
    let email_ids: Vec<String> = email_mailboxes::table
        .filter(email_mailboxes::account_id.eq(&account_id))
        .filter(email_mailboxes::mailbox_id.eq(mailbox_id))
        .select(email_mailboxes::email_id)
        .load(txn.conn())?;
    diesel::delete(
        email_mailboxes::table
            .filter(email_mailboxes::account_id.eq(&account_id))
            .filter(email_mailboxes::mailbox_id.eq(mailbox_id)),
    )
    .execute(txn.conn())?;
    for email_id in email_ids {
        let remaining: i64 = email_mailboxes::table
            .filter(email_mailboxes::account_id.eq(&account_id))
            .filter(email_mailboxes::email_id.eq(&email_id))
            .count()
            .get_result(txn.conn())?;
        if remaining > 0 {
            txn.record("Email", &email_id, ChangeOp::Updated);
            continue;
        }
        // Left in no mailbox: destroyed like an Email/set destroy (thread, blob reference).
        super::email::destroy(txn, &email_id)?
            .map_err(|e| StoreError::Invalid(e.kind.wire_name().into()))?;
    }
    Ok(())
}

/// `viewer`'s subscriptions to mailboxes of an account they do not own (MBX-10).
fn subscriptions_of(
    conn: &mut AnyConnection,
    account_id: &str,
    user_id: &str,
) -> Result<HashMap<String, bool>, StoreError> {
    let rows: Vec<(String, bool)> = mailbox_subscriptions::table
        .filter(mailbox_subscriptions::account_id.eq(account_id))
        .filter(mailbox_subscriptions::user_id.eq(user_id))
        .select((
            mailbox_subscriptions::mailbox_id,
            mailbox_subscriptions::is_subscribed,
        ))
        .load(conn)?;
    Ok(rows.into_iter().collect())
}

/// Stores a non-owner's `isSubscribed` for one mailbox.
fn set_subscription(
    conn: &mut AnyConnection,
    account_id: &str,
    viewer: &Viewer,
    mailbox_id: &str,
    subscribed: bool,
) -> Result<(), StoreError> {
    let row = mailbox_subscriptions::table.find((account_id, &viewer.user_id, mailbox_id));
    diesel::delete(row).execute(conn)?;
    diesel::insert_into(mailbox_subscriptions::table)
        .values((
            mailbox_subscriptions::account_id.eq(account_id),
            mailbox_subscriptions::mailbox_id.eq(mailbox_id),
            mailbox_subscriptions::user_id.eq(&viewer.user_id),
            mailbox_subscriptions::is_subscribed.eq(subscribed),
        ))
        .execute(conn)?;
    Ok(())
}

/// The account's mailboxes as `viewer` sees them: the owner's `isSubscribed` is the mailbox's own,
/// anyone else's is their row, false by default (RFC 8621 §2, MBX-10).
fn snapshot(
    conn: &mut AnyConnection,
    account_id: &str,
    viewer: &Viewer,
) -> Result<MailboxSnapshot, StoreError> {
    let mut mailboxes = list(conn, account_id)?;
    if !viewer.is_owner {
        let mine = subscriptions_of(conn, account_id, &viewer.user_id)?;
        for m in &mut mailboxes {
            m.is_subscribed = mine.get(&m.id).copied().unwrap_or(false);
        }
    }
    Ok(MailboxSnapshot {
        state: state_string(changelog::type_state(conn, account_id, DATA_TYPE)?),
        mailboxes,
        counts: super::mailbox_counts::read(conn, account_id)?,
    })
}

impl MailboxStore for StoreContext {
    fn mailbox_snapshot(
        &mut self,
        account_id: &str,
        viewer: &Viewer,
    ) -> Result<MailboxSnapshot, MethodError> {
        snapshot(self.conn(), account_id, viewer).map_err(MethodError::from)
    }

    fn mailbox_write(
        &mut self,
        account_id: &str,
        viewer: &Viewer,
        decide: &mut dyn FnMut(&MailboxSnapshot) -> Result<Vec<MailboxOp>, MethodError>,
    ) -> Result<(String, String), MethodError> {
        let mut method_error = None;
        let result = self.write(account_id, |txn| {
            let snap = snapshot(txn.conn(), account_id, viewer)?;
            let ops = match decide(&snap) {
                Ok(ops) => ops,
                Err(e) => {
                    method_error = Some(e);
                    return Err(StoreError::Invalid("decided against".into()));
                }
            };
            for op in ops {
                match op {
                    MailboxOp::Insert(m) => {
                        insert(txn.conn(), account_id, &m)?;
                        if !viewer.is_owner {
                            // A mailbox a sharee creates: subscribed for them as they asked, and
                            // for the owner as mailboxes are by default.
                            set_subscription(
                                txn.conn(),
                                account_id,
                                viewer,
                                &m.id,
                                m.is_subscribed,
                            )?;
                            diesel::update(mailboxes::table.find((account_id, &m.id)))
                                .set(mailboxes::is_subscribed.eq(true))
                                .execute(txn.conn())?;
                        }
                        txn.record(DATA_TYPE, &m.id, ChangeOp::Created);
                    }
                    MailboxOp::Update(m) => {
                        diesel::update(mailboxes::table.find((account_id, &m.id)))
                            .set((
                                mailboxes::name.eq(&m.name),
                                mailboxes::parent_id.eq(&m.parent_id),
                                mailboxes::role.eq(&m.role),
                                mailboxes::sort_order.eq(m.sort_order),
                            ))
                            .execute(txn.conn())?;
                        if viewer.is_owner {
                            diesel::update(mailboxes::table.find((account_id, &m.id)))
                                .set(mailboxes::is_subscribed.eq(m.is_subscribed))
                                .execute(txn.conn())?;
                        } else {
                            set_subscription(
                                txn.conn(),
                                account_id,
                                viewer,
                                &m.id,
                                m.is_subscribed,
                            )?;
                        }
                        txn.record(DATA_TYPE, &m.id, ChangeOp::Updated);
                    }
                    MailboxOp::Delete { id, remove_emails } => {
                        if remove_emails {
                            remove_emails_from(txn, &id)?;
                        }
                        diesel::delete(mailboxes::table.find((account_id, &id)))
                            .execute(txn.conn())?;
                        txn.record(DATA_TYPE, &id, ChangeOp::Destroyed);
                    }
                }
            }
            let new_state = if txn.changes_type(DATA_TYPE) {
                state_string(txn.seq())
            } else {
                snap.state.clone()
            };
            Ok((snap.state, new_state))
        });
        // A method error from `decide` travelled out of the transaction as a store error.
        match (result, method_error) {
            (_, Some(e)) => Err(e),
            (Ok(states), None) => Ok(states),
            (Err(e), None) => Err(MethodError::from(e)),
        }
    }
}
