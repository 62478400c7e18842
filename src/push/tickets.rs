//! Stream tickets: browsers cannot put an `Authorization` header on `EventSource` or `WebSocket`,
//! so an authenticated client asks `POST /jmap/ticket` for a short-lived, single-use ticket and
//! passes it as `?ticket=` on the stream URL.
//!
//! Tickets live in this node's memory: a ticket works only on the node that issued it and is lost
//! on restart (it lives for seconds). Only a SHA-256 of each ticket is kept.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::jmap::session::Principal;
use crate::store::{random_secret, sha256_hex};

/// Why a ticket could not be issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("too many unused tickets; try again shortly")]
pub struct TooManyTickets;

/// The tickets issued and not yet used or expired.
pub struct TicketBook {
    ttl: Duration,
    max_outstanding: usize,
    tickets: Mutex<HashMap<String, (Principal, Instant)>>,
}

impl TicketBook {
    pub fn new(ttl: Duration, max_outstanding: usize) -> Self {
        TicketBook {
            ttl,
            max_outstanding,
            tickets: Mutex::new(HashMap::new()),
        }
    }

    /// How long a ticket lives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issues a ticket for `principal`.
    pub fn issue(&self, principal: Principal) -> Result<String, TooManyTickets> {
        let now = Instant::now();
        let mut tickets = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
        tickets.retain(|_, (_, expires)| *expires > now);
        if tickets.len() >= self.max_outstanding {
            return Err(TooManyTickets);
        }
        let ticket = format!("t{}", random_secret(24));
        tickets.insert(sha256_hex(ticket.as_bytes()), (principal, now + self.ttl));
        Ok(ticket)
    }

    /// Uses a ticket up: the principal it was issued to, once, if it has not expired.
    pub fn redeem(&self, ticket: &str) -> Option<Principal> {
        let mut tickets = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
        let (principal, expires) = tickets.remove(&sha256_hex(ticket.as_bytes()))?;
        (expires > Instant::now()).then_some(principal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Principal {
        Principal {
            user_id: "u1".into(),
            username: "alice".into(),
            accounts: vec![],
        }
    }

    #[test]
    fn a_ticket_works_once_and_not_after_it_expires() {
        let book = TicketBook::new(Duration::from_secs(60), 10);
        let t = book.issue(alice()).unwrap();
        assert_eq!(book.redeem(&t), Some(alice()));
        assert_eq!(book.redeem(&t), None);
        assert_eq!(book.redeem("tnever-issued"), None);
        let expired = TicketBook::new(Duration::ZERO, 10);
        let t = expired.issue(alice()).unwrap();
        assert_eq!(expired.redeem(&t), None);
    }

    #[test]
    fn outstanding_tickets_are_capped() {
        let book = TicketBook::new(Duration::from_secs(60), 2);
        book.issue(alice()).unwrap();
        book.issue(alice()).unwrap();
        assert_eq!(book.issue(alice()), Err(TooManyTickets));
    }
}
