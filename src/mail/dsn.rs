//! Delivery status notifications (RFC 3464): the bounce a user finds in their inbox when a
//! recipient of their message failed for good.
//!
//! A `multipart/report; report-type=delivery-status` (RFC 6522) with three parts: a text a person
//! reads, the machine-readable `message/delivery-status`, and the original message's header
//! (`text/rfc822-headers`), so a mail client can show which message bounced.

use std::fmt::Write;

/// One failed recipient.
pub struct Failure<'a> {
    /// The envelope recipient.
    pub recipient: &'a str,
    /// The relay's reply (`550 5.1.1 …`) or why delivery was given up.
    pub reply: &'a str,
    /// Whether it was given up after temporary failures, rather than refused.
    pub gave_up: bool,
}

/// The DSN for `failure` of `original`, addressed to `to` (the envelope sender), reported by the
/// MTA of `domain`, at `date` (RFC 5322 date-time text).
pub fn build(
    domain: &str,
    to: &str,
    failure: &Failure<'_>,
    original: &[u8],
    date: &str,
) -> Vec<u8> {
    let boundary = format!("dsn-{}", crate::random::random_secret(12));
    let status = status_code(failure);
    let headers = super::header_section(original);
    let subject = original_subject(original);
    let mut m = String::new();
    let _ = write!(
        m,
        "From: Mail Delivery System <MAILER-DAEMON@{domain}>\r\n\
         To: <{to}>\r\n\
         Subject: Undelivered Mail Returned to Sender{subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{id}@{domain}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status;\r\n\
         \tboundary=\"{boundary}\"\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         \r\n\
         Your message could not be delivered to {rcpt}.\r\n\
         \r\n\
         {why}\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; {domain}\r\n\
         \r\n\
         Final-Recipient: rfc822; {rcpt}\r\n\
         Action: failed\r\n\
         Status: {status}\r\n\
         Diagnostic-Code: smtp; {reply}\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n",
        id = crate::random::random_secret(16),
        rcpt = one_line(failure.recipient),
        reply = one_line(failure.reply),
        why = if failure.gave_up {
            format!(
                "Delivery was retried until the server gave up. The last answer was:\r\n{}",
                one_line(failure.reply)
            )
        } else {
            format!(
                "The receiving mail system refused it and said:\r\n{}",
                one_line(failure.reply)
            )
        },
    );
    let mut out = m.into_bytes();
    out.extend_from_slice(headers);
    if !headers.ends_with(b"\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// The RFC 3463 status: the enhanced code in the reply when it has one, else 5.0.0 for a refusal
/// and 4.4.7 (delivery time expired) for a recipient given up.
fn status_code(failure: &Failure<'_>) -> String {
    let enhanced = failure.reply.split_whitespace().nth(1).filter(|code| {
        let parts: Vec<&str> = code.split('.').collect();
        parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    });
    match enhanced {
        Some(code) if !failure.gave_up => code.to_owned(),
        _ if failure.gave_up => "4.4.7".to_owned(),
        _ => "5.0.0".to_owned(),
    }
}

/// `": <original subject>"`, or nothing.
fn original_subject(message: &[u8]) -> String {
    mail_parser::MessageParser::default()
        .parse_headers(message)
        .and_then(|m| m.subject().map(one_line))
        .filter(|s| !s.is_empty())
        .map(|s| format!(": {s}"))
        .unwrap_or_default()
}

/// Header-safe text: no line breaks.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MimeHeaders;

    const ORIGINAL: &[u8] =
        b"From: alice@example.com\r\nTo: nobody@far.example\r\nSubject: Plans\r\n\r\nBody\r\n";

    #[test]
    fn a_refusal_becomes_a_multipart_report_naming_the_recipient_and_the_reply() {
        let failure = Failure {
            recipient: "nobody@far.example",
            reply: "550 5.1.1 no such user",
            gave_up: false,
        };
        let dsn = build(
            "example.com",
            "alice@example.com",
            &failure,
            ORIGINAL,
            "Fri, 04 Dec 2026 02:00:00 +0000",
        );
        let m = mail_parser::MessageParser::default().parse(&dsn).unwrap();
        assert_eq!(
            m.subject(),
            Some("Undelivered Mail Returned to Sender: Plans")
        );
        let ct = m.content_type().unwrap();
        assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
        let text = String::from_utf8_lossy(&dsn);
        assert!(text.contains("Final-Recipient: rfc822; nobody@far.example\r\n"));
        assert!(text.contains("Status: 5.1.1\r\n"));
        assert!(text.contains("Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n"));
        assert!(
            text.contains("Subject: Plans\r\n"),
            "the original header is included"
        );
        assert!(!text.contains("Body"), "but not its body");
        assert!(text.contains("Auto-Submitted: auto-replied\r\n"));
        assert_eq!(m.parts.len(), 4, "the container and three parts");
    }

    #[test]
    fn a_recipient_given_up_reports_delivery_time_expired() {
        let failure = Failure {
            recipient: "slow@far.example",
            reply: "451 4.3.0 try again later",
            gave_up: true,
        };
        let dsn = build("example.com", "alice@example.com", &failure, ORIGINAL, "x");
        assert!(String::from_utf8_lossy(&dsn).contains("Status: 4.4.7\r\n"));
        let refused = Failure {
            recipient: "x@far.example",
            reply: "554 rejected",
            gave_up: false,
        };
        let dsn = build("example.com", "alice@example.com", &refused, ORIGINAL, "x");
        assert!(String::from_utf8_lossy(&dsn).contains("Status: 5.0.0\r\n"));
    }
}
