//! Access withdrawn from outside the server process (`herald account unshare`, `herald user
//! remove`, run as commands of their own) reaches open push connections at once: they stop
//! hearing of the account, and a connection left with no account is closed (issue: registry and
//! sessions; issue 10 §2). Access given (`herald account share`) reaches them too: they start
//! following the account. The periodic audit is an hour away, so only the announcement of the
//! change (`store::access_epoch`) can act in time.

use crate::harness::push::*;
use crate::harness::{CORE, TestServer, eventually, on_both_backends};
use herald::store::accounts;
use serde_json::json;

#[on_both_backends]
async fn unsharing_silences_the_account_on_open_streams_and_removing_the_user_closes_them() {
    let s = TestServer::start_with(|c| c.push.access_check_secs = 3600).await;
    let alice = s.add_user("alice", "pw");
    let bob = s.add_user("bob", "pw");
    let alices = account_id(&s, &alice).await;
    let bobs = account_id(&s, &bob).await;
    // What `herald account share alice --with bob` writes, from another process.
    accounts::share(&mut s.store.conn().unwrap(), "alice", "bob", false).unwrap();

    let mut ws = ws_pushed_everything(&s, &bob).await;
    let mut sse = sse_everything(&s, &bob).await;
    let shared = create_mailbox(&s, &alice, &alices, "Shared news").await;
    ws_until_mailbox_state(&mut ws, &alices, &shared).await;
    sse.until_mailbox_state(&alices, &shared).await;

    // `herald account unshare alice --with bob`: bob keeps his own account, so his streams stay
    // open but hear nothing more of alice's.
    let (ok, out) = s.cli(&["account", "unshare", "alice", "--with", "bob"]);
    assert!(ok, "{out}");
    // alice has no connection of her own: her hub exists only while bob follows her account.
    eventually(
        "the registry drops alice's account from bob",
        WAIT,
        || async {
            let stats = s
                .registry
                .send(herald::push::registry::GetStats)
                .await
                .unwrap();
            (stats.hubs == 1).then_some(())
        },
    )
    .await;
    create_mailbox(&s, &alice, &alices, "Private now").await;
    let own = create_mailbox(&s, &bob, &bobs, "Bob's own").await;
    let seen = ws_until_mailbox_state(&mut ws, &bobs, &own).await;
    assert!(
        seen.iter().all(|m| m["changed"].get(&alices).is_none()),
        "no news of alice's account: {seen:?}"
    );
    let events = sse.until_mailbox_state(&bobs, &own).await;
    assert!(
        events.iter().all(|e| !e.data.contains(&alices)),
        "{events:?}"
    );

    // `herald user remove bob`: nothing is left to follow, so both streams end.
    let (ok, out) = s.cli(&["user", "remove", "bob"]);
    assert!(ok, "{out}");
    assert_eq!(ws_next(&mut ws).await, None, "the WebSocket is closed");
    while let Some(e) = sse.next().await {
        assert!(
            e.comment || e.event == "ping",
            "no more state events: {e:?}"
        );
    }
}

/// "A user's stream covers every account the user may read" (docs/push.md), also one shared
/// after the stream opened: it is told the account's current states at once, then its changes.
#[on_both_backends]
async fn an_account_shared_while_streams_are_open_is_followed_by_them_at_once() {
    let s = TestServer::start_with(|c| c.push.access_check_secs = 3600).await;
    let alice = s.add_user("alice", "pw");
    let bob = s.add_user("bob", "pw");
    let alices = account_id(&s, &alice).await;
    let before = create_mailbox(&s, &alice, &alices, "Before the share").await;
    let mut ws = ws_pushed_everything(&s, &bob).await;
    let mut sse = sse_everything(&s, &bob).await;

    let (ok, out) = s.cli(&["account", "share", "alice", "--with", "bob"]);
    assert!(ok, "{out}");
    ws_until_mailbox_state(&mut ws, &alices, &before).await;
    sse.until_mailbox_state(&alices, &before).await;
    let after = create_mailbox(&s, &alice, &alices, "After the share").await;
    ws_until_mailbox_state(&mut ws, &alices, &after).await;
    sse.until_mailbox_state(&alices, &after).await;
}

#[on_both_backends]
async fn a_websocket_runs_each_request_with_the_access_and_credentials_of_now() {
    // WS-03: a socket authenticates once, but what it may do follows the store, as HTTP does.
    let s = TestServer::start_with(|c| c.push.access_check_secs = 3600).await;
    let alice = s.add_user("alice", "pw");
    let bob = s.add_user("bob", "pw");
    let alices = account_id(&s, &alice).await;
    accounts::share(&mut s.store.conn().unwrap(), "alice", "bob", false).unwrap();
    let mut ws = ws_connect(&s, &bob).await;
    let get = json!([["Mailbox/get", {"accountId": alices, "ids": []}, "0"]]);
    let plant =
        json!([["Mailbox/set", {"accountId": alices, "create": {"k": {"name": "Planted"}}}, "0"]]);
    let (r, _) = ws_request(&mut ws, "1", get.clone()).await;
    assert_eq!(r["methodResponses"][0][0], "Mailbox/get", "{r}");

    accounts::share(&mut s.store.conn().unwrap(), "alice", "bob", true).unwrap();
    let (r, _) = ws_request(&mut ws, "2", plant).await;
    assert_eq!(r["methodResponses"][0][1]["type"], "accountReadOnly", "{r}");

    let (ok, out) = s.cli(&["account", "unshare", "alice", "--with", "bob"]);
    assert!(ok, "{out}");
    let (r, _) = ws_request(&mut ws, "3", get.clone()).await;
    assert_eq!(r["methodResponses"][0][1]["type"], "accountNotFound", "{r}");

    herald::store::users::set_password(&mut s.store.conn().unwrap(), "bob", "another password")
        .unwrap();
    ws_send(
        &mut ws,
        json!({"@type": "Request", "id": "4", "using": [CORE, MAIL], "methodCalls": get}),
    )
    .await;
    assert_eq!(ws_next(&mut ws).await, None, "closed (1008), nothing ran");
}

#[on_both_backends]
async fn a_password_change_ends_streams_opened_with_it_and_voids_its_unused_tickets() {
    // WS-03: the old password no longer holds, for streams open and tickets minted with it.
    let s = TestServer::start_with(|c| c.push.access_check_secs = 3600).await;
    let alice = s.add_user("alice", "pw");
    let mut sse = sse_everything(&s, &alice).await;
    let a = s
        .post_raw("/jmap/ticket", &alice, "application/json", Vec::new())
        .await;
    let ticket = a.body["ticket"].as_str().unwrap().to_owned();

    herald::store::users::set_password(&mut s.store.conn().unwrap(), "alice", "another password")
        .unwrap();
    while let Some(e) = sse.next().await {
        assert!(e.comment, "no more events: {e:?}");
    }
    let path = format!("/jmap/eventsource/?types=*&closeafter=no&ping=0&ticket={ticket}");
    let a = s.get(&path, &crate::harness::Auth::None).await;
    assert_eq!(a.status, awc::http::StatusCode::UNAUTHORIZED);
}
