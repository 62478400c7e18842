//! RFC 8291 message encryption for Web Push (`Content-Encoding: aes128gcm`, RFC 8188), used for
//! every request to a PushSubscription that has `keys` (RFC 8620 §7.2; checklist WP-07..WP-12).
//!
//! Pure: the caller supplies the ephemeral key and salt, so the RFC 8291 §5 test vector can be
//! reproduced exactly; [`encrypt`] draws fresh ones for every message (WP-08).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Nonce};
use hmac::{Hmac, Mac};
use p256::{PublicKey, SecretKey};
use sha2::Sha256;

use crate::jmap::methods::push_subscription::keys::UaKeys;

/// The record size announced in the header; one record carries the whole message (WP-11).
pub const RECORD_SIZE: u32 = 4096;
/// The largest plaintext that fits one 4096-octet record (WP-12): rs − 16 (tag) − 1 (delimiter)
/// − 86 (header) = 3993.
pub const MAX_PLAINTEXT: usize = 3993;

/// Why a message could not be encrypted, or keys not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebPushError {
    #[error("p256dh is not an uncompressed point on P-256")]
    P256dhPoint,
    #[error("the message is larger than {MAX_PLAINTEXT} octets")]
    TooLarge,
    #[error("encryption failed")]
    Cipher,
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    #[allow(clippy::expect_used, reason = "HMAC accepts keys of any length")]
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// The content-encryption key and nonce (RFC 8291 §3.3–3.4, RFC 8188 §2.2–2.3; WP-10).
fn derive(
    ua: &UaKeys,
    as_secret: &SecretKey,
    as_public: &[u8],
    salt: &[u8; 16],
) -> Result<([u8; 16], [u8; 12]), WebPushError> {
    let ua_public =
        PublicKey::from_sec1_bytes(&ua.p256dh).map_err(|_| WebPushError::P256dhPoint)?;
    let shared = p256::ecdh::diffie_hellman(as_secret.to_nonzero_scalar(), ua_public.as_affine());
    let prk_key = hmac(&ua.auth, &[shared.raw_secret_bytes().as_slice()]);
    let ikm = hmac(
        &prk_key,
        &[b"WebPush: info\0", &ua.p256dh, as_public, &[1u8]],
    );
    let prk = hmac(salt, &[&ikm]);
    let cek = hmac(&prk, &[b"Content-Encoding: aes128gcm\0", &[1u8]]);
    let nonce = hmac(&prk, &[b"Content-Encoding: nonce\0", &[1u8]]);
    let mut out_cek = [0u8; 16];
    out_cek.copy_from_slice(&cek[..16]);
    let mut out_nonce = [0u8; 12];
    out_nonce.copy_from_slice(&nonce[..12]);
    Ok((out_cek, out_nonce))
}

/// Encrypts `plaintext` for `ua` with the given application-server key and salt: one record,
/// no padding (WP-11). Returns the whole request body.
pub fn encrypt_with(
    ua: &UaKeys,
    plaintext: &[u8],
    as_secret: &SecretKey,
    salt: &[u8; 16],
) -> Result<Vec<u8>, WebPushError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(WebPushError::TooLarge);
    }
    let as_public = as_secret.public_key();
    let as_public = p256::EncodedPoint::from(as_public);
    let as_public = as_public.as_bytes();
    let (cek, nonce) = derive(ua, as_secret, as_public, salt)?;
    let mut record = Vec::with_capacity(plaintext.len() + 1);
    record.extend_from_slice(plaintext);
    record.push(0x02); // last-record delimiter (RFC 8188 §2)
    let cipher = Aes128Gcm::new_from_slice(&cek).map_err(|_| WebPushError::Cipher)?;
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &record,
                aad: b"",
            },
        )
        .map_err(|_| WebPushError::Cipher)?;
    let mut body = Vec::with_capacity(16 + 4 + 1 + as_public.len() + sealed.len());
    body.extend_from_slice(salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(as_public.len() as u8);
    body.extend_from_slice(as_public);
    body.extend_from_slice(&sealed);
    Ok(body)
}

/// Encrypts `plaintext` for `ua` with a fresh ephemeral key pair and a fresh random salt (WP-08).
pub fn encrypt(ua: &UaKeys, plaintext: &[u8]) -> Result<Vec<u8>, WebPushError> {
    use rand::RngCore;
    let mut rng = rand::rng();
    let mut salt = [0u8; 16];
    rng.fill_bytes(&mut salt);
    // p256 0.13 wants rand_core 0.6; draw the scalar ourselves (a random 32-octet string is a
    // valid scalar except with negligible probability, so retry on the rare miss).
    let secret = loop {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        if let Ok(s) = SecretKey::from_slice(&bytes) {
            break s;
        }
    };
    encrypt_with(ua, plaintext, &secret, &salt)
}

