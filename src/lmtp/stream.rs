//! A TCP or UNIX stream behind one `AsyncRead + AsyncWrite`.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// An accepted connection: one session type serves both kinds.
pub enum LmtpStream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for LmtpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            LmtpStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            LmtpStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for LmtpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            LmtpStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            LmtpStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            LmtpStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            LmtpStream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            LmtpStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            LmtpStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
