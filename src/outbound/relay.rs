//! Handing one message for one recipient to the SMTP relay named in `[submission] relay`.
//!
//! Blocking (lettre's synchronous transport): the outbox sender runs it on a blocking thread,
//! never on a dispatcher or HTTP thread. One recipient per SMTP transaction, so that each
//! recipient gets the relay's own reply to its `RCPT TO` (RFC 8621 §7 `smtpReply`).

use std::time::Duration;

use lettre::Transport;
use lettre::address::{Address, Envelope};

/// Why the relay did not take a message, by what it means for a retry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RelayError {
    /// A 5xx reply, or an address no relay could accept: retrying will not help.
    #[error("{0}")]
    Permanent(String),
    /// A 4xx reply, an unreachable relay, a timeout, a relay URL that does not parse: try later.
    #[error("{0}")]
    Transient(String),
}

/// Sends `message` from `mail_from` (empty: the null sender `<>`) to `rcpt_to` through the relay
/// at `url` (`smtp://host:port`, `smtp://user:password@host:587?tls=required`,
/// `smtps://host:465`), each step of the session bounded by `timeout`. Returns the relay's reply
/// to the message, joined into one line (SUB-06).
pub fn send(
    url: &str,
    mail_from: &str,
    rcpt_to: &str,
    message: &[u8],
    timeout: Duration,
) -> Result<String, RelayError> {
    let address = |a: &str| {
        a.parse::<Address>()
            .map_err(|_| RelayError::Permanent(format!("550 5.1.3 {a:?} is not a valid address")))
    };
    let from = if mail_from.is_empty() {
        None
    } else {
        Some(address(mail_from)?)
    };
    let envelope = Envelope::new(from, vec![address(rcpt_to)?])
        .map_err(|e| RelayError::Permanent(format!("550 5.1.0 {e}")))?;
    let transport = lettre::SmtpTransport::from_url(url)
        .map_err(|e| RelayError::Transient(format!("451 4.3.5 the relay URL does not parse: {e}")))?
        .timeout(Some(timeout))
        .build();
    match transport.send_raw(&envelope, message) {
        Ok(reply) => {
            let text: Vec<&str> = reply.message().collect();
            Ok(format!("{} {}", reply.code(), text.join(" ")))
        }
        Err(e) if e.is_permanent() => Err(RelayError::Permanent(reply_text(&e))),
        Err(e) => Err(RelayError::Transient(reply_text(&e))),
    }
}

/// The relay's reply in SMTP form (`550 5.1.1 …`) when it sent one, else what went wrong, put in
/// that form too (`451 4.4.1 …`: no answer from the relay, RFC 3463), as `smtpReply` must be
/// (RFC 8621 §7); one line. lettre displays a reply as `permanent error (550): 5.1.1 …`.
fn reply_text(e: &lettre::transport::smtp::Error) -> String {
    let text = e.to_string();
    let text = match (e.status(), text.split_once("): ")) {
        (Some(code), Some((_, rest))) => format!("{code} {rest}"),
        _ => format!("451 4.4.1 {text}"),
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
