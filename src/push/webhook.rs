//! The `WebhookSender`: delivers PushVerifications and StateChanges to PushSubscription URLs
//! (RFC 8620 §7.2) from the durable outbox table (`store::push_subscription`).
//!
//! It merges every published [`StateChanged`] into the outbox rows of the subscriptions that may
//! see it, then claims due rows and POSTs them: one POST in flight per subscription, retries with
//! exponential backoff and jitter, `404`/`410` retire the subscription (RFC 8030 §7.3). Because
//! the outbox is a table, a restart resumes whatever was pending. It runs on its own arbiter
//! thread, since its store calls are synchronous (Diesel).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::StateChanged;
use super::vapid::VapidSigner;
use super::webhook_body;
use super::webpush;
use crate::backoff::backoff;
use crate::config::PushConfig;
use crate::jmap::webhook_policy::{Target, TargetPolicy, WebhookPolicy};
use crate::random::random_secret;
use crate::store::now_ms;
use crate::store::webhook_outbox::{self as outbox, ClaimedDelivery, Settlement};
use crate::store::webhook_outbox::{KIND_STATE_CHANGE, KIND_VERIFICATION};
use crate::store::{Store, StoreError};

/// Mailbox capacity: the dispatcher publishes with `try_send` and a full mailbox drops the
/// change, so leave room for bursts.
const MAILBOX_CAPACITY: usize = 4096;

/// How long finished POSTs may wait to be settled together while more than half of the
/// in-flight slots are busy (when fewer are, they are settled at once).
const SETTLE_DELAY: Duration = Duration::from_millis(5);

/// Delivers webhook pushes from the outbox.
pub struct WebhookSender {
    store: Store,
    config: PushConfig,
    policy: TargetPolicy,
    /// This process's name in `claimed_by`.
    node: String,
    /// Signs every push with the server's VAPID key (RFC 8292).
    vapid: VapidSigner,
    /// Built in `started`: `awc::Client` is `!Send` (../shared/STACK.md, pitfall 5).
    client: Option<awc::Client>,
    in_flight: HashSet<String>,
    /// Accounts announced by a `StateChanged` since the last pump.
    moved: HashSet<String>,
    /// Outcomes of finished POSTs not yet written to the outbox.
    settled: Vec<Settlement>,
    /// The outbox poll / next retry.
    timer: Option<SpawnHandle>,
    /// A pending [`WebhookSender::pump`] and when it runs.
    tick: Option<(SpawnHandle, Instant)>,
    /// A store pass is running; another pump waits for it (`pump_again`).
    pumping: bool,
    pump_again: bool,
    /// The next pass also sweeps expired subscriptions and replays the change log.
    sweep_due: bool,
    /// The next pass is the first: it resumes claims left by a dead process and catches up.
    starting: bool,
}

impl WebhookSender {
    /// Starts the sender on a new arbiter thread.
    pub fn start(store: Store, config: &PushConfig, vapid: VapidSigner) -> Addr<WebhookSender> {
        let config = config.clone();
        WebhookSender::start_in_arbiter(&Arbiter::new().handle(), move |_| WebhookSender {
            store,
            vapid,
            policy: WebhookPolicy::from_config(&config).target,
            config,
            node: random_secret(9),
            client: None,
            in_flight: HashSet::new(),
            moved: HashSet::new(),
            settled: Vec::new(),
            timer: None,
            tick: None,
            pumping: false,
            pump_again: false,
            sweep_due: false,
            starting: true,
        })
    }

    fn lease_ms(&self) -> i64 {
        lease_secs(&self.config) as i64 * 1000
    }

