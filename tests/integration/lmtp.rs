//! LMTP ingest (RFC 2033) against the wire: the dialogue, per-recipient replies, limits, what is
//! stored, and the push every delivery makes. Checklist: issue 10 §1 and §3.

use serde_json::{Value, json};

use crate::harness::lmtp::{LmtpClient, stuff};
use crate::harness::push::{MAIL, account_id, ws_next, ws_pushed_everything};
use crate::harness::{Auth, CORE, TestServer, on_both_backends};

/// A small message; `extra` goes into the body.
fn message(subject: &str, extra: &str) -> Vec<u8> {
    format!(
        "From: Carol <carol@remote.test>\r\nTo: alice@localhost\r\nSubject: {subject}\r\n\
         Message-ID: <{subject}@remote.test>\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\n\r\n\
         Hello.\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// Every email of the user's account: subject, Return-Path, mailboxes, text.
async fn emails(s: &TestServer, auth: &Auth) -> Vec<Value> {
    let account = account_id(s, auth).await;
    let r = s
        .call(
            auth,
            &[CORE, MAIL],
            json!([
                ["Email/query", {"accountId": account}, "q"],
                ["Email/get", {"accountId": account,
                    "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                    "properties": ["subject", "header:Return-Path", "header:Received:all",
                        "mailboxIds", "textBody", "bodyValues"],
                    "fetchTextBodyValues": true}, "g"]
            ]),
        )
        .await;
    r[1][1]["list"]
        .as_array()
        .unwrap_or_else(|| panic!("{r:?}"))
        .clone()
}

/// The reply code to `RCPT TO:<address>` in a fresh session at `addr`.
async fn rcpt_code(addr: &str, address: &str) -> u16 {
    let mut c = LmtpClient::ready(addr).await;
    assert_eq!(c.command("MAIL FROM:<carol@remote.test>").await.code, 250);
    c.command(&format!("RCPT TO:<{address}>")).await.code
}

fn lmtp_addr(s: &TestServer) -> String {
    s.lmtp.clone().expect("an LMTP listener")
}

#[on_both_backends]
async fn each_accepted_recipient_gets_its_own_reply_and_unknown_ones_are_refused_at_rcpt() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw-alice-1");
    let bob = s.add_user("bob", "pw-bob-1");
    {
        let mut conn = s.store.conn().unwrap();
        herald::store::addresses::add_alias(&mut conn, "Sales@Example.org", "bob").unwrap();
    }
    let mut c = LmtpClient::ready(&lmtp_addr(&s)).await;
    let d = c
        .deliver(
            "carol@remote.test",
            &[
                "Alice@LOCALHOST",
                "nobody@localhost",
                "bob@localhost",
                "sales@example.ORG",
            ],
            &message("Quarterly", "figures"),
        )
        .await;
    let codes: Vec<u16> = d.rcpt.iter().map(|r| r.code).collect();
    assert_eq!(codes, [250, 550, 250, 250], "{d:?}");
    assert!(d.rcpt[1].text().starts_with("5.1.1"), "{d:?}");
    // RFC 2033 §4.2: one reply per accepted recipient, in RCPT order, each after its commit.
    assert_eq!(d.data.len(), 3, "{d:?}");
    for (reply, who) in d
        .data
        .iter()
        .zip(["Alice@LOCALHOST", "bob@localhost", "sales"])
    {
        assert_eq!(reply.code, 250, "{reply:?}");
        assert!(reply.text().starts_with("2.0.0"), "{reply:?}");
        assert!(reply.text().contains(who), "{reply:?}");
    }
    assert_eq!(c.command("QUIT").await.code, 221);

    let got = emails(&s, &alice).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["subject"], "Quarterly");
    assert_eq!(
        got[0]["header:Return-Path"].as_str().map(str::trim),
        Some("<carol@remote.test>")
    );
    let received = got[0]["header:Received:all"][0].as_str().unwrap();
    assert!(received.contains("with LMTP"), "{received}");
    // Bob was named twice (his address and an alias): one inbox, so one copy, and each RCPT
    // its own reply naming it.
    let got = emails(&s, &bob).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["subject"], "Quarterly");
    let email_of = |reply: &crate::harness::lmtp::Reply| {
        reply.text().rsplit_once('(').map(|(_, id)| id.to_owned())
    };
    assert_eq!(email_of(&d.data[1]), email_of(&d.data[2]), "{d:?}");
}

