//! Email/query, Email/queryChanges (RFC 8621 §4.4, §4.5) and SearchSnippet/get (RFC 8621 §5).
//!
//! This module owns the model: the parsed filter ([`Filter`], [`Condition`]), the sort
//! ([`EmailSort`]), text-search terms ([`SearchText`]) and the snippet highlighting. The store
//! translates the model into SQL over indexed columns (`store::email_query`) and does the sorting
//! and windowing there, so an account of 100,000 messages never travels to Rust for one page.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};

use super::args::Id;
use super::dispatch::Call;
use super::error::MethodError;
use super::limits::QueryLimits;
use super::standard::{self, Comparator};
use crate::mail::search::{self, SearchTerm};

/// The query state is the Email type state.
pub const DATA_TYPE: &str = "Email";

/// The sort properties we support, advertised as `emailQuerySortOptions` (EQ-06).
pub const SORT_OPTIONS: &[&str] = &[
    "receivedAt",
    "sentAt",
    "size",
    "from",
    "to",
    "subject",
    "hasKeyword",
    "allInThreadHaveKeyword",
    "someInThreadHaveKeyword",
];

/// `preview` of a snippet is at most this many octets (SNIP-04).
pub const SNIPPET_PREVIEW_OCTETS: usize = 255;

// ---------------------------------------------------------------------------------------------
// text search (EQ-05)

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

fn invalid(msg: impl Into<String>) -> MethodError {
    MethodError::InvalidArguments(msg.into())
}

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
                )
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

// ---------------------------------------------------------------------------------------------
// sort (EQ-06, QRY-03)

/// What an Email sort comparator compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SortKey {
    ReceivedAt,
    SentAt,
    Size,
    /// The first From address's name, else its email, else "".
    From,
    /// The first To address's name, else its email, else "".
    To,
    /// The RFC 5256 base subject.
    Subject,
    HasKeyword(String),
    AllInThreadHaveKeyword(String),
    SomeInThreadHaveKeyword(String),
}

/// One comparator of an Email sort.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailSort {
    pub key: SortKey,
    pub ascending: bool,
}

/// Reads the comparators (EQ-06): an unknown property → `unsupportedSort`; a keyword sort without
/// `keyword` → `invalidArguments`. No sort means `receivedAt` descending, newest first.
pub fn parse_sort(
    sort: &[Comparator],
    limits: &QueryLimits,
) -> Result<Vec<EmailSort>, MethodError> {
    if sort.len() > limits.max_sort_comparators {
        return Err(MethodError::UnsupportedSort(format!(
            "a sort has at most {} comparators",
            limits.max_sort_comparators
        )));
    }
    let mut out = Vec::with_capacity(sort.len());
    for c in sort {
        let mut extra = c.extra.clone();
        let keyword = extra.remove("keyword");
        let keyword = |name: &str| -> Result<String, MethodError> {
            match &keyword {
                Some(Value::String(k)) => {
                    parse_keyword(k).ok_or_else(|| invalid(format!("{k:?} is not a keyword")))
                }
                _ => Err(invalid(format!("sort by {name} needs a keyword"))),
            }
        };
        let key = match c.property.as_str() {
            "receivedAt" => SortKey::ReceivedAt,
            "sentAt" => SortKey::SentAt,
            "size" => SortKey::Size,
            "from" => SortKey::From,
            "to" => SortKey::To,
            "subject" => SortKey::Subject,
            "hasKeyword" => SortKey::HasKeyword(keyword("hasKeyword")?),
            "allInThreadHaveKeyword" => {
                SortKey::AllInThreadHaveKeyword(keyword("allInThreadHaveKeyword")?)
            }
            "someInThreadHaveKeyword" => {
                SortKey::SomeInThreadHaveKeyword(keyword("someInThreadHaveKeyword")?)
            }
            other => {
                return Err(MethodError::UnsupportedSort(format!(
                    "Email cannot be sorted by {other:?}"
                )));
            }
        };
        if let Some(k) = extra.keys().next() {
            return Err(invalid(format!("unknown comparator member {k:?}")));
        }
        out.push(EmailSort {
            key,
            ascending: c.is_ascending,
        });
    }
    if out.is_empty() {
        out.push(EmailSort {
            key: SortKey::ReceivedAt,
            ascending: false,
        });
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// the store interface

/// A parsed Email query: what to select and in which order. Ties always break by id, so the
/// order is stable (QRY-05).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailQuery {
    pub filter: Option<Filter>,
    pub sort: Vec<EmailSort>,
    /// Keep only the first email of each thread, after filtering and sorting (EQ-01).
    pub collapse_threads: bool,
}

/// Where the window starts (QRY-06, QRY-07).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WindowStart {
    Position(i64),
    Anchor { id: String, offset: i64 },
}

