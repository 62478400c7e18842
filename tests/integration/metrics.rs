//! `GET /metrics` (issue 16 §4) on its own listener: Prometheus text that moves when a client is
//! pushed, calls methods and receives mail over LMTP. The counters are process-wide and tests run
//! side by side, so each check is a lower bound on what this test itself did.

use crate::harness::lmtp::LmtpClient;
use crate::harness::push::*;
use crate::harness::{TestServer, client, eventually};

async fn scrape(s: &TestServer) -> String {
    let addr = s.metrics.expect("a metrics listener");
    let mut res = client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(res.status(), 200);
    let content_type = res
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    String::from_utf8(res.body().await.unwrap().to_vec()).unwrap()
}

/// The value of the sample `series` (name with labels, as exposed), 0 when absent.
fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

#[actix_web::test]
async fn metrics_move_when_a_client_is_pushed_calls_methods_and_receives_mail() {
    let s = TestServer::start_with(|c| c.metrics.listen = "127.0.0.1:0".into()).await;
    let alice = s.add_user("alice", "pw-alice-1");
    let account = account_id(&s, &alice).await;
    let before = scrape(&s).await;

    let mut ws = ws_pushed_everything(&s, &alice).await;
    let state = create_mailbox(&s, &alice, &account, "Counted").await;
    ws_until_mailbox_state(&mut ws, &account, &state).await;
    let mut lmtp = LmtpClient::ready(s.lmtp.as_deref().unwrap()).await;
    let d = lmtp
        .deliver(
            "carol@remote.test",
            &["alice@localhost", "ghost@localhost"],
            b"Subject: metered\r\n\r\nHello.\r\n",
        )
        .await;
    assert_eq!(d.data[0].code, 250, "{d:?}");

    let after = scrape(&s).await;
    let grew = |series: &str| value(&after, series) - value(&before, series);
    assert!(
        value(&after, r#"herald_push_connections{transport="websocket"}"#) >= 1.0,
        "{after}"
    );
    assert!(
        grew(r#"herald_state_changes_sent_total{transport="websocket"}"#) >= 1.0,
        "{after}"
    );
    assert!(
        grew(r#"herald_method_calls_total{method="Mailbox/set"}"#) >= 1.0,
        "{after}"
    );
    assert!(grew("herald_api_requests_total") >= 1.0, "{after}");
    assert!(
        grew(r#"herald_push_latency_seconds_count{transport="websocket"}"#) >= 1.0,
        "{after}"
    );
    assert!(grew("herald_api_request_seconds_count") >= 1.0, "{after}");
    assert!(
        grew(r#"herald_method_call_seconds_count{method="Mailbox/set"}"#) >= 1.0,
        "{after}"
    );
    assert!(
        grew("herald_dispatcher_queue_seconds_count") >= 1.0,
        "{after}"
    );
    assert!(
        grew("herald_store_pool_wait_seconds_count") >= 1.0,
        "{after}"
    );
    assert!(
        grew(r#"herald_lmtp_recipients_total{outcome="delivered"}"#) >= 1.0,
        "{after}"
    );
    assert!(
        grew(r#"herald_lmtp_recipients_total{outcome="unknown"}"#) >= 1.0,
        "{after}"
    );
    for gauge in [
        "herald_webhook_outbox_rows",
        "herald_submission_outbox_rows",
        r#"herald_store_pool_connections{state="idle"}"#,
    ] {
        assert!(
            after.lines().any(|l| l.starts_with(gauge)),
            "{gauge}: {after}"
        );
    }

    // Not on the public listener.
    let public = s.get("/metrics", &alice).await;
    assert_eq!(public.status, 404);
}

#[actix_web::test]
async fn metrics_are_off_unless_configured() {
    let s = TestServer::start().await;
    assert!(s.metrics.is_none());
}

#[actix_web::test]
async fn writes_that_wait_for_the_same_state_change_count_as_merged() {
    // One StateChange a second per connection: of three writes made right after a push, at most
    // one finds a token; the others wait together.
    let s = TestServer::start_with(|c| {
        c.metrics.listen = "127.0.0.1:0".into();
        c.push.max_state_changes_per_sec = 1;
    })
    .await;
    let alice = s.add_user("alice", "pw-alice-1");
    let account = account_id(&s, &alice).await;
    let mut ws = ws_pushed_everything(&s, &alice).await;
    let first = create_mailbox(&s, &alice, &account, "One").await;
    ws_until_mailbox_state(&mut ws, &account, &first).await;
    let series = r#"herald_state_changes_merged_total{transport="websocket"}"#;
    let before = value(&scrape(&s).await, series);
    create_mailboxes(&s, &alice, &account, &["Two", "Three", "Four"]).await;
    eventually("a merged write is counted", WAIT, || async {
        (value(&scrape(&s).await, series) > before).then_some(())
    })
    .await;
}
