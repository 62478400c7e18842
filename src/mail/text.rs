//! Text helpers: charsets, previews, truncation and base subjects.

/// `image/*`, `audio/*` and `video/*`: shown inline by the RFC 8621 §4.1.4 algorithm.
pub fn is_inline_media_type(media_type: &str) -> bool {
    media_type.starts_with("image/")
        || media_type.starts_with("audio/")
        || media_type.starts_with("video/")
}

/// Decodes `bytes` in `charset` (mail-parser's decoders: ISO-8859-*, windows-125x, Shift_JIS, …).
/// Returns the text and whether decoding was unclean (unknown charset with non-UTF-8 octets, or
/// invalid octets, which become U+FFFD).
pub fn decode_charset(bytes: &[u8], charset: Option<&str>) -> (String, bool) {
    let charset = charset.unwrap_or("us-ascii").trim();
    let is_utf8_family = matches!(
        charset.to_ascii_lowercase().as_str(),
        "utf-8" | "utf8" | "us-ascii" | "ascii" | "" | "unicode-1-1-utf-8"
    );
    if !is_utf8_family
        && let Some(decoder) =
            mail_parser::decoders::charsets::map::charset_decoder(charset.as_bytes())
    {
        let text = decoder(bytes);
        let problem =
            text.contains('\u{fffd}') && !String::from_utf8_lossy(bytes).contains('\u{fffd}');
        return (text, problem);
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => (s.to_owned(), false),
        Err(_) => (String::from_utf8_lossy(bytes).into_owned(), true),
    }
}

/// At most `max_chars` characters of `text` with every run of white space collapsed to one space.
pub fn preview(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut count = 0;
    let mut pending_space = false;
    for ch in text.chars() {
        if ch.is_whitespace() || ch.is_control() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            if count + 1 >= max_chars {
                break;
            }
            out.push(' ');
            count += 1;
            pending_space = false;
        }
        if count >= max_chars {
            break;
        }
        out.push(ch);
        count += 1;
    }
    out
}

/// The `i;unicode-casemap` comparison key of `s` (RFC 5051, with lowercase for its titlecase):
/// compatibility decomposition, then lowercase, so that "Åsa" compares as "a" + ring + "sa",
/// with the a's. Strings compare under the collation as their keys compare as octets.
pub fn casemap_key(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    s.nfkd().flat_map(char::to_lowercase).collect()
}

/// The largest index ≤ `max` that is a character boundary of `s`.
pub fn char_boundary(s: &str, max: usize) -> usize {
    if max >= s.len() {
        return s.len();
    }
    let mut cut = max;
    while cut > 0 && !s.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}

/// Where to cut HTML to at most `max` octets: a character boundary not inside a tag (or a
/// comment); the cut moves back to the start of the tag it would split.
pub fn html_cut(html: &str, max: usize) -> usize {
    let cut = char_boundary(html, max);
    let head = &html[..cut];
    let open = head.rfind('<');
    let close = head.rfind('>');
    let mut cut = match (open, close) {
        (Some(o), Some(c)) if o > c => o,
        (Some(o), None) => o,
        _ => cut,
    };
    // Never split an entity like `&amp;` either.
    if let Some(amp) = html[..cut].rfind('&')
        && !html[amp..cut].contains(';')
        && cut - amp <= 10
        && !html[amp..cut].contains(char::is_whitespace)
    {
        cut = amp;
    }
    cut
}

/// The base subject (RFC 5256 §2.1, simplified): reply/forward prefixes (`Re:`, `Fwd:`, `Fw:`,
/// `Re[2]:`, their translations in `REPLY_PREFIXES`, also with a `[list]` tag), `(fwd)`
/// trailers and `[Fwd: …]` wrappers removed, white space collapsed, lowercased. A reply joins
/// the thread its ids point at only when the base subjects agree; Email/query sorts by it.
pub fn base_subject(subject: &str) -> String {
    let mut s: String = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    loop {
        let before = s.clone();
        // Trailers: "(fwd)".
        while let Some(stripped) = s
            .strip_suffix("(fwd)")
            .or_else(|| s.strip_suffix("(FWD)"))
            .or_else(|| s.strip_suffix("(Fwd)"))
        {
            s = stripped.trim_end().to_owned();
        }
        // Leaders: "[list] " blobs and "re:", "fwd:", "fw:" with an optional "[n]".
        loop {
            let t = s.trim_start();
            if let Some(rest) = t.strip_prefix('[')
                && let Some(end) = rest.find(']')
                && !rest[..end].is_empty()
                && !rest[end + 1..].trim().is_empty()
            {
                s = rest[end + 1..].trim_start().to_owned();
                continue;
            }
            if let Some(rest) = strip_reply_prefix(t) {
                s = rest.trim_start().to_owned();
                continue;
            }
            break;
        }
        // "[fwd: subject]".
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("[fwd:") && s.ends_with(']') {
            s = s[5..s.len() - 1].trim().to_owned();
        }
        if s == before {
            break;
        }
    }
    s.trim().to_lowercase()
}

