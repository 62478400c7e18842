//! Running a Request's method calls, in order, against a context (RFC 8620 §3).
//!
//! This is the pure heart of the dispatcher: it checks `using` and the call limit, resolves
//! result references against the responses so far, checks the account a method names, calls the
//! method's handler and collects responses (with any implicit ones right after). It knows nothing
//! of HTTP, actors or databases: the context type `C` is whatever the handlers need, and the
//! `Dispatcher` actor supplies one backed by the store.

use std::collections::{BTreeSet, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::{Map, Value};

use crate::jmap::args::Arguments;
use crate::jmap::capability::check_using;
use crate::jmap::error::{MethodError, RequestError};
use crate::jmap::reference::resolve_references;
use crate::jmap::request::{Invocation, Request, Response};
use crate::jmap::session::{AccountAccess, Principal, ServerInfo, session_state};

/// Whether, and how, a method uses the `accountId` argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountUse {
    /// No `accountId` (Core/echo, PushSubscription/*).
    None,
    /// Reads the account.
    Read,
    /// Changes the account: refused on read-only accounts.
    Write,
}

/// A method handler: reads `call`, returns the response arguments.
pub type Handler<C> = fn(&mut C, &mut Call<'_>) -> Result<Map<String, Value>, MethodError>;

/// One entry of the method table.
pub struct MethodSpec<C> {
    /// The wire name, e.g. `Mailbox/get`.
    pub name: &'static str,
    /// The capability that must be in `using` (and the account's capabilities).
    pub capability: &'static str,
    pub account: AccountUse,
    pub handler: Handler<C>,
}

/// Method name → spec.
pub struct MethodTable<C> {
    methods: HashMap<&'static str, MethodSpec<C>>,
}

impl<C> MethodTable<C> {
    pub fn new(specs: Vec<MethodSpec<C>>) -> Self {
        let mut methods = HashMap::with_capacity(specs.len());
        for spec in specs {
            let name = spec.name;
            assert!(
                methods.insert(name, spec).is_none(),
                "method {name} listed twice"
            );
        }
        MethodTable { methods }
    }

    /// The spec for `name`, if the table has it.
    pub fn get(&self, name: &str) -> Option<&MethodSpec<C>> {
        self.methods.get(name)
    }
}

/// Everything a handler may read or record while running one call.
pub struct Call<'a> {
    /// The method call id.
    pub call_id: &'a str,
    /// The arguments after reference resolution, without `accountId`.
    pub args: Arguments,
    /// The checked account, for methods that take one.
    pub account: Option<AccountAccess>,
    pub principal: &'a Principal,
    pub server: &'a ServerInfo,
    /// Creation id → id, shared by every call of the request (RFC 8620 §5.3).
    pub created_ids: &'a mut HashMap<String, String>,
    /// Responses of implicit calls, emitted right after this call's own (RFC 8620 §5.4).
    pub implicit: Vec<Invocation>,
}

impl Call<'_> {
    /// The checked account; only for methods declared with an [`AccountUse`] other than `None`.
    pub fn account_id(&self) -> &str {
        self.account
            .as_ref()
            .map(|a| a.account_id.as_str())
            .unwrap_or_default()
    }

    /// Resolves a creation-id reference (`#cid`) to the id it created; other ids are returned as
    /// they are. `None` for an unknown creation id.
    pub fn resolve_id(&self, id: &str) -> Option<String> {
        match id.strip_prefix('#') {
            Some(cid) => self.created_ids.get(cid).cloned(),
            None => Some(id.to_owned()),
        }
    }
}

