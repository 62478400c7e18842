//! The foundation over real HTTP: authentication, the session resource, the API envelope,
//! request-level errors, Core/echo, result references and limits. Checklist ids in comments.
//! Tests that read or change users, tokens and accounts run on both store backends; the protocol
//! ones, which the store does not affect, on SQLite.

use crate::harness;
use crate::harness::{Auth, CORE, TestServer, on_both_backends};
use awc::http::StatusCode;
use serde_json::{Value, json};

fn echo_request(calls: Value) -> Value {
    json!({"using": [CORE], "methodCalls": calls})
}

async fn assert_problem(a: &harness::Answer, type_suffix: &str) {
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{:?}", a.body);
    assert_eq!(a.content_type, "application/problem+json");
    assert_eq!(
        a.body["type"],
        format!("urn:ietf:params:jmap:error:{type_suffix}"),
        "{:?}",
        a.body
    );
    assert_eq!(a.body["status"], 400);
    assert!(a.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
}

#[on_both_backends]
async fn the_session_lists_the_users_account_every_core_limit_and_the_url_templates() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw-alice");
    let a = s.get("/jmap/session", &alice).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.content_type, "application/json");
    // SES-12
    assert!(
        a.headers
            .get("cache-control")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("no-store")
    );
    let session = a.body;
    // SES-01, SES-02
    let core = &session["capabilities"][CORE];
    for limit in [
        "maxSizeUpload",
        "maxConcurrentUpload",
        "maxSizeRequest",
        "maxConcurrentRequests",
        "maxCallsInRequest",
        "maxObjectsInGet",
        "maxObjectsInSet",
    ] {
        assert!(core[limit].as_u64().is_some(), "{limit} missing");
    }
    assert!(
        core["collationAlgorithms"]
            .as_array()
            .unwrap()
            .contains(&json!("i;unicode-casemap"))
    );
    assert_eq!(session["username"], "alice");
    let accounts = session["accounts"].as_object().unwrap();
    assert_eq!(accounts.len(), 1);
    let (_, account) = accounts.iter().next().unwrap();
    assert_eq!(account["name"], "alice");
    assert_eq!(account["isPersonal"], true);
    assert_eq!(account["isReadOnly"], false);
    assert!(account["accountCapabilities"].is_object());
    // SES-09
    assert_eq!(session["apiUrl"], s.url("/jmap/api"));
    for (key, vars) in [
        (
            "downloadUrl",
            &["{accountId}", "{blobId}", "{type}", "{name}"][..],
        ),
        ("uploadUrl", &["{accountId}"][..]),
        ("eventSourceUrl", &["{types}", "{closeafter}", "{ping}"][..]),
    ] {
        let template = session[key].as_str().unwrap();
        assert!(template.starts_with(&s.base), "{key} is absolute");
        for var in vars {
            assert!(template.contains(var), "{key} lacks {var}");
        }
    }
    assert!(session["state"].as_str().is_some_and(|st| !st.is_empty()));
    assert!(
        session["primaryAccounts"].get(CORE).is_none(),
        "SES-07: core is not a primary account key"
    );
}

#[actix_web::test]
async fn the_well_known_url_redirects_to_the_session() {
    let s = TestServer::start().await;
    let a = s.get("/.well-known/jmap", &Auth::None).await;
    assert!(a.status.is_redirection());
    assert_eq!(a.headers.get("location").unwrap(), &s.url("/jmap/session"));
}

