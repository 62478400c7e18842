//! The parsed Email/query filter (EQ-02, EQ-03, QRY-02) and its text-search terms (EQ-05).

use serde_json::Value;

use crate::config::limits::QueryLimits;
use crate::jmap::args::Id;
use crate::jmap::error::MethodError;
use crate::mail::search::SearchTerm;

/// The terms of a text condition: every term must match (EQ-05). Unquoted words match as word
/// prefixes, quoted phrases as whole words in sequence, both case- and diacritic-insensitively
/// (the rules are in [`crate::mail::search`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchText {
    pub terms: Vec<SearchTerm>,
}

impl SearchText {
    /// Splits a search string into words and phrases (EQ-05). A term without any letter or
    /// digit (`%`) matches nothing ([`SearchTerm::nothing`]).
    pub fn parse(input: &str) -> SearchText {
        let mut terms: Vec<SearchTerm> = Vec::new();
        for (piece, quoted) in split_terms(input) {
            let term = if quoted {
                SearchTerm::phrase(&piece)
            } else {
                SearchTerm::word(&piece)
            }
            .unwrap_or_else(SearchTerm::nothing);
            if !terms.contains(&term) {
                terms.push(term);
            }
        }
        SearchText { terms }
    }
}

/// The pieces of a search string, each with whether it was quoted: single or double quotes make
/// a phrase, inside which `\` escapes `'`, `"` and `\`; an unclosed quote runs to the end.
/// Pieces are trimmed, with inner whitespace runs folded to one space.
fn split_terms(input: &str) -> Vec<(String, bool)> {
    let mut pieces = Vec::new();
    let mut chars = input.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, pieces: &mut Vec<(String, bool)>, quoted: bool| {
        let w = word.split_whitespace().collect::<Vec<_>>().join(" ");
        if !w.is_empty() {
            pieces.push((w, quoted));
        }
        word.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' if word.is_empty() => {
                let quote = c;
                let mut phrase = String::new();
                while let Some(p) = chars.next() {
                    match p {
                        '\\' if matches!(chars.peek(), Some('\'' | '"' | '\\')) => {
                            phrase.push(chars.next().unwrap_or('\\'));
                        }
                        p if p == quote => break,
                        p => phrase.push(p),
                    }
                }
                flush(&mut phrase, &mut pieces, true);
            }
            c if c.is_whitespace() => flush(&mut word, &mut pieces, false),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut pieces, false);
    pieces
}

/// The lowercase substrings a `header` condition's text requires (RFC 8621 §4.4.1: the header
/// value "contains" the text): its words and phrases, as [`split_terms`] cuts them.
pub fn header_substrings(input: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (piece, _) in split_terms(input) {
        let piece = piece.to_lowercase();
        if !out.contains(&piece) {
            out.push(piece);
        }
    }
    out
}

/// Lowercase with whitespace runs folded to one space: the form text is searched in.
pub fn normalise(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

// ---------------------------------------------------------------------------------------------
// filter (EQ-02, EQ-03, QRY-02)

/// A `header` condition: the header is present, or its value contains every one of `text`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderCondition {
    /// The header field name, lowercase.
    pub name: String,
    /// Lowercase substrings ([`header_substrings`]).
    pub text: Option<Vec<String>>,
}

/// One FilterCondition; every field given must match (EQ-03). Keywords are lowercase.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Condition {
    pub in_mailbox: Option<String>,
    pub in_mailbox_other_than: Option<Vec<String>>,
    /// `receivedAt` < this (Unix seconds).
    pub before: Option<i64>,
    /// `receivedAt` ≥ this (Unix seconds).
    pub after: Option<i64>,
    pub min_size: Option<u64>,
    pub max_size: Option<u64>,
    pub all_in_thread_have_keyword: Option<String>,
    pub some_in_thread_have_keyword: Option<String>,
    pub none_in_thread_have_keyword: Option<String>,
    pub has_keyword: Option<String>,
    pub not_keyword: Option<String>,
    pub has_attachment: Option<bool>,
    pub text: Option<SearchText>,
    pub from: Option<SearchText>,
    pub to: Option<SearchText>,
    pub cc: Option<SearchText>,
    pub bcc: Option<SearchText>,
    pub subject: Option<SearchText>,
    pub body: Option<SearchText>,
    pub header: Option<HeaderCondition>,
}

impl Condition {
    /// The text conditions (RFC 8621 §4.4.1), in this order: `text`, `from`, `to`, `cc`, `bcc`,
    /// `subject`, `body`.
    pub fn search_texts(&self) -> [&Option<SearchText>; 7] {
        [
            &self.text,
            &self.from,
            &self.to,
            &self.cc,
            &self.bcc,
            &self.subject,
            &self.body,
        ]
    }