/// Reply and forward prefixes that mail clients write in their users' languages, lowercase, each
/// followed by an optional `[n]` counter and a colon (ASCII or the fullwidth `：` of CJK input
/// methods). RFC 5256 §2.1 names only `Re` and `Fwd`; replies from clients in other languages
/// started threads of their own although their References named the original. A subject that
/// truly starts with one of these words and a colon loses it too, which only matters for sorting.
#[rustfmt::skip]
const REPLY_PREFIXES: &[&str] = &[
    "re", "fwd", "fw",            // English, written by most clients whatever the language
    "aw", "wg",                   // German: Antwort, Weitergeleitet
    "antw", "doorst",             // Dutch: Antwoord, Doorgestuurd
    "sv", "vs", "vb", "ang",      // Scandinavian: Svar, Videresendt, Vidarebefordrat, Angående
    "vl",                         // Finnish: Vastaus (VS), Välitetty
    "odp", "pd",                  // Polish and Czech: Odpowiedź/Odpověď, Przekazanie dalej
    "odg",                        // Croatian: Odgovor
    "r", "rif", "i",              // Italian: Risposta, Riferimento, Inoltrato
    "réf.", "réf", "tr",          // French: Référence, Transféré
    "res", "enc", "rv",           // Portuguese and Spanish: Resposta, Encaminhada, Reenviado
    "vá", "tov",                  // Hungarian: Válasz, Továbbítás
    "ynt", "ilt",                 // Turkish: Yanıt, İletildi
    "atb", "pārs",                // Latvian: Atbilde, Pārsūtīts
    "ats", "pers",                // Lithuanian: Atsakymas, Persiųsta
    "απ", "πρθ", "σχετ",          // Greek: Απάντηση, Προώθηση, Σχετικά
    "отв",                        // Russian: Ответ
    "回复", "答复", "转发",       // Chinese (simplified)
    "回覆", "轉寄",               // Chinese (traditional)
    "返信", "転送",               // Japanese
    "답장", "전달",               // Korean
];

/// `s` without its first characters when they are `prefix` (lowercase), compared by the first
/// character of each one's lowercase form (so the Turkish `İ`, lowercased `i̇`, is an `i`).
fn strip_prefix_folded<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let mut rest = s.char_indices();
    let mut end = 0;
    for p in prefix.chars() {
        let (i, c) = rest.next()?;
        if c.to_lowercase().next() != Some(p) {
            return None;
        }
        end = i + c.len_utf8();
    }
    Some(&s[end..])
}

/// `s` without a leading reply or forward prefix ([`REPLY_PREFIXES`]).
fn strip_reply_prefix(s: &str) -> Option<&str> {
    REPLY_PREFIXES.iter().find_map(|word| {
        let mut rest = strip_prefix_folded(s, word)?.trim_start();
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            if !r[..end].bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            rest = r[end + 1..].trim_start();
        }
        rest.strip_prefix(':').or_else(|| rest.strip_prefix('：'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_subjects_lose_reply_forward_and_list_prefixes() {
        for (subject, base) in [
            ("Re: Hello", "hello"),
            ("RE: re: Fwd: Hello  world", "hello world"),
            ("[herald-dev] Re: [herald-dev] Plans", "plans"),
            ("Re[2]: Plans (fwd)", "plans"),
            ("[Fwd: Plans]", "plans"),
            ("AW: Termin", "termin"),
            ("Reply to all", "reply to all"),
            ("[only a tag]", "[only a tag]"),
            ("", ""),
        ] {
            assert_eq!(base_subject(subject), base, "{subject}");
        }
    }

    #[test]
    fn localised_reply_and_forward_prefixes_are_removed() {
        for prefix in [
            "VS:", "Antw:", "Odp:", "R:", "RIF:", "I:", "YNT:", "İLT:", "ΑΠ:", "ΠΡΘ:", "回复:",
            "答复:", "转发:", "RE：", "Réf.:", "TR:", "Enc:", "RES:", "Vá:", "Doorst:", "Ang:",
            "Atb:", "Re:", "Fwd:", "AW:", "WG:", "SV:", "Sv:", "Ynt:", "Отв:", "SV[2]:",
        ] {
            assert_eq!(
                base_subject(&format!("{prefix} Topic 1")),
                "topic 1",
                "{prefix}"
            );
        }
        assert_eq!(base_subject("VS: Antw: RE：回复: Plans"), "plans");
        // A word that merely starts like a prefix stays.
        assert_eq!(base_subject("Result: 3"), "result: 3");
        assert_eq!(base_subject("Iris"), "iris");
    }

    #[test]
    fn previews_collapse_white_space_and_stop_at_the_limit() {
        assert_eq!(preview("  a\n\n b\tc  ", 256), "a b c");
        let long = "é".repeat(300);
        assert_eq!(preview(&long, 256).chars().count(), 256);
    }

    #[test]
    fn truncation_lands_on_a_character_boundary_outside_html_tags() {
        // EML-13
        assert_eq!(char_boundary("aé", 2), 1);
        let html = "<p>hello <a href=\"x\">link</a></p>";
        let cut = html_cut(html, 15);
        assert_eq!(&html[..cut], "<p>hello ");
        assert_eq!(html_cut("a &amp; b", 4), 2);
        assert_eq!(html_cut("<b>x</b>", 100), 8);
    }

    #[test]
    fn legacy_charsets_decode_and_unknown_ones_are_flagged() {
        assert_eq!(
            decode_charset(b"caf\xe9", Some("iso-8859-1")),
            ("café".into(), false)
        );
        assert_eq!(
            decode_charset(b"\x93quoted\x94", Some("windows-1252")).0,
            "\u{201c}quoted\u{201d}"
        );
        assert_eq!(
            decode_charset(b"\x93\xfa\x96\x7b", Some("Shift_JIS")).0,
            "日本"
        );
        assert!(decode_charset(b"caf\xe9", Some("x-unknown")).1);
        assert!(decode_charset(b"caf\xe9", None).1);
    }
}
