//! Email and Thread over HTTP (RFC 8621 §3, §4). Checklist ids in comments.

use crate::harness::push::account_id;
use std::collections::HashMap;

use crate::harness;
use crate::harness::{Auth, CORE, TestServer, on_both_backends};
use herald::store::{blobs, users};
use serde_json::{Value, json};

const MAIL: &str = "urn:ietf:params:jmap:mail";

struct Setup {
    s: TestServer,
    alice: Auth,
    account: String,
    user_id: String,
    /// role → mailbox id
    mailboxes: HashMap<String, String>,
}

async fn setup() -> Setup {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let account = account_id(&s, &alice).await;
    let user_id = {
        let mut conn = s.store.conn().unwrap();
        users::find_by_name(&mut conn, "alice").unwrap().unwrap().id
    };
    let r = s
        .call(
            &alice,
            &[CORE, MAIL],
            json!([["Mailbox/get", {"accountId": account, "ids": null}, "0"]]),
        )
        .await;
    let mailboxes = r[0][1]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    Setup {
        s,
        alice,
        account,
        user_id,
        mailboxes,
    }
}

impl Setup {
    async fn call(&self, calls: Value) -> Vec<Value> {
        self.s.call(&self.alice, &[CORE, MAIL], calls).await
    }

    fn mailbox(&self, role: &str) -> String {
        self.mailboxes[role].clone()
    }

    /// Uploads `message` as alice to her account (through the blob store) and returns its id.
    fn upload(&self, message: &[u8]) -> String {
        let mut conn = self.s.store.conn().unwrap();
        blobs::upload(&mut conn, &self.account, &self.user_id, message).unwrap()
    }

    /// Imports `message` into `role`'s mailbox and returns the created entry.
    async fn import(&self, message: &[u8], role: &str, keywords: Value) -> Value {
        self.import_at(message, role, keywords, Value::Null).await
    }

    /// [`Setup::import`] with a `receivedAt`.
    async fn import_at(
        &self,
        message: &[u8],
        role: &str,
        keywords: Value,
        received_at: Value,
    ) -> Value {
        let blob = self.upload(message);
        let r = self
            .call(json!([["Email/import", {"accountId": self.account, "emails": {
                "k": {"blobId": blob, "mailboxIds": {self.mailbox(role): true}, "keywords": keywords,
                    "receivedAt": received_at}
            }}, "0"]]))
            .await;
        assert_eq!(r[0][0], "Email/import", "{r:?}");
        r[0][1]["created"]["k"].clone()
    }

    /// `(totalEmails, unreadEmails, totalThreads, unreadThreads)` of a mailbox.
    async fn counts(&self, role: &str) -> (u64, u64, u64, u64) {
        let r = self
            .call(json!([["Mailbox/get", {"accountId": self.account, "ids": [self.mailbox(role)]}, "0"]]))
            .await;
        let m = &r[0][1]["list"][0];
        let n = |k: &str| m[k].as_u64().unwrap();
        (
            n("totalEmails"),
            n("unreadEmails"),
            n("totalThreads"),
            n("unreadThreads"),
        )
    }

    async fn state(&self, method: &str) -> String {
        let r = self
            .call(json!([[method, {"accountId": self.account, "ids": []}, "0"]]))
            .await;
        r[0][1]["state"].as_str().unwrap().to_owned()
    }
}

