//! Blobs over real HTTP (RFC 8620 §6, checklist BIN-*): upload, download, limits, visibility,
//! Blob/copy (CPY-05) and Email/parse (EPAR-01, EPAR-02) of uploaded messages.

use crate::harness;
use crate::harness::{Auth, CORE, TestServer, on_both_backends};
use awc::http::StatusCode;
use diesel::prelude::*;
use serde_json::{Value, json};

const MAIL: &str = "urn:ietf:params:jmap:mail";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/mime/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// The user's own account id, from the session.
async fn own_account(s: &TestServer, auth: &Auth) -> String {
    let session = s.get("/jmap/session", auth).await.body;
    session["accounts"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, a)| a["isPersonal"] == true)
        .map(|(id, _)| id.clone())
        .unwrap()
}

async fn upload(
    s: &TestServer,
    auth: &Auth,
    account: &str,
    ty: &str,
    body: &[u8],
) -> harness::Answer {
    s.post_raw(&format!("/jmap/upload/{account}/"), auth, ty, body.to_vec())
        .await
}

/// Lets `user` use `owner`'s account (writable), as sharing will.
fn share(s: &TestServer, owner_account: &str, user: &str) {
    use herald::store::schema::account_access;
    let mut conn = s.store.conn().unwrap();
    let user = herald::store::users::find_by_name(&mut conn, user)
        .unwrap()
        .unwrap();
    diesel::insert_into(account_access::table)
        .values((
            account_access::user_id.eq(&user.id),
            account_access::account_id.eq(owner_account),
            account_access::is_owner.eq(false),
            account_access::may_write.eq(true),
        ))
        .execute(&mut *conn)
        .unwrap();
}

/// RFC 9110 §9.1 (HEAD) and RFC 8620 §6.2: `name` is any string, the empty one too (a client
/// may expand a part without a name as "").
#[actix_web::test]
async fn a_download_answers_head_and_takes_an_empty_name() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let account = own_account(&s, &alice).await;
    let a = upload(&s, &alice, &account, "text/plain", b"hello").await;
    let blob = a.body["blobId"].as_str().unwrap().to_owned();
    let empty = s
        .get(
            &format!("/jmap/download/{account}/{blob}/?type=text/plain"),
            &alice,
        )
        .await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(empty.raw, b"hello");
    let req = harness::authorize(
        harness::client().head(s.url(&format!("/jmap/download/{account}/{blob}/a.txt"))),
        &alice,
    );
    let head = harness::answer(req.send().await.unwrap()).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.raw.is_empty());
    assert_eq!(head.headers.get("content-length").unwrap(), "5");
    assert!(head.headers.contains_key("content-disposition"));
}

#[on_both_backends]
async fn an_upload_comes_back_byte_for_byte_with_the_download_headers() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw-alice");
    let account = own_account(&s, &alice).await;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let a = upload(&s, &alice, &account, "application/x-thing", &bytes).await;
    // BIN-04: 201, JSON typed application/json, not the upload's type.
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    assert_eq!(a.content_type, "application/json");
    assert_eq!(a.body["accountId"], account);
    assert_eq!(a.body["type"], "application/x-thing");
    assert_eq!(a.body["size"], 5000);
    let blob_id = a.body["blobId"].as_str().unwrap().to_owned();
    assert!(herald::jmap::args::Id::is_valid(&blob_id), "T-02");
    // BIN-05: identical bytes, same blob id.
    let again = upload(&s, &alice, &account, "text/plain", &bytes).await;
    assert_eq!(again.body["blobId"], blob_id);

    // BIN-10: a name with a percent-encoded slash and non-ASCII characters.
    let d = s
        .get(
            &format!("/jmap/download/{account}/{blob_id}/r%C3%A9sum%C3%A9%2Fv1.bin?type=application%2Fpdf"),
            &alice,
        )
        .await;
    assert_eq!(d.status, StatusCode::OK);
    assert_eq!(d.raw, bytes);
    assert_eq!(d.content_type, "application/pdf", "BIN-11");
    let header = |name: &str| d.headers.get(name).unwrap().to_str().unwrap().to_owned();
    assert_eq!(
        header("cache-control"),
        "private, immutable, max-age=31536000"
    );
    assert_eq!(header("x-content-type-options"), "nosniff");
    let disposition = header("content-disposition");
    assert!(
        disposition.contains("filename*=UTF-8''r%C3%A9sum%C3%A9%2Fv1.bin"),
        "{disposition}"
    );
    // BIN-13: active content is never shown inline.
    let html = s
        .get(
            &format!("/jmap/download/{account}/{blob_id}/x.html?type=text/html"),
            &alice,
        )
        .await;
    assert!(
        html.headers
            .get("content-disposition")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    s.stop().await;
}

