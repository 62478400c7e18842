//! The process's logger: env_logger (`RUST_LOG`, default `info`), with one correction.
//!
//! actix-http logs every request it cannot parse at ERROR ("stream error: …"), so anyone who can
//! reach the port can fill an operator's error log with garbage. Such lines are about the peer,
//! not the server: they are passed on at DEBUG.

use log::{Level, Log, Metadata, Record};

/// Installs the logger; call once, first thing.
pub fn init() {
    let inner =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    let max = inner.filter();
    if log::set_boxed_logger(Box::new(PeerErrorsAsDebug { inner })).is_ok() {
        log::set_max_level(max);
    }
}

struct PeerErrorsAsDebug {
    inner: env_logger::Logger,
}

/// Whether `record` is actix-http's complaint about what a peer sent.
fn is_peer_error(record: &Record) -> bool {
    record.level() == Level::Error
        && record.target().starts_with("actix_http::h1")
        && record.args().to_string().starts_with("stream error")
}

impl Log for PeerErrorsAsDebug {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.inner.enabled(metadata)
    }

    fn log(&self, record: &Record) {
        if !is_peer_error(record) {
            return self.inner.log(record);
        }
        let demoted = Record::builder()
            .level(Level::Debug)
            .target(record.target())
            .args(*record.args())
            .module_path(record.module_path())
            .file(record.file())
            .line(record.line())
            .build();
        if self.inner.enabled(demoted.metadata()) {
            self.inner.log(&demoted);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_is_peer_error(level: Level, target: &str, message: std::fmt::Arguments) -> bool {
        is_peer_error(
            &Record::builder()
                .level(level)
                .target(target)
                .args(message)
                .build(),
        )
    }

    #[test]
    fn only_actix_parse_errors_are_demoted() {
        let target = "actix_http::h1::dispatcher";
        let e = "request parse error: invalid Header provided";
        assert!(record_is_peer_error(
            Level::Error,
            target,
            format_args!("stream error: {e}")
        ));
        assert!(!record_is_peer_error(
            Level::Error,
            target,
            format_args!("write zero; closing")
        ));
        assert!(!record_is_peer_error(
            Level::Error,
            "herald::store",
            format_args!("stream error")
        ));
        assert!(!record_is_peer_error(
            Level::Warn,
            target,
            format_args!("stream error: x")
        ));
    }
}