/// Which part of the result to return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryWindow {
    pub start: WindowStart,
    /// How many ids at most (already capped by the server).
    pub limit: u64,
    /// Whether the total is wanted (it may be computed anyway).
    pub calculate_total: bool,
}

/// One window of a query result, all read from one snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryPage {
    /// The Email state the result belongs to.
    pub state: String,
    pub position: u64,
    pub ids: Vec<String>,
    pub total: Option<u64>,
}

/// The first index of a window (QRY-06, QRY-07), given what the store knows: `total` if it
/// counted, and the anchor's index if there is an anchor (`None` → `anchorNotFound`).
/// Returns `None` when the start needs the total and it was not given.
pub fn window_start(
    start: &WindowStart,
    total: Option<u64>,
    anchor_index: Option<u64>,
) -> Result<Option<u64>, MethodError> {
    Ok(match start {
        WindowStart::Position(p) if *p >= 0 => Some(*p as u64),
        WindowStart::Position(p) => total.map(|t| (t as i64 + p).max(0) as u64),
        WindowStart::Anchor { offset, .. } => {
            let index = anchor_index.ok_or(MethodError::AnchorNotFound)? as i64;
            Some((index + offset).max(0) as u64)
        }
    })
}

/// What the Email query methods need from the store.
pub trait EmailQueryStore {
    /// Runs `query` and returns the window, the total if asked or needed, and the Email state,
    /// all from one snapshot. Uses [`window_start`] for the start.
    fn email_query(
        &mut self,
        account_id: &str,
        query: &EmailQuery,
        window: &QueryWindow,
    ) -> Result<QueryPage, MethodError>;

    /// Every Email id whose membership or position in `query` may have changed since `since`
    /// (RFC 8620 §5.6): emails touched since then; with `whole_threads`, every email of a thread
    /// touched since then, or of a touched email's thread.
    fn email_touched_since(
        &mut self,
        account_id: &str,
        since: i64,
        whole_threads: bool,
    ) -> Result<Vec<String>, MethodError>;

    /// Subject and searchable body text of the emails that exist among `ids`.
    fn email_snippet_sources(
        &mut self,
        account_id: &str,
        ids: &[String],
    ) -> Result<Vec<SnippetSource>, MethodError>;

    /// Whether each of `ids` matches `filter` (ids that do not exist are absent).
    fn email_matching(
        &mut self,
        account_id: &str,
        filter: &Filter,
        ids: &[String],
    ) -> Result<HashSet<String>, MethodError>;
}

/// The text a snippet is cut from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnippetSource {
    pub email_id: String,
    pub subject: String,
    /// The plain text of the body (HTML converted).
    pub body: String,
}

fn parse_email_query(
    filter: Option<&Value>,
    sort: &[Comparator],
    collapse_threads: bool,
    limits: &QueryLimits,
) -> Result<EmailQuery, MethodError> {
    Ok(EmailQuery {
        filter: filter.map(|f| Filter::parse(f, limits)).transpose()?,
        sort: parse_sort(sort, limits)?,
        collapse_threads,
    })
}

/// The largest window one query returns when the client sets no smaller `limit` (QRY-08).
pub fn max_query_limit(call: &Call<'_>) -> u64 {
    call.server.limits.max_objects_in_get.max(1000)
}

/// `Email/query` (RFC 8621 §4.4).
pub fn query<C: EmailQueryStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Result<Map<String, Value>, MethodError> {
    let q = standard::parse_query(call)?;
    let collapse_threads = call.args.defaulted("collapseThreads", false)?;
    std::mem::take(&mut call.args).finish()?;
    let query = parse_email_query(
        q.filter.as_ref(),
        &q.sort,
        collapse_threads,
        &call.server.query_limits,
    )?;
    let cap = max_query_limit(call);
    let (limit, capped) = match q.limit {
        Some(l) if l > cap => (cap, Some(cap)),
        Some(l) => (l, None),
        None => (cap, None),
    };
    let start = match q.anchor {
        Some(id) => WindowStart::Anchor {
            id,
            offset: q.anchor_offset,
        },
        None => WindowStart::Position(q.position),
    };
    // Ask for one more than the cap when the client gave no limit: the extra id tells us whether
    // the cap cut the result, which we then must report (QRY-08).
    let probe = q.limit.is_none();
    let window = QueryWindow {
        start,
        limit: if probe { limit + 1 } else { limit },
        calculate_total: q.calculate_total,
    };
    let account_id = call.account_id().to_owned();
    let mut page = ctx.email_query(&account_id, &query, &window)?;
    let mut limit_out = capped;
    if probe && page.ids.len() as u64 > limit {
        page.ids.truncate(limit as usize);
        limit_out = Some(limit);
    }
    let total = q
        .calculate_total
        .then(|| page.total.unwrap_or_default() as usize);
    Ok(standard::query_response(
        &account_id,
        &page.state,
        true,
        page.position as usize,
        page.ids,
        total,
        limit_out,
    ))
}

