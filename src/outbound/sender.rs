//! The `SubmissionSender`: delivers what EmailSubmission/set queued in the outbox table.
//!
//! Same shape as the `WebhookSender`: it claims due recipients (through the dispatcher, which owns
//! the store work and publishes what commits), keeps at most `max_in_flight` attempts running,
//! and settles their outcomes in batches. An attempt is either a local delivery (through the
//! dispatcher, like LMTP) or one SMTP transaction with the relay on a blocking thread, so a slow or
//! dead relay holds only those threads: never a dispatcher thread, never an HTTP worker. It wakes
//! on every published EmailSubmission change (a new submission on any node, since the buses
//! publish every write), at the next due row, and every `outbox_poll_secs`.

use std::time::Duration;

use actix::prelude::*;
use futures_util::FutureExt;

use super::relay::{self, RelayError};
use crate::backoff::backoff;
use crate::config::SubmissionConfig;
use crate::dispatcher::{
    ClaimOutbox, Claimed, DeliverToAccount, DeliveryOutcome, Dispatcher, SettleOutbox,
};
use crate::jmap::methods::submission::DATA_TYPE;
use crate::push::StateChanged;
use crate::random::random_secret;
use crate::store::now_ms;
use crate::store::submission_outbox::{ClaimedRecipient, Outcome};

/// Passes in a row that may fail to record the same outcomes before they are given up.
const MAX_SETTLE_FAILURES: u32 = 10;

/// Sends the submission outbox.
pub struct SubmissionSender {
    dispatcher: Addr<Dispatcher>,
    config: SubmissionConfig,
    relay_url: String,
    /// This process's name in `claimed_by`.
    node: String,
    in_flight: usize,
    /// Outcomes of finished attempts not yet written to the outbox.
    settled: Vec<(ClaimedRecipient, Outcome)>,
    /// Passes in a row whose settling left outcomes unwritten.
    settle_failures: u32,
    /// A pass (settle, then claim) is running; another waits for it.
    pumping: bool,
    pump_again: bool,
    /// The next due row or the poll.
    timer: Option<SpawnHandle>,
    /// No pass has run yet.
    starting: bool,
}

impl SubmissionSender {
    pub fn new(dispatcher: Addr<Dispatcher>, config: SubmissionConfig) -> Self {
        SubmissionSender {
            dispatcher,
            relay_url: config.relay.trim().to_owned(),
            config,
            node: random_secret(9),
            in_flight: 0,
            settled: Vec::new(),
            settle_failures: 0,
            pumping: false,
            pump_again: false,
            timer: None,
            starting: true,
        }
    }