fn message(subject: &str, message_id: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Bob Example <bob@example.com>\r\nTo: alice@example.com\r\nSubject: {subject}\r\n\
         Message-ID: <{message_id}>\r\nDate: Tue, 10 Nov 2026 10:00:00 +0000\r\n{extra_headers}\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

#[on_both_backends]
async fn an_imported_blob_comes_back_from_email_get_with_body_values_and_metadata() {
    let t = setup().await;
    let raw = message(
        "Lunch?",
        "lunch@example.com",
        "",
        "Shall we have lunch at noon?",
    );
    let blob = t.upload(&raw);
    let inbox = t.mailbox("inbox");
    // EIMP-01: receivedAt given; EML-03: keywords come back lowercase; EIMP-04, CID-01.
    let r = t
        .call(json!([
            ["Email/import", {"accountId": t.account, "emails": {"m1": {
                "blobId": blob, "mailboxIds": {inbox.clone(): true},
                "keywords": {"$Flagged": true}, "receivedAt": "2026-11-10T10:05:00Z"}}}, "0"],
            ["Email/get", {"accountId": t.account, "ids": ["#m1"], "fetchTextBodyValues": true,
                "properties": ["id", "blobId", "threadId", "mailboxIds", "keywords", "size",
                    "receivedAt", "subject", "from", "sentAt", "messageId", "preview",
                    "textBody", "bodyValues", "hasAttachment", "header:Subject:asText"]}, "1"]
        ]))
        .await;
    let created = &r[0][1]["created"]["m1"];
    assert_eq!(created["blobId"], json!(blob)); // EIMP-04
    assert_eq!(created["size"], json!(raw.len()));
    assert!(created["threadId"].is_string());
    assert!(r[0][1]["oldState"].is_string() && r[0][1]["newState"].is_string());
    assert_ne!(r[0][1]["oldState"], r[0][1]["newState"]);
    let email = &r[1][1]["list"][0];
    assert_eq!(email["id"], created["id"]);
    assert_eq!(email["threadId"], created["threadId"]);
    assert_eq!(email["mailboxIds"], json!({inbox: true})); // EML-02
    assert_eq!(email["keywords"], json!({"$flagged": true})); // EML-03
    assert_eq!(email["receivedAt"], "2026-11-10T10:05:00Z");
    assert_eq!(email["subject"], "Lunch?");
    assert_eq!(email["header:Subject:asText"], "Lunch?"); // EML-06
    assert_eq!(
        email["from"],
        json!([{"name": "Bob Example", "email": "bob@example.com"}])
    );
    assert_eq!(email["sentAt"], "2026-11-10T10:00:00Z");
    assert_eq!(email["messageId"], json!(["lunch@example.com"]));
    assert_eq!(email["hasAttachment"], false);
    assert_eq!(email["preview"], "Shall we have lunch at noon?");
    let part_id = email["textBody"][0]["partId"].as_str().unwrap();
    // EML-13: fetchTextBodyValues
    assert_eq!(
        email["bodyValues"][part_id]["value"],
        "Shall we have lunch at noon?\n"
    );
    assert_eq!(email["bodyValues"][part_id]["isTruncated"], false);
    assert_eq!(r[1][1]["notFound"], json!([]));

    // EML-12: the default properties; EML-13: maxBodyValueBytes truncates.
    let r = t
        .call(
            json!([["Email/get", {"accountId": t.account, "ids": [created["id"]],
            "fetchAllBodyValues": true, "maxBodyValueBytes": 5}, "0"]]),
        )
        .await;
    let email = &r[0][1]["list"][0];
    for p in [
        "id",
        "blobId",
        "threadId",
        "mailboxIds",
        "keywords",
        "size",
        "receivedAt",
        "messageId",
        "inReplyTo",
        "references",
        "sender",
        "from",
        "to",
        "cc",
        "bcc",
        "replyTo",
        "subject",
        "sentAt",
        "hasAttachment",
        "preview",
        "bodyValues",
        "textBody",
        "htmlBody",
        "attachments",
    ] {
        assert!(email.get(p).is_some(), "default property {p} missing");
    }
    assert!(email.get("headers").is_none() && email.get("bodyStructure").is_none());
    let value = email["bodyValues"][part_id].clone();
    assert_eq!(value["value"], "Shall");
    assert_eq!(value["isTruncated"], true);
    // The message blob is readable by the account through its reference.
    let mut conn = t.s.store.conn().unwrap();
    assert!(blobs::visible(&mut conn, &t.account, &t.user_id, &blob).unwrap());
}

#[on_both_backends]
async fn a_header_form_not_allowed_on_its_header_is_invalid_arguments() {
    let t = setup().await;
    let created = t
        .import(&message("x", "x@example.com", "", "x"), "inbox", json!({}))
        .await;
    let r = t
        .call(json!([
            ["Email/get", {"accountId": t.account, "ids": [created["id"]],
                "properties": ["header:From:asDate"]}, "0"],
            ["Email/get", {"accountId": t.account, "ids": [created["id"]],
                "properties": ["colour"]}, "1"]
        ]))
        .await;
    // EML-07
    assert_eq!(r[0][0], "error");
    assert_eq!(r[0][1]["type"], "invalidArguments");
    assert_eq!(r[1][1]["type"], "invalidArguments");
}

#[on_both_backends]
async fn mailbox_counts_follow_imports_moves_seen_flips_and_destroys() {
    let t = setup().await;
    assert_eq!(t.counts("inbox").await, (0, 0, 0, 0));
    let a = t
        .import(
            &message("One", "one@example.com", "", "1"),
            "inbox",
            json!({}),
        )
        .await;
    let b = t
        .import(
            &message("Two", "two@example.com", "", "2"),
            "inbox",
            json!({"$seen": true}),
        )
        .await;
    // MBX-06: unread = not $seen (and not $draft).
    assert_eq!(t.counts("inbox").await, (2, 1, 2, 1));

    // A keyword flip by patch path (ESET-01).
    let r = t
        .call(json!([["Email/set", {"accountId": t.account, "update": {
            a["id"].as_str().unwrap(): {"keywords/$seen": true}}}, "0"]]))
        .await;
    assert_eq!(r[0][1]["updated"], json!({a["id"].as_str().unwrap(): null}));
    assert_eq!(t.counts("inbox").await, (2, 0, 2, 0));

    // A move: out of the inbox, into the archive.
    let archive = t.mailbox("archive");
    let inbox = t.mailbox("inbox");
    let r = t
        .call(json!([["Email/set", {"accountId": t.account, "update": {
            b["id"].as_str().unwrap(): {
                format!("mailboxIds/{archive}"): true, format!("mailboxIds/{inbox}"): null}}}, "0"]]))
        .await;
    assert!(r[0][1]["updated"].is_object(), "{r:?}");
    assert_eq!(t.counts("inbox").await, (1, 0, 1, 0));
    assert_eq!(t.counts("archive").await, (1, 0, 1, 0));

    // Unseen again, by replacing keywords whole.
    let r = t
        .call(json!([["Email/set", {"accountId": t.account, "update": {
            b["id"].as_str().unwrap(): {"keywords": {}}}}, "0"]]))
        .await;
    assert!(r[0][1]["updated"].is_object());
    assert_eq!(t.counts("archive").await, (1, 1, 1, 1));

    // ESET-06: destroy removes it from every mailbox.
    let r = t
        .call(
            json!([["Email/set", {"accountId": t.account, "destroy": [b["id"]]}, "0"],
            ["Email/get", {"accountId": t.account, "ids": [b["id"]]}, "1"]]),
        )
        .await;
    assert_eq!(r[0][1]["destroyed"], json!([b["id"]]));
    assert_eq!(r[1][1]["notFound"], json!([b["id"]]));
    assert_eq!(t.counts("archive").await, (0, 0, 0, 0));
    assert_eq!(t.counts("inbox").await, (1, 0, 1, 0));
}

#[on_both_backends]
async fn mailbox_changes_report_only_counts_after_email_changes() {
    let t = setup().await;
    let since = t.state("Mailbox/get").await;
    t.import(
        &message("One", "one@example.com", "", "1"),
        "inbox",
        json!({}),
    )
    .await;
    let r = t
        .call(json!([["Mailbox/changes", {"accountId": t.account, "sinceState": since}, "0"]]))
        .await;
    // MBX-12: counts-only changes carry updatedProperties.
    assert_eq!(r[0][1]["updated"], json!([t.mailbox("inbox")]));
    assert!(r[0][1]["updatedProperties"].is_array(), "{r:?}");
}

#[on_both_backends]
async fn email_and_thread_changes_report_creates_updates_and_destroys() {
    let t = setup().await;
    let email_since = t.state("Email/get").await;
    let thread_since = t.state("Thread/get").await;
    let a = t
        .import(
            &message("One", "one@example.com", "", "1"),
            "inbox",
            json!({}),
        )
        .await;
    let r = t
        .call(json!([
            ["Email/changes", {"accountId": t.account, "sinceState": email_since}, "0"],
            ["Thread/changes", {"accountId": t.account, "sinceState": thread_since}, "1"]
        ]))
        .await;
    assert_eq!(r[0][1]["created"], json!([a["id"]]));
    assert_eq!(r[1][1]["created"], json!([a["threadId"]]));
    let email_mid = r[0][1]["newState"].clone();
    let thread_mid = r[1][1]["newState"].clone();

    t.call(json!([["Email/set", {"accountId": t.account, "update": {
        a["id"].as_str().unwrap(): {"keywords/$flagged": true}}}, "0"]]))
        .await;
    let r = t
        .call(json!([["Email/changes", {"accountId": t.account, "sinceState": email_mid}, "0"]]))
        .await;
    assert_eq!(r[0][1]["updated"], json!([a["id"]]));
    assert_eq!(r[0][1]["created"], json!([]));

    t.call(json!([["Email/set", {"accountId": t.account, "destroy": [a["id"]]}, "0"]]))
        .await;
    let r = t
        .call(json!([
            ["Email/changes", {"accountId": t.account, "sinceState": email_mid}, "0"],
            ["Thread/changes", {"accountId": t.account, "sinceState": thread_mid}, "1"],
            ["Email/changes", {"accountId": t.account, "sinceState": email_since}, "2"]
        ]))
        .await;
    assert_eq!(r[0][1]["destroyed"], json!([a["id"]]));
    assert_eq!(r[1][1]["destroyed"], json!([a["threadId"]]));
    // The keyword update did not touch the thread.
    assert_eq!(r[1][1]["updated"], json!([]));
    // Created and destroyed since the first state: the client never saw it, so it is not reported
    // as created (RFC 8620 §5.2 lets the server omit it).
    assert_eq!(r[2][1]["created"], json!([]));
}

#[on_both_backends]
async fn a_reply_joins_the_thread_of_its_parent_and_a_stranger_does_not() {
    let t = setup().await;
    let parent = t
        .import_at(
            &message("Plans", "p1@example.com", "", "What are the plans?"),
            "inbox",
            json!({}),
            json!("2026-11-10T12:00:00Z"),
        )
        .await;
    // Imported later but received earlier (clocks differ): it sorts first.
    let reply = t
        .import_at(
            &message(
                "Re: Plans",
                "p2@example.com",
                "In-Reply-To: <p1@example.com>\r\nReferences: <p1@example.com>\r\n",
                "Beach.",
            ),
            "inbox",
            json!({}),
            json!("2026-11-10T11:00:00Z"),
        )
        .await;
    // Same subject but no shared message id: its own thread (THR-03).
    let stranger = t
        .import(
            &message("Plans", "p3@example.com", "", "Other plans"),
            "inbox",
            json!({}),
        )
        .await;
    // Shares a message id but the subject differs: its own thread too.
    let hijack = t
        .import(
            &message(
                "Something else",
                "p4@example.com",
                "In-Reply-To: <p1@example.com>\r\n",
                "x",
            ),
            "inbox",
            json!({}),
        )
        .await;
    assert_eq!(reply["threadId"], parent["threadId"]); // THR-01
    assert_ne!(stranger["threadId"], parent["threadId"]);
    assert_ne!(hijack["threadId"], parent["threadId"]);
    let r = t
        .call(json!([["Thread/get", {"accountId": t.account,
            "ids": [parent["threadId"], "tnope"]}, "0"]]))
        .await;
    // THR-02: emailIds sorted by receivedAt, oldest first.
    assert_eq!(
        r[0][1]["list"][0]["emailIds"],
        json!([reply["id"], parent["id"]])
    );
    assert_eq!(r[0][1]["notFound"], json!(["tnope"]));
    assert_eq!(t.counts("inbox").await, (4, 4, 3, 3));
}

#[on_both_backends]
async fn emails_imported_in_one_call_thread_and_count_as_if_imported_one_by_one() {
    let t = setup().await;
    let parent = t.upload(&message(
        "Plans",
        "q1@example.com",
        "",
        "What are the plans?",
    ));
    let reply = t.upload(&message(
        "Re: Plans",
        "q2@example.com",
        "In-Reply-To: <q1@example.com>\r\n",
        "Beach.",
    ));
    let stranger = t.upload(&message("Lunch", "q3@example.com", "", "Noon?"));
    let inbox = t.mailbox("inbox");
    // The emails of one call are written together (store::email::create): a reply finds its
    // parent of the same call, and one message imported twice is one blob (BIN-05).
    let r = t
        .call(json!([["Email/import", {"accountId": t.account, "emails": {
            "parent": {"blobId": parent, "mailboxIds": {&inbox: true},
                       "receivedAt": "2026-11-10T12:00:00Z"},
            "reply": {"blobId": reply, "mailboxIds": {&inbox: true}, "keywords": {"$seen": true},
                      "receivedAt": "2026-11-10T13:00:00Z"},
            "stranger": {"blobId": stranger, "mailboxIds": {&inbox: true}},
            "stranger2": {"blobId": stranger, "mailboxIds": {&inbox: true}},
            "lost": {"blobId": parent, "mailboxIds": {"mnope": true}}
        }}, "0"]]))
        .await;
    let created = &r[0][1]["created"];
    assert_eq!(
        created["reply"]["threadId"], created["parent"]["threadId"],
        "{r:?}"
    ); // THR-01
    assert_ne!(
        created["stranger"]["threadId"],
        created["parent"]["threadId"]
    );
    // Both copies of the stranger share a message id and subject: one thread.
    assert_eq!(
        created["stranger2"]["threadId"],
        created["stranger"]["threadId"]
    );
    assert_eq!(
        created["stranger2"]["blobId"],
        created["stranger"]["blobId"]
    );
    assert_ne!(created["stranger2"]["id"], created["stranger"]["id"]);
    assert_eq!(
        r[0][1]["notCreated"]["lost"]["type"], "invalidProperties",
        "{r:?}"
    );
    let r = t
        .call(json!([["Thread/get", {"accountId": t.account,
            "ids": [created["parent"]["threadId"]]}, "0"]]))
        .await;
    assert_eq!(
        r[0][1]["list"][0]["emailIds"],
        json!([created["parent"]["id"], created["reply"]["id"]])
    );
    // Four emails in two threads; the reply is read.
    assert_eq!(t.counts("inbox").await, (4, 3, 2, 2));
}

#[on_both_backends]
async fn an_import_of_many_emails_threads_a_reply_with_a_parent_far_before_it_in_the_call() {
    let t = setup().await;
    let inbox = t.mailbox("inbox");
    // One write of 130 emails (written table by table, store::email::create): the reply (120)
    // finds its parent (5) among the emails of the same write; a bad one (110) fails alone.
    let mut emails = serde_json::Map::new();
    for i in 0..130 {
        let raw = if i == 120 {
            message(
                "Re: topic 5",
                "q120@example.com",
                "In-Reply-To: <q5@example.com>\r\n",
                "yes",
            )
        } else {
            message(
                &format!("topic {i}"),
                &format!("q{i}@example.com"),
                "",
                "hello",
            )
        };
        let mailbox = if i == 110 {
            "mnope".to_owned()
        } else {
            inbox.clone()
        };
        emails.insert(
            format!("c{i:03}"),
            json!({"blobId": t.upload(&raw), "mailboxIds": {mailbox: true}}),
        );
    }
    let r = t
        .call(json!([["Email/import", {"accountId": t.account, "emails": emails}, "0"]]))
        .await;
    let created = r[0][1]["created"].as_object().unwrap();
    assert_eq!(created.len(), 129, "{r:?}");
    assert_eq!(r[0][1]["notCreated"]["c110"]["type"], "invalidProperties");
    assert_eq!(created["c120"]["threadId"], created["c005"]["threadId"]);
    assert_ne!(created["c121"]["threadId"], created["c005"]["threadId"]);
    assert_eq!(t.counts("inbox").await, (129, 129, 128, 128));
}

#[on_both_backends]
async fn if_in_state_that_does_not_match_is_a_state_mismatch() {
    let t = setup().await;
    let blob = t.upload(&message("x", "x@example.com", "", "x"));
    let r = t
        .call(json!([
            ["Email/import", {"accountId": t.account, "ifInState": "12345", "emails": {
                "a": {"blobId": blob, "mailboxIds": {t.mailbox("inbox"): true}}}}, "0"],
            ["Email/set", {"accountId": t.account, "ifInState": "12345", "destroy": ["enope"]}, "1"]
        ]))
        .await;
    // EIMP-04, SET
    assert_eq!(r[0][1]["type"], "stateMismatch");
    assert_eq!(r[1][1]["type"], "stateMismatch");
    let state = t.state("Email/get").await;
    let r = t
        .call(
            json!([["Email/import", {"accountId": t.account, "ifInState": state, "emails": {
            "a": {"blobId": blob, "mailboxIds": {t.mailbox("inbox"): true}}}}, "0"]]),
        )
        .await;
    assert!(r[0][1]["created"]["a"].is_object(), "{r:?}");
}

#[on_both_backends]
async fn an_import_of_a_blob_that_does_not_exist_is_an_invalid_blob_id_property() {
    let t = setup().await;
    let r = t
        .call(json!([["Email/import", {"accountId": t.account, "emails": {
            "a": {"blobId": "Gnope", "mailboxIds": {t.mailbox("inbox"): true}}}}, "0"]]))
        .await;
    // EIMP-02: a bad blobId is a SetError in notCreated, invalidProperties naming it.
    let error = &r[0][1]["notCreated"]["a"];
    assert_eq!(error["type"], "invalidProperties", "{r:?}");
    assert_eq!(error["properties"], json!(["blobId"]));
}

#[on_both_backends]
async fn unknown_emails_are_not_found_everywhere() {
    let t = setup().await;
    let r = t
        .call(json!([
            ["Email/get", {"accountId": t.account, "ids": ["enope"]}, "0"],
            ["Email/set", {"accountId": t.account, "update": {"enope": {"keywords/$seen": true}},
                "destroy": ["enope2", "#nocid"]}, "1"]
        ]))
        .await;
    assert_eq!(r[0][1]["notFound"], json!(["enope"]));
    assert_eq!(r[0][1]["list"], json!([]));
    assert_eq!(r[1][1]["notUpdated"]["enope"]["type"], "notFound");
    assert_eq!(r[1][1]["notDestroyed"]["enope2"]["type"], "notFound");
    assert_eq!(r[1][1]["notDestroyed"]["#nocid"]["type"], "notFound"); // CID-06
}

#[on_both_backends]
async fn an_email_created_and_destroyed_in_one_set_leaves_nothing_to_find() {
    let t = setup().await;
    // The search text of a new email is stored at the end of the write: an email destroyed
    // in the same write must not get one (CID-04: destroy names the creation).
    let r = t
        .call(json!([
            ["Email/set", {"accountId": t.account, "create": {"c": {
                "mailboxIds": {t.mailbox("inbox"): true},
                "subject": "Ephemeral zanzibar",
                "textBody": [{"partId": "t", "type": "text/plain"}],
                "bodyValues": {"t": {"value": "gone at once"}}
            }}, "destroy": ["#c"]}, "0"],
            ["Email/query", {"accountId": t.account, "filter": {"text": "zanzibar"},
                "calculateTotal": true}, "1"],
            ["Email/get", {"accountId": t.account, "ids": []}, "2"]
        ]))
        .await;
    let id = r[0][1]["created"]["c"]["id"].as_str().unwrap();
    assert_eq!(r[0][1]["destroyed"], json!([id]), "{r:?}");
    assert_eq!(r[1][1]["ids"], json!([]), "{r:?}");
    assert_eq!(r[1][1]["total"], 0);
    // ST-04: no Email changed, so newState is the state Email/get reports (the mailbox
    // counts the email passed through did change, in their own type).
    assert_eq!(r[0][1]["newState"], r[0][1]["oldState"], "{r:?}");
    assert_eq!(r[0][1]["newState"], r[2][1]["state"], "{r:?}");
}

#[on_both_backends]
async fn immutable_properties_empty_mailbox_ids_and_bad_keywords_are_invalid() {
    let t = setup().await;
    let a = t
        .import(&message("x", "x@example.com", "", "x"), "inbox", json!({}))
        .await;
    let id = a["id"].as_str().unwrap();
    let inbox = t.mailbox("inbox");
    let r = t
        .call(json!([["Email/set", {"accountId": t.account, "update": {
            id: {"subject": "changed"}}}, "0"],
            ["Email/set", {"accountId": t.account, "update": {
            id: {"mailboxIds": {}}}}, "1"],
            ["Email/set", {"accountId": t.account, "update": {
            id: {format!("mailboxIds/{inbox}"): null}}}, "2"],
            ["Email/set", {"accountId": t.account, "update": {
            id: {"keywords/$seen": false}}}, "3"],
            ["Email/set", {"accountId": t.account, "update": {
            id: {"mailboxIds/mnope": true}}}, "4"],
            ["Email/set", {"accountId": t.account, "update": {id: {}}}, "5"]
        ]))
        .await;
    // ESET-01
    assert_eq!(r[0][1]["notUpdated"][id]["type"], "invalidProperties");
    assert_eq!(r[0][1]["notUpdated"][id]["properties"], json!(["subject"]));
    // EML-02: at least one mailbox, by whole value or by patch.
    assert_eq!(r[1][1]["notUpdated"][id]["type"], "invalidProperties");
    assert_eq!(r[2][1]["notUpdated"][id]["type"], "invalidProperties");
    assert_eq!(r[3][1]["notUpdated"][id]["type"], "invalidProperties");
    assert_eq!(r[4][1]["notUpdated"][id]["type"], "invalidProperties");
    // A no-op update succeeds and changes no state.
    assert_eq!(r[5][1]["updated"], json!({id: null}));
    assert_eq!(r[5][1]["oldState"], r[5][1]["newState"]);

    // EIMP-02: bad import items are SetErrors in notCreated.
    let blob = t.upload(&message("y", "y@example.com", "", "y"));
    let missing = format!("b{}", "0".repeat(64));
    let r = t
        .call(json!([["Email/import", {"accountId": t.account, "emails": {
            "empty": {"blobId": blob, "mailboxIds": {}},
            "nobox": {"blobId": blob, "mailboxIds": {"mnope": true}},
            "badkw": {"blobId": blob, "mailboxIds": {inbox.clone(): true}, "keywords": {"a b": true}},
            "noblob": {"blobId": missing, "mailboxIds": {inbox.clone(): true}}
        }}, "0"]]))
        .await;
    let nc = &r[0][1]["notCreated"];
    assert_eq!(nc["empty"]["type"], "invalidProperties");
    assert_eq!(nc["nobox"]["type"], "invalidProperties");
    assert_eq!(nc["badkw"]["type"], "invalidProperties");
    // EIMP-02: a bad blobId too (Email/set's blobNotFound is for its body parts).
    assert_eq!(nc["noblob"]["type"], "invalidProperties");
    assert_eq!(nc["noblob"]["properties"], json!(["blobId"]));
    assert_eq!(r[0][1]["created"], Value::Null);
    assert_eq!(r[0][1]["oldState"], r[0][1]["newState"]);
}

#[on_both_backends]
async fn creation_references_name_mailboxes_in_keys_and_patch_paths() {
    let t = setup().await;
    let blob = t.upload(&message("x", "x@example.com", "", "x"));
    let r = t
        .call(json!([
            ["Mailbox/set", {"accountId": t.account, "create": {
                "f1": {"name": "Folder 1"}, "f2": {"name": "Folder 2"}}}, "0"],
            ["Email/import", {"accountId": t.account, "emails": {
                "e": {"blobId": blob, "mailboxIds": {"#f1": true}}}}, "1"],
            ["Email/set", {"accountId": t.account, "update": {
                "#e": {"mailboxIds/#f2": true}}}, "2"],
            ["Email/get", {"accountId": t.account, "ids": ["#e"], "properties": ["mailboxIds"]}, "3"]
        ]))
        .await;
    // CID-07, CID-04
    let f1 = r[0][1]["created"]["f1"]["id"].clone();
    let f2 = r[0][1]["created"]["f2"]["id"].clone();
    let mut expected = serde_json::Map::new();
    expected.insert(f1.as_str().unwrap().into(), json!(true));
    expected.insert(f2.as_str().unwrap().into(), json!(true));
    assert_eq!(
        r[3][1]["list"][0]["mailboxIds"],
        Value::Object(expected),
        "{r:?}"
    );
}

#[on_both_backends]
async fn a_client_syncs_by_changes_and_get_through_result_references() {
    let t = setup().await;
    let since = t.state("Email/get").await;
    let a = t
        .import(
            &message("One", "one@example.com", "", "1"),
            "inbox",
            json!({}),
        )
        .await;
    let b = t
        .import(
            &message("Two", "two@example.com", "", "2"),
            "inbox",
            json!({}),
        )
        .await;
    let r = t
        .call(json!([
            ["Email/changes", {"accountId": t.account, "sinceState": since}, "c"],
            ["Email/get", {"accountId": t.account,
                "#ids": {"resultOf": "c", "name": "Email/changes", "path": "/created"},
                "properties": ["subject", "threadId"]}, "g"],
            ["Thread/get", {"accountId": t.account,
                "#ids": {"resultOf": "g", "name": "Email/get", "path": "/list/*/threadId"}}, "t"]
        ]))
        .await;
    let mut subjects: Vec<&str> = r[1][1]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    subjects.sort();
    assert_eq!(subjects, vec!["One", "Two"]);
    assert_eq!(r[1][1]["state"], r[0][1]["newState"]);
    assert_eq!(r[2][1]["list"].as_array().unwrap().len(), 2);
    // Caught up: no further changes.
    let r = t
        .call(json!([["Email/changes", {"accountId": t.account, "sinceState": r[0][1]["newState"]}, "0"]]))
        .await;
    assert_eq!(r[0][1]["created"], json!([]));
    assert_eq!(r[0][1]["hasMoreChanges"], false);
    let _ = (a, b);
}

#[on_both_backends]
async fn email_set_create_builds_a_message_with_generated_message_id_and_date() {
    let t = setup().await;
    let attachment = t.upload(b"PDF-ish bytes");
    let r = t
        .call(json!([
            ["Email/set", {"accountId": t.account, "create": {"d": {
                "mailboxIds": {t.mailbox("drafts"): true},
                "keywords": {"$draft": true},
                "from": [{"name": "Alice", "email": "alice@example.com"}],
                "to": [{"name": null, "email": "bob@example.com"}],
                "subject": "Draft with attachment",
                "textBody": [{"partId": "t", "type": "text/plain"}],
                "htmlBody": [{"partId": "h", "type": "text/html"}],
                "bodyValues": {"t": {"value": "Hello Bob"}, "h": {"value": "<p>Hello Bob</p>"}},
                "attachments": [{"blobId": attachment, "type": "application/pdf", "name": "a.pdf"}]
            }}}, "0"],
            ["Email/get", {"accountId": t.account, "ids": ["#d"], "fetchAllBodyValues": true,
                "properties": ["messageId", "sentAt", "subject", "from", "to", "keywords",
                    "hasAttachment", "attachments", "textBody", "bodyValues", "size", "blobId"]}, "1"]
        ]))
        .await;
    let created = &r[0][1]["created"]["d"];
    // ESET-04
    for k in ["id", "blobId", "threadId", "size"] {
        assert!(!created[k].is_null(), "created lacks {k}: {r:?}");
    }
    let e = &r[1][1]["list"][0];
    // ESET-03: generated Message-ID and Date.
    assert_eq!(e["messageId"].as_array().map(Vec::len), Some(1), "{e:?}");
    assert!(e["sentAt"].is_string());
    assert_eq!(e["subject"], "Draft with attachment");
    assert_eq!(e["to"], json!([{"name": null, "email": "bob@example.com"}]));
    assert_eq!(e["keywords"], json!({"$draft": true}));
    assert_eq!(e["hasAttachment"], true);
    assert_eq!(e["attachments"][0]["name"], "a.pdf");
    assert_eq!(e["size"], created["size"]);
    let text_part = e["textBody"][0]["partId"].as_str().unwrap();
    assert_eq!(e["bodyValues"][text_part]["value"], "Hello Bob");
    // Drafts are not new mail, and are unread-exempt (MBX-06).
    assert_eq!(t.counts("drafts").await, (1, 0, 1, 0));

    // ESET-02: a malformed create is invalidProperties.
    let r = t
        .call(json!([["Email/set", {"accountId": t.account, "create": {
            "x": {"mailboxIds": {t.mailbox("drafts"): true}, "textBody": [{"partId": "nope"}]},
            "y": {"subject": "no mailbox"},
            "z": {"mailboxIds": {t.mailbox("drafts"): true}, "threadId": "t1"}
        }}, "0"]]))
        .await;
    for k in ["x", "y", "z"] {
        assert_eq!(
            r[0][1]["notCreated"][k]["type"], "invalidProperties",
            "{k}: {r:?}"
        );
    }
}

#[on_both_backends]
async fn herald_deliver_puts_a_message_in_the_inbox_through_the_change_log() {
    let t = setup().await;
    let since = t.state("Email/get").await;
    let inbox_before = t.counts("inbox").await;
    let raw = message("Delivered", "d1@example.com", "", "Via the command line");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "--config",
            "/nonexistent/config.toml",
            "deliver",
            "--to",
            "alice",
        ])
        .env("HERALD_STORE_URL", &t.s.config.store.url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run herald deliver");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&raw).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let r = t
        .call(json!([
            ["Email/changes", {"accountId": t.account, "sinceState": since}, "0"],
            ["Email/get", {"accountId": t.account, "ids": [id], "properties": ["subject", "mailboxIds"]}, "1"]
        ]))
        .await;
    assert_eq!(r[0][1]["created"], json!([id]));
    assert_eq!(r[1][1]["list"][0]["subject"], "Delivered");
    assert_eq!(
        r[1][1]["list"][0]["mailboxIds"],
        json!({t.mailbox("inbox"): true})
    );
    assert_eq!(t.counts("inbox").await.0, inbox_before.0 + 1);

    // An unknown user is a clean error, not a panic.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "--config",
            "/nonexistent/config.toml",
            "deliver",
            "--to",
            "nobody",
        ])
        .env("HERALD_STORE_URL", &t.s.config.store.url)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[on_both_backends]
