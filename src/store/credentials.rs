//! Password hashing (argon2id) and a short-lived cache of verified credentials.
//!
//! argon2 is slow on purpose, too slow to pay on every request. The cache remembers that a given
//! user name and password matched a given stored hash. It is consulted only after the user's row
//! has been read, and only if the stored hash is still the one verified against: so a wrong
//! password never matches (its fingerprint differs), and `user passwd` (new hash) or `user remove`
//! (no row) take effect on the very next request, even when run from another process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, phc::PasswordHash};
use sha2::Digest;

use super::StoreError;

/// Hashes a password with argon2id and a random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, StoreError> {
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| StoreError::Hash(e.to_string()))
}

/// A hash no password matches, checked for users that do not exist (same cost as a real one).
fn unknown_user_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password(&crate::random::random_secret(16)).unwrap_or_default())
}

/// Whether `password` matches the PHC string `hash`.
///
/// argon2's own verifier allocates its 19 MiB working memory afresh on every call, and the
/// allocator kept it: a server's memory grew by several MiB with each login (measured with
/// herald-load, BENCHMARKS.md). Each thread keeps one buffer and reuses it instead; argon2 writes
/// every block before reading it, so reuse is safe.
pub fn verify_password(password: &str, hash: &str) -> bool {
    use argon2::{Algorithm, Argon2, Block, Params, Version};
    use std::cell::RefCell;
    thread_local! {
        static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
    }
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let (Ok(params), Ok(algorithm)) = (
        Params::try_from(&parsed),
        Algorithm::try_from(parsed.algorithm.as_str()),
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    let expected: &[u8] = expected.as_ref();
    let mut computed = vec![0u8; expected.len()];
    let blocks = params.block_count();
    let argon = Argon2::new(algorithm, version, params);
    let hashed = MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < blocks {
            memory.resize(blocks, Block::new());
        }
        argon.hash_password_into_with_memory(
            password.as_bytes(),
            salt.as_ref(),
            &mut computed,
            &mut memory[..blocks],
        )
    });
    // Constant time: every byte is compared whatever the first difference.
    hashed.is_ok()
        && computed
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

const MAX_ENTRIES: usize = 10_000;

/// Remembers recent successful password checks.
pub struct CredentialCache {
    /// A per-process random key, so the fingerprints in memory are no fast hash of the password.
    key: [u8; 32],
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], (String, Instant)>>,
}

