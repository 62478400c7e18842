//! A plain LMTP client (RFC 2033) over TCP or a UNIX socket, as an MTA speaks it: lines out,
//! replies in.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

const WAIT: Duration = Duration::from_secs(20);

/// One reply: its code and its lines' texts (after the code and separator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// The whole text, lines joined by newlines.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

pub struct LmtpClient {
    reader: BufReader<Box<dyn AsyncRead + Unpin>>,
    writer: Box<dyn AsyncWrite + Unpin>,
}

impl LmtpClient {
    /// Connects to `host:port`, or `unix:/path`, and reads the greeting.
    pub async fn connect(addr: &str) -> (LmtpClient, Reply) {
        let (read, writer): (Box<dyn AsyncRead + Unpin>, Box<dyn AsyncWrite + Unpin>) =
            match addr.strip_prefix("unix:") {
                Some(path) => {
                    let stream = tokio::net::UnixStream::connect(path)
                        .await
                        .expect("connect");
                    let (r, w) = stream.into_split();
                    (Box::new(r), Box::new(w))
                }
                None => {
                    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
                    let (r, w) = stream.into_split();
                    (Box::new(r), Box::new(w))
                }
            };
        let mut client = LmtpClient {
            reader: BufReader::new(read),
            writer,
        };
        let greeting = client.reply().await.expect("a greeting");
        (client, greeting)
    }

    /// Connects, says LHLO and expects 250.
    pub async fn ready(addr: &str) -> LmtpClient {
        let (mut client, greeting) = Self::connect(addr).await;
        assert_eq!(greeting.code, 220, "{greeting:?}");
        let lhlo = client.command("LHLO mta.test").await;
        assert_eq!(lhlo.code, 250, "{lhlo:?}");
        client
    }

    /// Writes raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("write");
    }

    /// Sends one command line and reads its reply.
    pub async fn command(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.reply().await.expect("a reply")
    }

    /// The next reply, multi-line ones joined; `None` once the server has closed or reset the
    /// connection.
    pub async fn reply(&mut self) -> Option<Reply> {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(WAIT, self.reader.read_line(&mut line))
                .await
                .expect("a reply in time");
            // Closed, or reset (a killed server): no reply.
            if !matches!(read, Ok(n) if n > 0) {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).expect(line);
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line.get(4..).unwrap_or("").to_owned());
            if !more {
                return Some(Reply { code, lines });
            }
        }
    }

    /// A whole transaction, one command at a time: MAIL, each RCPT, DATA, the message (stuffed
    /// here), and the replies after the final dot, one per accepted recipient.
    pub async fn deliver(&mut self, from: &str, to: &[&str], message: &[u8]) -> Delivery {
        let mail = self.command(&format!("MAIL FROM:<{from}>")).await;
        assert_eq!(mail.code, 250, "{mail:?}");
        let mut rcpt = Vec::new();
        for address in to {
            rcpt.push(self.command(&format!("RCPT TO:<{address}>")).await);
        }
        let accepted = rcpt.iter().filter(|r| r.code == 250).count();
        let data = self.command("DATA").await;
        if accepted == 0 {
            return Delivery {
                rcpt,
                data: vec![data],
            };
        }
        assert_eq!(data.code, 354, "{data:?}");
        self.send(&stuff(message)).await;
        let mut data = Vec::new();
        for _ in 0..accepted {
            data.push(self.reply().await.expect("a reply per recipient"));
        }
        Delivery { rcpt, data }
    }
}

/// What the server said to one transaction: per RCPT, then after DATA.
#[derive(Debug)]
pub struct Delivery {
    pub rcpt: Vec<Reply>,
    pub data: Vec<Reply>,
}

/// A message as DATA carries it: CRLF lines, leading dots doubled, ended by a lone dot.
pub fn stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let text = message.strip_suffix(b"\r\n").unwrap_or(message);
    for line in text.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}
