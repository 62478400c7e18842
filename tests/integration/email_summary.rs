//! Email/get answers list views from what was stored at import (RFC 8621 §4.1.2.3 convenience
//! properties, §4.1.4 hasAttachment/preview) with exactly the values of the parsing path, and
//! never reads the message for them; emails stored without a summary get one computed and kept.

use crate::harness::push::account_id;
use crate::harness::{Auth, CORE, TestServer, on_both_backends};
use diesel::RunQueryDsl;
use herald::store::{AnyConnection, blobs, users};
use serde_json::{Value, json};

const MAIL: &str = "urn:ietf:params:jmap:mail";

/// Every property a list view may ask for that is answered without the message.
const LIST_PROPERTIES: &[&str] = &[
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
];

/// Messages that exercise the summary: encoded words, groups, missing headers, attachments.
fn messages() -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = vec![
        // Encoded-word subject and names, a group with members, an empty group, Sender, Reply-To,
        // several References, an unparsable Date.
        b"From: =?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?= <juergen@example.de>\r\n\
          Sender: Secretary <sec@example.de>\r\n\
          Reply-To: \"Team, the\" <team@example.de>\r\n\
          To: Friends: a@x.org, =?ISO-8859-1?Q?Andr=E9?= <b@x.org>;, c@y.org, Empty:;\r\n\
          Cc: undisclosed-recipients:;\r\n\
          Bcc: hidden@example.org\r\n\
          Subject: =?UTF-8?Q?Caf=C3=A9_=E2=98=95?=\r\n =?UTF-8?Q?_folded?=\r\n\
          Date: not a date\r\n\
          Message-ID: <one@example.com>\r\n\
          In-Reply-To: <zero@example.com>\r\n\
          References: <a@example.com>\r\n <zero@example.com>\r\n\
          Content-Type: text/plain; charset=utf-8\r\n\r\n\
          Hello   there,\r\n\r\nthe   preview collapses white space.\r\n"
            .to_vec(),
        // Nothing but a body: every header property is null (sentAt too).
        b"\r\nJust a body.\r\n".to_vec(),
        // An empty subject is "", not null; a message id without brackets; an attachment.
        b"From: a@example.com\r\nSubject:\r\nMessage-ID: bare@id\r\n\
          Date: Tue, 2 Jan 2024 08:30:00 -0500\r\nMIME-Version: 1.0\r\n\
          Content-Type: multipart/mixed; boundary=b\r\n\r\n\
          --b\r\nContent-Type: text/html\r\n\r\n<p>Only <b>HTML</b> here</p>\r\n\
          --b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n\
          Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n"
            .to_vec(),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mime");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    out.extend(names.iter().map(|p| std::fs::read(p).unwrap()));
    out
}

struct Setup {
    s: TestServer,
    alice: Auth,
    account: String,
    user_id: String,
    inbox: String,
}

async fn setup_on(s: TestServer) -> Setup {
    let alice = s.add_user("alice", "pw");
    let account = account_id(&s, &alice).await;
    let user_id = {
        let mut conn = s.store.conn().unwrap();
        users::find_by_name(&mut conn, "alice").unwrap().unwrap().id
    };
    let inbox = crate::harness::push::inbox_id(&s, &alice, &account).await;
    Setup {
        s,
        alice,
        account,
        user_id,
        inbox,
    }
}

impl Setup {
    async fn call(&self, calls: Value) -> Vec<Value> {
        self.s.call(&self.alice, &[CORE, MAIL], calls).await
    }

    /// Imports every message of [`messages`] into the inbox; returns the email ids in order.
    async fn import_all(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for (i, message) in messages().iter().enumerate() {
            let blob = {
                let mut conn = self.s.store.conn().unwrap();
                blobs::upload(&mut conn, &self.account, &self.user_id, message).unwrap()
            };
            let r = self
                .call(
                    json!([["Email/import", {"accountId": self.account, "emails": {
                    "k": {"blobId": blob, "mailboxIds": {self.inbox.clone(): true},
                        "keywords": {"$seen": true}}}}, "0"]]),
                )
                .await;
            let id = r[0][1]["created"]["k"]["id"].as_str();
            ids.push(
                id.unwrap_or_else(|| panic!("message {i}: {r:?}"))
                    .to_owned(),
            );
        }
        ids
    }

