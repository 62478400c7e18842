//! Result references (RFC 8620 §3.7): an argument named `#foo` whose value is
//! `{resultOf, name, path}` is replaced, before the call runs, by the value found at `path` in the
//! first earlier response with method call id `resultOf`.
//!
//! What references resolve to counts against a budget per request (`maxSizeRequest` octets in
//! all): a call may refer to an earlier response that itself holds resolved references, so
//! without one, a few kilobytes of `Core/echo` calls that each repeat the previous response twice
//! would build a response of terabytes.

use serde_json::{Map, Value};

use crate::jmap::error::MethodError;
use crate::jmap::pointer;
use crate::jmap::request::Invocation;

/// Replaces every `#name` argument with the value it refers to. `responses` are the responses
/// emitted so far in this request, in order; `budget` is what the request's references may
/// still resolve to, in octets of JSON, and shrinks by what these resolve to.
pub fn resolve_references(
    arguments: Map<String, Value>,
    responses: &[Invocation],
    budget: &mut usize,
) -> Result<Map<String, Value>, MethodError> {
    if !arguments.keys().any(|k| k.starts_with('#')) {
        return Ok(arguments);
    }
    let mut resolved = Map::with_capacity(arguments.len());
    for (key, value) in &arguments {
        let Some(name) = key.strip_prefix('#') else {
            continue;
        };
        if arguments.contains_key(name) {
            return Err(MethodError::InvalidArguments(format!(
                "both {name:?} and {key:?} are given"
            )));
        }
        let value = resolve_reference(value, responses)?;
        let size = crate::jmap::json::encoded_len(&value);
        if size > *budget {
            return Err(MethodError::InvalidResultReference(
                "the result references of this request resolve to more JSON than the \
                 request may be (maxSizeRequest)"
                    .into(),
            ));
        }
        *budget -= size;
        resolved.insert(name.to_owned(), value);
    }
    for (key, value) in arguments {
        if !key.starts_with('#') {
            resolved.insert(key, value);
        }
    }
    Ok(resolved)
}

