//! Shared accounts over HTTP (RFC 8620 §1.6.2, §2; RFC 8621 §1.4), set up through the real
//! `herald account share/unshare` command line. Checklist ids in comments.

use crate::harness::push::account_id;
use crate::harness::{Auth, CORE, TestServer, on_both_backends};
use serde_json::{Value, json};

const MAIL: &str = "urn:ietf:params:jmap:mail";
const SUBMISSION: &str = "urn:ietf:params:jmap:submission";
const VACATION: &str = "urn:ietf:params:jmap:vacationresponse";

async fn session(s: &TestServer, auth: &Auth) -> Value {
    s.get("/jmap/session", auth).await.body
}

#[on_both_backends]
async fn a_shared_account_appears_in_the_other_users_session_with_mail_only() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let bob = s.add_user("bob", "pw");
    let alice_account = account_id(&s, &alice).await;
    let before = session(&s, &bob).await;
    assert!(before["accounts"].get(&alice_account).is_none());

    let (ok, out) = s.cli(&["account", "share", "alice", "--with", "bob"]);
    assert!(ok, "{out}");

    let after = session(&s, &bob).await;
    let shared = &after["accounts"][&alice_account];
    assert_eq!(shared["name"], "alice");
    assert_eq!(shared["isPersonal"], false); // SES-05
    assert_eq!(shared["isReadOnly"], false);
    // MCAP-05 / RFC 8621 §1.4: each capability only where usable; identities, submission and the
    // vacation response belong to the owner.
    let caps = shared["accountCapabilities"].as_object().unwrap();
    assert!(caps.contains_key(MAIL));
    assert!(!caps.contains_key(SUBMISSION));
    assert!(!caps.contains_key(VACATION));
    assert_eq!(caps[MAIL]["mayCreateTopLevelMailbox"], true);
    // primaryAccounts still names bob's own account (SES-07).
    assert_ne!(after["primaryAccounts"][MAIL], json!(alice_account));
    // SES-10: the session state changed with the accounts.
    assert_ne!(before["state"], after["state"]);
    s.stop().await;
}

#[on_both_backends]
async fn a_writable_share_lets_the_other_user_read_and_change_mailboxes() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let bob = s.add_user("bob", "pw");
    let account = account_id(&s, &alice).await;
    assert!(s.cli(&["account", "share", "alice", "--with", "bob"]).0);

    let r = s
        .call(
            &bob,
            &[CORE, MAIL],
            json!([
                ["Mailbox/set", {"accountId": account, "create": {"n": {"name": "From Bob"}}}, "0"],
                ["Mailbox/get", {"accountId": account, "ids": null}, "1"],
            ]),
        )
        .await;
    assert_eq!(r[0][0], "Mailbox/set", "{r:?}");
    assert!(r[0][1]["created"]["n"]["id"].is_string(), "{r:?}");
    let list = r[1][1]["list"].as_array().unwrap();
    assert_eq!(list.len(), 7);
    assert!(list.iter().all(|m| m["myRights"]["mayDelete"] == true));

    // The owner sees bob's change.
    let r = s
        .call(
            &alice,
            &[CORE, MAIL],
            json!([["Mailbox/query", {"accountId": account, "filter": {"name": "From Bob"}}, "0"]]),
        )
        .await;
    assert_eq!(r[0][1]["ids"].as_array().unwrap().len(), 1);
    s.stop().await;
}

#[on_both_backends]
async fn a_read_only_share_allows_reads_and_refuses_writes_with_account_read_only() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let bob = s.add_user("bob", "pw");
    let account = account_id(&s, &alice).await;
    let (ok, out) = s.cli(&["account", "share", "alice", "--with", "bob", "--read-only"]);
    assert!(ok, "{out}");
    let shared = &session(&s, &bob).await["accounts"][&account];
    assert_eq!(shared["isReadOnly"], true); // SES-05
    assert_eq!(
        shared["accountCapabilities"][MAIL]["mayCreateTopLevelMailbox"],
        false
    );

    let r = s
        .call(
            &bob,
            &[CORE, MAIL],
            json!([
                ["Mailbox/get", {"accountId": account, "ids": null}, "0"],
                ["Mailbox/set", {"accountId": account, "create": {"n": {"name": "x"}}}, "1"],
            ]),
        )
        .await;
    let list = r[0][1]["list"].as_array().unwrap();
    assert_eq!(list.len(), 6);
    for m in list {
        // MBX-07: rights reflect read-only access.
        assert_eq!(m["myRights"]["mayReadItems"], true);
        assert_eq!(m["myRights"]["mayAddItems"], false);
        assert_eq!(m["myRights"]["mayDelete"], false);
        assert_eq!(m["myRights"]["mayRename"], false);
    }
    assert_eq!(r[1][0], "error");
    assert_eq!(r[1][1]["type"], "accountReadOnly");

    // Sharing again changes the access: now writable.
    assert!(s.cli(&["account", "share", "alice", "--with", "bob"]).0);
    let r = s
        .call(
            &bob,
            &[CORE, MAIL],
            json!([["Mailbox/set", {"accountId": account, "create": {"n": {"name": "x"}}}, "1"]]),
        )
        .await;
    assert_eq!(r[0][0], "Mailbox/set", "{r:?}");
    s.stop().await;
}