#[on_both_backends]
async fn a_delivery_is_received_now_whatever_the_dates_a_sender_wrote() {
    // Otherwise a Received field dated 2100 would sort a message above everything for decades.
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw-alice-1");
    let mut c = LmtpClient::ready(&lmtp_addr(&s)).await;
    let mut forged = b"Received: from evil by evil; Fri, 1 Jan 2100 00:00:00 +0000\r\n".to_vec();
    forged.extend_from_slice(&message("Future", ""));
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    let d = c
        .deliver("carol@remote.test", &["alice@localhost"], &forged)
        .await;
    assert_eq!(d.data[0].code, 250, "{d:?}");
    let account = account_id(&s, &alice).await;
    let r = s
        .call(
            &alice,
            &[CORE, MAIL],
            json!([["Email/query", {"accountId": account}, "q"],
                ["Email/get", {"accountId": account, "properties": ["receivedAt"],
                    "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"}}, "g"]]),
        )
        .await;
    let received = r[1][1]["list"][0]["receivedAt"]
        .as_str()
        .unwrap()
        .to_owned();
    let received = chrono::DateTime::parse_from_rfc3339(&received).unwrap();
    assert!(
        received >= before && received <= chrono::Utc::now() + chrono::Duration::seconds(5),
        "{received}"
    );
}

#[on_both_backends]
async fn pipelined_commands_are_answered_in_order() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw-alice-1");
    let (mut c, greeting) = LmtpClient::connect(&lmtp_addr(&s)).await;
    assert_eq!(greeting.code, 220);
    // RFC 2920: the whole envelope in one write, the replies read afterwards.
    c.send(
        b"LHLO mta.test\r\nMAIL FROM:<> BODY=8BITMIME\r\nRCPT TO:<alice@localhost>\r\n\
          RCPT TO:<ghost@localhost>\r\nDATA\r\n",
    )
    .await;
    let lhlo = c.reply().await.unwrap();
    assert_eq!(lhlo.code, 250);
    for extension in [
        "PIPELINING",
        "ENHANCEDSTATUSCODES",
        "8BITMIME",
        "SMTPUTF8",
        "SIZE",
    ] {
        assert!(
            lhlo.lines.iter().any(|l| l.starts_with(extension)),
            "{extension}: {lhlo:?}"
        );
    }
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(c.reply().await.unwrap().code);
    }
    assert_eq!(codes, [250, 250, 550, 354]);
    c.send(&stuff(&message("Pipelined", ""))).await;
    let done = c.reply().await.unwrap();
    assert_eq!(done.code, 250, "{done:?}");
    let got = emails(&s, &alice).await;
    assert_eq!(got.len(), 1);
    // A bounce (empty reverse path) keeps its empty Return-Path.
    assert_eq!(
        got[0]["header:Return-Path"].as_str().map(str::trim),
        Some("<>")
    );
}

