//! Typed reading of method arguments (RFC 8620 §3.5, §1.2–1.3). Unknown, missing or mistyped
//! arguments are `invalidArguments` with a description naming the argument.

use serde::de::{self, DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::jmap::error::MethodError;

/// The largest integer JSON can carry exactly (RFC 8620 §1.3).
pub const MAX_SAFE_INT: i64 = (1 << 53) - 1;

/// A JMAP `Id`: 1–255 octets of `A-Za-z0-9-_` (RFC 8620 §1.2).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Id(pub String);

impl Id {
    /// Whether `s` is a valid Id.
    pub fn is_valid(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 255
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        // A creation-id reference ("#cid") is resolved by the method that accepts it.
        let bare = s.strip_prefix('#').unwrap_or(&s);
        if Id::is_valid(bare) {
            Ok(Id(s))
        } else {
            Err(de::Error::custom(format!("{s:?} is not a valid Id")))
        }
    }
}

/// A fresh random id: one lowercase letter `prefix`, then 15 characters of `[a-z0-9]`.
///
/// RFC 8620 §1.2 advises against ids that start with a digit or dash, are all digits, or differ only
/// in case: a letter prefix and one case avoid all three.
pub fn new_id(prefix: char) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let mut id = String::with_capacity(16);
    id.push(prefix);
    for _ in 0..15 {
        id.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    id
}

/// A fresh id that sorts after the ids made before it: one lowercase letter `prefix`, nine
/// characters of the milliseconds since 1970 in base 36 (digits before letters, so the text sorts
/// as the number does), then ten random characters of `[a-z0-9]`.
///
/// For records made by the hundred thousand (emails, threads): every index keyed by their id then
/// grows at its end, so an import writes a few pages per index and transaction instead of one
/// page per row at a random place (at a million messages, most of the import's disk writes).
/// The order says only in which order records were made, which the ids' users see anyway.
pub fn new_ordered_id(prefix: char) -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    ordered_id_at(prefix, millis)
}

/// [`new_ordered_id`] made at `millis` after 1970.
fn ordered_id_at(prefix: char, millis: u128) -> String {
    use rand::Rng;
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    // 36^9 ms: enough until the year 5,000.
    const TIME_DIGITS: usize = 9;
    let mut id = String::with_capacity(1 + TIME_DIGITS + 10);
    id.push(prefix);
    let mut time = [b'0'; TIME_DIGITS];
    let mut rest = millis;
    for digit in time.iter_mut().rev() {
        *digit = DIGITS[(rest % 36) as usize];
        rest /= 36;
    }
    id.extend(time.iter().map(|d| char::from(*d)));
    let mut rng = rand::rng();
    for _ in 0..10 {
        id.push(char::from(DIGITS[rng.random_range(0..DIGITS.len())]));
    }
    id
}

/// A JMAP `UnsignedInt`: 0 … 2^53−1, never a float.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UnsignedInt(pub u64);

impl<'de> Deserialize<'de> for UnsignedInt {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) => match n.as_u64() {
                Some(v) if v <= MAX_SAFE_INT as u64 => Ok(UnsignedInt(v)),
                _ => Err(de::Error::custom(format!("{n} is not an UnsignedInt"))),
            },
            other => Err(de::Error::custom(format!("{other} is not an UnsignedInt"))),
        }
    }
}

/// A JMAP `Int`: −(2^53−1) … 2^53−1, never a float.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Int(pub i64);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Number(n) => match n.as_i64() {
                Some(v) if (-MAX_SAFE_INT..=MAX_SAFE_INT).contains(&v) => Ok(Int(v)),
                _ => Err(de::Error::custom(format!("{n} is not an Int"))),
            },
            other => Err(de::Error::custom(format!("{other} is not an Int"))),
        }
    }
}

/// The arguments of one call, consumed as the method reads them.
#[derive(Debug, Default)]
pub struct Arguments {
    map: Map<String, Value>,
}

impl Arguments {
    pub fn new(map: Map<String, Value>) -> Self {
        Arguments { map }
    }

