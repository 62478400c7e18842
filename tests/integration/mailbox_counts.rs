//! Maintained Mailbox counts (issue 12 §1, MBX-06) against a recount: seeded random sequences of
//! what clients do (create emails into threads, move them, flag them read or unread, destroy them,
//! destroy a mailbox with its emails) over JMAP, and after every step the counts that Mailbox/get
//! returns equal the ones counted from the emails. Also `herald check`.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::harness::push::{MAIL, account_id};
use crate::harness::{Auth, CORE, TestServer, on_both_backends};
use herald::store::mailbox_counts;

/// A small deterministic generator (a 64-bit LCG), so a failure names its seed and step.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

struct World {
    s: TestServer,
    alice: Auth,
    account: String,
    mailboxes: Vec<String>,
    emails: Vec<String>,
    made: usize,
}

impl World {
    async fn call(&self, calls: Value) -> Vec<Value> {
        self.s.call(&self.alice, &[CORE, MAIL], calls).await
    }

    async fn create_mailbox(&mut self, name: &str) {
        let r = self
            .call(json!([["Mailbox/set", {"accountId": self.account,
                "create": {"m": {"name": name}}}, "0"]]))
            .await;
        let id = r[0][1]["created"]["m"]["id"].as_str().expect("created");
        self.mailboxes.push(id.to_owned());
    }

    /// Counts as Mailbox/get reports them, of mailboxes with any email.
    async fn reported(&self) -> HashMap<String, [u64; 4]> {
        let r = self
            .call(json!([["Mailbox/get", {"accountId": self.account}, "0"]]))
            .await;
        r[0][1]["list"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["totalEmails"].as_u64() != Some(0))
            .map(|m| {
                let n = |k: &str| m[k].as_u64().unwrap();
                (
                    m["id"].as_str().unwrap().to_owned(),
                    [
                        n("totalEmails"),
                        n("unreadEmails"),
                        n("totalThreads"),
                        n("unreadThreads"),
                    ],
                )
            })
            .collect()
    }

    fn recounted(&self) -> HashMap<String, [u64; 4]> {
        let mut conn = self.s.store.conn().unwrap();
        mailbox_counts::recount(&mut conn, &self.account)
            .unwrap()
            .into_iter()
            .map(|(m, c)| {
                let counts = [
                    c.total_emails,
                    c.unread_emails,
                    c.total_threads,
                    c.unread_threads,
                ];
                (m, counts)
            })
            .collect()
    }

    fn some_mailboxes(&self, rng: &mut Lcg) -> Value {
        let mut chosen = serde_json::Map::new();
        let first = rng.below(self.mailboxes.len());
        chosen.insert(self.mailboxes[first].clone(), json!(true));
        if rng.chance(30) {
            let second = rng.below(self.mailboxes.len());
            chosen.insert(self.mailboxes[second].clone(), json!(true));
        }
        Value::Object(chosen)
    }

    fn some_keywords(rng: &mut Lcg) -> Value {
        let mut k = serde_json::Map::new();
        if rng.chance(50) {
            k.insert("$seen".into(), json!(true));
        }
        if rng.chance(10) {
            k.insert("$draft".into(), json!(true));
        }
        if rng.chance(20) {
            k.insert("$flagged".into(), json!(true));
        }
        Value::Object(k)
    }

    /// One random step; returns what it did.
    async fn step(&mut self, rng: &mut Lcg) -> String {
        let pick = rng.below(100);
        if self.emails.is_empty() || pick < 35 {
            // New emails, one to four in one write (written together: see store::email::create),
            // each replying to an earlier one half the time (same thread), an earlier one of
            // the same write included.
            let mut create = serde_json::Map::new();
            for _ in 0..=rng.below(4) {
                let n = self.made;
                self.made += 1;
                let mut email = json!({
                    "mailboxIds": self.some_mailboxes(rng),
                    "keywords": Self::some_keywords(rng),
                    "messageId": [format!("m{n}@counts.test")],
                    "subject": format!("topic {n}"),
                    "bodyValues": {"b": {"value": "hello"}},
                    "textBody": [{"partId": "b", "type": "text/plain"}]
                });
                if n > 0 && rng.chance(50) {
                    let parent = rng.below(n);
                    email["inReplyTo"] = json!([format!("m{parent}@counts.test")]);
                    email["subject"] = json!(format!("Re: topic {parent}"));
                }
                create.insert(format!("e{n}"), email);
            }
            let keys: Vec<String> = create.keys().cloned().collect();
            let r = self
                .call(json!([["Email/set", {"accountId": self.account, "create": create}, "0"]]))
                .await;
            for key in &keys {
                let id = r[0][1]["created"][key]["id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{r:?}"));
                self.emails.push(id.to_owned());
            }
            return format!("create {keys:?}");
        }
        let e = self.emails[rng.below(self.emails.len())].clone();
        if pick < 55 {
            let seen = rng.chance(50);
            self.call(json!([["Email/set", {"accountId": self.account,
                "update": {&e: {"keywords/$seen": if seen { json!(true) } else { json!(null) }}}}, "0"]]))
                .await;
            format!("{e} $seen={seen}")
        } else if pick < 65 {
            self.call(json!([["Email/set", {"accountId": self.account,
                "update": {&e: {"keywords": Self::some_keywords(rng)}}}, "0"]]))
                .await;
            format!("{e} keywords replaced")
        } else if pick < 85 {
            let to = self.some_mailboxes(rng);
            self.call(json!([["Email/set", {"accountId": self.account,
                "update": {&e: {"mailboxIds": to.clone()}}}, "0"]]))
                .await;
            format!("{e} moved to {to}")
        } else if pick < 95 {
            self.call(json!([["Email/set", {"accountId": self.account, "destroy": [&e]}, "0"]]))
                .await;
            self.emails.retain(|x| *x != e);
            format!("destroy {e}")
        } else {
            // A mailbox of our own goes, with its emails (those in no other mailbox go too).
            let own = self.mailboxes.len() - 1;
            let gone = self.mailboxes.remove(own);
            let r = self
                .call(
                    json!([["Mailbox/set", {"accountId": self.account, "destroy": [&gone],
                    "onDestroyRemoveEmails": true}, "0"]]),
                )
                .await;
            assert_eq!(r[0][1]["destroyed"], json!([gone]), "{r:?}");
            let q = self
                .call(json!([["Email/query", {"accountId": self.account}, "0"]]))
                .await;
            let left: Vec<String> = serde_json::from_value(q[0][1]["ids"].clone()).unwrap();
            self.emails = left;
            let name = format!("box {}", self.made);
            self.create_mailbox(&name).await;
            format!("destroy mailbox {gone} with its emails")
        }
    }
}

