//! HTML to plain text for previews, the search index and snippets.
//!
//! mail-parser's converter drops tags and decodes entities, but only `</p>` and `<br>` end a line:
//! `<div>one</div><div>two</div>` became "onetwo", so neither word could be found (RFC 8621
//! §4.4.1 `body`) and previews glued table cells and list items together. A browser lays block
//! elements out on lines of their own (HTML Living Standard §15.3, "Rendering: non-replaced
//! elements"); a line break before each of their tags, opening or closing, gives the text the
//! same word breaks.

use std::borrow::Cow;

/// Elements a browser renders as blocks (or table cells and rows), lowercase.
const BLOCK_ELEMENTS: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "caption",
    "center",
    "dd",
    "details",
    "dialog",
    "dir",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hgroup",
    "hr",
    "legend",
    "li",
    "main",
    "menu",
    "nav",
    "ol",
    "option",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "tbody",
    "td",
    "tfoot",
    "th",
    "thead",
    "tr",
    "ul",
];

fn is_block(name: &str) -> bool {
    BLOCK_ELEMENTS.iter().any(|b| b.eq_ignore_ascii_case(name))
}

/// `html` with a `<br>` before every opening or closing tag of a block element; comments are
/// left as they are.
fn break_blocks(html: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut copied = 0;
    let mut at = 0;
    while let Some(offset) = html[at..].find('<') {
        let start = at + offset;
        let tag = &html[start + 1..];
        if let Some(comment) = tag.strip_prefix("!--") {
            at = comment
                .find("-->")
                .map_or(html.len(), |end| start + "<!--".len() + end + "-->".len());
            continue;
        }
        let name = tag.strip_prefix('/').unwrap_or(tag);
        let name_len = name.bytes().take_while(u8::is_ascii_alphanumeric).count();
        let ends_name = name[name_len..]
            .chars()
            .next()
            .is_none_or(|c| c == '>' || c == '/' || c.is_ascii_whitespace());
        if name_len > 0 && ends_name && is_block(&name[..name_len]) {
            out.push_str(&html[copied..start]);
            out.push_str("<br>");
            copied = start;
        }
        at = start + 1;
    }
    if out.is_empty() {
        return Cow::Borrowed(html);
    }
    out.push_str(&html[copied..]);
    Cow::Owned(out)
}

/// HTML to plain text: tags dropped, entities decoded (mail-parser), `<p>`, `<br>` and block
/// elements ending lines.
pub fn html_to_text(html: &str) -> String {
    mail_parser::decoders::html::html_to_text(&break_blocks(html))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(html: &str) -> Vec<String> {
        html_to_text(html)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn block_elements_separate_words() {
        for html in [
            "<div>a1</div><div>a2</div>",
            "<p>a1</p><p>a2</p>",
            "<table><tr><td>a1</td><td>a2</td></tr></table>",
            "<table><tr><th>a1</th></tr><tr><td>a2</td></tr></table>",
            "<ul><li>a1</li><li>a2</li></ul>",
            "<h1>a1</h1><H2>a2</H2>",
            "<blockquote>a1</blockquote>a2",
            "a1<hr>a2",
            "a1<hr/>a2",
            "<pre>a1</pre><section>a2</section>",
            "a1<p>a2",
            "a1<P class=x>a2",
            "<select><option>a1</option><option>a2</option></select>",
            "<article>a1</article><header>a2</header>",
            "<footer>a1</footer><address>a2</address>",
            "<dl><dt>a1</dt><dd>a2</dd></dl>",
            "a1<br>a2",
            "<DIV class=\"x\">a1</DIV><div\n>a2</div>",
        ] {
            assert_eq!(words(html), ["a1", "a2"], "{html}");
        }
    }

    #[test]
    fn inline_elements_and_comments_do_not() {
        assert_eq!(words("<b>bo</b>ld <span>x</span>"), ["bold", "x"]);
        assert_eq!(words("<divx>a</divx>b"), ["ab"]);
        assert_eq!(words("a<!-- <div> -->b"), ["ab"]);
        assert_eq!(
            words("caf&eacute; &amp; <i>lait</i>"),
            ["café", "&", "lait"]
        );
        assert_eq!(break_blocks("<b>plain</b>"), "<b>plain</b>");
    }
}
