//! The push `Registry`: receives every committed write from the Dispatcher and hands it to the
//! `AccountHub` of its account, if that account has subscribers. It starts a hub when an
//! account's first subscriber arrives and stops it when the last leaves (../shared/DESIGN.md).
//!
//! Access can be withdrawn from outside this process (`herald account unshare`, `herald user
//! remove`, another node). Such a change bumps the store's access epoch, which the node's bus
//! notices at once and reports as [`AccessChanged`]; the registry then audits which accounts the
//! users with open connections may still read, in one query, and drops what they lost; a
//! connection left with no account is closed. Access given (`herald account share`) is found the
//! same way: the user's open connections join the account's hub, then are told its current
//! states ([`ChangeSlot::grant`](super::slot::ChangeSlot::grant)). The audit also runs every
//! `access_check` interval, as a safety net.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use actix::prelude::*;

use super::StateChanged;
use super::hub::{AccountHub, Close, DropUser, Join, Leave, Subscriber};
use super::slot::{Closing, SlotStats};
use crate::store::{Store, StoreError};

/// Subscribes a connection to the given accounts; answers the subscription id.
#[derive(Message)]
#[rtype(result = "u64")]
pub struct Subscribe {
    pub accounts: Vec<String>,
    pub subscriber: Subscriber,
}

impl Subscribe {
    /// A push session of `principal` subscribing to every account it may read.
    pub fn session(
        principal: &crate::jmap::session::Principal,
        slot: std::sync::Arc<super::slot::ChangeSlot>,
        wake: std::sync::Arc<super::wake::WakeSignal>,
    ) -> Self {
        Subscribe {
            accounts: principal
                .accounts
                .iter()
                .map(|a| a.account_id.clone())
                .collect(),
            subscriber: Subscriber {
                user_id: principal.user_id.clone(),
                token_hash: principal.token_hash.clone(),
                password_stamp: principal.password_stamp.clone(),
                slot,
                wake,
            },
        }
    }
}

/// Ends a subscription (sent by a session in `stopping`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe(pub u64);

/// A user lost access to an account: their open connections stop hearing of it at once
/// (../shared/DESIGN.md). Whatever revokes access sends this after its transaction commits.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AccessRevoked {
    pub user_id: String,
    pub account_id: String,
}

/// What the registry holds: for operators and tests.
#[derive(Message)]
#[rtype(result = "RegistryStats")]
pub struct GetStats;

/// A snapshot of the registry.
#[derive(Clone, Debug, Default)]
pub struct RegistryStats {
    /// Running account hubs.
    pub hubs: usize,
    /// Per subscription: its user and what its slot holds.
    pub subscribers: Vec<(String, SlotStats)>,
}

struct Subscription {
    accounts: Vec<String>,
    subscriber: Subscriber,
}

/// Maps accounts to their hubs.
#[derive(Default)]
pub struct Registry {
    hubs: HashMap<String, (Addr<AccountHub>, usize)>,
    subscriptions: HashMap<u64, Subscription>,
    next_id: u64,
    /// Where access is read from, and how often; without it there is no audit.
    audit: Option<(Store, Duration)>,
    auditing: bool,
    /// Access changed while an audit was reading: audit again when it ends.
    audit_again: bool,
}

impl Registry {
    /// A registry that re-checks its subscribers' access in `store` every `every`.
    pub fn new(store: Store, every: Duration) -> Self {
        Registry {
            audit: Some((store, every)),
            ..Registry::default()
        }
    }

    /// Adds subscription `id` to `account`'s hub, starting the hub for its first member.
    fn join(&mut self, id: u64, account: &str, subscriber: Subscriber) {
        let (hub, members) = self
            .hubs
            .entry(account.to_owned())
            .or_insert_with(|| (AccountHub::new(account.to_owned()).start(), 0));
        *members += 1;
        hub.do_send(Join(id, subscriber));
    }

    /// Subscribes open connections to the accounts their users were given (`allowed` holds
    /// every pair the audit read), then reads each such account's position and states and hands
    /// them to the connections' slots.
    fn grant(&mut self, allowed: &HashSet<(String, String)>, ctx: &mut Context<Self>) {
        let gained = self.gained(allowed);
        if gained.is_empty() {
            return;
        }
        for (id, account) in &gained {
            let Some(sub) = self.subscriptions.get_mut(id) else {
                continue;
            };
            log::info!(
                "push: {} was given {account}; following it",
                sub.subscriber.user_id
            );
            let at = sub.accounts.partition_point(|a| a < account);
            sub.accounts.insert(at, account.clone());
            let subscriber = sub.subscriber.clone();
            self.join(*id, account, subscriber);
        }
        self.tell_granted(gained, ctx);
    }

