//! The submission outbox (issue 11): EmailSubmission/set queues and returns at once; the outbox
//! sender delivers through a real SMTP server started by the test (`SmtpSink`), retries,
//! gives up, bounces, honours HOLDFOR and cancellation, and every move of `deliveryStatus` and
//! `undoStatus` is a pushed EmailSubmission change.

use serde_json::{Value, json};

use super::submission::{MAIL, SUBMISSION, Setup, setup_with};
use crate::harness::push::{WAIT, ws_next, ws_pushed_everything};
use crate::harness::smtp_sink::SmtpSink;
use crate::harness::{CORE, eventually, on_both_backends};

/// [`send`] without an envelope; returns the submission's id.
async fn send_id(t: &Setup, to: &[&str]) -> String {
    t.submit(to, None).await["id"].as_str().unwrap().to_owned()
}

fn delivered(s: &Value, rcpt: &str) -> String {
    s["deliveryStatus"][rcpt]["delivered"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

async fn with_relay(sink: &SmtpSink, adjust: impl FnOnce(&mut herald::config::Config)) -> Setup {
    let url = sink.url.clone();
    setup_with(move |c| {
        c.submission.relay = url;
        adjust(c);
    })
    .await
}

/// The `smtpReply` of `recipient` in a submission (empty while none).
fn reply_of<'a>(submission: &'a Value, recipient: &str) -> &'a str {
    submission["deliveryStatus"][recipient]["smtpReply"]
        .as_str()
        .unwrap_or_default()
}

/// A relay that answers `slow@far.test` with `reply`, retried every second.
async fn with_slow_relay(
    reply: &str,
    adjust: impl FnOnce(&mut herald::config::Config),
) -> (SmtpSink, Setup) {
    let sink = SmtpSink::start();
    sink.answer("slow@far.test", reply);
    let t = with_relay(&sink, |c| {
        c.submission.retry_base_secs = 1;
        c.submission.retry_cap_secs = 1;
        adjust(c);
    })
    .await;
    (sink, t)
}

#[on_both_backends]
async fn a_submission_is_queued_at_once_and_each_delivery_is_pushed_to_the_sender() {
    let sink = SmtpSink::start();
    let t = with_relay(&sink, |_| {}).await;
    let mut ws = ws_pushed_everything(&t.s, &t.alice).await;
    let created = t.submit(&["dave@far.test", "bob@localhost"], None).await;
    // Queued: the request did not wait for any delivery.
    assert_eq!(created["undoStatus"], "pending");
    assert_eq!(
        created["deliveryStatus"]["dave@far.test"]["delivered"],
        "queued"
    );
    let sid = created["id"].as_str().unwrap().to_owned();
    // Every move is an EmailSubmission change pushed to alice, until both are delivered.
    let final_state = loop {
        let change = ws_next(&mut ws).await.expect("a StateChange");
        if let Some(state) = change["changed"][&t.account]["EmailSubmission"].as_str() {
            let s = t.submission(&sid).await;
            if delivered(&s, "dave@far.test") == "yes" && delivered(&s, "bob@localhost") == "yes" {
                break (state.to_owned(), s);
            }
        }
    };
    let (_, s) = final_state;
    assert_eq!(s["undoStatus"], "final");
    assert_eq!(
        s["deliveryStatus"]["dave@far.test"]["smtpReply"],
        "250 2.0.0 Ok: queued as 42"
    );
    let got = sink.received();
    assert_eq!(
        got.len(),
        1,
        "one SMTP transaction for the one remote recipient"
    );
    assert_eq!(got[0].mail_from, "alice@localhost");
    assert_eq!(got[0].rcpt_to, vec!["dave@far.test"]);
    assert!(got[0].data.contains("Subject: Lunch?"), "{}", got[0].data);
    t.emails_once(&t.bob, &t.bob_account, 1).await;
}

