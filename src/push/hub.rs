//! `AccountHub`: one actor per account that has push subscribers. It merges each committed write
//! into every subscriber's [`ChangeSlot`] and wakes the subscriber with `try_send`: a hub never
//! waits for a slow subscriber, and drops the ones that are gone.

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

use super::StateChanged;
use super::slot::ChangeSlot;

/// Tells a push session that its slot has changes to write.
#[derive(Message, Clone, Copy, Debug)]
#[rtype(result = "()")]
pub struct Wake;

/// One push connection, as the hubs see it.
#[derive(Clone)]
pub struct Subscriber {
    /// The user whose connection this is (for revocation and caps).
    pub user_id: String,
    /// The bearer token the connection was opened with (`Principal::token_hash`).
    pub token_hash: Option<String>,
    pub slot: Arc<ChangeSlot>,
    pub wake: Recipient<Wake>,
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
            if !s.slot.offer_at(
                &change.account_id,
                change.seq,
                &change.types,
                change.committed_at_ms,
            ) {
                return true;
            }
            match s.wake.try_send(Wake) {
                Ok(()) => true,
                // The session's mailbox is full: the change waits in its slot, and the session's
                // heartbeat tick takes it (the slot, not the mailbox, holds changes).
                Err(SendError::Full(_)) => true,
                Err(SendError::Closed(_)) => false,
            }
        });
    }
}
