//! Stream tickets through the dispatcher: issuing and redeeming one is a store write, so it runs
//! on the dispatcher's threads, never on an HTTP worker (see `store::tickets`).

use actix::prelude::*;

use super::Dispatcher;
use crate::jmap::session::Principal;
use crate::store::StoreError;
use crate::store::credentials::{Credentials, authenticate};
use crate::store::tickets::{self, TicketError};

/// Authenticate `credentials` and issue a ticket for their user.
#[derive(Message)]
#[rtype(result = "Result<IssuedTicket, StoreError>")]
pub struct IssueTicket {
    pub credentials: Credentials,
    pub ttl_secs: u64,
    pub max_unused: usize,
}

/// What became of an [`IssueTicket`].
pub enum IssuedTicket {
    Issued(String),
    /// The credentials do not authenticate.
    Unauthorized,
    /// The user holds `max_unused` unexpired tickets already.
    TooMany,
}

/// Use a ticket up: the principal it was issued to, as the store has it now.
#[derive(Message)]
#[rtype(result = "Result<Option<Principal>, StoreError>")]
pub struct RedeemTicket(pub String);

impl Handler<IssueTicket> for Dispatcher {
    type Result = Result<IssuedTicket, StoreError>;

    fn handle(&mut self, msg: IssueTicket, _: &mut Self::Context) -> Self::Result {
        let mut conn = self.store.conn()?;
        let Some(principal) = authenticate(&mut conn, &self.credentials, &msg.credentials)? else {
            return Ok(IssuedTicket::Unauthorized);
        };
        let token_hash = match &msg.credentials {
            Credentials::Bearer(token) => crate::store::tokens::secret_hash_of(token),
            Credentials::Basic { .. } => None,
        };
        match tickets::issue(
            &mut conn,
            &principal.user_id,
            token_hash.as_deref(),
            msg.ttl_secs,
            msg.max_unused,
        ) {
            Ok(ticket) => Ok(IssuedTicket::Issued(ticket)),
            Err(TicketError::TooMany) => Ok(IssuedTicket::TooMany),
            Err(TicketError::Store(e)) => Err(e),
        }
    }
}

impl Handler<RedeemTicket> for Dispatcher {
    type Result = Result<Option<Principal>, StoreError>;

    fn handle(&mut self, msg: RedeemTicket, _: &mut Self::Context) -> Self::Result {
        let mut conn = self.store.conn()?;
        tickets::redeem(&mut conn, &msg.0)
    }
}
