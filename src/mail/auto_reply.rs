//! Vacation replies (RFC 8621 §8) under the rules of RFC 3834 and RFC 5230: which incoming
//! messages may be answered, and the answer itself. Pure: the store decides whether the
//! VacationResponse is on and whether this sender was answered lately.

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::text::Text;
use mail_parser::{HeaderValue, MessageParser};

/// What the account's VacationResponse says (RFC 8621 §8).
#[derive(Clone, Copy, Debug, Default)]
pub struct Away<'a> {
    pub subject: Option<&'a str>,
    pub text_body: Option<&'a str>,
    pub html_body: Option<&'a str>,
}

/// Why an incoming message gets no automatic reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoReply {
    /// It is itself automatic (`Auto-Submitted` other than `no`; RFC 3834 §2).
    AutoSubmitted,
    /// It came from a list or a bulk sender (`List-Id`, `List-Unsubscribe`, `Precedence`).
    List,
    /// No envelope sender (`Return-Path: <>` or none): nobody to answer (RFC 3834 §4).
    NoSender,
    /// The sender is a robot: `MAILER-DAEMON`, `noreply` and the like (RFC 3834 §3).
    Robot,
    /// The message cannot be read as one.
    Unreadable,
}

/// What a reply needs from the message it answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Original {
    /// The envelope sender (`Return-Path`): where the reply goes.
    pub sender: String,
    /// The `To` and `Cc` addresses: the reply is sent only if one is the account's own.
    pub recipients: Vec<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub references: Vec<String>,
}

/// Local parts that never get an automatic reply.
const ROBOTS: &[&str] = &[
    "mailer-daemon",
    "postmaster",
    "noreply",
    "no-reply",
    "donotreply",
    "do-not-reply",
    "listserv",
    "majordomo",
];

/// Reads what a reply to `message` needs, or why there must be none.
pub fn examine(message: &[u8]) -> Result<Original, NoReply> {
    let parsed = MessageParser::default()
        .parse_headers(message)
        .ok_or(NoReply::Unreadable)?;
    let text = |name: &str| {
        parsed
            .header(name)
            .and_then(|v| v.as_text())
            .map(|t| t.trim().to_ascii_lowercase())
    };
    if text("Auto-Submitted").is_some_and(|v| !v.starts_with("no")) {
        return Err(NoReply::AutoSubmitted);
    }
    if parsed.header("List-Id").is_some()
        || parsed.header("List-Unsubscribe").is_some()
        || text("Precedence").is_some_and(|p| matches!(p.as_str(), "bulk" | "list" | "junk"))
    {
        return Err(NoReply::List);
    }
    // The topmost Return-Path: the final delivery writes the envelope sender there (RFC 5321
    // §4.4); any further down came with the message, and whoever sent it chose them.
    let sender = parsed
        .headers()
        .iter()
        .find(|h| h.name().eq_ignore_ascii_case("Return-Path"))
        .map(mail_parser::Header::value)
        .and_then(|v| match v {
            HeaderValue::Address(a) => a.first().and_then(|a| a.address()).map(str::to_owned),
            HeaderValue::Text(t) => Some(t.trim().trim_matches(['<', '>']).to_owned()),
            _ => None,
        })
        .filter(|s| s.contains('@'))
        .ok_or(NoReply::NoSender)?;
    let local = sender
        .rsplit_once('@')
        .map(|(l, _)| l.to_ascii_lowercase())
        .unwrap_or_default();
    if ROBOTS.contains(&local.as_str())
        || local.starts_with("owner-")
        || local.ends_with("-request")
    {
        return Err(NoReply::Robot);
    }
    let mut recipients = Vec::new();
    for list in [parsed.to(), parsed.cc()].into_iter().flatten() {
        recipients.extend(list.iter().filter_map(|a| a.address()).map(str::to_owned));
    }
    let ids = |name: &str| -> Vec<String> {
        match parsed.header(name) {
            Some(HeaderValue::Text(t)) => vec![t.to_string()],
            Some(HeaderValue::TextList(l)) => l.iter().map(|t| t.to_string()).collect(),
            _ => Vec::new(),
        }
    };
    Ok(Original {
        sender,
        recipients,
        subject: parsed.subject().map(str::to_owned),
        message_id: ids("Message-ID").into_iter().next(),
        references: ids("References"),
    })
}

