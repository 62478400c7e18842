//! `AccountHub`: one actor per account that has push subscribers. It merges each committed write
//! into every subscriber's [`ChangeSlot`] and raises the subscriber's [`WakeSignal`]: a hub never
//! waits for a slow subscriber, and drops the ones that are gone.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

use super::StateChanged;
use super::slot::ChangeSlot;
use super::wake::WakeSignal;

/// One push connection, as the hubs see it.
#[derive(Clone)]
pub struct Subscriber {
    /// The user whose connection this is (for revocation and caps).
    pub user_id: String,
    /// The bearer token the connection was opened with (`Principal::token_hash`).
    pub token_hash: Option<String>,
    /// The password the connection was opened with (`Principal::password_stamp`): it ends when
    /// the password changes.
    pub password_stamp: Option<String>,
    pub slot: Arc<ChangeSlot>,
    pub wake: Arc<WakeSignal>,
}

/// Adds a subscriber to a hub.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Join(pub u64, pub Subscriber);

/// Removes a subscriber from a hub.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Leave(pub u64);

/// Drops every subscriber of one user (their access to the account was revoked).
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct DropUser(pub String);

/// Stops a hub whose last subscriber left.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct Close;

/// The subscribers of one account.
pub struct AccountHub {
    account_id: String,
    subscribers: HashMap<u64, Subscriber>,
}

impl AccountHub {
    pub fn new(account_id: String) -> Self {
        AccountHub {
            account_id,
            subscribers: HashMap::new(),
        }
    }
}

impl Actor for AccountHub {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Self::Context) {
        log::debug!("push hub for account {} started", self.account_id);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        log::debug!("push hub for account {} stopped", self.account_id);
    }
}

impl Handler<Join> for AccountHub {
    type Result = ();
    fn handle(&mut self, msg: Join, _: &mut Self::Context) {
        self.subscribers.insert(msg.0, msg.1);
    }
}

impl Handler<Leave> for AccountHub {
    type Result = ();
    fn handle(&mut self, msg: Leave, _: &mut Self::Context) {
        self.subscribers.remove(&msg.0);
    }
}

impl Handler<DropUser> for AccountHub {
    type Result = ();
    fn handle(&mut self, msg: DropUser, _: &mut Self::Context) {
        self.subscribers.retain(|_, s| s.user_id != msg.0);
    }
}

impl Handler<Close> for AccountHub {
    type Result = ();
    fn handle(&mut self, _: Close, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

impl Handler<StateChanged> for AccountHub {
    type Result = ();

    fn handle(&mut self, change: StateChanged, _: &mut Self::Context) {
        self.subscribers.retain(|_, s| {
            // A session that is gone is dropped here, before its own Unsubscribe arrives.
            !s.slot.offer_at(
                &change.account_id,
                change.seq,
                &change.types,
                change.committed_at_ms,
            ) || s.wake.raise()
        });
    }
}