    /// Takes the raw value of `name`, if present.
    pub fn take_value(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name)
    }

    /// Whether `name` is present (even as `null`).
    pub fn has(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    /// A required argument that may not be `null`.
    pub fn required<T: DeserializeOwned>(&mut self, name: &str) -> Result<T, MethodError> {
        match self.map.remove(name) {
            None | Some(Value::Null) => {
                Err(MethodError::InvalidArguments(format!("{name} is required")))
            }
            Some(v) => decode(name, v),
        }
    }

    /// An optional argument: absent and `null` both give `None` (RFC 8620 §3.5).
    pub fn optional<T: DeserializeOwned>(&mut self, name: &str) -> Result<Option<T>, MethodError> {
        match self.map.remove(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => decode(name, v).map(Some),
        }
    }

    /// An argument with a default that is not `null`: absent gives the default, `null` is invalid.
    pub fn defaulted<T: DeserializeOwned>(
        &mut self,
        name: &str,
        default: T,
    ) -> Result<T, MethodError> {
        match self.map.remove(name) {
            None => Ok(default),
            Some(Value::Null) => Err(MethodError::InvalidArguments(format!(
                "{name} may not be null"
            ))),
            Some(v) => decode(name, v),
        }
    }

    /// Fails with `invalidArguments` if any argument was left unread.
    pub fn finish(self) -> Result<(), MethodError> {
        if self.map.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = self.map.keys().map(String::as_str).collect();
        Err(MethodError::InvalidArguments(format!(
            "unknown argument(s): {}",
            names.join(", ")
        )))
    }

    /// Every remaining argument, unread.
    pub fn into_map(self) -> Map<String, Value> {
        self.map
    }
}

fn decode<T: DeserializeOwned>(name: &str, v: Value) -> Result<T, MethodError> {
    serde_json::from_value(v).map_err(|e| MethodError::InvalidArguments(format!("{name}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(v: Value) -> Arguments {
        Arguments::new(v.as_object().unwrap().clone())
    }

    #[test]
    fn ids_are_checked_against_the_rfc_alphabet() {
        assert!(Id::is_valid("Ab-_9"));
        for bad in ["", "a b", "a=", "ä", &"x".repeat(256)] {
            assert!(!Id::is_valid(bad), "{bad}");
        }
        let mut a = args(json!({"ids": ["ok", "not ok"]}));
        assert_eq!(
            a.required::<Vec<Id>>("ids").unwrap_err().wire_type(),
            "invalidArguments"
        );
    }

    #[test]
    fn ordered_ids_sort_in_the_order_they_were_made_and_are_valid_ids() {
        let times = [
            0,
            35,
            36,
            1_796_626_063_000,
            1_796_626_063_001,
            36u128.pow(9) - 1,
        ];
        let ids: Vec<String> = times.iter().map(|t| ordered_id_at('e', *t)).collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{pair:?}");
        }
        for id in &ids {
            assert!(
                Id::is_valid(id) && id.starts_with('e') && id.len() == 20,
                "{id}"
            );
        }
        assert_ne!(new_ordered_id('t'), new_ordered_id('t'), "the random part");
    }

    #[test]
    fn integers_outside_the_safe_range_and_floats_are_rejected() {
        let mut a =
            args(json!({"a": 9007199254740992u64, "b": 1.5, "c": -1, "d": 9007199254740991u64}));
        assert!(a.required::<UnsignedInt>("a").is_err());
        assert!(a.required::<Int>("b").is_err());
        assert!(a.required::<UnsignedInt>("c").is_err());
        assert_eq!(
            a.required::<UnsignedInt>("d").unwrap(),
            UnsignedInt(MAX_SAFE_INT as u64)
        );
    }

    #[test]
    fn absent_null_and_unknown_arguments_follow_the_rules() {
        let mut a = args(json!({"n": null, "p": null, "extra": 1}));
        assert_eq!(a.optional::<Int>("n").unwrap(), None);
        assert!(a.defaulted("p", Int(0)).is_err());
        assert_eq!(a.defaulted("q", Int(3)).unwrap(), Int(3));
        let e = a.finish().unwrap_err();
        assert_eq!(
            e,
            MethodError::InvalidArguments("unknown argument(s): extra".into())
        );
    }
}
