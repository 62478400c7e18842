//! `/query` and `/queryChanges` arguments, windows and responses (RFC 8620 §5.5, §5.6).

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::object;
use crate::jmap::args::{Id, Int, UnsignedInt};
use crate::jmap::changes::parse_state;
use crate::jmap::dispatch::Call;
use crate::jmap::error::MethodError;

/// A sort comparator (RFC 8620 §5.5).
#[derive(Clone, Debug, PartialEq)]
pub struct Comparator {
    pub property: String,
    pub is_ascending: bool,
    pub collation: Option<String>,
    /// Type-specific members, e.g. `keyword` for Email's keyword sorts.
    pub extra: Map<String, Value>,
}

/// Parsed `Foo/query` arguments; the filter is left as JSON for the type to interpret.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryRequest {
    pub filter: Option<Value>,
    pub sort: Vec<Comparator>,
    pub position: i64,
    pub anchor: Option<String>,
    pub anchor_offset: i64,
    pub limit: Option<u64>,
    pub calculate_total: bool,
}

/// Compares two strings under `collation` (RFC 4790): `i;ascii-numeric` and `i;octet` by
/// octets, `i;ascii-casemap` with ASCII letters folded, and `i;unicode-casemap`, the default
/// (RFC 8620 §5.5: it must be Unicode-aware), after compatibility decomposition and lowercasing
/// (RFC 5051, with lowercase for its titlecase): "Åsa" sorts with the a's, not after "Zoe".
pub fn collate(collation: Option<&str>, a: &str, b: &str) -> std::cmp::Ordering {
    match collation {
        Some("i;ascii-numeric" | "i;octet") => a.cmp(b),
        Some("i;ascii-casemap") => a.to_ascii_lowercase().cmp(&b.to_ascii_lowercase()),
        _ => crate::mail::text::casemap_key(a).cmp(&crate::mail::text::casemap_key(b)),
    }
}

/// The collations we support (advertised in the core capability).
pub const COLLATIONS: &[&str] = &["i;ascii-numeric", "i;ascii-casemap", "i;unicode-casemap"];

/// Reads `filter` (left as JSON for the type) and `sort`, common to /query and /queryChanges.
fn parse_filter_and_sort(
    call: &mut Call<'_>,
) -> Result<(Option<Value>, Vec<Comparator>), MethodError> {
    let filter = match call.args.take_value("filter") {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v),
        Some(_) => {
            return Err(MethodError::InvalidArguments(
                "filter must be an object".into(),
            ));
        }
    };
    let sort = match call.args.take_value("sort") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(parse_comparator)
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(MethodError::InvalidArguments(
                "sort must be an array".into(),
            ));
        }
    };
    Ok((filter, sort))
}

/// Reads the standard /query arguments (RFC 8620 §5.5).
pub fn parse_query(call: &mut Call<'_>) -> Result<QueryRequest, MethodError> {
    let (filter, sort) = parse_filter_and_sort(call)?;
    let position = call.args.defaulted("position", Int(0))?.0;
    let anchor = call.args.optional::<Id>("anchor")?.map(|Id(a)| a);
    let anchor_offset = call.args.defaulted("anchorOffset", Int(0))?.0;
    let limit = call
        .args
        .optional::<UnsignedInt>("limit")?
        .map(|UnsignedInt(l)| l);
    let calculate_total = call.args.defaulted("calculateTotal", false)?;
    Ok(QueryRequest {
        filter,
        sort,
        position,
        anchor,
        anchor_offset,
        limit,
        calculate_total,
    })
}

fn parse_comparator(v: Value) -> Result<Comparator, MethodError> {
    let Value::Object(mut o) = v else {
        return Err(MethodError::InvalidArguments(
            "a comparator is an object".into(),
        ));
    };
    let Some(Value::String(property)) = o.remove("property") else {
        return Err(MethodError::InvalidArguments(
            "a comparator needs a string property".into(),
        ));
    };
    let is_ascending = match o.remove("isAscending") {
        None => true,
        Some(Value::Bool(b)) => b,
        Some(_) => {
            return Err(MethodError::InvalidArguments(
                "isAscending must be a boolean".into(),
            ));
        }
    };
    let collation = match o.remove("collation") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) if COLLATIONS.contains(&c.as_str()) => Some(c),
        Some(Value::String(c)) => {
            return Err(MethodError::UnsupportedSort(format!(
                "collation {c:?} is not supported"
            )));
        }
        Some(_) => {
            return Err(MethodError::InvalidArguments(
                "collation must be a string".into(),
            ));
        }
    };
    Ok(Comparator {
        property,
        is_ascending,
        collation,
        extra: o,
    })
}