    /// The (subscription, account) pairs in `allowed` that the subscriptions do not follow.
    fn gained(&self, allowed: &HashSet<(String, String)>) -> Vec<(u64, String)> {
        let mut by_user: HashMap<&str, Vec<&str>> = HashMap::new();
        for (user, account) in allowed {
            by_user.entry(user).or_default().push(account);
        }
        let mut gained: Vec<(u64, String)> = Vec::new();
        for (id, sub) in &self.subscriptions {
            // A connection that follows nothing more is closing; it does not come back.
            if sub.accounts.is_empty() {
                continue;
            }
            for account in by_user
                .get(sub.subscriber.user_id.as_str())
                .into_iter()
                .flatten()
            {
                if sub
                    .accounts
                    .binary_search_by(|a| a.as_str().cmp(account))
                    .is_err()
                {
                    gained.push((*id, (*account).to_owned()));
                }
            }
        }
        gained
    }

    /// Reads the position and states of the `gained` accounts (joined already, so no write
    /// after the read is missed) and hands them to the connections' slots.
    fn tell_granted(&mut self, gained: Vec<(u64, String)>, ctx: &mut Context<Self>) {
        let Some((store, _)) = &self.audit else {
            return;
        };
        let store = store.clone();
        let accounts: Vec<String> = gained
            .iter()
            .map(|(_, a)| a.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        async move {
            actix_web::rt::task::spawn_blocking(move || {
                let mut conn = store.conn()?;
                accounts
                    .into_iter()
                    .map(|a| {
                        // Before any position: every type, at its current state.
                        let found = crate::store::changelog::types_changed_since(
                            &mut conn,
                            &a,
                            i64::MIN,
                            super::DATA_TYPES,
                        )?;
                        Ok((a, found))
                    })
                    .collect::<Result<HashMap<_, _>, StoreError>>()
            })
            .await
            .unwrap_or_else(|e| Err(StoreError::Invalid(e.to_string())))
        }
        .into_actor(self)
        .map(move |found, registry, _| {
            let found = match found {
                Ok(found) => found,
                Err(e) => {
                    log::warn!("push: the states of newly shared accounts were not read: {e}");
                    return;
                }
            };
            for (id, account) in gained {
                let (Some(sub), Some((seq, states))) =
                    (registry.subscriptions.get(&id), found.get(&account))
                else {
                    continue;
                };
                if sub.accounts.contains(&account)
                    && sub.subscriber.slot.grant(&account, *seq, states)
                {
                    sub.subscriber.wake.raise();
                }
            }
        })
        .spawn(ctx);
    }

    /// Drops `user_id`'s subscriptions to `account_id`; closes connections left with nothing.
    fn revoke(&mut self, user_id: &str, account_id: &str) {
        let mut dropped = 0;
        for sub in self.subscriptions.values_mut() {
            if sub.subscriber.user_id == user_id {
                let before = sub.accounts.len();
                sub.accounts.retain(|a| a != account_id);
                dropped += before - sub.accounts.len();
                if before > 0 && sub.accounts.is_empty() {
                    sub.subscriber.slot.close(Closing::AccessRevoked);
                    sub.subscriber.wake.raise();
                }
            }
        }
        if dropped == 0 {
            return;
        }
        let Some((hub, members)) = self.hubs.get_mut(account_id) else {
            return;
        };
        *members -= dropped;
        if *members == 0 {
            hub.do_send(Close);
            self.hubs.remove(account_id);
        } else {
            hub.do_send(DropUser(user_id.to_owned()));
        }
    }

    /// Reads the current access of every user with a subscription and revokes what is gone.
    fn audit(&mut self, ctx: &mut Context<Self>) {
        let Some((store, _)) = &self.audit else {
            return;
        };
        if self.subscriptions.is_empty() {
            return;
        }
        if self.auditing {
            self.audit_again = true;
            return;
        }
        self.auditing = true;
        let users: Vec<String> = self
            .subscriptions
            .values()
            .map(|s| s.subscriber.user_id.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let tokens: Vec<String> = self
            .subscriptions
            .values()
            .filter_map(|s| s.subscriber.token_hash.clone())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let store = store.clone();
        async move {
            actix_web::rt::task::spawn_blocking(move || {
                let mut conn = store.conn()?;
                let pairs = crate::store::accounts::readable_pairs(&mut conn, &users)?;
                let tokens = crate::store::tokens::existing(&mut conn, &tokens)?;
                let stamps = crate::store::credentials::password_stamps(&mut conn, &users)?;
                Ok((pairs, (tokens, stamps)))
            })
            .await
            .unwrap_or_else(|e| Err(StoreError::Invalid(e.to_string())))
        }
        .into_actor(self)
        .map(|allowed, registry, ctx| {
            registry.auditing = false;
            if std::mem::take(&mut registry.audit_again) {
                registry.audit(ctx);
            }
            let (allowed, (tokens, stamps)): (HashSet<(String, String)>, _) = match allowed {
                Ok((pairs, credentials)) => (pairs.into_iter().collect(), credentials),
                Err(e) => {
                    log::warn!("push access audit failed: {e}");
                    return;
                }
            };
            let lost: HashSet<(String, String)> = registry
                .subscriptions
                .values()
                .flat_map(|s| {
                    s.accounts
                        .iter()
                        .map(|a| (s.subscriber.user_id.clone(), a.clone()))
                })
                .filter(|pair| !allowed.contains(pair))
                .collect();
            for (user, account) in lost {
                log::info!("push: {user} lost access to {account}; dropping its subscriptions");
                registry.revoke(&user, &account);
            }
            registry.grant(&allowed, ctx);
            // A connection opened with a revoked token, or with a password since changed, ends;
            // its session unsubscribes as it stops.
            for sub in registry.subscriptions.values() {
                let s = &sub.subscriber;
                let token_revoked = s.token_hash.as_ref().is_some_and(|t| !tokens.contains(t));
                let password_changed = s
                    .password_stamp
                    .as_ref()
                    .is_some_and(|p| stamps.get(&s.user_id) != Some(p));
                if token_revoked || password_changed {
                    sub.subscriber.slot.close(Closing::AccessRevoked);
                    sub.subscriber.wake.raise();
                }
            }
        })
        .spawn(ctx);
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // The Dispatcher publishes with try_send: leave room for bursts.
        ctx.set_mailbox_capacity(65_536);
        if let Some((_, every)) = &self.audit {
            ctx.run_interval(*every, |registry, ctx| registry.audit(ctx));
        }
    }
}

impl Handler<Subscribe> for Registry {
    type Result = MessageResult<Subscribe>;

    fn handle(&mut self, msg: Subscribe, _: &mut Self::Context) -> Self::Result {
        self.next_id += 1;
        let id = self.next_id;
        let mut accounts = msg.accounts;
        accounts.sort();
        accounts.dedup();
        for account in &accounts {
            self.join(id, account, msg.subscriber.clone());
        }
        self.subscriptions.insert(
            id,
            Subscription {
                accounts,
                subscriber: msg.subscriber,
            },
        );
        MessageResult(id)
    }
}

impl Handler<Unsubscribe> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, _: &mut Self::Context) {
        let Some(sub) = self.subscriptions.remove(&msg.0) else {
            return;
        };
        for account in sub.accounts {
            let Some((hub, members)) = self.hubs.get_mut(&account) else {
                continue;
            };
            *members -= 1;
            if *members == 0 {
                hub.do_send(Close);
                self.hubs.remove(&account);
            } else {
                hub.do_send(Leave(msg.0));
            }
        }
    }
}