/// `Email/queryChanges` (RFC 8621 §4.5, EQ-08): every email touched since the query state is
/// reported removed and, if it still matches, added at its index. With `collapseThreads` or a
/// thread-keyword filter or sort, every email of a touched thread counts as touched, because its
/// place depends on its siblings.
pub fn query_changes<C: EmailQueryStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Result<Map<String, Value>, MethodError> {
    let q = standard::parse_query_changes(call)?;
    let collapse_threads = call.args.defaulted("collapseThreads", false)?;
    std::mem::take(&mut call.args).finish()?;
    let query = parse_email_query(
        q.filter.as_ref(),
        &q.sort,
        collapse_threads,
        &call.server.query_limits,
    )?;
    let since = q.since()?;
    let whole_threads = collapse_threads
        || query
            .filter
            .as_ref()
            .is_some_and(Filter::uses_thread_keywords)
        || query.sort.iter().any(|s| {
            matches!(
                s.key,
                SortKey::AllInThreadHaveKeyword(_) | SortKey::SomeInThreadHaveKeyword(_)
            )
        });
    let account_id = call.account_id().to_owned();
    let touched = ctx.email_touched_since(&account_id, since, whole_threads)?;
    let page = ctx.email_query(
        &account_id,
        &query,
        &QueryWindow {
            start: WindowStart::Position(0),
            limit: u64::MAX >> 11,
            calculate_total: false,
        },
    )?;
    standard::query_changes_response(&account_id, &q, &page.state, &touched, &page.ids)
}

// ---------------------------------------------------------------------------------------------
// SearchSnippet (RFC 8621 §5)

/// Escapes `&`, `<` and `>` (SNIP-03).
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
}

/// `text` HTML-escaped with each match wrapped in `<mark></mark>`; `None` when nothing matches.
pub fn highlight(text: &str, terms: &[SearchTerm]) -> Option<String> {
    let ranges = search::match_ranges(text, terms);
    if ranges.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len() + ranges.len() * 13);
    let mut at = 0;
    for std::ops::Range { start: s, end: e } in ranges {
        escape_into(&mut out, &text[at..s]);
        out.push_str("<mark>");
        escape_into(&mut out, &text[s..e]);
        out.push_str("</mark>");
        at = e;
    }
    escape_into(&mut out, &text[at..]);
    Some(out)
}

/// A preview around the first match in `body`: at most [`SNIPPET_PREVIEW_OCTETS`] octets of plain
/// text (before markup and escaping), starting a little before the match, highlighted.
pub fn preview_snippet(body: &str, terms: &[SearchTerm]) -> Option<String> {
    let body = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let first = search::match_ranges(&body, terms).first()?.start;
    let mut start = first.saturating_sub(40);
    while !body.is_char_boundary(start) {
        start -= 1;
    }
    // Start on a word boundary when the cut falls inside a word.
    if start > 0
        && let Some(space) = body[start..first].find(' ')
    {
        start += space + 1;
    }
    let mut end = (start + SNIPPET_PREVIEW_OCTETS).min(body.len());
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    highlight(&body[start..end], terms)
}

