//! The LMTP listener's address: binding TCP or a UNIX socket, and accepting on it.
//!
//! Binding is done apart from serving ([`BoundListener::bind`] before anything of a node starts,
//! [`BoundListener::serve`] inside the actix system): an address that cannot be had then stops
//! the start as one line, with nothing left running to fail noisily as the system goes down.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::stream::LmtpStream;

/// A bound listener, not yet accepting.
pub enum BoundListener {
    Tcp(std::net::TcpListener),
    /// A UNIX socket and its path.
    Unix(std::os::unix::net::UnixListener, PathBuf),
}

/// A listener accepting on the actix system's reactor: TCP, or a UNIX socket (removed again when
/// the listener stops).
pub enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener, PathBuf),
}

impl BoundListener {
    /// Binds `listen` (`host:port` or `unix:/path`, UNIX sockets getting `mode`); returns the
    /// listener and what it listens on, with the actual port.
    pub fn bind(listen: &str, mode: u32) -> std::io::Result<(BoundListener, String)> {
        let failed =
            |e: std::io::Error| std::io::Error::new(e.kind(), format!("LMTP {listen}: {e}"));
        if let Some(path) = listen.strip_prefix("unix:") {
            let path = PathBuf::from(path);
            if clear_stale_socket(&path).map_err(failed)? == Socket::Live {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    format!("LMTP {listen} is in use by another process"),
                ));
            }
            let listener = std::os::unix::net::UnixListener::bind(&path).map_err(failed)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
            return Ok((BoundListener::Unix(listener, path), listen.to_owned()));
        }
        let listener = std::net::TcpListener::bind(listen).map_err(failed)?;
        let local_addr = listener.local_addr()?.to_string();
        Ok((BoundListener::Tcp(listener), local_addr))
    }

    /// The listener on the current actix system's reactor. Must run inside one.
    pub fn serve(self) -> std::io::Result<Listener> {
        Ok(match self {
            BoundListener::Tcp(l) => {
                l.set_nonblocking(true)?;
                Listener::Tcp(tokio::net::TcpListener::from_std(l)?)
            }
            BoundListener::Unix(l, path) => {
                l.set_nonblocking(true)?;
                Listener::Unix(tokio::net::UnixListener::from_std(l)?, path)
            }
        })
    }
}

/// What [`clear_stale_socket`] found.
#[derive(Debug, PartialEq, Eq)]
enum Socket {
    /// Nothing, or a socket nothing listened on any more (left by a process that was killed),
    /// now removed: the path can be bound.
    Free,
    /// A socket something accepts connections on.
    Live,
}

/// Removes a socket at `path` that nothing listens on any more, so it can be bound again. A
/// socket something accepts on is another server's (a second node on the same host with the
/// same `[lmtp] listen`) and is left alone: taking it would cut that server off from its MTA,
/// and removing it at our stop would leave it with no socket at all.
fn clear_stale_socket(path: &Path) -> std::io::Result<Socket> {
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if !is_socket {
        return Ok(Socket::Free);
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Ok(Socket::Live);
    }
    std::fs::remove_file(path)?;
    Ok(Socket::Free)
}

impl Listener {
    /// The next connection and who it is from.
    pub async fn accept(&self) -> std::io::Result<(LmtpStream, String)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                // Replies (one per recipient, each after its commit) are small writes in a row;
                // Nagle's algorithm would hold one back until the client's delayed ACK of the one
                // before.
                s.set_nodelay(true)?;
                Ok((LmtpStream::Tcp(s), peer.to_string()))
            }
            Listener::Unix(l, _) => {
                let (s, _) = l.accept().await?;
                Ok((LmtpStream::Unix(s), "local".to_owned()))
            }
        }
    }
}