impl Handler<AccessRevoked> for Registry {
    type Result = ();

    fn handle(&mut self, msg: AccessRevoked, _: &mut Self::Context) {
        self.revoke(&msg.user_id, &msg.account_id);
    }
}

/// The server is stopping: every push connection closes now (a WebSocket with 1001, an
/// EventSource by ending its response), rather than hold the graceful shutdown for its whole
/// timeout. Clients reconnect and resume from their positions.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CloseAll;

impl Handler<CloseAll> for Registry {
    type Result = ();

    fn handle(&mut self, _: CloseAll, _: &mut Self::Context) {
        for sub in self.subscriptions.values() {
            sub.subscriber.slot.close(Closing::ServerStopping);
            sub.subscriber.wake.raise();
        }
    }
}

/// Some process gave or withdrew access (`store::access_epoch`): audit now rather than at the
/// next interval.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AccessChanged;

impl Handler<AccessChanged> for Registry {
    type Result = ();

    fn handle(&mut self, _: AccessChanged, ctx: &mut Self::Context) {
        self.audit(ctx);
    }
}

impl Handler<StateChanged> for Registry {
    type Result = ();

    fn handle(&mut self, change: StateChanged, _: &mut Self::Context) {
        if let Some((hub, _)) = self.hubs.get(&change.account_id) {
            // The hub only merges into slots; it never waits, so its mailbox drains fast.
            hub.do_send(change);
        }
    }
}

impl Handler<GetStats> for Registry {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        MessageResult(RegistryStats {
            hubs: self.hubs.len(),
            subscribers: self
                .subscriptions
                .values()
                .map(|s| (s.subscriber.user_id.clone(), s.subscriber.slot.stats()))
                .collect(),
        })
    }
}
