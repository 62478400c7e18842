//! Per-user caps on things running at once (`maxConcurrentRequests`, `maxConcurrentUpload`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Counts, per user, how many of something are running.
#[derive(Clone, Default)]
pub struct ConcurrencyLimiter {
    running: Arc<Mutex<HashMap<String, u64>>>,
}

/// Held while one thing runs; releases its slot when dropped.
pub struct Slot {
    running: Arc<Mutex<HashMap<String, u64>>>,
    user: String,
}

impl ConcurrencyLimiter {
    /// Takes a slot for `user` if fewer than `limit` are running.
    pub fn try_acquire(&self, user: &str, limit: u64) -> Option<Slot> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let n = running.entry(user.to_owned()).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(Slot {
            running: self.running.clone(),
            user: user.to_owned(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = running.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                running.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_limited_per_user_and_released_on_drop() {
        let l = ConcurrencyLimiter::default();
        let a = l.try_acquire("u", 2).unwrap();
        let _b = l.try_acquire("u", 2).unwrap();
        assert!(l.try_acquire("u", 2).is_none());
        assert!(l.try_acquire("v", 2).is_some());
        drop(a);
        assert!(l.try_acquire("u", 2).is_some());
    }
}
