//! LMTP commands (RFC 2033, with RFC 5321's syntax) and replies, without I/O.

use std::fmt;

/// The longest command line accepted, CRLF included (RFC 5321 §4.5.3.1.4 says 512; MAIL and
/// RCPT parameters may make it longer, §4.5.3.1.4 again).
pub const MAX_COMMAND_LINE: usize = 2048;

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Lhlo(String),
    /// `HELO`/`EHLO`: not LMTP (RFC 2033 §4.1).
    Helo,
    Mail(MailFrom),
    Rcpt(String),
    Data,
    Rset,
    Noop,
    Quit,
    Vrfy,
    /// Syntax errors in the arguments of a known command.
    Invalid(Reply),
    Unknown,
}

/// `MAIL FROM` and the parameters Herald understands (RFC 1870 SIZE, RFC 6152 BODY,
/// RFC 6531 SMTPUTF8).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MailFrom {
    /// The reverse path without angle brackets; empty for a bounce (`<>`).
    pub sender: String,
    pub size: Option<u64>,
    pub smtputf8: bool,
}

/// A reply: code, enhanced status code (RFC 3463; none for 220/221-style greetings), text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub status: Option<&'static str>,
    pub text: String,
}

impl Reply {
    pub fn new(code: u16, status: &'static str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            status: Some(status),
            text: text.into(),
        }
    }

    /// A reply without an enhanced status code (220 greeting, 354).
    pub fn plain(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            status: None,
            text: text.into(),
        }
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => write!(f, "{} {} {}\r\n", self.code, status, self.text),
            None => write!(f, "{} {}\r\n", self.code, self.text),
        }
    }
}

/// Parses one command line (without its CRLF).
pub fn parse(line: &str) -> Command {
    let (verb, rest) = match line.split_once(' ') {
        Some((v, r)) => (v, r.trim()),
        None => (line.trim(), ""),
    };
    match verb.to_ascii_uppercase().as_str() {
        "LHLO" if !rest.is_empty() => Command::Lhlo(rest.to_owned()),
        "LHLO" => Command::Invalid(Reply::new(501, "5.5.4", "LHLO needs a domain")),
        "HELO" | "EHLO" => Command::Helo,
        "MAIL" => parse_mail(rest),
        "RCPT" => match path_after(rest, "TO:") {
            Some((path, _)) if !path.is_empty() => Command::Rcpt(path.to_owned()),
            _ => Command::Invalid(Reply::new(501, "5.5.4", "syntax: RCPT TO:<address>")),
        },
        "DATA" if rest.is_empty() => Command::Data,
        "RSET" => Command::Rset,
        "NOOP" => Command::Noop,
        "QUIT" => Command::Quit,
        "VRFY" => Command::Vrfy,
        "DATA" => Command::Invalid(Reply::new(501, "5.5.4", "DATA takes no arguments")),
        _ => Command::Unknown,
    }
}

/// `<path>` after `prefix` (case-insensitive, spaces allowed after the colon), and what follows.
fn path_after<'a>(rest: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let head = rest.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = rest[prefix.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let end = rest.find('>')?;
    Some((&rest[..end], rest[end + 1..].trim()))
}

fn parse_mail(rest: &str) -> Command {
    let syntax = || Command::Invalid(Reply::new(501, "5.5.4", "syntax: MAIL FROM:<address>"));
    let Some((sender, params)) = path_after(rest, "FROM:") else {
        return syntax();
    };
    let mut mail = MailFrom {
        sender: sender.to_owned(),
        ..MailFrom::default()
    };
    for param in params.split_whitespace() {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        match key.to_ascii_uppercase().as_str() {
            "SIZE" => match value.parse() {
                Ok(n) => mail.size = Some(n),
                Err(_) => {
                    return Command::Invalid(Reply::new(501, "5.5.4", "SIZE=<octets>"));
                }
            },
            "BODY" if ["7BIT", "8BITMIME"].contains(&value.to_ascii_uppercase().as_str()) => {}
            "SMTPUTF8" if value.is_empty() => mail.smtputf8 = true,
            _ => {
                return Command::Invalid(Reply::new(
                    555,
                    "5.5.4",
                    format!("unsupported MAIL parameter {key}"),
                ));
            }
        }
    }
    Command::Mail(mail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_case_insensitive_and_paths_lose_their_brackets() {
        assert_eq!(parse("lhlo mx.example"), Command::Lhlo("mx.example".into()));
        assert_eq!(
            parse("MAIL FROM:<a@b.example> SIZE=1200 BODY=8BITMIME SMTPUTF8"),
            Command::Mail(MailFrom {
                sender: "a@b.example".into(),
                size: Some(1200),
                smtputf8: true
            })
        );
        assert_eq!(parse("mail from: <>"), Command::Mail(MailFrom::default()));
        assert_eq!(
            parse("RCPT TO:<Bob@Example.com>"),
            Command::Rcpt("Bob@Example.com".into())
        );
        assert_eq!(parse("data"), Command::Data);
        assert_eq!(parse("EHLO x"), Command::Helo);
        assert_eq!(parse("STARTTLS"), Command::Unknown);
    }

    #[test]
    fn bad_arguments_are_syntax_errors_with_enhanced_codes() {
        for line in [
            "MAIL FROM:a@b",
            "MAIL TO:<a@b>",
            "RCPT TO:<>",
            "RCPT <a@b>",
            "LHLO",
            "DATA x",
        ] {
            match parse(line) {
                Command::Invalid(r) => {
                    assert_eq!((r.code, r.status), (501, Some("5.5.4")), "{line}");
                }
                other => panic!("{line}: {other:?}"),
            }
        }
        match parse("MAIL FROM:<a@b> AUTH=<>") {
            Command::Invalid(r) => assert_eq!(r.code, 555),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn replies_carry_the_enhanced_status_code() {
        assert_eq!(
            Reply::new(550, "5.1.1", "no such user").to_string(),
            "550 5.1.1 no such user\r\n"
        );
        assert_eq!(
            Reply::plain(354, "go ahead").to_string(),
            "354 go ahead\r\n"
        );
    }
}