async fn mime_fixtures_import_and_render_without_failing() {
    let t = setup().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mime");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    assert!(names.len() >= 5);
    for path in names {
        let raw = std::fs::read(&path).unwrap();
        let created = t.import(&raw, "inbox", json!({})).await;
        assert!(created["id"].is_string(), "{path:?}: {created:?}");
        let r = t
            .call(json!([["Email/get", {"accountId": t.account, "ids": [created["id"]],
                "fetchAllBodyValues": true,
                "properties": ["subject", "from", "bodyStructure", "bodyValues", "textBody",
                    "htmlBody", "attachments", "preview", "headers", "header:X-Nothing:all"]}, "0"]]))
            .await;
        assert_eq!(r[0][0], "Email/get", "{path:?}: {r:?}");
        assert_eq!(r[0][1]["list"][0]["header:X-Nothing:all"], json!([]));
    }
    let (total, ..) = t.counts("inbox").await;
    assert!(total >= 5);
}

#[derive(diesel::QueryableByName)]
struct PlanRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    detail: String,
}

/// The query plan SQLite picks for `sql`, one line per step.
fn sqlite_plan(t: &Setup, sql: &str) -> String {
    use diesel::RunQueryDsl;
    let mut conn = t.s.store.conn().unwrap();
    let query = diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}"));
    let rows: Vec<PlanRow> = match &mut *conn {
        herald::store::AnyConnection::Sqlite(c) => query.load(c).unwrap(),
        herald::store::AnyConnection::Postgresql(_) => panic!("the test store is SQLite"),
    };
    rows.into_iter()
        .map(|r| r.detail)
        .collect::<Vec<_>>()
        .join("\n")
}

