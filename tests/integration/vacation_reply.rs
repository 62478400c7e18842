//! Vacation replies (RFC 8621 §8, with the rules of RFC 3834 and RFC 5230; issue 11 §2): new mail
//! to an away user is answered once per sender through the submission outbox, from the null
//! sender, and never to automatic, list or robot mail or to mail not addressed to the user.

use serde_json::{Value, json};

use super::submission::{SUBMISSION, Setup, setup_with};
use crate::harness::lmtp::LmtpClient;
use crate::harness::push::WAIT;
use crate::harness::smtp_sink::{Received, SmtpSink};
use crate::harness::{eventually, on_both_backends};

const VACATION: &str = "urn:ietf:params:jmap:vacationresponse";

async fn go_away(t: &Setup, subject: Option<&str>) {
    let r =
        t.s.call(
            &t.alice,
            &[crate::harness::CORE, VACATION],
            json!([["VacationResponse/set", {"accountId": t.account, "update": {"singleton": {
                "isEnabled": true, "subject": subject, "textBody": "Back on Monday."}}}, "0"]]),
        )
        .await;
    assert!(r[0][1]["updated"].get("singleton").is_some(), "{r:?}");
}

/// A message from `from` (envelope and header) to `to`, with `extra` header lines.
fn mail(from: &str, to: &str, extra: &str) -> Vec<u8> {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: Question\r\nMessage-ID: <q-{}@far.test>\r\n{extra}\r\nHi\r\n",
        herald::random::random_secret(6)
    )
    .into_bytes()
}

async fn lmtp_deliver(t: &Setup, envelope_from: &str, rcpt: &[&str], message: &[u8]) {
    let mut mta = LmtpClient::ready(t.s.lmtp.as_deref().unwrap()).await;
    let d = mta.deliver(envelope_from, rcpt, message).await;
    assert!(d.data.iter().all(|r| r.code == 250), "{d:?}");
}

/// The outbox is empty: every reply queued so far was sent.
async fn outbox_drained(t: &Setup) {
    eventually("the outbox drains", WAIT, || async {
        let mut conn = t.s.store.conn().unwrap();
        (herald::store::submission_outbox::depth(&mut conn).unwrap() == 0).then_some(())
    })
    .await;
}

fn replies_to(sink: &SmtpSink, rcpt: &str) -> Vec<Received> {
    sink.received()
        .into_iter()
        .filter(|m| m.rcpt_to.iter().any(|r| r == rcpt))
        .collect()
}

async fn away_with_relay(sink: &SmtpSink) -> Setup {
    let url = sink.url.clone();
    let t = setup_with(move |c| c.submission.relay = url).await;
    go_away(&t, None).await;
    t
}

#[on_both_backends]
async fn an_away_user_answers_new_mail_once_per_sender_from_the_null_sender() {
    let sink = SmtpSink::start();
    let t = away_with_relay(&sink).await;
    let first = mail("carol@far.test", "alice@localhost", "");
    lmtp_deliver(&t, "carol@far.test", &["alice@localhost"], &first).await;
    let reply = eventually("the vacation reply goes out", WAIT, || async {
        replies_to(&sink, "carol@far.test").into_iter().next()
    })
    .await;
    // RFC 3834 §3.3: the null sender, so nothing answers the answer.
    assert_eq!(reply.mail_from, "");
    assert!(
        reply.data.contains("Auto-Submitted: auto-replied"),
        "{}",
        reply.data
    );
    assert!(
        reply.data.contains("Subject: Auto: Question"),
        "{}",
        reply.data
    );
    assert!(reply.data.contains("Back on Monday."), "{}", reply.data);
    let first_id = String::from_utf8_lossy(&first)
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID: ").map(str::to_owned))
        .unwrap();
    assert!(
        reply.data.contains(&format!("In-Reply-To: {first_id}")),
        "{}",
        reply.data
    );
    assert!(
        reply
            .data
            .lines()
            .any(|l| l.starts_with("From:") && l.contains("<alice@localhost>")),
        "from alice's default identity: {}",
        reply.data
    );

    // RFC 5230: one reply per sender per period.
    lmtp_deliver(
        &t,
        "carol@far.test",
        &["alice@localhost"],
        &mail("carol@far.test", "alice@localhost", ""),
    )
    .await;
    lmtp_deliver(
        &t,
        "dave@far.test",
        &["alice@localhost"],
        &mail("dave@far.test", "alice@localhost", ""),
    )
    .await;
    outbox_drained(&t).await;
    eventually("dave is answered", WAIT, || async {
        (!replies_to(&sink, "dave@far.test").is_empty()).then_some(())
    })
    .await;
    assert_eq!(replies_to(&sink, "carol@far.test").len(), 1);

    // A changed VacationResponse answers everyone again, with its own subject.
    go_away(&t, Some("Out of office")).await;
    lmtp_deliver(
        &t,
        "carol@far.test",
        &["alice@localhost"],
        &mail("carol@far.test", "alice@localhost", ""),
    )
    .await;
    let again = eventually("carol is answered again", WAIT, || async {
        let r = replies_to(&sink, "carol@far.test");
        (r.len() == 2).then(|| r[1].clone())
    })
    .await;
    assert!(
        again.data.contains("Subject: Out of office"),
        "{}",
        again.data
    );
}

