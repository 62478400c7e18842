//! JMAP over WebSocket (RFC 8887) against a real node, spoken as a client would. Checklist ids
//! (WS-xx, ST-06, PSH-xx) in comments. Tests of what is pushed run on both store backends (on
//! PostgreSQL, pushes travel through the cluster bus); protocol-only ones on SQLite.

use crate::harness;
use crate::harness::push::*;
use crate::harness::{Auth, CORE, TestServer, authorize, client, on_both_backends};
use awc::http::StatusCode;
use awc::ws::Message;
use futures_util::SinkExt;
use herald::push::registry::GetStats;
use serde_json::{Value, json};

#[actix_web::test]
async fn the_session_advertises_the_websocket_url_with_push() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let session = s.get("/jmap/session", &alice).await.body;
    // WS-01
    let ws = &session["capabilities"]["urn:ietf:params:jmap:websocket"];
    assert_eq!(ws["url"], ws_url(&s));
    assert_eq!(ws["supportsPush"], true);
}

#[actix_web::test]
async fn an_upgrade_without_the_jmap_subprotocol_is_refused_with_400_problem_json() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    // WS-04: awc's client sees the refusal...
    let e = ws_try(&s, &alice, &[]).await.err().expect("refused");
    assert!(e.contains("400"), "{e}");
    let e = ws_try(&s, &alice, &["chat"]).await.err().expect("refused");
    assert!(e.contains("400"), "{e}");
    // ...and the body says why.
    let res = authorize(
        client().get(ws_url(&s).replacen("ws://", "http://", 1)),
        &alice,
    )
    .insert_header(("Connection", "Upgrade"))
    .insert_header(("Upgrade", "websocket"))
    .insert_header(("Sec-WebSocket-Version", "13"))
    .insert_header(("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="))
    .send()
    .await
    .unwrap();
    let a = harness::answer(res).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.content_type, "application/problem+json");
    assert!(a.body["detail"].as_str().unwrap().contains("jmap"));
    // WS-03: and without credentials, 401.
    let e = ws_try(&s, &Auth::None, &["jmap"]).await.err().unwrap();
    assert!(e.contains("401"), "{e}");
}

#[actix_web::test]
async fn a_request_gets_a_response_carrying_its_request_id() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let mut ws = ws_connect(&s, &alice).await;
    // WS-08, WS-09
    let (r, _) = ws_request(&mut ws, "R1", json!([["Core/echo", {"x": 1}, "c0"]])).await;
    assert_eq!(r["@type"], "Response");
    assert_eq!(r["requestId"], "R1");
    assert_eq!(r["methodResponses"], json!([["Core/echo", {"x": 1}, "c0"]]));
    assert!(r["sessionState"].is_string());
    // Without an id, no requestId.
    ws_send(
        &mut ws,
        json!({"@type": "Request", "using": [CORE], "methodCalls": [["Core/echo", {}, "c1"]]}),
    )
    .await;
    let r = ws_next(&mut ws).await.unwrap();
    assert_eq!(r["@type"], "Response");
    assert!(r.get("requestId").is_none(), "{r}");
}

