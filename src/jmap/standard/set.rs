//! `/set` arguments, SetError and the response (RFC 8620 §5.3).

use serde_json::{Map, Value, json};

use crate::jmap::args::Id;
use crate::jmap::dispatch::Call;
use crate::jmap::error::MethodError;

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

/// What a create reports (RFC 8620 §5.3): the id and every property the server chose, that is
/// each one of the record's full form that the client did not send.
pub fn created_reply(full: Map<String, Value>, sent: &Map<String, Value>) -> Value {
    Value::Object(
        full.into_iter()
            .filter(|(k, _)| k == "id" || !sent.contains_key(k))
            .collect(),
    )
}

/// What a patch did to a record's full JSON form: the properties whose value changed, and those
/// it removed (patched to `null`, SET-14), which the type resets to their defaults.
pub fn patch_diff(
    before: &Map<String, Value>,
    after: &Map<String, Value>,
) -> (Map<String, Value>, Vec<String>) {
    let changed = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let removed = before
        .keys()
        .filter(|k| !after.contains_key(*k))
        .cloned()
        .collect();
    (changed, removed)
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

impl SetRequest {
    /// `stateMismatch` when `ifInState` was given and is not `state` (RFC 8620 §5.3).
    pub fn check_state(&self, state: &str) -> Result<(), MethodError> {
        match &self.if_in_state {
            Some(want) if want != state => Err(MethodError::StateMismatch),
            _ => Ok(()),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
