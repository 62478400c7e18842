//! One LMTP connection: the dialogue of RFC 2033 over any byte stream (TCP or a UNIX socket).
//!
//! Recipients are checked at `RCPT` time, so an MTA bounces unknown ones instead of queueing them.
//! After `DATA` each accepted recipient gets its own reply (§4.2), written only once that
//! recipient's message and change-log rows are committed: a crash before the reply makes the MTA
//! deliver again, never lose the message.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::watch;

use super::command::{self, Command, MAX_COMMAND_LINE, MailFrom, Reply};
use crate::dispatcher::{Deliver, DeliveryOutcome, Dispatcher, ResolveRecipient};

/// What every session of one listener shares.
pub struct SessionContext {
    pub dispatcher: Addr<Dispatcher>,
    /// Named in the greeting and in `Received` headers.
    pub hostname: String,
    /// The largest message accepted (`SIZE`).
    pub max_size: u64,
    pub max_recipients: usize,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    /// Turns true when the server stops: idle sessions say 421 and close; a transaction in
    /// progress finishes first.
    pub stopping: watch::Receiver<bool>,
}

/// A transaction between `MAIL` and the end of `DATA` (or `RSET`).
struct Transaction {
    mail: MailFrom,
    /// Accepted recipients: the address as given and the user it delivers to.
    recipients: Vec<(String, String)>,
}

/// How reading a command line ended.
enum Line {
    Text(String),
    TooLong,
    NotUtf8,
    Closed,
}

/// How reading DATA ended.
enum Body {
    Message(Vec<u8>),
    TooLarge,
    Closed,
}

/// Runs the dialogue until QUIT, a timeout, the peer going away, or the server stopping.
#[expect(
    clippy::too_many_lines,
    reason = "the command loop: one arm per LMTP command, each a line or a call"
)]
pub async fn run<S>(stream: S, peer: String, ctx: Arc<SessionContext>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = BufReader::new(read);
    let mut stopping = ctx.stopping.clone();
    let mut out = String::new();
    let greeting = Reply::plain(220, format!("{} LMTP Herald ready", ctx.hostname));
    let timeout = ctx.command_timeout;
    if !send(&mut write, greeting.to_string().as_bytes(), timeout).await {
        return;
    }
    let mut lhlo: Option<String> = None;
    let mut transaction: Option<Transaction> = None;
    loop {
        // Replies to pipelined commands go out together, once no command is waiting (RFC 2920).
        if reader.buffer().is_empty() && !out.is_empty() {
            if !send(&mut write, out.as_bytes(), timeout).await {
                return;
            }
            out.clear();
        }
        let line = tokio::select! {
            line = tokio::time::timeout(ctx.command_timeout, read_line(&mut reader)) => line,
            _ = stopping.wait_for(|s| *s), if transaction.is_none() || reader.buffer().is_empty() => {
                out.push_str(&Reply::new(421, "4.3.2", "shutting down; try again later").to_string());
                send(&mut write, out.as_bytes(), timeout).await;
                return;
            }
        };
        let line = match line {
            Err(_) => {
                out.push_str(
                    &Reply::new(421, "4.4.2", "timeout waiting for a command").to_string(),
                );
                send(&mut write, out.as_bytes(), timeout).await;
                return;
            }
            Ok(Line::Closed) => return,
            Ok(Line::TooLong) => {
                out.push_str(&Reply::new(500, "5.5.2", "line too long").to_string());
                continue;
            }
            Ok(Line::NotUtf8) => {
                out.push_str(&Reply::new(500, "5.5.2", "a command is ASCII").to_string());
                continue;
            }
            Ok(Line::Text(line)) => line,
        };
        let reply = match command::parse(&line) {
            Command::Lhlo(name) => {
                transaction = None;
                lhlo = Some(name);
                out.push_str(&lhlo_reply(&ctx));
                continue;
            }
            Command::Helo => Reply::new(500, "5.5.1", "this is LMTP: say LHLO (RFC 2033)"),
            Command::Quit => {
                out.push_str(&Reply::new(221, "2.0.0", "bye").to_string());
                send(&mut write, out.as_bytes(), timeout).await;
                return;
            }
            Command::Noop => Reply::new(250, "2.0.0", "OK"),
            Command::Rset => {
                transaction = None;
                Reply::new(250, "2.0.0", "OK")
            }
            // RFC 5321 §3.5.3: a server that will not verify says so with 252 and still
            // accepts mail for the address.
            Command::Vrfy => Reply::new(
                252,
                "2.1.5",
                "cannot VRFY the user; send the message and delivery will be attempted",
            ),
            Command::Invalid(reply) => reply,
            Command::Unknown => Reply::new(500, "5.5.2", "command not recognised"),
            Command::Mail(mail) => mail_command(&ctx, lhlo.is_some(), &mut transaction, mail),
            Command::Rcpt(address) => match transaction.as_mut() {
                None => Reply::new(503, "5.5.1", "MAIL first"),
                Some(t) => rcpt_command(&ctx, t, address).await,
            },
            Command::Data => match transaction.take_if(|t| !t.recipients.is_empty()) {
                None if transaction.is_none() => Reply::new(503, "5.5.1", "MAIL first"),
                None => Reply::new(503, "5.5.1", "no valid recipients"),
                Some(t) => {
                    out.push_str(
                        &Reply::plain(354, "send the message, end with <CRLF>.<CRLF>").to_string(),
                    );
                    if !send(&mut write, out.as_bytes(), timeout).await {
                        return;
                    }
                    out.clear();
                    let replies = match receive(&mut reader, &ctx, &t, &lhlo, &peer).await {
                        Ok(replies) => replies,
                        Err(last) => {
                            if let Some(r) = last {
                                send(&mut write, r.to_string().as_bytes(), timeout).await;
                            }
                            return;
                        }
                    };
                    for reply in replies {
                        out.push_str(&reply.to_string());
                    }
                    continue;
                }
            },
        };
        out.push_str(&reply.to_string());
    }
}