#[on_both_backends]
async fn dot_stuffed_lines_and_8bit_utf8_messages_arrive_as_sent() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw-alice-1");
    {
        let mut conn = s.store.conn().unwrap();
        herald::store::addresses::add_alias(&mut conn, "jörg@localhost", "alice").unwrap();
    }
    let mut c = LmtpClient::ready(&lmtp_addr(&s)).await;
    let mail = c
        .command("MAIL FROM:<zoë@remote.test> BODY=8BITMIME SMTPUTF8")
        .await;
    assert_eq!(mail.code, 250, "{mail:?}");
    assert_eq!(c.command("RCPT TO:<jörg@localhost>").await.code, 250);
    assert_eq!(c.command("DATA").await.code, 354);
    let raw = "From: zoë@remote.test\r\nTo: jörg@localhost\r\nSubject: Grüße aus Köln\r\n\
               Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\
               .a line that starts with a dot\r\n..two dots\r\n.\r\n"
        .as_bytes();
    // Sent as it travels, stuffed: the server takes one leading dot off (RFC 5321 §4.5.2).
    c.send(raw).await;
    let first = c.reply().await.unwrap();
    assert_eq!(first.code, 250, "{first:?}");
    let d = c
        .deliver(
            "zoë@remote.test",
            &["alice@localhost"],
            "Subject: Stuffed\r\n\r\n.leading dot\r\n..two\r\nend\r\n".as_bytes(),
        )
        .await;
    assert_eq!(d.data[0].code, 250, "{d:?}");

    let got = emails(&s, &alice).await;
    let by_subject = |subject: &str| {
        got.iter()
            .find(|e| e["subject"] == subject)
            .unwrap_or_else(|| panic!("{subject}: {got:?}"))
            .clone()
    };
    let text = |e: &Value| {
        let part = e["textBody"][0]["partId"].as_str().unwrap().to_owned();
        e["bodyValues"][part]["value"].as_str().unwrap().to_owned()
    };
    let utf8 = by_subject("Grüße aus Köln");
    assert_eq!(
        utf8["header:Return-Path"].as_str().map(str::trim),
        Some("<zoë@remote.test>")
    );
    assert_eq!(text(&utf8), "a line that starts with a dot\n.two dots\n");
    assert_eq!(text(&by_subject("Stuffed")), ".leading dot\n..two\nend\n");
}

#[on_both_backends]
async fn messages_over_the_size_limit_are_refused_with_552_and_stored_nowhere() {
    let s = TestServer::start_with(|c| c.limits.max_size_upload = 2_000).await;
    let alice = s.add_user("alice", "pw-alice-1");
    let mut c = LmtpClient::ready(&lmtp_addr(&s)).await;
    // Announced with SIZE: refused at MAIL.
    let mail = c.command("MAIL FROM:<carol@remote.test> SIZE=5000").await;
    assert_eq!(mail.code, 552, "{mail:?}");
    assert!(mail.text().starts_with("5.3.4"), "{mail:?}");
    // Not announced: read to its end, then refused for each recipient.
    let big = message("Big", &"x".repeat(5_000));
    let d = c
        .deliver("carol@remote.test", &["alice@localhost"], &big)
        .await;
    assert_eq!(d.data.len(), 1);
    assert_eq!(d.data[0].code, 552, "{d:?}");
    // The session goes on.
    let d = c
        .deliver(
            "carol@remote.test",
            &["alice@localhost"],
            &message("Small", ""),
        )
        .await;
    assert_eq!(d.data[0].code, 250, "{d:?}");
    let got = emails(&s, &alice).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["subject"], "Small");
}

#[on_both_backends]
async fn a_client_that_disconnects_mid_data_leaves_nothing_stored() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw-alice-1");
    let mut c = LmtpClient::ready(&lmtp_addr(&s)).await;
    assert_eq!(c.command("MAIL FROM:<carol@remote.test>").await.code, 250);
    assert_eq!(c.command("RCPT TO:<alice@localhost>").await.code, 250);
    assert_eq!(c.command("DATA").await.code, 354);
    c.send(b"Subject: Cut off\r\n\r\nhalf a message\r\n").await;
    drop(c);
    // A later, complete delivery: afterwards only it is in the account.
    let mut c = LmtpClient::ready(&lmtp_addr(&s)).await;
    let d = c
        .deliver(
            "carol@remote.test",
            &["alice@localhost"],
            &message("Whole", ""),
        )
        .await;
    assert_eq!(d.data[0].code, 250);
    let got = emails(&s, &alice).await;
    let subjects: Vec<&Value> = got.iter().map(|e| &e["subject"]).collect();
    assert_eq!(subjects, [&json!("Whole")]);
}

