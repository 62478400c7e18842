//! EmailSubmission over HTTP (RFC 8621 §7), delivered locally (no SMTP relay configured).
//! Checklist ids in comments.

use crate::harness::{Auth, CORE, TestServer, on_both_backends};
use serde_json::{Value, json};

const MAIL: &str = "urn:ietf:params:jmap:mail";
const SUBMISSION: &str = "urn:ietf:params:jmap:submission";

struct Setup {
    s: TestServer,
    alice: Auth,
    bob: Auth,
    account: String,
    bob_account: String,
    drafts: String,
    sent: String,
}

async fn primary(s: &TestServer, auth: &Auth) -> String {
    s.get("/jmap/session", auth).await.body["primaryAccounts"][SUBMISSION]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn setup() -> Setup {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let bob = s.add_user("bob", "pw");
    s.add_user("carol", "pw");
    let account = primary(&s, &alice).await;
    let bob_account = primary(&s, &bob).await;
    let r = s
        .call(
            &alice,
            &[CORE, MAIL],
            json!([["Mailbox/get", {"accountId": account}, "0"]]),
        )
        .await;
    let role = |name: &str| {
        r[0][1]["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["role"] == name)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    Setup {
        drafts: role("drafts"),
        sent: role("sent"),
        s,
        alice,
        bob,
        account,
        bob_account,
    }
}

impl Setup {
    async fn call(&self, auth: &Auth, calls: Value) -> Vec<Value> {
        self.s.call(auth, &[CORE, MAIL, SUBMISSION], calls).await
    }

    fn draft(&self, from: &str, to: Value, bcc: Value) -> Value {
        json!({
            "mailboxIds": {self.drafts.clone(): true},
            "keywords": {"$draft": true},
            "from": [{"name": "Alice", "email": from}],
            "to": to,
            "bcc": bcc,
            "subject": "Lunch?",
            "textBody": [{"partId": "t", "type": "text/plain"}],
            "bodyValues": {"t": {"value": "At noon."}},
        })
    }

    async fn default_identity(&self) -> String {
        let r = self
            .call(
                &self.alice,
                json!([["Identity/get", {"accountId": self.account}, "0"]]),
            )
            .await;
        r[0][1]["list"][0]["id"].as_str().unwrap().to_owned()
    }
}

#[on_both_backends]
async fn a_submission_delivers_to_local_inboxes_without_bcc_and_moves_the_draft_to_sent() {
    let t = setup().await;
    let identity = t.default_identity().await;
    let r = t
        .call(
            &t.alice,
            json!([
                ["Email/set", {"accountId": t.account, "create": {"d": t.draft(
                    "alice@localhost",
                    json!([{"name": "Bob", "email": "bob@localhost"}]),
                    json!([{"name": null, "email": "carol@localhost"}]),
                )}}, "0"],
                ["EmailSubmission/set", {"accountId": t.account,
                    "create": {"s": {"identityId": identity, "emailId": "#d"}},
                    // SUB-10: keyed by the creation id of the submission.
                    "onSuccessUpdateEmail": {"#s": {
                        format!("mailboxIds/{}", t.drafts): null,
                        format!("mailboxIds/{}", t.sent): true,
                        "keywords/$draft": null,
                    }}}, "1"],
                ["Email/get", {"accountId": t.account, "ids": ["#d"], "properties": ["mailboxIds", "keywords"]}, "2"],
            ]),
        )
        .await;
    assert_eq!(r[1][0], "EmailSubmission/set", "{r:?}");
    let created = &r[1][1]["created"]["s"];
    assert!(created["id"].is_string(), "{r:?}");
    assert_eq!(created["undoStatus"], "final"); // SUB-05
    // SUB-03: envelope built from the Email: To + Bcc recipients.
    assert_eq!(
        created["envelope"],
        json!({"mailFrom": {"email": "alice@localhost", "parameters": null},
               "rcptTo": [{"email": "bob@localhost", "parameters": null},
                          {"email": "carol@localhost", "parameters": null}]})
    );
    assert_eq!(
        created["deliveryStatus"]["bob@localhost"]["delivered"],
        "yes"
    ); // SUB-06
    // SUB-10: the implicit Email/set follows under the same call id.
    assert_eq!(r[2][0], "Email/set", "{r:?}");
    assert_eq!(r[2][2], "1");
    assert!(r[2][1]["updated"].as_object().unwrap().len() == 1, "{r:?}");
    assert_eq!(
        r[3][1]["list"][0]["mailboxIds"],
        json!({t.sent.clone(): true})
    );
    assert_eq!(r[3][1]["list"][0]["keywords"], json!({}));

    // Bob got it in his inbox, without the Bcc header (SUB-07).
    let r =
        t.s.call(
            &t.bob,
            &[CORE, MAIL],
            json!([
                ["Core/echo", {}, "0"],
                ["Email/get", {"accountId": t.bob_account, "ids": null,
                    "properties": ["subject", "from", "bcc", "header:Bcc", "mailboxIds"]}, "1"],
            ]),
        )
        .await;
    let list = r[1][1]["list"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{r:?}");
    assert_eq!(list[0]["subject"], "Lunch?");
    assert_eq!(list[0]["from"][0]["email"], "alice@localhost");
    assert_eq!(list[0]["bcc"], Value::Null);
    assert_eq!(list[0]["header:Bcc"], Value::Null);
    assert_eq!(list[0]["mailboxIds"].as_object().unwrap().len(), 1); // his inbox
    t.s.stop().await;
}

#[on_both_backends]
async fn submissions_are_refused_with_the_set_error_of_each_problem() {
    let t = setup().await;
    let identity = t.default_identity().await;
    let bob = json!([{"email": "bob@localhost"}]);
    let r = t
        .call(
            &t.alice,
            json!([
                ["Email/set", {"accountId": t.account, "create": {
                    "ok": t.draft("alice@localhost", bob.clone(), Value::Null),
                    "spoof": t.draft("bob@localhost", bob.clone(), Value::Null),
                    "far": t.draft("alice@localhost", json!([{"email": "x@elsewhere.test"}]), Value::Null),
                    "none": t.draft("alice@localhost", Value::Null, Value::Null),
                }}, "0"],
                ["EmailSubmission/set", {"accountId": t.account, "create": {
                    "noIdentity": {"identityId": "nope", "emailId": "#ok"},
                    "noEmail": {"identityId": identity, "emailId": "nope"},
                    "spoof": {"identityId": identity, "emailId": "#spoof"},
                    "far": {"identityId": identity, "emailId": "#far"},
                    "none": {"identityId": identity, "emailId": "#none"},
                    "mailFrom": {"identityId": identity, "emailId": "#ok", "envelope": {
                        "mailFrom": {"email": "mallory@localhost"}, "rcptTo": [{"email": "bob@localhost"}]}},
                    "pending": {"identityId": identity, "emailId": "#ok", "undoStatus": "pending"},
                }}, "1"],
                ["EmailSubmission/set", {"accountId": t.account, "ifInState": "nope",
                    "create": {"x": {"identityId": identity, "emailId": "#ok"}}}, "2"],
            ]),
        )
        .await;
    let not_created = &r[1][1]["notCreated"];
    // SUB-08
    assert_eq!(
        not_created["noIdentity"]["type"], "invalidProperties",
        "{r:?}"
    );
    assert_eq!(
        not_created["noIdentity"]["properties"],
        json!(["identityId"])
    );
    assert_eq!(not_created["noEmail"]["properties"], json!(["emailId"]));
    // SUB-07, SUB-09
    assert_eq!(not_created["spoof"]["type"], "forbiddenFrom");
    assert_eq!(not_created["far"]["type"], "invalidRecipients");
    assert_eq!(
        not_created["far"]["invalidRecipients"],
        json!(["x@elsewhere.test"])
    );
    assert_eq!(not_created["none"]["type"], "noRecipients");
    assert_eq!(not_created["mailFrom"]["type"], "forbiddenMailFrom");
    assert_eq!(not_created["pending"]["properties"], json!(["undoStatus"]));
    assert_eq!(r[1][1]["created"], Value::Null);
    assert_eq!(r[2][1]["type"], "stateMismatch");
    // Nothing reached bob.
    let r =
        t.s.call(
            &t.bob,
            &[CORE, MAIL],
            json!([["Email/get", {"accountId": t.bob_account, "ids": null}, "0"]]),
        )
        .await;
    assert_eq!(r[0][1]["list"], json!([]));
    t.s.stop().await;
}

#[on_both_backends]
async fn submissions_are_listed_queried_tracked_and_destroyed_without_unsending() {
    let t = setup().await;
    let identity = t.default_identity().await;
    let r = t
        .call(
            &t.alice,
            json!([
                ["EmailSubmission/query", {"accountId": t.account}, "q"],
                ["Email/set", {"accountId": t.account, "create": {
                    "d": t.draft("alice@localhost", json!([{"email": "bob@localhost"}]), Value::Null)}}, "0"],
                ["EmailSubmission/set", {"accountId": t.account,
                    "create": {"s": {"identityId": identity, "emailId": "#d",
                        "envelope": {"mailFrom": {"email": "alice@localhost"}, "rcptTo": [{"email": "bob@localhost"}]}}}}, "1"],
            ]),
        )
        .await;
    let old_query_state = r[0][1]["queryState"].clone();
    let sid = r[2][1]["created"]["s"]["id"].as_str().unwrap().to_owned();
    let email_id = r[1][1]["created"]["d"]["id"].as_str().unwrap().to_owned();
    let r = t
        .call(
            &t.alice,
            json!([
                ["EmailSubmission/get", {"accountId": t.account, "ids": null}, "0"],
                ["EmailSubmission/query", {"accountId": t.account,
                    "filter": {"emailIds": [email_id.clone()], "undoStatus": "final", "after": "2000-01-01T00:00:00Z"},
                    "sort": [{"property": "sentAt", "isAscending": false}]}, "1"],
                ["EmailSubmission/query", {"accountId": t.account, "filter": {"identityIds": ["other"]}}, "2"],
                ["EmailSubmission/queryChanges", {"accountId": t.account, "sinceQueryState": old_query_state}, "3"],
                ["EmailSubmission/changes", {"accountId": t.account, "sinceState": old_query_state}, "4"],
                ["EmailSubmission/query", {"accountId": t.account, "filter": {"colour": "red"}}, "5"],
                // SUB-05: the message went out; it cannot be unsent.
                ["EmailSubmission/set", {"accountId": t.account, "update": {sid.clone(): {"undoStatus": "canceled"}, "nope": {}}}, "6"],
            ]),
        )
        .await;
    let got = &r[0][1]["list"][0];
    assert_eq!(got["id"], json!(sid));
    assert_eq!(got["emailId"], json!(email_id));
    assert_eq!(got["identityId"], json!(identity));
    assert!(got["threadId"].is_string());
    assert!(got["sendAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(got["dsnBlobIds"], json!([]));
    assert_eq!(r[1][1]["ids"], json!([sid.clone()])); // SUB-12
    assert_eq!(r[2][1]["ids"], json!([]));
    assert_eq!(r[3][1]["added"], json!([{"id": sid.clone(), "index": 0}]));
    assert_eq!(r[4][1]["created"], json!([sid.clone()]));
    assert_eq!(r[5][1]["type"], "unsupportedFilter");
    assert_eq!(r[6][1]["notUpdated"][&sid]["type"], "cannotUnsend");
    assert_eq!(r[6][1]["notUpdated"]["nope"]["type"], "notFound");

    // SUB-11: destroying the record is allowed; onSuccessDestroyEmail removes the email too.
    let r = t
        .call(
            &t.alice,
            json!([
                ["EmailSubmission/set", {"accountId": t.account, "destroy": [sid.clone()],
                    "onSuccessDestroyEmail": [sid.clone()]}, "0"],
                ["EmailSubmission/get", {"accountId": t.account, "ids": [sid.clone()]}, "1"],
            ]),
        )
        .await;
    assert_eq!(r[0][1]["destroyed"], json!([sid.clone()]), "{r:?}");
    assert_eq!(r[1][0], "Email/set");
    assert_eq!(r[1][1]["destroyed"], json!([email_id]));
    assert_eq!(r[2][1]["notFound"], json!([sid]));
    // Bob still has his copy.
    let r =
        t.s.call(
            &t.bob,
            &[CORE, MAIL],
            json!([["Email/get", {"accountId": t.bob_account, "ids": null}, "0"]]),
        )
        .await;
    assert_eq!(r[0][1]["list"].as_array().unwrap().len(), 1);
    t.s.stop().await;
}

/// A one-connection SMTP relay on a real socket that answers RCPT with `rcpt_reply` and records
/// the session: the commands it received and the message data.
fn relay(rcpt_reply: &'static str) -> (String, std::thread::JoinHandle<(Vec<String>, String)>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("smtp://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        let mut out = stream.try_clone().unwrap();
        let mut lines = BufReader::new(stream);
        let mut commands = Vec::new();
        let mut data = String::new();
        out.write_all(b"220 relay.test ESMTP\r\n").unwrap();
        let mut line = String::new();
        while lines.read_line(&mut line).unwrap_or(0) > 0 {
            let cmd = line.trim_end().to_owned();
            line.clear();
            commands.push(cmd.clone());
            let upper = cmd.to_ascii_uppercase();
            let reply: &[u8] = if upper.starts_with("EHLO") {
                b"250 relay.test\r\n"
            } else if upper.starts_with("RCPT") {
                rcpt_reply.as_bytes()
            } else if upper.starts_with("DATA") {
                out.write_all(b"354 go ahead\r\n").unwrap();
                loop {
                    lines.read_line(&mut line).unwrap();
                    if line == ".\r\n" {
                        line.clear();
                        break;
                    }
                    data.push_str(&line);
                    line.clear();
                }
                b"250 2.0.0 Ok: queued as 42\r\n"
            } else if upper.starts_with("QUIT") {
                out.write_all(b"221 bye\r\n").unwrap();
                break;
            } else {
                b"250 2.0.0 Ok\r\n"
            };
            if out.write_all(reply).is_err() {
                break;
            }
        }
        (commands, data)
    });
    (url, handle)
}

async fn setup_with_relay(url: &str) -> Setup {
    let url = url.to_owned();
    let s = TestServer::start_with(move |c| c.submission.relay = url).await;
    let alice = s.add_user("alice", "pw");
    let bob = s.add_user("bob", "pw");
    let account = primary(&s, &alice).await;
    let bob_account = primary(&s, &bob).await;
    let r = s
        .call(
            &alice,
            &[CORE, MAIL],
            json!([["Mailbox/get", {"accountId": account}, "0"]]),
        )
        .await;
    let role = |name: &str| {
        r[0][1]["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["role"] == name)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    Setup {
        drafts: role("drafts"),
        sent: role("sent"),
        s,
        alice,
        bob,
        account,
        bob_account,
    }
}

#[on_both_backends]
async fn non_local_recipients_go_to_the_configured_smtp_relay_without_bcc() {
    let (url, relay) = relay("250 2.1.5 Ok\r\n");
    let t = setup_with_relay(&url).await;
    let identity = t.default_identity().await;
    let r = t
        .call(
            &t.alice,
            json!([
                ["Email/set", {"accountId": t.account, "create": {"d": t.draft(
                    "alice@localhost",
                    json!([{"email": "bob@localhost"}, {"email": "dave@far.test"}]),
                    json!([{"email": "eve@far.test"}]),
                )}}, "0"],
                ["EmailSubmission/set", {"accountId": t.account,
                    "create": {"s": {"identityId": identity, "emailId": "#d"}}}, "1"],
            ]),
        )
        .await;
    let created = &r[1][1]["created"]["s"];
    assert!(created["id"].is_string(), "{r:?}");
    // SUB-06: the relay's reply, on one line; bob was delivered locally.
    let dave = &created["deliveryStatus"]["dave@far.test"];
    assert_eq!(dave["delivered"], "queued");
    assert!(
        dave["smtpReply"].as_str().unwrap().starts_with("250"),
        "{dave}"
    );
    assert_eq!(
        created["deliveryStatus"]["bob@localhost"]["delivered"],
        "yes"
    );
    let (commands, data) = relay.join().unwrap();
    assert!(
        commands.contains(&"MAIL FROM:<alice@localhost>".to_owned()),
        "{commands:?}"
    );
    let rcpts: Vec<&String> = commands.iter().filter(|c| c.starts_with("RCPT")).collect();
    assert_eq!(
        rcpts,
        vec!["RCPT TO:<dave@far.test>", "RCPT TO:<eve@far.test>"]
    );
    // SUB-07: no Bcc header in what was sent.
    assert!(data.contains("Subject: Lunch?"), "{data}");
    assert!(!data.to_ascii_lowercase().contains("bcc:"), "{data}");
    let r =
        t.s.call(
            &t.bob,
            &[CORE, MAIL],
            json!([["Email/get", {"accountId": t.bob_account, "ids": null}, "0"]]),
        )
        .await;
    assert_eq!(r[0][1]["list"].as_array().unwrap().len(), 1);
    t.s.stop().await;
}

#[on_both_backends]
async fn a_relay_refusal_fails_the_submission_and_nobody_receives_it() {
    let (url, relay) = relay("550 5.1.1 No such user\r\n");
    let t = setup_with_relay(&url).await;
    let identity = t.default_identity().await;
    let r = t
        .call(
            &t.alice,
            json!([
                ["Email/set", {"accountId": t.account, "create": {"d": t.draft(
                    "alice@localhost",
                    json!([{"email": "bob@localhost"}, {"email": "nobody@far.test"}]),
                    Value::Null,
                )}}, "0"],
                ["EmailSubmission/set", {"accountId": t.account,
                    "create": {"s": {"identityId": identity, "emailId": "#d"}}}, "1"],
                ["EmailSubmission/get", {"accountId": t.account}, "2"],
            ]),
        )
        .await;
    let failed = &r[1][1]["notCreated"]["s"];
    assert_eq!(failed["type"], "forbiddenToSend", "{r:?}");
    assert!(
        failed["description"].as_str().unwrap().contains("550"),
        "{failed}"
    );
    assert_eq!(r[2][1]["list"], json!([]));
    let _ = relay.join();
    let r =
        t.s.call(
            &t.bob,
            &[CORE, MAIL],
            json!([["Email/get", {"accountId": t.bob_account, "ids": null}, "0"]]),
        )
        .await;
    assert_eq!(r[0][1]["list"], json!([]));
    t.s.stop().await;
}