    /// Email/get of `ids` with `properties`.
    async fn get(&self, ids: &[String], properties: &[&str]) -> Vec<Value> {
        let r = self
            .call(json!([["Email/get", {"accountId": self.account, "ids": ids,
                "properties": properties}, "0"]]))
            .await;
        assert_eq!(r[0][0], "Email/get", "{r:?}");
        r[0][1]["list"].as_array().unwrap().clone()
    }

    /// The list-view answer and the parsing path's answer (the same properties plus
    /// bodyStructure, which needs the parsed message).
    async fn both_paths(&self, ids: &[String]) -> (Vec<Value>, Vec<Value>) {
        let list_view = self.get(ids, LIST_PROPERTIES).await;
        let mut with_body = LIST_PROPERTIES.to_vec();
        with_body.push("bodyStructure");
        let parsed = self.get(ids, &with_body).await;
        (list_view, parsed)
    }

    fn exec(&self, sql: &str) -> usize {
        let mut conn = self.s.store.conn().unwrap();
        let query = diesel::sql_query(sql);
        match &mut *conn {
            AnyConnection::Sqlite(c) => query.execute(c).unwrap(),
            AnyConnection::Postgresql(c) => query.execute(c).unwrap(),
        }
    }

    /// How many of the account's emails have no stored summary.
    fn without_summary(&self) -> i64 {
        use diesel::prelude::*;
        use herald::store::schema::emails;
        let mut conn = self.s.store.conn().unwrap();
        emails::table
            .filter(emails::account_id.eq(&self.account))
            .filter(emails::summary.is_null())
            .count()
            .get_result(&mut *conn)
            .unwrap()
    }

    /// Replaces every stored message of the account by empty bytes: a path that still reads
    /// messages then answers null.
    fn empty_the_messages(&self) {
        let n = self.exec(&format!(
            "UPDATE blobs SET data = '' WHERE id IN \
             (SELECT blob_id FROM emails WHERE account_id = '{}')",
            self.account
        ));
        assert!(n > 0);
    }
}

/// Asserts every list property is the same on both paths and returns nothing.
fn assert_same(list_view: &[Value], parsed: &[Value]) {
    assert_eq!(list_view.len(), parsed.len());
    for (a, b) in list_view.iter().zip(parsed) {
        assert!(b["bodyStructure"].is_object(), "the parsing path ran: {b}");
        for p in LIST_PROPERTIES {
            // Byte-for-byte: compare the serialised JSON, not only the values.
            assert_eq!(a[p].to_string(), b[p].to_string(), "{p} of {}", a["id"]);
        }
        assert_eq!(
            a.as_object().unwrap().keys().count(),
            LIST_PROPERTIES.len(),
            "{a}"
        );
    }
}

#[on_both_backends]
async fn a_list_view_get_returns_exactly_the_values_of_the_parsing_path() {
    // EML-09, EML-11, T-05: convenience properties, preview, hasAttachment.
    let t = setup_on(TestServer::start().await).await;
    let ids = t.import_all().await;
    let (list_view, parsed) = t.both_paths(&ids).await;
    assert_same(&list_view, &parsed);
    let first = &list_view[0];
    assert_eq!(first["subject"], "Café ☕ folded");
    assert_eq!(first["from"][0]["name"], "Jürgen Müller");
    assert_eq!(first["to"][0]["email"], "a@x.org");
    assert_eq!(first["to"][1]["name"], "André");
    assert_eq!(first["cc"], json!([]));
    assert_eq!(first["sentAt"], Value::Null);
    assert_eq!(
        first["references"],
        json!(["a@example.com", "zero@example.com"])
    );
    assert_eq!(
        first["preview"],
        "Hello there, the preview collapses white space."
    );
    let bare = &list_view[1];
    for p in ["subject", "from", "to", "messageId", "sentAt", "sender"] {
        assert_eq!(bare[p], Value::Null, "{p}");
    }
    assert_eq!(list_view[2]["subject"], "");
    assert_eq!(list_view[2]["hasAttachment"], true);
    assert_eq!(list_view[2]["preview"], "Only HTML here");
    assert_eq!(list_view[2]["sentAt"], "2024-01-02T13:30:00Z");
    t.s.stop().await;
}

