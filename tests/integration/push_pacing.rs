//! Push is latency-first (issue 13): with the shipped settings each change a client can keep up
//! with reaches it in its own StateChange, on WebSocket and EventSource alike; changes merge only
//! when the client is slower than the writer (the slow-reader test in push_ws.rs) or when a
//! connection exceeds `push.max_state_changes_per_sec`, the safety net against a runaway writer.

use serde_json::Value;

use crate::harness::push::*;
use crate::harness::{TestServer, on_both_backends};

const ALL: &str = "/jmap/eventsource/?types=*&closeafter=no&ping=0";

fn sse_mailbox_state(event: &Event, account: &str) -> Value {
    assert_eq!(event.event, "state", "{event:?}");
    let data: Value = serde_json::from_str(&event.data).unwrap();
    data["changed"][account]["Mailbox"].clone()
}

#[on_both_backends]
async fn changes_made_one_after_another_each_reach_a_client_that_keeps_up_in_their_own_state_change()
 {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw-alice-1");
    let account = account_id(&s, &alice).await;
    let mut ws = ws_pushed_everything(&s, &alice).await;
    let mut sse = sse_open(&s, &alice, ALL, None).await;
    sse.ready().await;
    // A user flagging message after message: each write follows the push of the one before.
    for i in 0..30 {
        let state = create_mailbox(&s, &alice, &account, &format!("m{i}")).await;
        let frame = ws_next(&mut ws).await.expect("a StateChange");
        assert_eq!(
            frame["changed"][&account]["Mailbox"],
            state.as_str(),
            "{frame}"
        );
        let event = sse.next_event().await.expect("a state event");
        assert_eq!(sse_mailbox_state(&event, &account), state.as_str());
    }
}

#[actix_web::test]
async fn beyond_the_per_connection_cap_changes_wait_and_merge_into_one_state_change() {
    let s = TestServer::start_with(|c| c.push.max_state_changes_per_sec = 1).await;
    let alice = s.add_user("alice", "pw-alice-1");
    let account = account_id(&s, &alice).await;
    let mut ws = ws_pushed_everything(&s, &alice).await;
    let mut sse = sse_open(&s, &alice, ALL, None).await;
    sse.ready().await;
    let first = create_mailbox(&s, &alice, &account, "One").await;
    ws_until_mailbox_state(&mut ws, &account, &first).await;
    sse.until_mailbox_state(&account, &first).await;
    // Each connection spent its one token a second on that push: of the next three writes at
    // most one finds a new token, the others go out together once the next one comes.
    let last = create_mailboxes(&s, &alice, &account, &["Two", "Three", "Four"]).await;
    let frames = ws_until_mailbox_state(&mut ws, &account, &last).await;
    assert!(frames.len() <= 2, "{frames:?}");
    let events = sse.until_mailbox_state(&account, &last).await;
    assert!(events.len() <= 2, "{events:?}");
}
