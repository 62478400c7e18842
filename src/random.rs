//! Unguessable tokens: ids of messages and deliveries, secrets, verification codes.

/// A random secret of `bytes` bytes from the thread's CSPRNG, base64url without padding.
pub fn random_secret(bytes: usize) -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}
