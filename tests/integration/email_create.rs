//! Email/set create (RFC 8621 §4.6): what is refused. Backend-independent (the message is built before the
//! store sees it), so SQLite only.

use serde_json::{Value, json};

use crate::harness::push::account_id;
use crate::harness::{Auth, CORE, TestServer};
use herald::store::{blobs, users};

const MAIL: &str = "urn:ietf:params:jmap:mail";

struct Setup {
    s: TestServer,
    alice: Auth,
    account: String,
    user_id: String,
    drafts: String,
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
    let drafts = r[0][1]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "drafts")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    Setup {
        s,
        alice,
        account,
        user_id,
        drafts,
    }
}

impl Setup {
    async fn call(&self, calls: Value) -> Vec<Value> {
        self.s.call(&self.alice, &[CORE, MAIL], calls).await
    }

    fn upload(&self, bytes: &[u8]) -> String {
        let mut conn = self.s.store.conn().unwrap();
        blobs::upload(&mut conn, &self.account, &self.user_id, bytes).unwrap()
    }

    /// Email/set creates each of `emails` (creation id → Email properties, `mailboxIds` added);
    /// returns the response's arguments.
    async fn create(&self, emails: Value) -> Value {
        let mut emails = emails;
        for e in emails.as_object_mut().unwrap().values_mut() {
            e["mailboxIds"] = json!({self.drafts.clone(): true});
        }
        let r = self
            .call(json!([["Email/set", {"accountId": self.account, "create": emails}, "0"]]))
            .await;
        assert_eq!(r[0][0], "Email/set", "{r:?}");
        r[0][1].clone()
    }
}

#[actix_web::test]
async fn flagged_body_values_and_impossible_parts_are_invalid_properties() {
    let t = setup().await;
    let blob = t.upload(b"hello");
    let text = |id: &str| json!({"partId": id, "type": "text/plain"});
    let r = t
        .create(json!({
            // RFC 8621 §4.6: isTruncated and isEncodingProblem MUST be false or omitted, for a
            // bodyStructure part as for textBody.
            "truncated": {"bodyStructure": text("t"),
                "bodyValues": {"t": {"value": "cut off", "isTruncated": true}}},
            "problem": {"bodyStructure": text("t"),
                "bodyValues": {"t": {"value": "x", "isEncodingProblem": true}}},
            "nested": {"bodyStructure": {"type": "multipart/mixed", "subParts": [text("t")]},
                "bodyValues": {"t": {"value": "x", "isTruncated": true}}},
            // A part is text from bodyValues or a blob, never both.
            "both": {"textBody": [{"partId": "t", "blobId": blob, "type": "text/plain"}],
                "bodyValues": {"t": {"value": "x"}}},
            "bothInStructure": {"bodyStructure": {"partId": "t", "blobId": blob, "type": "text/plain"},
                "bodyValues": {"t": {"value": "x"}}},
            // A multipart has parts (RFC 2046 §5.1.1: at least one body part).
            "empty": {"bodyStructure": {"type": "multipart/mixed", "subParts": []}},
            "fine": {"bodyStructure": text("t"),
                "bodyValues": {"t": {"value": "x", "isTruncated": false, "isEncodingProblem": false}}}
        }))
        .await;
    for id in [
        "truncated",
        "problem",
        "nested",
        "both",
        "bothInStructure",
        "empty",
    ] {
        assert_eq!(
            r["notCreated"][id]["type"], "invalidProperties",
            "{id}: {r}"
        );
    }
    assert!(r["created"]["fine"].is_object(), "{r}");
}