/// Resolves one ResultReference object.
pub fn resolve_reference(
    reference: &Value,
    responses: &[Invocation],
) -> Result<Value, MethodError> {
    let invalid = |why: String| MethodError::InvalidResultReference(why);
    let obj = reference
        .as_object()
        .ok_or_else(|| invalid("a result reference is an object {resultOf, name, path}".into()))?;
    let field = |f: &str| {
        obj.get(f)
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("the result reference has no string {f:?}")))
    };
    let (result_of, name, path) = (field("resultOf")?, field("name")?, field("path")?);
    let response = responses
        .iter()
        .find(|r| r.call_id == result_of)
        .ok_or_else(|| {
            invalid(format!(
                "no earlier response has method call id {result_of:?}"
            ))
        })?;
    if response.name != name {
        return Err(invalid(format!(
            "the response to {result_of:?} is {:?}, not {name:?}",
            response.name
        )));
    }
    // The pointer is evaluated against the response's arguments object.
    pointer::evaluate_object(&response.arguments, path)
        .map_err(|e| invalid(format!("path {path:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn responses() -> Vec<Invocation> {
        let obj = |v: Value| v.as_object().unwrap().clone();
        vec![
            Invocation::new("Email/query", obj(json!({"ids": ["e1", "e2"]})), "q"),
            Invocation::new("error", obj(json!({"type": "serverFail"})), "bad"),
            Invocation::new("Email/query", obj(json!({"ids": ["later"]})), "q"),
        ]
    }

    /// Resolution with no budget to speak of.
    fn resolve(
        arguments: Map<String, Value>,
        responses: &[Invocation],
    ) -> Result<Map<String, Value>, MethodError> {
        resolve_references(arguments, responses, &mut usize::MAX.clone())
    }

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn err_type(r: Result<Map<String, Value>, MethodError>) -> &'static str {
        r.unwrap_err().wire_type()
    }

    #[test]
    fn a_reference_is_replaced_by_the_value_of_the_first_matching_response() {
        let out = resolve(
            args(json!({"accountId": "a", "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"}})),
            &responses(),
        )
        .unwrap();
        assert_eq!(out, args(json!({"accountId": "a", "ids": ["e1", "e2"]})));
    }

    #[test]
    fn every_kind_of_failure_is_an_invalid_result_reference() {
        let r = responses();
        let reference = |of: &str, name: &str, path: &str| {
            args(json!({"#ids": {"resultOf": of, "name": name, "path": path}}))
        };
        assert_eq!(
            err_type(resolve(reference("nope", "Email/query", "/ids"), &r)),
            "invalidResultReference"
        );
        assert_eq!(
            err_type(resolve(reference("q", "Email/get", "/ids"), &r)),
            "invalidResultReference"
        );
        assert_eq!(
            err_type(resolve(reference("bad", "Email/query", "/ids"), &r)),
            "invalidResultReference"
        );
        assert_eq!(
            err_type(resolve(reference("q", "Email/query", "/nope"), &r)),
            "invalidResultReference"
        );
        assert_eq!(
            err_type(resolve(reference("q", "Email/query", "ids"), &r)),
            "invalidResultReference"
        );
        assert_eq!(
            err_type(resolve(reference("q", "Email/query", "/ids/7"), &r)),
            "invalidResultReference"
        );
        assert_eq!(
            err_type(resolve(args(json!({"#ids": "q"})), &r)),
            "invalidResultReference"
        );
    }

    #[test]
    fn a_reference_and_a_plain_argument_of_the_same_name_are_invalid_arguments() {
        let a = args(
            json!({"ids": [], "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"}}),
        );
        assert_eq!(err_type(resolve(a, &responses())), "invalidArguments");
    }

    proptest::proptest! {
        /// Whatever the client sends as a reference, resolution either succeeds or fails with
        /// `invalidResultReference` (REF-06), and never panics.
        #[test]
        fn any_reference_resolves_or_fails_as_invalid_result_reference(
            of in "[a-z]{0,2}",
            name in proptest::sample::select(vec!["Email/query", "Email/get", "error"]),
            path in "(/[a-z0-9*~]{0,3}){0,4}|[a-z]{0,3}",
        ) {
            let reference = json!({"#ids": {"resultOf": of, "name": name, "path": path}});
            match resolve(args(reference), &responses()) {
                Ok(out) => proptest::prop_assert!(out.contains_key("ids")),
                Err(e) => proptest::prop_assert_eq!(e.wire_type(), "invalidResultReference"),
            }
        }
    }

    #[test]
    fn references_resolve_within_the_requests_budget_and_not_beyond() {
        let r = responses();
        let reference = json!({"resultOf": "q", "name": "Email/query", "path": "/ids"});
        let size = crate::jmap::json::encoded_len(&json!(["e1", "e2"]));
        let mut budget = size * 2 + size / 2;
        for _ in 0..2 {
            let out = resolve_references(args(json!({"#ids": reference})), &r, &mut budget);
            assert_eq!(out.unwrap()["ids"], json!(["e1", "e2"]));
        }
        assert_eq!(budget, size / 2);
        let over = resolve_references(args(json!({"#ids": reference})), &r, &mut budget);
        assert_eq!(err_type(over), "invalidResultReference");
        assert_eq!(budget, size / 2);
    }

    #[test]
    fn a_reference_may_resolve_to_null() {
        let r = vec![Invocation::new(
            "Mailbox/changes",
            args(json!({"updatedProperties": null})),
            "c",
        )];
        let out = resolve(
            args(json!({"#properties": {"resultOf": "c", "name": "Mailbox/changes", "path": "/updatedProperties"}})),
            &r,
        )
        .unwrap();
        assert_eq!(out["properties"], Value::Null);
    }
}