#[actix_web::test]
async fn a_stalled_relay_does_not_hold_up_anyone_elses_requests() {
    let sink = SmtpSink::start();
    sink.stall(true);
    // More attempts in flight than the dispatcher has threads: if sending ran on them, every
    // request below would wait for the relay.
    let t = with_relay(&sink, |c| {
        c.submission.max_in_flight = 8;
        c.submission.relay_timeout_secs = 120;
    })
    .await;
    for i in 0..8 {
        t.submit(&[&format!("far{i}@far.test")], None).await;
    }
    eventually("the relay holds every attempt", WAIT, || async {
        (sink.held() >= 8).then_some(())
    })
    .await;
    // Meanwhile bob's requests complete, one after another.
    for _ in 0..50 {
        let r = t
            .s
            .call(
                &t.bob,
                &[CORE, MAIL],
                json!([["Core/echo", {"ping": 1}, "0"], ["Mailbox/get", {"accountId": t.bob_account}, "1"]]),
            )
            .await;
        assert_eq!(r[0][1], json!({"ping": 1}));
        assert_eq!(r[1][0], "Mailbox/get");
    }
    assert!(sink.held() >= 8, "the relay was stalled throughout");
    assert!(sink.received().is_empty());
    // Released, the relay gets every message.
    sink.stall(false);
    eventually("every stalled message goes out", WAIT, || async {
        (sink.received().len() == 8).then_some(())
    })
    .await;
}

#[on_both_backends]
async fn a_temporary_failure_is_retried_until_the_relay_takes_the_message() {
    let (sink, t) = with_slow_relay("451 4.3.0 try again later", |_| {}).await;
    let sid = send_id(&t, &["slow@far.test"]).await;
    // The failure is reported while the recipient stays queued.
    let s = t
        .submission_until(&sid, |s| reply_of(s, "slow@far.test").starts_with("451"))
        .await;
    assert_eq!(delivered(&s, "slow@far.test"), "queued");
    assert_eq!(s["undoStatus"], "final", "an attempt was made");
    sink.answer("slow@far.test", "250 2.1.5 Ok");
    t.submission_until(&sid, |s| delivered(s, "slow@far.test") == "yes")
        .await;
    assert!(sink.attempts().len() >= 2, "{:?}", sink.attempts());
    assert_eq!(sink.received().len(), 1);
}

/// The delivery status notifications in alice's inbox.
async fn bounces(t: &Setup) -> Vec<Value> {
    let list = t.emails_once(&t.alice, &t.account, 0).await;
    list.into_iter()
        .filter(|e| {
            e["subject"]
                .as_str()
                .is_some_and(|s| s.starts_with("Undelivered Mail Returned to Sender"))
        })
        .collect()
}

/// The raw text of alice's email `id`.
async fn raw(t: &Setup, id: &str) -> String {
    let r = t
        .call(
            &t.alice,
            json!([["Email/get", {"accountId": t.account, "ids": [id], "properties": ["blobId"]}, "0"]]),
        )
        .await;
    let blob = r[0][1]["list"][0]["blobId"].as_str().unwrap().to_owned();
    let path = format!(
        "/jmap/download/{}/{blob}/m.eml?type=message/rfc822",
        t.account
    );
    String::from_utf8_lossy(&t.s.get(&path, &t.alice).await.raw).into_owned()
}

#[on_both_backends]
async fn a_permanent_refusal_fails_that_recipient_and_bounces_to_the_sender() {
    let sink = SmtpSink::start();
    sink.answer("nobody@far.test", "550 5.1.1 no such user");
    let t = with_relay(&sink, |_| {}).await;
    let sid = send_id(&t, &["nobody@far.test", "dave@far.test"]).await;
    let s = t
        .submission_until(&sid, |s| {
            delivered(s, "nobody@far.test") == "no" && delivered(s, "dave@far.test") == "yes"
        })
        .await;
    assert_eq!(
        s["deliveryStatus"]["nobody@far.test"]["smtpReply"],
        "550 5.1.1 no such user"
    );
    let bounce = eventually("the bounce arrives", WAIT, || async {
        bounces(&t).await.into_iter().next()
    })
    .await;
    assert_eq!(
        bounce["subject"],
        "Undelivered Mail Returned to Sender: Lunch?"
    );
    let text = raw(&t, bounce["id"].as_str().unwrap()).await;
    assert!(text.contains("multipart/report"), "{text}");
    assert!(
        text.contains("Final-Recipient: rfc822; nobody@far.test"),
        "{text}"
    );
    assert!(text.contains("Status: 5.1.1"), "{text}");
    assert!(
        !text.contains("dave@far.test\r\nAction"),
        "only the failed recipient"
    );
}