#[on_both_backends]
async fn requests_without_valid_credentials_get_401_with_both_challenges() {
    let s = TestServer::start().await;
    s.add_user("alice", "right");
    for auth in [
        Auth::None,
        Auth::basic("alice", "wrong"),
        Auth::basic("nobody", "right"),
        Auth::Bearer("hrd_nope_nope".into()),
    ] {
        for a in [
            s.get("/jmap/session", &auth).await,
            s.api(&auth, echo_request(json!([]))).await,
        ] {
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{auth:?}");
            assert_eq!(a.content_type, "application/problem+json");
            let challenges: Vec<_> = a
                .headers
                .get_all("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned())
                .collect();
            assert!(
                challenges.iter().any(|c| c.starts_with("Basic")),
                "{challenges:?}"
            );
            assert!(
                challenges.iter().any(|c| c.starts_with("Bearer")),
                "{challenges:?}"
            );
        }
    }
}

#[on_both_backends]
async fn a_bearer_token_works_until_it_is_revoked() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw");
    let (id, token) = herald::store::tokens::create(&mut s.store.conn().unwrap(), "alice").unwrap();
    let bearer = Auth::Bearer(token);
    let a = s.get("/jmap/session", &bearer).await;
    assert_eq!(
        (a.status, a.body["username"].clone()),
        (StatusCode::OK, json!("alice"))
    );
    herald::store::tokens::revoke(&mut s.store.conn().unwrap(), &id).unwrap();
    assert_eq!(
        s.get("/jmap/session", &bearer).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[on_both_backends]
async fn a_changed_password_and_a_removed_user_take_effect_at_once_despite_the_cache() {
    let s = TestServer::start().await;
    let old = s.add_user("alice", "old-password");
    assert_eq!(s.get("/jmap/session", &old).await.status, StatusCode::OK); // now cached
    herald::store::users::set_password(&mut s.store.conn().unwrap(), "alice", "new-password")
        .unwrap();
    assert_eq!(
        s.get("/jmap/session", &old).await.status,
        StatusCode::UNAUTHORIZED
    );
    let new = Auth::basic("alice", "new-password");
    assert_eq!(s.get("/jmap/session", &new).await.status, StatusCode::OK);
    herald::store::users::remove(&mut s.store.conn().unwrap(), "alice").unwrap();
    assert_eq!(
        s.get("/jmap/session", &new).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[on_both_backends]
async fn an_api_caller_seen_before_is_refused_once_its_password_changes_or_its_token_is_revoked() {
    let s = TestServer::start().await;
    let old = s.add_user("alice", "old-password");
    let echo = || echo_request(json!([["Core/echo", {}, "0"]]));
    // The first request authenticates; the second goes the one-round-trip way (src/http/callers.rs).
    for _ in 0..2 {
        assert_eq!(s.api(&old, echo()).await.status, StatusCode::OK);
    }
    herald::store::users::set_password(&mut s.store.conn().unwrap(), "alice", "new-password")
        .unwrap();
    assert_eq!(s.api(&old, echo()).await.status, StatusCode::UNAUTHORIZED);
    // A malformed request with stale credentials learns nothing but 401 either.
    let garbage = s
        .post_raw("/jmap/api", &old, "application/json", b"{".to_vec())
        .await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
    let new = Auth::basic("alice", "new-password");
    assert_eq!(s.api(&new, echo()).await.status, StatusCode::OK);
    let (id, token) = herald::store::tokens::create(&mut s.store.conn().unwrap(), "alice").unwrap();
    let bearer = Auth::Bearer(token);
    for _ in 0..2 {
        assert_eq!(s.api(&bearer, echo()).await.status, StatusCode::OK);
    }
    let wrong_type = s
        .post_raw("/jmap/api", &bearer, "text/plain", b"{}".to_vec())
        .await;
    assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST); // still good credentials: notJSON
    herald::store::tokens::revoke(&mut s.store.conn().unwrap(), &id).unwrap();
    assert_eq!(
        s.api(&bearer, echo()).await.status,
        StatusCode::UNAUTHORIZED
    );
    let wrong_type = s
        .post_raw("/jmap/api", &bearer, "text/plain", b"{}".to_vec())
        .await;
    assert_eq!(wrong_type.status, StatusCode::UNAUTHORIZED);
    herald::store::users::remove(&mut s.store.conn().unwrap(), "alice").unwrap();
    assert_eq!(s.api(&new, echo()).await.status, StatusCode::UNAUTHORIZED);
}

#[on_both_backends]
async fn core_echo_returns_its_arguments_unchanged_with_the_session_state() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let session = s.get("/jmap/session", &alice).await.body;
    let args = json!({"hello": true, "high": [1, 2, {"x": null}], "text": "ünïcødé"});
    let a = s
        .api(&alice, echo_request(json!([["Core/echo", args, "c1"]])))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.content_type, "application/json");
    assert_eq!(
        a.body["methodResponses"],
        json!([["Core/echo", args, "c1"]])
    ); // REQ-12
    assert_eq!(a.body["sessionState"], session["state"]); // SES-10
    assert!(a.body.get("createdIds").is_none()); // REQ-06
}

#[actix_web::test]
async fn later_calls_take_their_arguments_from_earlier_results_by_reference() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let r = s
        .call(
            &alice,
            &[CORE],
            json!([
                ["Core/echo", {"list": [{"id": "t1", "emailIds": ["e1", "e2"]}, {"id": "t2", "emailIds": ["e3"]}]}, "a"],
                ["Core/echo", {"#ids": {"resultOf": "a", "name": "Core/echo", "path": "/list/*/emailIds"}, "keep": 1}, "b"],
                ["Core/echo", {"#first": {"resultOf": "b", "name": "Core/echo", "path": "/ids/0"}}, "c"],
            ]),
        )
        .await;
    assert_eq!(
        r[1],
        json!(["Core/echo", {"ids": ["e1", "e2", "e3"], "keep": 1}, "b"])
    ); // REF-05
    assert_eq!(r[2], json!(["Core/echo", {"first": "e1"}, "c"]));
}