    /// [`Condition::search_texts`], to change.
    pub fn search_texts_mut(&mut self) -> [&mut Option<SearchText>; 7] {
        [
            &mut self.text,
            &mut self.from,
            &mut self.to,
            &mut self.cc,
            &mut self.bcc,
            &mut self.subject,
            &mut self.body,
        ]
    }

    fn uses_thread_keywords(&self) -> bool {
        self.all_in_thread_have_keyword.is_some()
            || self.some_in_thread_have_keyword.is_some()
            || self.none_in_thread_have_keyword.is_some()
    }
}

/// The FilterOperator's operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    And,
    Or,
    /// None of the conditions match.
    Not,
}

/// A parsed Email filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Filter {
    Operator(Operator, Vec<Filter>),
    Condition(Box<Condition>),
}

/// What is left of a filter's allowance while it is parsed.
struct FilterBudget<'a> {
    limits: &'a QueryLimits,
    conditions: usize,
    text_terms: usize,
}

impl FilterBudget<'_> {
    /// Counts `n` more conditions, refusing the filter beyond `max_filter_conditions`.
    fn spend(&mut self, n: usize) -> Result<(), MethodError> {
        self.conditions += n;
        if self.conditions > self.limits.max_filter_conditions {
            return Err(MethodError::UnsupportedFilter(format!(
                "a filter has at most {} conditions (each property of a FilterCondition and each \
                 word of a text search counts)",
                self.limits.max_filter_conditions
            )));
        }
        Ok(())
    }

    /// Counts the words and phrases of one text search, refusing the filter beyond
    /// `max_text_terms`.
    fn spend_text(&mut self, terms: usize) -> Result<(), MethodError> {
        self.spend(terms.saturating_sub(1))?;
        self.text_terms += terms;
        if self.text_terms > self.limits.max_text_terms {
            return Err(MethodError::UnsupportedFilter(format!(
                "a filter searches for at most {} words or phrases",
                self.limits.max_text_terms
            )));
        }
        Ok(())
    }
}

impl Filter {
    /// Parses a filter (QRY-02): malformed → `invalidArguments`, an unknown condition property or
    /// one beyond `limits` → `unsupportedFilter`.
    pub fn parse(v: &Value, limits: &QueryLimits) -> Result<Filter, MethodError> {
        parse_filter(
            v,
            0,
            &mut FilterBudget {
                limits,
                conditions: 0,
                text_terms: 0,
            },
        )
    }

    /// Whether any condition depends on other emails of the thread.
    /// Whether a condition anywhere in the filter tests a header field.
    pub fn uses_header(&self) -> bool {
        match self {
            Filter::Operator(_, fs) => fs.iter().any(Filter::uses_header),
            Filter::Condition(c) => c.header.is_some(),
        }
    }

    pub fn uses_thread_keywords(&self) -> bool {
        match self {
            Filter::Operator(_, fs) => fs.iter().any(Filter::uses_thread_keywords),
            Filter::Condition(c) => c.uses_thread_keywords(),
        }
    }

    /// Text terms that a match can point at, by where they apply: `(subject terms, body terms)`.
    /// Terms under `NOT` are left out: nothing matched them.
    pub fn highlight_terms(&self) -> (Vec<SearchTerm>, Vec<SearchTerm>) {
        let mut subject = Vec::new();
        let mut body = Vec::new();
        self.collect_terms(&mut subject, &mut body);
        (subject, body)
    }

    fn collect_terms(&self, subject: &mut Vec<SearchTerm>, body: &mut Vec<SearchTerm>) {
        match self {
            Filter::Operator(Operator::Not, _) => {}
            Filter::Operator(_, fs) => fs.iter().for_each(|f| f.collect_terms(subject, body)),
            Filter::Condition(c) => {
                let add = |to: &mut Vec<SearchTerm>, t: &Option<SearchText>| {
                    for term in t.iter().flat_map(|t| t.terms.iter()) {
                        if !to.contains(term) {
                            to.push(term.clone());
                        }
                    }
                };
                add(subject, &c.text);
                add(subject, &c.subject);
                add(body, &c.text);
                add(body, &c.body);
            }
        }
    }
}

pub(super) fn invalid(msg: impl Into<String>) -> MethodError {
    MethodError::InvalidArguments(msg.into())
}

