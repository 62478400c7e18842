//! The standard methods' arguments and responses (RFC 8620 §5.1–5.6), shared by every data type:
//! parsing with the limits applied, and the response shapes. Each type's module supplies only what
//! is its own (properties, validation, filters).

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::args::{Id, Int, UnsignedInt};
use super::changes::{ChangesPage, parse_state, state_string};
use super::dispatch::Call;
use super::error::MethodError;

// ---------------------------------------------------------------------------------------------
// /get

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

// ---------------------------------------------------------------------------------------------
// /changes

/// Parsed `Foo/changes` arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangesRequest {
    pub since_state: String,
    /// The decoded state; `None` when we never issued it (→ `cannotCalculateChanges`).
    pub since_seq: Option<i64>,
    pub max_changes: usize,
}

/// Reads `sinceState` and `maxChanges` (RFC 8620 §5.2). The server caps `maxChanges` at
/// `server_max`.
pub fn parse_changes(
    call: &mut Call<'_>,
    server_max: usize,
) -> Result<ChangesRequest, MethodError> {
    let since_state: String = call.args.required("sinceState")?;
    let max_changes = match call.args.optional::<UnsignedInt>("maxChanges")? {
        Some(UnsignedInt(0)) => {
            return Err(MethodError::InvalidArguments(
                "maxChanges must be at least 1".into(),
            ));
        }
        Some(UnsignedInt(n)) => (n as usize).min(server_max),
        None => server_max,
    };
    Ok(ChangesRequest {
        since_seq: parse_state(&since_state),
        since_state,
        max_changes,
    })
}

/// The `/changes` response (CHG-02).
pub fn changes_response(
    account_id: &str,
    since_state: &str,
    page: &ChangesPage,
) -> Map<String, Value> {
    object(json!({
        "accountId": account_id,
        "oldState": since_state,
        "newState": state_string(page.new_seq),
        "hasMoreChanges": page.has_more_changes,
        "created": page.created,
        "updated": page.updated,
        "destroyed": page.destroyed,
    }))
}

// ---------------------------------------------------------------------------------------------
// /set

/// The type of a SetError: RFC 8620 §5.3, RFC 8621 §2.3, §4.6, §4.8, §7.5, and `serverFail` for
/// a store failure confined to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetErrorType {
    Forbidden,
    OverQuota,
    TooLarge,
    RateLimit,
    NotFound,
    InvalidPatch,
    WillDestroy,
    InvalidProperties,
    Singleton,
    AlreadyExists,
    MailboxHasChild,
    MailboxHasEmail,
    BlobNotFound,
    TooManyKeywords,
    TooManyMailboxes,
    InvalidEmail,
    TooManyRecipients,
    NoRecipients,
    InvalidRecipients,
    ForbiddenMailFrom,
    ForbiddenFrom,
    ForbiddenToSend,
    CannotUnsend,
    ServerFail,
}

impl SetErrorType {
    /// The name on the wire.
    pub fn wire_name(self) -> &'static str {
        match self {
            SetErrorType::Forbidden => "forbidden",
            SetErrorType::OverQuota => "overQuota",
            SetErrorType::TooLarge => "tooLarge",
            SetErrorType::RateLimit => "rateLimit",
            SetErrorType::NotFound => "notFound",
            SetErrorType::InvalidPatch => "invalidPatch",
            SetErrorType::WillDestroy => "willDestroy",
            SetErrorType::InvalidProperties => "invalidProperties",
            SetErrorType::Singleton => "singleton",
            SetErrorType::AlreadyExists => "alreadyExists",
            SetErrorType::MailboxHasChild => "mailboxHasChild",
            SetErrorType::MailboxHasEmail => "mailboxHasEmail",
            SetErrorType::BlobNotFound => "blobNotFound",
            SetErrorType::TooManyKeywords => "tooManyKeywords",
            SetErrorType::TooManyMailboxes => "tooManyMailboxes",
            SetErrorType::InvalidEmail => "invalidEmail",
            SetErrorType::TooManyRecipients => "tooManyRecipients",
            SetErrorType::NoRecipients => "noRecipients",
            SetErrorType::InvalidRecipients => "invalidRecipients",
            SetErrorType::ForbiddenMailFrom => "forbiddenMailFrom",
            SetErrorType::ForbiddenFrom => "forbiddenFrom",
            SetErrorType::ForbiddenToSend => "forbiddenToSend",
            SetErrorType::CannotUnsend => "cannotUnsend",
            SetErrorType::ServerFail => "serverFail",
        }
    }
}

