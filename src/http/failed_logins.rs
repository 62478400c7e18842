//! Failed logins per client address: past `auth.max_failed_logins_per_minute` in a minute, the
//! address gets `429` without its credentials being checked.
//!
//! Each check of a wrong password costs an argon2 hash (about 20 ms of a core) on the
//! dispatcher's threads, which run everyone's requests: sixteen connections guessing passwords
//! took a logged-in user's `Core/echo` from 1 ms to 114–185 ms (a reviewer's measurement). The
//! guard bounds that work per address, and makes guessing slow.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window failures are counted in.
const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most: beyond it, windows that ended are forgotten first, then all.
const MAX_ADDRESSES: usize = 65_536;

/// Failed logins per address in the current window.
#[derive(Debug)]
pub struct FailedLogins {
    limit: u32,
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl FailedLogins {
    /// A guard allowing `limit` failures per address and minute; 0 disables it.
    pub fn new(limit: u32) -> Self {
        FailedLogins {
            limit,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// How long `address` must wait before its credentials are checked again, if it must.
    pub fn wait(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        if self.limit == 0 {
            return None;
        }
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let (start, failures) = windows.get(&address)?;
        let ends = *start + WINDOW;
        (*failures >= self.limit && now < ends).then(|| ends - now)
    }

    /// Counts a failed login from `address`. The failure that reaches the limit is logged, as a
    /// warning naming the address, once per address and window (the refusals that follow are
    /// not): one line a tool such as fail2ban can act on, however hard the address keeps trying.
    /// Returns whether it was this one.
    pub fn failed(&self, address: IpAddr, now: Instant) -> bool {
        if self.limit == 0 {
            return false;
        }
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= MAX_ADDRESSES && !windows.contains_key(&address) {
            windows.retain(|_, (start, _)| now < *start + WINDOW);
            if windows.len() >= MAX_ADDRESSES {
                windows.clear();
            }
        }
        let entry = windows.entry(address).or_insert((now, 0));
        if now >= entry.0 + WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
        let starts_refusing = entry.1 == self.limit;
        drop(windows);
        if starts_refusing {
            log::warn!(
                "too many failed logins from {address}: {} within a minute; refused (429) until the minute ends",
                self.limit
            );
        }
        starts_refusing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_past_its_failures_waits_for_the_window_to_end_and_others_do_not() {
        let guard = FailedLogins::new(3);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        for n in 1..=3 {
            assert_eq!(guard.wait(a, t0), None);
            assert_eq!(
                guard.failed(a, t0),
                n == 3,
                "logged when it starts refusing"
            );
        }
        assert!(!guard.failed(a, t0), "and not again in the same window");
        let wait = guard.wait(a, t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(wait, Duration::from_secs(50));
        assert_eq!(guard.wait(b, t0), None, "per address");
        assert_eq!(guard.wait(a, t0 + WINDOW), None, "a new window");
        assert!(!guard.failed(a, t0 + WINDOW));
        assert_eq!(guard.wait(a, t0 + WINDOW), None, "counted afresh");
        assert_eq!(FailedLogins::new(0).wait(a, t0), None);
    }
}