/// Runs `request` for `principal`. Request-level problems come back as `Err`; method-level errors
/// are responses inside the `Ok` value. `observe` hears each call's method name and run time.
pub fn run_request<C>(
    table: &MethodTable<C>,
    ctx: &mut C,
    principal: &Principal,
    server: &ServerInfo,
    request: Request,
    observe: &mut dyn FnMut(&str, std::time::Duration),
) -> Result<Response, RequestError> {
    let enabled = check_using(&request.using, &server.supported(), server.strict_using)?;
    let max_calls = server.limits.max_calls_in_request;
    if request.method_calls.len() as u64 > max_calls {
        return Err(RequestError::limit(
            "maxCallsInRequest",
            format!(
                "the request has {} method calls; the limit is {max_calls}",
                request.method_calls.len()
            ),
        ));
    }
    let client_sent_created_ids = request.created_ids.is_some();
    let mut created_ids = request.created_ids.unwrap_or_default();
    let mut responses: Vec<Invocation> = Vec::with_capacity(request.method_calls.len());
    let mut reference_budget =
        usize::try_from(server.limits.max_size_request).unwrap_or(usize::MAX);
    for invocation in request.method_calls {
        let call_id = invocation.call_id.clone();
        let name = invocation.name.clone();
        let started = std::time::Instant::now();
        let outcome = run_call(
            table,
            ctx,
            principal,
            server,
            &enabled,
            invocation,
            &responses,
            &mut reference_budget,
            &mut created_ids,
        );
        observe(&name, started.elapsed());
        match outcome {
            Ok((name, arguments, implicit)) => {
                responses.push(Invocation {
                    name: name.to_owned(),
                    arguments,
                    call_id,
                });
                responses.extend(implicit);
            }
            Err(error) => {
                let arguments = match error.to_arguments() {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                responses.push(Invocation {
                    name: "error".into(),
                    arguments,
                    call_id,
                });
            }
        }
    }
    Ok(Response {
        method_responses: responses,
        session_state: session_state(server, principal),
        created_ids: client_sent_created_ids.then_some(created_ids),
    })
}

type CallOutcome = (&'static str, Map<String, Value>, Vec<Invocation>);

#[allow(clippy::too_many_arguments)]
fn run_call<C>(
    table: &MethodTable<C>,
    ctx: &mut C,
    principal: &Principal,
    server: &ServerInfo,
    enabled: &BTreeSet<&'static str>,
    invocation: Invocation,
    responses: &[Invocation],
    reference_budget: &mut usize,
    created_ids: &mut HashMap<String, String>,
) -> Result<CallOutcome, MethodError> {
    // Checklist MLE-06: method and capability, then references, then the account.
    let spec = table
        .get(&invocation.name)
        .filter(|spec| enabled.contains(spec.capability))
        .ok_or_else(|| {
            MethodError::UnknownMethod(format!(
                "{} is not a method of the capabilities in \"using\"",
                invocation.name
            ))
        })?;
    let mut arguments = resolve_references(invocation.arguments, responses, reference_budget)?;
    let account = match spec.account {
        AccountUse::None => None,
        use_ => {
            let account_id = match arguments.remove("accountId") {
                Some(Value::String(id)) => id,
                Some(_) => {
                    return Err(MethodError::InvalidArguments(
                        "accountId must be a string".into(),
                    ));
                }
                None => {
                    return Err(MethodError::InvalidArguments(
                        "accountId is required".into(),
                    ));
                }
            };
            let access = principal
                .account(&account_id)
                .ok_or(MethodError::AccountNotFound)?;
            if !server.account_has(access, spec.capability) {
                return Err(MethodError::AccountNotSupportedByMethod);
            }
            if use_ == AccountUse::Write && access.read_only {
                return Err(MethodError::AccountReadOnly);
            }
            Some(access.clone())
        }
    };
    let mut call = Call {
        call_id: &invocation.call_id,
        args: Arguments::new(arguments),
        account,
        principal,
        server,
        created_ids,
        implicit: Vec::new(),
    };
    // A bug in one method must not take the request, or the dispatcher thread, down with it.
    let result = catch_unwind(AssertUnwindSafe(|| (spec.handler)(ctx, &mut call)));
    match result {
        Ok(Ok(arguments)) => Ok((spec.name, arguments, call.implicit)),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            log::error!("method {} panicked", spec.name);
            Err(MethodError::ServerFail(format!(
                "{} failed unexpectedly",
                spec.name
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::limits::Limits;
    use crate::jmap::capability::CORE;
    use crate::jmap::request::parse_request;
    use serde_json::json;
    use std::collections::BTreeMap;

    const TEST_CAP: &str = "urn:ietf:params:jmap:mail";

    #[derive(Default)]
    struct Log(Vec<String>);

    fn echo(_: &mut Log, call: &mut Call<'_>) -> Result<Map<String, Value>, MethodError> {
        Ok(std::mem::take(&mut call.args).into_map())
    }

    fn write(log: &mut Log, call: &mut Call<'_>) -> Result<Map<String, Value>, MethodError> {
        log.0.push(call.account_id().to_owned());
        call.created_ids.insert("k".into(), "id1".into());
        call.implicit
            .push(Invocation::new("Thing/implicit", Map::new(), call.call_id));
        Ok(json!({"accountId": call.account_id()})
            .as_object()
            .unwrap()
            .clone())
    }

    fn boom(_: &mut Log, _: &mut Call<'_>) -> Result<Map<String, Value>, MethodError> {
        panic!("bug")
    }

    fn table() -> MethodTable<Log> {
        MethodTable::new(vec![
            MethodSpec {
                name: "Core/echo",
                capability: CORE,
                account: AccountUse::None,
                handler: echo,
            },
            MethodSpec {
                name: "Thing/set",
                capability: TEST_CAP,
                account: AccountUse::Write,
                handler: write,
            },
            MethodSpec {
                name: "Thing/boom",
                capability: TEST_CAP,
                account: AccountUse::None,
                handler: boom,
            },
        ])
    }

    fn fixture() -> (Principal, ServerInfo) {
        let access = |id: &str, ro: bool| AccountAccess {
            account_id: id.into(),
            name: id.into(),
            is_personal: !ro,
            read_only: ro,
        };
        let principal = Principal {
            user_id: "u".into(),
            username: "u".into(),
            accounts: vec![access("A", false), access("R", true)],
            token_hash: None,
            password_stamp: None,
        };
        let server = ServerInfo::new(
            "http://h",
            Limits {
                max_calls_in_request: 4,
                ..Limits::default()
            },
            BTreeMap::from([(TEST_CAP, json!({}))]),
            BTreeMap::from([(TEST_CAP, json!({}))]),
            false,
        );
        (principal, server)
    }

    fn run(body: Value) -> Result<Response, RequestError> {
        let (principal, server) = fixture();
        let request = parse_request(body.to_string().as_bytes()).unwrap();
        run_request(
            &table(),
            &mut Log::default(),
            &principal,
            &server,
            request,
            &mut |_, _| {},
        )
    }

    fn names(r: &Response) -> Vec<(String, String)> {
        r.method_responses
            .iter()
            .map(|i| {
                (
                    i.name.clone(),
                    i.arguments
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn methods_outside_using_are_unknown_and_later_calls_still_run() {
        let r = run(json!({"using": [CORE], "methodCalls": [["Thing/set", {"accountId": "A"}, "1"], ["Core/echo", {"x": 1}, "2"]]})).unwrap();
        assert_eq!(
            names(&r),
            vec![
                ("error".into(), "unknownMethod".into()),
                ("Core/echo".into(), "".into())
            ]
        );
        assert_eq!(r.method_responses[1].arguments["x"], 1);
    }

    #[test]
    fn the_account_is_checked_before_the_handler_runs() {
        let r = run(json!({"using": [CORE, TEST_CAP], "methodCalls": [
            ["Thing/set", {}, "1"],
            ["Thing/set", {"accountId": "nope"}, "2"],
            ["Thing/set", {"accountId": "R"}, "3"],
            ["Thing/set", {"accountId": "A"}, "4"],
        ]}))
        .unwrap();
        assert_eq!(
            names(&r),
            vec![
                ("error".into(), "invalidArguments".into()),
                ("error".into(), "accountNotFound".into()),
                ("error".into(), "accountReadOnly".into()),
                ("Thing/set".into(), "".into()),
                ("Thing/implicit".into(), "".into()),
            ]
        );
        assert_eq!(
            r.method_responses[4].call_id, "4",
            "implicit responses share the call id"
        );
        assert!(
            r.created_ids.is_none(),
            "no createdIds unless the client sent some"
        );
    }

    #[test]
    fn created_ids_are_returned_with_the_clients_entries_and_the_new_ones() {
        let r = run(json!({"using": [CORE, TEST_CAP], "createdIds": {"old": "x"}, "methodCalls": [["Thing/set", {"accountId": "A"}, "1"]]})).unwrap();
        let ids = r.created_ids.unwrap();
        assert_eq!((ids["old"].as_str(), ids["k"].as_str()), ("x", "id1"));
    }

    #[test]
    fn a_later_call_reads_an_earlier_result_by_reference() {
        let r = run(json!({"using": [CORE], "methodCalls": [
            ["Core/echo", {"list": [{"id": "a"}, {"id": "b"}]}, "1"],
            ["Core/echo", {"#ids": {"resultOf": "1", "name": "Core/echo", "path": "/list/*/id"}}, "2"],
        ]})).unwrap();
        assert_eq!(r.method_responses[1].arguments["ids"], json!(["a", "b"]));
    }

    #[test]
    fn a_panicking_method_becomes_server_fail() {
        let r = run(json!({"using": [CORE, TEST_CAP], "methodCalls": [["Thing/boom", {}, "1"], ["Core/echo", {}, "2"]]})).unwrap();
        assert_eq!(names(&r)[0], ("error".into(), "serverFail".into()));
        assert_eq!(r.method_responses.len(), 2);
    }

    #[test]
    fn too_many_calls_is_a_request_level_limit() {
        let calls: Vec<Value> = (0..5)
            .map(|i| json!(["Core/echo", {}, i.to_string()]))
            .collect();
        let e = run(json!({"using": [CORE], "methodCalls": calls})).unwrap_err();
        assert_eq!(e.to_problem()["limit"], "maxCallsInRequest");
    }
}
