//! Writes made by other processes are pushed (issue 10 §2): `herald deliver` and `herald token
//! revoke` run as processes of their own (unshare and user removal: push_revocation.rs), and the running server's
//! clients hear of them at once, in order, each once — on SQLite through the LocalBus's watch of
//! the database, on PostgreSQL through LISTEN/NOTIFY.

use serde_json::{Value, json};

use crate::harness::push::*;
use crate::harness::{TestServer, on_both_backends};

fn message(subject: &str) -> Vec<u8> {
    format!(
        "From: carol@remote.test\r\nTo: alice@localhost\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@remote.test>\r\n\r\nHello.\r\n"
    )
    .into_bytes()
}

/// The account's current Email state.
async fn email_state(s: &TestServer, auth: &crate::harness::Auth, account: &str) -> String {
    let r = s
        .call(
            auth,
            &[crate::harness::CORE, MAIL],
            json!([["Email/get", {"accountId": account, "ids": []}, "0"]]),
        )
        .await;
    r[0][1]["state"].as_str().unwrap().to_owned()
}

#[on_both_backends]
async fn mail_delivered_by_the_herald_deliver_command_is_pushed_on_every_transport() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw-alice-1");
    let account = account_id(&s, &alice).await;
    let mut ws = ws_pushed_everything(&s, &alice).await;
    let mut sse = sse_everything(&s, &alice).await;

    let (ok, out) = s.cli_with_input(&["deliver", "--to", "alice"], &message("From a pipe"));
    assert!(ok, "{out}");
    let change = ws_next(&mut ws).await.expect("a StateChange");
    assert!(
        change["changed"][&account]["EmailDelivery"].is_string(),
        "{change}"
    );
    let event = sse.next_event().await.expect("a state event");
    let data: Value = serde_json::from_str(&event.data).unwrap();
    assert!(
        data["changed"][&account]["EmailDelivery"].is_string(),
        "{data}"
    );
}

#[on_both_backends]
async fn writes_of_this_server_and_of_other_processes_interleave_in_order_each_pushed_once() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw-alice-1");
    let account = account_id(&s, &alice).await;
    let mut ws = ws_pushed_everything(&s, &alice).await;
    let start = herald::store::changelog::log_bounds(&mut s.store.conn().unwrap(), &account)
        .unwrap()
        .1;
    for i in 0..4 {
        let (ok, out) = s.cli_with_input(&["deliver", "--to", "alice"], &message(&format!("m{i}")));
        assert!(ok, "{out}");
        create_mailbox(&s, &alice, &account, &format!("box {i}")).await;
    }
    let (ok, out) = s.cli_with_input(&["deliver", "--to", "alice"], &message("last"));
    assert!(ok, "{out}");
    let last_email = email_state(&s, &alice, &account).await;

    // Every StateChange up to the last write: the account's push position only grows (the
    // hub may merge several writes into one StateChange, never reorder or repeat them).
    let mut positions: Vec<i64> = Vec::new();
    loop {
        let m = ws_next(&mut ws).await.expect("socket open");
        assert_eq!(m["@type"], "StateChange", "{m}");
        let decoded = herald::push::position::decode(m["pushState"].as_str().unwrap())
            .expect("a pushState of ours");
        let position = decoded[&account];
        assert!(
            positions.last().is_none_or(|p| *p < position),
            "positions {positions:?} then {position}: {m}"
        );
        positions.push(position);
        if m["changed"][&account]["Email"] == last_email.as_str() {
            break;
        }
    }
    // 9 writes, each its own position.
    assert_eq!(positions.last(), Some(&(start + 9)), "{positions:?}");
}

#[on_both_backends]
async fn revoking_a_token_from_another_process_ends_the_streams_opened_with_it_only() {
    let s = TestServer::start_with(|c| c.push.access_check_secs = 3600).await;
    let alice = s.add_user("alice", "pw-alice-1");
    let account = account_id(&s, &alice).await;
    let (ok, out) = s.cli(&["token", "create", "alice"]);
    assert!(ok, "{out}");
    let token = out.lines().next().unwrap().trim().to_owned();
    let bearer = crate::harness::Auth::Bearer(token.clone());

    let mut by_token = ws_connect(&s, &bearer).await;
    let mut by_password = ws_connect(&s, &alice).await;
    for ws in [&mut by_token, &mut by_password] {
        ws_push_enable(
            ws,
            json!({"@type": "WebSocketPushEnable", "dataTypes": null}),
        )
        .await;
    }
    let mut sse = sse_everything(&s, &bearer).await;

    let (ok, out) = s.cli(&["token", "revoke", &token]);
    assert!(ok, "{out}");
    assert_eq!(
        ws_next(&mut by_token).await,
        None,
        "the token's WebSocket ends"
    );
    while let Some(e) = sse.next().await {
        assert!(
            e.comment || e.event == "ping",
            "no more state events: {e:?}"
        );
    }
    // The password's connection goes on hearing of the account.
    let state = create_mailbox(&s, &alice, &account, "Still here").await;
    ws_until_mailbox_state(&mut by_password, &account, &state).await;
}

/// On SQLite the bus finds other processes' writes by the change log's row numbers, which
/// SQLite hands out again once the newest rows are deleted (`herald user remove`). A slow watch
/// lets the removal and the writes after it fall between two checks: bob's delivery takes the
/// numbers of alice's removed rows, carol's lies above them, and both are pushed.
#[on_both_backends]
async fn writes_of_other_processes_after_a_user_removal_are_pushed_even_where_row_numbers_are_reused()
 {
    let s = TestServer::start_with(|c| c.push.change_poll_ms = 4_000).await;
    let alice = s.add_user("alice", "pw-alice-1");
    let bob = s.add_user("bob", "pw-bob-1");
    let carol = s.add_user("carol", "pw-carol-1");
    let (alice_account, bob_account, carol_account) = (
        account_id(&s, &alice).await,
        account_id(&s, &bob).await,
        account_id(&s, &carol).await,
    );
    let mut alice_ws = ws_pushed_everything(&s, &alice).await;
    let mut bob_ws = ws_pushed_everything(&s, &bob).await;
    let mut carol_ws = ws_pushed_everything(&s, &carol).await;

    let deliver = |to: &str| {
        let text = format!(
            "From: dave@remote.test\r\nTo: {to}@localhost\r\nSubject: for {to}\r\n\
             Message-ID: <{to}@remote.test>\r\n\r\nHello.\r\n"
        );
        let (ok, out) = s.cli_with_input(&["deliver", "--to", to], text.as_bytes());
        assert!(ok, "{out}");
    };
    // Alice's delivery is the newest in the log once the server has pushed it.
    deliver("alice");
    let change = ws_next(&mut alice_ws).await.expect("alice's StateChange");
    assert!(change["changed"][&alice_account].is_object(), "{change}");

    let (ok, out) = s.cli(&["user", "remove", "alice"]);
    assert!(ok, "{out}");
    deliver("bob");
    deliver("carol");
    for (ws, account) in [(&mut bob_ws, &bob_account), (&mut carol_ws, &carol_account)] {
        let change = ws_next(ws).await.expect("a StateChange");
        assert!(
            change["changed"][account]["EmailDelivery"].is_string(),
            "{change}"
        );
    }
}