/// `MAIL FROM`: starts a transaction after LHLO, unless one is open or the announced size is
/// too large.
fn mail_command(
    ctx: &SessionContext,
    greeted: bool,
    transaction: &mut Option<Transaction>,
    mail: MailFrom,
) -> Reply {
    if !greeted {
        Reply::new(503, "5.5.1", "say LHLO first")
    } else if transaction.is_some() {
        Reply::new(503, "5.5.1", "a transaction is in progress; RSET first")
    } else if mail.size.is_some_and(|n| n > ctx.max_size) {
        Reply::new(
            552,
            "5.3.4",
            format!("messages are at most {} octets", ctx.max_size),
        )
    } else {
        *transaction = Some(Transaction {
            mail,
            recipients: Vec::new(),
        });
        Reply::new(250, "2.1.0", "sender OK")
    }
}

/// `RCPT TO`: accepts a local user, refuses an unknown address at once (so the MTA bounces it),
/// and defers when the store cannot answer.
async fn rcpt_command(ctx: &SessionContext, t: &mut Transaction, address: String) -> Reply {
    if t.recipients.len() >= ctx.max_recipients {
        return Reply::new(452, "4.5.3", "too many recipients; send the rest later");
    }
    match ctx.dispatcher.send(ResolveRecipient(address.clone())).await {
        Ok(Ok(Some(user_id))) => {
            t.recipients.push((address, user_id));
            Reply::new(250, "2.1.5", "recipient OK")
        }
        Ok(Ok(None)) => {
            count("unknown");
            Reply::new(
                550,
                "5.1.1",
                format!("no mailbox here by that name: <{address}>"),
            )
        }
        Ok(Err(e)) => {
            log::warn!("lmtp: cannot check recipient {address}: {e}");
            Reply::new(451, "4.3.0", "cannot check recipients now; try again later")
        }
        Err(e) => {
            log::warn!("lmtp: dispatcher unavailable: {e}");
            Reply::new(451, "4.3.0", "cannot check recipients now; try again later")
        }
    }
}

/// Reads the message after `DATA` and delivers it: one reply per recipient. `Err` ends the
/// connection, after the reply it carries if any (nothing was stored then).
async fn receive<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    ctx: &SessionContext,
    t: &Transaction,
    lhlo: &Option<String>,
    peer: &str,
) -> Result<Vec<Reply>, Option<Reply>> {
    let body = tokio::time::timeout(ctx.data_timeout, read_data(reader, ctx.max_size)).await;
    match body {
        Err(_) => Err(Some(Reply::new(
            421,
            "4.4.2",
            "timeout reading the message",
        ))),
        // The peer left before the final dot.
        Ok(Body::Closed) => Err(None),
        Ok(Body::TooLarge) => {
            let r = Reply::new(
                552,
                "5.3.4",
                format!("messages are at most {} octets", ctx.max_size),
            );
            for _ in &t.recipients {
                count("too_large");
            }
            Ok(vec![r; t.recipients.len()])
        }
        Ok(Body::Message(message)) => Ok(deliver(ctx, t, lhlo, peer, message).await),
    }
}

/// The LHLO reply: the extensions Herald speaks (RFC 2033 §4.1).
fn lhlo_reply(ctx: &SessionContext) -> String {
    format!(
        "250-{}\r\n250-PIPELINING\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE {}\r\n",
        ctx.hostname, ctx.max_size
    )
}