// SQLite only: it reads SQLite's query plans.
#[actix_web::test]
async fn listing_sorting_and_finding_a_message_blob_use_indexes_not_scans() {
    let t = setup().await;
    // What Email/query does for `inMailbox` sorted by receivedAt (newest first), one page.
    let plan = sqlite_plan(
        &t,
        "SELECT email_id FROM email_mailboxes WHERE account_id = 'a' AND mailbox_id = 'm' \
         ORDER BY received_at DESC, email_id DESC LIMIT 50",
    );
    assert!(plan.contains("email_mailboxes_received"), "{plan}");
    assert!(!plan.contains("TEMP B-TREE"), "sorts in memory: {plan}");
    // Threading's lookup is checked beside it (store::email::threading).
    // Sorting the whole account by sentAt / subject / from walks an index too.
    for (column, index) in [
        ("sent_at", "emails_sent"),
        ("base_subject", "emails_base_subject"),
        ("from_sort", "emails_from_sort"),
    ] {
        let plan = sqlite_plan(
            &t,
            &format!("SELECT id FROM emails WHERE account_id = 'a' ORDER BY {column}, id LIMIT 50"),
        );
        assert!(plan.contains(index), "{column}: {plan}");
    }
    // Whether an email of the account is a blob's message (store::blobs::visible) and whether
    // any email is (purge) are index lookups.
    for sql in [
        "SELECT COUNT(*) FROM emails WHERE blob_id = 'b1' AND account_id = 'a'",
        "SELECT 1 FROM emails WHERE blob_id = 'b1'",
    ] {
        let plan = sqlite_plan(&t, sql);
        assert!(
            plan.contains("USING COVERING INDEX emails_blob"),
            "{sql}: {plan}"
        );
    }
}