    /// Writes the settled outcomes, claims due deliveries up to the in-flight limit in one
    /// transaction and starts their POSTs; once the due rows are drained, arms the timer for the
    /// next due row. The store work runs on a blocking thread ([`StorePass`]), never on this
    /// actor's thread, which drives every POST in flight; one pass runs at a time.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        if let Some((handle, _)) = self.tick.take() {
            ctx.cancel_future(handle);
        }
        if self.pumping {
            self.pump_again = true;
            return;
        }
        self.pumping = true;
        let pass = StorePass {
            store: self.store.clone(),
            node: self.node.clone(),
            lease_ms: self.lease_ms(),
            room: self
                .config
                .max_in_flight
                .saturating_sub(self.in_flight.len()),
            moved: std::mem::take(&mut self.moved),
            settled: std::mem::take(&mut self.settled),
            sweep: std::mem::take(&mut self.sweep_due),
            starting: std::mem::take(&mut self.starting),
        };
        actix_web::rt::task::spawn_blocking(move || pass.run())
            .into_actor(self)
            .map(|outcome, act, ctx| {
                act.pumping = false;
                match outcome {
                    Ok(Ok((claimed, full, next_wake))) => {
                        for claimed in claimed {
                            // Our own rows in flight hold unexpired leases, so they are never
                            // claimed twice; this is a guard.
                            if act.in_flight.insert(claimed.subscription.id.clone()) {
                                act.deliver(claimed, ctx);
                            }
                        }
                        // Full: more rows may be due, and the POSTs' settlements pump again.
                        if !full {
                            act.arm_timer(next_wake, ctx);
                        }
                    }
                    Ok(Err(e)) => {
                        log::warn!("webhook outbox: {e}");
                        act.arm_timer(None, ctx);
                    }
                    Err(e) => {
                        log::warn!("webhook outbox: the store pass failed: {e}");
                        act.arm_timer(None, ctx);
                    }
                }
                if std::mem::take(&mut act.pump_again) {
                    act.pump(ctx);
                }
            })
            .spawn(ctx);
    }

    /// Runs [`Self::pump`] after `delay`, unless a run is already due sooner.
    fn pump_after(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        let at = Instant::now() + delay;
        if let Some((handle, due)) = self.tick {
            if due <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let handle = ctx.run_later(delay, |act, ctx| {
            act.tick = None;
            act.pump(ctx);
        });
        self.tick = Some((handle, at));
    }

    /// Pumps at the next due row (`next_wake`, ms) or after `outbox_poll_secs`, whichever comes
    /// first; that pump also sweeps expired subscriptions and catches up from the change log.
    fn arm_timer(&mut self, next_wake: Option<i64>, ctx: &mut Context<Self>) {
        let poll = Duration::from_secs(self.config.outbox_poll_secs.max(1));
        let delay = match next_wake {
            Some(t) => Duration::from_millis((t - now_ms()).max(0) as u64).min(poll),
            None => poll,
        };
        if let Some(old) = self.timer.take() {
            ctx.cancel_future(old);
        }
        self.timer = Some(ctx.run_later(delay, |act, ctx| {
            act.timer = None;
            act.sweep_due = true;
            act.pump(ctx);
        }));
    }

    fn deliver(&mut self, claimed: ClaimedDelivery, ctx: &mut Context<Self>) {
        let Some(client) = self.client.clone() else {
            return;
        };
        let push = Push::of(&claimed, &self.config, &mut self.vapid);
        let request = push.send(client, self.policy.clone());
        request
            .into_actor(self)
            .map(move |outcome, act, ctx| {
                act.in_flight.remove(&claimed.subscription.id);
                let settlement = act.settlement(claimed, outcome);
                act.settled.push(settlement);
                // Settle and refill in batches: at once when half the slots are free, else
                // after a short delay during which more POSTs finish.
                let free =
                    act.config.max_in_flight - act.in_flight.len().min(act.config.max_in_flight);
                if free * 2 >= act.config.max_in_flight {
                    act.pump_after(Duration::ZERO, ctx);
                } else {
                    act.pump_after(SETTLE_DELAY, ctx);
                }
            })
            .spawn(ctx);
    }

    /// What the outbox should record for one POST's outcome.
    fn settlement(
        &self,
        claimed: ClaimedDelivery,
        outcome: Result<(u16, Option<u64>), Failure>,
    ) -> Settlement {
        let id = claimed.subscription.id.clone();
        let what = if claimed.kind == KIND_VERIFICATION {
            "PushVerification"
        } else {
            "StateChange"
        };
        let (error, retry_after) = match outcome {
            Ok((status, _)) if (200..300).contains(&status) => {
                log::debug!("webhook {what} to subscription {id} accepted ({status})");
                crate::metrics::metrics()
                    .webhook_posts
                    .with_label_values(&["accepted"])
                    .inc();
                return Settlement::Delivered(claimed);
            }
            Ok((404 | 410, _)) => {
                // RFC 8030 §7.3: the push subscription is gone.
                log::info!("webhook subscription {id} is gone at its push service; destroyed");
                crate::metrics::metrics()
                    .webhook_subscriptions_retired
                    .with_label_values(&["gone"])
                    .inc();
                return Settlement::Gone(id);
            }
            Ok((status, retry_after)) => (format!("HTTP {status}"), retry_after),
            Err(Failure::Refused(e)) => (format!("refused: {e}"), None),
            Err(Failure::Transport(e)) => (e, None),
        };
        crate::metrics::metrics()
            .webhook_posts
            .with_label_values(&["failed"])
            .inc();
        let at = now_ms();
        let give_up = at - claimed.first_pending_at > self.config.give_up_secs as i64 * 1000;
        let mut delay = backoff(
            claimed.attempts.max(0) as u32,
            self.config.retry_base_ms,
            self.config.retry_cap_ms,
        );
        if let Some(secs) = retry_after {
            // WP-05: a 429 (or 503) with Retry-After: send less often.
            delay = delay.max(secs.saturating_mul(1000).min(self.config.retry_cap_ms));
        }
        if give_up {
            log::warn!("webhook {what} to subscription {id} dropped after retrying: {error}");
        } else {
            log::info!("webhook {what} to subscription {id} failed ({error}); retry in {delay} ms");
        }
        Settlement::Failed {
            id,
            next_attempt_at: at + delay as i64,
            error,
            give_up,
        }
    }
}