/// Delivers to each recipient in turn; one reply per recipient, in RCPT order (RFC 2033 §4.2).
async fn deliver(
    ctx: &SessionContext,
    t: &Transaction,
    lhlo: &Option<String>,
    peer: &str,
    message: Vec<u8>,
) -> Vec<Reply> {
    // The same trace headers for every recipient, so the stored message (a content-addressed
    // blob) is one for all of them.
    let id = crate::random::random_secret(9);
    let trace = format!(
        "Return-Path: <{}>\r\nReceived: from {} ({peer})\r\n\tby {} (Herald) with LMTP id {id};\r\n\t{}\r\n",
        t.mail.sender,
        lhlo.as_deref().unwrap_or("unknown"),
        ctx.hostname,
        chrono::Utc::now().to_rfc2822(),
    );
    let mut stored = trace.into_bytes();
    stored.extend_from_slice(&message);
    let stored = Arc::new(stored);
    // One delivery per user: two addresses of one user (an alias and the address itself, or
    // one spelt twice) name one inbox, and each RCPT still gets its reply (RFC 2033 §4.2).
    let mut outcomes: HashMap<&str, Outcome> = HashMap::new();
    let mut replies = Vec::with_capacity(t.recipients.len());
    for (address, user_id) in &t.recipients {
        let outcome = match outcomes.get(user_id.as_str()) {
            Some(o) => o.clone(),
            None => {
                let o = deliver_once(ctx, user_id, &stored).await;
                if let Outcome::Delivered(email_id) = &o {
                    log::info!("lmtp: delivered {id} to <{address}> as {email_id}");
                }
                outcomes.insert(user_id, o.clone());
                o
            }
        };
        replies.push(outcome.reply(address));
    }
    replies
}

/// What became of the delivery of a message to one user.
#[derive(Clone)]
enum Outcome {
    Delivered(String),
    Refused(String),
    Failed,
}

impl Outcome {
    /// The reply to the RCPT of `address`, counted (`crate::metrics`).
    fn reply(&self, address: &str) -> Reply {
        match self {
            Outcome::Delivered(email_id) => {
                count("delivered");
                Reply::new(250, "2.0.0", format!("<{address}> delivered ({email_id})"))
            }
            Outcome::Refused(why) => {
                count("refused");
                Reply::new(
                    554,
                    "5.6.0",
                    format!("<{address}>: the message cannot be stored: {why}"),
                )
            }
            Outcome::Failed => {
                count("failed");
                Reply::new(
                    451,
                    "4.3.0",
                    format!("<{address}>: not delivered; try again later"),
                )
            }
        }
    }
}

/// Delivers `message` to the inbox of `user_id`.
async fn deliver_once(ctx: &SessionContext, user_id: &str, message: &Arc<Vec<u8>>) -> Outcome {
    let outcome = ctx
        .dispatcher
        .send(Deliver {
            user_id: user_id.to_owned(),
            message: message.clone(),
        })
        .await;
    match outcome {
        Ok(Ok(DeliveryOutcome::Delivered(email_id))) => Outcome::Delivered(email_id),
        Ok(Ok(DeliveryOutcome::Refused(why))) => Outcome::Refused(why),
        Ok(Err(e)) => {
            log::warn!("lmtp: delivery to user {user_id} failed: {e}");
            Outcome::Failed
        }
        Err(e) => {
            log::warn!("lmtp: dispatcher unavailable: {e}");
            Outcome::Failed
        }
    }
}

/// Writes `bytes`, giving up after `timeout`: a peer that does not read must not hold its session,
/// and its place among `lmtp.max_connections`, for ever.
async fn send<W: AsyncWrite + Unpin>(write: &mut W, bytes: &[u8], timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, write.write_all(bytes)).await,
        Ok(Ok(()))
    )
}

/// Counts one recipient's outcome (`crate::metrics`).
fn count(outcome: &str) {
    crate::metrics::metrics()
        .lmtp_recipients
        .with_label_values(&[outcome])
        .inc();
}

/// Reads one line through its LF into `line`, keeping at most `cap` octets of it (the rest is
/// read and dropped, so a peer that never sends an LF costs no more than `cap`). `None` if the
/// peer closed first; otherwise whether the line was longer than `cap`.
async fn read_capped_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    cap: usize,
) -> Option<bool> {
    let mut overflowed = false;
    loop {
        let available = match reader.fill_buf().await {
            Ok([]) | Err(_) => return None,
            Ok(bytes) => bytes,
        };
        let (take, ends) = match available.iter().position(|b| *b == b'\n') {
            Some(end) => (end + 1, true),
            None => (available.len(), false),
        };
        let keep = cap.saturating_sub(line.len()).min(take);
        overflowed |= keep < take;
        line.extend_from_slice(&available[..keep]);
        reader.consume(take);
        if ends {
            return Some(overflowed);
        }
    }
}