#[on_both_backends]
async fn destroying_a_mailbox_with_its_emails_destroys_those_left_in_no_mailbox() {
    let t = setup().await;
    let r = t
        .call(json!([["Mailbox/set", {"accountId": t.account, "create": {"f": {"name": "Folder"}}}, "0"]]))
        .await;
    let folder = r[0][1]["created"]["f"]["id"].as_str().unwrap().to_owned();
    let blob_only = t.upload(&message("Only", "only@example.com", "", "1"));
    let blob_both = t.upload(&message("Both", "both@example.com", "", "2"));
    let r = t
        .call(json!([["Email/import", {"accountId": t.account, "emails": {
            "only": {"blobId": blob_only, "mailboxIds": {folder.clone(): true}},
            "both": {"blobId": blob_both, "mailboxIds": {folder.clone(): true, t.mailbox("inbox"): true}}
        }}, "0"]]))
        .await;
    let only = r[0][1]["created"]["only"].clone();
    let both = r[0][1]["created"]["both"].clone();
    let email_since = r[0][1]["newState"].clone();
    let thread_since = t.state("Thread/get").await;
    let r = t
        .call(json!([
            ["Mailbox/set", {"accountId": t.account, "destroy": [folder], "onDestroyRemoveEmails": true}, "0"],
            ["Email/changes", {"accountId": t.account, "sinceState": email_since}, "1"],
            ["Thread/changes", {"accountId": t.account, "sinceState": thread_since}, "2"],
            ["Email/get", {"accountId": t.account, "ids": [only["id"], both["id"]], "properties": ["mailboxIds"]}, "3"]
        ]))
        .await;
    assert_eq!(
        r[0][1]["destroyed"].as_array().map(Vec::len),
        Some(1),
        "{r:?}"
    );
    assert_eq!(r[1][1]["destroyed"], json!([only["id"]]));
    assert_eq!(r[1][1]["updated"], json!([both["id"]]));
    assert_eq!(r[2][1]["destroyed"], json!([only["threadId"]]));
    assert_eq!(r[3][1]["notFound"], json!([only["id"]]));
    assert_eq!(
        r[3][1]["list"][0]["mailboxIds"],
        json!({t.mailbox("inbox"): true})
    );
    // The destroyed email's message is no longer visible through the account.
    let mut conn = t.s.store.conn().unwrap();
    let blob = only["blobId"].as_str().unwrap();
    let referenced = blobs::visible(&mut conn, &t.account, "someone-else", blob).unwrap();
    assert!(!referenced);
}

