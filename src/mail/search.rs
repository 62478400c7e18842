//! Words for full-text search: how text is cut into words and folded, once, for both the index
//! and the query (RFC 8621 §4.4.1 leaves the matching rules to the server).
//!
//! A **word** is a run of letters, digits and combining marks (`char::is_alphanumeric` or a
//! combining mark); everything else separates words. A word is **folded** to its lowercase,
//! canonically decomposed form without the diacritics of the Latin, Greek, Cyrillic, Hebrew and
//! Arabic scripts (the combining-mark blocks listed in [`is_folded_diacritic`]), so "Über",
//! "über" and "uber" are one word, and "Αθήνα" matches "αθηνα". Vowel signs of the Brahmic
//! scripts are kept: they are letters there, not accents.
//!
//! Both stores index the folded words exactly as this module produces them (SQLite: an FTS5
//! table with the `ascii` tokenizer, which splits on the spaces between them and leaves every
//! non-ASCII character alone; PostgreSQL: a `tsvector` written literally, positions included),
//! so the database never re-tokenizes by rules of its own and both backends match alike.
//! In the SQLite index each word carries its account's [`fts5_account_key`] in front, so the
//! index holds one word list per account and word, and a search reads only its account's.
//!
//! A search term is a word that matches as a **prefix** ("inv" finds "invoice") or a quoted
//! phrase that matches whole words in sequence. Scripts written without spaces (Chinese,
//! Japanese, Thai) are not segmented: a run of them is one word, found by its beginning.

use std::ops::Range;

use unicode_normalization::UnicodeNormalization;

/// Only the first this-many bytes of each searchable field are indexed: it bounds the index
/// work one message can cause, and PostgreSQL refuses a `tsvector` over 1 MB.
pub const INDEXED_TEXT_BYTES: usize = 200_000;

/// PostgreSQL refuses lexemes of 2 KiB or more; longer "words" (base64 runs, say) are not
/// indexed on either backend.
const MAX_WORD_BYTES: usize = 2_000;

/// PostgreSQL keeps at most this many positions per lexeme.
const MAX_POSITIONS_PER_WORD: usize = 256;

/// PostgreSQL's largest word position.
const MAX_POSITION: usize = 16_383;

/// Combining marks that are diacritics to fold away (Unicode blocks): Combining Diacritical
/// Marks (and their Extended and Supplement blocks, and those for symbols and half marks),
/// Hebrew points and Arabic vowel marks.
fn is_folded_diacritic(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}'
        | '\u{1AB0}'..='\u{1AFF}'
        | '\u{1DC0}'..='\u{1DFF}'
        | '\u{20D0}'..='\u{20FF}'
        | '\u{FE20}'..='\u{FE2F}'
        | '\u{0591}'..='\u{05C7}'
        | '\u{064B}'..='\u{065F}'
        | '\u{0670}')
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || unicode_normalization::char::is_combining_mark(c)
}

/// The folded form of a word (or of any text: separators are kept as they are).
pub fn fold(word: &str) -> String {
    // Most words are ASCII, where folding is lowercasing: no decomposition, no marks to drop.
    if word.is_ascii() {
        return word.to_ascii_lowercase();
    }
    word.chars()
        .flat_map(char::to_lowercase)
        .nfd()
        .filter(|c| !is_folded_diacritic(*c))
        .nfc()
        .collect()
}

/// The words of `text`, as byte ranges into it, in order.
pub fn word_ranges(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (is_word_char(c), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push(s..text.len());
    }
    out
}

/// The folded words of `text`, in order.
pub fn folded_words(text: &str) -> Vec<String> {
    word_ranges(text)
        .into_iter()
        .map(|r| fold(&text[r]))
        .filter(|w| !w.is_empty())
        .collect()
}

