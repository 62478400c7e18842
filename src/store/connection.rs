//! One connection type for both backends, and the pool that hands them out.
//!
//! `AnyConnection` is a Diesel `MultiConnection`, so queries are written once. We establish it
//! ourselves, by URL scheme, because the derived `establish` tries each backend in turn and reports
//! only "invalid connection url", hiding PostgreSQL's real error (../shared/STACK.md, pitfall 16).

use diesel::connection::SimpleConnection;
use diesel::migration::MigrationSource;
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use super::StoreError;
use crate::config::redact::{redact_message, redact_password};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// A connection to either backend.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    Postgresql(diesel::PgConnection),
    Sqlite(diesel::SqliteConnection),
}

/// Which database a store URL names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreUrl {
    /// A file path for bundled SQLite.
    Sqlite(String),
    /// A libpq connection URL.
    Postgres(String),
}

impl StoreUrl {
    /// Parses `sqlite://PATH`, `sqlite:PATH`, `postgres://…` or `postgresql://…`.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            if path.is_empty() {
                return Err(StoreError::BadUrl(redact_password(url)));
            }
            Ok(StoreUrl::Sqlite(path.to_owned()))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(StoreUrl::Postgres(url.to_owned()))
        } else {
            Err(StoreError::BadUrl(redact_password(url)))
        }
    }

    /// Whether this is the embedded SQLite backend.
    pub fn is_sqlite(&self) -> bool {
        matches!(self, StoreUrl::Sqlite(_))
    }
}

impl std::fmt::Display for StoreUrl {
    /// The URL as it may be printed or logged: without its password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreUrl::Sqlite(path) => f.write_str(&redact_password(&format!("sqlite://{path}"))),
            StoreUrl::Postgres(url) => f.write_str(&redact_password(url)),
        }
    }
}

/// What [`migrate`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Migrated {
    /// The store had no migration: it was created.
    Created,
    /// This many migrations were applied to an existing store.
    Applied(usize),
    /// Nothing was pending.
    UpToDate,
}

impl Migrated {
    fn of(applied: usize, total: usize) -> Migrated {
        match applied {
            0 => Migrated::UpToDate,
            n if n == total => Migrated::Created,
            n => Migrated::Applied(n),
        }
    }
}

/// The most page cache one SQLite connection keeps, in KiB: at most this times the pool size in
/// all (`store.pool_size`; docs/operating.md).
const SQLITE_CACHE_KIB: u32 = 32 * 1024;

/// Opens one connection and sets its per-connection options.
pub fn establish(url: &StoreUrl) -> Result<AnyConnection, StoreError> {
    match url {
        StoreUrl::Sqlite(path) => {
            create_private(std::path::Path::new(path))
                .map_err(|e| StoreError::Io(path.clone(), e))?;
            // Before opening: the connection then waits for the write lock by commits, not
            // sleeps (`sqlite_wait`).
            let waits_for_commits = super::sqlite_wait::install();
            let mut conn = diesel::SqliteConnection::establish(path)
                .map_err(|e| StoreError::Connect(e.to_string()))?;
            // WAL lets readers run beside the one writer; foreign keys are off by default in SQLite.
            // The page cache is SQLITE_CACHE_KIB per connection (grown as pages are read, 2 MiB
            // by default): an import touches more index pages than 2 MiB per transaction, and
            // with 2 MiB it read them again from the OS (12 % of its time in `pread`; 32 MiB made
            // it 27 % faster, BENCHMARKS.md).
            conn.batch_execute(&format!(
                "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                 PRAGMA cache_size = -{SQLITE_CACHE_KIB};"
            ))?;
            if waits_for_commits {
                conn.batch_execute(super::sqlite_wait::HOOK_COMMITS_SQL)?;
            } else {
                // `busy_timeout` replaces the connection's busy handler, so only without ours.
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = {};",
                    super::sqlite_wait::WAIT_LIMIT.as_millis()
                ))?;
            }
            Ok(AnyConnection::Sqlite(conn))
        }
        StoreUrl::Postgres(url) => {
            // The driver's message may repeat the URL, password and all.
            let mut conn = diesel::PgConnection::establish(url)
                .map_err(|e| StoreError::Connect(redact_message(url, &e.to_string())))?;
            // JIT compiles a query the planner thinks costly, which takes 10–50 ms: more than
            // any of Herald's queries runs (a search over a million messages: 12 ms of 245 were
            // compiling, BENCHMARKS.md).
            conn.batch_execute("SET jit = off")?;
            Ok(AnyConnection::Postgresql(conn))
        }
    }
}

/// Creates the SQLite file at `path` and its directory, if missing, readable by Herald's user
/// alone: the store holds password hashes and everyone's mail, and the umask would make both
/// world-readable. The file is created empty, as SQLite would, so that the `-wal` and `-shm`
/// files SQLite makes beside it take its mode. What exists already is left as it is.
fn create_private(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let name = path.as_os_str().to_string_lossy();
    // `:memory:` and `file:` URIs are SQLite's, not paths.
    if name.starts_with(':') || name.starts_with("file:") {
        return Ok(());
    }
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match created {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// Creates the database if needed and applies every pending migration.
///
/// SQLite: WAL is switched on here, once, before a pool exists; doing it in every pooled
/// connection raced at start-up (pitfall 8). PostgreSQL: an advisory lock makes nodes that start
/// together migrate one after the other.
pub fn migrate(url: &StoreUrl) -> Result<Migrated, StoreError> {
    let mut conn = establish(url)?;
    let migration_error =
        |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Migration(e.to_string());
    let (applied, total) = match &mut conn {
        AnyConnection::Sqlite(c) => {
            c.batch_execute("PRAGMA journal_mode = WAL;")?;
            let total = MigrationSource::<diesel::sqlite::Sqlite>::migrations(&SQLITE_MIGRATIONS)
                .map_err(migration_error)?
                .len();
            let applied = c
                .run_pending_migrations(SQLITE_MIGRATIONS)
                .map_err(migration_error)?;
            (applied.len(), total)
        }
        AnyConnection::Postgresql(c) => {
            let total = MigrationSource::<diesel::pg::Pg>::migrations(&POSTGRES_MIGRATIONS)
                .map_err(migration_error)?
                .len();
            c.batch_execute("SELECT pg_advisory_lock(7266102105)")?;
            let result = c
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(|applied| applied.len())
                .map_err(migration_error);
            c.batch_execute("SELECT pg_advisory_unlock(7266102105)")?;
            (result?, total)
        }
    };
    Ok(Migrated::of(applied, total))
}

/// r2d2 manager that establishes connections by URL scheme.
#[derive(Clone, Debug)]
pub struct ConnectionManager {
    url: StoreUrl,
}

impl ConnectionManager {
    pub fn new(url: StoreUrl) -> Self {
        ConnectionManager { url }
    }
}

impl ManageConnection for ConnectionManager {
    type Connection = AnyConnection;
    type Error = StoreError;

    fn connect(&self) -> Result<AnyConnection, StoreError> {
        establish(&self.url)
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), StoreError> {
        conn.batch_execute("SELECT 1").map_err(StoreError::from)
    }

    fn has_broken(&self, _conn: &mut AnyConnection) -> bool {
        false
    }
}

/// A pool of connections to one store.
pub type Pool = r2d2::Pool<ConnectionManager>;
/// A connection borrowed from the pool.
pub type PooledConnection = r2d2::PooledConnection<ConnectionManager>;