#[on_both_backends]
async fn commands_out_of_order_and_unknown_get_spec_replies() {
    let s = TestServer::start_with(|c| c.lmtp.max_recipients = 2).await;
    s.add_user("alice", "pw-alice-1");
    let (mut c, _) = LmtpClient::connect(&lmtp_addr(&s)).await;
    assert_eq!(c.command("EHLO mta.test").await.code, 500);
    assert_eq!(c.command("MAIL FROM:<a@b.test>").await.code, 503);
    assert_eq!(c.command("LHLO mta.test").await.code, 250);
    assert_eq!(c.command("RCPT TO:<alice@localhost>").await.code, 503);
    // RFC 5321 §3.5.3: 252, cannot verify but will accept.
    assert_eq!(c.command("VRFY alice").await.code, 252);
    assert_eq!(c.command("MAIL FROM:<a@b.test> AUTH=x").await.code, 555);
    assert_eq!(c.command("MAIL FROM:<a@b.test>").await.code, 250);
    assert_eq!(c.command("MAIL FROM:<a@b.test>").await.code, 503);
    assert_eq!(c.command("DATA").await.code, 503);
    assert_eq!(c.command("RCPT TO:<alice@localhost>").await.code, 250);
    assert_eq!(c.command("RCPT TO:<alice@localhost>").await.code, 250);
    let third = c.command("RCPT TO:<alice@localhost>").await;
    assert_eq!(
        (third.code, third.text()[..5].to_owned()),
        (452, "4.5.3".into())
    );
    assert_eq!(c.command("RSET").await.code, 250);
    assert_eq!(c.command("DATA").await.code, 503);
    assert_eq!(c.command("NOOP").await.code, 250);
    assert_eq!(c.command("STARTTLS").await.code, 500);
    assert_eq!(c.command(&"X".repeat(5000)).await.code, 500);
    assert_eq!(c.command("QUIT").await.code, 221);
    assert!(c.reply().await.is_none(), "the server closes after QUIT");
}

#[on_both_backends]
async fn a_delivery_reaches_the_recipients_websocket_as_email_delivery() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw-alice-1");
    let account = account_id(&s, &alice).await;
    let mut ws = ws_pushed_everything(&s, &alice).await;
    let mut c = LmtpClient::ready(&lmtp_addr(&s)).await;
    let d = c
        .deliver(
            "carol@remote.test",
            &["alice@localhost"],
            &message("Pushed", ""),
        )
        .await;
    assert_eq!(d.data[0].code, 250);
    let change = ws_next(&mut ws).await.expect("a StateChange");
    assert_eq!(change["@type"], "StateChange", "{change}");
    let types = &change["changed"][&account];
    for t in ["EmailDelivery", "Email", "Mailbox", "Thread"] {
        assert!(types[t].is_string(), "{t}: {change}");
    }
}

#[actix_web::test]
async fn a_stopping_server_finishes_the_delivery_in_progress_and_sends_idle_sessions_away() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw-alice-1");
    let addr = lmtp_addr(&s);
    let mut idle = LmtpClient::ready(&addr).await;
    let mut busy = LmtpClient::ready(&addr).await;
    assert_eq!(
        busy.command("MAIL FROM:<carol@remote.test>").await.code,
        250
    );
    assert_eq!(busy.command("RCPT TO:<alice@localhost>").await.code, 250);
    assert_eq!(busy.command("DATA").await.code, 354);
    busy.send(b"Subject: In flight\r\n\r\nfirst half\r\n").await;
    let store = s.store.clone();
    let stopping = actix_web::rt::spawn(s.stop());
    let bye = idle.reply().await.expect("a 421 before closing");
    assert_eq!(bye.code, 421, "{bye:?}");
    busy.send(b"second half\r\n.\r\n").await;
    let done = busy.reply().await.expect("the delivery's reply");
    assert_eq!(done.code, 250, "{done:?}");
    stopping.await.unwrap();
    // Stored, though the node has stopped since.
    use diesel::prelude::*;
    use herald::store::schema::emails;
    let mut conn = store.conn().unwrap();
    let stored: i64 = emails::table.count().get_result(&mut conn).unwrap();
    assert_eq!(stored, 1);
    drop(alice);
    assert!(
        tokio::net::TcpStream::connect(&addr).await.is_err(),
        "the listener is closed"
    );
}

