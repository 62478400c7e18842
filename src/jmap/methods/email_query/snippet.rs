//! SearchSnippet/get (RFC 8621 §5): subject and preview with the matches marked.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::filter::Filter;
use super::{EmailQueryStore, SNIPPET_PREVIEW_OCTETS, SnippetSource};
use crate::jmap::args::Id;
use crate::jmap::dispatch::Call;
use crate::jmap::error::MethodError;
use crate::mail::search::{self, SearchTerm};

/// `c` as it is written in a snippet: `&`, `<` and `>` escaped (SNIP-03).
fn escaped(c: char, buf: &mut [u8; 4]) -> &str {
    match c {
        '&' => "&amp;",
        '<' => "&lt;",
        '>' => "&gt;",
        c => c.encode_utf8(buf),
    }
}

const MARK: &str = "<mark>";
const END_MARK: &str = "</mark>";

/// Appends `text` escaped while it fits in `max` octets in all; `false` when it did not all fit
/// (what fitted is written: whole characters and whole entities).
fn escape_within(out: &mut String, text: &str, max: usize) -> bool {
    let mut buf = [0; 4];
    for c in text.chars() {
        let e = escaped(c, &mut buf);
        if out.len() + e.len() > max {
            return false;
        }
        out.push_str(e);
    }
    true
}

/// The length of `text` once escaped.
fn escaped_len(text: &str) -> usize {
    let mut buf = [0; 4];
    text.chars().map(|c| escaped(c, &mut buf).len()).sum()
}

/// `text` HTML-escaped with each match wrapped in `<mark></mark>`, cut to at most `max` octets
/// with its markup and escapes (RFC 8621 §5: a preview "MUST NOT be more than 255 octets"): on a
/// character boundary, never inside an entity, and a match is marked whole or left out, so the
/// tags stay balanced. `None` when nothing matches.
fn highlight_within(text: &str, terms: &[SearchTerm], max: usize) -> Option<String> {
    let ranges = search::match_ranges(text, terms);
    if ranges.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len().min(max) + ranges.len() * 13);
    let mut at = 0;
    for std::ops::Range { start: s, end: e } in ranges {
        if !escape_within(&mut out, &text[at..s], max) {
            return Some(out);
        }
        let matched = &text[s..e];
        if out.len() + MARK.len() + escaped_len(matched) + END_MARK.len() > max {
            return Some(out);
        }
        out.push_str(MARK);
        escape_within(&mut out, matched, max);
        out.push_str(END_MARK);
        at = e;
    }
    escape_within(&mut out, &text[at..], max);
    Some(out)
}

/// `text` HTML-escaped with each match wrapped in `<mark></mark>`; `None` when nothing matches.
pub fn highlight(text: &str, terms: &[SearchTerm]) -> Option<String> {
    highlight_within(text, terms, usize::MAX)
}

/// A preview around the first match in `body`: at most [`SNIPPET_PREVIEW_OCTETS`] octets with
/// its markup, starting a little before the match, highlighted.
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
    // Escapes at most quintuple a character's octets: this much text always fills the preview.
    let mut end = (start + SNIPPET_PREVIEW_OCTETS * 5).min(body.len());
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    highlight_within(&body[start..end], terms, SNIPPET_PREVIEW_OCTETS)
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
    use crate::config::limits::QueryLimits;
    use serde_json::json;

    use super::*;

    fn term(s: &str) -> SearchTerm {
        SearchTerm::word(s).unwrap()
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
    fn a_preview_with_its_markup_and_escapes_is_at_most_255_octets() {
        // RFC 8621 §5: the limit counts the <mark> tags and the entities.
        for body in [
            format!(
                "{} needle {}",
                "Lorem & < > ".repeat(40),
                "ünïcödé ä ".repeat(60)
            ),
            format!("{} needle {}", "€".repeat(300), "€".repeat(300)),
            format!("{}needle{}", "x ".repeat(10), " &&&&&".repeat(100)),
            format!("needle {}", "needle ".repeat(100)),
            format!("{} needle &&&&&", "a".repeat(240)),
        ] {
            let p = preview_snippet(&body, &[term("needle")]).unwrap();
            assert!(p.len() <= SNIPPET_PREVIEW_OCTETS, "{} octets: {p}", p.len());
            assert_eq!(
                p.matches("<mark>").count(),
                p.matches("</mark>").count(),
                "{p}"
            );
            // Never a cut entity: every & starts one of the three escapes.
            let after_amps = p.split('&').skip(1);
            assert!(
                after_amps
                    .clone()
                    .all(|t| ["amp;", "lt;", "gt;"].iter().any(|e| t.starts_with(e))),
                "{p}"
            );
            assert!(!p.ends_with('<'), "{p}");
        }
        // A match that does not fit whole is left out rather than cut.
        let body = format!("{}needle needle", "a ".repeat(120));
        let p = highlight_within(&body, &[term("needle")], 250).unwrap();
        assert!(!p.contains("<mark>"), "{p}");
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