/// REF-06 and limits: references may not multiply a request. Each call repeats the previous
/// response twice, so the 32 calls would ask for 2^31 KiB; what a request's references resolve
/// to is bounded by maxSizeRequest in all, and the calls past it are invalidResultReference.
#[actix_web::test]
async fn references_that_would_multiply_a_request_stop_at_max_size_request() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let previous =
        |i: usize| json!({"resultOf": (i - 1).to_string(), "name": "Core/echo", "path": ""});
    let mut calls = vec![json!(["Core/echo", {"x": "y".repeat(1024)}, "0"])];
    for i in 1..32 {
        calls.push(json!(["Core/echo", {"#a": previous(i), "#b": previous(i)}, i.to_string()]));
    }
    let a = s
        .api(&alice, json!({"using": [CORE], "methodCalls": calls}))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let max_size_request = 10_000_000;
    assert!(a.raw.len() < 2 * max_size_request, "{} octets", a.raw.len());
    let names: Vec<&str> = a.body["methodResponses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap())
        .collect();
    let echoed = names.iter().take_while(|n| **n == "Core/echo").count();
    assert!((10..14).contains(&echoed), "{names:?}");
    let refused = &a.body["methodResponses"][echoed];
    assert_eq!(refused[1]["type"], "invalidResultReference", "{refused}");
    assert!(names[echoed..].iter().all(|n| *n == "error"), "{names:?}");
}