/// Picks the requested window out of the full, sorted result (RFC 8620 §5.5). Returns the real
/// position and the ids. `max_limit` is the server's cap; it reports whether it applied.
pub fn window(
    all: &[String],
    q: &QueryRequest,
    max_limit: u64,
) -> Result<(usize, Vec<String>, Option<u64>), MethodError> {
    let total = all.len() as i64;
    let start = match &q.anchor {
        Some(anchor) => {
            let index = all
                .iter()
                .position(|id| id == anchor)
                .ok_or(MethodError::AnchorNotFound)? as i64;
            (index + q.anchor_offset).clamp(0, total)
        }
        None if q.position < 0 => (total + q.position).max(0),
        None => q.position.min(total),
    } as usize;
    let (limit, capped) = match q.limit {
        Some(l) if l > max_limit => (max_limit, Some(max_limit)),
        Some(l) => (l, None),
        None if (total as u64) > max_limit => (max_limit, Some(max_limit)),
        None => (u64::MAX, None),
    };
    let ids: Vec<String> = all
        .iter()
        .skip(start)
        .take(limit.min(usize::MAX as u64) as usize)
        .cloned()
        .collect();
    Ok((start, ids, capped))
}

/// The `/query` response (QRY-09).
#[allow(clippy::too_many_arguments)]
pub fn query_response(
    account_id: &str,
    query_state: &str,
    can_calculate_changes: bool,
    position: usize,
    ids: Vec<String>,
    total: Option<usize>,
    limit: Option<u64>,
) -> Map<String, Value> {
    let mut out = object(json!({
        "accountId": account_id,
        "queryState": query_state,
        "canCalculateChanges": can_calculate_changes,
        "position": position,
        "ids": ids,
    }));
    if let Some(t) = total {
        out.insert("total".into(), json!(t));
    }
    if let Some(l) = limit {
        out.insert("limit".into(), json!(l));
    }
    out
}

/// Parsed `Foo/queryChanges` arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryChangesRequest {
    pub filter: Option<Value>,
    pub sort: Vec<Comparator>,
    pub since_query_state: String,
    pub since_seq: Option<i64>,
    pub max_changes: Option<u64>,
    pub up_to_id: Option<String>,
    pub calculate_total: bool,
}

impl QueryChangesRequest {
    /// The change-log position `sinceQueryState` names; `cannotCalculateChanges` for a state we
    /// never issued.
    pub fn since(&self) -> Result<i64, MethodError> {
        self.since_seq.ok_or_else(|| {
            MethodError::CannotCalculateChanges(format!(
                "unknown query state {:?}",
                self.since_query_state
            ))
        })
    }
}

/// Reads the /queryChanges arguments (RFC 8620 §5.6).
pub fn parse_query_changes(call: &mut Call<'_>) -> Result<QueryChangesRequest, MethodError> {
    let (filter, sort) = parse_filter_and_sort(call)?;
    let since_query_state: String = call.args.required("sinceQueryState")?;
    let max_changes = match call.args.optional::<UnsignedInt>("maxChanges")? {
        Some(UnsignedInt(0)) => {
            return Err(MethodError::InvalidArguments(
                "maxChanges must be at least 1".into(),
            ));
        }
        other => other.map(|UnsignedInt(n)| n),
    };
    let up_to_id = call.args.optional::<Id>("upToId")?.map(|Id(i)| i);
    let calculate_total = call.args.defaulted("calculateTotal", false)?;
    Ok(QueryChangesRequest {
        filter,
        sort,
        since_seq: parse_state(&since_query_state),
        since_query_state,
        max_changes,
        up_to_id,
        calculate_total,
    })
}

