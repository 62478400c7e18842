//! Email/set create (RFC 8621 §4.6): what is refused, and what a created message keeps of the
//! parts and header values it was given. Backend-independent (the message is built before the
//! store sees it), so SQLite only.

use serde_json::{Value, json};

use crate::harness::push::{account_id, role_id};
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
    let drafts = role_id(&s, &alice, &account, "drafts").await;
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

    async fn download(&self, blob_id: &str) -> Vec<u8> {
        let path = format!("/jmap/download/{}/{blob_id}/x", self.account);
        self.s.get(&path, &self.alice).await.raw
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
            // Only from parts, never encoded bytes (RFC 2045 §6.4); only it has parts.
            "multipartBlob": {"attachments": [{"blobId": blob, "type": "multipart/mixed"}]},
            "multipartWithBlob": {"bodyStructure": {"type": "multipart/mixed", "blobId": blob,
                "subParts": [text("t")]}, "bodyValues": {"t": {"value": "x"}}},
            "leafWithParts": {"bodyStructure": {"partId": "t", "type": "text/plain",
                "subParts": [text("t")]}, "bodyValues": {"t": {"value": "x"}}},
            // Header fields on parts are not built: refused, never dropped unsaid.
            "partHeader": {"bodyStructure": {"partId": "t", "type": "text/plain",
                "header:X-Part": " kept?"}, "bodyValues": {"t": {"value": "x"}}},
            "attachmentHeader": {"attachments": [{"blobId": blob, "type": "text/plain",
                "header:Content-Description": " d"}]},
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
        "multipartBlob",
        "multipartWithBlob",
        "leafWithParts",
        "partHeader",
        "attachmentHeader",
    ] {
        assert_eq!(
            r["notCreated"][id]["type"], "invalidProperties",
            "{id}: {r}"
        );
    }
    assert!(r["created"]["fine"].is_object(), "{r}");
}

#[actix_web::test]
async fn blob_parts_keep_their_charset_and_attached_messages_are_not_base64() {
    let t = setup().await;
    let latin = t.upload(b"Gr\xfc\xdfe\r\n");
    let utf8 = t.upload("Grüße ✓\r\n".as_bytes());
    let inner: &[u8] = b"From: x@example.com\r\nSubject: inner msg\r\n\
        Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
        Inner \xc3\xa9\r\n";
    let inner_blob = t.upload(inner);
    let r = t
        .create(json!({
            "flat": {"subject": "att", "textBody": [{"partId": "t", "type": "text/plain"}],
                "bodyValues": {"t": {"value": "see"}},
                "attachments": [
                    {"blobId": latin, "type": "text/plain", "charset": "iso-8859-1", "name": "latin.txt"},
                    {"blobId": inner_blob, "type": "message/rfc822", "name": "fwd.eml"}
                ]},
            "tree": {"subject": "tree", "bodyStructure": {"type": "multipart/mixed", "subParts": [
                {"partId": "t", "type": "text/plain"},
                {"blobId": utf8, "type": "text/plain", "charset": "utf-8", "name": "u.txt",
                    "disposition": "attachment"},
                {"blobId": inner_blob, "type": "message/rfc822", "disposition": "attachment"}
            ]}, "bodyValues": {"t": {"value": "see"}}}
        }))
        .await;
    for id in ["flat", "tree"] {
        let created = &r["created"][id];
        assert!(created.is_object(), "{id}: {r}");
        let g = t
            .call(
                json!([["Email/get", {"accountId": t.account, "ids": [created["id"]],
                "properties": ["attachments"],
                "bodyProperties": ["partId", "blobId", "type", "charset"]}, "0"]]),
            )
            .await;
        let attachments = g[0][1]["list"][0]["attachments"]
            .as_array()
            .unwrap()
            .clone();
        let (text_part, message_part) = (&attachments[0], &attachments[1]);
        let (charset, bytes): (&str, &[u8]) = if id == "flat" {
            ("iso-8859-1", b"Gr\xfc\xdfe\r\n")
        } else {
            ("utf-8", "Grüße ✓\r\n".as_bytes())
        };
        assert_eq!(text_part["charset"], charset, "{id}: {attachments:?}");
        assert_eq!(
            t.download(text_part["blobId"].as_str().unwrap()).await,
            bytes
        );
        // RFC 2046 §5.2.1: message/rfc822 is 7bit, 8bit or binary, never base64.
        assert_eq!(message_part["type"], "message/rfc822");
        assert_eq!(
            t.download(message_part["blobId"].as_str().unwrap()).await,
            inner
        );
        let raw = t.download(created["blobId"].as_str().unwrap()).await;
        let raw = String::from_utf8_lossy(&raw);
        let at = raw.find("Content-Type: message/rfc822").unwrap();
        let part_header = &raw[at..at + raw[at..].find("\r\n\r\n").unwrap()];
        assert!(
            part_header.contains("Content-Transfer-Encoding: 8bit"),
            "{id}: {part_header}"
        );
        assert!(raw.contains("Subject: inner msg\r\n"), "{id}: {raw}");
    }
}

