//! PushSubscription and webhook delivery over real HTTP (RFC 8620 §7.2, RFC 8291): a real Herald
//! node, and a webhook sink on 127.0.0.1 that records what it receives and answers the statuses a
//! test chooses. Checklist ids in comments.

use std::io::BufRead;
use std::time::Duration;

use crate::harness;
use crate::harness::push::account_id;
use crate::harness::webhook_sink::{
    Received, WebhookSink, create, push_set, subscribe_verified, verify,
};
use crate::harness::{Auth, CORE, TestServer, on_both_backends};
use herald::config::Config;
use serde_json::{Value, json};

const MAIL: &str = "urn:ietf:params:jmap:mail";
/// How long a test waits for a push before failing.
const WAIT: Duration = Duration::from_secs(20);

fn open_config(c: &mut Config) {
    c.push.allow_private_targets = true;
    c.push.retry_base_ms = 50;
    c.push.retry_cap_ms = 200;
}

async fn start() -> TestServer {
    TestServer::start_with(open_config).await
}

/// A real mutation: creates a mailbox, returns the new Mailbox state.
async fn mutate(s: &TestServer, auth: &Auth, account: &str, name: &str) -> String {
    let r = s
        .call(
            auth,
            &[CORE, MAIL],
            json!([["Mailbox/set", {"accountId": account, "create": {"k": {"name": name}}}, "0"]]),
        )
        .await;
    assert_eq!(r[0][0], "Mailbox/set", "{r:?}");
    assert!(r[0][1]["created"]["k"].is_object(), "{r:?}");
    r[0][1]["newState"].as_str().unwrap().to_owned()
}

async fn push_get(s: &TestServer, auth: &Auth, args: Value) -> Value {
    let r = s
        .call(auth, &[CORE], json!([["PushSubscription/get", args, "0"]]))
        .await;
    r[0].clone()
}

