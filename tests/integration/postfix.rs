//! A real Postfix in front of Herald (issue 10 §3): mail sent with an ordinary SMTP client to
//! Postfix reaches the recipient's inbox through LMTP, the recipient's WebSocket hears of it at
//! once, and an unknown recipient is refused while the sender is still connected.

use lettre::message::Mailbox;
use lettre::{Message, SmtpTransport, Transport};
use serde_json::json;

use crate::harness::postfix::PrivatePostfix;
use crate::harness::push::{MAIL, account_id, ws_connect, ws_next, ws_push_enable};
use crate::harness::{CORE, TestServer};

const DOMAIN: &str = "herald.test";

/// Sends one message over SMTP to `smtp` (`127.0.0.1:PORT`), off the test's thread.
async fn send(smtp: &str, to: &str, subject: &str) -> Result<(), lettre::transport::smtp::Error> {
    let (host, port) = smtp.rsplit_once(':').unwrap();
    let transport = SmtpTransport::builder_dangerous(host)
        .port(port.parse().unwrap())
        .build();
    let message = Message::builder()
        .from("Carol <carol@remote.test>".parse::<Mailbox>().unwrap())
        .to(to.parse::<Mailbox>().unwrap())
        .subject(subject)
        .body("Sent through Postfix.\n".to_owned())
        .unwrap();
    actix_web::rt::task::spawn_blocking(move || transport.send(&message).map(|_| ()))
        .await
        .unwrap()
}

#[actix_web::test]
async fn mail_sent_to_postfix_reaches_the_inbox_and_the_websocket_and_unknown_recipients_bounce_at_rcpt()
 {
    let s = TestServer::start_with(|c| c.submission.domain = DOMAIN.into()).await;
    let alice = s.add_user("alice", "pw-alice-1");
    let account = account_id(&s, &alice).await;
    let mut ws = ws_connect(&s, &alice).await;
    ws_push_enable(
        &mut ws,
        json!({"@type": "WebSocketPushEnable", "dataTypes": ["EmailDelivery"]}),
    )
    .await;
    let postfix = PrivatePostfix::start(DOMAIN, s.lmtp.as_deref().expect("LMTP on"));

    let sent = send(&postfix.smtp, "alice@herald.test", "Through Postfix").await;
    assert!(sent.is_ok(), "{sent:?}\n{}", postfix.log());
    let change = ws_next(&mut ws).await.expect("a StateChange");
    assert!(
        change["changed"][&account]["EmailDelivery"].is_string(),
        "{change}\n{}",
        postfix.log()
    );
    let r = s
        .call(
            &alice,
            &[CORE, MAIL],
            json!([
                ["Email/query", {"accountId": account}, "q"],
                ["Email/get", {"accountId": account,
                    "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                    "properties": ["subject", "header:Received:all"]}, "g"]
            ]),
        )
        .await;
    let list = r[1][1]["list"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{r:?}");
    assert_eq!(list[0]["subject"], "Through Postfix");
    let received = list[0]["header:Received:all"].to_string();
    assert!(received.contains("with LMTP"), "{received}");
    assert!(received.contains("mx.herald.test"), "{received}");

    // Postfix asks Herald (an LMTP probe) and refuses the recipient in the SMTP dialogue.
    let refused = send(&postfix.smtp, "nobody@herald.test", "Lost").await;
    let error = refused.expect_err("an unknown recipient is refused");
    assert!(error.is_permanent(), "{error:?}\n{}", postfix.log());
    assert!(error.to_string().contains("5.1.1"), "{error}");
}
