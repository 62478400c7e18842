//! JMAP errors: request-level problems (RFC 8620 §3.6.1, RFC 7807) and method-level errors
//! (RFC 8620 §3.6.2). Each variant maps to exactly one wire type.

use serde_json::{Map, Value, json};

/// The kind of a request-level error; the wire `type` is `urn:ietf:params:jmap:error:<name>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestErrorKind {
    UnknownCapability,
    NotJson,
    NotRequest,
    /// A limit was exceeded; the name of the capability field (e.g. `maxCallsInRequest`).
    Limit(&'static str),
}

/// A request-level error: the whole request is rejected with an RFC 7807 problem object.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct RequestError {
    pub kind: RequestErrorKind,
    pub detail: String,
}

impl RequestError {
    pub fn not_json(detail: impl Into<String>) -> Self {
        RequestError {
            kind: RequestErrorKind::NotJson,
            detail: detail.into(),
        }
    }
    pub fn not_request(detail: impl Into<String>) -> Self {
        RequestError {
            kind: RequestErrorKind::NotRequest,
            detail: detail.into(),
        }
    }
    pub fn unknown_capability(detail: impl Into<String>) -> Self {
        RequestError {
            kind: RequestErrorKind::UnknownCapability,
            detail: detail.into(),
        }
    }
    pub fn limit(limit: &'static str, detail: impl Into<String>) -> Self {
        RequestError {
            kind: RequestErrorKind::Limit(limit),
            detail: detail.into(),
        }
    }

    /// The problem `type` URI.
    pub fn type_uri(&self) -> &'static str {
        match self.kind {
            RequestErrorKind::UnknownCapability => "urn:ietf:params:jmap:error:unknownCapability",
            RequestErrorKind::NotJson => "urn:ietf:params:jmap:error:notJSON",
            RequestErrorKind::NotRequest => "urn:ietf:params:jmap:error:notRequest",
            RequestErrorKind::Limit(_) => "urn:ietf:params:jmap:error:limit",
        }
    }

    /// HTTP status. The RFC fixes none; its examples use 400 for all four (checklist RLE-06).
    pub fn status(&self) -> u16 {
        400
    }

    /// The RFC 7807 problem object.
    pub fn to_problem(&self) -> Value {
        let mut problem = json!({
            "type": self.type_uri(),
            "status": self.status(),
            "detail": self.detail,
        });
        if let RequestErrorKind::Limit(limit) = self.kind {
            problem["limit"] = json!(limit);
        }
        problem
    }
}

/// A method-level error (RFC 8620 §3.6.2, RFC 8621). The call's response becomes
/// `["error", {"type": …}, callId]` and later calls still run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MethodError {
    #[error("serverUnavailable: {0}")]
    ServerUnavailable(String),
    #[error("serverFail: {0}")]
    ServerFail(String),
    #[error("unknownMethod: {0}")]
    UnknownMethod(String),
    #[error("invalidArguments: {0}")]
    InvalidArguments(String),
    #[error("invalidResultReference: {0}")]
    InvalidResultReference(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("accountNotFound")]
    AccountNotFound,
    #[error("accountNotSupportedByMethod")]
    AccountNotSupportedByMethod,
    #[error("accountReadOnly")]
    AccountReadOnly,
    #[error("requestTooLarge: {0}")]
    RequestTooLarge(String),
    #[error("stateMismatch")]
    StateMismatch,
    #[error("cannotCalculateChanges: {0}")]
    CannotCalculateChanges(String),
    #[error("anchorNotFound")]
    AnchorNotFound,
    #[error("unsupportedSort: {0}")]
    UnsupportedSort(String),
    #[error("unsupportedFilter: {0}")]
    UnsupportedFilter(String),
    #[error("tooManyChanges")]
    TooManyChanges,
    #[error("fromAccountNotFound")]
    FromAccountNotFound,
    #[error("fromAccountNotSupportedByMethod")]
    FromAccountNotSupportedByMethod,
}

impl MethodError {
    /// The wire `type`.
    pub fn wire_type(&self) -> &'static str {
        match self {
            MethodError::ServerUnavailable(_) => "serverUnavailable",
            MethodError::ServerFail(_) => "serverFail",
            MethodError::UnknownMethod(_) => "unknownMethod",
            MethodError::InvalidArguments(_) => "invalidArguments",
            MethodError::InvalidResultReference(_) => "invalidResultReference",
            MethodError::Forbidden(_) => "forbidden",
            MethodError::AccountNotFound => "accountNotFound",
            MethodError::AccountNotSupportedByMethod => "accountNotSupportedByMethod",
            MethodError::AccountReadOnly => "accountReadOnly",
            MethodError::RequestTooLarge(_) => "requestTooLarge",
            MethodError::StateMismatch => "stateMismatch",
            MethodError::CannotCalculateChanges(_) => "cannotCalculateChanges",
            MethodError::AnchorNotFound => "anchorNotFound",
            MethodError::UnsupportedSort(_) => "unsupportedSort",
            MethodError::UnsupportedFilter(_) => "unsupportedFilter",
            MethodError::TooManyChanges => "tooManyChanges",
            MethodError::FromAccountNotFound => "fromAccountNotFound",
            MethodError::FromAccountNotSupportedByMethod => "fromAccountNotSupportedByMethod",
        }
    }

    fn description(&self) -> Option<&str> {
        match self {
            MethodError::ServerUnavailable(d)
            | MethodError::ServerFail(d)
            | MethodError::UnknownMethod(d)
            | MethodError::InvalidArguments(d)
            | MethodError::InvalidResultReference(d)
            | MethodError::Forbidden(d)
            | MethodError::RequestTooLarge(d)
            | MethodError::CannotCalculateChanges(d)
            | MethodError::UnsupportedSort(d)
            | MethodError::UnsupportedFilter(d) => Some(d.as_str()).filter(|d| !d.is_empty()),
            _ => None,
        }
    }

    /// The error's arguments object: `{"type": …, "description"?: …}`.
    pub fn to_arguments(&self) -> Value {
        let mut args = Map::new();
        args.insert("type".into(), Value::from(self.wire_type()));
        if let Some(d) = self.description() {
            args.insert("description".into(), Value::from(d));
        }
        Value::Object(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_problem_names_the_limit() {
        let p = RequestError::limit("maxCallsInRequest", "too many calls").to_problem();
        assert_eq!(p["type"], "urn:ietf:params:jmap:error:limit");
        assert_eq!(p["limit"], "maxCallsInRequest");
        assert_eq!(p["status"], 400);
    }

    #[test]
    fn method_errors_use_bare_type_names() {
        let v = MethodError::InvalidArguments("ids: not an array".into()).to_arguments();
        assert_eq!(
            v,
            json!({"type": "invalidArguments", "description": "ids: not an array"})
        );
        assert_eq!(
            MethodError::AccountNotFound.to_arguments(),
            json!({"type": "accountNotFound"})
        );
    }
}