#[on_both_backends]
async fn an_upload_over_max_size_upload_is_a_limit_problem() {
    // BIN-06
    let s = TestServer::start_with(|c| c.limits.max_size_upload = 1000).await;
    let alice = s.add_user("alice", "pw-alice");
    let account = own_account(&s, &alice).await;
    let session = s.get("/jmap/session", &alice).await.body;
    assert_eq!(session["capabilities"][CORE]["maxSizeUpload"], 1000);
    let a = upload(
        &s,
        &alice,
        &account,
        "application/octet-stream",
        &[7u8; 1001],
    )
    .await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.content_type, "application/problem+json");
    assert_eq!(a.body["type"], "urn:ietf:params:jmap:error:limit");
    assert_eq!(a.body["limit"], "maxSizeUpload");
    let ok = upload(
        &s,
        &alice,
        &account,
        "application/octet-stream",
        &[7u8; 1000],
    )
    .await;
    assert_eq!(ok.status, StatusCode::CREATED);
    s.stop().await;
}

#[on_both_backends]
async fn unknown_blobs_and_other_users_blobs_are_404_problems() {
    // BIN-07, BIN-12, BIN-13
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw-alice");
    let bob = s.add_user("bob", "pw-bob");
    let alice_account = own_account(&s, &alice).await;
    let bob_account = own_account(&s, &bob).await;
    let a = upload(&s, &alice, &alice_account, "text/plain", b"secret").await;
    let blob_id = a.body["blobId"].as_str().unwrap().to_owned();

    let unknown = format!("b{}", "0".repeat(64));
    let d = s
        .get(
            &format!("/jmap/download/{alice_account}/{unknown}/x"),
            &alice,
        )
        .await;
    assert_eq!(d.status, StatusCode::NOT_FOUND);
    assert_eq!(d.content_type, "application/problem+json");
    // Bob can see neither alice's account nor her blob through his own account.
    for account in [&alice_account, &bob_account] {
        let d = s
            .get(&format!("/jmap/download/{account}/{blob_id}/x"), &bob)
            .await;
        assert_eq!(d.status, StatusCode::NOT_FOUND, "{account}");
    }
    // Not even when the account is shared with him: a fresh upload is the uploader's alone.
    share(&s, &alice_account, "bob");
    let d = s
        .get(&format!("/jmap/download/{alice_account}/{blob_id}/x"), &bob)
        .await;
    assert_eq!(d.status, StatusCode::NOT_FOUND);
    // Uploading to an account one cannot see is 404; without credentials 401.
    let stranger = s.add_user("carol", "pw-carol");
    let a = upload(&s, &stranger, &alice_account, "text/plain", b"x").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = upload(&s, &Auth::None, &alice_account, "text/plain", b"x").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    s.stop().await;
}

#[on_both_backends]
async fn blob_copy_makes_a_blob_available_in_another_account() {
    // CPY-05
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw-alice");
    let bob = s.add_user("bob", "pw-bob");
    let alice_account = own_account(&s, &alice).await;
    let bob_account = own_account(&s, &bob).await;
    share(&s, &bob_account, "alice");
    let blob_id = upload(&s, &alice, &alice_account, "text/plain", b"copy me")
        .await
        .body["blobId"]
        .as_str()
        .unwrap()
        .to_owned();
    let missing = format!("b{}", "1".repeat(64));
    let download = |account: String| {
        let path = format!("/jmap/download/{account}/{blob_id}/f.txt");
        let s = &s;
        let alice = &alice;
        async move { s.get(&path, alice).await }
    };
    assert_eq!(
        download(bob_account.clone()).await.status,
        StatusCode::NOT_FOUND
    );
    let r = s
        .call(
            &alice,
            &[CORE],
            json!([["Blob/copy", {"fromAccountId": alice_account, "accountId": bob_account, "blobIds": [blob_id, missing]}, "c1"],
                   ["Blob/copy", {"fromAccountId": "nope", "accountId": bob_account, "blobIds": [blob_id]}, "c2"]]),
        )
        .await;
    assert_eq!(r[0][0], "Blob/copy");
    assert_eq!(r[0][1]["fromAccountId"], alice_account);
    assert_eq!(r[0][1]["accountId"], bob_account);
    assert_eq!(r[0][1]["copied"], json!({ &blob_id: &blob_id }));
    assert_eq!(r[0][1]["notCopied"][&missing]["type"], "notFound");
    assert_eq!(r[1][1]["type"], "fromAccountNotFound");
    let d = download(bob_account.clone()).await;
    assert_eq!(
        (d.status, d.raw.as_slice()),
        (StatusCode::OK, &b"copy me"[..])
    );
    s.stop().await;
}

