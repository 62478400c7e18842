//! RFC 2231 parameter values (`filename*=utf-8''r%C3%A9el.pdf`, `name*0*=…; name*1*=…`) of a
//! Content-Type or Content-Disposition field, read from the field's raw value.
//!
//! mail-parser decodes an extended parameter under the plain name, so a field that carries both
//! (`filename="fallback.pdf"; filename*=UTF-8''r%C3%A9el.pdf`, as browsers and most clients send
//! for a non-ASCII name) lists two `filename`s and its lookup returns whichever came first; and
//! it appends continuations to a plain value of the same name. RFC 6266 §4.3 (and RFC 2231 §4):
//! when both are present, the extended one is the one to use, in either order.

use std::borrow::Cow;

use super::text;

/// The parameters after the field's value, names lowercased, values unquoted; anything that
/// cannot be read is skipped.
fn parameters(raw: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some((_, mut rest)) = raw.split_once(';') else {
        return out;
    };
    loop {
        let Some(eq) = rest.find(['=', ';']) else {
            return out;
        };
        if rest[eq..].starts_with(';') {
            rest = &rest[eq + 1..];
            continue;
        }
        let name = rest[..eq].trim().to_ascii_lowercase();
        let value = rest[eq + 1..].trim_start();
        let (value, after) = if let Some(quoted) = value.strip_prefix('"') {
            unquote(quoted)
        } else {
            let end = value.find(';').unwrap_or(value.len());
            (Cow::Borrowed(value[..end].trim()), &value[end..])
        };
        out.push((name, value.into_owned()));
        match after.find(';') {
            Some(next) => rest = &after[next + 1..],
            None => return out,
        }
    }
}

/// The content of a quoted string that `s` continues (after its opening quote), with its escapes
/// undone, and what follows its closing quote.
fn unquote(s: &str) -> (Cow<'_, str>, &str) {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (Cow::Owned(value), &s[i + 1..]),
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            '\r' | '\n' => {}
            c => value.push(c),
        }
    }
    (Cow::Owned(value), "")
}

/// `%XX` escapes decoded (RFC 2231 §4); a `%` without two hex digits stays as it is.
fn percent_decode(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(octet)) => {
                out.push(octet);
                i += 3;
            }
            (octet, _) => {
                out.push(octet);
                i += 1;
            }
        }
    }
}

/// The value of parameter `name` in its plain form (`name=value`) in `raw`, as written.
pub fn plain(raw: &str, name: &str) -> Option<String> {
    parameters(raw)
        .into_iter()
        .find(|(param, _)| param == name)
        .map(|(_, value)| value)
}

/// The value of parameter `name` given in RFC 2231 form in `raw` (a field's raw value): `name*`,
/// or the continuations `name*0`, `name*1*`… joined in order; `None` when it is given only in
/// the plain form (or not at all).
pub fn extended(raw: &str, name: &str) -> Option<String> {
    let mut segments: Vec<(u32, bool, String)> = Vec::new();
    for (param, value) in parameters(raw) {
        let Some(section) = param
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('*'))
        else {
            continue;
        };
        let (number, encoded) = match section.strip_suffix('*') {
            Some(n) => (n, true),
            None => (section, section.is_empty()),
        };
        let number = if number.is_empty() {
            0
        } else {
            number.parse().ok()?
        };
        segments.push((number, encoded, value));
    }
    segments.sort_by_key(|(number, _, _)| *number);
    segments.dedup_by_key(|(number, _, _)| *number);
    let (_, first_encoded, first) = segments.first()?;
    // The first encoded segment starts with `charset'language'`.
    let (charset, first_value) = match first.splitn(3, '\'').collect::<Vec<_>>().as_slice() {
        [charset, _language, value] if *first_encoded => (Some(*charset), *value),
        _ => (None, first.as_str()),
    };
    let mut bytes = Vec::new();
    for (i, (_, encoded, value)) in segments.iter().enumerate() {
        let value = if i == 0 { first_value } else { value };
        if *encoded {
            percent_decode(value, &mut bytes);
        } else {
            bytes.extend_from_slice(value.as_bytes());
        }
    }
    let charset = charset.filter(|c| !c.is_empty());
    // An empty extended value (`filename*=UTF-8''`) names nothing: the plain one, if any, does.
    let value = text::decode_charset(&bytes, charset).0;
    (!value.is_empty()).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_extended_value_leaves_the_plain_one() {
        let raw = "attachment; filename*=UTF-8''; filename=plain.pdf";
        assert_eq!(extended(raw, "filename"), None);
        assert_eq!(plain(raw, "filename").as_deref(), Some("plain.pdf"));
    }

    #[test]
    fn the_extended_form_wins_in_either_order() {
        let both = "attachment; filename=\"r_el.pdf\"; filename*=UTF-8''r%C3%A9el.pdf";
        assert_eq!(extended(both, "filename").as_deref(), Some("réel.pdf"));
        let both = "attachment; filename*=UTF-8''r%C3%A9el.pdf; filename=\"r_el.pdf\"";
        assert_eq!(extended(both, "filename").as_deref(), Some("réel.pdf"));
        assert_eq!(
            extended("attachment; filename=\"plain.pdf\"", "filename"),
            None
        );
        assert_eq!(extended("attachment", "filename"), None);
    }

    #[test]
    fn continuations_join_in_order_in_their_charset() {
        assert_eq!(
            extended(
                "application/octet-stream; name*1*=%E8%AA%9E.txt;\r\n name*0*=UTF-8''%E6%97%A5%E6%9C%AC",
                "name"
            )
            .as_deref(),
            Some("日本語.txt")
        );
        assert_eq!(
            extended(
                "application/octet-stream; name*0=\"very long file \"; name*1=\"name.txt\"",
                "name"
            )
            .as_deref(),
            Some("very long file name.txt")
        );
        assert_eq!(
            extended(
                "application/octet-stream; name=\"x\"; name*0*=utf-8''%C3%A9t%C3%A9; name*1=\" summer.txt\"",
                "name"
            )
            .as_deref(),
            Some("été summer.txt")
        );
        assert_eq!(
            extended("text/plain; name*=iso-8859-1'de'Gr%FC%DFe.txt", "name").as_deref(),
            Some("Grüße.txt")
        );
    }

    #[test]
    fn other_parameters_and_quoted_semicolons_are_not_confused() {
        let raw = "attachment; x=\"a;filename*=bad\"; filenames*=UTF-8''no; filename*=''ok%20.txt";
        assert_eq!(extended(raw, "filename").as_deref(), Some("ok .txt"));
    }
}