#[actix_web::test]
async fn bad_json_unknown_types_and_binary_frames_get_request_errors_and_the_socket_stays_usable() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let mut ws = ws_connect(&s, &alice).await;
    // WS-07: invalid JSON; the id cannot be read, so requestId is null.
    ws.send(Message::Text("{not json".into())).await.unwrap();
    let e = ws_next(&mut ws).await.unwrap();
    assert_eq!(e["@type"], "RequestError");
    assert_eq!(e["type"], "urn:ietf:params:jmap:error:notJSON");
    assert_eq!(e["requestId"], Value::Null);
    assert!(e["detail"].is_string());
    // Unknown @type, with its id echoed.
    ws_send(&mut ws, json!({"@type": "Gossip", "id": "G1"})).await;
    let e = ws_next(&mut ws).await.unwrap();
    assert_eq!(e["@type"], "RequestError");
    assert_eq!(e["type"], "urn:ietf:params:jmap:error:notRequest");
    assert_eq!(e["requestId"], "G1");
    // Not a Request.
    ws_send(
        &mut ws,
        json!({"@type": "Request", "id": "N1", "using": [CORE]}),
    )
    .await;
    let e = ws_next(&mut ws).await.unwrap();
    assert_eq!(e["type"], "urn:ietf:params:jmap:error:notRequest");
    assert_eq!(e["requestId"], "N1");
    // Unknown capability.
    ws_send(
        &mut ws,
        json!({"@type": "Request", "id": "U1", "using": ["urn:example:nope"], "methodCalls": []}),
    )
    .await;
    let e = ws_next(&mut ws).await.unwrap();
    assert_eq!(e["type"], "urn:ietf:params:jmap:error:unknownCapability");
    assert_eq!(e["requestId"], "U1");
    // WS-06: a binary frame.
    ws.send(Message::Binary(vec![1u8, 2, 3].into()))
        .await
        .unwrap();
    let e = ws_next(&mut ws).await.unwrap();
    assert_eq!(e["@type"], "RequestError");
    // Still usable.
    let (r, _) = ws_request(&mut ws, "after", json!([["Core/echo", {}, "c0"]])).await;
    assert_eq!(r["@type"], "Response");
}

#[on_both_backends]
async fn push_enable_then_a_mutation_over_http_pushes_a_state_change_with_push_state() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let account = account_id(&s, &alice).await;
    let mut ws = ws_connect(&s, &alice).await;
    // WS-11
    ws_push_enable(
        &mut ws,
        json!({"@type": "WebSocketPushEnable", "dataTypes": null}),
    )
    .await;
    let state = create_mailbox(&s, &alice, &account, "Pushed").await;
    let seen = ws_until_mailbox_state(&mut ws, &account, &state).await;
    let last = seen.last().unwrap();
    // PSH-01, WS-12
    assert_eq!(last["@type"], "StateChange");
    assert!(last["pushState"].as_str().is_some_and(|p| !p.is_empty()));
    // ST-06: the pushed state is Mailbox/get's state.
    assert_eq!(mailbox_state(&s, &alice, &account).await, state);
}

#[on_both_backends]
async fn data_types_filter_what_is_pushed() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let account = account_id(&s, &alice).await;
    let mut ws = ws_connect(&s, &alice).await;
    // WS-11, WS-14: only the listed types; unknown names are ignored.
    ws_push_enable(
        &mut ws,
        json!({"@type": "WebSocketPushEnable", "dataTypes": ["Email", "NoSuchType"]}),
    )
    .await;
    create_mailbox(&s, &alice, &account, "Filtered").await;
    // A second PushEnable replaces the first; the Mailbox change above must not appear.
    ws_push_enable(
        &mut ws,
        json!({"@type": "WebSocketPushEnable", "dataTypes": ["Mailbox"]}),
    )
    .await;
    let state = create_mailbox(&s, &alice, &account, "Wanted").await;
    let seen = ws_until_mailbox_state(&mut ws, &account, &state).await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["changed"][&account].as_object().unwrap().len(), 1);
}

#[on_both_backends]
async fn push_disable_stops_state_changes() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let account = account_id(&s, &alice).await;
    let mut ws = ws_connect(&s, &alice).await;
    // A second connection that keeps push on: it shows when the change has been handed out.
    let mut control = ws_connect(&s, &alice).await;
    for w in [&mut ws, &mut control] {
        ws_push_enable(
            w,
            json!({"@type": "WebSocketPushEnable", "dataTypes": null}),
        )
        .await;
    }
    let state = create_mailbox(&s, &alice, &account, "One").await;
    ws_until_mailbox_state(&mut ws, &account, &state).await;
    // WS-13
    ws_send(&mut ws, json!({"@type": "WebSocketPushDisable"})).await;
    ws_request(&mut ws, "sync", json!([["Core/echo", {}, "0"]])).await;
    let state = create_mailbox(&s, &alice, &account, "Two").await;
    ws_until_mailbox_state(&mut control, &account, &state).await;
    // The hub woke both connections at once; the disabled one has nothing to say.
    let (r, others) = ws_request(&mut ws, "after", json!([["Core/echo", {}, "0"]])).await;
    assert_eq!(r["@type"], "Response");
    assert!(others.is_empty(), "{others:?}");
    let stats = s.registry.send(GetStats).await.unwrap();
    assert_eq!(stats.subscribers.len(), 2);
    assert!(stats.subscribers.iter().all(|(_, slot)| slot.pending == 0));
}

