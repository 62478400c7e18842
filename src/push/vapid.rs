//! VAPID (RFC 8292): the server identifies itself to Web Push services with an ES256-signed JWT
//! on every push, and advertises the public key in the session (RFC 9749,
//! `urn:ietf:params:jmap:webpush-vapid`) so a browser can subscribe with it.
//!
//! The key pair lives in the store (`server_secrets`, name `vapid`), so every node of a cluster
//! signs with the same key. A token is made per push-service origin and reused until shortly
//! before it expires; push services accept at most 24 hours (Apple refuses more).

use std::collections::HashMap;

use base64::Engine;
use p256::SecretKey;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use serde_json::json;

/// The name of the key in `server_secrets`.
pub const SECRET_NAME: &str = "vapid";
/// How long a token is valid: half of the 24 hours push services allow.
const TOKEN_LIFETIME_SECS: i64 = 12 * 3600;
/// A cached token is replaced when less than this is left of it.
const RENEW_BEFORE_SECS: i64 = 3600;

/// A stored key that is not a P-256 private key.
#[derive(Debug, thiserror::Error)]
#[error("the stored VAPID key is not a P-256 private key in base64url")]
pub struct BadVapidKey;

/// The server's VAPID key pair.
#[derive(Clone)]
pub struct VapidKey {
    signing: SigningKey,
    /// The uncompressed public point, base64url (RFC 8292 §3.2 `k`, RFC 9749
    /// `applicationServerKey`).
    public: String,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl VapidKey {
    /// A new private key as stored: 32 octets, base64url.
    pub fn generate_secret() -> String {
        use rand::RngCore;
        loop {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            // All but a 2^-128 share of 32-octet strings are valid scalars.
            if let Ok(secret) = SecretKey::from_slice(&bytes) {
                return b64(&secret.to_bytes());
            }
        }
    }

    /// The key pair of a stored secret.
    pub fn from_secret(secret: &str) -> Result<VapidKey, BadVapidKey> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(secret.trim())
            .map_err(|_| BadVapidKey)?;
        let secret = SecretKey::from_slice(&bytes).map_err(|_| BadVapidKey)?;
        let public = b64(secret.public_key().to_encoded_point(false).as_bytes());
        Ok(VapidKey {
            signing: SigningKey::from(secret),
            public,
        })
    }

    /// The public key, base64url of the uncompressed point.
    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// A JWT (RFC 7519) signed with ES256 (RFC 7518 §3.4) for `audience` (a push service's
    /// origin), valid until `expires_at` (seconds since the epoch).
    pub fn token(&self, audience: &str, subject: &str, expires_at: i64) -> String {
        let header = b64(json!({"typ": "JWT", "alg": "ES256"}).to_string().as_bytes());
        let claims = b64(json!({"aud": audience, "exp": expires_at, "sub": subject})
            .to_string()
            .as_bytes());
        let signing_input = format!("{header}.{claims}");
        let signature: Signature = self.signing.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", b64(&signature.to_bytes()))
    }
}

/// Signs pushes: one token per push-service origin, renewed before it expires.
pub struct VapidSigner {
    key: VapidKey,
    subject: String,
    tokens: HashMap<String, (String, i64)>,
}

impl VapidSigner {
    /// `subject` is the contact URI push services see (`mailto:` or `https:`, RFC 8292 §2.1).
    pub fn new(key: VapidKey, subject: String) -> VapidSigner {
        VapidSigner {
            key,
            subject,
            tokens: HashMap::new(),
        }
    }

    /// The `Authorization` header for a push to `url` at `now` (RFC 8292 §3), or `None` when the
    /// URL has no origin.
    pub fn authorization(&mut self, url: &str, now: i64) -> Option<String> {
        let audience = origin(url)?;
        let (token, expires_at) = self.tokens.entry(audience.clone()).or_default();
        if *expires_at - now < RENEW_BEFORE_SECS {
            *expires_at = now + TOKEN_LIFETIME_SECS;
            *token = self.key.token(&audience, &self.subject, *expires_at);
        }
        Some(format!("vapid t={token}, k={}", self.key.public))
    }
}

/// `scheme://host[:port]` of an absolute http(s) URL, lowercased, without a default port.
pub fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?.to_ascii_lowercase();
    if authority.is_empty() || !matches!(scheme.as_str(), "http" | "https") {
        return None;
    }
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let authority = authority.strip_suffix(default_port).unwrap_or(&authority);
    Some(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::VerifyingKey;
    use p256::ecdsa::signature::Verifier;

    #[test]
    fn origins_drop_paths_credentials_and_default_ports() {
        assert_eq!(
            origin("https://FCM.googleapis.com:443/fcm/send/abc?x=1").as_deref(),
            Some("https://fcm.googleapis.com")
        );
        assert_eq!(
            origin("http://user@127.0.0.1:8080/push").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(origin("mailto:a@b"), None);
    }

    #[test]
    fn a_token_verifies_with_the_advertised_public_key() {
        let key = VapidKey::from_secret(&VapidKey::generate_secret()).unwrap();
        let token = key.token("https://push.example", "mailto:ops@example.com", 1_000);
        let (input, signature) = token.rsplit_once('.').unwrap();
        let public = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(key.public_key())
            .unwrap();
        let verifying = VerifyingKey::from_sec1_bytes(&public).unwrap();
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature)
            .unwrap();
        let signature = Signature::from_slice(&signature).unwrap();
        verifying.verify(input.as_bytes(), &signature).unwrap();
    }

    #[test]
    fn a_token_is_reused_per_origin_until_an_hour_before_it_expires() {
        let key = VapidKey::from_secret(&VapidKey::generate_secret()).unwrap();
        let mut signer = VapidSigner::new(key, "mailto:ops@example.com".into());
        let first = signer.authorization("https://a.example/1", 0).unwrap();
        assert_eq!(
            signer.authorization("https://a.example/2", 3600).unwrap(),
            first
        );
        assert_ne!(
            signer.authorization("https://b.example/1", 3600).unwrap(),
            first
        );
        assert_ne!(
            signer
                .authorization("https://a.example/1", TOKEN_LIFETIME_SECS - 60)
                .unwrap(),
            first
        );
        assert!(first.starts_with("vapid t=") && first.contains(", k="));
    }
}