#[on_both_backends]
async fn email_parse_reads_an_uploaded_message_and_its_parts_download() {
    // EPAR-01, EPAR-02
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw-alice");
    let account = own_account(&s, &alice).await;
    let raw = fixture("mixed.eml");
    let blob_id = upload(&s, &alice, &account, "message/rfc822", &raw)
        .await
        .body["blobId"]
        .as_str()
        .unwrap()
        .to_owned();
    let garbage = upload(&s, &alice, &account, "application/octet-stream", b"")
        .await
        .body["blobId"]
        .as_str()
        .unwrap()
        .to_owned();
    let unknown = format!("b{}", "2".repeat(64));
    let r = s
        .call(
            &alice,
            &[CORE, MAIL],
            json!([["Email/parse", {
                "accountId": account,
                "blobIds": [blob_id, garbage, unknown],
                "fetchHTMLBodyValues": true,
            }, "p1"]]),
        )
        .await;
    assert_eq!(r[0][0], "Email/parse", "{r:?}");
    let args = &r[0][1];
    assert_eq!(args["accountId"], account);
    assert_eq!(args["notParsable"], json!([garbage]));
    assert_eq!(args["notFound"], json!([unknown]));
    let email = &args["parsed"][&blob_id];
    assert_eq!(email["subject"], "Report with attachments");
    assert_eq!(
        email["from"],
        json!([{"name": null, "email": "sender@example.com"}])
    );
    assert_eq!(email["sentAt"], "2024-01-01T10:00:00Z");
    assert_eq!(email["hasAttachment"], true);
    assert!(
        email.get("id").is_none(),
        "metadata is not in the default properties"
    );
    let html_id = email["htmlBody"][0]["partId"].as_str().unwrap();
    assert!(
        email["bodyValues"][html_id]["value"]
            .as_str()
            .unwrap()
            .contains("cid:chart@x")
    );
    let pdf = email["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"] == "application/pdf")
        .unwrap()
        .clone();
    // A part's blob id downloads the part's decoded bytes.
    let d = s
        .get(
            &format!(
                "/jmap/download/{account}/{}/report.pdf?type=application/pdf",
                pdf["blobId"].as_str().unwrap()
            ),
            &alice,
        )
        .await;
    assert_eq!(d.status, StatusCode::OK);
    assert_eq!(d.raw, b"%PDF-1.4 fake pdf bytes \x00\x01\x02");
    assert_eq!(pdf["size"], d.raw.len());

    // Metadata on request is null, header forms follow Email/get's rules, keys as spelled.
    let r = s
        .call(
            &alice,
            &[CORE, MAIL],
            json!([
                ["Email/parse", {"accountId": account, "blobIds": [blob_id],
                  "properties": ["id", "blobId", "mailboxIds", "keywords", "receivedAt", "threadId", "size", "header:SUBJECT:asText"]}, "p2"],
                ["Email/parse", {"accountId": account, "blobIds": [blob_id], "properties": ["header:From:asDate"]}, "p3"],
                ["Email/parse", {"accountId": account, "blobIds": [blob_id]}, "p4"],
            ]),
        )
        .await;
    let e = &r[0][1]["parsed"][&blob_id];
    for key in ["id", "mailboxIds", "keywords", "receivedAt", "threadId"] {
        assert_eq!(e[key], Value::Null, "{key}");
    }
    assert_eq!(e["blobId"], blob_id);
    assert_eq!(e["size"], raw.len());
    assert_eq!(e["header:SUBJECT:asText"], "Report with attachments");
    assert_eq!(r[1][1]["type"], "invalidArguments", "EML-07");
    // Without the mail capability in `using`, Email/parse does not exist.
    let r = s
        .call(
            &alice,
            &[CORE],
            json!([["Email/parse", {"accountId": account, "blobIds": [blob_id]}, "p5"]]),
        )
        .await;
    assert_eq!(r[0][1]["type"], "unknownMethod");
    s.stop().await;
}

