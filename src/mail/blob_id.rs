//! Blob ids of message parts (RFC 8621 §4.1.4 `blobId` of an EmailBodyPart).
//!
//! Parts are not stored separately. A part's blob id is its message's blob id, `_`, and the part's
//! `partId`: `b<sha256-hex>_3`. The part of an attached message (`message/rfc822`, whose own bytes are
//! part `3`) is `b<sha256-hex>_3_2`, and so on. These are valid JMAP Ids (T-02: letters, digits,
//! `_`), at most 255 octets, and downloading one re-parses the stored message and returns the
//! part's bytes after transfer decoding (EML-10).

use super::Email;

/// Separates a stored blob id from the part path.
pub const SEPARATOR: char = '_';

/// The deepest chain of attached messages a part blob id may follow; each level parses a message.
pub const MAX_NESTING: usize = 8;

/// The blob id of part `part_id` of the message whose blob id is `message_blob_id`, or `None`
/// when it would be longer than an Id may be.
pub fn part(message_blob_id: &str, part_id: &str) -> Option<String> {
    let id = format!("{message_blob_id}{SEPARATOR}{part_id}");
    (id.len() <= 255).then_some(id)
}

/// Splits a blob id into its stored blob id and the part path (empty for a stored blob). `None`
/// when it is not a well-formed blob id.
pub fn split(blob_id: &str) -> Option<(&str, Vec<&str>)> {
    if blob_id.is_empty()
        || blob_id.len() > 255
        || !blob_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return None;
    }
    let mut pieces = blob_id.split(SEPARATOR);
    let base = pieces.next()?;
    let path: Vec<&str> = pieces.collect();
    if base.is_empty() || path.len() > MAX_NESTING || path.iter().any(|p| p.is_empty()) {
        return None;
    }
    Some((base, path))
}

/// Follows `path` (part ids, outermost first) from the bytes of a stored message. `None` if a step
/// names no leaf part of its message.
pub fn resolve(mut bytes: Vec<u8>, path: &[&str]) -> Option<Vec<u8>> {
    for part_id in path {
        let email = Email::parse(&bytes)?;
        bytes = email.part(part_id)?.content.clone();
    }
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jmap::args::Id;

    #[test]
    fn part_blob_ids_are_valid_ids_and_split_back() {
        let base = format!("b{}", "a".repeat(64));
        let id = part(&base, "3").unwrap();
        assert!(Id::is_valid(&id));
        assert_eq!(split(&id), Some((base.as_str(), vec!["3"])));
        let nested = part(&id, "2").unwrap();
        assert_eq!(split(&nested), Some((base.as_str(), vec!["3", "2"])));
        assert_eq!(split(&base), Some((base.as_str(), vec![])));
        let too_deep = format!("{base}{}", "_1".repeat(MAX_NESTING + 1));
        for bad in ["", "b_", "_3", "b__3", "b/3", "b 3", too_deep.as_str()] {
            assert_eq!(split(bad), None, "{bad}");
        }
        assert_eq!(part(&"x".repeat(254), "1"), None);
    }
}