#[on_both_backends]
async fn email_delivery_moves_only_on_new_mail_and_received_at_defaults_to_the_received_header() {
    let t = setup().await;
    let delivery_state = || {
        let mut conn = t.s.store.conn().unwrap();
        herald::store::changelog::type_state(&mut conn, &t.account, "EmailDelivery").unwrap()
    };
    let before = delivery_state();
    let raw = message(
        "Hop",
        "hop@example.com",
        "Received: from mx.example.com by herald; Wed, 11 Nov 2026 08:30:00 +0000\r\n\
         Received: from client by mx.example.com; Wed, 11 Nov 2026 08:29:00 +0000\r\n",
        "x",
    );
    let created = t.import(&raw, "inbox", json!({})).await;
    let after_import = delivery_state();
    assert!(
        after_import > before,
        "PSH-04: new mail moves EmailDelivery"
    );
    let r = t
        .call(json!([
            ["Email/get", {"accountId": t.account, "ids": [created["id"]], "properties": ["receivedAt"]}, "0"],
            ["Email/set", {"accountId": t.account, "update": {
                created["id"].as_str().unwrap(): {"keywords/$seen": true}},
                "create": {"d": {"mailboxIds": {t.mailbox("drafts"): true}, "subject": "draft"}}}, "1"]
        ]))
        .await;
    // EIMP-01: the most recent Received: time.
    assert_eq!(r[0][1]["list"][0]["receivedAt"], "2026-11-11T08:30:00Z");
    assert!(r[1][1]["created"]["d"].is_object(), "{r:?}");
    // Flag changes and drafts are not new mail.
    assert_eq!(delivery_state(), after_import);
}