/// `SearchSnippet/get` (RFC 8621 §5.1).
pub fn search_snippet_get<C: EmailQueryStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Result<Map<String, Value>, MethodError> {
    let filter = match call.args.take_value("filter") {
        None | Some(Value::Null) => None,
        Some(v) => Some(Filter::parse(&v, &call.server.query_limits)?),
    };
    let ids: Vec<Id> = call.args.required("emailIds")?;
    std::mem::take(&mut call.args).finish()?;
    let max = call.server.limits.max_objects_in_get;
    if ids.len() as u64 > max {
        return Err(MethodError::RequestTooLarge(format!(
            "at most {max} emailIds per SearchSnippet/get"
        )));
    }
    let mut wanted = Vec::with_capacity(ids.len());
    for Id(id) in ids {
        if !wanted.contains(&id) {
            wanted.push(id);
        }
    }
    let account_id = call.account_id().to_owned();
    let sources = ctx.email_snippet_sources(&account_id, &wanted)?;
    let matching = match &filter {
        Some(f) => Some(ctx.email_matching(&account_id, f, &wanted)?),
        None => None,
    };
    let (subject_terms, body_terms) = filter
        .as_ref()
        .map(Filter::highlight_terms)
        .unwrap_or_default();
    let by_id: HashMap<&str, &SnippetSource> =
        sources.iter().map(|s| (s.email_id.as_str(), s)).collect();
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    for id in &wanted {
        let Some(src) = by_id.get(id.as_str()) else {
            not_found.push(id.clone());
            continue;
        };
        // An email that does not match the filter has nothing to point at.
        let hit = matching.as_ref().is_none_or(|m| m.contains(id));
        let subject = hit
            .then(|| highlight(&src.subject, &subject_terms))
            .flatten();
        let preview = hit
            .then(|| preview_snippet(&src.body, &body_terms))
            .flatten();
        list.push(json!({"emailId": id, "subject": subject, "preview": preview}));
    }
    let mut out = Map::new();
    out.insert("accountId".into(), json!(account_id));
    out.insert("list".into(), json!(list));
    // SNIP-01: null, not [], when every id was found.
    out.insert(
        "notFound".into(),
        if not_found.is_empty() {
            Value::Null
        } else {
            json!(not_found)
        },
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
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

    fn term(s: &str) -> SearchTerm {
        SearchTerm::word(s).unwrap()
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

    fn cmp(property: &str, extra: Value) -> Comparator {
        Comparator {
            property: property.into(),
            is_ascending: true,
            collation: None,
            extra: extra.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn keyword_sorts_need_a_keyword_and_unknown_sorts_are_unsupported() {
        assert_eq!(
            parse_sort(
                &[cmp("hasKeyword", json!({"keyword": "$Flagged"}))],
                &QueryLimits::default()
            )
            .unwrap()[0]
                .key,
            SortKey::HasKeyword("$flagged".into())
        );
        assert!(matches!(
            parse_sort(
                &[cmp("someInThreadHaveKeyword", json!({}))],
                &QueryLimits::default()
            ),
            Err(MethodError::InvalidArguments(_))
        ));
        assert!(matches!(
            parse_sort(&[cmp("id", json!({}))], &QueryLimits::default()),
            Err(MethodError::UnsupportedSort(_))
        ));
        assert_eq!(
            parse_sort(&[], &QueryLimits::default()).unwrap(),
            vec![EmailSort {
                key: SortKey::ReceivedAt,
                ascending: false
            }]
        );
    }

    #[test]
    fn window_starts_follow_position_and_anchor_rules() {
        let p = |n| WindowStart::Position(n);
        assert_eq!(window_start(&p(3), None, None).unwrap(), Some(3));
        assert_eq!(window_start(&p(-2), Some(10), None).unwrap(), Some(8));
        assert_eq!(window_start(&p(-20), Some(10), None).unwrap(), Some(0));
        assert_eq!(window_start(&p(-2), None, None).unwrap(), None);
        let a = WindowStart::Anchor {
            id: "x".into(),
            offset: -5,
        };
        assert_eq!(window_start(&a, None, Some(2)).unwrap(), Some(0));
        assert_eq!(
            window_start(&a, None, None),
            Err(MethodError::AnchorNotFound)
        );
    }

    #[test]
    fn highlighting_escapes_html_and_marks_every_match() {
        let t = vec![term("report"), term("a&b")];
        assert_eq!(
            highlight("<b>Report</b> on A&B reports", &t).unwrap(),
            "&lt;b&gt;<mark>Report</mark>&lt;/b&gt; on <mark>A&amp;B</mark> <mark>reports</mark>"
        );
        assert_eq!(highlight("nothing here", &t), None);
        // Folding that changes lengths keeps the marks on the original characters.
        assert_eq!(
            highlight("İstanbul Rëport", &[term("report")]).unwrap(),
            "İstanbul <mark>Rëport</mark>"
        );
    }

    #[test]
    fn a_preview_snippet_is_at_most_255_octets_of_text_around_the_first_match() {
        let body = format!("{} needle {}", "word ".repeat(100), "tail ".repeat(100));
        let p = preview_snippet(&body, &[term("needle")]).unwrap();
        let plain = p.replace("<mark>", "").replace("</mark>", "");
        assert!(plain.len() <= SNIPPET_PREVIEW_OCTETS, "{}", plain.len());
        assert!(p.contains("<mark>needle</mark>"));
        assert!(plain.starts_with("word"));
        assert_eq!(preview_snippet("no match", &[term("needle")]), None);
    }

    #[test]
    fn terms_under_not_are_not_highlighted() {
        let f = Filter::parse(
            &json!({"operator": "AND", "conditions": [
                {"subject": "alpha"}, {"body": "beta"}, {"text": "gamma"},
                {"operator": "NOT", "conditions": [{"text": "delta"}]}
            ]}),
            &QueryLimits::default(),
        )
        .unwrap();
        let (s, b) = f.highlight_terms();
        assert_eq!(s, vec![term("alpha"), term("gamma")]);
        assert_eq!(b, vec![term("beta"), term("gamma")]);
    }
}
