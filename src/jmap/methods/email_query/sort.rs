//! The Email/query sort (EQ-06, QRY-03).

use serde_json::Value;

use super::filter::{invalid, parse_keyword};
use crate::config::limits::QueryLimits;
use crate::jmap::error::MethodError;
use crate::jmap::standard::Comparator;

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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
}
