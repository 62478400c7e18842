//! EventSource push (RFC 8620 §7.3) against a real node, read as a browser's EventSource would.
//! Checklist ids (ES-xx, ST-06) in comments. Tests of what is pushed run on both store backends
//! (on PostgreSQL, pushes travel through the cluster bus); protocol-only ones on SQLite.

use crate::harness::push::*;
use crate::harness::{Auth, TestServer, on_both_backends};
use awc::http::StatusCode;
use herald::push::registry::GetStats;
use serde_json::{Value, json};

const ALL: &str = "/jmap/eventsource/?types=*&closeafter=no&ping=0";

#[on_both_backends]
async fn a_mutation_sends_a_state_event_with_an_id_and_the_get_state() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let account = account_id(&s, &alice).await;
    let mut sse = sse_open(&s, &alice, ALL, None).await;
    // ES-01, ES-10
    assert_eq!(sse.status, StatusCode::OK);
    let header = |name: &str| sse.headers.get(name).unwrap().to_str().unwrap().to_owned();
    assert!(header("content-type").starts_with("text/event-stream"));
    assert_eq!(header("cache-control"), "no-cache");
    assert_eq!(header("content-encoding"), "identity");
    sse.ready().await;
    let state = create_mailbox(&s, &alice, &account, "Pushed").await;
    let events = sse.until_mailbox_state(&account, &state).await;
    let e = events.last().unwrap();
    // ES-07, ES-08
    assert_eq!(e.event, "state");
    assert!(e.id.as_deref().is_some_and(|id| !id.is_empty()));
    let data: Value = serde_json::from_str(&e.data).unwrap();
    assert_eq!(data["@type"], "StateChange");
    // ST-06
    assert_eq!(mailbox_state(&s, &alice, &account).await, state);
}

#[on_both_backends]
async fn closeafter_state_ends_the_stream_after_one_state_event() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let account = account_id(&s, &alice).await;
    let mut sse = sse_open(
        &s,
        &alice,
        "/jmap/eventsource/?types=Mailbox&closeafter=state&ping=0",
        None,
    )
    .await;
    sse.ready().await;
    let state = create_mailbox(&s, &alice, &account, "Once").await;
    // ES-03
    let e = sse.next_event().await.expect("one state event");
    assert_eq!(e.event, "state");
    let data: Value = serde_json::from_str(&e.data).unwrap();
    assert_eq!(data["changed"][&account]["Mailbox"], state);
    assert_eq!(sse.next_event().await, None, "the stream ended");
}

#[actix_web::test]
async fn a_ping_event_carries_the_interval_actually_used_and_no_id() {
    let s = TestServer::start_with(|c| c.push.ping_min_secs = 1).await;
    let alice = s.add_user("alice", "pw");
    let mut sse = sse_open(
        &s,
        &alice,
        "/jmap/eventsource/?types=*&closeafter=no&ping=1",
        None,
    )
    .await;
    sse.ready().await;
    // ES-04, ES-06
    let e = sse.next_event().await.unwrap();
    assert_eq!(e.event, "ping");
    assert_eq!(
        serde_json::from_str::<Value>(&e.data).unwrap(),
        json!({"interval": 1})
    );
    assert_eq!(e.id, None);
}

#[actix_web::test]
async fn a_ping_below_the_minimum_is_raised_to_it() {
    let s = TestServer::start_with(|c| c.push.ping_min_secs = 2).await;
    let alice = s.add_user("alice", "pw");
    let mut sse = sse_open(
        &s,
        &alice,
        "/jmap/eventsource/?types=*&closeafter=no&ping=1",
        None,
    )
    .await;
    sse.ready().await;
    // ES-05: clamped, and the ping says so.
    let e = sse.next_event().await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&e.data).unwrap(),
        json!({"interval": 2})
    );
}

#[on_both_backends]
async fn reconnecting_with_last_event_id_gets_the_missed_changes_at_once() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let account = account_id(&s, &alice).await;
    let mut sse = sse_open(&s, &alice, ALL, None).await;
    sse.ready().await;
    let state = create_mailbox(&s, &alice, &account, "Before").await;
    let last_id = sse
        .until_mailbox_state(&account, &state)
        .await
        .last()
        .unwrap()
        .id
        .clone()
        .unwrap();
    drop(sse);
    create_mailbox(&s, &alice, &account, "Away1").await;
    let newest = create_mailbox(&s, &alice, &account, "Away2").await;
    // ES-08: the missed changes come at once, without a new mutation.
    let mut sse = sse_open(&s, &alice, ALL, Some(&last_id)).await;
    let e = sse.next_event().await.unwrap();
    assert_eq!(e.event, "state");
    let data: Value = serde_json::from_str(&e.data).unwrap();
    assert_eq!(data["changed"][&account]["Mailbox"], newest);
    let new_id = e.id.unwrap();
    assert_ne!(new_id, last_id);
    drop(sse);
    // With the newest id, nothing was missed: the ready comment, then the next real change.
    let mut sse = sse_open(&s, &alice, ALL, Some(&new_id)).await;
    sse.ready().await;
    let later = create_mailbox(&s, &alice, &account, "Later").await;
    let events = sse.until_mailbox_state(&account, &later).await;
    assert_eq!(events.len(), 1, "{events:?}");
}

