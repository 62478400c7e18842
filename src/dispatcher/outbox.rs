//! The store side of the submission outbox (`crate::outbound::SubmissionSender`): claiming due
//! recipients, delivering to local ones, and settling outcomes. Store work, so it runs on the
//! dispatcher's threads; what it commits is published like any JMAP write, so clients hear of each
//! `deliveryStatus` and `undoStatus` move. The SMTP sessions themselves never run here.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

use super::Dispatcher;
use crate::mail::dsn;
use crate::store::submission_outbox::{self as outbox, ClaimedRecipient, Outcome};
use crate::store::{StoreError, delivery};

/// Claims up to `limit` due recipients for `node` until now + `lease_ms`; returns each with its
/// message, and when the outbox next needs looking at.
#[derive(Message)]
#[rtype(result = "Result<Claimed, StoreError>")]
pub struct ClaimOutbox {
    pub node: String,
    pub lease_ms: i64,
    pub limit: usize,
    /// The sender's first pass: on SQLite (one node) claims left by a dead process are freed.
    pub starting: bool,
}

/// What [`ClaimOutbox`] found.
pub struct Claimed {
    pub recipients: Vec<(ClaimedRecipient, Arc<Vec<u8>>)>,
    /// Milliseconds since the epoch; `None`: the outbox is empty.
    pub next_wake: Option<i64>,
}

/// Records the outcome of finished attempts; a failed recipient's sender gets a delivery status
/// notification in their inbox (RFC 3464).
#[derive(Message)]
#[rtype(result = "Result<Vec<(ClaimedRecipient, Outcome)>, StoreError>")]
pub struct SettleOutbox(pub Vec<(ClaimedRecipient, Outcome)>);

/// Delivers a submitted message into the inbox of a local account.
#[derive(Message)]
#[rtype(result = "Result<super::DeliveryOutcome, StoreError>")]
pub struct DeliverToAccount {
    pub account_id: String,
    /// The envelope sender (empty: the null sender).
    pub return_path: String,
    pub message: Arc<Vec<u8>>,
}

impl Handler<ClaimOutbox> for Dispatcher {
    type Result = Result<Claimed, StoreError>;

    fn handle(&mut self, msg: ClaimOutbox, _: &mut Self::Context) -> Self::Result {
        let mut conn = self.store.conn()?;
        if msg.starting && self.store.url().is_sqlite() {
            let n = outbox::release_all_claims(&mut conn)?;
            if n > 0 {
                log::info!("submission outbox: resuming {n} interrupted attempts");
            }
        }
        let now = crate::store::now_ms();
        let (claimed, committed) =
            outbox::claim_due(&mut conn, &msg.node, now, msg.lease_ms, msg.limit)?;
        self.publish(committed);
        let mut messages: HashMap<String, Arc<Vec<u8>>> = HashMap::new();
        let mut recipients = Vec::with_capacity(claimed.len());
        for c in claimed {
            let message = match messages.get(&c.blob_id) {
                Some(m) => m.clone(),
                None => {
                    let m = Arc::new(outbox::message(&mut conn, &c.blob_id)?.unwrap_or_default());
                    messages.insert(c.blob_id.clone(), m.clone());
                    m
                }
            };
            recipients.push((c, message));
        }
        Ok(Claimed {
            recipients,
            next_wake: outbox::next_wake(&mut conn)?,
        })
    }
}

impl Handler<SettleOutbox> for Dispatcher {
    /// What could not be settled, to be settled again.
    type Result = Result<Vec<(ClaimedRecipient, Outcome)>, StoreError>;

    fn handle(&mut self, msg: SettleOutbox, _: &mut Self::Context) -> Self::Result {
        if msg.0.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.store.conn()?;
        let (committed, bounces, unsettled) = outbox::settle(&mut conn, msg.0);
        self.publish(committed);
        let date = chrono::Utc::now().to_rfc2822();
        for b in bounces {
            // A message from the null sender (a bounce, a vacation reply) is never bounced.
            if b.mail_from.is_empty() {
                continue;
            }
            let failure = dsn::Failure {
                recipient: &b.recipient,
                reply: &b.reply,
                gave_up: b.gave_up,
            };
            let report = dsn::build(
                &self.server.mail_domain,
                &b.mail_from,
                &failure,
                &b.message,
                &date,
            );
            match delivery::deliver(&mut conn, &b.account_id, report, None) {
                Ok((_, committed)) => self.publish(committed.into_iter().collect()),
                Err(e) => log::warn!(
                    "the bounce of submission {} to {} could not be delivered: {e}",
                    b.submission_id,
                    b.recipient
                ),
            }
        }
        Ok(unsettled)
    }
}

impl Handler<DeliverToAccount> for Dispatcher {
    type Result = Result<super::DeliveryOutcome, StoreError>;

    fn handle(&mut self, msg: DeliverToAccount, _: &mut Self::Context) -> Self::Result {
        let mut conn = self.store.conn()?;
        // As the final delivery, record the envelope sender (RFC 5321 §4.4); a vacation reply
        // answers it, and a message from the null sender `<>` is never answered.
        let mut message = format!("Return-Path: <{}>\r\n", msg.return_path).into_bytes();
        message.extend_from_slice(&msg.message);
        let policy = self.auto_reply_policy();
        match delivery::deliver(&mut conn, &msg.account_id, message, Some(&policy)) {
            Ok((created, committed)) => {
                self.publish(committed.into_iter().collect());
                Ok(super::DeliveryOutcome::Delivered(created.id))
            }
            Err(StoreError::Invalid(why)) => Ok(super::DeliveryOutcome::Refused(why)),
            Err(e) => Err(e),
        }
    }
}