/// A SetError (RFC 8620 §5.3).
#[derive(Clone, Debug, PartialEq)]
pub struct SetError {
    pub kind: SetErrorType,
    pub description: Option<String>,
    pub properties: Option<Vec<String>>,
    /// Type-specific members (e.g. `existingId`, `notFound`).
    pub extra: Map<String, Value>,
}

impl SetError {
    pub fn new(kind: SetErrorType, description: impl Into<String>) -> Self {
        SetError {
            kind,
            description: Some(description.into()),
            properties: None,
            extra: Map::new(),
        }
    }
    pub fn not_found() -> Self {
        SetError {
            kind: SetErrorType::NotFound,
            description: None,
            properties: None,
            extra: Map::new(),
        }
    }
    pub fn forbidden(description: impl Into<String>) -> Self {
        Self::new(SetErrorType::Forbidden, description)
    }
    pub fn invalid_patch(description: impl Into<String>) -> Self {
        Self::new(SetErrorType::InvalidPatch, description)
    }
    /// `invalidProperties` naming the properties as the client sent them (SET-18).
    pub fn invalid_properties(properties: &[&str], description: impl Into<String>) -> Self {
        SetError {
            kind: SetErrorType::InvalidProperties,
            description: Some(description.into()),
            properties: Some(properties.iter().map(|p| p.to_string()).collect()),
            extra: Map::new(),
        }
    }
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.into(), value);
        self
    }

    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("type".into(), Value::from(self.kind.wire_name()));
        if let Some(d) = &self.description {
            out.insert("description".into(), Value::from(d.clone()));
        }
        if let Some(p) = &self.properties {
            out.insert("properties".into(), json!(p));
        }
        out.extend(self.extra.clone());
        Value::Object(out)
    }
}

/// Parsed `Foo/set` arguments.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SetRequest {
    pub if_in_state: Option<String>,
    /// Creation id → properties, in the order sent.
    pub create: ObjectEntries,
    /// Id (maybe `#creationId`) → patch.
    pub update: ObjectEntries,
    pub destroy: Vec<String>,
}

/// Reads `ifInState`, `create`, `update`, `destroy` (RFC 8620 §5.3) and enforces
/// `maxObjectsInSet` over all three together (SES-04).
pub fn parse_set(call: &mut Call<'_>) -> Result<SetRequest, MethodError> {
    let if_in_state = call.args.optional::<String>("ifInState")?;
    let create = object_map(call, "create")?;
    let update = object_map(call, "update")?;
    let destroy: Vec<String> = call
        .args
        .optional::<Vec<Id>>("destroy")?
        .unwrap_or_default()
        .into_iter()
        .map(|Id(i)| i)
        .collect();
    for (cid, _) in &create {
        if !Id::is_valid(cid) {
            return Err(MethodError::InvalidArguments(format!(
                "creation id {cid:?} is not a valid Id"
            )));
        }
    }
    for (id, _) in &update {
        if !Id::is_valid(id.strip_prefix('#').unwrap_or(id)) {
            return Err(MethodError::InvalidArguments(format!(
                "update key {id:?} is not an Id"
            )));
        }
    }
    let total = (create.len() + update.len() + destroy.len()) as u64;
    let max = call.server.limits.max_objects_in_set;
    if total > max {
        return Err(MethodError::RequestTooLarge(format!(
            "{total} operations; at most {max} per /set"
        )));
    }
    Ok(SetRequest {
        if_in_state,
        create,
        update,
        destroy,
    })
}

/// Id → object entries of a `create` or `update` argument, in the order sent.
pub type ObjectEntries = Vec<(String, Map<String, Value>)>;