#[actix_web::test]
async fn broken_references_and_unknown_methods_are_method_errors_and_the_request_goes_on() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let r = s
        .call(
            &alice,
            &[CORE],
            json!([
                ["Core/echo", {"a": [1]}, "a"],
                ["Core/echo", {"#x": {"resultOf": "a", "name": "Core/echo", "path": "/b"}}, "b"],
                ["Core/echo", {"#x": {"resultOf": "zz", "name": "Core/echo", "path": "/a"}}, "c"],
                ["Core/echo", {"#x": {"resultOf": "a", "name": "Mailbox/get", "path": "/a"}}, "d"],
                ["Core/echo", {"x": 1, "#x": {"resultOf": "a", "name": "Core/echo", "path": "/a"}}, "e"],
                ["Mailbox/nonsense", {}, "f"],
                ["Core/echo", {"ok": true}, "g"],
            ]),
        )
        .await;
    let types: Vec<_> = r
        .iter()
        .map(|i| {
            (
                i[0].as_str().unwrap().to_owned(),
                i[1]["type"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        types,
        vec![
            ("Core/echo".into(), "".into()),
            ("error".into(), "invalidResultReference".into()),
            ("error".into(), "invalidResultReference".into()),
            ("error".into(), "invalidResultReference".into()),
            ("error".into(), "invalidArguments".into()),
            ("error".into(), "unknownMethod".into()),
            ("Core/echo".into(), "".into()),
        ]
    );
    assert_eq!(r[6][2], "g");
}

#[actix_web::test]
async fn created_ids_sent_by_the_client_come_back() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let a = s
        .api(&alice, json!({"using": [CORE], "methodCalls": [["Core/echo", {}, "1"]], "createdIds": {"k1": "id1"}}))
        .await;
    assert_eq!(a.body["createdIds"], json!({"k1": "id1"}));
}

#[actix_web::test]
async fn each_request_level_error_is_problem_json_with_its_type() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    // RLE-03: wrong content type, broken JSON, duplicate names (I-JSON), not UTF-8
    assert_problem(
        &s.post_raw("/jmap/api", &alice, "text/plain", b"{}".to_vec())
            .await,
        "notJSON",
    )
    .await;
    assert_problem(
        &s.post_raw(
            "/jmap/api",
            &alice,
            "application/json",
            b"{\"using\":".to_vec(),
        )
        .await,
        "notJSON",
    )
    .await;
    let dup = br#"{"using":[],"methodCalls":[],"using":[]}"#.to_vec();
    assert_problem(
        &s.post_raw("/jmap/api", &alice, "application/json", dup)
            .await,
        "notJSON",
    )
    .await;
    assert_problem(
        &s.post_raw(
            "/jmap/api",
            &alice,
            "application/json",
            b"\"\xff\"".to_vec(),
        )
        .await,
        "notJSON",
    )
    .await;
    // RLE-04
    for body in [
        json!([]),
        json!({"using": [CORE]}),
        json!({"using": [CORE], "methodCalls": [["Core/echo", {}]]}),
        json!({"using": "x", "methodCalls": []}),
    ] {
        assert_problem(&s.api(&alice, body).await, "notRequest").await;
    }
    // RLE-02
    let a = s
        .api(
            &alice,
            json!({"using": [CORE, "https://example.com/nope"], "methodCalls": []}),
        )
        .await;
    assert_problem(&a, "unknownCapability").await;
    // charset parameter on the content type is fine
    let ok = s
        .post_raw(
            "/jmap/api",
            &alice,
            "application/json; charset=utf-8",
            echo_request(json!([])).to_string().into_bytes(),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
}

#[actix_web::test]
async fn registered_capabilities_are_ignored_by_default_and_refused_when_strict() {
    let using = json!([
        CORE,
        "urn:ietf:params:jmap:contacts",
        "urn:ietf:params:jmap:calendars"
    ]);
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let a = s
        .api(
            &alice,
            json!({"using": using, "methodCalls": [["Core/echo", {}, "1"]]}),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let strict = TestServer::start_with(|c| c.jmap.strict_using = true).await;
    let alice = strict.add_user("alice", "pw");
    let a = strict
        .api(&alice, json!({"using": using, "methodCalls": []}))
        .await;
    assert_problem(&a, "unknownCapability").await;
}

#[actix_web::test]
async fn limits_on_calls_and_request_size_are_enforced_and_named() {
    let s = TestServer::start_with(|c| {
        c.limits.max_calls_in_request = 3;
        c.limits.max_size_request = 2000;
    })
    .await;
    let alice = s.add_user("alice", "pw");
    let session = s.get("/jmap/session", &alice).await.body;
    assert_eq!(session["capabilities"][CORE]["maxCallsInRequest"], 3);
    assert_eq!(session["capabilities"][CORE]["maxSizeRequest"], 2000);
    let calls: Vec<Value> = (0..4)
        .map(|i| json!(["Core/echo", {}, i.to_string()]))
        .collect();
    let a = s.api(&alice, echo_request(json!(calls))).await;
    assert_problem(&a, "limit").await;
    assert_eq!(a.body["limit"], "maxCallsInRequest"); // RLE-05
    let big = json!([["Core/echo", {"pad": "x".repeat(3000)}, "1"]]);
    let a = s.api(&alice, echo_request(big)).await;
    assert_problem(&a, "limit").await;
    assert_eq!(a.body["limit"], "maxSizeRequest");
}

#[actix_web::test]
async fn a_user_cannot_run_more_requests_at_once_than_max_concurrent_requests() {
    use diesel::Connection;
    use diesel::connection::SimpleConnection;
    let s = TestServer::start_with(|c| c.limits.max_concurrent_requests = 1).await;
    let alice = s.add_user("alice", "pw");
    let session = s.get("/jmap/session", &alice).await;
    let account = session.body["primaryAccounts"]["urn:ietf:params:jmap:mail"]
        .as_str()
        .unwrap()
        .to_owned();
    // Keep one request running: it writes, and the test holds SQLite's write lock meanwhile
    // (the store waits up to its busy timeout, 10 s, for it).
    let path = s
        .config
        .store
        .url
        .trim_start_matches("sqlite://")
        .to_owned();
    let mut lock = diesel::SqliteConnection::establish(&path).unwrap();
    lock.batch_execute("BEGIN IMMEDIATE").unwrap();
    let create = json!({"using": [CORE, "urn:ietf:params:jmap:mail"], "methodCalls": [
        ["Mailbox/set", {"accountId": account, "create": {"m": {"name": "held"}}}, "0"]]});
    let hold = || {
        let (base, alice, create) = (s.base.clone(), alice.clone(), create.clone());
        actix_web::rt::spawn(async move {
            let req =
                harness::authorize(harness::client().post(format!("{base}/jmap/api")), &alice);
            harness::answer(req.send_json(&create).await.expect("POST")).await
        })
    };
    let mut held = hold();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let refused = loop {
        let a = s.api(&alice, echo_request(json!([]))).await;
        if a.status == StatusCode::BAD_REQUEST {
            break a;
        }
        // The write may have come while this probe held the slot, and been refused: hold anew.
        if held.is_finished() {
            let lost = held.await.unwrap();
            assert_eq!(
                lost.body["limit"], "maxConcurrentRequests",
                "{:?}",
                lost.body
            );
            held = hold();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a second request is refused"
        );
    };
    assert_eq!(refused.body["limit"], "maxConcurrentRequests");
    // Let the held request finish: it succeeds, and the slot is free again.
    lock.batch_execute("ROLLBACK").unwrap();
    let held = held.await.unwrap();
    assert_eq!(held.status, StatusCode::OK);
    assert!(
        held.body["methodResponses"][0][1]["created"]["m"].is_object(),
        "{:?}",
        held.body
    );
    let a = s.api(&alice, echo_request(json!([]))).await;
    assert_eq!(a.status, StatusCode::OK);
}

#[actix_web::test]
async fn unknown_paths_are_404_problems() {
    let s = TestServer::start().await;
    let a = s.get("/nope", &Auth::None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.content_type, "application/problem+json");
}

/// RFC 9110 §15.5.6: a known path asked with a method it does not take is 405 with `Allow`,
/// and §9.1: what answers GET answers HEAD.
#[actix_web::test]
async fn a_known_path_with_the_wrong_method_is_405_naming_the_methods_it_takes() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let a = s.get("/jmap/api", &alice).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.headers.get("allow").unwrap(), "POST");
    assert_eq!(a.content_type, "application/problem+json");
    let a = s
        .post_raw("/jmap/session", &alice, "application/json", b"{}".to_vec())
        .await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.headers.get("allow").unwrap(), "GET, HEAD");
    let req = harness::authorize(harness::client().head(s.url("/jmap/session")), &alice);
    let head = harness::answer(req.send().await.unwrap()).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.raw.is_empty());
    assert_eq!(head.content_type, "application/json");
    let a = s
        .post_raw("/jmap/eventsource", &alice, "text/plain", Vec::new())
        .await;
    assert_eq!(a.headers.get("allow").unwrap(), "GET");
}

