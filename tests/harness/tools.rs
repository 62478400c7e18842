//! Tools from outside Rust that some tests need (PostgreSQL, Chromium, Postfix).
//!
//! `scripts/test` installs them; a test run without one of them fails with one line naming it,
//! never passes silently.

/// The panic message of a test that cannot run because `tool` is not installed.
pub fn missing(tool: &str, debian_package: &str) -> String {
    format!(
        "this test needs {tool}: run `scripts/test`, which installs what is missing, \
         or `apt-get install {debian_package}`"
    )
}