/// The reply to `original` from `(name, email)`: the VacationResponse's subject (or `Auto: ` and
/// the original's) and bodies, `Auto-Submitted: auto-replied`, and `In-Reply-To`/`References`
/// so that it threads with the message it answers (RFC 3834 §3.1).
pub fn build(
    v: &Away<'_>,
    from: (&str, &str),
    original: &Original,
    domain: &str,
    now_secs: i64,
) -> Vec<u8> {
    let subject = match v.subject.filter(|s| !s.trim().is_empty()) {
        Some(s) => s.to_owned(),
        None => format!("Auto: {}", original.subject.as_deref().unwrap_or(""))
            .trim_end()
            .to_owned(),
    };
    let mut references = original.references.clone();
    references.extend(original.message_id.clone());
    let mut builder = MessageBuilder::new()
        .from(Address::new_address(Some(from.0), from.1))
        .to(Address::new_address(None::<&str>, original.sender.as_str()))
        .subject(Text::new(subject))
        .message_id(MessageId::new(format!(
            "{}@{domain}",
            crate::random::random_secret(16)
        )))
        .date(now_secs)
        .header("Auto-Submitted", Text::new("auto-replied"));
    if let Some(id) = &original.message_id {
        builder = builder.in_reply_to(MessageId::new(id.clone()));
    }
    if !references.is_empty() {
        builder = builder.references(MessageId::new_list(references.into_iter()));
    }
    let text = v.text_body.filter(|t| !t.is_empty());
    let html = v.html_body.filter(|t| !t.is_empty());
    builder = match (text, html) {
        (Some(t), Some(h)) => builder.text_body(t).html_body(h),
        (Some(t), None) => builder.text_body(t),
        (None, Some(h)) => builder.html_body(h),
        (None, None) => builder.text_body("I am away and will read your message when I return."),
    };
    builder.write_to_vec().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(headers: &str) -> Vec<u8> {
        format!(
            "Return-Path: <carol@far.example>\r\nFrom: Carol <carol@far.example>\r\n\
             To: alice@example.com\r\nCc: bob@example.com\r\nSubject: Plans\r\n\
             Message-ID: <m1@far.example>\r\nReferences: <m0@far.example>\r\n{headers}\r\nHi\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn an_ordinary_message_is_answered_to_its_return_path() {
        let o = examine(&message("")).unwrap();
        assert_eq!(o.sender, "carol@far.example");
        assert_eq!(o.recipients, vec!["alice@example.com", "bob@example.com"]);
        assert_eq!(o.message_id.as_deref(), Some("m1@far.example"));
        assert_eq!(o.references, vec!["m0@far.example"]);
        assert!(examine(&message("Auto-Submitted: no\r\n")).is_ok());
    }

    #[test]
    fn automatic_list_and_robot_mail_and_mail_without_a_sender_are_not_answered() {
        for (extra, why) in [
            ("Auto-Submitted: auto-replied\r\n", NoReply::AutoSubmitted),
            ("Auto-Submitted: auto-generated\r\n", NoReply::AutoSubmitted),
            ("List-Id: <team.example.com>\r\n", NoReply::List),
            (
                "List-Unsubscribe: <mailto:leave@example.com>\r\n",
                NoReply::List,
            ),
            ("Precedence: bulk\r\n", NoReply::List),
            ("Precedence: junk\r\n", NoReply::List),
        ] {
            assert_eq!(examine(&message(extra)), Err(why), "{extra}");
        }
        let robot = |from: &str| {
            format!("Return-Path: <{from}>\r\nTo: alice@example.com\r\nSubject: x\r\n\r\nHi\r\n")
                .into_bytes()
        };
        for from in [
            "MAILER-DAEMON@far.example",
            "noreply@far.example",
            "owner-list@far.example",
            "list-request@far.example",
        ] {
            assert_eq!(examine(&robot(from)), Err(NoReply::Robot), "{from}");
        }
        assert_eq!(examine(&robot("")), Err(NoReply::NoSender));
        // A bounce (null sender) whose body carries a Return-Path of its own choosing.
        let forged = b"Return-Path: <>\r\nReturn-Path: <bob@example.com>\r\nTo: alice@example.com\r\n\r\nHi\r\n";
        assert_eq!(examine(forged), Err(NoReply::NoSender));
        assert_eq!(
            examine(b"From: carol@far.example\r\nTo: alice@example.com\r\n\r\nHi\r\n"),
            Err(NoReply::NoSender)
        );
    }

    #[test]
    fn the_reply_threads_with_the_original_and_says_it_is_automatic() {
        let o = examine(&message("")).unwrap();
        let v = Away {
            text_body: Some("Back on Monday."),
            ..Default::default()
        };
        let reply = build(
            &v,
            ("Alice", "alice@example.com"),
            &o,
            "example.com",
            1_800_000_000,
        );
        let parsed = MessageParser::default().parse(&reply).unwrap();
        assert_eq!(parsed.subject(), Some("Auto: Plans"));
        assert_eq!(
            parsed.header("Auto-Submitted").and_then(|v| v.as_text()),
            Some("auto-replied")
        );
        assert_eq!(parsed.in_reply_to().as_text(), Some("m1@far.example"));
        assert_eq!(
            parsed.references().as_text_list(),
            Some(&["m0@far.example".into(), "m1@far.example".into()][..])
        );
        assert_eq!(
            parsed
                .to()
                .and_then(|a| a.first())
                .and_then(|a| a.address()),
            Some("carol@far.example")
        );
        assert_eq!(parsed.body_text(0).as_deref(), Some("Back on Monday."));
        let named = Away {
            subject: Some("Away"),
            ..v
        };
        let reply = build(&named, ("Alice", "alice@example.com"), &o, "example.com", 0);
        assert_eq!(
            MessageParser::default().parse(&reply).unwrap().subject(),
            Some("Away")
        );
    }
}
