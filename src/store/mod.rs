//! The Diesel store: one schema for SQLite and PostgreSQL, and the change log every write goes
//! through.
//!
//! Everything here is synchronous (Diesel is); async code reaches the store through the
//! `Dispatcher` actor pool or, for the command line, directly.

pub mod access_epoch;
pub mod accounts;
pub mod addresses;
pub mod auto_reply;
pub mod batch_insert;
pub mod blobs;
pub mod changelog;
pub mod connection;
pub mod context;
pub mod credentials;
pub mod delivery;
pub mod durable;
pub mod email;
pub mod email_query;
pub mod email_search;
pub mod first_row;
pub mod identity;
pub mod log_head;
pub mod mailbox;
pub mod mailbox_counts;
mod method_error;
pub mod push_subscription;
pub mod query_sql;
pub mod schema;
pub mod secrets;
pub mod snapshot;
pub mod sqlite_wait;
pub mod static_sql;
pub mod submission;
pub mod submission_outbox;
pub mod tickets;
pub mod tokens;
pub mod users;
pub mod vacation;
pub mod webhook_outbox;

use std::time::Duration;

pub use changelog::{ChangeOp, Committed, WriteTxn, write};
pub use connection::{AnyConnection, Migrated, Pool, PooledConnection, StoreUrl};
pub use context::StoreContext;

/// Errors of the store layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store URL {0:?} is not sqlite://PATH or postgres://…")]
    BadUrl(String),
    #[error("cannot create {0}: {1}")]
    Io(String, std::io::Error),
    #[error("cannot connect to the store: {0}")]
    Connect(String),
    #[error("cannot migrate the store: {0}")]
    Migration(String),
    #[error("store pool: {0}")]
    Pool(String),
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    Invalid(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// A handle on the database: the URL it came from and a connection pool.
#[derive(Clone)]
pub struct Store {
    url: StoreUrl,
    pool: Pool,
}

impl Store {
    /// Creates and migrates the store if needed, then opens a pool of `pool_size` connections.
    pub fn open(url: &str, pool_size: u32) -> Result<Store, StoreError> {
        let url = StoreUrl::parse(url)?;
        connection::migrate(&url)?;
        let pool = Pool::builder()
            .max_size(pool_size.max(1))
            // A PostgreSQL connection can die with its server; an embedded SQLite one cannot, and
            // the check (`SELECT 1` per checkout) was a measurable share of a small request.
            .test_on_check_out(!url.is_sqlite())
            .connection_timeout(Duration::from_secs(30))
            .build(connection::ConnectionManager::new(url.clone()))
            .map_err(|e| StoreError::Pool(e.to_string()))?;
        Ok(Store { url, pool })
    }

    /// Borrows a connection.
    pub fn conn(&self) -> Result<PooledConnection, StoreError> {
        let started = std::time::Instant::now();
        let conn = self.pool.get().map_err(|e| StoreError::Pool(e.to_string()));
        if let Some(observe) = POOL_WAIT_OBSERVER.get() {
            observe(started.elapsed());
        }
        conn
    }

    /// Connections the pool holds, and how many of them are idle.
    pub fn pool_state(&self) -> (u32, u32) {
        let state = self.pool.state();
        (state.connections, state.idle_connections)
    }

    /// The URL this store was opened with.
    pub fn url(&self) -> &StoreUrl {
        &self.url
    }
}

/// Hears how long each [`Store::conn`] waited for the pool (the metrics, set at start); the store
/// does not know who listens.
static POOL_WAIT_OBSERVER: std::sync::OnceLock<fn(std::time::Duration)> =
    std::sync::OnceLock::new();

/// Sets what hears pool waits; the first call wins.
pub fn observe_pool_waits(observe: fn(std::time::Duration)) {
    let _ = POOL_WAIT_OBSERVER.set(observe);
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub use crate::jmap::args::new_id;

pub use crate::random::random_secret;

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(data);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}