#[on_both_backends]
async fn maintained_mailbox_counts_equal_a_recount_after_any_sequence_of_changes() {
    for seed in [1u64, 7, 42] {
        let s = TestServer::start().await;
        let alice = s.add_user("alice", "pw-alice-1");
        let account = account_id(&s, &alice).await;
        let mut world = World {
            s,
            alice,
            account,
            mailboxes: Vec::new(),
            emails: Vec::new(),
            made: 0,
        };
        let r = world
            .call(json!([["Mailbox/get", {"accountId": world.account, "ids": null}, "0"]]))
            .await;
        for m in r[0][1]["list"].as_array().unwrap() {
            world.mailboxes.push(m["id"].as_str().unwrap().to_owned());
        }
        world.create_mailbox("own").await;
        let mut rng = Lcg(seed);
        let mut done = Vec::new();
        for step in 0..60 {
            done.push(world.step(&mut rng).await);
            let (reported, counted) = (world.reported().await, world.recounted());
            assert_eq!(
                reported,
                counted,
                "seed {seed}, step {step} ({:?}); steps: {done:#?}",
                done.last()
            );
        }
        let mut conn = world.s.store.conn().unwrap();
        assert!(
            mailbox_counts::check(&mut conn, &world.account)
                .unwrap()
                .is_empty()
        );
    }
}

#[on_both_backends]
async fn herald_check_reports_wrong_counts_and_repairs_them() {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw-alice-1");
    let account = account_id(&s, &alice).await;
    let inbox = crate::harness::push::inbox_id(&s, &alice, &account).await;
    let (ok, out) = s.cli_with_input(
        &["deliver", "--to", "alice"],
        b"Subject: counted\r\nMessage-ID: <c1@counts.test>\r\n\r\nHello.\r\n",
    );
    assert!(ok, "{out}");
    let (ok, out) = s.cli(&["check"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("1 accounts checked: counts are right"),
        "{out}"
    );

    // Damage the maintained counts behind the store's back.
    {
        use diesel::prelude::*;
        use herald::store::schema::mailbox_counts as mc;
        let mut conn = s.store.conn().unwrap();
        diesel::update(mc::table.find((&account, &inbox)))
            .set(mc::unread_emails.eq(5))
            .execute(&mut *conn)
            .unwrap();
    }
    let (ok, out) = s.cli(&["check", "alice"]);
    assert!(!ok, "wrong counts fail the check: {out}");
    assert!(out.contains(&inbox) && out.contains("--repair"), "{out}");
    let r = s
        .call(
            &alice,
            &[CORE, MAIL],
            json!([["Mailbox/get", {"accountId": account, "ids": []}, "0"]]),
        )
        .await;
    let before = r[0][1]["state"].as_str().unwrap().to_owned();
    let mut sse = crate::harness::push::sse_everything(&s, &alice).await;
    let (ok, out) = s.cli(&["check", "--repair"]);
    assert!(ok && out.contains("1 repaired"), "{out}");
    // Clients that hold the wrong counts are told: the repair is a Mailbox change, pushed.
    let r = s
        .call(
            &alice,
            &[CORE, MAIL],
            json!([["Mailbox/changes", {"accountId": account, "sinceState": before}, "0"]]),
        )
        .await;
    assert_eq!(r[0][1]["updated"], json!([inbox]), "{r:?}");
    let after = r[0][1]["newState"].as_str().unwrap();
    sse.until_mailbox_state(&account, after).await;
    let (ok, out) = s.cli(&["check"]);
    assert!(ok, "{out}");
    let (ok, out) = s.cli(&["check", "nobody"]);
    assert!(!ok && out.lines().count() == 1, "{out}");
}
