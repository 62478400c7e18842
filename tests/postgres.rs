//! The store and the API on PostgreSQL, through the same code as SQLite. Skipped, with a clear
//! line, where PostgreSQL binaries are missing; `.ci/run` installs them.

mod common;

use common::pg;
use common::{CORE, TestServer};
use herald::jmap::changes::ChangeOp;
use herald::store::changelog::{self, changes_since};
use herald::store::{Store, users};
use serde_json::json;

macro_rules! cluster_or_skip {
    () => {
        match pg::cluster() {
            Some(c) => c,
            None => {
                eprintln!("SKIPPED: no PostgreSQL");
                return;
            }
        }
    };
}

#[test]
fn migrations_apply_twice_without_harm_and_concurrent_writers_get_distinct_positions() {
    let cluster = cluster_or_skip!();
    let url = cluster.fresh_database();
    let store = Store::open(&url, 8).unwrap();
    Store::open(&url, 1).expect("a second start finds the store migrated");
    let mut conn = store.conn().unwrap();
    let user = users::create(&mut conn, "alice", "pw").unwrap();
    let account = herald::store::accounts::access_for_user(&mut conn, &user.id).unwrap()[0]
        .account_id
        .clone();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (store, account) = (store.clone(), account.clone());
            std::thread::spawn(move || {
                (0..20)
                    .map(|i| {
                        let mut conn = store.conn().unwrap();
                        changelog::write(&mut conn, &account, |txn| {
                            txn.record("Thing", &format!("t{t}-{i}"), ChangeOp::Created);
                            Ok(())
                        })
                        .unwrap()
                        .1
                        .unwrap()
                        .seq
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<i64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort();
    assert_eq!(all, (1..=80).collect::<Vec<_>>());
    let page = changes_since(&mut conn, &account, "Thing", 0, 1000).unwrap();
    assert_eq!(page.created.len(), 80);
}

#[actix_web::test]
async fn the_api_serves_sessions_and_mailboxes_from_postgresql() {
    let cluster = cluster_or_skip!();
    let url = cluster.fresh_database();
    let s = TestServer::start_with(|c| c.store.url = url).await;
    let alice = s.add_user("alice", "pw");
    let session = s.get("/jmap/session", &alice).await.body;
    let account = session["primaryAccounts"]["urn:ietf:params:jmap:mail"]
        .as_str()
        .unwrap()
        .to_owned();
    let mail = "urn:ietf:params:jmap:mail";
    let r = s
        .call(
            &alice,
            &[CORE, mail],
            json!([
                ["Mailbox/get", {"accountId": account, "ids": []}, "0"],
                ["Mailbox/set", {"accountId": account, "create": {"p": {"name": "P"}, "c": {"name": "C", "parentId": "#p"}}}, "1"],
                ["Mailbox/query", {"accountId": account, "sort": [{"property": "name"}], "sortAsTree": true, "calculateTotal": true}, "2"],
            ]),
        )
        .await;
    assert_eq!(r[2][1]["total"], 8);
    let before = r[0][1]["state"].clone();
    let r = s
        .call(&alice, &[CORE, mail], json!([["Mailbox/changes", {"accountId": account, "sinceState": before}, "0"], ["Mailbox/get", {"accountId": account}, "1"]]))
        .await;
    assert_eq!(r[0][1]["created"].as_array().unwrap().len(), 2);
    assert_eq!(r[1][1]["list"].as_array().unwrap().len(), 8);
    assert!(
        r[1][1]["list"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["totalEmails"] == 0)
    );
}