#[on_both_backends]
async fn unsharing_takes_effect_on_the_next_request() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let bob = s.add_user("bob", "pw");
    let account = account_id(&s, &alice).await;
    assert!(s.cli(&["account", "share", "alice", "--with", "bob"]).0);
    let get = json!([["Mailbox/get", {"accountId": account, "ids": null}, "0"]]);
    let r = s.call(&bob, &[CORE, MAIL], get.clone()).await;
    assert_eq!(r[0][0], "Mailbox/get");

    let (ok, out) = s.cli(&["account", "unshare", "alice", "--with", "bob"]);
    assert!(ok, "{out}");
    let r = s.call(&bob, &[CORE, MAIL], get).await;
    assert_eq!(r[0][0], "error");
    assert_eq!(r[0][1]["type"], "accountNotFound"); // SEC-02: no longer visible
    assert!(session(&s, &bob).await["accounts"].get(&account).is_none());
    s.stop().await;
}

#[on_both_backends]
async fn the_command_line_refuses_unknown_users_self_shares_and_missing_shares() {
    let s = TestServer::start().await;
    s.add_user("alice", "pw");
    s.add_user("bob", "pw");
    let (ok, out) = s.cli(&["account", "share", "alice", "--with", "carol"]);
    assert!(!ok);
    assert!(out.contains("carol"), "{out}");
    let (ok, out) = s.cli(&["account", "share", "nobody", "--with", "bob"]);
    assert!(!ok);
    assert!(out.contains("nobody"), "{out}");
    let (ok, out) = s.cli(&["account", "share", "alice", "--with", "alice"]);
    assert!(!ok, "{out}");
    let (ok, out) = s.cli(&["account", "unshare", "alice", "--with", "bob"]);
    assert!(!ok);
    assert!(out.contains("not found"), "{out}");
    s.stop().await;
}
#[on_both_backends]
async fn methods_of_owner_only_capabilities_are_not_supported_in_a_shared_account() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let bob = s.add_user("bob", "pw");
    let account = account_id(&s, &alice).await;
    assert!(s.cli(&["account", "share", "alice", "--with", "bob"]).0);
    let r = s
        .call(
            &bob,
            &[CORE, MAIL, SUBMISSION, VACATION],
            json!([
                ["Identity/get", {"accountId": account}, "0"],
                ["VacationResponse/get", {"accountId": account}, "1"],
                ["EmailSubmission/get", {"accountId": account}, "2"],
            ]),
        )
        .await;
    // SES-06: a capability missing from the account → accountNotSupportedByMethod.
    assert_eq!(r[0][1]["type"], "accountNotSupportedByMethod", "{r:?}");
    assert_eq!(r[1][1]["type"], "accountNotSupportedByMethod", "{r:?}");
    assert_eq!(r[2][1]["type"], "accountNotSupportedByMethod", "{r:?}");
    s.stop().await;
}

#[on_both_backends]
async fn is_subscribed_is_kept_per_user_and_starts_false_in_a_shared_account() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let bob = s.add_user("bob", "pw");
    let (ok, out) = s.cli(&["account", "share", "alice", "--with", "bob"]);
    assert!(ok, "{out}");
    let account = account_id(&s, &alice).await;
    let mail = "urn:ietf:params:jmap:mail";
    let get = |who: Auth| {
        let account = account.clone();
        let s = &s;
        async move {
            let r = s.call(&who, &[CORE, mail], json!([["Mailbox/get", {"accountId": account, "properties": ["role", "isSubscribed"]}, "0"]])).await;
            r[0][1]["list"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    (
                        m["role"].as_str().unwrap_or("").to_owned(),
                        (
                            m["id"].as_str().unwrap().to_owned(),
                            m["isSubscribed"].as_bool().unwrap(),
                        ),
                    )
                })
                .collect::<std::collections::HashMap<_, _>>()
        }
    };
    // MBX-10: the owner's mailboxes are subscribed; the sharee's view starts unsubscribed.
    let alices = get(alice.clone()).await;
    assert!(alices.values().all(|(_, sub)| *sub));
    let bobs = get(bob.clone()).await;
    assert!(bobs.values().all(|(_, sub)| !*sub), "{bobs:?}");
    let inbox = alices["inbox"].0.clone();
    // Each user's change is theirs alone.
    let r = s.call(&bob, &[CORE, mail], json!([["Mailbox/set", {"accountId": account, "update": {inbox.clone(): {"isSubscribed": true}}}, "0"]])).await;
    assert_eq!(r[0][1]["updated"], json!({inbox.clone(): null}), "{r:?}");
    let r = s.call(&alice, &[CORE, mail], json!([["Mailbox/set", {"accountId": account, "update": {inbox.clone(): {"isSubscribed": false}}}, "0"]])).await;
    assert_eq!(r[0][1]["updated"], json!({inbox.clone(): null}), "{r:?}");
    assert!(
        get(bob.clone()).await["inbox"].1,
        "bob's subscription stays"
    );
    assert!(
        !get(alice.clone()).await["inbox"].1,
        "alice's change is hers"
    );
    // A mailbox the sharee creates is subscribed for them.
    let r = s.call(&bob, &[CORE, mail], json!([["Mailbox/set", {"accountId": account, "create": {"k": {"name": "Bob's folder"}}}, "0"]])).await;
    let id = r[0][1]["created"]["k"]["id"].as_str().unwrap().to_owned();
    let bobs = get(bob.clone()).await;
    assert!(bobs.values().any(|(i, sub)| *i == id && *sub));
}