#[on_both_backends]
async fn email_set_create_from_a_body_structure_round_trips_its_parts() {
    let t = setup().await;
    let image = t.upload(b"\x89PNG fake image bytes");
    let r = t
        .call(json!([
            ["Email/set", {"accountId": t.account, "create": {"s": {
                "mailboxIds": {t.mailbox("drafts"): true},
                "subject": "Structured",
                "bodyStructure": {"type": "multipart/mixed", "subParts": [
                    {"type": "multipart/alternative", "subParts": [
                        {"type": "text/plain", "partId": "p"},
                        {"type": "text/html", "partId": "h"}
                    ]},
                    {"type": "image/png", "blobId": image, "name": "pic.png", "disposition": "attachment"}
                ]},
                "bodyValues": {"p": {"value": "plain words"}, "h": {"value": "<b>bold words</b>"}}
            },
            "both": {"mailboxIds": {t.mailbox("drafts"): true},
                "bodyStructure": {"type": "text/plain", "partId": "p"},
                "textBody": [{"partId": "p"}], "bodyValues": {"p": {"value": "x"}}}}}, "0"],
            ["Email/get", {"accountId": t.account, "ids": ["#s"], "fetchHTMLBodyValues": true,
                "properties": ["bodyStructure", "textBody", "htmlBody", "attachments", "bodyValues",
                    "hasAttachment"]}, "1"]
        ]))
        .await;
    assert!(r[0][1]["created"]["s"].is_object(), "{r:?}");
    // ESET-02: bodyStructure excludes textBody.
    assert_eq!(r[0][1]["notCreated"]["both"]["type"], "invalidProperties");
    let e = &r[1][1]["list"][0];
    assert_eq!(e["bodyStructure"]["type"], "multipart/mixed");
    assert_eq!(
        e["bodyStructure"]["subParts"][0]["type"],
        "multipart/alternative"
    );
    assert_eq!(e["textBody"][0]["type"], "text/plain");
    assert_eq!(e["htmlBody"][0]["type"], "text/html");
    assert_eq!(e["attachments"][0]["name"], "pic.png");
    assert_eq!(e["hasAttachment"], true);
    let html = e["htmlBody"][0]["partId"].as_str().unwrap();
    assert_eq!(e["bodyValues"][html]["value"], "<b>bold words</b>");
    // The attachment's bytes survive the round trip (EML-10: blobId of the decoded bytes).
    let part_blob = e["attachments"][0]["blobId"].as_str().unwrap();
    let got =
        t.s.get(
            &format!("/jmap/download/{}/{part_blob}/pic.png", t.account),
            &t.alice,
        )
        .await;
    assert_eq!(got.raw, b"\x89PNG fake image bytes");
}

