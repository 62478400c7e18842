//! A push subscription's `keys` (RFC 8620 §7.2, RFC 8291 §2): the user agent's P-256 public key
//! and authentication secret, checked when the subscription is created (WP-09) and used by the
//! webhook sender to encrypt every message (`crate::push::webpush`).

use base64::Engine;
use p256::PublicKey;

/// Why `keys` were not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("p256dh is not base64url")]
    P256dhEncoding,
    #[error("p256dh is not an uncompressed point on P-256")]
    P256dhPoint,
    #[error("auth is not base64url")]
    AuthEncoding,
    #[error("auth is not 16 octets")]
    AuthLength,
}

/// A user agent's keys (RFC 8291 §2): its public key and authentication secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UaKeys {
    /// The uncompressed P-256 point, 65 octets starting with 0x04.
    pub p256dh: Vec<u8>,
    /// 16 octets.
    pub auth: Vec<u8>,
}

/// Decodes base64url with or without padding (WP-09).
pub fn decode_base64url(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .ok()
}

/// Encodes base64url without padding.
pub fn encode_base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl UaKeys {
    /// Parses and validates the `keys` of a PushSubscription (RFC 8291 §7, WP-09).
    pub fn parse(p256dh: &str, auth: &str) -> Result<UaKeys, KeyError> {
        let p256dh = decode_base64url(p256dh).ok_or(KeyError::P256dhEncoding)?;
        Self::from_bytes(
            p256dh,
            decode_base64url(auth).ok_or(KeyError::AuthEncoding)?,
        )
    }

    /// Validates raw key bytes.
    pub fn from_bytes(p256dh: Vec<u8>, auth: Vec<u8>) -> Result<UaKeys, KeyError> {
        if p256dh.len() != 65 || p256dh[0] != 0x04 || PublicKey::from_sec1_bytes(&p256dh).is_err() {
            return Err(KeyError::P256dhPoint);
        }
        if auth.len() != 16 {
            return Err(KeyError::AuthLength);
        }
        Ok(UaKeys { p256dh, auth })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> Vec<u8> {
        decode_base64url(s).unwrap()
    }

    #[test]
    fn keys_that_are_not_a_p256_point_or_16_octets_are_refused() {
        let good_point = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
        // Padding is accepted (WP-09).
        assert!(UaKeys::parse(good_point, "BTBZMqHH6r4Tts7J_aSIgg==").is_ok());
        assert_eq!(
            UaKeys::parse(good_point, "BTBZMqHH6r4Tts7J").unwrap_err(),
            KeyError::AuthLength
        );
        let mut off_curve = b64(good_point);
        off_curve[64] ^= 1;
        assert_eq!(
            UaKeys::parse(&encode_base64url(&off_curve), "BTBZMqHH6r4Tts7J_aSIgg").unwrap_err(),
            KeyError::P256dhPoint
        );
        assert_eq!(
            UaKeys::parse("not base64!", "BTBZMqHH6r4Tts7J_aSIgg").unwrap_err(),
            KeyError::P256dhEncoding
        );
    }
}