/// Decrypts a one-record aes128gcm body with the user agent's private key: what a browser does.
/// Used by tests to check deliveries end to end.
pub fn decrypt(ua_secret: &SecretKey, auth: &[u8], body: &[u8]) -> Result<Vec<u8>, WebPushError> {
    if body.len() < 21 {
        return Err(WebPushError::Cipher);
    }
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&body[..16]);
    let idlen = body[20] as usize;
    let header_end = 21 + idlen;
    if body.len() < header_end + 17 {
        return Err(WebPushError::Cipher);
    }
    let as_public = &body[21..header_end];
    let as_key = PublicKey::from_sec1_bytes(as_public).map_err(|_| WebPushError::P256dhPoint)?;
    let ua_public = p256::EncodedPoint::from(ua_secret.public_key());
    let ua = UaKeys {
        p256dh: ua_public.as_bytes().to_vec(),
        auth: auth.to_vec(),
    };
    // ECDH is symmetric: derive with the UA's secret and the AS public key, but the info string
    // still names ua_pub then as_pub.
    let shared = p256::ecdh::diffie_hellman(ua_secret.to_nonzero_scalar(), as_key.as_affine());
    let prk_key = hmac(&ua.auth, &[shared.raw_secret_bytes().as_slice()]);
    let ikm = hmac(
        &prk_key,
        &[b"WebPush: info\0", &ua.p256dh, as_public, &[1u8]],
    );
    let prk = hmac(&salt, &[&ikm]);
    let cek = hmac(&prk, &[b"Content-Encoding: aes128gcm\0", &[1u8]]);
    let nonce = hmac(&prk, &[b"Content-Encoding: nonce\0", &[1u8]]);
    let cipher = Aes128Gcm::new_from_slice(&cek[..16]).map_err(|_| WebPushError::Cipher)?;
    let mut record = cipher
        .decrypt(Nonce::from_slice(&nonce[..12]), &body[header_end..])
        .map_err(|_| WebPushError::Cipher)?;
    // Strip padding and the delimiter.
    while record.last() == Some(&0) {
        record.pop();
    }
    match record.pop() {
        Some(0x02) => Ok(record),
        _ => Err(WebPushError::Cipher),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jmap::methods::push_subscription::keys::{decode_base64url, encode_base64url};

    fn b64(s: &str) -> Vec<u8> {
        decode_base64url(s).unwrap()
    }

    /// RFC 8291 §5 / checklist WP-14, with the ephemeral key and salt injected.
    #[test]
    fn the_rfc_8291_test_vector_is_reproduced_exactly() {
        let ua = UaKeys::parse(
            "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
            "BTBZMqHH6r4Tts7J_aSIgg",
        )
        .unwrap();
        let as_secret =
            SecretKey::from_slice(&b64("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw")).unwrap();
        let as_public = p256::EncodedPoint::from(as_secret.public_key());
        assert_eq!(
            encode_base64url(as_public.as_bytes()),
            "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
        );
        let mut salt = [0u8; 16];
        salt.copy_from_slice(&b64("DGv6ra1nlYgDCS1FRnbzlw"));

        let ua_public = PublicKey::from_sec1_bytes(&ua.p256dh).unwrap();
        let shared =
            p256::ecdh::diffie_hellman(as_secret.to_nonzero_scalar(), ua_public.as_affine());
        assert_eq!(
            encode_base64url(shared.raw_secret_bytes()),
            "kyrL1jIIOHEzg3sM2ZWRHDRB62YACZhhSlknJ672kSs"
        );
        let (cek, nonce) = derive(&ua, &as_secret, as_public.as_bytes(), &salt).unwrap();
        assert_eq!(encode_base64url(&cek), "oIhVW04MRdy2XN9CiKLxTg");
        assert_eq!(encode_base64url(&nonce), "4h_95klXJ5E_qnoN");

        let body = encrypt_with(
            &ua,
            b"When I grow up, I want to be a watermelon",
            &as_secret,
            &salt,
        )
        .unwrap();
        assert_eq!(body.len(), 144);
        assert_eq!(
            encode_base64url(&body),
            "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
        );
    }

    #[test]
    fn the_rfc_8291_user_agent_decrypts_a_fresh_message() {
        let ua_secret =
            SecretKey::from_slice(&b64("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94")).unwrap();
        let ua_public = p256::EncodedPoint::from(ua_secret.public_key());
        let auth = b64("BTBZMqHH6r4Tts7J_aSIgg");
        let ua = UaKeys::from_bytes(ua_public.as_bytes().to_vec(), auth.clone()).unwrap();
        let a = encrypt(&ua, b"{\"@type\":\"StateChange\"}").unwrap();
        let b = encrypt(&ua, b"{\"@type\":\"StateChange\"}").unwrap();
        assert_ne!(a[..16], b[..16], "a fresh salt per message (WP-08)");
        assert_ne!(a[21..86], b[21..86], "a fresh key per message (WP-08)");
        assert_eq!(
            decrypt(&ua_secret, &auth, &a).unwrap(),
            b"{\"@type\":\"StateChange\"}"
        );
    }

    #[test]
    fn a_message_larger_than_one_record_is_refused() {
        let good_point = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
        assert!(
            encrypt(
                &UaKeys::parse(good_point, "BTBZMqHH6r4Tts7J_aSIgg").unwrap(),
                &[b'x'; 3994]
            )
            .is_err()
        );
    }
}
