//! Hands memory that the allocator keeps after a burst back to the operating system.
//!
//! glibc's malloc keeps freed memory in its arenas (one per thread that allocated, up to 8 per
//! core) and returns only the top of each heap. After a burst of large requests (40 JSON
//! requests of 6.5 MB on the default dispatcher threads) the server's RSS stayed at 727–871 MB
//! with almost all of it free; `malloc_trim(0)` brought it back to 46 MB (BENCHMARKS.md,
//! "Memory after a burst"). `MALLOC_ARENA_MAX=2` and `MALLOC_TRIM_THRESHOLD_` did not help, so
//! one thread per process trims every `server.memory_trim_secs`: it walks the arenas' free lists,
//! which costs little when there is nothing to give back.

use std::sync::Once;
use std::time::Duration;

static STARTED: Once = Once::new();

/// Starts the process's trimming thread (once, whatever the number of nodes in the process);
/// `every` zero disables it. Only glibc has `malloc_trim`; elsewhere this does nothing.
pub fn start(every: Duration) {
    if every.is_zero() || !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("memory-trim".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    trim();
                }
            });
        if let Err(e) = spawned {
            log::warn!("memory trim: cannot start its thread: {e}");
        }
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only releases free memory of the allocator's own arenas; it takes the
    // arenas' locks and is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