#[actix_web::test]
async fn lmtp_listens_on_a_unix_socket_with_the_configured_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lmtp.sock");
    let listen = format!("unix:{}", path.display());
    let s = TestServer::start_with(|c| {
        c.lmtp.listen = listen.clone();
        c.lmtp.socket_mode = 0o600;
    })
    .await;
    let alice = s.add_user("alice", "pw-alice-1");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let mut c = LmtpClient::ready(&listen).await;
    let d = c
        .deliver(
            "carol@remote.test",
            &["alice@localhost"],
            &message("Local", ""),
        )
        .await;
    assert_eq!(d.data[0].code, 250, "{d:?}");
    assert_eq!(emails(&s, &alice).await.len(), 1);
    s.stop().await;
    assert!(
        !path.exists(),
        "the socket is removed when the server stops"
    );
}

#[actix_web::test]
async fn connections_beyond_the_cap_hear_421() {
    let s = TestServer::start_with(|c| c.lmtp.max_connections = 1).await;
    let addr = lmtp_addr(&s);
    let _first = LmtpClient::ready(&addr).await;
    let (_second, greeting) = LmtpClient::connect(&addr).await;
    assert_eq!(greeting.code, 421, "{greeting:?}");
}

#[on_both_backends]
async fn herald_alias_decides_which_addresses_reach_a_user() {
    let s = TestServer::start().await;
    s.add_user("bob", "pw-bob-1");
    let addr = lmtp_addr(&s);
    let rcpt = |address: &'static str| rcpt_code(&addr, address);
    assert_eq!(rcpt("sales@example.org").await, 550);

    let (ok, out) = s.cli(&["alias", "add", "Sales@Example.org", "--to", "bob"]);
    assert!(ok, "{out}");
    assert_eq!(rcpt("sales@example.org").await, 250);
    assert_eq!(rcpt("other@example.org").await, 550);
    let (ok, out) = s.cli(&["alias", "add", "@example.org", "--to", "bob"]);
    assert!(ok, "{out}");
    assert_eq!(rcpt("other@EXAMPLE.org").await, 250);
    assert_eq!(rcpt("other@example.net").await, 550);

    let (ok, out) = s.cli(&["alias", "list"]);
    assert!(ok, "{out}");
    assert_eq!(out, "@example.org\tbob\nsales@example.org\tbob\n");

    // Clear errors, no panics: a taken alias, an unknown user, a bad address, a missing alias.
    for args in [
        &["alias", "add", "sales@example.org", "--to", "bob"][..],
        &["alias", "add", "x@example.org", "--to", "nobody"],
        &["alias", "add", "not an address", "--to", "bob"],
        &["alias", "remove", "ghost@example.org"],
    ] {
        let (ok, out) = s.cli(args);
        assert!(!ok, "{args:?}: {out}");
        assert_eq!(out.lines().count(), 1, "{args:?}: one clear line: {out}");
        assert!(!out.contains("panicked"), "{out}");
    }

    let (ok, out) = s.cli(&["alias", "remove", "@example.org"]);
    assert!(ok, "{out}");
    assert_eq!(rcpt("other@example.org").await, 550);
    assert_eq!(rcpt("sales@example.org").await, 250);
}

#[on_both_backends]
async fn a_subaddress_reaches_its_user_and_a_bare_postmaster_is_the_mail_domains() {
    // RFC 5233 subaddresses; RFC 5321 §4.5.1 `postmaster` without a domain.
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw-alice-1");
    s.add_user("bob", "pw-bob-1");
    let mut c = LmtpClient::ready(&lmtp_addr(&s)).await;
    let d = c
        .deliver(
            "carol@remote.test",
            &["Alice+Lists@localhost", "+x@localhost"],
            &message("Tagged", ""),
        )
        .await;
    assert_eq!(
        d.rcpt.iter().map(|r| r.code).collect::<Vec<_>>(),
        [250, 550],
        "{d:?}"
    );
    assert_eq!(d.data[0].code, 250, "{d:?}");
    assert_eq!(emails(&s, &alice).await.len(), 1);

    let addr = lmtp_addr(&s);
    let rcpt = |address: &'static str| rcpt_code(&addr, address);
    assert_eq!(rcpt("Postmaster").await, 550, "nobody is postmaster yet");
    let (ok, out) = s.cli(&["alias", "add", "postmaster@localhost", "--to", "bob"]);
    assert!(ok, "{out}");
    assert_eq!(rcpt("Postmaster").await, 250);
}