/// One delivery's POSTs: the bodies (one, or a StateChange's parts) and their headers.
struct Push {
    url: String,
    keys: Option<crate::jmap::methods::push_subscription::keys::UaKeys>,
    bodies: Vec<Vec<u8>>,
    ttl: String,
    urgency: &'static str,
    topic: Option<String>,
    authorization: Option<String>,
}

impl Push {
    fn of(claimed: &ClaimedDelivery, config: &PushConfig, vapid: &mut VapidSigner) -> Push {
        let keys = claimed.subscription.keys.clone();
        // RFC 8291: an encrypted push is one record, so a large StateChange goes in parts.
        let bodies = if claimed.kind == KIND_VERIFICATION {
            vec![webhook_body::verification(
                &claimed.subscription.id,
                &claimed.subscription.verification_code,
            )]
        } else {
            let max = keys.as_ref().map(|_| webpush::MAX_PLAINTEXT);
            webhook_body::state_changes(&claimed.changed, max)
        };
        // A fixed Topic per subscription lets a push service replace an undelivered StateChange
        // with the newer one (RFC 8030 §5.4; the id is base64url and at most 32 characters).
        // Never on parts of one: each would replace the one before.
        let topic = (claimed.kind == KIND_STATE_CHANGE
            && bodies.len() == 1
            && claimed.subscription.id.len() <= 32)
            .then(|| claimed.subscription.id.clone());
        let url = claimed.subscription.url.clone();
        // RFC 8030 §5.3: new mail is worth waking a device for; other changes can wait.
        let new_mail = claimed
            .changed
            .values()
            .any(|types| types.contains_key("EmailDelivery"));
        Push {
            authorization: vapid.authorization(&url, crate::store::now()),
            url,
            keys,
            bodies,
            ttl: config.ttl_secs.to_string(),
            urgency: if new_mail { "high" } else { "normal" },
            topic,
        }
    }

    /// POSTs the bodies one after another; the first refusal is the delivery's outcome, and a
    /// retry sends every part again (a repeated StateChange costs a client one /changes).
    async fn send(
        self,
        client: awc::Client,
        policy: TargetPolicy,
    ) -> Result<(u16, Option<u64>), Failure> {
        // Scheme and literal addresses; host names are checked by the client's resolver.
        policy.parse(&self.url).map_err(Failure::Refused)?;
        let mut outcome = (0, None);
        for plain in &self.bodies {
            // RFC 8620 §7.2 / RFC 8291: with keys, everything is encrypted, verification
            // included.
            let body = match &self.keys {
                Some(keys) => {
                    webpush::encrypt(keys, plain).map_err(|e| Failure::Refused(e.to_string()))?
                }
                None => plain.clone(),
            };
            let mut req = client
                .post(&self.url)
                .insert_header(("Content-Type", "application/json"))
                .insert_header(("TTL", self.ttl.as_str()))
                .insert_header(("Urgency", self.urgency));
            if let Some(authorization) = &self.authorization {
                req = req.insert_header(("Authorization", authorization.as_str()));
            }
            if let Some(topic) = &self.topic {
                req = req.insert_header(("Topic", topic.as_str()));
            }
            if self.keys.is_some() {
                req = req.insert_header(("Content-Encoding", "aes128gcm"));
            }
            let res = req
                .send_body(body)
                .await
                .map_err(|e| Failure::Transport(e.to_string()))?;
            let retry_after = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            outcome = (res.status().as_u16(), retry_after);
            if !res.status().is_success() {
                break;
            }
        }
        Ok(outcome)
    }
}