#[actix_web::test]
async fn a_recipient_still_failing_at_the_give_up_age_is_given_up_and_bounced() {
    let (sink, t) = with_slow_relay("421 4.4.2 closing", |c| c.submission.give_up_secs = 2).await;
    let sid = send_id(&t, &["slow@far.test"]).await;
    let s = t
        .submission_until(&sid, |s| delivered(s, "slow@far.test") == "no")
        .await;
    assert!(
        s["deliveryStatus"]["slow@far.test"]["smtpReply"]
            .as_str()
            .unwrap()
            .starts_with("421"),
        "{s}"
    );
    let bounce = eventually("the bounce arrives", WAIT, || async {
        bounces(&t).await.into_iter().next()
    })
    .await;
    let text = raw(&t, bounce["id"].as_str().unwrap()).await;
    assert!(text.contains("Status: 4.4.7"), "{text}");
    assert!(sink.received().is_empty());
}

#[on_both_backends]
async fn a_relay_that_cannot_be_reached_is_reported_as_an_smtp_reply() {
    // RFC 8621 §7: smtpReply is a reply in SMTP form, also when no reply came.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("smtp://{}", closed.local_addr().unwrap());
    drop(closed);
    let t = setup_with(move |c| {
        c.submission.relay = url;
        c.submission.retry_base_secs = 60;
    })
    .await;
    let sid = send_id(&t, &["far@far.test"]).await;
    let s = t
        .submission_until(&sid, |s| !reply_of(s, "far@far.test").is_empty())
        .await;
    let reply = reply_of(&s, "far@far.test");
    assert!(reply.starts_with("451 4.4.1 "), "{reply}");
}