#[expect(
    clippy::too_many_lines,
    reason = "one arm per FilterCondition property (RFC 8621 §4.4.1)"
)]
fn parse_filter(v: &Value, depth: usize, budget: &mut FilterBudget) -> Result<Filter, MethodError> {
    let limits = budget.limits;
    if depth > limits.max_filter_depth {
        return Err(MethodError::UnsupportedFilter(format!(
            "filters nest at most {} deep",
            limits.max_filter_depth
        )));
    }
    let Value::Object(f) = v else {
        return Err(invalid("a filter is an object"));
    };
    if let Some(op) = f.get("operator") {
        let op = match op.as_str() {
            Some("AND") => Operator::And,
            Some("OR") => Operator::Or,
            Some("NOT") => Operator::Not,
            _ => return Err(invalid(format!("unknown operator {op}"))),
        };
        if f.len() != 2 {
            return Err(invalid("a FilterOperator has only operator and conditions"));
        }
        let conditions = f
            .get("conditions")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("a FilterOperator needs a conditions array"))?;
        let parsed = conditions
            .iter()
            .map(|c| parse_filter(c, depth + 1, budget))
            .collect::<Result<_, _>>()?;
        return Ok(Filter::Operator(op, parsed));
    }
    let mut c = Condition::default();
    budget.spend(f.len())?;
    for (key, value) in f {
        let mut text = |v: &Value| {
            let search = v
                .as_str()
                .map(SearchText::parse)
                .ok_or_else(|| invalid(format!("filter {key} must be a string")))?;
            budget.spend_text(search.terms.len())?;
            Ok::<_, MethodError>(search)
        };
        let id = |v: &Value| match v {
            Value::String(s) if Id::is_valid(s) => Ok(s.clone()),
            _ => Err(invalid(format!("filter {key} must be an Id"))),
        };
        let keyword = |v: &Value| {
            v.as_str()
                .and_then(parse_keyword)
                .ok_or_else(|| invalid(format!("filter {key} must be a keyword")))
        };
        let date = |v: &Value| {
            v.as_str()
                .and_then(parse_utc_date)
                .ok_or_else(|| invalid(format!("filter {key} must be a UTCDate")))
        };
        let size = |v: &Value| {
            v.as_u64()
                .filter(|n| *n < (1u64 << 53))
                .ok_or_else(|| invalid(format!("filter {key} must be an UnsignedInt")))
        };
        match key.as_str() {
            "inMailbox" => c.in_mailbox = Some(id(value)?),
            "inMailboxOtherThan" => {
                let ids = value
                    .as_array()
                    .ok_or_else(|| invalid("filter inMailboxOtherThan must be an Id array"))?;
                if ids.len() > limits.max_ids_per_condition {
                    return Err(MethodError::UnsupportedFilter(format!(
                        "inMailboxOtherThan lists at most {} ids",
                        limits.max_ids_per_condition
                    )));
                }
                c.in_mailbox_other_than = Some(ids.iter().map(id).collect::<Result<_, _>>()?);
            }
            "before" => c.before = Some(date(value)?),
            "after" => c.after = Some(date(value)?),
            "minSize" => c.min_size = Some(size(value)?),
            "maxSize" => c.max_size = Some(size(value)?),
            "allInThreadHaveKeyword" => c.all_in_thread_have_keyword = Some(keyword(value)?),
            "someInThreadHaveKeyword" => c.some_in_thread_have_keyword = Some(keyword(value)?),
            "noneInThreadHaveKeyword" => c.none_in_thread_have_keyword = Some(keyword(value)?),
            "hasKeyword" => c.has_keyword = Some(keyword(value)?),
            "notKeyword" => c.not_keyword = Some(keyword(value)?),
            "hasAttachment" => {
                c.has_attachment = Some(
                    value
                        .as_bool()
                        .ok_or_else(|| invalid("filter hasAttachment must be a boolean"))?,
                );
            }
            "text" => c.text = Some(text(value)?),
            "from" => c.from = Some(text(value)?),
            "to" => c.to = Some(text(value)?),
            "cc" => c.cc = Some(text(value)?),
            "bcc" => c.bcc = Some(text(value)?),
            "subject" => c.subject = Some(text(value)?),
            "body" => c.body = Some(text(value)?),
            "header" => c.header = Some(parse_header_condition(value)?),
            _ => {
                return Err(MethodError::UnsupportedFilter(format!(
                    "Email cannot be filtered by {key:?}"
                )));
            }
        }
    }
    Ok(Filter::Condition(Box::new(c)))
}

fn parse_header_condition(v: &Value) -> Result<HeaderCondition, MethodError> {
    let bad = || invalid("filter header must be [name] or [name, text]");
    let items = v.as_array().ok_or_else(bad)?;
    let strings: Vec<&str> = items
        .iter()
        .map(|i| i.as_str().ok_or_else(bad))
        .collect::<Result<_, _>>()?;
    let (name, text) = match strings.as_slice() {
        [name] => (*name, None),
        [name, text] => (*name, Some(header_substrings(text))),
        _ => return Err(bad()),
    };
    // RFC 5322 §2.2: a field name is printable ASCII except ':'.
    if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
        return Err(invalid(format!("{name:?} is not a header field name")));
    }
    Ok(HeaderCondition {
        name: name.to_ascii_lowercase(),
        text,
    })
}

