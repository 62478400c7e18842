//! Caps on open push connections (WebSocket and EventSource together), per user and in total.
//! Checked before the upgrade / stream starts; the slot is held by the session and released when
//! it is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Which cap refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CapReached {
    #[error("this user already has {0} push connections open, the most allowed")]
    PerUser(usize),
    #[error("the server already has {0} push connections open, the most allowed")]
    Total(usize),
}

#[derive(Default)]
struct Counts {
    per_user: HashMap<String, usize>,
    total: usize,
}

/// Counts open push connections.
#[derive(Clone)]
pub struct ConnectionCaps {
    per_user: usize,
    total: usize,
    counts: Arc<Mutex<Counts>>,
}

/// Held by a push session; releases its place when dropped.
pub struct ConnectionSlot {
    counts: Arc<Mutex<Counts>>,
    user: String,
}

impl ConnectionCaps {
    pub fn new(per_user: usize, total: usize) -> Self {
        ConnectionCaps {
            per_user,
            total,
            counts: Arc::default(),
        }
    }

    /// Takes a place for `user`, or says which cap is reached.
    pub fn try_acquire(&self, user: &str) -> Result<ConnectionSlot, CapReached> {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if c.total >= self.total {
            return Err(CapReached::Total(self.total));
        }
        let n = c.per_user.entry(user.to_owned()).or_insert(0);
        if *n >= self.per_user {
            return Err(CapReached::PerUser(self.per_user));
        }
        *n += 1;
        c.total += 1;
        Ok(ConnectionSlot {
            counts: self.counts.clone(),
            user: user.to_owned(),
        })
    }

    /// Open connections in total.
    pub fn open(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_user.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                c.per_user.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_per_user_and_in_total_and_places_come_back_on_drop() {
        let caps = ConnectionCaps::new(2, 3);
        let a1 = caps.try_acquire("a").unwrap();
        let _a2 = caps.try_acquire("a").unwrap();
        assert_eq!(caps.try_acquire("a").err(), Some(CapReached::PerUser(2)));
        let _b1 = caps.try_acquire("b").unwrap();
        assert_eq!(caps.try_acquire("c").err(), Some(CapReached::Total(3)));
        drop(a1);
        assert_eq!(caps.open(), 2);
        assert!(caps.try_acquire("c").is_ok());
    }
}