#[on_both_backends]
async fn references_share_a_blob_with_the_account_and_purge_keeps_what_is_used() {
    // BIN-07, BIN-08, BIN-09: the store API Email code builds on.
    use herald::store::blobs;
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw-alice");
    let _bob = s.add_user("bob", "pw-bob");
    let account = own_account(&s, &alice).await;
    share(&s, &account, "bob");
    let mut conn = s.store.conn().unwrap();
    let alice_id = herald::store::users::find_by_name(&mut conn, "alice")
        .unwrap()
        .unwrap()
        .id;
    let bob_id = herald::store::users::find_by_name(&mut conn, "bob")
        .unwrap()
        .unwrap()
        .id;
    let raw = fixture("forwarded.eml");
    let blob = blobs::upload(&mut conn, &account, &alice_id, &raw).unwrap();
    assert_eq!(blob, blobs::blob_id_for(&raw));
    assert!(blobs::is_stored_id(&blob));
    assert!(blobs::visible(&mut conn, &account, &alice_id, &blob).unwrap());
    assert!(!blobs::visible(&mut conn, &account, &bob_id, &blob).unwrap());
    // An object of the account referencing the message makes it, and its parts, everyone's.
    blobs::add_reference(&mut conn, &account, &blob, "EmailSubmission", "s1").unwrap();
    blobs::add_reference(&mut conn, &account, &blob, "EmailSubmission", "s1").unwrap();
    let attached = format!("{blob}_3");
    assert!(blobs::visible(&mut conn, &account, &bob_id, &attached).unwrap());
    let inner = blobs::read_visible(&mut conn, &account, &bob_id, &attached)
        .unwrap()
        .unwrap();
    assert!(inner.starts_with(b"From: c@example.com"));
    // A fresh upload is kept; a referenced blob is kept after the upload expires.
    let now = herald::store::now();
    assert_eq!(
        blobs::purge(&mut conn, now, blobs::UPLOAD_TTL_SECS).unwrap(),
        0
    );
    assert_eq!(
        blobs::purge(&mut conn, now + 7200, blobs::UPLOAD_TTL_SECS).unwrap(),
        0
    );
    assert!(blobs::get(&mut conn, &blob).unwrap().is_some());
    assert_eq!(
        blobs::remove_references(&mut conn, &account, "EmailSubmission", "s1").unwrap(),
        1
    );
    assert_eq!(
        blobs::purge(&mut conn, now + 7200, blobs::UPLOAD_TTL_SECS).unwrap(),
        1
    );
    assert!(blobs::read(&mut conn, &blob).unwrap().is_none());
    drop(conn);
    s.stop().await;
}

#[on_both_backends]
async fn an_email_shares_its_message_with_the_account_and_purge_keeps_it_while_the_email_exists() {
    // BIN-07, BIN-08, BIN-09: an email is its message's reference (no `blob_refs` row).
    use herald::store::blobs;
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw-alice");
    let bob = s.add_user("bob", "pw-bob");
    let account = own_account(&s, &alice).await;
    share(&s, &account, "bob");
    let raw = fixture("forwarded.eml");
    let a = upload(&s, &alice, &account, "message/rfc822", &raw).await;
    let blob = a.body["blobId"].as_str().unwrap().to_owned();
    let download = format!("/jmap/download/{account}/{blob}_3/x");
    assert_eq!(s.get(&download, &bob).await.status, StatusCode::NOT_FOUND);
    let inbox = harness::push::inbox_id(&s, &alice, &account).await;
    let r = s
        .call(
            &alice,
            &[CORE, MAIL],
            json!([["Email/import", {"accountId": account, "emails": {
                "m": {"blobId": blob, "mailboxIds": {inbox: true}}}}, "0"]]),
        )
        .await;
    let email = r[0][1]["created"]["m"]["id"].as_str().unwrap().to_owned();
    // The email makes the message, and its parts, visible to whoever may read the account.
    let d = s.get(&download, &bob).await;
    assert_eq!(d.status, StatusCode::OK);
    assert!(d.raw.starts_with(b"From: c@example.com"));
    // The upload expires; the email keeps its message.
    let now = herald::store::now();
    let mut conn = s.store.conn().unwrap();
    assert_eq!(
        blobs::purge(&mut conn, now + 7200, blobs::UPLOAD_TTL_SECS).unwrap(),
        0
    );
    drop(conn);
    assert_eq!(s.get(&download, &bob).await.status, StatusCode::OK);
    // Once the email is gone, nothing uses the message: hidden, then purged.
    let r = s
        .call(
            &alice,
            &[CORE, MAIL],
            json!([["Email/set", {"accountId": account, "destroy": [email]}, "0"]]),
        )
        .await;
    assert_eq!(r[0][1]["destroyed"], json!([email]), "{r:?}");
    assert_eq!(s.get(&download, &bob).await.status, StatusCode::NOT_FOUND);
    let mut conn = s.store.conn().unwrap();
    assert_eq!(
        blobs::purge(&mut conn, now + 7200, blobs::UPLOAD_TTL_SECS).unwrap(),
        1
    );
    assert!(blobs::get(&mut conn, &blob).unwrap().is_none());
    drop(conn);
    s.stop().await;
}