#[on_both_backends]
async fn a_new_subscription_is_verified_first_and_then_receives_state_changes() {
    let s = start().await;
    let mut sink = WebhookSink::start().await;
    let alice = s.add_user("alice", "pw");
    let account = account_id(&s, &alice).await;
    let id = create(
        &s,
        &alice,
        json!({"deviceClientId": "phone", "url": sink.url("/push/1")}),
    )
    .await;

    // PSUB-05, WP-01, WP-02: the PushVerification, plain JSON with a TTL.
    let v = sink.next().await;
    assert_eq!(v.path, "/push/1");
    assert_eq!(v.header("content-type"), Some("application/json"));
    assert!(v.header("ttl").unwrap().parse::<u64>().unwrap() > 0);
    assert!(v.header("content-encoding").is_none());
    let body = v.json();
    assert_eq!(body["@type"], "PushVerification");
    assert_eq!(body["pushSubscriptionId"], id);
    let code = body["verificationCode"].as_str().unwrap().to_owned();
    // At least 128 random bits: 22 base64url characters or more.
    assert!(code.len() >= 22, "{code}");
    assert_eq!(body.as_object().unwrap().len(), 3);

    // PSUB-06: a change before verification is not sent.
    let _unsent = mutate(&s, &alice, &account, "before").await;

    // A wrong code is invalidProperties and does not verify.
    let r = push_set(
        &s,
        &alice,
        json!({"update": {&id: {"verificationCode": "wrong"}}}),
    )
    .await;
    assert_eq!(r["notUpdated"][&id]["type"], "invalidProperties");
    assert_eq!(
        r["notUpdated"][&id]["properties"],
        json!(["verificationCode"])
    );
    assert_eq!(r["updated"], Value::Null);
    let got = push_get(&s, &alice, json!({"ids": [&id]})).await;
    assert_eq!(got[1]["list"][0]["verificationCode"], Value::Null);

    verify(&s, &alice, &id, &code).await;
    let got = push_get(&s, &alice, json!({"ids": null})).await;
    assert_eq!(got[1]["list"][0]["verificationCode"], code);

    let state = mutate(&s, &alice, &account, "after").await;
    // The first thing after the verification is the StateChange of the later mutation: the
    // earlier one was never queued.
    let push = sink.next().await;
    assert_eq!(
        push.json(),
        json!({"@type": "StateChange", "changed": {&account: {"Mailbox": state}}})
    );
    assert_eq!(push.header("content-type"), Some("application/json"));
    assert!(push.header("ttl").unwrap().parse::<u64>().unwrap() > 0);
    // WP-03, WP-04
    assert_eq!(push.header("urgency"), Some("normal"));
    let topic = push.header("topic").unwrap();
    assert!(topic.len() <= 32);
    assert!(
        topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    sink.stop().await;
    s.stop().await;
}

#[on_both_backends]
async fn get_never_returns_the_url_or_keys_and_asking_for_them_is_forbidden() {
    let s = start().await;
    let sink = WebhookSink::start().await;
    let alice = s.add_user("alice", "pw");
    let id = create(
        &s,
        &alice,
        json!({"deviceClientId": "d", "url": sink.url("/x"), "types": ["Mailbox"]}),
    )
    .await;
    // PSUB-04
    let got = push_get(&s, &alice, json!({})).await;
    let item = &got[1]["list"][0];
    assert_eq!(item["id"], id);
    assert_eq!(item["deviceClientId"], "d");
    assert_eq!(item["types"], json!(["Mailbox"]));
    assert!(item.get("url").is_none() && item.get("keys").is_none());
    // PSUB-02: no state, no accountId.
    assert!(got[1].get("state").is_none() && got[1].get("accountId").is_none());
    for props in [json!(["url"]), json!(["id", "keys"])] {
        let got = push_get(&s, &alice, json!({"properties": props})).await;
        assert_eq!(got[0], "error");
        assert_eq!(got[1]["type"], "forbidden");
    }
    // PSUB-03: another user sees nothing of it.
    let bob = s.add_user("bob", "pw");
    let got = push_get(&s, &bob, json!({"ids": [&id]})).await;
    assert_eq!(got[1]["list"], json!([]));
    assert_eq!(got[1]["notFound"], json!([id]));
    // PSUB-03: bound to the user's credentials: removing the user removes it.
    let mut conn = s.store.conn().unwrap();
    let user = herald::store::users::find_by_name(&mut conn, "alice")
        .unwrap()
        .unwrap();
    assert_eq!(
        herald::store::push_subscription::list(&mut conn, &user.id)
            .unwrap()
            .len(),
        1
    );
    herald::store::users::remove(&mut conn, "alice").unwrap();
    assert!(
        herald::store::push_subscription::find(&mut conn, &id)
            .unwrap()
            .is_none()
    );
    sink.stop().await;
    s.stop().await;
}

#[on_both_backends]
async fn expires_is_capped_and_each_user_has_a_subscription_limit() {
    let s = TestServer::start_with(|c| {
        open_config(c);
        c.push.subscription_max_expires_secs = 3600;
        c.push.subscriptions_per_user = 2;
        c.push.subscription_creations_per_hour = 3;
    })
    .await;
    let sink = WebhookSink::start().await;
    let alice = s.add_user("alice", "pw");
    let sub =
        json!({"deviceClientId": "d", "url": sink.url("/x"), "expires": "2999-01-01T00:00:00Z"});
    let before = chrono::Utc::now().timestamp();
    let r = push_set(
        &s,
        &alice,
        json!({"create": {"a": sub.clone(), "b": sub.clone(), "c": sub}}),
    )
    .await;
    // PSUB-08: shortened, and the effective value returned in created.
    let expires = r["created"]["a"]["expires"].as_str().unwrap();
    let t = chrono::DateTime::parse_from_rfc3339(expires)
        .unwrap()
        .timestamp();
    assert!(
        (before + 3600..=before + 3600 + 60).contains(&t),
        "{expires}"
    );
    assert!(r["created"]["b"]["id"].is_string());
    // PSUB-11: the per-user cap.
    assert_eq!(r["notCreated"]["c"]["type"], "overQuota", "{r}");
    assert_eq!(r["notUpdated"], Value::Null);
    assert!(r.get("oldState").is_none() && r.get("newState").is_none());
    // Extending is capped too, and reported in updated.
    let id = r["created"]["a"]["id"].as_str().unwrap();
    let r = push_set(
        &s,
        &alice,
        json!({"update": {id: {"expires": "2999-01-01T00:00:00Z"}}}),
    )
    .await;
    let t = chrono::DateTime::parse_from_rfc3339(r["updated"][id]["expires"].as_str().unwrap())
        .unwrap()
        .timestamp();
    assert!(t <= chrono::Utc::now().timestamp() + 3600);
    // Destroying frees a place.
    let r = push_set(&s, &alice, json!({"destroy": [id]})).await;
    assert_eq!(r["destroyed"], json!([id]));
    let r = push_set(
        &s,
        &alice,
        json!({"create": {"d": {"deviceClientId": "d", "url": sink.url("/y")}}}),
    )
    .await;
    let d = r["created"]["d"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    // PSUB-11: the creation rate is limited too; destroying does not give creations back.
    push_set(&s, &alice, json!({"destroy": [d]})).await;
    let r = push_set(
        &s,
        &alice,
        json!({"create": {"e": {"deviceClientId": "d", "url": sink.url("/z")}}}),
    )
    .await;
    assert_eq!(r["notCreated"]["e"]["type"], "rateLimit", "{r}");
    sink.stop().await;
    s.stop().await;
}

#[on_both_backends]
async fn a_failing_push_service_is_retried_with_backoff_until_it_accepts() {
    let s = start().await;
    let mut sink = WebhookSink::start().await;
    let alice = s.add_user("alice", "pw");
    let account = account_id(&s, &alice).await;
    // The verification itself is retried (PSUB-05: retried on failure).
    sink.script(&[500, 503]);
    let id = create(
        &s,
        &alice,
        json!({"deviceClientId": "d", "url": sink.url("/r")}),
    )
    .await;
    let tries: Vec<Received> = vec![sink.next().await, sink.next().await, sink.next().await];
    assert_eq!(
        tries.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![500, 503, 201]
    );
    let code = tries[2].json()["verificationCode"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(tries.iter().all(|r| r.json()["verificationCode"] == code));
    verify(&s, &alice, &id, &code).await;

    // A StateChange is retried too, and keeps its states.
    sink.script(&[500, 429]);
    let state = mutate(&s, &alice, &account, "m").await;
    let expected = json!({"@type": "StateChange", "changed": {&account: {"Mailbox": state}}});
    for want in [500, 429, 201] {
        let r = sink.next().await;
        assert_eq!(r.status, want);
        assert_eq!(r.json(), expected);
    }
    sink.stop().await;
    s.stop().await;
}

#[on_both_backends]
async fn a_subscription_whose_push_service_answers_gone_is_destroyed() {
    let s = start().await;
    let mut sink = WebhookSink::start().await;
    let alice = s.add_user("alice", "pw");
    let account = account_id(&s, &alice).await;
    let id = subscribe_verified(&s, &alice, &mut sink, "/gone").await;
    let retired = || {
        herald::metrics::metrics()
            .webhook_subscriptions_retired
            .with_label_values(&["gone"])
            .get()
    };
    let retired_before = retired();
    sink.script(&[410]);
    mutate(&s, &alice, &account, "m").await;
    assert_eq!(sink.next().await.status, 410);
    // WP-06: retired. Poll /get (bounded) until the sender has processed the answer.
    let mut gone = false;
    for _ in 0..200 {
        let got = push_get(&s, &alice, json!({"ids": [&id]})).await;
        if got[1]["notFound"] == json!([&id]) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the subscription was not destroyed");
    // Counted for operators (the counter is the test process's, so at least this one).
    assert!(retired() > retired_before);
    // And nothing more is sent to it.
    mutate(&s, &alice, &account, "n").await;
    let other = subscribe_verified(&s, &alice, &mut sink, "/other").await;
    let state = mutate(&s, &alice, &account, "o").await;
    let r = sink.next().await;
    assert_eq!(r.path, "/other", "the retired URL got {:?}", r.json());
    assert_eq!(r.json()["changed"][&account]["Mailbox"], state);
    assert_ne!(other, id);
    sink.stop().await;
    s.stop().await;
}

#[on_both_backends]
async fn urls_on_private_addresses_or_plain_http_are_refused_by_default() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    // PSUB-11: loopback, private, link-local (metadata), localhost, and plain http.
    for url in [
        "https://127.0.0.1:9/push",
        "https://10.0.0.1/push",
        "https://169.254.169.254/latest",
        "https://[::1]/push",
        "https://localhost/push",
        "http://push.example.com/push",
        "ftp://push.example.com/",
    ] {
        let r = push_set(
            &s,
            &alice,
            json!({"create": {"k": {"deviceClientId": "d", "url": url}}}),
        )
        .await;
        assert_eq!(r["notCreated"]["k"]["type"], "invalidProperties", "{url}");
        assert_eq!(r["notCreated"]["k"]["properties"], json!(["url"]), "{url}");
    }
    let got = push_get(&s, &alice, json!({})).await;
    assert_eq!(got[1]["list"], json!([]));
    s.stop().await;
}

#[on_both_backends]
async fn with_keys_every_push_is_encrypted_and_the_user_agent_decrypts_it() {
    use herald::jmap::methods::push_subscription::keys::encode_base64url;
    use herald::push::webpush::decrypt;
    let s = start().await;
    let mut sink = WebhookSink::start().await;
    let alice = s.add_user("alice", "pw");
    let account = account_id(&s, &alice).await;
    let ua_secret = p256::SecretKey::from_slice(&[7u8; 32]).unwrap();
    let ua_public = p256::EncodedPoint::from(ua_secret.public_key());
    let auth = [42u8; 16];
    let keys =
        json!({"p256dh": encode_base64url(ua_public.as_bytes()), "auth": encode_base64url(&auth)});
    let id = create(
        &s,
        &alice,
        json!({"deviceClientId": "d", "url": sink.url("/enc"), "keys": keys}),
    )
    .await;
    // WP-07: the PushVerification is encrypted too.
    let v = sink.next().await;
    assert_eq!(v.header("content-encoding"), Some("aes128gcm"));
    assert_eq!(v.header("content-type"), Some("application/json"));
    assert!(v.header("ttl").is_some());
    assert!(serde_json::from_slice::<Value>(&v.body).is_err());
    let plain: Value =
        serde_json::from_slice(&decrypt(&ua_secret, &auth, &v.body).unwrap()).unwrap();
    assert_eq!(plain["@type"], "PushVerification");
    assert_eq!(plain["pushSubscriptionId"], id);
    verify(&s, &alice, &id, plain["verificationCode"].as_str().unwrap()).await;

    let state = mutate(&s, &alice, &account, "secret").await;
    let push = sink.next().await;
    assert_eq!(push.header("content-encoding"), Some("aes128gcm"));
    // WP-11: salt(16) rs(4) idlen(1)=65 keyid(65)
    assert_eq!(push.body[20], 65);
    let plain: Value =
        serde_json::from_slice(&decrypt(&ua_secret, &auth, &push.body).unwrap()).unwrap();
    assert_eq!(
        plain,
        json!({"@type": "StateChange", "changed": {&account: {"Mailbox": state}}})
    );
    // Keys that are not a P-256 point are refused (WP-09).
    let r = push_set(
        &s,
        &alice,
        json!({"create": {"k": {"deviceClientId": "d", "url": sink.url("/bad"), "keys": {"p256dh": "BAAA", "auth": encode_base64url(&auth)}}}}),
    )
    .await;
    assert_eq!(r["notCreated"]["k"]["properties"], json!(["keys"]));
    sink.stop().await;
    s.stop().await;
}

/// WP-12 (RFC 8291: one record of 4,096 octets): a keyed subscription told of more accounts
/// than one record holds (here: many accounts shared with the user changed while the push
/// service refused) gets several encrypted StateChanges that together name every account at its
/// latest state, none with a `Topic` (the push service would keep only the last of them).
#[on_both_backends]
async fn a_state_change_too_large_for_one_encrypted_record_arrives_in_parts() {
    use herald::jmap::methods::push_subscription::keys::encode_base64url;
    use herald::push::webpush::{MAX_PLAINTEXT, decrypt};
    use std::collections::BTreeMap;
    const OWNERS: usize = 150;
    let s = start().await;
    let mut sink = WebhookSink::start().await;
    let bob = s.add_user("bob", "pw");
    let ua_secret = p256::SecretKey::from_slice(&[9u8; 32]).unwrap();
    let ua_public = p256::EncodedPoint::from(ua_secret.public_key());
    let auth = [5u8; 16];
    let open = |r: &Received| -> Value {
        serde_json::from_slice(&decrypt(&ua_secret, &auth, &r.body).unwrap()).unwrap()
    };
    let keys =
        json!({"p256dh": encode_base64url(ua_public.as_bytes()), "auth": encode_base64url(&auth)});
    let id = create(
        &s,
        &bob,
        json!({"deviceClientId": "d", "url": sink.url("/p"), "keys": keys}),
    )
    .await;
    let code = open(&sink.next().await)["verificationCode"]
        .as_str()
        .unwrap()
        .to_owned();
    verify(&s, &bob, &id, &code).await;
    sink.answer_by_default(503);
    let mut accounts = Vec::new();
    for i in 0..OWNERS {
        let owner = format!("owner{i}");
        let owner_auth = s.add_user(&owner, "pw");
        accounts.push(account_id(&s, &owner_auth).await);
        let mut conn = s.store.conn().unwrap();
        herald::store::accounts::share(&mut conn, &owner, "bob", false).unwrap();
    }
    // Bob changes every shared account while his push service answers 503.
    let mut latest = BTreeMap::new();
    for batch in accounts.chunks(30) {
        let calls: Vec<Value> = batch
            .iter()
            .enumerate()
            .map(|(i, a)| json!(["Mailbox/set", {"accountId": a, "create": {"k": {"name": "n"}}}, i.to_string()]))
            .collect();
        let r = s.call(&bob, &[CORE, MAIL], Value::Array(calls)).await;
        for (a, response) in batch.iter().zip(&r) {
            assert!(response[1]["created"]["k"].is_object(), "{response}");
            latest.insert(a.clone(), json!({"Mailbox": response[1]["newState"]}));
        }
    }
    let whole = json!({"@type": "StateChange", "changed": latest}).to_string();
    assert!(whole.len() > MAX_PLAINTEXT * 5 / 4, "{}", whole.len());

    // The pending StateChange has outgrown one record once a retry comes in parts: the first
    // part (the 503 stops the rest) has no Topic.
    while sink.next().await.header("topic").is_some() {}
    sink.answer_by_default(201);
    let mut told = BTreeMap::new();
    while told != latest {
        let r = sink.next().await;
        if r.status != 201 {
            continue;
        }
        assert_eq!(r.header("content-encoding"), Some("aes128gcm"));
        let v = open(&r);
        assert_eq!(v["@type"], "StateChange", "{v}");
        for (a, types) in v["changed"].as_object().unwrap() {
            told.insert(a.clone(), types.clone());
        }
    }
    sink.stop().await;
    s.stop().await;
}

#[on_both_backends]
async fn a_users_subscription_never_receives_another_users_changes() {
    let s = start().await;
    let mut alice_sink = WebhookSink::start().await;
    let mut bob_sink = WebhookSink::start().await;
    let alice = s.add_user("alice", "pw");
    let bob = s.add_user("bob", "pw");
    let alice_account = account_id(&s, &alice).await;
    let bob_account = account_id(&s, &bob).await;
    subscribe_verified(&s, &alice, &mut alice_sink, "/alice").await;
    subscribe_verified(&s, &bob, &mut bob_sink, "/bob").await;

    let bob_state = mutate(&s, &bob, &bob_account, "bob's").await;
    let alice_state = mutate(&s, &alice, &alice_account, "alice's").await;
    // Bob's change was published first: had it reached Alice's outbox, it would be in her first
    // StateChange.
    let a = alice_sink.next().await;
    assert_eq!(
        a.json(),
        json!({"@type": "StateChange", "changed": {&alice_account: {"Mailbox": alice_state}}})
    );
    let b = bob_sink.next().await;
    assert_eq!(
        b.json(),
        json!({"@type": "StateChange", "changed": {&bob_account: {"Mailbox": bob_state}}})
    );
    alice_sink.stop().await;
    bob_sink.stop().await;
    s.stop().await;
}

#[on_both_backends]
async fn types_limit_what_a_subscription_is_told() {
    let s = start().await;
    let mut sink = WebhookSink::start().await;
    let alice = s.add_user("alice", "pw");
    let account = account_id(&s, &alice).await;
    let id = create(
        &s,
        &alice,
        json!({"deviceClientId": "d", "url": sink.url("/t"), "types": ["Email"]}),
    )
    .await;
    let code = sink.next().await.json()["verificationCode"].clone();
    verify(&s, &alice, &id, code.as_str().unwrap()).await;
    mutate(&s, &alice, &account, "ignored").await;
    // Widen the filter: only changes after this reach the sink.
    push_set(
        &s,
        &alice,
        json!({"update": {&id: {"types": ["Email", "Mailbox"]}}}),
    )
    .await;
    let state = mutate(&s, &alice, &account, "seen").await;
    let push = sink.next().await;
    assert_eq!(
        push.json(),
        json!({"@type": "StateChange", "changed": {&account: {"Mailbox": state}}})
    );
    let r = push_set(
        &s,
        &alice,
        json!({"update": {&id: {"types": ["Nonsense"]}}}),
    )
    .await;
    assert_eq!(r["notUpdated"][&id]["type"], "invalidProperties");
    sink.stop().await;
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Durability: the real binary, killed with deliveries pending.

/// A `herald serve` child process.
struct Herald {
    child: std::process::Child,
    base: String,
}

impl Herald {
    fn start(db: &std::path::Path, dir: &std::path::Path) -> Herald {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["--config", dir.join("none.toml").to_str().unwrap(), "serve"])
            .env("HERALD_STORE_URL", format!("sqlite://{}", db.display()))
            .env("HERALD_SERVER_LISTEN", "127.0.0.1:0")
            .env("HERALD_LMTP_LISTEN", "127.0.0.1:0")
            .env("HERALD_SERVER_WORKERS", "1")
            .env("HERALD_SERVER_DISPATCHER_THREADS", "2")
            .env("HERALD_PUSH_ALLOW_PRIVATE_TARGETS", "true")
            .env("HERALD_PUSH_RETRY_BASE_MS", "50")
            .env("HERALD_PUSH_RETRY_CAP_MS", "200")
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn herald");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("Herald listening on ").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx
            .recv_timeout(WAIT)
            .expect("herald did not log its listen address");
        Herald {
            child,
            base: format!("http://{addr}"),
        }
    }

    async fn call(&self, auth: &Auth, using: &[&str], calls: Value) -> Vec<Value> {
        let req = harness::authorize(
            harness::client().post(format!("{}/jmap/api", self.base)),
            auth,
        )
        .insert_header(("Content-Type", "application/json"));
        let a = harness::answer(
            req.send_body(json!({"using": using, "methodCalls": calls}).to_string())
                .await
                .expect("POST"),
        )
        .await;
        assert_eq!(a.status.as_u16(), 200, "{:?}", a.body);
        a.body["methodResponses"].as_array().unwrap().clone()
    }

    async fn account(&self, auth: &Auth) -> String {
        let req = harness::authorize(
            harness::client().get(format!("{}/jmap/session", self.base)),
            auth,
        );
        let a = harness::answer(req.send().await.expect("GET")).await;
        a.body["primaryAccounts"][MAIL].as_str().unwrap().to_owned()
    }

    async fn mutate(&self, auth: &Auth, account: &str, name: &str) -> String {
        let r = self
            .call(
                auth,
                &[CORE, MAIL],
                json!([["Mailbox/set", {"accountId": account, "create": {"k": {"name": name}}}, "0"]]),
            )
            .await;
        r[0][1]["newState"].as_str().expect("newState").to_owned()
    }

    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// SQLite only: a restart on one SQLite file releases the dead process's claims at once; on
// PostgreSQL the lease does (tests/integration/cluster.rs).
#[actix_web::test]
async fn pending_deliveries_survive_a_sigkill_and_the_latest_state_arrives_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("herald.db");
    {
        let store = herald::store::Store::open(&format!("sqlite://{}", db.display()), 1).unwrap();
        let mut conn = store.conn().unwrap();
        herald::store::users::create(&mut conn, "alice", "pw").unwrap();
        herald::store::users::create(&mut conn, "bob", "pw").unwrap();
    }
    let alice = Auth::basic("alice", "pw");
    let bob = Auth::basic("bob", "pw");
    let mut sink = WebhookSink::start().await;
    let herald = Herald::start(&db, dir.path());
    let alice_account = herald.account(&alice).await;
    let bob_account = herald.account(&bob).await;

    // Three verified subscriptions: two of Alice's, one of Bob's.
    let mut subs = Vec::new();
    for (auth, path) in [(&alice, "/a1"), (&alice, "/a2"), (&bob, "/b1")] {
        let r = herald
            .call(
                auth,
                &[CORE],
                json!([["PushSubscription/set", {"create": {"n": {"deviceClientId": path, "url": sink.url(path)}}}, "0"]]),
            )
            .await;
        let id = r[0][1]["created"]["n"]["id"].as_str().unwrap().to_owned();
        let v = sink.next().await;
        assert_eq!(v.path, path);
        let code = v.json()["verificationCode"].as_str().unwrap().to_owned();
        let r = herald
            .call(
                auth,
                &[CORE],
                json!([["PushSubscription/set", {"update": {&id: {"verificationCode": code}}}, "0"]]),
            )
            .await;
        assert!(r[0][1]["updated"].get(&id).is_some(), "{r:?}");
        subs.push((path, id));
    }

    // The push service fails: deliveries stay pending.
    sink.answer_by_default(500);
    herald.mutate(&alice, &alice_account, "a-1").await;
    herald.mutate(&bob, &bob_account, "b-1").await;
    let mut failed = std::collections::HashSet::new();
    while failed.len() < 3 {
        let r = sink.next().await;
        assert_eq!(r.status, 500);
        failed.insert(r.path);
    }
    // Newer states, then SIGKILL at once: whether or not the sender had merged them into the
    // pending rows, they are in the change log, which the restarted sender replays.
    let alice_state = herald.mutate(&alice, &alice_account, "a-2").await;
    let bob_state = herald.mutate(&bob, &bob_account, "b-2").await;
    herald.kill();
    while sink.try_next().is_some() {}

    // Restart on the same store; the push service recovers.
    sink.answer_by_default(201);
    let herald = Herald::start(&db, dir.path());
    let mut latest = std::collections::HashMap::new();
    while latest.len() < 3 {
        let r = sink.next().await;
        if r.status != 201 {
            continue;
        }
        let body = r.json();
        assert_eq!(body["@type"], "StateChange");
        let path = r.path.clone();
        let want = if path.starts_with("/a") {
            json!({&alice_account: {"Mailbox": alice_state}})
        } else {
            json!({&bob_account: {"Mailbox": bob_state}})
        };
        // Each subscription's first delivery after the restart carries the latest state.
        if let std::collections::hash_map::Entry::Vacant(e) = latest.entry(path) {
            assert_eq!(body["changed"], want, "{}", e.key());
            e.insert(body);
        }
    }
    assert_eq!(latest.len(), subs.len());
    herald.kill();
    sink.stop().await;
}

#[on_both_backends]
async fn an_expired_subscription_is_sent_nothing_more_and_destroyed() {
    use diesel::prelude::*;
    use herald::store::schema::push_subscriptions;
    let s = start().await;
    let mut sink = WebhookSink::start().await;
    let alice = s.add_user("alice", "pw");
    let account = account_id(&s, &alice).await;
    let id = subscribe_verified(&s, &alice, &mut sink, "/exp").await;
    // A delivery is pending and being retried.
    sink.answer_by_default(500);
    mutate(&s, &alice, &account, "m").await;
    assert_eq!(sink.next().await.path, "/exp");
    // The subscription expires (PSUB-08).
    {
        let mut conn = s.store.conn().unwrap();
        diesel::update(push_subscriptions::table.find(&id))
            .set(push_subscriptions::expires.eq(chrono::Utc::now().timestamp() - 1))
            .execute(&mut *conn)
            .unwrap();
    }
    let mut gone = false;
    for _ in 0..200 {
        let got = push_get(&s, &alice, json!({"ids": [&id]})).await;
        if got[1]["notFound"] == json!([&id]) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the expired subscription was not destroyed");
    // Whatever was in flight when it expired has been answered; nothing new goes to it.
    sink.answer_by_default(201);
    while sink.try_next().is_some() {}
    mutate(&s, &alice, &account, "n").await;
    create(
        &s,
        &alice,
        json!({"deviceClientId": "d", "url": sink.url("/next")}),
    )
    .await;
    let r = sink.next().await;
    assert_eq!(r.path, "/next");
    assert_eq!(r.json()["@type"], "PushVerification");
    sink.stop().await;
    s.stop().await;
}

#[on_both_backends]
async fn a_change_whose_notification_never_reached_the_sender_is_pushed_from_the_change_log() {
    use herald::jmap::changes::ChangeOp;
    let s = TestServer::start_with(|c| {
        open_config(c);
        c.push.outbox_poll_secs = 1;
    })
    .await;
    let mut sink = WebhookSink::start().await;
    let alice = s.add_user("alice", "pw");
    let account = account_id(&s, &alice).await;
    subscribe_verified(&s, &alice, &mut sink, "/log").await;
    // A write that is committed but never published (as after a crash right after commit).
    let mut conn = s.store.conn().unwrap();
    let (_, committed) = herald::store::changelog::write(&mut conn, &account, |txn| {
        txn.record("Email", "e1", ChangeOp::Created);
        Ok(())
    })
    .unwrap();
    let seq = committed.unwrap().seq;
    let push = sink.next().await;
    assert_eq!(
        push.json(),
        json!({"@type": "StateChange", "changed": {&account: {"Email": seq.to_string()}}})
    );
    sink.stop().await;
    s.stop().await;
}

#[on_both_backends]
async fn the_creation_window_counts_per_user_and_starts_afresh_after_an_hour() {
    use herald::store::push_subscription::take_creation_slot;
    let s = start().await;
    s.add_user("alice", "pw");
    s.add_user("bob", "pw");
    let mut conn = s.store.conn().unwrap();
    let id = |conn: &mut herald::store::PooledConnection, name: &str| {
        herald::store::users::find_by_name(conn, name)
            .unwrap()
            .unwrap()
            .id
    };
    let (alice, bob) = (id(&mut conn, "alice"), id(&mut conn, "bob"));
    let t0 = 1_000_000;
    let taken: Vec<bool> = [t0, t0 + 10, t0 + 20]
        .iter()
        .map(|t| take_creation_slot(&mut conn, &alice, 2, 3600, *t).unwrap())
        .collect();
    assert_eq!(taken, vec![true, true, false]);
    assert!(take_creation_slot(&mut conn, &bob, 2, 3600, t0 + 30).unwrap());
    assert!(take_creation_slot(&mut conn, &alice, 2, 3600, t0 + 3600).unwrap());
    s.stop().await;
}

#[on_both_backends]
async fn a_subscriber_also_hears_about_accounts_shared_with_them() {
    use diesel::prelude::*;
    use herald::store::schema::account_access;
    let s = start().await;
    let mut sink = WebhookSink::start().await;
    let alice = s.add_user("alice", "pw");
    let bob = s.add_user("bob", "pw");
    let alice_account = account_id(&s, &alice).await;
    subscribe_verified(&s, &bob, &mut sink, "/bob").await;
    // Alice shares her account with Bob, read-only (no sharing API yet: straight into the table).
    {
        let mut conn = s.store.conn().unwrap();
        let bob_id = herald::store::users::find_by_name(&mut conn, "bob")
            .unwrap()
            .unwrap()
            .id;
        diesel::insert_into(account_access::table)
            .values((
                account_access::user_id.eq(bob_id),
                account_access::account_id.eq(&alice_account),
                account_access::is_owner.eq(false),
                account_access::may_write.eq(false),
            ))
            .execute(&mut *conn)
            .unwrap();
    }
    let state = mutate(&s, &alice, &alice_account, "shared").await;
    let push = sink.next().await;
    assert_eq!(
        push.json(),
        json!({"@type": "StateChange", "changed": {&alice_account: {"Mailbox": state}}})
    );
    sink.stop().await;
    s.stop().await;
}

/// PSUB-01 `types` (RFC 8620 §7.2): a write committed while a subscription did not want its type
/// is not pushed once the subscription widens its types, however late the write's announcement
/// reaches the outbox (on PostgreSQL it travels through the cluster bus and may arrive after the
/// update).
#[on_both_backends]
fn a_write_before_types_are_widened_is_judged_by_the_types_it_was_made_under() {
    use herald::jmap::changes::ChangeOp;
    use herald::jmap::methods::push_subscription::SubscriptionChange;
    use herald::store::push_subscription as subscriptions;
    use herald::store::webhook_outbox::{self as outbox, MissingCursor};
    let dir = tempfile::tempdir().unwrap();
    let store =
        herald::store::Store::open(&harness::backend::fresh_store_url(dir.path()), 2).unwrap();
    let mut conn = store.conn().unwrap();
    let user = herald::store::users::create(&mut conn, "alice", "pw").unwrap();
    let account = herald::store::accounts::personal_account(&mut conn, &user.id).unwrap();
    let id = verified_subscription(&mut conn, &user.id, Some(vec!["Email".into()]));
    // A Mailbox write commits; its announcement has not reached the outbox yet.
    herald::store::changelog::write(&mut conn, &account, |txn| {
        txn.record("Mailbox", "m1", ChangeOp::Created);
        Ok(())
    })
    .unwrap();
    let widen = SubscriptionChange {
        types: Some(Some(vec!["Email".into(), "Mailbox".into()])),
        ..SubscriptionChange::default()
    };
    subscriptions::update(&mut conn, &user.id, &id, &widen).unwrap();
    // Now it arrives: nothing to push, since the subscription wanted only Email then.
    let touched = outbox::catch_up(&mut conn, &account, MissingCursor::NewestWrite).unwrap();
    assert_eq!(
        touched, 0,
        "a Mailbox change from before the update was queued"
    );
    // A Mailbox write after the update is pushed.
    herald::store::changelog::write(&mut conn, &account, |txn| {
        txn.record("Mailbox", "m2", ChangeOp::Created);
        Ok(())
    })
    .unwrap();
    let touched = outbox::catch_up(&mut conn, &account, MissingCursor::NewestWrite).unwrap();
    assert_eq!(touched, 1);
}

/// PSUB-06 with sharing: an account shared with a user whose subscription is verified is
/// followed from the moment of the share. The first write after it is pushed even when a
/// periodic catch-up (which starts unknown cursors where the log stands, pushing nothing) meets
/// the write before the write's own announcement does; a re-share does not replay what happened
/// while the access was withdrawn.
#[on_both_backends]
fn an_account_shared_with_a_subscriber_is_followed_from_the_share_on() {
    use herald::jmap::changes::ChangeOp;
    use herald::store::webhook_outbox::{self as outbox, MissingCursor};
    let dir = tempfile::tempdir().unwrap();
    let store =
        herald::store::Store::open(&harness::backend::fresh_store_url(dir.path()), 2).unwrap();
    let mut conn = store.conn().unwrap();
    let bob = herald::store::users::create(&mut conn, "bob", "pw").unwrap();
    let alice = herald::store::users::create(&mut conn, "alice", "pw").unwrap();
    let account = herald::store::accounts::personal_account(&mut conn, &alice.id).unwrap();
    let id = verified_subscription(&mut conn, &bob.id, None);
    let write = |conn: &mut herald::store::AnyConnection, name: &str| {
        herald::store::changelog::write(conn, &account, |txn| {
            txn.record("Mailbox", name, ChangeOp::Created);
            Ok(())
        })
        .unwrap();
    };
    write(&mut conn, "before the share");
    herald::store::accounts::share(&mut conn, "alice", "bob", true).unwrap();
    write(&mut conn, "after the share");
    // The periodic catch-up runs first, then the write's announcement arrives.
    outbox::catch_up_all(&mut conn).unwrap();
    outbox::catch_up(&mut conn, &account, MissingCursor::NewestWrite).unwrap();
    assert_eq!(pending_mailbox_state(&mut conn, &id, &account), Some(2));

    herald::store::accounts::unshare(&mut conn, "alice", "bob").unwrap();
    write(&mut conn, "while not shared");
    herald::store::accounts::share(&mut conn, "alice", "bob", true).unwrap();
    outbox::catch_up_all(&mut conn).unwrap();
    assert_eq!(pending_mailbox_state(&mut conn, &id, &account), Some(2));
}

/// A subscription of `user_id` for `types` (None: all), created and verified in the store.
fn verified_subscription(
    conn: &mut herald::store::AnyConnection,
    user_id: &str,
    types: Option<Vec<String>>,
) -> String {
    use herald::jmap::methods::push_subscription::{NewSubscription, SubscriptionChange};
    use herald::store::push_subscription as subscriptions;
    let new = NewSubscription {
        device_client_id: "d".into(),
        url: "https://push.example/t".into(),
        keys: None,
        expires: herald::store::now() + 3600,
        types,
        token_hash: None,
    };
    let id = subscriptions::create(conn, user_id, &new).unwrap();
    let verify = SubscriptionChange {
        verify: true,
        ..SubscriptionChange::default()
    };
    subscriptions::update(conn, user_id, &id, &verify).unwrap();
    id
}

/// The Mailbox state the pending StateChange of subscription `id` holds for `account`.
fn pending_mailbox_state(
    conn: &mut herald::store::AnyConnection,
    id: &str,
    account: &str,
) -> Option<i64> {
    use diesel::prelude::*;
    use herald::store::schema::push_deliveries;
    let changed: String = push_deliveries::table
        .find(id)
        .select(push_deliveries::changed)
        .first(conn)
        .optional()
        .unwrap()?;
    let changed: herald::store::webhook_outbox::ChangedStates =
        serde_json::from_str(&changed).unwrap();
    changed.get(account)?.get("Mailbox").copied()
}

/// Outcomes are recorded in batches (`outbox::settle`), and until then a row stays claimed. A
/// node that dies with POSTs answered but not recorded loses nothing: once its lease runs out
/// (or, on SQLite, at the next start) the same deliveries are claimed and sent again (at least
/// once). The dead node's late record does not touch rows another node holds, and one batch
/// records several outcomes, keeping what was merged in meanwhile (PSH-02).
#[on_both_backends]
fn a_batch_of_outcomes_not_recorded_before_a_crash_is_sent_again_and_merges_survive_its_record() {
    use diesel::prelude::*;
    use herald::jmap::changes::ChangeOp;
    use herald::jmap::methods::push_subscription::{NewSubscription, SubscriptionChange};
    use herald::store::push_subscription as subscriptions;
    use herald::store::schema::push_deliveries;
    use herald::store::webhook_outbox::{self as outbox, MissingCursor, Settlement};
    let dir = tempfile::tempdir().unwrap();
    let store =
        herald::store::Store::open(&harness::backend::fresh_store_url(dir.path()), 2).unwrap();
    let mut conn = store.conn().unwrap();
    let user = herald::store::users::create(&mut conn, "alice", "pw").unwrap();
    let account = herald::store::accounts::personal_account(&mut conn, &user.id).unwrap();
    let mut ids = Vec::new();
    for n in 0..3 {
        let new = NewSubscription {
            device_client_id: format!("d{n}"),
            url: format!("https://push.example/{n}"),
            keys: None,
            expires: herald::store::now() + 3600,
            types: None,
            token_hash: None,
        };
        let id = subscriptions::create(&mut conn, &user.id, &new).unwrap();
        let verify = SubscriptionChange {
            verify: true,
            ..SubscriptionChange::default()
        };
        subscriptions::update(&mut conn, &user.id, &id, &verify).unwrap();
        ids.push(id);
    }
    let write = |conn: &mut herald::store::AnyConnection, kind: &str, id: &str| {
        herald::store::changelog::write(conn, &account, |txn| {
            txn.record(kind, id, ChangeOp::Created);
            Ok(())
        })
        .unwrap();
        outbox::catch_up(conn, &account, MissingCursor::NewestWrite).unwrap()
    };
    assert_eq!(write(&mut conn, "Mailbox", "m1"), 3);
    const LEASE_MS: i64 = 60_000;
    let at = subscriptions::now_ms();
    let first = outbox::claim_due(&mut conn, "node-a", at, LEASE_MS, 10).unwrap();
    assert_eq!(first.len(), 3);
    // node-a POSTs them, is answered, and dies before recording it. Its leases run out.
    let later = at + LEASE_MS + 1;
    let again = outbox::claim_due(&mut conn, "node-b", later, LEASE_MS, 10).unwrap();
    let mut resent: Vec<_> = again
        .iter()
        .map(|c| (c.subscription.id.clone(), c.changed.clone()))
        .collect();
    let mut sent: Vec<_> = first
        .iter()
        .map(|c| (c.subscription.id.clone(), c.changed.clone()))
        .collect();
    resent.sort();
    sent.sort();
    assert_eq!(resent, sent, "the same deliveries are sent again");
    // An Email change is merged in while node-b's POSTs are in flight.
    assert_eq!(write(&mut conn, "Email", "e1"), 3);
    // node-a's late record changes nothing: node-b holds the rows.
    let mut late: Vec<Settlement> = first.into_iter().map(Settlement::Delivered).collect();
    outbox::settle(&mut conn, "node-a", &mut late).unwrap();
    let holders: Vec<Option<String>> = push_deliveries::table
        .select(push_deliveries::claimed_by)
        .load(&mut conn)
        .unwrap();
    assert_eq!(holders, vec![Some("node-b".to_owned()); 3]);
    // node-b records all three at once: the Mailbox state was sent, the Email state is next.
    let mut done: Vec<Settlement> = again.into_iter().map(Settlement::Delivered).collect();
    outbox::settle(&mut conn, "node-b", &mut done).unwrap();
    let rows: Vec<(String, String, Option<String>)> = push_deliveries::table
        .select((
            push_deliveries::subscription_id,
            push_deliveries::changed,
            push_deliveries::claimed_by,
        ))
        .load(&mut conn)
        .unwrap();
    assert_eq!(rows.len(), 3);
    for (id, changed, holder) in rows {
        assert!(ids.contains(&id));
        assert_eq!(holder, None, "released for the next POST");
        let changed: Value = serde_json::from_str(&changed).unwrap();
        let types = changed[&account].as_object().unwrap();
        assert!(types.contains_key("Email"), "{changed}");
        assert!(!types.contains_key("Mailbox"), "sent already: {changed}");
    }
}

/// Checks the VAPID `Authorization` of a push (RFC 8292 §3) with an independent JWT
/// implementation: signed by `public_key`, for the sink's origin, expiring within 24 hours.
fn assert_vapid(push: &Received, public_key: &str, audience: &str, subject: &str) {
    use base64::Engine;
    let header = push
        .header("authorization")
        .expect("an Authorization header");
    let rest = header.strip_prefix("vapid ").expect("the vapid scheme");
    let mut token = None;
    let mut key = None;
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => token = Some(v),
            Some(("k", v)) => key = Some(v),
            _ => {}
        }
    }
    let (token, key) = (token.expect("t="), key.expect("k="));
    assert_eq!(key, public_key, "k is the advertised applicationServerKey");
    let point = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(key)
        .unwrap();
    assert_eq!(
        (point.len(), point[0]),
        (65, 4),
        "an uncompressed P-256 point"
    );
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let decoding =
        jsonwebtoken::DecodingKey::from_ec_components(&b64(&point[1..33]), &b64(&point[33..]))
            .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    let claims = jsonwebtoken::decode::<Value>(token, &decoding, &validation)
        .expect("a valid ES256 token")
        .claims;
    assert_eq!(claims["sub"], subject);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let exp = claims["exp"].as_i64().unwrap();
    assert!(
        exp > now && exp <= now + 24 * 3600,
        "exp {exp} within 24 h of {now}"
    );
}

#[on_both_backends]
async fn every_push_carries_a_vapid_token_signed_with_the_key_the_session_advertises() {
    let s = TestServer::start_with(|c| {
        open_config(c);
        c.push.vapid_subject = "mailto:ops@example.com".into();
    })
    .await;
    let alice = s.add_user("alice", "pw");
    let account = account_id(&s, &alice).await;
    let session = s.get("/jmap/session", &alice).await.body;
    let key = session["capabilities"]["urn:ietf:params:jmap:webpush-vapid"]["applicationServerKey"]
        .as_str()
        .expect("RFC 9749: the session advertises applicationServerKey")
        .to_owned();
    // Every node of the store signs with the same key.
    let url = s.config.store.url.clone();
    let other = TestServer::start_with(move |c| c.store.url = url).await;
    let other_session = other.get("/jmap/session", &alice).await.body;
    assert_eq!(
        other_session["capabilities"]["urn:ietf:params:jmap:webpush-vapid"]["applicationServerKey"],
        key.as_str()
    );
    other.stop().await;

    let mut sink = WebhookSink::start().await;
    let subject = "mailto:ops@example.com";
    let id = create(
        &s,
        &alice,
        json!({"deviceClientId": "d", "url": sink.url("/p")}),
    )
    .await;
    let verification = sink.next().await;
    assert_vapid(&verification, &key, &sink.url(""), subject);
    let code = verification.json()["verificationCode"]
        .as_str()
        .unwrap()
        .to_owned();
    verify(&s, &alice, &id, &code).await;

    mutate(&s, &alice, &account, "m").await;
    let push = sink.next().await;
    assert_vapid(&push, &key, &sink.url(""), subject);
    assert_eq!(push.header("urgency"), Some("normal"));

    // New mail is urgent (RFC 8030 §5.3).
    let message = b"From: a@example.com\r\nSubject: hi\r\n\r\nhello\r\n".to_vec();
    let upload = s
        .post_raw(
            &format!("/jmap/upload/{account}/"),
            &alice,
            "message/rfc822",
            message,
        )
        .await;
    let blob = upload.body["blobId"].as_str().unwrap().to_owned();
    let inbox = s
        .call(
            &alice,
            &[CORE, MAIL],
            json!([["Mailbox/query", {"accountId": account,
            "filter": {"role": "inbox"}}, "0"]]),
        )
        .await[0][1]["ids"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .call(
            &alice,
            &[CORE, MAIL],
            json!([["Email/import", {"accountId": account, "emails": {
            "e": {"blobId": blob, "mailboxIds": {inbox: true}}}}, "0"]]),
        )
        .await;
    assert!(r[0][1]["created"]["e"].is_object(), "{r:?}");
    let push = loop {
        let push = sink.next().await;
        if push.json()["changed"][&account]
            .get("EmailDelivery")
            .is_some()
        {
            break push;
        }
    };
    assert_vapid(&push, &key, &sink.url(""), subject);
    assert_eq!(push.header("urgency"), Some("high"));
    sink.stop().await;
}

#[on_both_backends]
async fn a_subscription_belongs_to_the_credentials_that_created_it_and_goes_with_them() {
    // PSUB-03: /get shows only the calling credentials' subscriptions, /set touches no others,
    // and revoking the credentials (a token, or a password by changing it) destroys them.
    let s = start().await;
    let sink = WebhookSink::start().await;
    let alice = s.add_user("alice", "pw");
    let (token_id, token) =
        herald::store::tokens::create(&mut s.store.conn().unwrap(), "alice").unwrap();
    let bearer = Auth::Bearer(token);
    let sub = |name: &str| json!({"deviceClientId": name, "url": sink.url(name)});
    let by_token = create(&s, &bearer, sub("/token")).await;
    let by_password = create(&s, &alice, sub("/password")).await;
    let ids = |get: Value| -> Vec<String> {
        get[1]["list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(push_get(&s, &bearer, json!({})).await),
        std::slice::from_ref(&by_token)
    );
    assert_eq!(
        ids(push_get(&s, &alice, json!({})).await),
        std::slice::from_ref(&by_password)
    );
    let r = push_set(
        &s,
        &alice,
        json!({"destroy": [by_token.clone()],
        "update": {by_token.clone(): {"expires": null}}}),
    )
    .await;
    assert_eq!(r["notDestroyed"][&by_token]["type"], "notFound", "{r}");
    assert_eq!(r["notUpdated"][&by_token]["type"], "notFound", "{r}");

    let stored = || {
        herald::store::push_subscription::list(&mut s.store.conn().unwrap(), &alice_id(&s))
            .unwrap()
            .into_iter()
            .map(|sub| sub.id)
            .collect::<Vec<_>>()
    };
    herald::store::tokens::revoke(&mut s.store.conn().unwrap(), &token_id).unwrap();
    assert_eq!(stored(), std::slice::from_ref(&by_password));
    herald::store::users::set_password(&mut s.store.conn().unwrap(), "alice", "new password")
        .unwrap();
    assert!(stored().is_empty());
}

fn alice_id(s: &TestServer) -> String {
    herald::store::users::find_by_name(&mut s.store.conn().unwrap(), "alice")
        .unwrap()
        .unwrap()
        .id
}