fn object_map(call: &mut Call<'_>, name: &str) -> Result<ObjectEntries, MethodError> {
    match call.args.take_value(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(map)) => map
            .into_iter()
            .map(|(k, v)| match v {
                Value::Object(o) => Ok((k, o)),
                _ => Err(MethodError::InvalidArguments(format!(
                    "{name}[{k:?}] must be an object"
                ))),
            })
            .collect(),
        Some(_) => Err(MethodError::InvalidArguments(format!(
            "{name} must be an object"
        ))),
    }
}

/// The outcome of a /set, built as operations succeed or fail.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SetResponse {
    pub created: Map<String, Value>,
    pub updated: Map<String, Value>,
    pub destroyed: Vec<String>,
    pub not_created: Map<String, Value>,
    pub not_updated: Map<String, Value>,
    pub not_destroyed: Map<String, Value>,
}

impl SetResponse {
    pub fn create_failed(&mut self, cid: &str, e: SetError) {
        self.not_created.insert(cid.into(), e.to_json());
    }
    pub fn update_failed(&mut self, id: &str, e: SetError) {
        self.not_updated.insert(id.into(), e.to_json());
    }
    pub fn destroy_failed(&mut self, id: &str, e: SetError) {
        self.not_destroyed.insert(id.into(), e.to_json());
    }

    /// The response arguments; empty maps and lists are `null` (SET-09). `states` is
    /// `Some((oldState, newState))` for account-scoped types.
    pub fn to_response(
        self,
        account_id: Option<&str>,
        states: Option<(String, String)>,
    ) -> Map<String, Value> {
        let nullable_map = |m: Map<String, Value>| {
            if m.is_empty() {
                Value::Null
            } else {
                Value::Object(m)
            }
        };
        let mut out = Map::new();
        if let Some(a) = account_id {
            out.insert("accountId".into(), Value::from(a));
        }
        if let Some((old, new)) = states {
            out.insert("oldState".into(), Value::from(old));
            out.insert("newState".into(), Value::from(new));
        }
        out.insert("created".into(), nullable_map(self.created));
        out.insert("updated".into(), nullable_map(self.updated));
        out.insert(
            "destroyed".into(),
            if self.destroyed.is_empty() {
                Value::Null
            } else {
                json!(self.destroyed)
            },
        );
        out.insert("notCreated".into(), nullable_map(self.not_created));
        out.insert("notUpdated".into(), nullable_map(self.not_updated));
        out.insert("notDestroyed".into(), nullable_map(self.not_destroyed));
        out
    }
}

// ---------------------------------------------------------------------------------------------
// /query

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

/// The collations we support (advertised in the core capability).
pub const COLLATIONS: &[&str] = &["i;ascii-numeric", "i;ascii-casemap", "i;unicode-casemap"];

/// Reads the standard /query arguments (RFC 8620 §5.5).
pub fn parse_query(call: &mut Call<'_>) -> Result<QueryRequest, MethodError> {
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
    let property = match o.remove("property") {
        Some(Value::String(p)) => p,
        _ => {
            return Err(MethodError::InvalidArguments(
                "a comparator needs a string property".into(),
            ));
        }
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

// ---------------------------------------------------------------------------------------------
// /queryChanges

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

/// Reads the /queryChanges arguments (RFC 8620 §5.6).
pub fn parse_query_changes(call: &mut Call<'_>) -> Result<QueryChangesRequest, MethodError> {
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
        out.insert("total".into(), json!(current.len()));
    }
    Ok(out)
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let out =
            query_changes_response("A", &qc, "2", &["b".into(), "gone".into()], &current).unwrap();
        assert_eq!(out["removed"], json!(["b", "gone"]));
        assert_eq!(out["added"], json!([{"id": "b", "index": 1}]));
        assert_eq!(out["total"], 3);
        let tight = QueryChangesRequest {
            max_changes: Some(2),
            ..qc
        };
        assert_eq!(
            query_changes_response("A", &tight, "2", &["b".into(), "gone".into()], &current),
            Err(MethodError::TooManyChanges)
        );
    }

    #[test]
    fn empty_set_results_are_null() {
        let out = SetResponse::default().to_response(Some("A"), Some(("1".into(), "1".into())));
        for k in [
            "created",
            "updated",
            "destroyed",
            "notCreated",
            "notUpdated",
            "notDestroyed",
        ] {
            assert_eq!(out[k], Value::Null, "{k}");
        }
    }
}
