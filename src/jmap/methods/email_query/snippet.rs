//! SearchSnippet/get (RFC 8621 §5): subject and preview with the matches marked.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::filter::Filter;
use super::{EmailQueryStore, SNIPPET_PREVIEW_OCTETS, SnippetSource};
use crate::jmap::args::Id;
use crate::jmap::dispatch::Call;
use crate::jmap::error::MethodError;
use crate::mail::search::{self, SearchTerm};

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