/// A keyword (RFC 8621 §4.1.1), lowercased; `None` if it has a forbidden character.
pub fn parse_keyword(k: &str) -> Option<String> {
    let ok = !k.is_empty()
        && k.len() <= 255
        && k.bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && !b"(){]%*\"\\".contains(&b));
    ok.then(|| k.to_ascii_lowercase())
}

/// A UTCDate (RFC 8620 §1.4) as Unix seconds. Fractional seconds are truncated.
pub fn parse_utc_date(s: &str) -> Option<i64> {
    if !s.ends_with('Z') {
        return None;
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp())
}

#[cfg(test)]
mod tests {
    use crate::mail::search;
    use serde_json::json;

    use super::*;

    fn terms(s: &str) -> Vec<Vec<String>> {
        SearchText::parse(s)
            .terms
            .into_iter()
            .map(|t| t.words)
            .collect()
    }

    fn words(list: &[&[&str]]) -> Vec<Vec<String>> {
        list.iter()
            .map(|w| w.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn unquoted_words_are_separate_terms_and_quotes_make_phrases() {
        assert_eq!(terms("Hello  World"), words(&[&["hello"], &["world"]]));
        let parsed = SearchText::parse(r#"budget "Q3  Plan" 'it\'s'"#).terms;
        assert_eq!(
            parsed
                .iter()
                .map(|t| (t.words.join(" "), t.prefix))
                .collect::<Vec<_>>(),
            vec![
                ("budget".to_owned(), true),
                ("q3 plan".to_owned(), false),
                ("it s".to_owned(), false)
            ]
        );
        assert_eq!(terms(r#""a \"b\" \\c""#), words(&[&["a", "b", "c"]]));
        assert_eq!(terms("  "), Vec::<Vec<String>>::new());
        assert!(SearchText::parse(" -- ").terms[0].is_nothing());
        assert_eq!(terms("\"open ended"), words(&[&["open", "ended"]]));
        assert_eq!(
            header_substrings(r#"List "Q3  Plan" list"#),
            vec!["list", "q3 plan"]
        );
    }

    #[test]
    fn every_term_must_be_present_case_and_accent_insensitively() {
        let t = SearchText::parse("quarterly REPORT");
        assert!(search::matches_all(
            "The Quarterly financial report",
            &t.terms
        ));
        assert!(!search::matches_all("The quarterly numbers", &t.terms));
        let phrase = SearchText::parse("\"financial report\"");
        assert!(search::matches_all("our FINANCIAL\n report", &phrase.terms));
        assert!(!search::matches_all("report financial", &phrase.terms));
        assert!(search::matches_all(
            "Über quarterly",
            &SearchText::parse("uber quart").terms
        ));
    }

    #[test]
    fn operators_nest_and_unknown_conditions_are_unsupported() {
        let f = Filter::parse(
            &json!({"operator": "OR", "conditions": [
                {"inMailbox": "m1", "hasKeyword": "$Seen"},
                {"operator": "NOT", "conditions": [{"text": "x"}]}
            ]}),
            &QueryLimits::default(),
        )
        .unwrap();
        let Filter::Operator(Operator::Or, parts) = &f else {
            panic!("{f:?}")
        };
        let Filter::Condition(c) = &parts[0] else {
            panic!()
        };
        assert_eq!(c.has_keyword.as_deref(), Some("$seen"));
        assert!(matches!(
            Filter::parse(&json!({"colour": "red"}), &QueryLimits::default()),
            Err(MethodError::UnsupportedFilter(_))
        ));
        for bad in [
            json!({"operator": "XOR", "conditions": []}),
            json!({"operator": "AND"}),
            json!({"operator": "AND", "conditions": [], "text": "x"}),
            json!({"minSize": -1}),
            json!({"before": "2024-01-01T00:00:00+02:00"}),
            json!({"header": []}),
            json!({"header": ["a", "b", "c"]}),
            json!({"hasKeyword": "a b"}),
            json!({"inMailbox": 7}),
            json!([1]),
        ] {
            assert!(
                matches!(
                    Filter::parse(&bad, &QueryLimits::default()),
                    Err(MethodError::InvalidArguments(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn dates_are_utc_and_headers_lowercase() {
        let f = Filter::parse(
            &json!({"after": "2024-01-02T03:04:05Z", "header": ["X-Spam"]}),
            &QueryLimits::default(),
        )
        .unwrap();
        let Filter::Condition(c) = f else { panic!() };
        assert_eq!(c.after, Some(1704164645));
        assert_eq!(c.header.unwrap().name, "x-spam");
    }
}
