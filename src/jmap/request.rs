//! The API request and response envelopes (RFC 8620 §3.2–3.4).

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::jmap::error::RequestError;
use crate::jmap::json::parse_strict;

/// One method call or response: `[name, arguments, methodCallId]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Invocation {
    pub name: String,
    pub arguments: Map<String, Value>,
    pub call_id: String,
}

impl Invocation {
    pub fn new(
        name: impl Into<String>,
        arguments: Map<String, Value>,
        call_id: impl Into<String>,
    ) -> Self {
        Invocation {
            name: name.into(),
            arguments,
            call_id: call_id.into(),
        }
    }

    /// The wire form, a three-element array.
    pub fn to_json(&self) -> Value {
        Value::Array(vec![
            Value::String(self.name.clone()),
            Value::Object(self.arguments.clone()),
            Value::String(self.call_id.clone()),
        ])
    }
}

/// A parsed Request.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub using: Vec<String>,
    pub method_calls: Vec<Invocation>,
    /// Creation id → id map passed in by the client, if any (RFC 8620 §3.3).
    pub created_ids: Option<HashMap<String, String>>,
}

/// Parses an HTTP request body: strict I-JSON, then the Request type signature.
pub fn parse_request(body: &[u8]) -> Result<Request, RequestError> {
    let value = parse_strict(body)
        .map_err(|e| RequestError::not_json(format!("the body is not valid I-JSON: {e}")))?;
    match value {
        Value::Object(obj) => request_from_object(obj),
        _ => Err(RequestError::not_request(
            "the request is not a JSON object",
        )),
    }
}

/// Reads a Request from an already-parsed object. Members other than `using`, `methodCalls` and
/// `createdIds` are ignored (RFC 8620 §3.3); the WebSocket framing adds `@type` and `id`.
pub fn request_from_object(mut obj: Map<String, Value>) -> Result<Request, RequestError> {
    let using = match obj.remove("using") {
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(RequestError::not_request(
                    "\"using\" must hold only strings",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(RequestError::not_request(
                "\"using\" must be an array of strings",
            ));
        }
        None => return Err(RequestError::not_request("the request has no \"using\"")),
    };
    let method_calls = match obj.remove("methodCalls") {
        Some(Value::Array(calls)) => calls
            .into_iter()
            .enumerate()
            .map(|(i, call)| {
                parse_invocation(call)
                    .map_err(|why| RequestError::not_request(format!("methodCalls[{i}]: {why}")))
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(RequestError::not_request(
                "\"methodCalls\" must be an array",
            ));
        }
        None => {
            return Err(RequestError::not_request(
                "the request has no \"methodCalls\"",
            ));
        }
    };
    let created_ids = match obj.remove("createdIds") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(
            map.into_iter()
                .map(|(k, v)| match v {
                    Value::String(id) => Ok((k, id)),
                    _ => Err(RequestError::not_request(
                        "\"createdIds\" values must be strings",
                    )),
                })
                .collect::<Result<HashMap<_, _>, _>>()?,
        ),
        Some(_) => {
            return Err(RequestError::not_request(
                "\"createdIds\" must be an object",
            ));
        }
    };
    Ok(Request {
        using,
        method_calls,
        created_ids,
    })
}

fn parse_invocation(call: Value) -> Result<Invocation, &'static str> {
    let Value::Array(parts) = call else {
        return Err("an invocation is an array [name, arguments, methodCallId]");
    };
    let Ok([name, arguments, call_id]) = <[Value; 3]>::try_from(parts) else {
        return Err("an invocation has exactly three elements");
    };
    match (name, arguments, call_id) {
        (Value::String(name), Value::Object(arguments), Value::String(call_id)) => Ok(Invocation {
            name,
            arguments,
            call_id,
        }),
        _ => Err("an invocation is [String, Object, String]"),
    }
}

/// A Response (RFC 8620 §3.4).
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    pub method_responses: Vec<Invocation>,
    pub session_state: String,
    pub created_ids: Option<HashMap<String, String>>,
}

impl Response {
    /// The wire form.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut out = Map::new();
        out.insert(
            "methodResponses".into(),
            Value::Array(
                self.method_responses
                    .iter()
                    .map(Invocation::to_json)
                    .collect(),
            ),
        );
        out.insert(
            "sessionState".into(),
            Value::String(self.session_state.clone()),
        );
        if let Some(ids) = &self.created_ids {
            let map = ids
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            out.insert("createdIds".into(), Value::Object(map));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jmap::error::RequestErrorKind;

    fn kind(body: &str) -> RequestErrorKind {
        parse_request(body.as_bytes()).unwrap_err().kind
    }

    #[test]
    fn a_well_formed_request_parses_and_extra_members_are_ignored() {
        let r = parse_request(br#"{"using":["urn:ietf:params:jmap:core"],"methodCalls":[["Core/echo",{"a":1},"c1"]],"extra":true}"#).unwrap();
        assert_eq!(r.using, vec!["urn:ietf:params:jmap:core"]);
        assert_eq!(r.method_calls[0].name, "Core/echo");
        assert_eq!(r.method_calls[0].call_id, "c1");
        assert!(r.created_ids.is_none());
    }

    #[test]
    fn malformed_json_is_not_json_and_wrong_shapes_are_not_request() {
        assert_eq!(kind("{"), RequestErrorKind::NotJson);
        assert_eq!(
            kind(r#"{"using":[],"using":[]}"#),
            RequestErrorKind::NotJson
        );
        assert_eq!(kind("[]"), RequestErrorKind::NotRequest);
        assert_eq!(kind(r#"{"methodCalls":[]}"#), RequestErrorKind::NotRequest);
        assert_eq!(
            kind(r#"{"using":[1],"methodCalls":[]}"#),
            RequestErrorKind::NotRequest
        );
        assert_eq!(
            kind(r#"{"using":[],"methodCalls":[["a",{}]]}"#),
            RequestErrorKind::NotRequest
        );
        assert_eq!(
            kind(r#"{"using":[],"methodCalls":[["a",[],"c"]]}"#),
            RequestErrorKind::NotRequest
        );
        assert_eq!(
            kind(r#"{"using":[],"methodCalls":[],"createdIds":[]}"#),
            RequestErrorKind::NotRequest
        );
    }
}
