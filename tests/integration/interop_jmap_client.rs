//! Interoperability: the `jmap-client` crate (Stalwart Labs' Rust client) drives Herald over HTTP,
//! WebSocket (RFC 8887) and EventSource (RFC 8620 §7.3). It lists every capability it knows in
//! `using`, requires every session field and every core limit, and rejects StateChanges naming
//! types it does not know, so it checks the wire format from the outside.

use std::time::Duration;

use crate::harness::webhook_sink::WebhookSink;
use crate::harness::{TestServer, on_both_backends};
use futures_util::StreamExt;
use jmap_client::DataType;
use jmap_client::client::{Client, Credentials};
use jmap_client::client_ws::WebSocketMessage;
use jmap_client::core::session::Capabilities;
use jmap_client::event_source::PushNotification;
use jmap_client::mailbox::Role;

const MAIL: &str = "urn:ietf:params:jmap:mail";
const SUBMISSION: &str = "urn:ietf:params:jmap:submission";
const WAIT: Duration = Duration::from_secs(20);

async fn connect(s: &TestServer, user: &str, password: &str) -> Client {
    Client::new()
        .credentials(Credentials::basic(user, password))
        .follow_redirects(["127.0.0.1"])
        .connect(&s.base)
        .await
        .expect("jmap-client connects to the session")
}

/// MCAP-01 keeps the session-level mail object empty (RFC 8621 §1.3.1); the limits a client needs
/// are per account (a read-only account cannot create top-level mailboxes), and that is where
/// `jmap-client` finds them. Its `Session::mail_capabilities()` reads the session-level object and
/// so answers `None` here, as it would against any server that follows the RFC.
#[on_both_backends]
async fn the_jmap_client_crate_reads_mail_and_submission_limits_from_the_account() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw");
    let client = connect(&s, "alice", "pw").await;
    let session = client.session();
    let account = session
        .account(client.default_account_id())
        .expect("the primary account is in the session");
    let Some(Capabilities::Mail(mail)) = account.capability(MAIL) else {
        panic!(
            "the account's mail capability: {:?}",
            account.capability(MAIL)
        );
    };
    assert_eq!(
        mail.max_mailboxes_per_email(),
        Some(herald::jmap::methods::email::MAX_MAILBOXES_PER_EMAIL)
    );
    assert!(mail.max_mailbox_depth() >= 1);
    assert!(mail.may_create_top_level_mailbox());
    assert!(
        mail.email_query_sort_options()
            .iter()
            .any(|o| o == "receivedAt")
    );
    // jmap-client types submissionExtensions as a list (an early draft); RFC 8621 §1.3.2 makes it
    // an object (MCAP-03), so the crate sees the capability but not as its Submission variant.
    assert!(account.capability(SUBMISSION).is_some());
    assert!(matches!(
        session.capability(MAIL),
        Some(Capabilities::Empty(_))
    ));
}

#[on_both_backends]
async fn the_jmap_client_crate_creates_reads_and_queries_mailboxes_over_http() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw");
    let client = connect(&s, "alice", "pw").await;
    let created = client
        .mailbox_create("From jmap-client", None::<String>, Role::None)
        .await
        .expect("Mailbox/set");
    let id = created.id().expect("an id").to_owned();
    let got = client
        .mailbox_get(&id, None::<Vec<_>>)
        .await
        .expect("Mailbox/get")
        .expect("found");
    assert_eq!(got.name(), Some("From jmap-client"));
    let query = client
        .mailbox_query(None::<jmap_client::core::query::Filter<_>>, None::<Vec<_>>)
        .await
        .expect("Mailbox/query");
    assert_eq!(
        query.ids().len(),
        7,
        "six default mailboxes and the new one"
    );
    client.mailbox_rename(&id, "Renamed").await.expect("rename");
    client
        .mailbox_destroy(&id, false)
        .await
        .expect("Mailbox/set destroy");
}