#[on_both_backends]
async fn email_parse_reads_an_attached_message_by_its_part_blob_id() {
    // EPAR-01: an attached message/rfc822 is a blob of its own that parses in turn.
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw-alice");
    let account = own_account(&s, &alice).await;
    let blob_id = upload(
        &s,
        &alice,
        &account,
        "message/rfc822",
        &fixture("forwarded.eml"),
    )
    .await
    .body["blobId"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .call(
            &alice,
            &[CORE, MAIL],
            json!([
                ["Email/parse", {"accountId": account, "blobIds": [blob_id], "properties": ["attachments"]}, "a"],
                ["Email/parse", {"accountId": account, "#blobIds": {"resultOf": "a", "name": "Email/parse", "path": format!("/parsed/{blob_id}/attachments/*/blobId")},
                  "properties": ["subject", "messageId", "textBody", "bodyValues"], "fetchTextBodyValues": true}, "b"],
            ]),
        )
        .await;
    let attached = r[0][1]["parsed"][&blob_id]["attachments"][0]["blobId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(attached, format!("{blob_id}_3"));
    let inner = &r[1][1]["parsed"][&attached];
    assert_eq!(inner["subject"], "original", "{r:?}");
    assert_eq!(inner["messageId"], json!(["orig@example.com"]));
    let text_id = inner["textBody"][0]["partId"].as_str().unwrap();
    assert_eq!(inner["bodyValues"][text_id]["value"], "Inner text.");
    assert_eq!(
        inner["textBody"][0]["blobId"],
        format!("{attached}_{text_id}")
    );
    s.stop().await;
}

// The limiter is in the HTTP layer, before the store: SQLite only.
#[actix_web::test]
async fn uploads_beyond_max_concurrent_upload_are_limit_problems() {
    // BIN-06: one upload is held open mid-body; others by the same user are refused meanwhile.
    let s = TestServer::start_with(|c| c.limits.max_concurrent_upload = 1).await;
    let alice = s.add_user("alice", "pw-alice");
    let bob = s.add_user("bob", "pw-bob");
    let account = own_account(&s, &alice).await;
    let bob_account = own_account(&s, &bob).await;
    // A raw socket, so that the request head and half of the body are surely on the wire.
    use base64::Engine;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = s.base.trim_start_matches("http://").to_owned();
    let credentials = base64::engine::general_purpose::STANDARD.encode("alice:pw-alice");
    let head = format!(
        "POST /jmap/upload/{account}/ HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {credentials}\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\nc\r\nfirst half, \r\n"
    );
    let hold = || async {
        let mut held = tokio::net::TcpStream::connect(&addr).await.unwrap();
        held.write_all(head.as_bytes()).await.unwrap();
        held.flush().await.unwrap();
        held
    };
    let mut held = hold().await;
    // Once the held upload has its slot, a second one is refused; give it a bounded number of tries.
    let mut refused = None;
    for _ in 0..500 {
        let a = upload(&s, &alice, &account, "text/plain", b"second").await;
        if a.status == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(a);
            break;
        }
        assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
        // The held upload may have lost the race for the slot to this probe and been answered
        // already: hold a new one.
        let mut byte = [0u8; 1];
        if let Ok(Ok(_)) =
            tokio::time::timeout(std::time::Duration::from_millis(5), held.peek(&mut byte)).await
        {
            held = hold().await;
        }
    }
    let refused = refused.expect("the second upload was never refused");
    assert_eq!(refused.content_type, "application/problem+json");
    assert_eq!(refused.body["type"], "urn:ietf:params:jmap:error:limit");
    assert_eq!(refused.body["limit"], "maxConcurrentUpload");
    // Other users are not affected.
    let other = upload(&s, &bob, &bob_account, "text/plain", b"bob's").await;
    assert_eq!(other.status, StatusCode::CREATED);
    // Finishing the held upload frees the slot.
    held.write_all(b"b\r\nsecond half\r\n0\r\n\r\n")
        .await
        .unwrap();
    held.flush().await.unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let finished = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            let n = held.read(&mut buf).await.unwrap();
            response.extend_from_slice(&buf[..n]);
            if n == 0 || response.windows(6).any(|w| w == b"\"size\"") && response.ends_with(b"}") {
                break;
            }
        }
    })
    .await;
    assert!(finished.is_ok(), "the held upload finishes");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(response.contains("\"size\":23"), "{response}");
    let after = upload(&s, &alice, &account, "text/plain", b"third").await;
    assert_eq!(after.status, StatusCode::CREATED);
    s.stop().await;
}