#[actix_web::test]
async fn invalid_parameters_are_400_problem_json() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    for query in [
        "types=*&closeafter=sometimes&ping=0",
        "types=*&closeafter=no&ping=soon",
        "types=*&closeafter=no&ping=-5",
        "types=&closeafter=no&ping=0",
        "types=Mailbox,,Email&closeafter=no&ping=0",
    ] {
        let a = s.get(&format!("/jmap/eventsource/?{query}"), &alice).await;
        // ES-10
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(a.content_type, "application/problem+json", "{query}");
        assert!(a.body["detail"].is_string());
    }
    let a = s.get(ALL, &Auth::None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn a_ticket_opens_a_stream_once_and_is_then_refused() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let account = account_id(&s, &alice).await;
    // Tickets need authentication themselves.
    let a = s
        .post_raw("/jmap/ticket", &Auth::None, "application/json", Vec::new())
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = s
        .post_raw("/jmap/ticket", &alice, "application/json", Vec::new())
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let ticket = a.body["ticket"].as_str().unwrap().to_owned();
    assert!(a.body["expiresInSeconds"].as_u64().unwrap() > 0);
    let path = format!("{ALL}&ticket={ticket}");
    let mut sse = sse_open(&s, &Auth::None, &path, None).await;
    assert_eq!(sse.status, StatusCode::OK);
    sse.ready().await;
    let state = create_mailbox(&s, &alice, &account, "ByTicket").await;
    sse.until_mailbox_state(&account, &state).await;
    // Single use.
    let a = s.get(&path, &Auth::None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.content_type, "application/problem+json");
}

#[on_both_backends]
async fn a_user_never_receives_another_users_changes_on_an_event_source() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw-a");
    let bob = s.add_user("bob", "pw-b");
    let alice_account = account_id(&s, &alice).await;
    let bob_account = account_id(&s, &bob).await;
    let mut alice_sse = sse_open(&s, &alice, ALL, None).await;
    let mut bob_sse = sse_open(&s, &bob, ALL, None).await;
    alice_sse.ready().await;
    bob_sse.ready().await;
    let bob_state = create_mailbox(&s, &bob, &bob_account, "Secret").await;
    bob_sse.until_mailbox_state(&bob_account, &bob_state).await;
    let alice_state = create_mailbox(&s, &alice, &alice_account, "Mine").await;
    for e in alice_sse
        .until_mailbox_state(&alice_account, &alice_state)
        .await
    {
        let data: Value = serde_json::from_str(&e.data).unwrap();
        let accounts: Vec<_> = data["changed"].as_object().unwrap().keys().collect();
        assert_eq!(accounts, vec![&alice_account], "{data}");
    }
}