/// The store work of one pump, run on a blocking thread: what the actor collected (changes
/// announced, POST outcomes) goes in; claimed deliveries and the next wake-up come out.
struct StorePass {
    store: Store,
    node: String,
    lease_ms: i64,
    /// Free in-flight slots to claim rows for.
    room: usize,
    moved: HashSet<String>,
    settled: Vec<Settlement>,
    /// The timer fired: also destroy expired subscriptions and replay the change log.
    sweep: bool,
    /// The first pass of this sender.
    starting: bool,
}

impl StorePass {
    /// `(claimed rows, whether they filled every free slot, the next due time when not)`.
    fn run(mut self) -> Result<(Vec<ClaimedDelivery>, bool, Option<i64>), StoreError> {
        let mut conn = self.store.conn()?;
        if self.starting && self.store.url().is_sqlite() {
            // A single-node store: any claim left behind is a dead process's.
            match outbox::release_all_claims(&mut conn) {
                Ok(n) if n > 0 => log::info!("webhook outbox: resumed {n} interrupted deliveries"),
                Ok(_) => {}
                Err(e) => log::warn!("webhook outbox: {e}"),
            }
        }
        if self.sweep {
            match outbox::destroy_expired(&mut conn, now_ms() / 1000) {
                Ok(0) => {}
                Ok(n) => {
                    log::info!("destroyed {n} expired push subscriptions");
                    crate::metrics::metrics()
                        .webhook_subscriptions_retired
                        .with_label_values(&["expired"])
                        .inc_by(n as u64);
                }
                Err(e) => log::warn!("webhook outbox: {e}"),
            }
        }
        if self.sweep || self.starting {
            // Changes whose `StateChanged` never reached the sender (a crash right after
            // commit, a full mailbox, another node's write) still get pushed.
            match outbox::catch_up_all(&mut conn) {
                Ok(0) => {}
                Ok(n) => {
                    log::info!("webhook outbox: caught up {n} subscriptions from the change log");
                }
                Err(e) => log::warn!("webhook outbox: {e}"),
            }
        }
        for account in &self.moved {
            if let Err(e) = outbox::catch_up(&mut conn, account, outbox::MissingCursor::NewestWrite)
            {
                // The next timer's catch-up replays it from the change log.
                log::warn!("webhook outbox: state change of {account} not queued: {e}");
            }
        }
        // Until recorded, settled rows stay claimed by this node, so no second POST to those
        // subscriptions starts; if this fails, the claims run out and the rows are sent again.
        if !self.settled.is_empty()
            && let Err(e) = outbox::settle(&mut conn, &self.node, &mut self.settled)
        {
            log::warn!(
                "webhook outbox: {} outcomes not recorded: {e}",
                self.settled.len()
            );
        }
        if self.room == 0 {
            return Ok((Vec::new(), true, None));
        }
        let claimed = outbox::claim_due(&mut conn, &self.node, now_ms(), self.lease_ms, self.room)?;
        let full = claimed.len() >= self.room;
        let next_wake = if full {
            None
        } else {
            outbox::next_wake(&mut conn).unwrap_or(None)
        };
        Ok((claimed, full, next_wake))
    }
}

/// How long a claim on an outbox row lasts (`claim_lease_secs`, 0: the POST timeout plus 30 s).
pub fn lease_secs(config: &PushConfig) -> u64 {
    match config.claim_lease_secs {
        0 => config.request_timeout_secs + 30,
        n => n,
    }
}

/// Stops the sender at once, as a crash would: POSTs in flight are abandoned unsettled, so their
/// claims stay until the lease runs out and another node (or, on SQLite, the next start) sends
/// them. For a node that shuts down, and for tests that kill one.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Halt;