#[on_both_backends]
async fn reconnecting_with_an_old_push_state_gets_the_missed_changes_at_once() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let account = account_id(&s, &alice).await;
    let mut ws = ws_pushed_everything(&s, &alice).await;
    let state = create_mailbox(&s, &alice, &account, "Before").await;
    let seen = ws_until_mailbox_state(&mut ws, &account, &state).await;
    let old_push_state = seen.last().unwrap()["pushState"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(ws);
    // Missed while away.
    create_mailbox(&s, &alice, &account, "Away1").await;
    let newest = create_mailbox(&s, &alice, &account, "Away2").await;
    let mut ws = ws_connect(&s, &alice).await;
    // WS-11 SHOULD: changes since pushState come at once, before anything else happens.
    let early = ws_push_enable(
        &mut ws,
        json!({"@type": "WebSocketPushEnable", "dataTypes": null, "pushState": old_push_state}),
    )
    .await;
    let change = if let Some(c) = early.first() {
        c.clone()
    } else {
        ws_next(&mut ws).await.unwrap()
    };
    assert_eq!(change["@type"], "StateChange");
    assert_eq!(change["changed"][&account]["Mailbox"], newest);
    let new_push_state = change["pushState"].as_str().unwrap();
    assert_ne!(new_push_state, old_push_state);

    // Coming back with the newest pushState: nothing missed, nothing sent.
    let mut ws2 = ws_connect(&s, &alice).await;
    let early = ws_push_enable(
        &mut ws2,
        json!({"@type": "WebSocketPushEnable", "dataTypes": null, "pushState": new_push_state}),
    )
    .await;
    assert!(early.is_empty(), "{early:?}");
    let (_, others) = ws_request(&mut ws2, "again", json!([["Core/echo", {}, "0"]])).await;
    assert!(others.is_empty(), "{others:?}");

    // A pushState the server never issued: every type is reported changed.
    let mut ws3 = ws_connect(&s, &alice).await;
    let early = ws_push_enable(
        &mut ws3,
        json!({"@type": "WebSocketPushEnable", "dataTypes": null, "pushState": "garbage"}),
    )
    .await;
    let change = match early.first() {
        Some(c) => c.clone(),
        None => ws_next(&mut ws3).await.unwrap(),
    };
    let types = change["changed"][&account].as_object().unwrap();
    assert_eq!(types["Mailbox"], newest);
    assert!(types.contains_key("Email"), "{change}");
}

#[on_both_backends]
async fn a_user_never_receives_another_users_changes() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw-a");
    let bob = s.add_user("bob", "pw-b");
    let alice_account = account_id(&s, &alice).await;
    let bob_account = account_id(&s, &bob).await;
    let mut alice_ws = ws_connect(&s, &alice).await;
    let mut bob_ws = ws_connect(&s, &bob).await;
    for ws in [&mut alice_ws, &mut bob_ws] {
        ws_push_enable(
            ws,
            json!({"@type": "WebSocketPushEnable", "dataTypes": null}),
        )
        .await;
    }
    // Bob's change reaches bob (so the registry has handed it out)...
    let bob_state = create_mailbox(&s, &bob, &bob_account, "Secret").await;
    ws_until_mailbox_state(&mut bob_ws, &bob_account, &bob_state).await;
    // ...then alice's own change: everything alice got up to it names only her account.
    let alice_state = create_mailbox(&s, &alice, &alice_account, "Mine").await;
    let seen = ws_until_mailbox_state(&mut alice_ws, &alice_account, &alice_state).await;
    for m in &seen {
        let accounts: Vec<_> = m["changed"].as_object().unwrap().keys().collect();
        assert_eq!(accounts, vec![&alice_account], "{m}");
    }
    // And alice cannot listen to bob's account by naming it in a request.
    let (r, _) = ws_request(
        &mut alice_ws,
        "peek",
        json!([["Mailbox/get", {"accountId": bob_account, "ids": []}, "0"]]),
    )
    .await;
    assert_eq!(r["methodResponses"][0][1]["type"], "accountNotFound");
}

