//! Handing outgoing mail to the SMTP relay named in `[submission] relay` (RFC 8621 §7: the
//! server sends an EmailSubmission's message to the envelope's recipients).
//!
//! Blocking, because it runs on a dispatcher thread, which is synchronous like Diesel.

use lettre::Transport;
use lettre::address::{Address, Envelope};

/// Why the relay did not take a message.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("{0:?} is not an address the relay accepts")]
    BadAddress(String),
    #[error("relay URL: {0}")]
    Url(String),
    #[error("the relay refused the message: {0}")]
    Refused(String),
    #[error("the relay could not be reached: {0}")]
    Unreachable(String),
}

/// Sends `message` from `mail_from` to `rcpt_to` through the relay at `url` (`smtp://host:port`,
/// `smtp://user:password@host:587?tls=required`, `smtps://host:465`). Returns the relay's reply,
/// joined into one line (SUB-06).
pub fn send(
    url: &str,
    mail_from: &str,
    rcpt_to: &[String],
    message: &[u8],
) -> Result<String, RelayError> {
    let address = |a: &str| {
        a.parse::<Address>()
            .map_err(|_| RelayError::BadAddress(a.to_owned()))
    };
    let from = if mail_from.is_empty() {
        None
    } else {
        Some(address(mail_from)?)
    };
    let to = rcpt_to
        .iter()
        .map(|r| address(r))
        .collect::<Result<Vec<_>, _>>()?;
    let envelope = Envelope::new(from, to).map_err(|e| RelayError::Refused(e.to_string()))?;
    let transport = lettre::SmtpTransport::from_url(url)
        .map_err(|e| RelayError::Url(e.to_string()))?
        .timeout(Some(std::time::Duration::from_secs(30)))
        .build();
    match transport.send_raw(&envelope, message) {
        Ok(reply) => {
            let text: Vec<&str> = reply.message().collect();
            Ok(format!("{} {}", reply.code(), text.join(" ")))
        }
        Err(e) if e.is_permanent() || e.is_transient() => Err(RelayError::Refused(
            e.to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        )),
        Err(e) => Err(RelayError::Unreachable(e.to_string())),
    }
}
