//! Mail delivery through the dispatcher (LMTP): recipient checks and deliveries are store work,
//! so they run on the dispatcher's threads, and a delivery is published exactly like a JMAP
//! write (`Dispatcher::publish`).

use std::sync::Arc;

use actix::prelude::*;

use super::Dispatcher;
use crate::store::{StoreError, accounts, addresses, delivery};

/// Which user an address delivers to: `Ok(None)` for nobody.
#[derive(Message)]
#[rtype(result = "Result<Option<String>, StoreError>")]
pub struct ResolveRecipient(pub String);

/// Deliver `message` to the inbox of user `user_id`'s personal account.
#[derive(Message)]
#[rtype(result = "Result<DeliveryOutcome, StoreError>")]
pub struct Deliver {
    pub user_id: String,
    /// Shared by every recipient of one LMTP transaction.
    pub message: Arc<Vec<u8>>,
}

/// What became of one [`Deliver`]: committed (the email's id), or refused for a reason that a
/// retry would not change (the message cannot be stored as an Email).
pub enum DeliveryOutcome {
    Delivered(String),
    Refused(String),
}

impl Handler<ResolveRecipient> for Dispatcher {
    type Result = Result<Option<String>, StoreError>;

    fn handle(&mut self, msg: ResolveRecipient, _: &mut Self::Context) -> Self::Result {
        let mut conn = self.store.conn()?;
        addresses::resolve(&mut conn, &msg.0, &self.server.mail_domain)
    }
}

impl Handler<Deliver> for Dispatcher {
    type Result = Result<DeliveryOutcome, StoreError>;

    fn handle(&mut self, msg: Deliver, _: &mut Self::Context) -> Self::Result {
        let mut conn = self.store.conn()?;
        let account = accounts::personal_account(&mut conn, &msg.user_id)?;
        let policy = self.auto_reply_policy();
        match delivery::deliver(
            &mut conn,
            &account,
            msg.message.as_ref().clone(),
            Some(&policy),
        ) {
            Ok((created, committed)) => {
                self.publish(committed.into_iter().collect());
                Ok(DeliveryOutcome::Delivered(created.id))
            }
            Err(StoreError::Invalid(why)) => Ok(DeliveryOutcome::Refused(why)),
            Err(e) => Err(e),
        }
    }
}