/// Computes `removed` and `added` (RFC 8620 §5.6) from the ids touched since the old query state
/// and the current full result: every touched id is reported removed, and those still in the
/// results are added back at their index. This is the superset the RFC allows, and it is exact
/// for filters and sorts over mutable properties (QCH-02, QCH-03). `upToId` is ignored, which the
/// errata allow (QCH-04).
pub fn query_changes_response(
    account_id: &str,
    q: &QueryChangesRequest,
    new_query_state: &str,
    touched: &[String],
    current: &[String],
    total: usize,
) -> Result<Map<String, Value>, MethodError> {
    let touched_set: HashSet<&str> = touched.iter().map(String::as_str).collect();
    let added: Vec<Value> = current
        .iter()
        .enumerate()
        .filter(|(_, id)| touched_set.contains(id.as_str()))
        .map(|(index, id)| json!({"id": id, "index": index}))
        .collect();
    let mut removed: Vec<&str> = touched_set.into_iter().collect();
    removed.sort_unstable();
    if let Some(max) = q.max_changes
        && (removed.len() + added.len()) as u64 > max
    {
        return Err(MethodError::TooManyChanges);
    }
    let mut out = object(json!({
        "accountId": account_id,
        "oldQueryState": q.since_query_state,
        "newQueryState": new_query_state,
        "removed": removed,
        "added": added,
    }));
    if q.calculate_total {
        out.insert("total".into(), json!(total));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_collation_sorts_accented_letters_with_their_base_letters() {
        let mut names = vec![
            "Zoe", "émilie", "Åsa", "bob", "Émile", "Anna", "Ölaf", "Oscar",
        ];
        names.sort_by(|a, b| collate(None, a, b));
        assert_eq!(
            names,
            [
                "Anna", "Åsa", "bob", "Émile", "émilie", "Oscar", "Ölaf", "Zoe"
            ]
        );
        assert!(collate(Some("i;ascii-casemap"), "Zoe", "Åsa").is_lt());
        assert!(collate(Some("i;octet"), "B", "a").is_lt());
    }

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("i{i}")).collect()
    }

    fn q() -> QueryRequest {
        QueryRequest {
            filter: None,
            sort: vec![],
            position: 0,
            anchor: None,
            anchor_offset: 0,
            limit: None,
            calculate_total: false,
        }
    }

    #[test]
    fn negative_positions_count_from_the_end_and_clamp_at_zero() {
        let all = ids(5);
        let (pos, got, _) = window(
            &all,
            &QueryRequest {
                position: -2,
                ..q()
            },
            100,
        )
        .unwrap();
        assert_eq!((pos, got), (3, vec!["i3".to_owned(), "i4".to_owned()]));
        let (pos, got, _) = window(
            &all,
            &QueryRequest {
                position: -9,
                limit: Some(1),
                ..q()
            },
            100,
        )
        .unwrap();
        assert_eq!((pos, got), (0, vec!["i0".to_owned()]));
        let (pos, got, _) = window(&all, &QueryRequest { position: 7, ..q() }, 100).unwrap();
        assert_eq!((pos, got.len()), (5, 0));
    }

    #[test]
    fn an_anchor_overrides_position_and_its_offset_is_clamped() {
        let all = ids(5);
        let (pos, got, _) = window(
            &all,
            &QueryRequest {
                position: 4,
                anchor: Some("i2".into()),
                anchor_offset: 1,
                limit: Some(2),
                ..q()
            },
            100,
        )
        .unwrap();
        assert_eq!((pos, got), (3, vec!["i3".to_owned(), "i4".to_owned()]));
        let (pos, _, _) = window(
            &all,
            &QueryRequest {
                anchor: Some("i1".into()),
                anchor_offset: -5,
                ..q()
            },
            100,
        )
        .unwrap();
        assert_eq!(pos, 0);
        assert_eq!(
            window(
                &all,
                &QueryRequest {
                    anchor: Some("zz".into()),
                    ..q()
                },
                100
            ),
            Err(MethodError::AnchorNotFound)
        );
    }

    #[test]
    fn the_server_cap_on_limit_is_reported() {
        let all = ids(5);
        let (_, got, capped) = window(
            &all,
            &QueryRequest {
                limit: Some(10),
                ..q()
            },
            3,
        )
        .unwrap();
        assert_eq!((got.len(), capped), (3, Some(3)));
        let (_, got, capped) = window(&all, &q(), 10).unwrap();
        assert_eq!((got.len(), capped), (5, None));
    }

    #[test]
    fn query_changes_re_adds_touched_ids_that_still_match_at_their_index() {
        let qc = QueryChangesRequest {
            filter: None,
            sort: vec![],
            since_query_state: "1".into(),
            since_seq: Some(1),
            max_changes: None,
            up_to_id: None,
            calculate_total: true,
        };
        let current = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let out = query_changes_response("A", &qc, "2", &["b".into(), "gone".into()], &current, 3)
            .unwrap();
        assert_eq!(out["removed"], json!(["b", "gone"]));
        assert_eq!(out["added"], json!([{"id": "b", "index": 1}]));
        assert_eq!(out["total"], 3);
        let tight = QueryChangesRequest {
            max_changes: Some(2),
            ..qc
        };
        assert_eq!(
            query_changes_response("A", &tight, "2", &["b".into(), "gone".into()], &current, 3),
            Err(MethodError::TooManyChanges)
        );
    }
}
