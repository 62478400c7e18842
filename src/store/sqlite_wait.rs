//! How a SQLite connection waits for the database's write lock.
//!
//! SQLite lets one connection write at a time. Its own waiting (`PRAGMA busy_timeout`) sleeps
//! 1, 2, 5, 10, 15, 20… ms between attempts, so a write that found another one committing
//! waited at least a millisecond and often ten, while the other write held the lock for a
//! fraction of that: with four dispatcher threads and the webhook sender writing, that made the
//! tail of every write request (BENCHMARKS.md, "Writers spread over time, and write requests
//! that wait for a commit").
//!
//! Every SQLite connection this process opens (registered once, with
//! `sqlite3_auto_extension`) instead:
//! - is told when any connection of the process has committed: the WAL hook runs after a
//!   commit has released the lock, and wakes the waiters;
//! - waits for that, or at most a short poll interval (writers of other processes, a rolled
//!   back write), before trying again, up to [`WAIT_LIMIT`] in all as `busy_timeout` did.
//!
//! SQLite sets its automatic checkpoint as the WAL hook at the end of opening, after the
//! extensions ran, so the hook is set by a function the extension registers and
//! [`connection::establish`](super::connection::establish) calls once opened
//! ([`HOOK_COMMITS_SQL`]). It replaces the automatic checkpoint, so it also checkpoints as that
//! did (passively, once the log holds [`AUTOCHECKPOINT_PAGES`] pages).

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use libsqlite3_sys as ffi;

/// How long a connection waits for the write lock before its statement fails with "database is
/// locked" (what `busy_timeout = 10000` gave).
pub const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// SQLite's default `wal_autocheckpoint`: a passive checkpoint once the log holds this many pages.
const AUTOCHECKPOINT_PAGES: c_int = 1000;

/// The longest a waiter sleeps between attempts without a commit in this process waking it,
/// by attempt: short first (a rollback releases the lock without the hook), then 1 ms for
/// writers in other processes, which cannot wake it.
const POLL_STEPS: [Duration; 5] = [
    Duration::from_micros(50),
    Duration::from_micros(100),
    Duration::from_micros(250),
    Duration::from_micros(500),
    Duration::from_millis(1),
];

/// Commits of this process, counted, and the connections waiting for the next one.
struct Commits {
    count: Mutex<u64>,
    changed: Condvar,
    waiters: AtomicUsize,
}

/// Waits for the write lock begun by this process's connections (one per statement that found
/// the lock taken, however many attempts it made).
static WAITS_BEGUN: AtomicU64 = AtomicU64::new(0);

/// How many times a connection of this process has had to wait for the write lock (a metric).
pub fn waits_begun() -> u64 {
    WAITS_BEGUN.load(Ordering::Relaxed)
}

static COMMITS: Commits = Commits {
    count: Mutex::new(0),
    changed: Condvar::new(),
    waiters: AtomicUsize::new(0),
};

thread_local! {
    /// When this thread's current wait for the lock began (a thread waits on one statement at a
    /// time; SQLite counts the attempts from 0 for each wait).
    static WAITING_SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Makes every SQLite connection opened from now on wait for commits as described above.
/// Idempotent; call before opening a connection. False if SQLite refused, and the caller should
/// set `busy_timeout` instead.
pub fn install() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| {
        // SAFETY: `on_open` has the signature SQLite calls an extension entry point with, and
        // registering an entry point has no other precondition.
        let rc = unsafe { ffi::sqlite3_auto_extension(Some(on_open)) };
        if rc != ffi::SQLITE_OK {
            log::warn!("SQLite: cannot register the lock waiting ({rc}); using busy_timeout");
        }
        rc == ffi::SQLITE_OK
    })
}

/// Run once on a connection opened after [`install`]: makes its commits wake the waiters.
pub const HOOK_COMMITS_SQL: &str = "SELECT herald_hook_commits()";

/// Runs for every new connection, inside `sqlite3_open`.
unsafe extern "C" fn on_open(
    db: *mut ffi::sqlite3,
    _error: *mut *mut c_char,
    _api: *const ffi::sqlite3_api_routines,
) -> c_int {
    // SAFETY: `db` is the connection being opened, valid for this call; the callbacks take no
    // argument and live for the whole program; the name is a NUL-terminated literal.
    unsafe {
        ffi::sqlite3_busy_handler(db, Some(on_busy), std::ptr::null_mut());
        ffi::sqlite3_create_function_v2(
            db,
            c"herald_hook_commits".as_ptr(),
            0,
            ffi::SQLITE_UTF8 | ffi::SQLITE_DIRECTONLY,
            std::ptr::null_mut(),
            Some(hook_commits),
            None,
            None,
            None,
        )
    }
}

/// `herald_hook_commits()`: sets the calling connection's WAL hook to [`on_commit`].
unsafe extern "C" fn hook_commits(
    context: *mut ffi::sqlite3_context,
    _argc: c_int,
    _argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: `context` is the call's, valid for this call, and names its connection; setting
    // a hook only stores the callback, which lives for the whole program.
    unsafe {
        let db = ffi::sqlite3_context_db_handle(context);
        ffi::sqlite3_wal_hook(db, Some(on_commit), std::ptr::null_mut());
        ffi::sqlite3_result_null(context);
    }
}

