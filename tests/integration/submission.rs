//! EmailSubmission over HTTP (RFC 8621 §7), delivered locally (no SMTP relay configured); the
//! outbox, the relay and delayed send are in submission_outbox.rs. Checklist ids in comments.

use crate::harness::push::account_id;
use crate::harness::{Auth, CORE, TestServer, eventually, on_both_backends};
use herald::config::Config;
use serde_json::{Value, json};

pub const MAIL: &str = "urn:ietf:params:jmap:mail";
pub const SUBMISSION: &str = "urn:ietf:params:jmap:submission";

/// A server with users alice, bob and carol, and alice's Drafts and Sent.
pub struct Setup {
    pub s: TestServer,
    pub alice: Auth,
    pub bob: Auth,
    pub account: String,
    pub bob_account: String,
    pub drafts: String,
    pub sent: String,
}

async fn setup() -> Setup {
    setup_with(|_| {}).await
}

pub async fn setup_with(adjust: impl FnOnce(&mut Config)) -> Setup {
    let s = TestServer::start_with(adjust).await;
    let alice = s.add_user("alice", "pw");
    let bob = s.add_user("bob", "pw");
    s.add_user("carol", "pw");
    let account = account_id(&s, &alice).await;
    let bob_account = account_id(&s, &bob).await;
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
    pub async fn call(&self, auth: &Auth, calls: Value) -> Vec<Value> {
        self.s.call(auth, &[CORE, MAIL, SUBMISSION], calls).await
    }

    /// Creates a draft from alice to `to` and submits it with her default identity (and
    /// `envelope` when given); returns the created submission.
    pub async fn submit(&self, to: &[&str], envelope: Option<Value>) -> Value {
        let identity = self.default_identity().await;
        let to: Vec<Value> = to.iter().map(|a| json!({"email": a})).collect();
        let mut create = json!({"identityId": identity, "emailId": "#d"});
        if let Some(e) = envelope {
            create["envelope"] = e;
        }
        let r = self
            .call(
                &self.alice,
                json!([
                    ["Email/set", {"accountId": self.account, "create": {"d": self.draft(
                        "alice@localhost", Value::Array(to), Value::Null)}}, "0"],
                    ["EmailSubmission/set", {"accountId": self.account,
                        "create": {"s": create}}, "1"],
                ]),
            )
            .await;
        let created = r[1][1]["created"]["s"].clone();
        assert!(created["id"].is_string(), "{r:?}");
        created
    }

    pub fn draft(&self, from: &str, to: Value, bcc: Value) -> Value {
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

    pub async fn default_identity(&self) -> String {
        let r = self
            .call(
                &self.alice,
                json!([["Identity/get", {"accountId": self.account}, "0"]]),
            )
            .await;
        r[0][1]["list"][0]["id"].as_str().unwrap().to_owned()
    }

    /// Alice's EmailSubmission `id` as EmailSubmission/get returns it.
    pub async fn submission(&self, id: &str) -> Value {
        let r = self
            .call(
                &self.alice,
                json!([["EmailSubmission/get", {"accountId": self.account, "ids": [id]}, "0"]]),
            )
            .await;
        r[0][1]["list"][0].clone()
    }

    /// Waits until alice's submission `id` satisfies `done`; returns it.
    pub async fn submission_until(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        eventually(
            "the submission reaches the expected status",
            crate::harness::push::WAIT,
            || async {
                let s = self.submission(id).await;
                done(&s).then_some(s)
            },
        )
        .await
    }

    /// The emails in `auth`'s `account` (subject and mailboxes), once there are `n` of them.
    pub async fn emails_once(&self, auth: &Auth, account: &str, n: usize) -> Vec<Value> {
        eventually("the mail arrives", crate::harness::push::WAIT, || async {
            let r = self
                .s
                .call(
                    auth,
                    &[CORE, MAIL],
                    json!([["Email/get", {"accountId": account, "ids": null,
                        "properties": ["subject", "from", "bcc", "header:Bcc", "mailboxIds", "keywords"]}, "0"]]),
                )
                .await;
            let list = r[0][1]["list"].as_array().cloned().unwrap_or_default();
            (list.len() >= n).then_some(list)
        })
        .await
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
    // SUB-05: queued, so it may still be canceled until the outbox starts sending it.
    assert_eq!(created["undoStatus"], "pending");
    // SUB-03: envelope built from the Email: To + Bcc recipients.
    assert_eq!(
        created["envelope"],
        json!({"mailFrom": {"email": "alice@localhost", "parameters": null},
               "rcptTo": [{"email": "bob@localhost", "parameters": null},
                          {"email": "carol@localhost", "parameters": null}]})
    );
    assert_eq!(
        created["deliveryStatus"]["bob@localhost"]["delivered"],
        "queued"
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

    // Bob gets it in his inbox, without the Bcc header (SUB-07).
    let list = t.emails_once(&t.bob, &t.bob_account, 1).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["subject"], "Lunch?");
    assert_eq!(list[0]["from"][0]["email"], "alice@localhost");
    assert_eq!(list[0]["bcc"], Value::Null);
    assert_eq!(list[0]["header:Bcc"], Value::Null);
    assert_eq!(list[0]["mailboxIds"].as_object().unwrap().len(), 1); // his inbox
    // SUB-06: every recipient's outcome lands in the submission.
    let sid = created["id"].as_str().unwrap();
    let done = t
        .submission_until(sid, |s| {
            s["deliveryStatus"]["bob@localhost"]["delivered"] == "yes"
                && s["deliveryStatus"]["carol@localhost"]["delivered"] == "yes"
        })
        .await;
    assert_eq!(done["undoStatus"], "final");
    assert_eq!(
        done["deliveryStatus"]["bob@localhost"]["smtpReply"],
        "250 2.0.0 delivered locally"
    );
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
                    "final": {"identityId": identity, "emailId": "#ok", "undoStatus": "final"},
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
    assert_eq!(not_created["final"]["properties"], json!(["undoStatus"]));
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
    t.submission_until(&sid, |s| {
        s["deliveryStatus"]["bob@localhost"]["delivered"] == "yes"
    })
    .await;
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

#[on_both_backends]
async fn every_to_cc_and_bcc_field_is_a_recipient_and_two_from_fields_are_refused() {
    // SUB-03 with RFC 5322 §4.5.3 (repeated destination fields); SUB-07 with §3.6 (one From).
    let t = setup().await;
    let identity = t.default_identity().await;
    let mut blobs = Vec::new();
    for raw in [
        "From: alice@localhost\r\nTo: bob@localhost\r\nTo: carol@localhost\r\n\
         Cc: alice@localhost\r\nBcc: bob@localhost\r\nBcc : carol@localhost\r\n\
         Subject: many fields\r\n\r\nHi\r\n",
        "From: bob@localhost\r\nFrom: alice@localhost\r\nTo: bob@localhost\r\n\
         Subject: two senders\r\n\r\nHi\r\n",
    ] {
        let a =
            t.s.post_raw(
                &format!("/jmap/upload/{}/", t.account),
                &t.alice,
                "message/rfc822",
                raw.as_bytes().to_vec(),
            )
            .await;
        blobs.push(a.body["blobId"].as_str().unwrap().to_owned());
    }
    let r = t
        .call(
            &t.alice,
            json!([
                ["Email/import", {"accountId": t.account, "emails": {
                    "many": {"blobId": blobs[0], "mailboxIds": {t.drafts.clone(): true}},
                    "two": {"blobId": blobs[1], "mailboxIds": {t.drafts.clone(): true}}}}, "0"],
                ["EmailSubmission/set", {"accountId": t.account, "create": {
                    "many": {"identityId": identity, "emailId": "#many"},
                    "two": {"identityId": identity, "emailId": "#two"}}}, "1"],
                ["EmailSubmission/get", {"accountId": t.account, "ids": ["#many"],
                    "properties": ["envelope"]}, "2"]
            ]),
        )
        .await;
    assert_eq!(
        r[1][1]["notCreated"]["two"]["type"], "invalidEmail",
        "{r:?}"
    );
    let rcpt: Vec<&str> = r[2][1]["list"][0]["envelope"]["rcptTo"]
        .as_array()
        .unwrap_or_else(|| panic!("{r:?}"))
        .iter()
        .map(|a| a["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        rcpt,
        ["bob@localhost", "carol@localhost", "alice@localhost"]
    );
    t.s.stop().await;
}

#[on_both_backends]
async fn an_alias_or_a_subaddress_of_a_local_user_is_delivered_locally() {
    // Who an address reaches is one rule for LMTP and for submissions (`store::addresses`).
    let t = setup().await;
    let (ok, out) =
        t.s.cli(&["alias", "add", "robert@localhost", "--to", "bob"]);
    assert!(ok, "{out}");
    // No relay is configured: only local recipients can be queued.
    t.submit(&["robert@localhost", "bob+news@localhost"], None)
        .await;
    let got = t.emails_once(&t.bob, &t.bob_account, 2).await;
    assert_eq!(got.len(), 2, "one copy per address: {got:?}");
    t.s.stop().await;
}
