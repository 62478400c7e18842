//! Local delivery into the store: a message becomes a new email in an account's inbox through
//! the same path as Email/import (`store::email::apply`), and the account's vacation reply is
//! queued inside the same write when one is due (`store::auto_reply`).

use std::collections::BTreeSet;

use diesel::prelude::*;

use super::auto_reply::{self, AutoReplyPolicy};
use super::changelog;
use super::email::apply;
use super::first_row::FirstRowDsl;
use super::schema::mailboxes;
use super::{AnyConnection, StoreError};
use crate::jmap::methods::email::{CreatedEmail, EmailOp, NewEmail, OpResult, Source};

/// Delivers a message to the inbox of `account_id` (LMTP, `herald deliver`, local recipients of
/// the submission outbox): the same path as Email/import, in one write (Email, Thread, Mailbox
/// and EmailDelivery changes). With `auto_reply`, the same write queues the account's vacation
/// reply when one is due (`store::auto_reply`). Returns the new email and what committed, for the
/// caller to publish.
pub fn deliver(
    conn: &mut AnyConnection,
    account_id: &str,
    message: Vec<u8>,
    auto_reply: Option<&AutoReplyPolicy>,
) -> Result<(CreatedEmail, Option<changelog::Committed>), StoreError> {
    // The reply needs only the header; the message itself moves into the new email.
    let head = auto_reply.map(|_| crate::mail::header_section(&message).to_vec());
    let inbox: Option<String> = mailboxes::table
        .filter(mailboxes::account_id.eq(account_id))
        .filter(mailboxes::role.eq("inbox"))
        .select(mailboxes::id)
        .first_row(conn)
        .optional()?;
    let inbox =
        inbox.ok_or_else(|| StoreError::NotFound(format!("the inbox of account {account_id}")))?;
    let op = EmailOp::Create {
        creation_id: "deliver".into(),
        email: NewEmail {
            id: crate::jmap::methods::email::new_email_id(),
            source: Source::Message(message),
            mailbox_ids: BTreeSet::from([inbox]),
            keywords: BTreeSet::new(),
            // Received now, whatever dates the `Received:` fields a sender wrote claim.
            received_at: Some(super::now()),
            delivery: true,
        },
    };
    // Durable before the caller answers: an MTA deletes its copy on our word (`store::durable`).
    let (results, committed) = super::durable::write(conn, |conn| {
        changelog::write(conn, account_id, |txn| {
            let results = apply(txn, None, vec![op])?;
            let created = matches!(results.first(), Some(OpResult::Created(..)));
            if let (true, Some(policy), Some(head)) = (created, auto_reply, &head) {
                // A reply that cannot be queued never costs the delivery (a savepoint).
                let queued = txn
                    .conn()
                    .transaction(|c| auto_reply::after_delivery(c, account_id, head, policy));
                if let Err(e) = queued {
                    log::warn!("vacation reply for account {account_id}: {e}");
                }
            }
            Ok(results)
        })
    })?;
    match results.into_iter().next() {
        Some(OpResult::Created(_, c)) => Ok((c, committed)),
        Some(OpResult::NotCreated(_, e)) => Err(StoreError::Invalid(
            e.description
                .unwrap_or_else(|| e.kind.wire_name().to_owned()),
        )),
        _ => Err(StoreError::Invalid("nothing was delivered".into())),
    }
}