#[actix_web::test]
async fn a_ticket_authenticates_one_websocket_once() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let a = s
        .post_raw("/jmap/ticket", &alice, "application/json", Vec::new())
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let ticket = a.body["ticket"].as_str().unwrap().to_owned();
    let url = format!("{}?ticket={ticket}", ws_url(&s));
    let mut ws = ws_try_url(&url, &Auth::None, &["jmap"])
        .await
        .expect("ticket accepted");
    let (r, _) = ws_request(&mut ws, "t", json!([["Core/echo", {}, "0"]])).await;
    assert_eq!(r["@type"], "Response");
    let e = ws_try_url(&url, &Auth::None, &["jmap"])
        .await
        .err()
        .unwrap();
    assert!(e.contains("401"), "{e}");
}

#[actix_web::test]
async fn push_connections_beyond_the_caps_are_refused_with_a_clear_error() {
    let s = TestServer::start_with(|c| {
        c.push.max_connections_per_user = 1;
        c.push.max_connections = 2;
    })
    .await;
    let alice = s.add_user("alice", "pw-a");
    let bob = s.add_user("bob", "pw-b");
    let carol = s.add_user("carol", "pw-c");
    let _alice_ws = ws_connect(&s, &alice).await;
    // Per user: 429.
    let e = ws_try(&s, &alice, &["jmap"]).await.err().unwrap();
    assert!(e.contains("429"), "{e}");
    let a = s
        .get("/jmap/eventsource/?types=*&closeafter=no&ping=0", &alice)
        .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(a.content_type, "application/problem+json");
    assert!(
        a.body["detail"]
            .as_str()
            .unwrap()
            .contains("push connections")
    );
    // In total: 503.
    let _bob_ws = ws_connect(&s, &bob).await;
    let e = ws_try(&s, &carol, &["jmap"]).await.err().unwrap();
    assert!(e.contains("503"), "{e}");
    // A closed connection gives its place back.
    drop(_alice_ws);
    let mut again = None;
    for _ in 0..100 {
        if let Ok(ws) = ws_try(&s, &carol, &["jmap"]).await {
            again = Some(ws);
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(again.is_some(), "the place came back");
}

// SQLite only: what is under test is the session's slot, not the store, and 10,000 writes cost
// PostgreSQL about 20 s more; the other push tests cover the PostgreSQL path (the cluster bus).
#[actix_web::test]
async fn a_slow_reader_gets_a_bounded_number_of_frames_with_the_latest_states() {
    const MUTATIONS: usize = 10_000;
    const PER_REQUEST: usize = 500;
    // Shipped push settings: nothing holds frames back but the client not reading.
    let s = TestServer::start_with(|c| c.limits.max_calls_in_request = PER_REQUEST as u64).await;
    let alice = s.add_user("alice", "pw");
    let account = account_id(&s, &alice).await;
    let mut ws = ws_pushed_everything(&s, &alice).await;
    // The client now stops reading while 10,000 writes commit (one per Mailbox/set call).
    let last_state = rename_mailbox_many_times(&s, &alice, &account, MUTATIONS, PER_REQUEST).await;
    // While it does not read, what the session holds is bounded: one state per account and type.
    let stats = s.registry.send(GetStats).await.unwrap();
    assert_eq!(stats.subscribers.len(), 1);
    assert!(
        stats.subscribers[0].1.pending <= herald::push::DATA_TYPES.len(),
        "{:?}",
        stats.subscribers[0].1
    );
    // Now it reads: a bounded number of frames, the last carrying the latest state.
    let frames = ws_until_mailbox_state(&mut ws, &account, &last_state).await;
    assert!(
        frames.len() < MUTATIONS / 10,
        "{} frames for {MUTATIONS} changes",
        frames.len()
    );
    // Every change went through the session's slot, which never held more than that.
    let slot = s.registry.send(GetStats).await.unwrap().subscribers[0].1;
    assert!(slot.offered >= MUTATIONS as u64, "{slot:?}");
    assert!(
        slot.high_water <= herald::push::DATA_TYPES.len(),
        "{slot:?}"
    );
    assert_eq!(mailbox_state(&s, &alice, &account).await, last_state);
}

#[actix_web::test]
async fn a_hub_runs_while_an_account_has_subscribers_and_stops_after_the_last_leaves() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let ws1 = ws_connect(&s, &alice).await;
    let ws2 = ws_connect(&s, &alice).await;
    let stats = s.registry.send(GetStats).await.unwrap();
    assert_eq!((stats.hubs, stats.subscribers.len()), (1, 2));
    drop(ws1);
    drop(ws2);
    // Sessions unsubscribe when they stop; wait for it (bounded).
    for _ in 0..200 {
        let stats = s.registry.send(GetStats).await.unwrap();
        if stats.hubs == 0 && stats.subscribers.is_empty() {
            return;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the hub did not stop");
}

#[actix_web::test]
async fn a_fragmented_message_is_reassembled_before_parsing() {
    use actix_http::ws::Item;
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let mut ws = ws_connect(&s, &alice).await;
    let text = json!({"@type": "Request", "id": "F1", "using": [CORE], "methodCalls": [["Core/echo", {"in": "pieces"}, "0"]]})
        .to_string();
    let (a, rest) = text.split_at(10);
    let (b, c) = rest.split_at(10);
    // WS-05
    for item in [
        Item::FirstText(a.to_owned().into()),
        Item::Continue(b.to_owned().into()),
        Item::Last(c.to_owned().into()),
    ] {
        ws.send(Message::Continuation(item)).await.unwrap();
    }
    let r = ws_next(&mut ws).await.unwrap();
    assert_eq!(r["requestId"], "F1");
    assert_eq!(r["methodResponses"][0][1]["in"], "pieces");
}

#[actix_web::test]
async fn a_websocket_that_never_answers_pings_is_closed_and_unsubscribed() {
    use awc::ws::Frame;
    use futures_util::StreamExt;
    let s = TestServer::start_with(|c| {
        c.push.heartbeat_secs = 1;
        c.push.idle_timeout_secs = 1;
    })
    .await;
    let alice = s.add_user("alice", "pw");
    let mut ws = ws_connect(&s, &alice).await;
    // Read without ever answering a ping: the server gives up on the peer.
    let closed = actix_web::rt::time::timeout(WAIT, async {
        loop {
            match ws.next().await {
                None | Some(Err(_) | Ok(Frame::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server closed the idle socket");
    for _ in 0..200 {
        let stats = s.registry.send(GetStats).await.unwrap();
        if stats.subscribers.is_empty() {
            return;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the closed session is still subscribed");
}

#[actix_web::test]
async fn websocket_requests_share_max_concurrent_requests_with_http() {
    use diesel::Connection;
    use diesel::connection::SimpleConnection;
    let s = TestServer::start_with(|c| c.limits.max_concurrent_requests = 1).await;
    let alice = s.add_user("alice", "pw");
    let account = account_id(&s, &alice).await;
    let mut ws = ws_connect(&s, &alice).await;
    // Keep one HTTP request running: it writes, and the test holds SQLite's write lock meanwhile
    // (the store waits up to its busy timeout, 10 s, for it).
    let path = s
        .config
        .store
        .url
        .trim_start_matches("sqlite://")
        .to_owned();
    let mut lock = diesel::SqliteConnection::establish(&path).unwrap();
    lock.batch_execute("BEGIN IMMEDIATE").unwrap();
    let create = json!({"using": [CORE, MAIL], "methodCalls": [
        ["Mailbox/set", {"accountId": account, "create": {"m": {"name": "held"}}}, "0"]]});
    let hold = || {
        let (base, alice, create) = (s.base.clone(), alice.clone(), create.clone());
        actix_web::rt::spawn(async move {
            let req = authorize(client().post(format!("{base}/jmap/api")), &alice);
            harness::answer(req.send_json(&create).await.expect("POST")).await
        })
    };
    let mut held = hold();
    // WS-10: the WebSocket request is refused while the HTTP one runs. If the HTTP request came
    // while one of these held the slot, it was refused instead: it is sent again.
    let deadline = std::time::Instant::now() + WAIT;
    let mut i = 0;
    let refused = loop {
        i += 1;
        let (r, _) = ws_request(&mut ws, &format!("L{i}"), json!([["Core/echo", {}, "0"]])).await;
        if r["@type"] == "RequestError" {
            break r;
        }
        if held.is_finished() {
            held = hold();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "refused while the HTTP request runs"
        );
    };
    assert_eq!(refused["type"], "urn:ietf:params:jmap:error:limit");
    assert_eq!(refused["limit"], "maxConcurrentRequests");
    assert!(refused["requestId"].as_str().unwrap().starts_with('L'));
    // Let the HTTP request finish; then the WebSocket may run one again.
    lock.batch_execute("ROLLBACK").unwrap();
    let held = held.await.unwrap();
    assert_eq!(held.status, StatusCode::OK);
    let (r, _) = ws_request(&mut ws, "free", json!([["Core/echo", {}, "0"]])).await;
    assert_eq!(r["@type"], "Response");
}

#[actix_web::test]
async fn on_postgresql_a_websocket_on_one_node_hears_a_write_made_through_another_and_resumes() {
    let cluster = harness::pg::cluster();
    let url = cluster.fresh_database();
    let writer = TestServer::start_with(|c| c.store.url = url.clone()).await;
    let listener = TestServer::start_with(|c| c.store.url = url.clone()).await;
    let alice = writer.add_user("alice", "pw");
    let account = account_id(&writer, &alice).await;
    let mut ws = ws_pushed_everything(&listener, &alice).await;
    // The write goes through the other node; the ClusterBus brings it to this one's registry.
    let state = create_mailbox(&writer, &alice, &account, "Elsewhere").await;
    let seen = ws_until_mailbox_state(&mut ws, &account, &state).await;
    let old = seen.last().unwrap()["pushState"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(ws);
    let newest = create_mailbox(&writer, &alice, &account, "Missed").await;
    // Resume on the listening node: the missed change is read from the PostgreSQL change log.
    let mut ws = ws_connect(&listener, &alice).await;
    let early = ws_push_enable(
        &mut ws,
        json!({"@type": "WebSocketPushEnable", "dataTypes": null, "pushState": old}),
    )
    .await;
    let change = match early.first() {
        Some(c) => c.clone(),
        None => ws_next(&mut ws).await.unwrap(),
    };
    assert_eq!(change["changed"][&account]["Mailbox"], newest);
}

#[on_both_backends]
async fn a_connection_stops_hearing_of_an_account_once_access_to_it_is_revoked() {
    use herald::push::registry::AccessRevoked;
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let account = account_id(&s, &alice).await;
    let mut ws = ws_pushed_everything(&s, &alice).await;
    let state = create_mailbox(&s, &alice, &account, "Before").await;
    ws_until_mailbox_state(&mut ws, &account, &state).await;
    // What a sharing change would send once its transaction commits.
    let mut conn = s.store.conn().unwrap();
    let user = herald::store::users::find_by_name(&mut conn, "alice")
        .unwrap()
        .unwrap();
    s.registry
        .send(AccessRevoked {
            user_id: user.id,
            account_id: account.clone(),
        })
        .await
        .unwrap();
    create_mailbox(&s, &alice, &account, "After").await;
    // The connection followed only that account: it is closed rather than left deaf.
    assert_eq!(
        ws_next(&mut ws).await,
        None,
        "the socket closes once nothing is left to follow"
    );
    let stats = s.registry.send(GetStats).await.unwrap();
    assert_eq!(
        stats.hubs, 0,
        "the account's hub stopped with its last subscriber"
    );
}
