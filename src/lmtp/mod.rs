//! LMTP ingest (RFC 2033): how a mail transfer agent such as Postfix hands mail to Herald.
//!
//! [`LmtpServer`] listens on TCP or a UNIX socket (`[lmtp] listen`) and runs one task per
//! connection ([`session::run`]); recipients are resolved and messages delivered through the
//! dispatcher, so an LMTP delivery is stored and published exactly like every other write.
//!
//! Stopping (with the server) refuses new connections, answers idle sessions `421`, and lets a
//! DATA section in progress finish and get its replies before the listener's `stop` returns.

pub mod command;
mod listener;
pub mod session;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Semaphore, watch};

use crate::config::LmtpConfig;
use crate::dispatcher::Dispatcher;
use command::Reply;
pub use listener::BoundListener;
use listener::Listener;
use session::SessionContext;

/// A running LMTP listener.
pub struct LmtpServer {
    /// What it listens on: `127.0.0.1:2424` or `unix:/path`, with the actual port.
    pub local_addr: String,
    stop: watch::Sender<bool>,
    /// One permit per connection; holding all of them means no session is left.
    sessions: Arc<Semaphore>,
    max_connections: usize,
}

impl LmtpServer {
    /// Binds `config.listen`, before the node starts anything else (`BoundListener`). `None`
    /// when LMTP is turned off (an empty `listen`).
    pub fn bind(config: &LmtpConfig) -> std::io::Result<Option<(BoundListener, String)>> {
        let listen = config.listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        BoundListener::bind(listen, config.socket_mode).map(Some)
    }

    /// Starts accepting on `bound` ([`LmtpServer::bind`]), which listens on `local_addr`. Must
    /// run inside an actix system.
    pub fn start(
        (bound, local_addr): (BoundListener, String),
        config: &LmtpConfig,
        dispatcher: Addr<Dispatcher>,
        hostname: String,
        max_size: u64,
    ) -> std::io::Result<LmtpServer> {
        let listener = bound.serve()?;
        let (stop, stopping) = watch::channel(false);
        let ctx = Arc::new(SessionContext {
            dispatcher,
            hostname,
            max_size,
            max_recipients: config.max_recipients.max(1),
            command_timeout: Duration::from_secs(config.command_timeout_secs.max(1)),
            data_timeout: Duration::from_secs(config.data_timeout_secs.max(1)),
            stopping: stopping.clone(),
        });
        let max_connections = config.max_connections.max(1);
        let sessions = Arc::new(Semaphore::new(max_connections));
        actix_web::rt::spawn(accept(listener, ctx, sessions.clone(), stopping));
        log::info!("LMTP listening on {local_addr}");
        Ok(LmtpServer {
            local_addr,
            stop,
            sessions,
            max_connections,
        })
    }

    /// Stops accepting, closes idle sessions and waits up to `grace` for deliveries in progress.
    pub async fn stop(self, grace: Duration) {
        let _ = self.stop.send(true);
        let all = self.sessions.acquire_many(self.max_connections as u32);
        if tokio::time::timeout(grace, all).await.is_err() {
            log::warn!("LMTP: sessions still open after {grace:?}; leaving them");
        }
    }
}

/// Accepts until stopped; a connection beyond the cap hears `421` and is closed.
async fn accept(
    listener: Listener,
    ctx: Arc<SessionContext>,
    sessions: Arc<Semaphore>,
    mut stopping: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            _ = stopping.wait_for(|s| *s) => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and the like: pause rather than spin.
                log::warn!("LMTP accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = sessions.clone().try_acquire_owned() else {
            actix_web::rt::spawn(async move {
                let mut stream = stream;
                let busy = Reply::new(421, "4.3.2", "too many connections; try again later");
                let _ = stream.write_all(busy.to_string().as_bytes()).await;
            });
            continue;
        };
        let ctx = ctx.clone();
        actix_web::rt::spawn(async move {
            session::run(stream, peer, ctx).await;
            drop(permit);
        });
    }
    if let Listener::Unix(_, path) = &listener {
        let _ = std::fs::remove_file(path);
    }
}