impl CredentialCache {
    /// A cache whose entries live `ttl` (zero disables it).
    pub fn new(ttl: Duration) -> Self {
        use rand::RngCore;
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        CredentialCache {
            key,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn fingerprint(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = sha2::Sha256::new();
        h.update(self.key);
        h.update((user.len() as u64).to_be_bytes());
        h.update(user.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Checks `password` for `user` against the stored `hash`, from the cache when it can.
    pub fn verify(&self, user: &str, password: &str, hash: &str) -> bool {
        let fp = self.fingerprint(user, password);
        if let Ok(entries) = self.entries.lock()
            && let Some((verified_hash, at)) = entries.get(&fp)
            && verified_hash == hash
            && at.elapsed() < self.ttl
        {
            return true;
        }
        if !verify_password(password, hash) {
            return false;
        }
        if !self.ttl.is_zero()
            && let Ok(mut entries) = self.entries.lock()
        {
            if entries.len() >= MAX_ENTRIES {
                let ttl = self.ttl;
                entries.retain(|_, (_, at)| at.elapsed() < ttl);
                if entries.len() >= MAX_ENTRIES {
                    entries.clear();
                }
            }
            entries.insert(fp, (hash.to_owned(), Instant::now()));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_never_accepts_a_wrong_password_and_follows_the_stored_hash() {
        let cache = CredentialCache::new(Duration::from_secs(60));
        let hash = hash_password("right").unwrap();
        assert!(cache.verify("u", "right", &hash));
        assert!(cache.verify("u", "right", &hash), "cached");
        assert!(!cache.verify("u", "wrong", &hash));
        assert!(!cache.verify("v", "right", &hash) || verify_password("right", &hash));
        assert!(verify_password("right", &hash) && !verify_password("right ", &hash));
        assert!(!verify_password("right", "not a phc string"));
        let new_hash = hash_password("other").unwrap();
        assert!(
            !cache.verify("u", "right", &new_hash),
            "a changed hash invalidates the entry"
        );
        assert!(cache.verify("u", "other", &new_hash));
    }
}

/// Credentials as presented in an `Authorization` header.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic { user: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { user, .. } => write!(f, "Basic({user}, <password>)"),
            Credentials::Bearer(_) => f.write_str("Bearer(<token>)"),
        }
    }
}

/// Checks credentials and loads the user's principal: who they are and which accounts they may use.
/// `Ok(None)` means the credentials are wrong (or the user or token no longer exists).
pub fn authenticate(
    conn: &mut super::AnyConnection,
    cache: &CredentialCache,
    credentials: &Credentials,
) -> Result<Option<crate::jmap::session::Principal>, StoreError> {
    use super::accounts::{UserKey, user_with_access};
    // The user and their accounts in one query: this runs for every API request.
    let mut token_hash = None;
    let mut password_stamp = None;
    let (user, accounts) = match credentials {
        Credentials::Basic { user, password } => {
            match user_with_access(conn, UserKey::Name(user))? {
                Some((row, accounts)) if cache.verify(user, password, &row.password_hash) => {
                    password_stamp = Some(password_stamp_of(&row.password_hash));
                    (row, accounts)
                }
                Some(_) => return Ok(None),
                None => {
                    // As long as a wrong password: the answer's time must not tell which user
                    // names exist.
                    verify_password(password, unknown_user_hash());
                    return Ok(None);
                }
            }
        }
        Credentials::Bearer(token) => {
            let Some(hash) = super::tokens::secret_hash_of(token) else {
                return Ok(None);
            };
            match user_with_access(conn, UserKey::TokenHash(&hash))? {
                Some(found) => {
                    token_hash = Some(hash);
                    found
                }
                None => return Ok(None),
            }
        }
    };
    Ok(Some(crate::jmap::session::Principal {
        user_id: user.id,
        username: user.name,
        accounts,
        token_hash,
        password_stamp,
    }))
}

/// The password stamps ([`password_stamp_of`]) of `user_ids` as stored now; users that are gone
/// are left out.
pub fn password_stamps(
    conn: &mut super::AnyConnection,
    user_ids: &[String],
) -> Result<HashMap<String, String>, StoreError> {
    use super::schema::users;
    use diesel::prelude::*;
    let mut out = HashMap::new();
    for chunk in user_ids.chunks(500) {
        let rows: Vec<(String, String)> = users::table
            .filter(users::id.eq_any(chunk))
            .select((users::id, users::password_hash))
            .load(conn)?;
        out.extend(
            rows.into_iter()
                .map(|(id, hash)| (id, password_stamp_of(&hash))),
        );
    }
    Ok(out)
}

/// What [`crate::jmap::session::Principal::password_stamp`] holds for a stored password hash.
pub fn password_stamp_of(password_hash: &str) -> String {
    super::sha256_hex(password_hash.as_bytes())
}

/// `principal` as it stands now, for a connection that authenticated once and runs requests
/// for as long as it lives (a WebSocket, RFC 8887 §4.2): its user's current accounts and access,
/// or `None` once the token it used is revoked, the password it used changed, or the user is
/// gone.
pub fn current(
    conn: &mut super::AnyConnection,
    principal: &crate::jmap::session::Principal,
) -> Result<Option<crate::jmap::session::Principal>, StoreError> {
    use super::accounts::{UserKey, user_with_access};
    let key = match &principal.token_hash {
        Some(hash) => UserKey::TokenHash(hash),
        None => UserKey::Id(&principal.user_id),
    };
    let Some((user, accounts)) = user_with_access(conn, key)? else {
        return Ok(None);
    };
    let password_kept = principal
        .password_stamp
        .as_ref()
        .is_none_or(|stamp| *stamp == password_stamp_of(&user.password_hash));
    if user.id != principal.user_id || !password_kept {
        return Ok(None);
    }
    Ok(Some(crate::jmap::session::Principal {
        accounts,
        ..principal.clone()
    }))
}
