//! Email/query filters as SQL conditions over `e` (the email row): one condition per
//! FilterCondition property, nested as the FilterOperators nest (EQ-02, EQ-03, QRY-02).

use crate::jmap::methods::email_query::{Condition, Filter, HeaderCondition, Operator};
use crate::store::email_search;
use crate::store::query_sql::Sql;

const COL_HAS_ATTACHMENT: &str = "e.has_attachment";

/// `LIKE` pattern for "contains `term`", escaping `\`, `%` and `_`.
pub(super) fn contains_pattern(term: &str) -> String {
    let mut p = String::with_capacity(term.len() + 2);
    p.push('%');
    for c in term.chars() {
        if matches!(c, '\\' | '%' | '_') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// `column` contains every one of `substrings` (lowercase).
fn push_contains_all(sql: &mut Sql, column: &str, substrings: &[String]) {
    if substrings.is_empty() {
        sql.push("1=1");
        return;
    }
    for (i, part) in substrings.iter().enumerate() {
        if i > 0 {
            sql.push(" AND ");
        }
        sql.push("lower(")
            .push(column)
            .push(") LIKE ")
            .text(contains_pattern(part))
            .push(" ESCAPE '\\'");
    }
}

pub(super) fn push_has_keyword(sql: &mut Sql, email: &str, keyword: &str) {
    sql.push("EXISTS (SELECT 1 FROM email_keywords k WHERE k.account_id = ")
        .push(email)
        .push(".account_id AND k.email_id = ")
        .push(email)
        .push(".id AND k.keyword = ")
        .text(keyword)
        .push(")");
}

pub(super) fn push_some_in_thread(sql: &mut Sql, keyword: &str) {
    sql.push(
        "EXISTS (SELECT 1 FROM emails t JOIN email_keywords k \
         ON k.account_id = t.account_id AND k.email_id = t.id \
         WHERE t.account_id = e.account_id AND t.thread_id = e.thread_id AND k.keyword = ",
    )
    .text(keyword)
    .push(")");
}

pub(super) fn push_all_in_thread(sql: &mut Sql, keyword: &str) {
    sql.push(
        "NOT EXISTS (SELECT 1 FROM emails t WHERE t.account_id = e.account_id \
         AND t.thread_id = e.thread_id AND NOT ",
    );
    push_has_keyword(sql, "t", keyword);
    sql.push(")");
}

fn push_header(sql: &mut Sql, h: &HeaderCondition) {
    sql.push(
        "EXISTS (SELECT 1 FROM email_headers h WHERE h.account_id = e.account_id \
         AND h.email_id = e.id AND h.name = ",
    )
    .text(&h.name);
    if let Some(t) = &h.text {
        sql.push(" AND ");
        push_contains_all(sql, "h.value", t);
    }
    sql.push(")");
}

#[expect(
    clippy::too_many_lines,
    reason = "one arm per FilterCondition property, each its SQL"
)]
fn push_condition(sql: &mut Sql, account_id: &str, c: &Condition) {
    let mut first = true;
    let mut and = |sql: &mut Sql| {
        if !first {
            sql.push(" AND ");
        }
        first = false;
    };
    sql.push("(");
    if let Some(m) = &c.in_mailbox {
        and(sql);
        sql.push(
            "EXISTS (SELECT 1 FROM email_mailboxes em WHERE em.account_id = e.account_id \
             AND em.mailbox_id = ",
        )
        .text(m)
        .push(" AND em.email_id = e.id)");
    }
    if let Some(others) = &c.in_mailbox_other_than {
        and(sql);
        sql.push(
            "EXISTS (SELECT 1 FROM email_mailboxes em WHERE em.account_id = e.account_id \
             AND em.email_id = e.id",
        );
        if !others.is_empty() {
            sql.push(" AND em.mailbox_id NOT IN (");
            for (i, m) in others.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.text(m);
            }
            sql.push(")");
        }
        sql.push(")");
    }
    if let Some(t) = c.before {
        and(sql);
        sql.push("e.received_at < ").int(t);
    }
    if let Some(t) = c.after {
        and(sql);
        sql.push("e.received_at >= ").int(t);
    }
    if let Some(n) = c.min_size {
        and(sql);
        sql.push("e.size >= ").int(n as i64);
    }
    if let Some(n) = c.max_size {
        and(sql);
        sql.push("e.size < ").int(n as i64);
    }
    if let Some(k) = &c.all_in_thread_have_keyword {
        and(sql);
        push_all_in_thread(sql, k);
    }
    if let Some(k) = &c.some_in_thread_have_keyword {
        and(sql);
        push_some_in_thread(sql, k);
    }
    if let Some(k) = &c.none_in_thread_have_keyword {
        and(sql);
        sql.push("NOT ");
        push_some_in_thread(sql, k);
    }
    if let Some(k) = &c.has_keyword {
        and(sql);
        push_has_keyword(sql, "e", k);
    }
    if let Some(k) = &c.not_keyword {
        and(sql);
        sql.push("NOT ");
        push_has_keyword(sql, "e", k);
    }
    if let Some(b) = c.has_attachment {
        and(sql);
        sql.push(COL_HAS_ATTACHMENT)
            .push(if b { " = TRUE" } else { " = FALSE" });
    }
    // EQ-04: text searches From, To, Cc, Bcc, Subject and the text body parts, through the index.
    if email_search::has_text_terms(c) {
        and(sql);
        email_search::push_text_match(sql, account_id, c);
    }
    if let Some(h) = &c.header {
        and(sql);
        push_header(sql, h);
    }
    // EQ-03: an empty condition is true.
    if first {
        sql.push("1=1");
    }
    sql.push(")");
}

pub(super) fn push_filter(sql: &mut Sql, account_id: &str, f: &Filter) {
    match f {
        Filter::Condition(c) => push_condition(sql, account_id, c),
        Filter::Operator(op, parts) => {
            if parts.is_empty() {
                // AND of nothing is true, OR of nothing false, NOT of nothing true.
                sql.push(if *op == Operator::Or {
                    "(1=0)"
                } else {
                    "(1=1)"
                });
                return;
            }
            let (prefix, join) = match op {
                Operator::And => ("(", " AND "),
                Operator::Or => ("(", " OR "),
                // QRY-02: NOT means none of the conditions match.
                Operator::Not => ("NOT (", " OR "),
            };
            sql.push(prefix);
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    sql.push(join);
                }
                push_filter(sql, account_id, p);
            }
            sql.push(")");
        }
    }
}
