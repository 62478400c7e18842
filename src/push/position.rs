//! Push positions and the StateChange object (RFC 8620 §7.1).
//!
//! The push position of an account is its newest change-log `seq`. A stream (one WebSocket or
//! EventSource connection) covers every account its user may read; its position is the map
//! account → seq. That map, encoded, is the WebSocket `pushState` (RFC 8887 §4.3.5) and the
//! EventSource event `id` (RFC 8620 §7.3): a client that comes back with it is told at once what
//! changed since.
//!
//! Encoding: `"p"` followed by base64url (no padding) of `acct=seq` pairs joined by `,`, accounts in
//! order. Opaque to clients; versioned by its first letter so it can change.

use std::collections::BTreeMap;
use std::fmt::Write;

use base64::Engine;

use crate::jmap::changes::write_state_string;

/// Account id → newest seq seen on a stream.
pub type Positions = BTreeMap<String, i64>;

/// Account id → (data type → new state seq): what a StateChange reports.
pub type Changed = BTreeMap<String, BTreeMap<String, i64>>;

const VERSION: char = 'p';

/// Encodes a stream position as a `pushState` / event id.
pub fn encode(positions: &Positions) -> String {
    let (mut out, mut plain) = (String::new(), String::new());
    encode_into(
        &mut out,
        &mut plain,
        positions.iter().map(|(a, seq)| (a.as_str(), *seq)),
    );
    out
}

/// Appends the encoding of the (account, seq) `pairs`, given in account order, to `out`; `plain`
/// is room to work in (push renders a position for every connection on every write).
pub fn encode_into<'a>(
    out: &mut String,
    plain: &mut String,
    pairs: impl IntoIterator<Item = (&'a str, i64)>,
) {
    plain.clear();
    for (i, (account, seq)) in pairs.into_iter().enumerate() {
        if i > 0 {
            plain.push(',');
        }
        let _ = write!(plain, "{account}={seq}");
    }
    out.reserve(1 + plain.len().div_ceil(3) * 4);
    out.push(VERSION);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(plain.as_bytes(), out);
}

/// Decodes a `pushState` / event id; `None` for anything this server never issued.
pub fn decode(token: &str) -> Option<Positions> {
    let body = token.strip_prefix(VERSION)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .ok()?;
    let plain = String::from_utf8(bytes).ok()?;
    let mut positions = Positions::new();
    if plain.is_empty() {
        return Some(positions);
    }
    for pair in plain.split(',') {
        let (account, seq) = pair.split_once('=')?;
        let seq: i64 = seq.parse().ok()?;
        if account.is_empty() || seq < 0 || positions.insert(account.to_owned(), seq).is_some() {
            return None;
        }
    }
    Some(positions)
}

/// The StateChange object (RFC 8620 §7.1) as JSON text: `{"@type":"StateChange","changed":{…}}`,
/// each state being the type's Foo/get state (checklist ST-06), plus `pushState` when given
/// (RFC 8887 §4.3.5.1).
pub fn state_change(changed: &Changed, push_state: Option<&str>) -> String {
    let mut out = String::with_capacity(64 + 48 * changed.len());
    write_state_change(
        &mut out,
        changed.iter().flat_map(|(account, types)| {
            types
                .iter()
                .map(move |(t, seq)| (account.as_str(), t.as_str(), *seq))
        }),
        push_state,
    );
    out
}

/// Appends the StateChange of the (account, data type, state) `states`, given in account order,
/// to `out`. Written straight as text: it is rendered for every connection on every write, and a
/// `serde_json::Value` tree cost an allocation per key.
pub fn write_state_change<'a>(
    out: &mut String,
    states: impl IntoIterator<Item = (&'a str, &'a str, i64)>,
    push_state: Option<&str>,
) {
    out.push_str(r#"{"@type":"StateChange","changed":{"#);
    let mut current: Option<&str> = None;
    for (account, t, seq) in states {
        if current == Some(account) {
            out.push(',');
        } else {
            if current.is_some() {
                out.push_str("},");
            }
            push_json_string(out, account);
            out.push_str(":{");
            current = Some(account);
        }
        push_json_string(out, t);
        out.push_str(":\"");
        write_state_string(out, seq);
        out.push('"');
    }
    if current.is_some() {
        out.push('}');
    }
    out.push('}');
    if let Some(p) = push_state {
        out.push_str(r#","pushState":"#);
        push_json_string(out, p);
    }
    out.push('}');
}

/// Appends `s` as a JSON string (RFC 8259 §7).
fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jmap::changes::state_string;
    use serde_json::{Value, json};

    #[test]
    fn positions_survive_a_round_trip_and_foreign_tokens_do_not_decode() {
        let mut p = Positions::new();
        p.insert("a1x".into(), 17);
        p.insert("b2y".into(), 0);
        let token = encode(&p);
        assert!(token.starts_with('p'));
        assert!(
            token
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(decode(&token), Some(p));
        assert_eq!(decode(&encode(&Positions::new())), Some(Positions::new()));
        for bad in ["", "x", "p!!", "q", "p="] {
            assert_eq!(decode(bad), None, "{bad}");
        }
        for raw in ["a=x", "=1", "a=1,a=2", "a=-1", "a"] {
            let token = format!(
                "p{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
            );
            assert_eq!(decode(&token), None, "{raw}");
        }
    }

    #[test]
    fn a_state_change_names_each_type_with_its_state_string() {
        let mut changed = Changed::new();
        changed
            .entry("A1".into())
            .or_default()
            .insert("Mailbox".into(), 9);
        changed
            .entry("A1".into())
            .or_default()
            .insert("Email".into(), 8);
        changed
            .entry("B\"2\u{1}".into())
            .or_default()
            .insert("Thread".into(), 3);
        let v: Value = serde_json::from_str(&state_change(&changed, Some("pX"))).unwrap();
        assert_eq!(
            v,
            json!({"@type":"StateChange","changed":{
                "A1":{"Mailbox": state_string(9), "Email": state_string(8)},
                "B\"2\u{1}":{"Thread": state_string(3)},
            },"pushState":"pX"})
        );
        let v: Value = serde_json::from_str(&state_change(&changed, None)).unwrap();
        assert!(v.get("pushState").is_none());
    }
}