#[actix_web::test]
async fn automatic_list_robot_and_bcc_mail_gets_no_reply() {
    let sink = SmtpSink::start();
    let t = away_with_relay(&sink).await;
    let cases: [(&str, Vec<u8>); 7] = [
        (
            "auto@far.test",
            mail(
                "auto@far.test",
                "alice@localhost",
                "Auto-Submitted: auto-generated\r\n",
            ),
        ),
        (
            "list@far.test",
            mail(
                "list@far.test",
                "alice@localhost",
                "List-Id: <team.far.test>\r\n",
            ),
        ),
        (
            "news@far.test",
            mail(
                "news@far.test",
                "alice@localhost",
                "List-Unsubscribe: <mailto:x@far.test>\r\n",
            ),
        ),
        (
            "bulk@far.test",
            mail("bulk@far.test", "alice@localhost", "Precedence: bulk\r\n"),
        ),
        (
            "noreply@far.test",
            mail("noreply@far.test", "alice@localhost", ""),
        ),
        (
            "MAILER-DAEMON@far.test",
            mail("MAILER-DAEMON@far.test", "alice@localhost", ""),
        ),
        // Not addressed to alice: a Bcc copy.
        (
            "erin@far.test",
            mail("erin@far.test", "someone@far.test", ""),
        ),
    ];
    for (from, message) in &cases {
        lmtp_deliver(&t, from, &["alice@localhost"], message).await;
    }
    // The null envelope sender: a bounce.
    lmtp_deliver(
        &t,
        "",
        &["alice@localhost"],
        &mail("frank@far.test", "alice@localhost", ""),
    )
    .await;
    // And one that is answered, after all the others.
    lmtp_deliver(
        &t,
        "gina@far.test",
        &["alice@localhost"],
        &mail("gina@far.test", "alice@localhost", ""),
    )
    .await;
    eventually("gina is answered", WAIT, || async {
        (!replies_to(&sink, "gina@far.test").is_empty()).then_some(())
    })
    .await;
    outbox_drained(&t).await;
    let answered: Vec<Vec<String>> = sink.received().into_iter().map(|m| m.rcpt_to).collect();
    assert_eq!(answered, vec![vec!["gina@far.test".to_owned()]]);
}

#[on_both_backends]
async fn a_local_sender_gets_the_reply_in_their_inbox_and_a_disabled_response_sends_none() {
    let t = setup_with(|_| {}).await;
    go_away(&t, None).await;
    // Bob writes to alice through JMAP; the outbox delivers it locally, alice's reply comes back.
    let r = t
        .s
        .call(
            &t.bob,
            &[crate::harness::CORE, super::submission::MAIL],
            json!([["Mailbox/query", {"accountId": t.bob_account, "filter": {"role": "drafts"}}, "0"]]),
        )
        .await;
    let drafts = r[0][1]["ids"][0].as_str().unwrap().to_owned();
    let send = |subject: &'static str| {
        json!([
            ["Email/set", {"accountId": t.bob_account, "create": {"d": {
                "mailboxIds": {drafts.clone(): true},
                "from": [{"email": "bob@localhost"}], "to": [{"email": "alice@localhost"}],
                "subject": subject, "textBody": [{"partId": "t", "type": "text/plain"}],
                "bodyValues": {"t": {"value": "Are you there?"}}}}}, "0"],
            ["Identity/get", {"accountId": t.bob_account}, "i"],
        ])
    };
    let r =
        t.s.call(
            &t.bob,
            &[crate::harness::CORE, super::submission::MAIL, SUBMISSION],
            send("Lunch?"),
        )
        .await;
    let identity = r[1][1]["list"][0]["id"].as_str().unwrap().to_owned();
    let email = r[0][1]["created"]["d"]["id"].as_str().unwrap().to_owned();
    let submit = |email: &str| {
        json!([["EmailSubmission/set", {"accountId": t.bob_account,
            "create": {"s": {"identityId": identity, "emailId": email}}}, "0"]])
    };
    t.s.call(
        &t.bob,
        &[crate::harness::CORE, super::submission::MAIL, SUBMISSION],
        submit(&email),
    )
    .await;
    let inbox = |list: &Vec<Value>| {
        list.iter()
            .filter(|e| e["subject"] == "Auto: Lunch?")
            .count()
    };
    let bob_mail = t.emails_once(&t.bob, &t.bob_account, 2).await;
    assert_eq!(inbox(&bob_mail), 1, "{bob_mail:?}");

    // Back: no more replies.
    t.s.call(
        &t.alice,
        &[crate::harness::CORE, VACATION],
        json!([["VacationResponse/set", {"accountId": t.account, "update": {"singleton": {"isEnabled": false}}}, "0"]]),
    )
    .await;
    outbox_drained(&t).await;
    // Bob again: the change forgot whom alice answered, so only isEnabled keeps this unanswered.
    lmtp_deliver(
        &t,
        "bob@localhost",
        &["alice@localhost"],
        &mail("bob@localhost", "alice@localhost", ""),
    )
    .await;
    let mut conn = t.s.store.conn().unwrap();
    assert_eq!(
        herald::store::submission_outbox::depth(&mut conn).unwrap(),
        0,
        "nothing queued"
    );
}