#[actix_web::test]
async fn a_raw_header_value_survives_get_and_create_round_trips_unchanged() {
    let t = setup().await;
    // RFC 8621 §4.1.2.1: the Raw form keeps the space after the colon.
    let mut value = json!(" keep-me");
    for round in 0..3 {
        let r = t
            .create(json!({"d": {"subject": "draft", "header:X-Foo": value}}))
            .await;
        let g = t
            .call(
                json!([["Email/get", {"accountId": t.account, "ids": [r["created"]["d"]["id"]],
                "properties": ["header:X-Foo"]}, "0"]]),
            )
            .await;
        value = g[0][1]["list"][0]["header:X-Foo"].clone();
        assert_eq!(value, " keep-me", "after round {round}");
    }
}

/// What mail clients send for an HTML message with an inline image: the image with the HTML in
/// `multipart/related` (RFC 2387), the other attachments around in `multipart/mixed`. Read back
/// (RFC 8621 §4.1.4), the image is not part of the text or HTML body (it was shown twice), and
/// every part keeps its name, disposition, language and location.
#[actix_web::test]
async fn an_inline_image_goes_with_the_html_and_parts_keep_what_they_say_of_themselves() {
    let t = setup().await;
    let png = t.upload(b"\x89PNG\r\n\x1a\n....");
    let pdf = t.upload(b"%PDF-1.4 ....");
    let r = t
        .create(json!({"e": {
            "subject": "inline",
            "textBody": [{"partId": "t", "type": "text/plain"}],
            "htmlBody": [{"partId": "h", "type": "text/html"}],
            "bodyValues": {"t": {"value": "logo"}, "h": {"value": "<img src=\"cid:logo@x\">"}},
            "attachments": [
                {"blobId": png, "type": "image/png", "disposition": "inline", "cid": "logo@x",
                 "name": "logo.png"},
                {"blobId": pdf, "type": "application/pdf", "name": "doc.pdf",
                 "language": ["en"], "location": "https://example.com/doc.pdf"},
                {"blobId": pdf, "type": "application/pdf"}
            ]
        }}))
        .await;
    let id = r["created"]["e"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_owned();
    let r = t
        .call(json!([["Email/get", {"accountId": t.account, "ids": [id],
            "properties": ["bodyStructure", "textBody", "htmlBody", "attachments"]}, "0"]]))
        .await;
    let e = &r[0][1]["list"][0];
    let tree = &e["bodyStructure"];
    assert_eq!(tree["type"], "multipart/mixed", "{tree}");
    assert_eq!(
        tree["subParts"][0]["type"], "multipart/alternative",
        "{tree}"
    );
    let related = &tree["subParts"][0]["subParts"][1];
    assert_eq!(related["type"], "multipart/related", "{tree}");
    assert_eq!(related["subParts"][0]["type"], "text/html");
    let image = &related["subParts"][1];
    assert_eq!(
        (
            &image["type"],
            &image["cid"],
            &image["disposition"],
            &image["name"]
        ),
        (
            &json!("image/png"),
            &json!("logo@x"),
            &json!("inline"),
            &json!("logo.png")
        )
    );
    let types = |list: &Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(types(&e["textBody"]), ["text/plain"]);
    assert_eq!(types(&e["htmlBody"]), ["text/html"]);
    let doc = &tree["subParts"][1];
    assert_eq!(
        (&doc["name"], &doc["disposition"]),
        (&json!("doc.pdf"), &json!("attachment"))
    );
    assert_eq!(doc["language"], json!(["en"]));
    assert_eq!(doc["location"], "https://example.com/doc.pdf");
    // No name given, none invented.
    assert_eq!(tree["subParts"][2]["name"], Value::Null, "{tree}");
    assert_eq!(tree["subParts"][2]["disposition"], "attachment");
}