/// One command line, without its line ending.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> Line {
    let mut line = Vec::new();
    let Some(overflowed) = read_capped_line(reader, &mut line, MAX_COMMAND_LINE + 2).await else {
        return Line::Closed;
    };
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    if overflowed || line.len() > MAX_COMMAND_LINE {
        return Line::TooLong;
    }
    match String::from_utf8(line) {
        Ok(s) => Line::Text(s),
        Err(_) => Line::NotUtf8,
    }
}

/// The message after `354`, up to the line holding a single dot, with dot-stuffing undone
/// (RFC 5321 §4.5.2) and CRLF line endings. Beyond `max` octets the rest is read and dropped,
/// a line at a time and each line cut at `max`: memory stays within about twice `max`.
async fn read_data<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R, max: u64) -> Body {
    // A line longer than this makes the message too large on its own.
    let cap = usize::try_from(max).unwrap_or(usize::MAX).saturating_add(3);
    let mut message = Vec::new();
    let mut too_large = false;
    let mut line = Vec::new();
    loop {
        line.clear();
        let Some(overflowed) = read_capped_line(reader, &mut line, cap).await else {
            // The peer closed, perhaps in the middle of a line.
            return Body::Closed;
        };
        if overflowed {
            too_large = true;
            message = Vec::new();
            continue;
        }
        let content = line
            .strip_suffix(b"\r\n")
            .or_else(|| line.strip_suffix(b"\n"))
            .unwrap_or(&line);
        if content == b"." {
            return if too_large {
                Body::TooLarge
            } else {
                Body::Message(message)
            };
        }
        let content = content.strip_prefix(b".").unwrap_or(content);
        if too_large || (message.len() + content.len() + 2) as u64 > max {
            too_large = true;
            message = Vec::new();
            continue;
        }
        message.extend_from_slice(content);
        message.extend_from_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn data(input: &[u8], max: u64) -> Body {
        let mut reader = BufReader::new(input);
        read_data(&mut reader, max).await
    }

    #[actix_web::test]
    async fn data_ends_at_the_lone_dot_and_loses_its_stuffing() {
        match data(b"Subject: x\r\n\r\n..leading dot\r\n.\r\nNOOP\r\n", 1000).await {
            Body::Message(m) => assert_eq!(m, b"Subject: x\r\n\r\n.leading dot\r\n"),
            _ => panic!("a message"),
        }
        match data(b"bare\nlines\n.\n", 1000).await {
            Body::Message(m) => assert_eq!(m, b"bare\r\nlines\r\n"),
            _ => panic!("a message"),
        }
    }

    #[actix_web::test]
    async fn data_over_the_limit_is_read_to_its_end_and_refused() {
        assert!(matches!(
            data(b"0123456789\r\n.\r\n", 5).await,
            Body::TooLarge
        ));
        assert!(matches!(data(b"no end\r\n", 100).await, Body::Closed));
        assert!(matches!(data(b"half a li", 100).await, Body::Closed));
    }

    #[actix_web::test]
    async fn a_line_longer_than_the_limit_is_read_through_but_not_kept() {
        // A peer sending megabytes without a line feed costs the cap, not the megabytes.
        let input = [vec![b'x'; 1 << 20], b"\r\nnext\r\n".to_vec()].concat();
        let mut reader = BufReader::with_capacity(4096, input.as_slice());
        let mut line = Vec::new();
        assert_eq!(
            read_capped_line(&mut reader, &mut line, 100).await,
            Some(true)
        );
        assert_eq!(line.len(), 100);
        line.clear();
        assert_eq!(
            read_capped_line(&mut reader, &mut line, 100).await,
            Some(false)
        );
        assert_eq!(line, b"next\r\n");
        let long = [vec![b'y'; 1 << 20], b"\r\n.\r\n".to_vec()].concat();
        assert!(matches!(data(&long, 1000).await, Body::TooLarge));
    }

    #[actix_web::test]
    async fn command_lines_are_bounded() {
        let long = format!("NOOP {}\r\nQUIT\r\n", "x".repeat(MAX_COMMAND_LINE * 2));
        let mut reader = BufReader::new(long.as_bytes());
        assert!(matches!(read_line(&mut reader).await, Line::TooLong));
        assert!(matches!(read_line(&mut reader).await, Line::Text(t) if t == "QUIT"));
        assert!(matches!(read_line(&mut reader).await, Line::Closed));
    }
}