#[on_both_backends]
async fn the_jmap_client_crate_receives_a_state_change_over_eventsource() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw");
    let client = connect(&s, "alice", "pw").await;
    let mut events = client
        .event_source(Some([DataType::Mailbox]), false, None, None)
        .await
        .expect("EventSource");
    let writer = connect(&s, "alice", "pw").await;
    let created = writer
        .mailbox_create("Pushed", None::<String>, Role::None)
        .await
        .unwrap();
    let account = client.default_account_id().to_owned();
    let expected = writer
        .mailbox_changes("0", 100)
        .await
        .unwrap()
        .new_state()
        .to_owned();
    let change = tokio::time::timeout(WAIT, async {
        loop {
            match events
                .next()
                .await
                .expect("stream open")
                .expect("a parsable event")
            {
                PushNotification::StateChange(changes) if changes.has_type(DataType::Mailbox) => {
                    return changes;
                }
                _ => continue,
            }
        }
    })
    .await
    .expect("a StateChange within the wait");
    let mailbox_state = change
        .changes(&account)
        .expect("our account")
        .find(|(t, _)| **t == DataType::Mailbox)
        .map(|(_, s)| s.clone());
    assert_eq!(
        mailbox_state.as_deref(),
        Some(expected.as_str()),
        "the pushed state is Mailbox/get's state (ST-06)"
    );
    assert!(
        change.id().is_some(),
        "each state event carries an id (ES-08)"
    );
    assert!(created.id().is_some());
}

#[on_both_backends]
async fn the_jmap_client_crate_runs_requests_and_receives_pushes_over_websocket() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw");
    let client = connect(&s, "alice", "pw").await;
    let mut stream = client
        .connect_ws()
        .await
        .expect("WebSocket with subprotocol jmap");
    client
        .enable_push_ws(None::<Vec<_>>, None::<String>)
        .await
        .expect("WebSocketPushEnable");

    let mut request = client.build();
    request.query_mailbox();
    let request_id = client
        .send_ws(request)
        .await
        .expect("a Request over the socket");
    let writer = connect(&s, "alice", "pw").await;
    writer
        .mailbox_create("Over the socket", None::<String>, Role::None)
        .await
        .unwrap();

    let (mut response, mut pushed) = (false, false);
    tokio::time::timeout(WAIT, async {
        while !(response && pushed) {
            match stream
                .next()
                .await
                .expect("socket open")
                .expect("a parsable message")
            {
                WebSocketMessage::Response(r) => {
                    assert_eq!(r.request_id(), Some(request_id.as_str()));
                    response = true;
                }
                WebSocketMessage::PushNotification(jmap_client::PushObject::StateChange {
                    changed,
                }) => {
                    pushed |= changed
                        .values()
                        .any(|types| types.contains_key(&DataType::Mailbox));
                }
                WebSocketMessage::PushNotification(_) => {}
            }
        }
    })
    .await
    .expect("a Response and a StateChange within the wait");
}

#[on_both_backends]
async fn the_jmap_client_crate_subscribes_a_webhook_verifies_it_and_it_receives_a_state_change() {
    let s = TestServer::start_with(|c| c.push.allow_private_targets = true).await;
    s.add_user("alice", "pw");
    let client = connect(&s, "alice", "pw").await;
    let mut sink = WebhookSink::start().await;
    let url = sink.url("/push");
    let subscription = client
        .push_subscription_create("interop-device", url, None)
        .await
        .expect("PushSubscription/set create");
    let id = subscription.id().expect("an id").to_owned();
    let verification = sink.next_json().await;
    assert_eq!(verification["@type"], "PushVerification"); // PSUB-05
    assert_eq!(verification["pushSubscriptionId"], id.as_str());
    let code = verification["verificationCode"]
        .as_str()
        .unwrap()
        .to_owned();
    client
        .push_subscription_verify(&id, code)
        .await
        .expect("PushSubscription/set verificationCode");

    let writer = connect(&s, "alice", "pw").await;
    writer
        .mailbox_create("Webhooked", None::<String>, Role::None)
        .await
        .unwrap();
    let expected = writer
        .mailbox_changes("0", 100)
        .await
        .unwrap()
        .new_state()
        .to_owned();
    let account = client.default_account_id().to_owned();
    loop {
        let v = sink.next_json().await;
        assert_eq!(v["@type"], "StateChange", "{v}");
        if v["changed"][&account]["Mailbox"] == expected.as_str() {
            break;
        }
    }
}
