//! Strict I-JSON parsing (RFC 7493, required by RFC 8620 §1.5).
//!
//! `serde_json::Value` silently keeps the last of two members with the same name; I-JSON forbids
//! duplicates, so this parser rejects them (checklist T-01, T-10).

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Parses `bytes` as one I-JSON value: UTF-8, no duplicate member names, nothing after it.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("body is not UTF-8: {e}"))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let value = StrictValue
        .deserialize(&mut de)
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// The length of `value` in compact JSON, counting each string's characters once (escapes
/// not counted): a cheap measure of what a value costs to hold and to send, without encoding it.
pub fn encoded_len(value: &Value) -> usize {
    match value {
        Value::Null => 4,
        Value::Bool(b) => 4 + usize::from(!b),
        // Numbers here come from JSON text or small counters: 20 octets bounds an i64/u64.
        Value::Number(_) => 20,
        Value::String(s) => s.len() + 2,
        // Brackets, and a comma between two items.
        Value::Array(items) => {
            2 + items.len().saturating_sub(1) + items.iter().map(encoded_len).sum::<usize>()
        }
        // Braces, commas, and per member its quoted name and a colon.
        Value::Object(members) => {
            2 + members.len().saturating_sub(1)
                + members
                    .iter()
                    .map(|(k, v)| k.len() + 3 + encoded_len(v))
                    .sum::<usize>()
        }
    }
}

struct StrictValue;

impl<'de> DeserializeSeed<'de> for StrictValue {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictValue)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate member name {key:?}")));
            }
            let v = map.next_value_seed(StrictValue)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encoded_length_is_that_of_compact_json_for_strings_and_containers() {
        let v = serde_json::json!({"ids": ["e1", "e2"], "nested": {"k": [null, true, false, "x"]}});
        assert_eq!(encoded_len(&v), v.to_string().len());
        // Numbers count as 20 octets, whatever their digits.
        assert_eq!(encoded_len(&serde_json::json!([1])), 22);
        assert_eq!(encoded_len(&serde_json::json!([[], {}])), 7);
    }

    #[test]
    fn duplicate_member_names_are_rejected_at_any_depth() {
        assert!(parse_strict(br#"{"a":1,"a":2}"#).is_err());
        assert!(parse_strict(br#"{"x":[{"b":1,"b":1}]}"#).is_err());
        assert_eq!(parse_strict(br#"{"a":{"a":1}}"#).unwrap()["a"]["a"], 1);
    }

    #[test]
    fn trailing_garbage_and_invalid_utf8_are_rejected() {
        assert!(parse_strict(b"{} x").is_err());
        assert!(parse_strict(b"\"\xff\"").is_err());
        assert!(parse_strict(b"").is_err());
    }
}
