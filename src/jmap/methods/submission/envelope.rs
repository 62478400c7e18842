//! The envelope of an EmailSubmission (RFC 8621 §7, SUB-02, SUB-03): reading a client's
//! Envelope, the FUTURERELEASE parameters that delay sending (RFC 4865), and the message as sent
//! (without Bcc, SUB-07).

use serde_json::{Map, Value, json};

use crate::jmap::standard::SetError;

/// A client's Envelope, read.
#[derive(Debug, PartialEq, Eq)]
pub struct Envelope {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The `mailFrom` parameters (`HOLDFOR`, `HOLDUNTIL`, …).
    pub parameters: Map<String, Value>,
}

/// The email addresses of every field given: one (an `Option`), or each of a repeated To, Cc or
/// Bcc (RFC 5322 §4.5.3).
pub fn addresses_of<'a, 'x: 'a>(
    fields: impl IntoIterator<Item = &'a mail_parser::Address<'x>>,
) -> Vec<String> {
    fields
        .into_iter()
        .flat_map(mail_parser::Address::iter)
        .filter_map(|x| x.address())
        .map(str::to_owned)
        .collect()
}

/// Removes every `Bcc` header field (with its folded lines) from a message (SUB-07).
pub fn strip_bcc(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut rest = message;
    let mut skipping = false;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|b| *b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        if line == b"\r\n" || line == b"\n" {
            out.extend_from_slice(rest);
            return out;
        }
        let folded = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !folded {
            skipping = is_bcc_field(line);
        }
        if !skipping {
            out.extend_from_slice(line);
        }
        rest = tail;
    }
    out
}

/// Whether a header line starts a Bcc field: the name, any case, then the colon, with white
/// space allowed between them (RFC 5322 §4.5, obsolete syntax that parsers, ours included, read
/// as Bcc all the same).
fn is_bcc_field(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|b| *b == b':') else {
        return false;
    };
    line[..colon].trim_ascii_end().eq_ignore_ascii_case(b"bcc")
}

/// An Address (`{email, parameters}`): its email and parameters, if well formed.
fn envelope_address(v: &Value) -> Option<(String, Map<String, Value>)> {
    let o = v.as_object()?;
    let email = o.get("email")?.as_str()?;
    let parameters = match o.get("parameters") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) if p.values().all(|x| x.is_null() || x.is_string()) => p.clone(),
        Some(_) => return None,
    };
    o.keys()
        .all(|k| k == "email" || k == "parameters")
        .then(|| (email.to_owned(), parameters))
}

/// Reads a client envelope (SUB-02).
pub fn read_envelope(v: &Value) -> Result<Envelope, SetError> {
    let bad = || SetError::invalid_properties(&["envelope"], "an Envelope is {mailFrom, rcptTo}");
    let o = v.as_object().ok_or_else(bad)?;
    let (mail_from, parameters) = o
        .get("mailFrom")
        .and_then(envelope_address)
        .ok_or_else(bad)?;
    let rcpt_to = o
        .get("rcptTo")
        .and_then(Value::as_array)
        .ok_or_else(bad)?
        .iter()
        .map(|a| envelope_address(a).map(|(email, _)| email).ok_or_else(bad))
        .collect::<Result<Vec<_>, _>>()?;
    if o.keys().any(|k| k != "mailFrom" && k != "rcptTo") {
        return Err(bad());
    }
    Ok(Envelope {
        mail_from,
        rcpt_to,
        parameters,
    })
}

/// The Envelope the server derived from the message (SUB-03).
pub fn envelope_json(from: &str, rcpt: &[String]) -> Value {
    json!({
        "mailFrom": {"email": from, "parameters": null},
        "rcptTo": rcpt.iter().map(|r| json!({"email": r, "parameters": null})).collect::<Vec<_>>(),
    })
}