#[actix_web::test]
async fn a_stream_whose_client_left_is_unsubscribed_even_without_pings() {
    use herald::push::registry::GetStats;
    let s = TestServer::start_with(|c| c.push.heartbeat_secs = 1).await;
    let alice = s.add_user("alice", "pw");
    let mut sse = sse_open(&s, &alice, ALL, None).await;
    sse.ready().await;
    let stats = s.registry.send(GetStats).await.unwrap();
    assert_eq!(stats.subscribers.len(), 1);
    drop(sse);
    // STACK.md pitfall 7: the server learns of it on its liveness check (bounded polling).
    for _ in 0..200 {
        let stats = s.registry.send(GetStats).await.unwrap();
        if stats.subscribers.is_empty() && stats.hubs == 0 {
            return;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the departed stream is still subscribed");
}

#[actix_web::test]
async fn a_client_that_closes_its_streams_gets_its_stream_slots_back_at_once() {
    // The heartbeat (the server's own write) is far away: only noticing the disconnect itself
    // can free the slots within the test's deadline.
    let s = TestServer::start_with(|c| {
        c.push.max_connections_per_user = 2;
        c.push.heartbeat_secs = 3600;
    })
    .await;
    let alice = s.add_user("alice", "pw");
    let path = "/jmap/eventsource/?types=*&closeafter=no&ping=0";
    let base = s.base.clone();
    // Two raw streams, closed the way a browser closes an EventSource: the socket goes away.
    actix_web::rt::task::spawn_blocking(move || {
        use base64::Engine;
        use std::io::{Read, Write};
        let addr = base.trim_start_matches("http://");
        let credentials = base64::engine::general_purpose::STANDARD.encode("alice:pw");
        let sockets: Vec<_> = (0..2)
            .map(|_| {
                let mut socket = std::net::TcpStream::connect(addr).unwrap();
                socket
                    .set_read_timeout(Some(std::time::Duration::from_secs(20)))
                    .unwrap();
                write!(
                    socket,
                    "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
                     Authorization: Basic {credentials}\r\n\r\n"
                )
                .unwrap();
                let mut head = [0u8; 12];
                socket.read_exact(&mut head).unwrap();
                assert_eq!(&head, b"HTTP/1.1 200");
                socket
            })
            .collect();
        drop(sockets);
    })
    .await
    .unwrap();
    crate::harness::eventually(
        "a third stream is accepted after two were closed",
        std::time::Duration::from_secs(10),
        || async {
            let sse = sse_open(&s, &alice, path, None).await;
            (sse.status == StatusCode::OK).then_some(())
        },
    )
    .await;
}

async fn ticket(s: &TestServer, auth: &Auth) -> String {
    let a = s
        .post_raw("/jmap/ticket", auth, "application/json", Vec::new())
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    a.body["ticket"].as_str().unwrap().to_owned()
}

fn with_ticket(ticket: &str) -> String {
    format!("/jmap/eventsource/?types=*&closeafter=no&ping=0&ticket={ticket}")
}

#[on_both_backends]
async fn a_ticket_issued_by_one_node_opens_a_stream_on_another_once() {
    let a = TestServer::start().await;
    let url = a.config.store.url.clone();
    let b = TestServer::start_with(move |c| c.store.url = url).await;
    let alice = a.add_user("alice", "pw");
    let t = ticket(&a, &alice).await;
    let mut sse = sse_open(&b, &Auth::None, &with_ticket(&t), None).await;
    assert_eq!(sse.status, StatusCode::OK);
    sse.ready().await;
    // Used up: refused on both nodes.
    assert_eq!(
        sse_open(&a, &Auth::None, &with_ticket(&t), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        sse_open(&b, &Auth::None, &with_ticket(&t), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[on_both_backends]
async fn a_ticket_of_a_revoked_token_opens_nothing() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw");
    let mut conn = s.store.conn().unwrap();
    let (id, token) = herald::store::tokens::create(&mut conn, "alice").unwrap();
    let t = ticket(&s, &Auth::Bearer(token)).await;
    herald::store::tokens::revoke(&mut conn, &id).unwrap();
    assert_eq!(
        sse_open(&s, &Auth::None, &with_ticket(&t), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

#[actix_web::test]
async fn a_user_holds_at_most_max_tickets_unused_tickets() {
    let s = TestServer::start_with(|c| c.push.max_tickets = 2).await;
    let alice = s.add_user("alice", "pw");
    let bob = s.add_user("bob", "pw");
    ticket(&s, &alice).await;
    let second = ticket(&s, &alice).await;
    let refused = s
        .post_raw("/jmap/ticket", &alice, "application/json", Vec::new())
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    // Another user is not affected, and using a ticket makes room again.
    ticket(&s, &bob).await;
    let sse = sse_open(&s, &Auth::None, &with_ticket(&second), None).await;
    assert_eq!(sse.status, StatusCode::OK);
    ticket(&s, &alice).await;
}

// SQLite only, as its WebSocket twin: what is under test is the stream's slot, not the store.
#[actix_web::test]
async fn a_stream_whose_client_stops_reading_holds_a_bounded_backlog_and_ends_on_the_latest_state()
{
    const MUTATIONS: usize = 10_000;
    const PER_REQUEST: usize = 500;
    // Shipped push settings: nothing holds events back but the client not reading.
    let s = TestServer::start_with(|c| c.limits.max_calls_in_request = PER_REQUEST as u64).await;
    let alice = s.add_user("alice", "pw");
    let account = account_id(&s, &alice).await;
    let mut sse = sse_open(&s, &alice, ALL, None).await;
    sse.ready().await;
    // The client now stops reading while 10,000 writes commit (one per Mailbox/set call).
    let last_state = rename_mailbox_many_times(&s, &alice, &account, MUTATIONS, PER_REQUEST).await;
    // Now it reads: a bounded number of events, the last carrying the latest state.
    let events = sse.until_mailbox_state(&account, &last_state).await;
    let states = events.iter().filter(|e| e.event == "state").count();
    assert!(
        states < MUTATIONS / 10,
        "{states} state events for {MUTATIONS} changes"
    );
    // Every change went through the stream's slot, which never held more than one state per
    // account and type.
    let slot = s.registry.send(GetStats).await.unwrap().subscribers[0].1;
    assert!(slot.offered >= MUTATIONS as u64, "{slot:?}");
    assert!(
        slot.high_water <= herald::push::DATA_TYPES.len(),
        "{slot:?}"
    );
}
