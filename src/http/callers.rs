//! Who an `Authorization` header belonged to the last time it was checked.
//!
//! An API request needs its user before its body is read, to take one of the user's
//! `maxConcurrentRequests` slots (RFC 8620 §3.6.1), and the credentials must be checked against the
//! store on every request, so that a changed password, a removed user or a revoked token takes
//! effect at once. Doing both in two dispatcher round trips cost about a fifth of a small request's
//! time in context switches (BENCHMARKS.md, profile of `Core/echo`). So the HTTP side remembers
//! which user a header authenticated as; a request whose header is remembered takes that user's
//! slot and sends its credentials along with the request, and the dispatcher checks them in the same
//! round trip that runs the request. A remembered header is only a hint for slot accounting: it
//! never lets a request run without its credentials being checked.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::Digest;

/// How many headers are remembered at most; past that the memory starts afresh.
const MAX_ENTRIES: usize = 10_000;

/// Remembered `Authorization` headers and the user each authenticated as.
pub struct CallerHints {
    /// A per-process random key, so the fingerprints held are no fast hash of a password.
    key: [u8; 32],
    users: Mutex<HashMap<[u8; 32], String>>,
}

impl Default for CallerHints {
    fn default() -> Self {
        use rand::RngCore;
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        CallerHints {
            key,
            users: Mutex::new(HashMap::new()),
        }
    }
}

impl CallerHints {
    fn fingerprint(&self, header: &[u8]) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        h.update(self.key);
        h.update(header);
        h.finalize().into()
    }

    /// The user `header` authenticated as when last checked, if remembered.
    pub fn user_of(&self, header: &[u8]) -> Option<String> {
        let fp = self.fingerprint(header);
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fp)
            .cloned()
    }

    /// Remembers that `header` authenticated as `user_id`.
    pub fn remember(&self, header: &[u8], user_id: &str) {
        let fp = self.fingerprint(header);
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if users.len() >= MAX_ENTRIES {
            users.clear();
        }
        users.insert(fp, user_id.to_owned());
    }

    /// Forgets `header` (its credentials no longer authenticate).
    pub fn forget(&self, header: &[u8]) {
        let fp = self.fingerprint(header);
        self.users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_is_remembered_until_forgotten_and_others_are_unknown() {
        let hints = CallerHints::default();
        assert_eq!(hints.user_of(b"Basic YTpi"), None);
        hints.remember(b"Basic YTpi", "u1");
        assert_eq!(hints.user_of(b"Basic YTpi").as_deref(), Some("u1"));
        assert_eq!(hints.user_of(b"Basic YTpj"), None);
        hints.forget(b"Basic YTpi");
        assert_eq!(hints.user_of(b"Basic YTpi"), None);
    }

    #[test]
    fn the_memory_is_bounded() {
        let hints = CallerHints::default();
        for i in 0..MAX_ENTRIES + 5 {
            hints.remember(format!("Bearer {i}").as_bytes(), "u");
        }
        assert!(hints.users.lock().unwrap().len() <= MAX_ENTRIES);
    }
}