#[on_both_backends]
async fn a_held_submission_gets_its_whole_give_up_age_of_retries_after_its_release() {
    // SUB-04: the give-up age counts from when the message may first be sent, not from when it
    // was queued: a hold longer than give_up_secs is no reason to give up on the first 4xx.
    let (sink, t) = with_slow_relay("451 4.3.0 try again later", |c| {
        c.submission.give_up_secs = 3;
    })
    .await;
    let envelope = json!({"mailFrom": {"email": "alice@localhost", "parameters": {"HOLDFOR": "4"}},
        "rcptTo": [{"email": "slow@far.test"}]});
    let sid = t.submit(&["slow@far.test"], Some(envelope)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let s = t
        .submission_until(&sid, |s| reply_of(s, "slow@far.test").starts_with("451"))
        .await;
    assert_eq!(
        delivered(&s, "slow@far.test"),
        "queued",
        "not given up: {s}"
    );
    sink.answer("slow@far.test", "250 2.1.5 Ok");
    t.submission_until(&sid, |s| delivered(s, "slow@far.test") == "yes")
        .await;
}

#[on_both_backends]
async fn a_delayed_submission_waits_for_its_time_and_can_be_canceled_until_then() {
    let sink = SmtpSink::start();
    let t = with_relay(&sink, |_| {}).await;
    let mut ws = ws_pushed_everything(&t.s, &t.alice).await;
    let hold = |secs: &str| {
        json!({"mailFrom": {"email": "alice@localhost", "parameters": {"HOLDFOR": secs}},
               "rcptTo": [{"email": "dave@far.test", "parameters": null}]})
    };
    let later = t.submit(&["dave@far.test"], Some(hold("3600"))).await;
    let sid = later["id"].as_str().unwrap().to_owned();
    assert_eq!(later["undoStatus"], "pending");
    let send_at = chrono::DateTime::parse_from_rfc3339(later["sendAt"].as_str().unwrap()).unwrap();
    let in_an_hour = chrono::Utc::now().timestamp() + 3600;
    assert!((send_at.timestamp() - in_an_hour).abs() < 60, "{later}");
    // RFC 8621 §7.5: canceled while pending.
    let r = t
        .call(
            &t.alice,
            json!([["EmailSubmission/set", {"accountId": t.account,
                "update": {sid.clone(): {"undoStatus": "canceled"}}}, "0"]]),
        )
        .await;
    assert!(r[0][1]["updated"].get(&sid).is_some(), "{r:?}");
    let canceled_state = r[0][1]["newState"].as_str().unwrap().to_owned();
    loop {
        let change = ws_next(&mut ws).await.expect("a StateChange");
        if change["changed"][&t.account]["EmailSubmission"] == canceled_state.as_str() {
            break;
        }
    }
    let s = t.submission(&sid).await;
    assert_eq!(s["undoStatus"], "canceled");
    assert_eq!(delivered(&s, "dave@far.test"), "no");
    // Canceled means never sent: canceling again changes nothing (the value it has), and it
    // cannot be uncanceled.
    let r = t
        .call(
            &t.alice,
            json!([["EmailSubmission/set", {"accountId": t.account,
                "update": {sid.clone(): {"undoStatus": "canceled"}}}, "0"],
                ["EmailSubmission/set", {"accountId": t.account,
                "update": {sid.clone(): {"undoStatus": "pending"}}}, "1"]]),
        )
        .await;
    assert!(r[0][1]["updated"].get(&sid).is_some(), "{r:?}");
    assert_eq!(r[0][1]["oldState"], r[0][1]["newState"], "{r:?}");
    assert_eq!(
        r[1][1]["notUpdated"][&sid]["type"], "invalidProperties",
        "{r:?}"
    );

    // A short hold is sent when it ends.
    let soon = t.submit(&["dave@far.test"], Some(hold("1"))).await;
    let soon_id = soon["id"].as_str().unwrap().to_owned();
    assert_eq!(soon["undoStatus"], "pending");
    t.submission_until(&soon_id, |s| delivered(s, "dave@far.test") == "yes")
        .await;
    assert_eq!(sink.received().len(), 1, "only the one not canceled");
}

#[actix_web::test]
async fn a_hold_beyond_max_delayed_send_is_refused_and_no_delay_is_offered_when_it_is_zero() {
    let sink = SmtpSink::start();
    let t = with_relay(&sink, |c| c.submission.max_delayed_send_secs = 60).await;
    let identity = t.default_identity().await;
    let envelope = |params: Value| {
        json!({"mailFrom": {"email": "alice@localhost", "parameters": params},
               "rcptTo": [{"email": "dave@far.test"}]})
    };
    let r = t
        .call(
            &t.alice,
            json!([
                ["Email/set", {"accountId": t.account, "create": {"d": t.draft(
                    "alice@localhost", json!([{"email": "dave@far.test"}]), Value::Null)}}, "0"],
                ["EmailSubmission/set", {"accountId": t.account, "create": {
                    "long": {"identityId": identity, "emailId": "#d", "envelope": envelope(json!({"HOLDFOR": "61"}))},
                    "bad": {"identityId": identity, "emailId": "#d", "envelope": envelope(json!({"HOLDUNTIL": "soon"}))},
                }}, "1"],
            ]),
        )
        .await;
    for cid in ["long", "bad"] {
        assert_eq!(
            r[1][1]["notCreated"][cid]["type"], "invalidProperties",
            "{r:?}"
        );
        assert_eq!(
            r[1][1]["notCreated"][cid]["properties"],
            json!(["envelope"])
        );
    }
    let s = setup_with(|c| c.submission.max_delayed_send_secs = 0).await;
    let session = s.s.get("/jmap/session", &s.alice).await.body;
    assert_eq!(
        session["accounts"][&s.account]["accountCapabilities"][SUBMISSION],
        json!({"maxDelayedSend": 0, "submissionExtensions": {}})
    );
}

#[actix_web::test]
async fn a_destroyed_draft_is_still_sent_because_the_outbox_keeps_the_message() {
    let sink = SmtpSink::start();
    sink.stall(true);
    let t = with_relay(&sink, |_| {}).await;
    let identity = t.default_identity().await;
    let r = t
        .call(
            &t.alice,
            json!([
                ["Email/set", {"accountId": t.account, "create": {"d": t.draft(
                    "alice@localhost", json!([{"email": "dave@far.test"}]), Value::Null)}}, "0"],
                ["EmailSubmission/set", {"accountId": t.account,
                    "create": {"s": {"identityId": identity, "emailId": "#d"}},
                    "onSuccessDestroyEmail": ["#s"]}, "1"],
            ]),
        )
        .await;
    assert_eq!(r[2][0], "Email/set", "{r:?}");
    assert_eq!(
        r[2][1]["destroyed"].as_array().map(Vec::len),
        Some(1),
        "{r:?}"
    );
    sink.stall(false);
    let got = eventually("the message goes out", WAIT, || async {
        sink.received().into_iter().next()
    })
    .await;
    assert!(got.data.contains("At noon."), "{}", got.data);
}

/// A `herald serve` process on the SQLite store in `dir` with `relay`; returns it and its base URL.
fn serve_process(dir: &tempfile::TempDir, relay: &str) -> (std::process::Child, String) {
    use super::cli::{herald, lines, wait_for};
    let mut child = herald(dir)
        .env("HERALD_SERVER_LISTEN", "127.0.0.1:0")
        .env("HERALD_SUBMISSION_RELAY", relay)
        .env("RUST_LOG", "info")
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let err = lines(child.stderr.take().unwrap());
    let line = wait_for(&err, "Herald listening on");
    let addr = line
        .split("Herald listening on ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || while err.recv().is_ok() {});
    (child, format!("http://{addr}"))
}

/// One JMAP request as alice (password `pw`) to the server at `base`.
async fn api(base: &str, calls: Value) -> Vec<Value> {
    let mut res = crate::harness::client()
        .post(format!("{base}/jmap/api"))
        .basic_auth("alice", "pw")
        .send_json(&json!({"using": [CORE, MAIL, SUBMISSION], "methodCalls": calls}))
        .await
        .unwrap();
    let body: Value = res.json().limit(1 << 20).await.unwrap();
    body["methodResponses"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("{body}"))
}

#[actix_web::test]
async fn submissions_pending_or_in_flight_when_the_server_is_killed_are_sent_after_it_restarts() {
    use super::cli::{herald, run, text};
    let dir = tempfile::tempdir().unwrap();
    let add = run(herald(&dir).args(["user", "add", "alice", "--password", "pw"]));
    assert!(add.status.success(), "{}", text(&add.stderr));
    let sink = SmtpSink::start();
    sink.stall(true);
    let (mut server, base) = serve_process(&dir, &sink.url);
    let session: Value = crate::harness::client()
        .get(format!("{base}/jmap/session"))
        .basic_auth("alice", "pw")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let account = session["primaryAccounts"][SUBMISSION]
        .as_str()
        .unwrap()
        .to_owned();
    let identity = api(
        &base,
        json!([["Identity/get", {"accountId": account}, "0"]]),
    )
    .await[0][1]["list"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let drafts = api(
        &base,
        json!([["Mailbox/query", {"accountId": account, "filter": {"role": "drafts"}}, "0"]]),
    )
    .await[0][1]["ids"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let r = api(
        &base,
        json!([
            ["Email/set", {"accountId": account, "create": {
                "now": {"mailboxIds": {drafts.clone(): true}, "from": [{"email": "alice@localhost"}], "to": [{"email": "dave@far.test"}],
                        "subject": "In flight", "textBody": [{"partId": "t", "type": "text/plain"}],
                        "bodyValues": {"t": {"value": "one"}}},
                "later": {"mailboxIds": {drafts: true}, "from": [{"email": "alice@localhost"}], "to": [{"email": "erin@far.test"}],
                        "subject": "Held", "textBody": [{"partId": "t", "type": "text/plain"}],
                        "bodyValues": {"t": {"value": "two"}}}}}, "0"],
            ["EmailSubmission/set", {"accountId": account, "create": {
                "a": {"identityId": identity, "emailId": "#now"},
                "b": {"identityId": identity, "emailId": "#later", "envelope": {
                    "mailFrom": {"email": "alice@localhost", "parameters": {"HOLDFOR": "2"}},
                    "rcptTo": [{"email": "erin@far.test"}]}}}}, "1"],
        ]),
    )
    .await;
    assert!(r[1][1]["created"]["a"]["id"].is_string(), "{r:?}");
    assert!(r[1][1]["created"]["b"]["id"].is_string(), "{r:?}");
    // The first is in the relay's hands (held before its greeting) when the server dies.
    eventually("the first attempt reaches the relay", WAIT, || async {
        (sink.held() >= 1).then_some(())
    })
    .await;
    server.kill().unwrap();
    server.wait().unwrap();
    sink.stall(false);
    eventually("the killed server's connection is gone", WAIT, || async {
        (sink.held() == 0).then_some(())
    })
    .await;

    let (mut server, _) = serve_process(&dir, &sink.url);
    let got = eventually("both messages go out after the restart", WAIT, || async {
        let got = sink.received();
        (got.len() >= 2).then_some(got)
    })
    .await;
    let mut rcpts: Vec<String> = got.iter().flat_map(|m| m.rcpt_to.clone()).collect();
    rcpts.sort();
    assert_eq!(rcpts, vec!["dave@far.test", "erin@far.test"]);
    server.kill().unwrap();
    server.wait().unwrap();
}

#[actix_web::test]
async fn two_nodes_on_one_database_send_each_queued_recipient_once() {
    use crate::harness::{TestServer, pg};
    let cluster = pg::cluster();
    let url = cluster.fresh_database();
    let sink = SmtpSink::start();
    let node = |url: String, relay: String| {
        move |c: &mut herald::config::Config| {
            c.store.url = url;
            c.submission.relay = relay;
        }
    };
    let a = TestServer::start_with(node(url.clone(), sink.url.clone())).await;
    let b = TestServer::start_with(node(url.clone(), sink.url.clone())).await;
    let alice = a.add_user("alice", "pw");
    let using = [CORE, MAIL, SUBMISSION];
    let session = a.get("/jmap/session", &alice).await.body;
    let account = session["primaryAccounts"][SUBMISSION]
        .as_str()
        .unwrap()
        .to_owned();
    let r = a
        .call(
            &alice,
            &using,
            json!([
                ["Mailbox/query", {"accountId": account, "filter": {"role": "drafts"}}, "0"],
                ["Identity/get", {"accountId": account}, "1"],
            ]),
        )
        .await;
    let drafts = r[0][1]["ids"][0].as_str().unwrap().to_owned();
    let identity = r[1][1]["list"][0]["id"].as_str().unwrap().to_owned();
    // Twenty submissions, half through each node; both nodes' senders hear of every one.
    for i in 0..20 {
        let node = if i % 2 == 0 { &a } else { &b };
        let r = node
            .call(
                &alice,
                &using,
                json!([
                    ["Email/set", {"accountId": account, "create": {"d": {
                        "mailboxIds": {drafts.clone(): true},
                        "from": [{"email": "alice@localhost"}], "to": [{"email": "dave@far.test"}],
                        "subject": format!("n{i}"), "textBody": [{"partId": "t", "type": "text/plain"}],
                        "bodyValues": {"t": {"value": "x"}}}}}, "0"],
                    ["EmailSubmission/set", {"accountId": account,
                        "create": {"s": {"identityId": identity, "emailId": "#d"}}}, "1"],
                ]),
            )
            .await;
        assert!(r[1][1]["created"]["s"]["id"].is_string(), "{r:?}");
    }
    eventually(
        "every message goes out and the outbox drains",
        WAIT,
        || async {
            let mut conn = a.store.conn().unwrap();
            let empty = herald::store::submission_outbox::depth(&mut conn).unwrap() == 0;
            (empty && sink.received().len() >= 20).then_some(())
        },
    )
    .await;
    let mut subjects: Vec<String> = sink
        .received()
        .iter()
        .filter_map(|m| {
            m.data
                .lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_owned))
        })
        .collect();
    subjects.sort();
    let mut expected: Vec<String> = (0..20).map(|i| format!("n{i}")).collect();
    expected.sort();
    assert_eq!(subjects, expected, "each message once");
}

#[on_both_backends]
async fn outcomes_the_store_cannot_record_are_handed_back_not_dropped() {
    // An account's settling that fails leaves the others' to commit, and returns its own to be
    // settled again (dropped, they would be sent a second time when their claim ran out).
    use herald::store::submission_outbox::{ClaimedRecipient, Outcome, settle};
    let t = setup_with(|_| {}).await;
    let gone = ClaimedRecipient {
        account_id: "no-such-account".into(),
        submission_id: "s1".into(),
        recipient: "far@far.test".into(),
        local_account: None,
        mail_from: "alice@localhost".into(),
        blob_id: "b1".into(),
        queued_at: 0,
        attempts: 1,
    };
    let delivered = Outcome::Delivered("250 2.0.0 ok".into());
    let (committed, bounces, unsettled) = settle(
        &mut t.s.store.conn().unwrap(),
        vec![(gone, delivered.clone())],
    );
    assert!(committed.is_empty() && bounces.is_empty());
    assert_eq!(unsettled.len(), 1);
    assert_eq!(unsettled[0].1, delivered);
    t.s.stop().await;
}