#[on_both_backends]
async fn importing_the_same_blob_twice_gives_two_emails_with_their_own_keywords() {
    let t = setup().await;
    let raw = message("Twice", "twice@example.com", "", "same bytes");
    let first = t.import(&raw, "inbox", json!({"$seen": true})).await;
    let second = t.import(&raw, "archive", json!({})).await;
    // EIMP-03: duplicates allowed; each copy has its own id and mutable properties.
    assert_ne!(first["id"], second["id"]);
    assert_eq!(first["blobId"], second["blobId"]);
    assert_eq!(first["threadId"], second["threadId"]);
    let r = t
        .call(
            json!([["Email/get", {"accountId": t.account, "ids": [first["id"], second["id"]],
            "properties": ["keywords", "mailboxIds"]}, "0"]]),
        )
        .await;
    assert_eq!(r[0][1]["list"][0]["keywords"], json!({"$seen": true}));
    assert_eq!(r[0][1]["list"][1]["keywords"], json!({}));
    assert_eq!(
        r[0][1]["list"][1]["mailboxIds"],
        json!({t.mailbox("archive"): true})
    );
}

#[on_both_backends]
async fn an_import_is_pushed_as_email_thread_mailbox_and_email_delivery_but_a_flag_is_not_delivery()
{
    let t = setup().await;
    let path = "/jmap/eventsource/?types=*&closeafter=state&ping=0";
    let mut sse = harness::push::sse_open(&t.s, &t.alice, path, None).await;
    sse.ready().await;
    let blob = t.upload(&message("Pushed", "push@example.com", "", "x"));
    let r = t
        .call(json!([["Email/import", {"accountId": t.account, "emails": {
            "k": {"blobId": blob, "mailboxIds": {t.mailbox("inbox"): true}}}}, "0"]]))
        .await;
    let id = r[0][1]["created"]["k"]["id"].clone();
    let new_state = r[0][1]["newState"].clone();
    // PSH-04: one StateChange naming every type the import changed, EmailDelivery included.
    let e = sse.next_event().await.expect("a state event");
    let data: Value = serde_json::from_str(&e.data).unwrap();
    let changed = &data["changed"][&t.account];
    for ty in ["Email", "Thread", "Mailbox", "EmailDelivery"] {
        assert!(changed[ty].is_string(), "{ty} missing: {data}");
    }
    assert_eq!(changed["Email"], new_state);

    let mut sse = harness::push::sse_open(&t.s, &t.alice, path, None).await;
    sse.ready().await;
    t.call(json!([["Email/set", {"accountId": t.account, "update": {
        id.as_str().unwrap(): {"keywords/$seen": true}}}, "0"]]))
        .await;
    let e = sse.next_event().await.expect("a state event");
    let data: Value = serde_json::from_str(&e.data).unwrap();
    let changed = &data["changed"][&t.account];
    assert!(
        changed["Email"].is_string() && changed["Mailbox"].is_string(),
        "{data}"
    );
    assert!(changed.get("EmailDelivery").is_none(), "{data}");
    assert!(changed.get("Thread").is_none(), "{data}");
}

#[on_both_backends]
async fn an_update_may_name_server_set_properties_with_their_current_values() {
    // SET-16: a client that sends back what it read (id, blobId, threadId, size) is not refused.
    let t = setup().await;
    let a = t
        .import(&message("x", "x@example.com", "", "x"), "inbox", json!({}))
        .await;
    let id = a["id"].as_str().unwrap();
    let r = t
        .call(
            json!([["Email/set", {"accountId": t.account, "update": {id: {
            "id": id, "blobId": a["blobId"], "threadId": a["threadId"], "size": a["size"],
            "keywords/$flagged": true}}}, "0"],
            ["Email/set", {"accountId": t.account, "update": {id: {
            "size": a["size"].as_i64().unwrap() + 1}}}, "1"]]),
        )
        .await;
    assert_eq!(r[0][1]["updated"], json!({id: null}), "{r:?}");
    assert_eq!(
        r[1][1]["notUpdated"][id]["type"], "invalidProperties",
        "{r:?}"
    );
    assert_eq!(
        r[1][1]["notUpdated"][id]["properties"],
        json!(["size"]),
        "{r:?}"
    );
}
