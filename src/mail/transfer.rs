//! Content-Transfer-Encoding `base64`, decoded the lenient way RFC 2045 §6.8 asks for, and the
//! identity encoding that describes a part written as it is.
//!
//! mail-parser's decoder drops the last one or two octets of data without `=` padding (common in
//! the wild: hand-rolled encoders, gateways that strip trailing `=`), and gives up on the whole
//! part at the first octet outside the alphabet, or on text after the padding (a mailing list's
//! footer appended to the part), leaving the client the raw base64. §6.8: "Any characters outside
//! of the base64 alphabet are to be ignored in base64-encoded data", and the padding only marks
//! the end of the data. So Herald decodes a base64 part's raw octets itself, the same bytes then
//! serving body values, blob downloads, the part's size, previews and search.

/// The 6-bit value of a base64 alphabet octet (RFC 2045 Table 1).
fn sextet(octet: u8) -> Option<u32> {
    let value = match octet {
        b'A'..=b'Z' => octet - b'A',
        b'a'..=b'z' => octet - b'a' + 26,
        b'0'..=b'9' => octet - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(value))
}

/// Decodes `input` as base64 body data: octets outside the alphabet are skipped, the first `=`
/// ends the data (whatever follows is not base64: a footer, a signature), and a final quantum of
/// two or three characters gives its one or two octets whether padded or not. The flag is `true`
/// when the data could not be whole: one character left over, which carries less than an octet.
pub fn decode_base64(input: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 2);
    let mut quantum: u32 = 0;
    let mut filled = 0;
    for &octet in input {
        if octet == b'=' {
            break;
        }
        let Some(value) = sextet(octet) else {
            continue;
        };
        quantum = (quantum << 6) | value;
        filled += 1;
        if filled == 4 {
            out.extend_from_slice(&quantum.to_be_bytes()[1..]);
            quantum = 0;
            filled = 0;
        }
    }
    // The octets of a partial quantum, as if it were padded (RFC 4648 §4).
    match filled {
        2 => out.extend_from_slice(&(quantum << 12).to_be_bytes()[1..2]),
        3 => out.extend_from_slice(&(quantum << 6).to_be_bytes()[1..3]),
        _ => {}
    }
    (out, filled == 1)
}

/// The identity Content-Transfer-Encoding that describes `bytes` (RFC 2045 §2.7–2.9): `7bit`
/// for short CRLF lines of ASCII without NUL, `8bit` when some octets are above 127, `binary`
/// otherwise (a bare CR or LF, a NUL, or a line over 998 octets). For `message/rfc822` parts,
/// which RFC 2046 §5.2.1 does not allow to be base64 or quoted-printable encoded.
pub fn identity_encoding(bytes: &[u8]) -> &'static str {
    let mut eight_bit = false;
    let mut line = 0;
    let mut previous = 0;
    for &octet in bytes {
        match octet {
            0 => return "binary",
            b'\n' if previous != b'\r' => return "binary",
            b'\n' => line = 0,
            _ if previous == b'\r' => return "binary",
            b'\r' => {}
            _ => {
                eight_bit |= octet > 127;
                line += 1;
                if line > 998 {
                    return "binary";
                }
            }
        }
        previous = octet;
    }
    if previous == b'\r' {
        "binary"
    } else if eight_bit {
        "8bit"
    } else {
        "7bit"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_encodings_follow_the_octets() {
        assert_eq!(identity_encoding(b"Subject: x\r\n\r\nbody\r\n"), "7bit");
        assert_eq!(
            identity_encoding("Subject: x\r\n\r\nInner é\r\n".as_bytes()),
            "8bit"
        );
        assert_eq!(identity_encoding(b"a\nb"), "binary");
        assert_eq!(identity_encoding(b"a\rb"), "binary");
        assert_eq!(identity_encoding(b"a\0b"), "binary");
        assert_eq!(identity_encoding(&[b'a'; 998]), "7bit");
        assert_eq!(identity_encoding(&[b'a'; 999]), "binary");
        assert_eq!(identity_encoding(b""), "7bit");
    }

    fn decoded(input: &str) -> (String, bool) {
        let (bytes, problem) = decode_base64(input.as_bytes());
        (String::from_utf8(bytes).unwrap(), problem)
    }

    #[test]
    fn missing_padding_keeps_the_last_octets() {
        assert_eq!(decoded("SGVsbG8gV29ybGQ"), ("Hello World".into(), false));
        assert_eq!(decoded("SGVsbG8gV29ybA"), ("Hello Worl".into(), false));
        assert_eq!(decoded("SGVsbG8gV29ybGQ="), ("Hello World".into(), false));
        assert_eq!(decoded("SGVsbG8gV29y"), ("Hello Wor".into(), false));
    }

    #[test]
    fn octets_outside_the_alphabet_are_ignored() {
        assert_eq!(
            decoded("SGVsbG8g*V29y\r\nbGQ=\r\n"),
            ("Hello World".into(), false)
        );
        assert_eq!(
            decoded(" SGVsbG8g \r\n\tV29ybGQ= \r\n"),
            ("Hello World".into(), false)
        );
    }

    #[test]
    fn text_after_the_padding_is_not_data() {
        assert_eq!(
            decoded("SGVsbG8gV29ybGQ=\r\n\r\n-- \r\nList footer\r\n"),
            ("Hello World".into(), false)
        );
        assert_eq!(decoded("SGk==trailing"), ("Hi".into(), false));
    }

    #[test]
    fn a_lone_final_character_is_a_problem() {
        assert_eq!(decoded("SGVsbG8gV"), ("Hello ".into(), true));
        assert_eq!(decoded(""), (String::new(), false));
    }

    #[test]
    fn every_octet_value_round_trips() {
        let all: Vec<u8> = (0..=255).collect();
        let encoded = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn+AgYKDhIWGh4iJiouMjY6PkJGSk5SVlpeYmZqbnJ2en6ChoqOkpaanqKmqq6ytrq+wsbKztLW2t7i5uru8vb6/wMHCw8TFxsfIycrLzM3Oz9DR0tPU1dbX2Nna29zd3t/g4eLj5OXm5+jp6uvs7e7v8PHy8/T19vf4+fr7/P3+/w==";
        assert_eq!(decode_base64(encoded.as_bytes()), (all, false));
    }
}