/// The indexed words of one field: the folded words of its first [`INDEXED_TEXT_BYTES`], less
/// the over-long ones.
pub fn index_words(text: &str) -> Vec<String> {
    let mut end = text.len().min(INDEXED_TEXT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    folded_words(&text[..end])
        .into_iter()
        .filter(|w| w.len() <= MAX_WORD_BYTES)
        .collect()
}

/// The mark of an account's words in the FTS5 index: the id and `_` for ids of `[a-z0-9]` (all
/// that Herald makes), else `-`, the id's bytes in hex, and `_`.
///
/// A word holds neither `-` nor `_`, so in `key + word` the first `_` ends the key: a prefix
/// `key + "inv"` matches only words of that key's account.
pub fn fts5_account_key(account_id: &str) -> String {
    use std::fmt::Write;
    let plain = !account_id.is_empty()
        && account_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let mut key = String::with_capacity(2 * account_id.len() + 2);
    if plain {
        key.push_str(account_id);
    } else {
        key.push('-');
        for b in account_id.bytes() {
            let _ = write!(key, "{b:02x}");
        }
    }
    key.push('_');
    key
}

/// What FTS5 indexes for a field of an email of the account `key` ([`fts5_account_key`]): the
/// indexed words, each after the key, separated by spaces.
pub fn fts5_document(key: &str, text: &str) -> String {
    let words = index_words(text);
    let mut out = String::with_capacity(words.iter().map(|w| key.len() + w.len() + 1).sum());
    for w in words {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(key);
        out.push_str(&w);
    }
    out
}

/// What PostgreSQL indexes for a field: a `tsvector` literal (`'word':1,7 …`), so that no text
/// search parser or dictionary of the database changes the words.
pub fn tsvector_literal(text: &str) -> String {
    use std::fmt::Write;
    // Sorted by word (stable: each word's positions stay in order), then one entry per word; the
    // lexemes come out in PostgreSQL's own order. No map: an import builds six of these per
    // message, and hashing every word was a sixth of its time.
    let mut words: Vec<(String, usize)> = index_words(text)
        .into_iter()
        .enumerate()
        .map(|(i, w)| (w, (i + 1).min(MAX_POSITION)))
        .collect();
    words.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::with_capacity(text.len() + text.len() / 2);
    let mut i = 0;
    while let Some((word, _)) = words.get(i) {
        if !out.is_empty() {
            out.push(' ');
        }
        push_quoted_lexeme(&mut out, word);
        let mut listed = 0;
        let mut last = 0;
        while let Some((w, at)) = words.get(i)
            && w == word
        {
            if listed < MAX_POSITIONS_PER_WORD && *at != last {
                out.push(if listed == 0 { ':' } else { ',' });
                let _ = write!(out, "{at}");
                listed += 1;
                last = *at;
            }
            i += 1;
        }
    }
    out
}

/// `'word'` in the `tsvector`/`tsquery` input syntax.
fn push_quoted_lexeme(out: &mut String, word: &str) {
    out.push('\'');
    for c in word.chars() {
        if matches!(c, '\'' | '\\') {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
}

/// `"kw1 kw2 klast"`: words in sequence as an FTS5 phrase, each after the account's key.
fn fts5_quoted(key: &str, first: &[String], last: &str) -> String {
    let mut out = String::from("\"");
    for w in first.iter().map(String::as_str).chain([last]) {
        if out.len() > 1 {
            out.push(' ');
        }
        out.push_str(&key.replace('"', "\"\""));
        out.push_str(&w.replace('"', "\"\""));
    }
    out.push('"');
    out
}

/// One search term: folded words that must appear in sequence, the last as a prefix when the
/// term was typed as a plain word. A term typed without any letter or digit (`%`, `--`) has no
/// words and matches nothing: no indexed word can contain it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchTerm {
    pub words: Vec<String>,
    pub prefix: bool,
    /// For a prefix term, when the store has listed them: every indexed word that completes the
    /// last word, so that the index is asked for those words and not for the prefix (the same
    /// matches; see `store::email_search::complete_prefixes`). Empty: not listed.
    pub completions: Vec<String>,
}

impl SearchTerm {
    /// A typed word (`inv`, or `alice@example.com`, which is three words in sequence): its last
    /// word matches as a prefix. `None` when it holds no word at all.
    pub fn word(typed: &str) -> Option<SearchTerm> {
        Self::new(typed, true)
    }

    /// A quoted phrase: whole words in sequence.
    pub fn phrase(typed: &str) -> Option<SearchTerm> {
        Self::new(typed, false)
    }

    fn new(typed: &str, prefix: bool) -> Option<SearchTerm> {
        let words = folded_words(typed);
        (!words.is_empty()).then_some(SearchTerm {
            words,
            prefix,
            completions: Vec::new(),
        })
    }

    /// A term that matches nothing, for typed text without any word.
    pub fn nothing() -> SearchTerm {
        SearchTerm {
            words: Vec::new(),
            prefix: false,
            completions: Vec::new(),
        }
    }

    /// Whether this term can match at all.
    pub fn is_nothing(&self) -> bool {
        self.words.is_empty()
    }

    /// The term as an FTS5 query among the words of the account `key` ([`fts5_account_key`]):
    /// the phrase `"kw1 kw2"`, with `*` when the last word is a prefix; with
    /// [`SearchTerm::completions`], the phrases that end with each of them, OR'd.
    pub fn fts5_phrase(&self, key: &str) -> String {
        let Some((last, first)) = self.words.split_last() else {
            return String::from("\"\"");
        };
        if !self.prefix || self.completions.is_empty() {
            let mut out = fts5_quoted(key, first, last);
            if self.prefix {
                out.push('*');
            }
            return out;
        }
        let phrases: Vec<String> = self
            .completions
            .iter()
            .map(|c| fts5_quoted(key, first, c))
            .collect();
        format!("({})", phrases.join(" OR "))
    }

    /// The term as a `tsquery` literal: `'w1' <-> 'w2':*`.
    pub fn tsquery(&self) -> String {
        let mut out = String::new();
        for (i, w) in self.words.iter().enumerate() {
            if i > 0 {
                out.push_str(" <-> ");
            }
            push_quoted_lexeme(&mut out, w);
        }
        if self.prefix {
            out.push_str(":*");
        }
        out
    }

    fn matches_at(&self, words: &[String]) -> bool {
        let n = self.words.len();
        if n == 0 || words.len() < n {
            return false;
        }
        let last = n - 1;
        self.words[..last] == words[..last]
            && if self.prefix {
                words[last].starts_with(self.words[last].as_str())
            } else {
                words[last] == self.words[last]
            }
    }
}

/// Where in `text` the terms match, as byte ranges from the first to the last matched word,
/// sorted and merged.
pub fn match_ranges(text: &str, terms: &[SearchTerm]) -> Vec<Range<usize>> {
    let ranges = word_ranges(text);
    let words: Vec<String> = ranges.iter().map(|r| fold(&text[r.clone()])).collect();
    let mut found: Vec<Range<usize>> = Vec::new();
    for i in 0..words.len() {
        for t in terms {
            if t.matches_at(&words[i..]) {
                found.push(ranges[i].start..ranges[i + t.words.len() - 1].end);
            }
        }
    }
    found.sort_by_key(|r| (r.start, r.end));
    let mut merged: Vec<Range<usize>> = Vec::new();
    for r in found {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
}

/// Whether every term matches somewhere in `text`.
pub fn matches_all(text: &str, terms: &[SearchTerm]) -> bool {
    let words = folded_words(text);
    terms
        .iter()
        .all(|t| (0..words.len()).any(|i| t.matches_at(&words[i..])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(s: &str) -> SearchTerm {
        SearchTerm::word(s).unwrap()
    }

    #[test]
    fn folding_drops_case_and_diacritics_in_every_alphabet() {
        assert_eq!(fold("Über"), "uber");
        assert_eq!(fold("ÉCOLE"), "ecole");
        assert_eq!(fold("Αθήνα"), "αθηνα");
        assert_eq!(fold("Ёлка"), "елка");
        assert_eq!(fold("Straße"), "straße");
        // Devanagari vowel signs are letters, not accents.
        assert_eq!(fold("हिन्दी"), "हिन्दी");
    }

    #[test]
    fn words_are_runs_of_letters_digits_and_marks() {
        assert_eq!(
            folded_words("Re: Q3-report, alice@example.com (draft #2)"),
            vec![
                "re", "q3", "report", "alice", "example", "com", "draft", "2"
            ]
        );
        // A decomposed accent stays inside its word.
        assert_eq!(folded_words("cafe\u{301} noir"), vec!["cafe", "noir"]);
    }

    #[test]
    fn a_plain_word_matches_as_a_prefix_and_a_phrase_matches_whole_words_in_order() {
        assert!(matches_all("Your invoice is ready", &[word("INV")]));
        assert!(!matches_all("Your invoice is ready", &[word("voice")]));
        let phrase = SearchTerm::phrase("financial report").unwrap();
        assert!(matches_all(
            "our FINANCIAL\n report",
            std::slice::from_ref(&phrase)
        ));
        assert!(!matches_all(
            "report financial",
            std::slice::from_ref(&phrase)
        ));
        assert!(!matches_all("financial reports", &[phrase]));
        assert!(matches_all("über alles", &[word("uber")]));
        assert!(matches_all(
            "Mail from Alice@Example.com",
            &[word("alice@example.c")]
        ));
    }

    #[test]
    fn a_term_without_words_matches_nothing() {
        assert_eq!(SearchTerm::word("--"), None);
        assert_eq!(SearchTerm::phrase(""), None);
        assert!(!matches_all("100 % -- & more", &[SearchTerm::nothing()]));
        assert!(match_ranges("100 % -- & more", &[SearchTerm::nothing()]).is_empty());
    }

    #[test]
    fn match_ranges_cover_the_matched_words_in_the_original_text() {
        let text = "Ünïcode and UNICODE-aware";
        let r = match_ranges(text, &[word("unicode")]);
        let got: Vec<&str> = r.iter().map(|r| &text[r.clone()]).collect();
        assert_eq!(got, vec!["Ünïcode", "UNICODE"]);
    }

    #[test]
    fn query_syntax_is_quoted_for_each_database() {
        let t = word("it's");
        assert_eq!(t.words, vec!["it", "s"]);
        assert_eq!(t.fts5_phrase("a1_"), "\"a1_it a1_s\"*");
        assert_eq!(t.tsquery(), "'it' <-> 's':*");
        let p = SearchTerm::phrase("Zoë").unwrap();
        assert_eq!(p.fts5_phrase("a1_"), "\"a1_zoe\"");
        assert_eq!(p.tsquery(), "'zoe'");
        // Completions listed by the store replace the prefix, in FTS5 only.
        let mut t = word("alice@exa");
        t.completions = vec!["example".into(), "exam\"ple".into()];
        assert_eq!(
            t.fts5_phrase("a1_"),
            "(\"a1_alice a1_example\" OR \"a1_alice a1_exam\"\"ple\")"
        );
        assert_eq!(t.tsquery(), "'alice' <-> 'exa':*");
    }

    #[test]
    fn each_account_key_ends_at_the_first_underscore_of_an_indexed_word() {
        assert_eq!(fts5_account_key("a0x9"), "a0x9_");
        assert_eq!(fts5_account_key("A_b"), "-415f62_");
        assert_eq!(fts5_account_key(""), "-_");
        assert_eq!(
            fts5_document("k_", "Über, die Brücke"),
            "k_uber k_die k_brucke"
        );
        // A key and word of one account never start a token of another account.
        let token = format!("{}{}", fts5_account_key("a_b"), "x");
        let other = fts5_account_key("a");
        assert!(!token.starts_with(&other), "{token} / {other}");
    }

    #[test]
    fn the_tsvector_literal_lists_each_word_once_with_its_positions() {
        assert_eq!(tsvector_literal("a b A"), "'a':1,3 'b':2");
        assert_eq!(tsvector_literal(""), "");
        let long = "x".repeat(MAX_WORD_BYTES + 1);
        assert_eq!(tsvector_literal(&format!("{long} y")), "'y':1");
    }

    #[test]
    fn only_the_first_indexed_bytes_of_a_field_are_indexed() {
        let text = format!("{} tail", "word ".repeat(INDEXED_TEXT_BYTES / 5));
        assert!(!index_words(&text).contains(&"tail".to_owned()));
    }
}