#[actix_web::test]
async fn a_web_client_of_another_origin_may_call_the_api() {
    // CORS: the preflight is answered for any path, and responses may be read by any origin
    // (credentials are never cookies, so no page gets the user's without them typing them in).
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let client = awc::Client::default();
    let preflight = client
        .request(awc::http::Method::OPTIONS, format!("{}/jmap/api", s.base))
        .insert_header(("Origin", "https://webmail.example"))
        .insert_header(("Access-Control-Request-Method", "POST"))
        .insert_header((
            "Access-Control-Request-Headers",
            "authorization, content-type",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    let header = |name: &str| {
        preflight
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    assert_eq!(header("access-control-allow-origin"), "*");
    assert!(header("access-control-allow-methods").contains("post"));
    assert!(header("access-control-allow-headers").contains("authorization"));
    assert!(header("access-control-allow-headers").contains("content-type"));

    let Auth::Basic(user, password) = &alice else {
        unreachable!("a password user")
    };
    let session = client
        .get(format!("{}/jmap/session", s.base))
        .insert_header(("Origin", "https://webmail.example"))
        .basic_auth(user, password)
        .send()
        .await
        .unwrap();
    assert_eq!(session.status(), StatusCode::OK);
    assert_eq!(
        session
            .headers()
            .get("access-control-allow-origin")
            .unwrap(),
        "*"
    );
}

#[actix_web::test]
async fn an_address_that_keeps_guessing_passwords_is_told_to_wait() {
    // Each wrong password costs an argon2 hash on threads that serve everyone: past
    // auth.max_failed_logins_per_minute, the address gets 429 without a check.
    let s = TestServer::start_with(|c| c.auth.max_failed_logins_per_minute = 3).await;
    let alice = s.add_user("alice", "pw");
    let wrong = Auth::basic("alice", "guess");
    for _ in 0..3 {
        assert_eq!(
            s.get("/jmap/session", &wrong).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    let refused = s.get("/jmap/session", &wrong).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers.contains_key("retry-after"));
    assert_eq!(refused.content_type, "application/problem+json");
    // The right password waits too: from this address, nothing is checked for now.
    assert_eq!(
        s.get("/jmap/session", &alice).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}
