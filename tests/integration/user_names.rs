//! User names compare without case wherever a user is found by name, as at creation ("names
//! differing only in case are one"): logging in with HTTP Basic and every command that names a
//! user.

use awc::http::StatusCode;

use crate::harness::push::account_id;
use crate::harness::{Auth, TestServer, on_both_backends};

#[on_both_backends]
async fn a_user_is_found_by_any_case_of_their_name() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    s.add_user("bob", "pw");
    let account = account_id(&s, &alice).await;

    let session = s.get("/jmap/session", &Auth::basic("ALICE", "pw")).await;
    assert_eq!(session.status, StatusCode::OK);
    assert_eq!(session.body["username"], "alice", "the name as stored");
    assert_eq!(
        s.get("/jmap/session", &Auth::basic("Alice", "wrong"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    let cli = |args: &[&str]| {
        let (ok, out) = s.cli(args);
        assert!(ok, "{args:?}: {out}");
        out
    };
    cli(&["user", "passwd", "ALICE", "--password", "pw2"]);
    assert_eq!(
        s.get("/jmap/session", &Auth::basic("alice", "pw2"))
            .await
            .status,
        StatusCode::OK
    );
    let token = cli(&["token", "create", "Alice"]);
    assert!(token.starts_with("hrd_"), "{token}");
    assert!(cli(&["token", "list", "ALICE"]).contains("\talice\t"));
    let (ok, out) = s.cli(&["token", "list", "nobody"]);
    assert!(!ok && out.contains("user nobody not found"), "{out}");

    cli(&["account", "share", "ALICE", "--with", "BOB"]);
    let bob_session = s.get("/jmap/session", &Auth::basic("bob", "pw")).await;
    assert!(bob_session.body["accounts"].get(&account).is_some());
    cli(&["account", "unshare", "Alice", "--with", "Bob"]);

    cli(&["alias", "add", "postmaster@localhost", "--to", "ALICE"]);
    let (ok, out) = s.cli_with_input(
        &["deliver", "--to", "ALICE"],
        b"From: carol@remote.test\r\nSubject: Hi\r\n\r\nHello.\r\n",
    );
    assert!(ok, "{out}");
    assert!(cli(&["check", "ALICE"]).contains("counts are right"));

    cli(&["user", "remove", "ALICE"]);
    assert!(!cli(&["user", "list"]).contains("alice"));
    s.stop().await;
}
