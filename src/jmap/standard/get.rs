//! `/get` arguments and response (RFC 8620 §5.1).

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::object;
use crate::jmap::args::Id;
use crate::jmap::dispatch::Call;
use crate::jmap::error::MethodError;

/// Parsed `Foo/get` arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct GetRequest {
    /// Requested ids (creation references resolved, duplicates removed); `None` = all.
    pub ids: Option<Vec<String>>,
    /// Requested properties, always with `id`; `None` = the type's default set.
    pub properties: Option<Vec<String>>,
}

/// Reads `ids` and `properties` (RFC 8620 §5.1); `known` lists the type's property names.
pub fn parse_get(call: &mut Call<'_>, known: &[&str]) -> Result<GetRequest, MethodError> {
    let ids = call.args.optional::<Vec<Id>>("ids")?;
    let properties = call.args.optional::<Vec<String>>("properties")?;
    let max = call.server.limits.max_objects_in_get;
    let ids = match ids {
        None => None,
        Some(ids) => {
            if ids.len() as u64 > max {
                return Err(MethodError::RequestTooLarge(format!(
                    "at most {max} ids per /get"
                )));
            }
            let mut seen = HashSet::new();
            let mut out = Vec::with_capacity(ids.len());
            for Id(id) in ids {
                // An unknown creation id stays as sent and is reported in notFound.
                let id = call.resolve_id(&id).unwrap_or(id);
                if seen.insert(id.clone()) {
                    out.push(id);
                }
            }
            Some(out)
        }
    };
    let properties = match properties {
        None => None,
        Some(props) => {
            if let Some(bad) = props.iter().find(|p| !known.contains(&p.as_str())) {
                return Err(MethodError::InvalidArguments(format!(
                    "unknown property {bad:?}"
                )));
            }
            let mut out = vec!["id".to_owned()];
            for p in props {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
            Some(out)
        }
    };
    Ok(GetRequest { ids, properties })
}

/// Keeps only `properties` of a full record (all of them when `None`).
pub fn select(record: Map<String, Value>, properties: Option<&[String]>) -> Map<String, Value> {
    match properties {
        None => record,
        Some(props) => {
            let mut record = record;
            props
                .iter()
                .filter_map(|p| record.remove(p).map(|v| (p.clone(), v)))
                .collect()
        }
    }
}

/// The `/get` response (GET-04).
pub fn get_response(
    account_id: &str,
    state: &str,
    list: Vec<Value>,
    not_found: Vec<String>,
) -> Map<String, Value> {
    object(json!({"accountId": account_id, "state": state, "list": list, "notFound": not_found}))
}