impl Handler<Halt> for WebhookSender {
    type Result = ();

    fn handle(&mut self, _: Halt, ctx: &mut Self::Context) {
        // Logged here, not in `stopped`: whoever awaits Halt (a stopping node) may exit before
        // this arbiter thread runs `stopped`.
        log::info!("webhook sender stopped");
        ctx.stop();
    }
}

/// Why a POST did not happen or got no answer.
#[derive(Debug)]
enum Failure {
    /// The target is not allowed (SSRF policy) or the message cannot be encoded.
    Refused(String),
    /// Connection, TLS or timeout.
    Transport(String),
}

/// The DNS resolver of the webhook client: it resolves, then refuses unless every address is
/// allowed by the policy (PSUB-11). Checking inside the connector means the addresses checked are
/// the ones connected to, so a DNS answer that changes between check and connect (rebinding)
/// cannot slip through. IP literals never reach a resolver; the policy checks them when parsing.
struct CheckedResolver {
    policy: TargetPolicy,
}

impl actix_tls::connect::Resolve for CheckedResolver {
    fn lookup<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> futures_util::future::LocalBoxFuture<
        'a,
        Result<Vec<std::net::SocketAddr>, Box<dyn std::error::Error>>,
    > {
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((host, port)).await?.collect();
            let target = Target {
                https: true,
                host: host.to_ascii_lowercase(),
                port,
            };
            let ips: Vec<std::net::IpAddr> = addrs.iter().map(|a| a.ip()).collect();
            self.policy.check_addresses(&target, &ips)?;
            Ok(addrs)
        })
    }
}

impl Actor for WebhookSender {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        if lease_secs(&self.config) <= self.config.request_timeout_secs {
            log::warn!(
                "push.claim_lease_secs ({}) is not above push.request_timeout_secs ({}): \
                 a slow webhook POST may be sent twice by two nodes",
                lease_secs(&self.config),
                self.config.request_timeout_secs
            );
        }
        let resolver = actix_tls::connect::Resolver::custom(CheckedResolver {
            policy: self.policy.clone(),
        });
        // Keep-alive connections, as many as POSTs may be in flight (awc's default is 100).
        let connector = awc::Connector::new()
            .limit(self.config.max_in_flight.max(100))
            .connector(actix_tls::connect::Connector::new(resolver).service());
        self.client = Some(
            awc::Client::builder()
                .connector(connector)
                .timeout(Duration::from_secs(self.config.request_timeout_secs.max(1)))
                // A redirect could point anywhere, past the SSRF check.
                .disable_redirects()
                .finish(),
        );
        let wake = crate::store::webhook_outbox::outbox_signal().subscribe();
        ctx.add_stream(futures_util::stream::unfold(wake, |mut rx| async move {
            rx.changed().await.ok()?;
            Some((OutboxWake, rx))
        }));
        self.pump(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // The sender owns its arbiter thread (`start`).
        Arbiter::current().stop();
    }
}

/// A request queued something in the outbox.
struct OutboxWake;

impl StreamHandler<OutboxWake> for WebhookSender {
    fn handle(&mut self, _: OutboxWake, ctx: &mut Self::Context) {
        self.pump(ctx);
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}

impl Handler<StateChanged> for WebhookSender {
    type Result = ();

    fn handle(&mut self, msg: StateChanged, ctx: &mut Self::Context) {
        // The message only says which account moved; what to push is read from its change log,
        // at the next pump: the writes that arrive meanwhile cost one catch-up per account.
        self.moved.insert(msg.account_id);
        self.pump_after(Duration::ZERO, ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn the_client_resolver_refuses_names_that_resolve_to_private_addresses() {
        use actix_tls::connect::Resolve;
        let strict = CheckedResolver {
            policy: TargetPolicy::default(),
        };
        let e = strict.lookup("localhost", 443).await.unwrap_err();
        assert!(e.to_string().contains("not a public address"), "{e}");
        let listed = CheckedResolver {
            policy: TargetPolicy {
                allow_private_targets: false,
                allowed_hosts: vec!["LOCALHOST".into()],
            },
        };
        let addrs = listed.lookup("localhost", 443).await.unwrap();
        assert!(
            addrs
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 443)
        );
    }
}