#[on_both_backends]
async fn a_list_view_get_does_not_read_the_messages() {
    let t = setup_on(TestServer::start().await).await;
    let ids = t.import_all().await;
    let before = t.get(&ids, LIST_PROPERTIES).await;
    t.empty_the_messages();
    // The list view still answers every value; a property that needs the message does not.
    assert_eq!(t.get(&ids, LIST_PROPERTIES).await, before);
    let parsed = t.get(&ids, &["subject", "textBody"]).await;
    assert_eq!(parsed[0]["subject"], Value::Null);
    assert_eq!(parsed[0]["textBody"], Value::Null);
    t.s.stop().await;
}

#[on_both_backends]
async fn an_email_stored_without_a_summary_gets_it_computed_from_the_message_and_kept() {
    let t = setup_on(TestServer::start().await).await;
    let ids = t.import_all().await;
    let (expected, _) = t.both_paths(&ids).await;
    // Rows as an older server left them: no summary, and the columns it reads at their
    // defaults; one more with a summary of another version.
    t.exec(&format!(
        "UPDATE emails SET summary = NULL, preview = '', has_attachment = FALSE, sent_at = NULL \
         WHERE account_id = '{}'",
        t.account
    ));
    t.exec(&format!(
        "UPDATE emails SET summary = '{{\"v\":0}}' WHERE account_id = '{}' AND id = '{}'",
        t.account, ids[0]
    ));
    assert_eq!(t.without_summary(), ids.len() as i64 - 1);
    // Only metadata: nothing is computed.
    t.get(&ids, &["id", "keywords"]).await;
    assert_eq!(t.without_summary(), ids.len() as i64 - 1);
    // A list view computes and keeps every missing or outdated summary …
    let (list_view, parsed) = t.both_paths(&ids).await;
    assert_same(&list_view, &parsed);
    assert_eq!(list_view, expected);
    assert_eq!(t.without_summary(), 0);
    // … and from then on answers without the message.
    t.empty_the_messages();
    assert_eq!(t.get(&ids, LIST_PROPERTIES).await, expected);
    // No change was recorded: the summary is not Email data.
    let r = t
        .call(json!([["Email/get", {"accountId": t.account, "ids": []}, "0"]]))
        .await;
    let state = r[0][1]["state"].clone();
    let r = t
        .call(json!([["Email/changes", {"accountId": t.account, "sinceState": state}, "0"]]))
        .await;
    assert_eq!(r[0][1]["updated"], json!([]), "{r:?}");
    t.s.stop().await;
}

#[actix_web::test]
async fn reading_the_mailboxes_of_a_page_of_emails_uses_a_covering_index() {
    #[derive(diesel::QueryableByName)]
    struct PlanRow {
        #[diesel(sql_type = diesel::sql_types::Text)]
        detail: String,
    }
    let t = setup_on(TestServer::start().await).await;
    let mut conn = t.s.store.conn().unwrap();
    let AnyConnection::Sqlite(c) = &mut *conn else {
        panic!("the test store is SQLite")
    };
    let plan: Vec<PlanRow> = diesel::sql_query(
        "EXPLAIN QUERY PLAN SELECT email_id, mailbox_id FROM email_mailboxes \
         WHERE account_id = 'a' AND email_id IN ('e1', 'e2', 'e3')",
    )
    .load(c)
    .unwrap();
    let plan: Vec<String> = plan.into_iter().map(|r| r.detail).collect();
    let plan = plan.join("\n");
    // Before: `USING COVERING INDEX email_mailboxes_received (account_id=?)`, a scan of every
    // membership of the account.
    assert!(
        plan.contains("COVERING INDEX email_mailboxes_email (account_id=? AND email_id=?)"),
        "{plan}"
    );
    drop(conn);
    t.s.stop().await;
}