/// When to send (seconds since the epoch), from the `HOLDFOR` (seconds from now) or `HOLDUNTIL`
/// (an RFC 3339 date-time) parameter of `mailFrom` (RFC 4865 §3), at most `max_delay_secs` from
/// `now`; `now` without either. `Err` says what is wrong.
pub fn send_at(
    parameters: &Map<String, Value>,
    now: i64,
    max_delay_secs: u64,
) -> Result<i64, String> {
    let param = |name: &str| {
        parameters
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_str())
    };
    let at = match (param("HOLDFOR"), param("HOLDUNTIL")) {
        (None, None) => return Ok(now),
        (Some(_), Some(_)) => return Err("HOLDFOR and HOLDUNTIL exclude each other".into()),
        (Some(secs), None) => {
            let secs: u64 = secs
                .parse()
                .map_err(|_| format!("HOLDFOR is a number of seconds, not {secs:?}"))?;
            now.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX))
        }
        (None, Some(date)) => chrono::DateTime::parse_from_rfc3339(date)
            .map_err(|_| format!("HOLDUNTIL is an RFC 3339 date-time, not {date:?}"))?
            .timestamp()
            .max(now),
    };
    if max_delay_secs == 0 {
        return Err("this server does not delay sending (maxDelayedSend is 0)".into());
    }
    if at - now > i64::try_from(max_delay_secs).unwrap_or(i64::MAX) {
        return Err(format!(
            "sending can be delayed by at most {max_delay_secs} seconds (maxDelayedSend)"
        ));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jmap::standard::SetErrorType;

    #[test]
    fn bcc_fields_and_their_folded_lines_are_stripped_from_the_header_only() {
        let m = b"From: a@x\r\nBcc: b@x,\r\n c@x\r\nTo: d@x\r\n\r\nBcc: body stays\r\n";
        assert_eq!(
            strip_bcc(m),
            b"From: a@x\r\nTo: d@x\r\n\r\nBcc: body stays\r\n".to_vec()
        );
        // Obsolete syntax (RFC 5322 §4.5): white space before the colon is still Bcc.
        let m = b"BCC : b@x\r\nBcc\t: c@x\r\nBccx: kept\r\nTo: d@x\r\n\r\n";
        assert_eq!(strip_bcc(m), b"Bccx: kept\r\nTo: d@x\r\n\r\n".to_vec());
    }

    #[test]
    fn an_envelope_needs_mail_from_and_rcpt_to_addresses() {
        let ok = json!({"mailFrom": {"email": "a@x", "parameters": {"HOLDFOR": "60"}}, "rcptTo": [{"email": "b@x", "parameters": null}]});
        let e = read_envelope(&ok).unwrap();
        assert_eq!(
            (e.mail_from.as_str(), e.rcpt_to),
            ("a@x", vec!["b@x".into()])
        );
        assert_eq!(e.parameters["HOLDFOR"], "60");
        for bad in [
            json!({"mailFrom": "a@x", "rcptTo": []}),
            json!({"rcptTo": []}),
            json!({"mailFrom": {"email": "a@x", "parameters": {"HOLDFOR": 60}}, "rcptTo": []}),
        ] {
            assert_eq!(
                read_envelope(&bad).unwrap_err().kind,
                SetErrorType::InvalidProperties
            );
        }
    }

    #[test]
    fn holdfor_and_holduntil_delay_sending_up_to_the_maximum() {
        let now = 1_800_000_000; // 2027-01-15T08:00:00Z
        let p = |k: &str, v: &str| {
            let mut m = Map::new();
            m.insert(k.into(), json!(v));
            m
        };
        assert_eq!(send_at(&Map::new(), now, 0), Ok(now));
        assert_eq!(send_at(&p("HOLDFOR", "600"), now, 3600), Ok(now + 600));
        assert_eq!(send_at(&p("holdfor", "600"), now, 3600), Ok(now + 600));
        let until = chrono::DateTime::parse_from_rfc3339("2027-01-15T09:30:00Z")
            .unwrap()
            .timestamp();
        assert_eq!(
            send_at(&p("HOLDUNTIL", "2027-01-15T09:30:00Z"), now, 7200),
            Ok(until)
        );
        // A date in the past means now.
        assert_eq!(
            send_at(&p("HOLDUNTIL", "2001-01-01T00:00:00Z"), now, 60),
            Ok(now)
        );
        assert!(send_at(&p("HOLDFOR", "3601"), now, 3600).is_err());
        assert!(send_at(&p("HOLDFOR", "60"), now, 0).is_err());
        assert!(send_at(&p("HOLDFOR", "soon"), now, 3600).is_err());
        assert!(send_at(&p("HOLDUNTIL", "tomorrow"), now, 3600).is_err());
        let mut both = p("HOLDFOR", "1");
        both.insert("HOLDUNTIL".into(), json!("2027-01-15T08:00:00Z"));
        assert!(send_at(&both, now, 3600).is_err());
    }
}