/// SQLite's busy handler: nonzero to try again, zero to give up ("database is locked").
unsafe extern "C" fn on_busy(_: *mut c_void, attempts: c_int) -> c_int {
    let now = Instant::now();
    let since = WAITING_SINCE.with(|s| {
        let since = match s.get() {
            Some(since) if attempts > 0 => since,
            _ => now,
        };
        s.set(Some(since));
        since
    });
    if attempts == 0 {
        WAITS_BEGUN.fetch_add(1, Ordering::Relaxed);
    }
    if now.duration_since(since) >= WAIT_LIMIT {
        return 0;
    }
    let step = POLL_STEPS[usize::try_from(attempts)
        .unwrap_or(0)
        .min(POLL_STEPS.len() - 1)];
    wait_for_commit(step);
    1
}

/// Sleeps until a connection of this process commits, or `at_most`.
fn wait_for_commit(at_most: Duration) {
    COMMITS.waiters.fetch_add(1, Ordering::SeqCst);
    let count = COMMITS.count.lock().unwrap_or_else(PoisonError::into_inner);
    let seen = *count;
    let _ = COMMITS
        .changed
        .wait_timeout_while(count, at_most, |c| *c == seen)
        .unwrap_or_else(PoisonError::into_inner);
    COMMITS.waiters.fetch_sub(1, Ordering::SeqCst);
}

/// SQLite's WAL hook: runs after a commit, once the write lock is released.
unsafe extern "C" fn on_commit(
    _: *mut c_void,
    db: *mut ffi::sqlite3,
    schema: *const c_char,
    pages: c_int,
) -> c_int {
    if pages >= AUTOCHECKPOINT_PAGES {
        // What SQLite's own hook does; a checkpoint that cannot finish now (readers) is retried
        // at a later commit.
        // SAFETY: `db` and `schema` are the committing connection and its schema name, valid
        // for this call, which SQLite allows to checkpoint.
        unsafe {
            ffi::sqlite3_wal_checkpoint(db, schema);
        }
    }
    if COMMITS.waiters.load(Ordering::SeqCst) > 0 {
        let mut count = COMMITS.count.lock().unwrap_or_else(PoisonError::into_inner);
        *count += 1;
        COMMITS.changed.notify_all();
    }
    ffi::SQLITE_OK
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::sql_types::BigInt;
    use diesel::{QueryableByName, RunQueryDsl};

    use crate::store::AnyConnection;
    use crate::store::connection::{StoreUrl, establish};

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }

    fn open(path: &std::path::Path) -> diesel::SqliteConnection {
        let url = StoreUrl::Sqlite(path.display().to_string());
        match establish(&url).unwrap() {
            AnyConnection::Sqlite(c) => c,
            AnyConnection::Postgresql(_) => unreachable!("a sqlite URL"),
        }
    }

    #[test]
    fn a_write_waits_for_the_writer_that_holds_the_lock_instead_of_failing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let mut holder = open(&path);
        holder
            .batch_execute("PRAGMA journal_mode = WAL; CREATE TABLE t (n INTEGER);")
            .unwrap();
        holder
            .batch_execute("BEGIN IMMEDIATE; INSERT INTO t VALUES (1);")
            .unwrap();
        let before = super::waits_begun();
        let waiter = std::thread::spawn({
            let path = path.clone();
            // Blocks in the busy handler until the holder commits.
            move || open(&path).batch_execute("INSERT INTO t VALUES (2);")
        });
        // Commit only once a connection waits (tests running beside this one may wait too,
        // which at worst lets this commit come early; it never makes the test pass wrongly).
        while super::waits_begun() == before {
            std::thread::yield_now();
        }
        holder.batch_execute("COMMIT;").unwrap();
        waiter.join().unwrap().unwrap();
        let count: Count = diesel::sql_query("SELECT COUNT(*) AS n FROM t")
            .get_result(&mut holder)
            .unwrap();
        assert_eq!(count.n, 2);
    }

    #[test]
    fn the_write_ahead_log_is_still_checkpointed_as_it_grows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let mut conn = open(&path);
        conn.batch_execute("PRAGMA journal_mode = WAL; CREATE TABLE t (b BLOB);")
            .unwrap();
        // 4,000 pages of 4 KiB in 400 commits: four times what triggers a checkpoint. Once
        // checkpointed, the log is written again from its start, so it stays near 1,000 pages.
        for _ in 0..400 {
            conn.batch_execute("INSERT INTO t VALUES (randomblob(40000));")
                .unwrap();
        }
        let wal = std::fs::metadata(dir.path().join("c.db-wal"))
            .unwrap()
            .len();
        assert!(wal < 8 * 1024 * 1024, "the log grew to {wal} bytes");
    }
}
