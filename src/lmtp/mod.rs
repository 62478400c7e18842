//! LMTP ingest (RFC 2033): how a mail transfer agent such as Postfix hands mail to Herald.
//!
//! [`LmtpServer`] listens on TCP or a UNIX socket (`[lmtp] listen`) and runs one task per
//! connection ([`session::run`]); recipients are resolved and messages delivered through the
//! dispatcher, so an LMTP delivery is stored and published exactly like every other write.
//!
//! Stopping (with the server) refuses new connections, answers idle sessions `421`, and lets a
//! DATA section in progress finish and get its replies before the listener's `stop` returns.

pub mod command;
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
use session::SessionContext;
use stream::LmtpStream;

/// A bound listener: TCP, or a UNIX socket (removed again when the listener stops).
enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener, std::path::PathBuf),
}

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
    /// Binds `config.listen` and starts accepting. Must run inside an actix system. `None` when
    /// LMTP is turned off (an empty `listen`).
    pub fn start(
        config: &LmtpConfig,
        dispatcher: Addr<Dispatcher>,
        hostname: String,
        max_size: u64,
    ) -> std::io::Result<Option<LmtpServer>> {
        let listen = config.listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        let (listener, local_addr) = bind(listen, config.socket_mode)?;
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
        Ok(Some(LmtpServer {
            local_addr,
            stop,
            sessions,
            max_connections,
        }))
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

fn bind(listen: &str, mode: u32) -> std::io::Result<(Listener, String)> {
    if let Some(path) = listen.strip_prefix("unix:") {
        use std::os::unix::fs::PermissionsExt;
        let path = std::path::PathBuf::from(path);
        // A socket left by a process that died; a live listener there would still be told apart
        // by connecting, but one Herald per socket path is the deployment this supports.
        if std::fs::symlink_metadata(&path).is_ok_and(|m| {
            use std::os::unix::fs::FileTypeExt;
            m.file_type().is_socket()
        }) {
            std::fs::remove_file(&path)?;
        }
        let listener = std::os::unix::net::UnixListener::bind(&path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("LMTP {listen}: {e}")))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::UnixListener::from_std(listener)?;
        return Ok((Listener::Unix(listener, path), listen.to_owned()));
    }
    let listener = std::net::TcpListener::bind(listen)
        .map_err(|e| std::io::Error::new(e.kind(), format!("LMTP {listen}: {e}")))?;
    listener.set_nonblocking(true)?;
    let local_addr = listener.local_addr()?.to_string();
    Ok((
        Listener::Tcp(tokio::net::TcpListener::from_std(listener)?),
        local_addr,
    ))
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
            accepted = accept_one(&listener) => accepted,
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

async fn accept_one(listener: &Listener) -> std::io::Result<(LmtpStream, String)> {
    match listener {
        Listener::Tcp(l) => {
            let (s, peer) = l.accept().await?;
            // Replies (one per recipient, each after its commit) are small writes in a row; Nagle's
            // algorithm would hold one back until the client's delayed ACK of the one before.
            s.set_nodelay(true)?;
            Ok((LmtpStream::Tcp(s), peer.to_string()))
        }
        Listener::Unix(l, _) => {
            let (s, _) = l.accept().await?;
            Ok((LmtpStream::Unix(s), "local".to_owned()))
        }
    }
}