    /// Settles what finished, then claims due recipients up to the in-flight limit and starts
    /// them; arms the timer for the next due row. One pass at a time.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if self.pumping {
            self.pump_again = true;
            return;
        }
        self.pumping = true;
        let settling = std::mem::take(&mut self.settled);
        // Kept until the store has them: outcomes lost here would leave their rows claimed
        // until the lease ran out, and then sent again.
        let all_again = settling.clone();
        let settle = SettleOutbox(settling);
        let claim = ClaimOutbox {
            node: self.node.clone(),
            lease_ms: self.config.claim_lease_secs.max(1) as i64 * 1000,
            limit: self
                .config
                .max_in_flight
                .max(1)
                .saturating_sub(self.in_flight),
            starting: std::mem::take(&mut self.starting),
        };
        let dispatcher = self.dispatcher.clone();
        async move {
            let unsettled = match dispatcher.send(settle).await {
                Ok(Ok(unsettled)) => unsettled,
                Ok(Err(e)) => {
                    log::warn!("submission outbox: settling failed: {e}");
                    all_again
                }
                Err(e) => {
                    log::warn!("submission outbox: {e}");
                    all_again
                }
            };
            (unsettled, dispatcher.send(claim).await)
        }
        .into_actor(self)
        .map(|(unsettled, claimed), act, ctx| {
            act.pumping = false;
            act.keep_unsettled(unsettled);
            match claimed {
                Ok(Ok(Claimed {
                    recipients,
                    next_wake,
                })) => {
                    for (recipient, message) in recipients {
                        act.in_flight += 1;
                        act.attempt(recipient, message, ctx);
                    }
                    // With every slot busy, the next finished attempt pumps: a due row must not
                    // make the timer fire at once, again and again, until then.
                    let full = act.in_flight >= act.config.max_in_flight.max(1);
                    act.arm_timer(next_wake.filter(|_| !full), ctx);
                }
                Ok(Err(e)) => {
                    log::warn!("submission outbox: claiming failed: {e}");
                    act.arm_timer(None, ctx);
                }
                Err(e) => {
                    log::warn!("submission outbox: {e}");
                    act.arm_timer(None, ctx);
                }
            }
            if std::mem::take(&mut act.pump_again) {
                act.pump(ctx);
            }
        })
        .spawn(ctx);
    }

    /// Keeps outcomes the store did not take, for the next pass; after MAX_SETTLE_FAILURES passes
    /// in a row they are dropped (their rows are sent again once their lease runs out), so an
    /// outcome the store can never take does not come back for ever.
    fn keep_unsettled(&mut self, unsettled: Vec<(ClaimedRecipient, Outcome)>) {
        if unsettled.is_empty() {
            self.settle_failures = 0;
            return;
        }
        self.settle_failures += 1;
        if self.settle_failures > MAX_SETTLE_FAILURES {
            log::error!(
                "submission outbox: {} outcomes could not be recorded in {MAX_SETTLE_FAILURES}                  passes; their recipients are tried again when their claims expire",
                unsettled.len()
            );
            self.settle_failures = 0;
            return;
        }
        self.settled.extend(unsettled);
    }

    /// Pumps at the next due row (ms since the epoch) or after `outbox_poll_secs`.
    fn arm_timer(&mut self, next_wake: Option<i64>, ctx: &mut Context<Self>) {
        let poll = Duration::from_secs(self.config.outbox_poll_secs.max(1));
        let delay = match next_wake {
            Some(at) => Duration::from_millis((at - now_ms()).max(0) as u64).min(poll),
            None => poll,
        };
        if let Some(old) = self.timer.take() {
            ctx.cancel_future(old);
        }
        self.timer = Some(ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            act.pump(ctx);
        }));
    }

    /// One attempt for one recipient; its outcome is settled by the next pass.
    fn attempt(
        &mut self,
        recipient: ClaimedRecipient,
        message: std::sync::Arc<Vec<u8>>,
        ctx: &mut Context<Self>,
    ) {
        let sent = match recipient.local_account.clone() {
            Some(account_id) => {
                let delivery = self.dispatcher.send(DeliverToAccount {
                    account_id,
                    return_path: recipient.mail_from.clone(),
                    message,
                });
                async move {
                    match delivery.await {
                        Ok(Ok(DeliveryOutcome::Delivered(_))) => {
                            Ok("250 2.0.0 delivered locally".to_owned())
                        }
                        Ok(Ok(DeliveryOutcome::Refused(why))) => {
                            Err(RelayError::Permanent(format!("554 5.6.0 {why}")))
                        }
                        Ok(Err(e)) => Err(RelayError::Transient(format!("451 4.3.0 {e}"))),
                        Err(e) => Err(RelayError::Transient(format!("451 4.3.0 {e}"))),
                    }
                }
                .boxed_local()
            }
            None => {
                let (url, from, to) = (
                    self.relay_url.clone(),
                    recipient.mail_from.clone(),
                    recipient.recipient.clone(),
                );
                let timeout = Duration::from_secs(self.config.relay_timeout_secs.max(1));
                async move {
                    if url.is_empty() {
                        return Err(RelayError::Transient(
                            "451 4.3.5 no SMTP relay is configured".into(),
                        ));
                    }
                    actix_web::rt::task::spawn_blocking(move || {
                        relay::send(&url, &from, &to, &message, timeout)
                    })
                    .await
                    .unwrap_or_else(|e| Err(RelayError::Transient(format!("451 4.3.0 {e}"))))
                }
                .boxed_local()
            }
        };
        sent.into_actor(self)
            .map(move |result, act, ctx| {
                act.in_flight -= 1;
                let outcome = act.outcome(&recipient, result);
                log::info!(
                    "submission {} to {}: {outcome:?}",
                    recipient.submission_id,
                    recipient.recipient
                );
                act.settled.push((recipient, outcome));
                act.pump(ctx);
            })
            .spawn(ctx);
    }

    /// What the outbox records for one attempt: delivered, failed for good, or retried later
    /// (until the give-up age).
    fn outcome(&self, recipient: &ClaimedRecipient, result: Result<String, RelayError>) -> Outcome {
        match result {
            Ok(reply) => Outcome::Delivered(reply),
            Err(RelayError::Permanent(reply)) => Outcome::Failed {
                reply,
                gave_up: false,
            },
            Err(RelayError::Transient(reply)) => {
                let now = now_ms();
                if now - recipient.queued_at >= self.config.give_up_secs as i64 * 1000 {
                    return Outcome::Failed {
                        reply,
                        gave_up: true,
                    };
                }
                let delay = backoff(
                    recipient.attempts.max(0) as u32,
                    self.config.retry_base_secs.max(1) * 1000,
                    self.config.retry_cap_secs.max(1) * 1000,
                );
                Outcome::Deferred {
                    reply,
                    retry_at: now + delay as i64,
                }
            }
        }
    }
}

impl Actor for SubmissionSender {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Published changes arrive with try_send: room for bursts.
        ctx.set_mailbox_capacity(1024);
        // Whatever a previous run left queued (or claimed and lost in a crash) is found here.
        self.pump(ctx);
    }
}

impl Handler<StateChanged> for SubmissionSender {
    type Result = ();

    fn handle(&mut self, change: StateChanged, ctx: &mut Self::Context) {
        // New submissions, and deliveries (which may have queued a vacation reply), from any
        // process or node.
        if change
            .types
            .iter()
            .any(|t| t == DATA_TYPE || t == "EmailDelivery")
        {
            self.pump(ctx);
        }
    }
}
