//! Which store backend the current test runs on.
//!
//! A test marked `#[on_both_backends]` (crate `herald-test-macros`) runs twice, as
//! `name::on_sqlite` and `name::on_postgresql`; each run selects its backend here, for its own
//! thread (every test runs on a thread of its own, and `actix_web::test` starts a System on it),
//! and `TestServer::start` and [`fresh_store_url`] open their store on it. Tests without the
//! attribute run on SQLite.

use std::cell::Cell;
use std::path::Path;

use super::pg;

/// A store backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Bundled SQLite, a file in the test's temp dir.
    Sqlite,
    /// A fresh database in this test binary's throwaway PostgreSQL cluster (`pg::cluster`).
    Postgresql,
}

thread_local! {
    static SELECTED: Cell<Backend> = const { Cell::new(Backend::Sqlite) };
}

/// The backend of the test running on this thread.
pub fn current() -> Backend {
    SELECTED.with(Cell::get)
}

/// A URL for a new, empty store on the current backend; a SQLite file goes into `dir`.
pub fn fresh_store_url(dir: &Path) -> String {
    match current() {
        Backend::Sqlite => format!("sqlite://{}", dir.join("herald.db").display()),
        Backend::Postgresql => pg::cluster().fresh_database(),
    }
}

/// Selects `backend` for this thread until dropped, then restores the previous choice (libtest
/// runs tests on the main thread when it runs one at a time).
struct Selected(Backend);

impl Selected {
    /// Selects `backend`; PostgreSQL's cluster is started (or its absence reported) here.
    fn new(backend: Backend) -> Selected {
        if backend == Backend::Postgresql {
            pg::cluster();
        }
        Selected(SELECTED.with(|s| s.replace(backend)))
    }
}

impl Drop for Selected {
    fn drop(&mut self) {
        SELECTED.with(|s| s.set(self.0));
    }
}

/// Runs an async test on `backend` (what `#[on_both_backends]` generates for an `async fn`).
pub async fn run<F: Future<Output = ()>>(backend: Backend, test: impl FnOnce() -> F) {
    let _selected = Selected::new(backend);
    test().await;
}

/// Runs a blocking test on `backend` (what `#[on_both_backends]` generates for a plain `fn`).
pub fn run_blocking(backend: Backend, test: impl FnOnce()) {
    let _selected = Selected::new(backend);
    test();
}
