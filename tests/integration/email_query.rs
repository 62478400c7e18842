//! Email/query, Email/queryChanges and SearchSnippet/get over HTTP (RFC 8621 §4.4, §4.5, §5).
//! Checklist ids in comments.

use crate::harness::push::account_id;
use std::collections::{BTreeSet, HashMap};

use crate::harness::{Auth, CORE, TestServer, on_both_backends};
use herald::jmap::methods::email::{EmailOp, NewEmail, OpResult, Source};
use serde_json::{Value, json};

const MAIL: &str = "urn:ietf:params:jmap:mail";

/// A test message; `raw()` renders it as RFC 5322 text.
#[derive(Clone, Default)]
pub(super) struct Msg {
    pub(super) from: &'static str,
    pub(super) to: &'static str,
    pub(super) cc: &'static str,
    pub(super) bcc: &'static str,
    pub(super) subject: &'static str,
    pub(super) date: &'static str,
    pub(super) message_id: &'static str,
    pub(super) in_reply_to: &'static str,
    pub(super) extra_headers: &'static str,
    pub(super) body: String,
    pub(super) attachment: bool,
}

impl Msg {
    fn raw(&self) -> Vec<u8> {
        let mut h = String::new();
        for (name, value) in [
            ("From", self.from),
            ("To", self.to),
            ("Cc", self.cc),
            ("Bcc", self.bcc),
            ("Subject", self.subject),
            ("Date", self.date),
            ("Message-ID", self.message_id),
            ("In-Reply-To", self.in_reply_to),
        ] {
            if !value.is_empty() {
                h.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        h.push_str(self.extra_headers);
        h.push_str("MIME-Version: 1.0\r\n");
        if self.attachment {
            h.push_str("Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n");
            h.push_str("--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
            h.push_str(&self.body);
            h.push_str("\r\n--b1\r\nContent-Type: application/pdf\r\n");
            h.push_str("Content-Disposition: attachment; filename=\"r.pdf\"\r\n");
            h.push_str("Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n");
        } else {
            h.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\n");
            h.push_str(&self.body);
            h.push_str("\r\n");
        }
        h.into_bytes()
    }
}

pub(super) struct Fixture {
    pub(super) s: TestServer,
    pub(super) alice: Auth,
    pub(super) account: String,
    pub(super) inbox: String,
    pub(super) archive: String,
    pub(super) trash: String,
    /// Email ids by short name.
    pub(super) ids: HashMap<&'static str, String>,
    pub(super) threads: HashMap<&'static str, String>,
}

fn utc(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp()
}

impl Fixture {
    /// A node with one account and its standard mailboxes, no email.
    pub(super) async fn empty() -> Fixture {
        let s = TestServer::start().await;
        let alice = s.add_user("alice", "pw");
        let account = account_id(&s, &alice).await;
        let r = s
            .call(
                &alice,
                &[CORE, MAIL],
                json!([["Mailbox/get", {"accountId": account, "ids": null}, "0"]]),
            )
            .await;
        let role = |name: &str| {
            r[0][1]["list"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["role"] == name)
                .unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        Fixture {
            inbox: role("inbox"),
            archive: role("archive"),
            trash: role("trash"),
            s,
            alice,
            account,
            ids: HashMap::new(),
            threads: HashMap::new(),
        }
    }

    /// Creates an email through the email store's write path (as Email/import does).
    pub(super) fn add(
        &mut self,
        name: &'static str,
        msg: &Msg,
        mailboxes: &[&str],
        keywords: &[&str],
        received_at: &str,
    ) {
        let mut conn = self.s.store.conn().unwrap();
        let email = NewEmail {
            id: herald::jmap::methods::email::new_email_id(),
            source: Source::Message(msg.raw()),
            mailbox_ids: mailboxes
                .iter()
                .map(std::string::ToString::to_string)
                .collect(),
            keywords: keywords
                .iter()
                .map(std::string::ToString::to_string)
                .collect::<BTreeSet<_>>(),
            received_at: Some(utc(received_at)),
            delivery: true,
        };
        let op = EmailOp::Create {
            creation_id: name.into(),
            email,
        };
        let (results, _) = herald::store::changelog::write(&mut conn, &self.account, |txn| {
            herald::store::email::apply(txn, None, vec![op])
        })
        .unwrap();
        match results.into_iter().next() {
            Some(OpResult::Created(_, c)) => {
                self.ids.insert(name, c.id);
                self.threads.insert(name, c.thread_id);
            }
            _ => panic!("{name} was not created"),
        }
    }

    pub(super) fn id(&self, name: &str) -> String {
        self.ids[name].clone()
    }

    fn names(&self, ids: &Value) -> Vec<String> {
        let by_id: HashMap<&str, &str> = self.ids.iter().map(|(n, i)| (i.as_str(), *n)).collect();
        ids.as_array()
            .unwrap_or_else(|| panic!("not ids: {ids}"))
            .iter()
            .map(|i| by_id.get(i.as_str().unwrap()).unwrap_or(&"?").to_string())
            .collect()
    }

    pub(super) async fn call(&self, calls: Value) -> Vec<Value> {
        self.s.call(&self.alice, &[CORE, MAIL], calls).await
    }

    async fn query(&self, args: Value) -> Value {
        let mut args = args.as_object().cloned().unwrap_or_default();
        args.insert("accountId".into(), json!(self.account));
        let r = self.call(json!([["Email/query", args, "q"]])).await;
        r[0].clone()
    }

    /// Names of the emails a query returns, in order.
    pub(super) async fn query_names(&self, args: Value) -> Vec<String> {
        let r = self.query(args.clone()).await;
        assert_eq!(r[0], "Email/query", "{args} → {r}");
        self.names(&r[1]["ids"])
    }

    /// Four emails in three threads (m1 ← m2 is a reply), across inbox and archive.
    async fn standard() -> Fixture {
        let mut f = Fixture::empty().await;
        let (inbox, archive) = (f.inbox.clone(), f.archive.clone());
        f.add(
            "m1",
            &Msg {
                from: "Alice Adams <alice@example.com>",
                to: "Bob Brown <bob@example.com>",
                subject: "Quarterly report",
                date: "Mon, 01 Jan 2024 09:00:00 +0000",
                message_id: "<m1@example.com>",
                body: "The quarterly financial report is attached.".into(),
                attachment: true,
                ..Msg::default()
            },
            &[&inbox],
            &["$seen"],
            "2024-01-01T10:00:00Z",
        );
        f.add(
            "m2",
            &Msg {
                from: "Bob Brown <bob@example.com>",
                to: "Alice Adams <alice@example.com>",
                cc: "Carol <carol@example.org>",
                subject: "Re: Quarterly report",
                date: "Tue, 02 Jan 2024 09:00:00 +0000",
                message_id: "<m2@example.com>",
                in_reply_to: "<m1@example.com>",
                body: "Thanks, the numbers look good.".into(),
                ..Msg::default()
            },
            &[&inbox],
            &[],
            "2024-01-02T10:00:00Z",
        );
        f.add(
            "m3",
            &Msg {
                from: "Carol <carol@example.org>",
                to: "Dave <dave@example.net>",
                bcc: "eve@example.net",
                subject: "Lunch plans",
                date: "Sat, 06 Jan 2024 09:00:00 +0000",
                message_id: "<m3@example.org>",
                extra_headers: "X-Priority: 1 (Highest)\r\n",
                body: "Pizza or sushi? Let us decide by noon.".into(),
                ..Msg::default()
            },
            &[&archive],
            &["$flagged", "$seen"],
            "2024-01-03T10:00:00Z",
        );
        f.add(
            "m4",
            &Msg {
                from: "zed@example.com",
                to: "",
                subject: "Budget & <plans>",
                date: "Wed, 03 Jan 2024 09:00:00 +0000",
                message_id: "<m4@example.com>",
                body: format!(
                    "{} The needle is here & <safe>. {}",
                    "Filler words come first. ".repeat(20),
                    "More text after. ".repeat(30)
                ),
                ..Msg::default()
            },
            &[&inbox, &archive],
            &[],
            "2024-01-04T10:00:00Z",
        );
        assert_eq!(f.threads["m1"], f.threads["m2"], "m2 replies to m1");
        f
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(std::string::ToString::to_string).collect()
}

#[on_both_backends]
async fn every_filter_condition_selects_exactly_the_matching_emails() {
    let f = Fixture::standard().await;
    check_every_filter(&f).await;
    f.s.stop().await;
}

async fn check_every_filter(f: &Fixture) {
    let (inbox, archive, trash) = (&f.inbox, &f.archive, &f.trash);
    let cases: Vec<(Value, &[&str])> = vec![
        // EQ-03: an empty condition is true.
        (json!({}), &["m1", "m2", "m3", "m4"]),
        // EQ-02, one field at a time.
        (json!({"inMailbox": inbox}), &["m1", "m2", "m4"]),
        (json!({"inMailbox": trash}), &[]),
        (json!({"inMailboxOtherThan": [inbox]}), &["m3", "m4"]),
        (json!({"inMailboxOtherThan": [inbox, archive]}), &[]),
        (json!({"before": "2024-01-02T10:00:00Z"}), &["m1"]),
        (json!({"after": "2024-01-03T10:00:00Z"}), &["m3", "m4"]),
        (json!({"hasKeyword": "$seen"}), &["m1", "m3"]),
        (json!({"hasKeyword": "$SEEN"}), &["m1", "m3"]),
        (json!({"notKeyword": "$seen"}), &["m2", "m4"]),
        (json!({"allInThreadHaveKeyword": "$seen"}), &["m3"]),
        (
            json!({"someInThreadHaveKeyword": "$seen"}),
            &["m1", "m2", "m3"],
        ),
        (json!({"noneInThreadHaveKeyword": "$seen"}), &["m4"]),
        (json!({"hasAttachment": true}), &["m1"]),
        (json!({"hasAttachment": false}), &["m2", "m3", "m4"]),
        (json!({"from": "carol"}), &["m3"]),
        (json!({"from": "ALICE"}), &["m1"]),
        (json!({"to": "alice@example.com"}), &["m2"]),
        (json!({"cc": "carol"}), &["m2"]),
        (json!({"bcc": "eve"}), &["m3"]),
        (json!({"subject": "quarterly"}), &["m1", "m2"]),
        (json!({"body": "sushi"}), &["m3"]),
        // EQ-04: text searches the addresses, the subject and the body.
        (json!({"text": "carol"}), &["m2", "m3"]),
        (json!({"text": "needle"}), &["m4"]),
        // EQ-05: every unquoted word must be present; a quoted phrase must appear as is.
        (json!({"text": "quarterly attached"}), &["m1"]),
        (json!({"text": "quarterly sushi"}), &[]),
        (json!({"body": "\"numbers look good\""}), &["m2"]),
        (json!({"body": "\"good look\""}), &[]),
        // A plain word matches as a word prefix; a term without any letter or digit (a LIKE
        // wildcard, say) matches nothing.
        (json!({"subject": "quart"}), &["m1", "m2"]),
        (json!({"subject": "uarterly"}), &[]),
        (json!({"subject": "%"}), &[]),
        (json!({"subject": "&"}), &[]),
        (json!({"header": ["X-Priority"]}), &["m3"]),
        (json!({"header": ["x-priority", "highest"]}), &["m3"]),
        (json!({"header": ["X-Priority", "lowest"]}), &[]),
        (json!({"header": ["In-Reply-To"]}), &["m2"]),
        // EQ-03: several fields in one condition all apply.
        (
            json!({"inMailbox": inbox, "notKeyword": "$seen"}),
            &["m2", "m4"],
        ),
    ];
    // minSize/maxSize: compare against the real sizes.
    let r = f
        .call(json!([["Email/get", {"accountId": f.account, "ids": [f.id("m1"), f.id("m2")], "properties": ["size"]}, "g"]]))
        .await;
    let size_of = |i: usize| r[0][1]["list"][i]["size"].as_u64().unwrap();
    let (big, small) = (size_of(0), size_of(1));
    assert!(big > small);
    let mut size_cases: Vec<(Value, Vec<String>)> = vec![
        (
            json!({"minSize": big, "maxSize": big + 1}),
            vec!["m1".into()],
        ),
        (json!({"maxSize": small, "inMailbox": inbox}), vec![]),
        (
            json!({"minSize": small, "maxSize": small + 1}),
            vec!["m2".into()],
        ),
    ];
    let mut all: Vec<(Value, Vec<String>)> = cases
        .into_iter()
        .map(|(f, want)| (f, names(want)))
        .collect();
    all.append(&mut size_cases);
    for (filter, want) in all {
        let got = f.query_names(json!({"filter": filter})).await;
        assert_eq!(sorted(got), sorted(want), "filter {filter}");
    }
}

#[on_both_backends]
async fn operators_combine_conditions_with_and_or_and_not() {
    let f = Fixture::standard().await;
    let cases: Vec<(Value, &[&str])> = vec![
        // QRY-02
        (
            json!({"operator": "AND", "conditions": [{"inMailbox": f.inbox}, {"hasKeyword": "$seen"}]}),
            &["m1"],
        ),
        (
            json!({"operator": "OR", "conditions": [{"from": "carol"}, {"from": "zed"}]}),
            &["m3", "m4"],
        ),
        // NOT: none of the conditions match.
        (
            json!({"operator": "NOT", "conditions": [{"from": "carol"}, {"from": "zed"}]}),
            &["m1", "m2"],
        ),
        (
            json!({"operator": "AND", "conditions": [
                {"inMailbox": f.inbox},
                {"operator": "NOT", "conditions": [{"operator": "OR", "conditions": [
                    {"hasKeyword": "$seen"}, {"text": "needle"}]}]}
            ]}),
            &["m2"],
        ),
        (json!({"operator": "OR", "conditions": []}), &[]),
        (
            json!({"operator": "AND", "conditions": []}),
            &["m1", "m2", "m3", "m4"],
        ),
    ];
    for (filter, want) in cases {
        let got = f.query_names(json!({"filter": filter})).await;
        assert_eq!(sorted(got), sorted(names(want)), "filter {filter}");
    }
    f.s.stop().await;
}

#[on_both_backends]
async fn each_sort_property_orders_the_results_and_ties_break_stably() {
    let f = Fixture::standard().await;
    check_every_sort(&f).await;
    f.s.stop().await;
}

/// RFC 8620 §5.5: the default collation is Unicode-aware, so a sort by sender puts "Åsa" with the
/// a's and "Émile" with the e's, not after "Zoe" (the stored keys are the collation's keys).
#[on_both_backends]
async fn a_sort_by_sender_puts_accented_names_with_their_base_letters() {
    let mut f = Fixture::empty().await;
    let inbox = f.inbox.clone();
    for (name, from, at) in [
        ("zoe", "Zoe <z@example.com>", "2024-02-01T10:00:00Z"),
        ("asa", "Åsa <a@example.com>", "2024-02-02T10:00:00Z"),
        ("bob", "bob <b@example.com>", "2024-02-03T10:00:00Z"),
        ("emile", "Émile <e@example.com>", "2024-02-04T10:00:00Z"),
        ("anna", "Anna <n@example.com>", "2024-02-05T10:00:00Z"),
    ] {
        f.add(
            name,
            &Msg {
                from,
                to: "alice@example.com",
                subject: "s",
                date: "Thu, 01 Feb 2024 09:00:00 +0000",
                body: "b".into(),
                ..Msg::default()
            },
            &[&inbox],
            &[],
            at,
        );
    }
    let got = f.query_names(json!({"sort": [{"property": "from"}]})).await;
    assert_eq!(got, ["anna", "asa", "bob", "emile", "zoe"]);
    f.s.stop().await;
}

async fn check_every_sort(f: &Fixture) {
    let kw = |p: &str, k: &str, asc: bool| json!([{"property": p, "keyword": k, "isAscending": asc}, {"property": "receivedAt"}]);
    let cases: Vec<(Value, &[&str])> = vec![
        // No sort: newest first.
        (json!(null), &["m4", "m3", "m2", "m1"]),
        (
            json!([{"property": "receivedAt"}]),
            &["m1", "m2", "m3", "m4"],
        ),
        (
            json!([{"property": "receivedAt", "isAscending": false}]),
            &["m4", "m3", "m2", "m1"],
        ),
        // sentAt is the Date header: m3 was sent last.
        (json!([{"property": "sentAt"}]), &["m1", "m2", "m4", "m3"]),
        // EQ-06: from/to by the first address's name, else its email, else "".
        (json!([{"property": "from"}]), &["m1", "m2", "m3", "m4"]),
        (
            json!([{"property": "to"}, {"property": "receivedAt"}]),
            &["m4", "m2", "m1", "m3"],
        ),
        // subject: the base subject, so "Re: Quarterly report" sorts as "quarterly report".
        (
            json!([{"property": "subject"}, {"property": "receivedAt"}]),
            &["m4", "m3", "m1", "m2"],
        ),
        // QRY-04: false < true.
        (kw("hasKeyword", "$seen", true), &["m2", "m4", "m1", "m3"]),
        (kw("hasKeyword", "$seen", false), &["m1", "m3", "m2", "m4"]),
        (
            kw("allInThreadHaveKeyword", "$seen", false),
            &["m3", "m1", "m2", "m4"],
        ),
        (
            kw("someInThreadHaveKeyword", "$seen", false),
            &["m1", "m2", "m3", "m4"],
        ),
    ];
    for (sort, want) in cases {
        let got = f.query_names(json!({"sort": sort})).await;
        assert_eq!(got, names(want), "sort {sort}");
    }
    // size: compared with the sizes Email/get reports.
    let all: Vec<String> = ["m1", "m2", "m3", "m4"].iter().map(|n| f.id(n)).collect();
    let r = f
        .call(json!([["Email/get", {"accountId": f.account, "ids": all, "properties": ["size"]}, "g"]]))
        .await;
    let mut by_size: Vec<(u64, String)> = r[0][1]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["size"].as_u64().unwrap(),
                e["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    by_size.sort();
    by_size.reverse();
    let want: Vec<String> = by_size.into_iter().map(|(_, id)| id).collect();
    let r = f
        .query(json!({"sort": [{"property": "size", "isAscending": false}]}))
        .await;
    assert_eq!(ids_of(&r[1]["ids"]), want);
    // QRY-05: the same query gives the same order every time.
    let a = f
        .query_names(json!({"sort": [{"property": "hasKeyword", "keyword": "$flagged"}]}))
        .await;
    let b = f
        .query_names(json!({"sort": [{"property": "hasKeyword", "keyword": "$flagged"}]}))
        .await;
    assert_eq!(a, b);
}

#[on_both_backends]
async fn collapse_threads_keeps_only_the_first_email_of_each_thread() {
    let f = Fixture::standard().await;
    // EQ-01: after filtering and sorting; m2 is newer than m1, m1 older.
    let r = f
        .query(json!({"collapseThreads": true, "calculateTotal": true}))
        .await;
    assert_eq!(f.names(&r[1]["ids"]), names(&["m4", "m3", "m2"]));
    assert_eq!(r[1]["total"], 3);
    let got = f
        .query_names(json!({"collapseThreads": true, "sort": [{"property": "receivedAt"}]}))
        .await;
    assert_eq!(got, names(&["m1", "m3", "m4"]));
    // The filter applies first: with m2 filtered out, m1 represents the thread.
    let got = f
        .query_names(json!({"collapseThreads": true, "filter": {"hasKeyword": "$seen"}}))
        .await;
    assert_eq!(got, names(&["m3", "m1"]));
    // position and anchor count in the collapsed list.
    let r = f
        .query(
            json!({"collapseThreads": true, "anchor": f.id("m3"), "anchorOffset": 1, "limit": 5}),
        )
        .await;
    assert_eq!(f.names(&r[1]["ids"]), names(&["m2"]));
    assert_eq!(r[1]["position"], 2);
    f.s.stop().await;
}

#[on_both_backends]
async fn position_anchor_limit_and_total_pick_the_window() {
    let f = Fixture::standard().await;
    // All four, newest first: m4 m3 m2 m1.
    let check = |r: &Value, ids: &[&str], position: u64| {
        assert_eq!(f.names(&r[1]["ids"]), names(ids), "{r}");
        assert_eq!(r[1]["position"], position, "{r}");
    };
    let r = f.query(json!({"position": 1, "limit": 2})).await;
    check(&r, &["m3", "m2"], 1);
    // QRY-09: total only when asked; limit only when the server changed it.
    assert!(r[1].get("total").is_none());
    assert!(r[1].get("limit").is_none());
    assert_eq!(r[1]["canCalculateChanges"], true);
    let r = f
        .query(json!({"position": -1, "calculateTotal": true}))
        .await;
    check(&r, &["m1"], 3); // QRY-06
    assert_eq!(r[1]["total"], 4);
    check(
        &f.query(json!({"position": -10, "limit": 1})).await,
        &["m4"],
        0,
    );
    check(&f.query(json!({"position": 9})).await, &[], 4);
    // QRY-07: an anchor overrides position; the offset is clamped at 0.
    let r = f
        .query(json!({"position": 3, "anchor": f.id("m3"), "anchorOffset": 1, "limit": 1}))
        .await;
    check(&r, &["m2"], 2);
    let r = f
        .query(json!({"anchor": f.id("m3"), "anchorOffset": -5}))
        .await;
    check(&r, &["m4", "m3", "m2", "m1"], 0);
    let r = f
        .query(json!({"anchor": f.id("m1"), "anchorOffset": 3}))
        .await;
    check(&r, &[], 4);
    let r = f.query(json!({"anchor": "nope", "limit": 1})).await;
    assert_eq!(r[0], "error");
    assert_eq!(r[1]["type"], "anchorNotFound");
    // An anchor that exists but does not match the filter is not found either.
    let r = f
        .query(json!({"anchor": f.id("m3"), "filter": {"inMailbox": f.inbox}}))
        .await;
    assert_eq!(r[1]["type"], "anchorNotFound");
    // QRY-08: a negative limit is invalid.
    let r = f.query(json!({"limit": -1})).await;
    assert_eq!(r[1]["type"], "invalidArguments");
    let r = f.query(json!({"limit": 0, "calculateTotal": true})).await;
    check(&r, &[], 0);
    assert_eq!(r[1]["total"], 4);
    f.s.stop().await;
}

#[on_both_backends]
async fn bad_filters_and_sorts_get_their_errors_and_the_sort_options_are_advertised() {
    let f = Fixture::standard().await;
    let error = |r: &Value| r[1]["type"].as_str().unwrap_or_default().to_owned();
    for (args, want) in [
        (json!({"filter": {"colour": "red"}}), "unsupportedFilter"),
        (
            json!({"filter": {"operator": "AND", "conditions": [{"size": 3}]}}),
            "unsupportedFilter",
        ),
        (
            json!({"filter": {"operator": "MAYBE", "conditions": []}}),
            "invalidArguments",
        ),
        (json!({"filter": {"header": []}}), "invalidArguments"),
        (
            json!({"filter": {"before": "yesterday"}}),
            "invalidArguments",
        ),
        (json!({"filter": {"inMailbox": 3}}), "invalidArguments"),
        (json!({"sort": [{"property": "id"}]}), "unsupportedSort"),
        (
            json!({"sort": [{"property": "subject", "collation": "i;klingon"}]}),
            "unsupportedSort",
        ),
        (
            json!({"sort": [{"property": "hasKeyword"}]}),
            "invalidArguments",
        ),
        (json!({"collapseThreads": "yes"}), "invalidArguments"),
    ] {
        let r = f.query(args.clone()).await;
        assert_eq!(r[0], "error", "{args}");
        assert_eq!(error(&r), want, "{args}");
    }
    // EQ-06: the supported sorts are advertised.
    let session = f.s.get("/jmap/session", &f.alice).await.body;
    let options =
        &session["accounts"][&f.account]["accountCapabilities"][MAIL]["emailQuerySortOptions"];
    for p in [
        "receivedAt",
        "sentAt",
        "size",
        "from",
        "to",
        "subject",
        "hasKeyword",
        "allInThreadHaveKeyword",
        "someInThreadHaveKeyword",
    ] {
        assert!(
            options.as_array().unwrap().contains(&json!(p)),
            "{p} in {options}"
        );
    }
    f.s.stop().await;
}

/// The errata-6604 client algorithm (QCH-06): splice out `removed`, splice in `added` by index,
/// truncate to `total`.
fn apply_query_changes(cached: &[String], changes: &Value) -> Vec<String> {
    let removed: Vec<&str> = changes["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut list: Vec<String> = cached
        .iter()
        .filter(|id| !removed.contains(&id.as_str()))
        .cloned()
        .collect();
    let mut added: Vec<(usize, String)> = changes["added"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["index"].as_u64().unwrap() as usize,
                a["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    added.sort();
    for (index, id) in added {
        assert!(
            index <= list.len(),
            "added index {index} beyond {}",
            list.len()
        );
        list.insert(index, id);
    }
    if let Some(total) = changes["total"].as_u64() {
        list.truncate(total as usize);
    }
    list
}

fn ids_of(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_owned())
        .collect()
}

#[on_both_backends]
async fn a_client_syncs_a_cached_query_with_query_changes_and_gets_exactly_the_delta() {
    let mut f = Fixture::standard().await;
    let inbox = f.inbox.clone();
    let (account, inbox_id) = (f.account.clone(), f.inbox.clone());
    let args = move |collapse: bool| {
        json!({"accountId": account, "filter": {"inMailbox": inbox_id},
               "sort": [{"property": "receivedAt", "isAscending": false}],
               "collapseThreads": collapse, "calculateTotal": true})
    };
    // Email/query, then Email/get through a result reference (RES-*).
    let r = f
        .call(json!([
            ["Email/query", args(false), "q"],
            ["Email/get", {"accountId": f.account, "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"},
                           "properties": ["subject", "mailboxIds"]}, "g"],
            ["Email/query", args(true), "c"],
        ]))
        .await;
    let cached = ids_of(&r[0][1]["ids"]);
    let cached_collapsed = ids_of(&r[2][1]["ids"]);
    let query_state = r[0][1]["queryState"].as_str().unwrap().to_owned();
    let email_state = r[1][1]["state"].as_str().unwrap().to_owned();
    assert_eq!(f.names(&r[0][1]["ids"]), names(&["m4", "m2", "m1"]));
    let got: Vec<&str> = r[1][1]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, cached.iter().map(String::as_str).collect::<Vec<_>>());
    // The query state is the Email state.
    assert_eq!(query_state, email_state);

    // Mutations: m2 leaves the inbox, m3 enters it, m4 is destroyed, a reply to m1 arrives.
    let r = f
        .call(json!([["Email/set", {"accountId": f.account,
            "update": {
                f.id("m2"): {"mailboxIds": {f.archive.clone(): true}},
                f.id("m3"): {format!("mailboxIds/{inbox}"): true},
            },
            "destroy": [f.id("m4")]}, "s"]]))
        .await;
    assert_eq!(r[0][0], "Email/set", "{:?}", r[0]);
    assert!(
        r[0][1]["notUpdated"].is_null() && r[0][1]["notDestroyed"].is_null(),
        "{:?}",
        r[0]
    );
    f.add(
        "m5",
        &Msg {
            from: "Bob Brown <bob@example.com>",
            to: "Alice Adams <alice@example.com>",
            subject: "Re: Quarterly report",
            date: "Fri, 05 Jan 2024 09:00:00 +0000",
            message_id: "<m5@example.com>",
            in_reply_to: "<m1@example.com>",
            body: "One more thing.".into(),
            ..Msg::default()
        },
        &[&inbox],
        &[],
        "2024-01-05T10:00:00Z",
    );

    // Email/changes names every touched email; Email/queryChanges gives the delta.
    let r = f
        .call(json!([
            ["Email/changes", {"accountId": f.account, "sinceState": email_state}, "ch"],
            ["Email/queryChanges", {"accountId": f.account, "filter": {"inMailbox": f.inbox},
                "sort": [{"property": "receivedAt", "isAscending": false}],
                "sinceQueryState": query_state, "calculateTotal": true}, "qc"],
            ["Email/queryChanges", {"accountId": f.account, "filter": {"inMailbox": f.inbox},
                "sort": [{"property": "receivedAt", "isAscending": false}], "collapseThreads": true,
                "sinceQueryState": query_state, "calculateTotal": true}, "qcc"],
            ["Email/query", args(false), "q"],
            ["Email/query", args(true), "c"],
        ]))
        .await;
    let ch = &r[0][1];
    let mut changed: Vec<String> = ["created", "updated", "destroyed"]
        .iter()
        .flat_map(|k| ids_of(&ch[*k]))
        .collect();
    changed.sort();
    let mut want: Vec<String> = ["m2", "m3", "m4", "m5"].iter().map(|n| f.id(n)).collect();
    want.sort();
    assert_eq!(changed, want);
    assert_eq!(r[1][0], "Email/queryChanges", "{:?}", r[1]);
    assert_eq!(r[1][1]["oldQueryState"], query_state.as_str());
    assert_eq!(r[1][1]["newQueryState"], r[3][1]["queryState"]);
    // QCH-02, QCH-03: the client's cache patched with the delta equals a fresh query.
    let fresh = ids_of(&r[3][1]["ids"]);
    assert_eq!(f.names(&r[3][1]["ids"]), names(&["m5", "m3", "m1"]));
    assert_eq!(apply_query_changes(&cached, &r[1][1]), fresh);
    assert_eq!(r[1][1]["total"], 3);
    // EQ-08: with collapseThreads as well (m5 now represents m1's thread).
    let fresh_collapsed = ids_of(&r[4][1]["ids"]);
    assert_eq!(f.names(&r[4][1]["ids"]), names(&["m5", "m3"]));
    assert_eq!(
        apply_query_changes(&cached_collapsed, &r[2][1]),
        fresh_collapsed
    );
    f.s.stop().await;
}

/// QRY-06: an anchor far into the results (beyond the first windows the server reads while it
/// looks for it) is found at its index, and the window around it is right.
#[on_both_backends]
async fn an_anchor_hundreds_of_results_in_is_found_at_its_index() {
    let f = three_hundred_in_the_inbox().await;
    let all = f
        .query(json!({"sort": [{"property": "receivedAt", "isAscending": true}], "limit": 300}))
        .await;
    let ids = ids_of(&all[1]["ids"]);
    assert_eq!(ids.len(), 300);
    let r = f
        .query(
            json!({"sort": [{"property": "receivedAt", "isAscending": true}],
                      "anchor": ids[290], "anchorOffset": -1, "limit": 3}),
        )
        .await;
    assert_eq!(r[1]["position"], 289, "{:?}", r[1]);
    assert_eq!(ids_of(&r[1]["ids"]), ids[289..292].to_vec());
    f.s.stop().await;
}

/// 300 emails in the inbox, a second apart (n000 the oldest).
async fn three_hundred_in_the_inbox() -> Fixture {
    let f = Fixture::empty().await;
    let create: serde_json::Map<String, Value> = (0..300)
        .map(|i| {
            let email = json!({"mailboxIds": {f.inbox.clone(): true},
                "subject": format!("n{i:03}"), "receivedAt": format!("2024-01-01T00:{:02}:{:02}Z", i / 60, i % 60),
                "textBody": [{"partId": "t", "type": "text/plain"}],
                "bodyValues": {"t": {"value": "x"}}});
            (format!("c{i}"), email)
        })
        .collect();
    let r = f
        .call(json!([["Email/set", {"accountId": f.account, "create": create}, "s"]]))
        .await;
    assert!(r[0][1]["notCreated"].is_null(), "{:?}", r[0]);
    f
}

/// EQ-08 without `upToId`: the server reads the results only as far as the last touched email
/// that still matches, so a change hundreds of results in (beyond its first windows) is added
/// at its index, one destroyed is only removed, and the total counts them all.
#[on_both_backends]
async fn query_changes_without_up_to_id_place_a_change_hundreds_of_results_in() {
    let f = three_hundred_in_the_inbox().await;
    let by_date = json!([{"property": "receivedAt", "isAscending": false}]);
    let all = f
        .query(json!({"filter": {"inMailbox": f.inbox}, "sort": by_date, "limit": 300}))
        .await;
    let ids = ids_of(&all[1]["ids"]);
    let state = all[1]["queryState"].as_str().unwrap().to_owned();
    // The newest and the oldest are flagged, the 150th destroyed.
    let r = f
        .call(json!([["Email/set", {"accountId": f.account,
            "update": {ids[0].clone(): {"keywords/$flagged": true}, ids[299].clone(): {"keywords/$flagged": true}},
            "destroy": [ids[150].clone()]}, "s"]]))
        .await;
    assert!(r[0][1]["notUpdated"].is_null(), "{:?}", r[0]);
    let r = f
        .call(json!([["Email/queryChanges", {"accountId": f.account,
            "filter": {"inMailbox": f.inbox}, "sort": by_date, "sinceQueryState": state,
            "calculateTotal": true}, "qc"]]))
        .await;
    assert_eq!(r[0][0], "Email/queryChanges", "{:?}", r[0]);
    assert_eq!(
        r[0][1]["added"],
        json!([{"id": ids[0], "index": 0}, {"id": ids[299], "index": 298}])
    );
    let mut removed = ids_of(&r[0][1]["removed"]);
    removed.sort();
    let mut want = vec![ids[0].clone(), ids[150].clone(), ids[299].clone()];
    want.sort();
    assert_eq!(removed, want);
    assert_eq!(r[0][1]["total"], 299);
    f.s.stop().await;
}

/// RFC 8620 §5.6 `upToId`: with a sort on immutable properties, changes after the client's last
/// cached id are left out (so the server reads no further than it), and the total still counts
/// every email.
#[on_both_backends]
async fn query_changes_up_to_the_clients_last_cached_id_leave_out_what_lies_beyond_it() {
    let f = Fixture::standard().await;
    let by_date = json!([{"property": "receivedAt", "isAscending": false}]);
    let r = f
        .query(json!({"filter": {"inMailbox": f.inbox}, "sort": by_date, "limit": 2}))
        .await;
    assert_eq!(f.names(&r[1]["ids"]), names(&["m4", "m2"]));
    let state = r[1]["queryState"].as_str().unwrap().to_owned();
    // m4 (before the cached end) and m1 (after it) change.
    let r = f
        .call(json!([["Email/set", {"accountId": f.account,
            "update": {f.id("m4"): {"keywords/tagged": true}, f.id("m1"): {"keywords/tagged": true}}}, "s"]]))
        .await;
    assert!(r[0][1]["notUpdated"].is_null(), "{:?}", r[0]);
    let changes = |up_to: Option<&str>, sort: &Value| {
        let mut args = json!({"accountId": f.account, "filter": {"inMailbox": f.inbox},
            "sort": sort, "sinceQueryState": state, "calculateTotal": true});
        if let Some(id) = up_to {
            args["upToId"] = json!(f.id(id));
        }
        json!([["Email/queryChanges", args, "qc"]])
    };
    let added = |r: &Vec<Value>| -> Vec<(String, u64)> {
        assert_eq!(r[0][0], "Email/queryChanges", "{:?}", r[0]);
        r[0][1]["added"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["id"].as_str().unwrap().to_owned(),
                    a["index"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    // Up to m2: m4 is re-added at 0, m1 (beyond m2) is only removed; the total is all three.
    let r = f.call(changes(Some("m2"), &by_date)).await;
    assert_eq!(added(&r), vec![(f.id("m4"), 0)]);
    let mut removed = ids_of(&r[0][1]["removed"]);
    removed.sort();
    let mut want = vec![f.id("m1"), f.id("m4")];
    want.sort();
    assert_eq!(removed, want);
    assert_eq!(r[0][1]["total"], 3);
    // Without upToId, or when upToId itself changed, or with a sort on a keyword (mutable):
    // every touched email that matches is re-added.
    let everything = vec![(f.id("m4"), 0), (f.id("m1"), 2)];
    let r = f.call(changes(None, &by_date)).await;
    assert_eq!(added(&r), everything);
    let r = f.call(changes(Some("m1"), &by_date)).await;
    assert_eq!(added(&r), everything);
    let by_tag = json!([{"property": "hasKeyword", "keyword": "tagged", "isAscending": false},
                         {"property": "receivedAt", "isAscending": false}]);
    let r = f.call(changes(Some("m2"), &by_tag)).await;
    assert_eq!(added(&r).len(), 2, "{:?}", r[0]);
    f.s.stop().await;
}

#[on_both_backends]
async fn query_changes_refuses_too_many_changes_and_states_it_never_issued() {
    let f = Fixture::standard().await;
    let r = f.query(json!({})).await;
    let state = r[1]["queryState"].as_str().unwrap().to_owned();
    let r = f
        .call(json!([["Email/set", {"accountId": f.account,
            "update": {f.id("m1"): {"keywords/$flagged": true}, f.id("m2"): {"keywords/$flagged": true}}}, "s"]]))
        .await;
    assert_eq!(r[0][0], "Email/set");
    let qc = |since: &str, max: Value| json!([["Email/queryChanges", {"accountId": f.account, "sinceQueryState": since, "maxChanges": max}, "qc"]]);
    // QCH-05: 2 removed + 2 added > 3.
    let r = f.call(qc(&state, json!(3))).await;
    assert_eq!(
        (r[0][0].as_str().unwrap(), r[0][1]["type"].as_str().unwrap()),
        ("error", "tooManyChanges")
    );
    let r = f.call(qc(&state, json!(4))).await;
    assert_eq!(r[0][0], "Email/queryChanges");
    assert_eq!(r[0][1]["added"].as_array().unwrap().len(), 2);
    // QCH-07: added is an array even when empty.
    let now = r[0][1]["newQueryState"].as_str().unwrap().to_owned();
    let r = f.call(qc(&now, json!(null))).await;
    assert_eq!(r[0][1]["added"], json!([]));
    assert_eq!(r[0][1]["removed"], json!([]));
    for bad in ["garbage", "999999"] {
        let r = f.call(qc(bad, json!(null))).await;
        assert_eq!(r[0][1]["type"], "cannotCalculateChanges", "{bad}");
    }
    f.s.stop().await;
}

#[on_both_backends]
async fn search_snippets_mark_matches_escape_html_and_are_null_without_a_match() {
    let f = Fixture::standard().await;
    let r = f
        .call(json!([["SearchSnippet/get", {"accountId": f.account,
            "filter": {"operator": "OR", "conditions": [{"text": "needle"}, {"subject": "budget"}, {"subject": "quarterly"}]},
            "emailIds": [f.id("m4"), f.id("m1"), f.id("m3"), "nope"]}, "sn"]]))
        .await;
    assert_eq!(r[0][0], "SearchSnippet/get", "{:?}", r[0]);
    let list = r[0][1]["list"].as_array().unwrap();
    let by_id: HashMap<&str, &Value> = list
        .iter()
        .map(|s| (s["emailId"].as_str().unwrap(), s))
        .collect();
    // SNIP-02: emailId, subject, preview; no id.
    let m4 = by_id[f.id("m4").as_str()];
    assert!(m4.get("id").is_none());
    // SNIP-03: escaped and marked.
    assert_eq!(m4["subject"], "<mark>Budget</mark> &amp; &lt;plans&gt;");
    let preview = m4["preview"].as_str().unwrap();
    assert!(
        preview.contains("The <mark>needle</mark> is here &amp; &lt;safe&gt;."),
        "{preview}"
    );
    // SNIP-04: at most 255 octets of text.
    let plain = preview
        .replace("<mark>", "")
        .replace("</mark>", "")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">");
    assert!(plain.len() <= 255, "{}", plain.len());
    let m1 = by_id[f.id("m1").as_str()];
    assert_eq!(m1["subject"], "<mark>Quarterly</mark> report");
    assert_eq!(m1["preview"], Value::Null, "the body does not match");
    // m3 does not match the filter: both null.
    let m3 = by_id[f.id("m3").as_str()];
    assert_eq!(
        (m3["subject"].clone(), m3["preview"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(r[0][1]["notFound"], json!(["nope"]));
    // SNIP-01: notFound is null when every id was found.
    let r = f
        .call(json!([["SearchSnippet/get", {"accountId": f.account, "filter": {"body": "\"numbers look\""},
            "emailIds": [f.id("m2")]}, "sn"]]))
        .await;
    assert_eq!(r[0][1]["notFound"], Value::Null);
    assert_eq!(
        r[0][1]["list"][0]["preview"],
        "Thanks, the <mark>numbers look</mark> good."
    );
    // SNIP-05
    let r = f
        .call(json!([["SearchSnippet/get", {"accountId": f.account, "filter": {"colour": 1}, "emailIds": []}, "sn"]]))
        .await;
    assert_eq!(r[0][1]["type"], "unsupportedFilter");
    f.s.stop().await;
}

// SQLite only: it reads SQLite's query plan.
#[actix_web::test]
async fn in_mailbox_newest_first_walks_an_index_on_a_100000_message_account() {
    let f = Fixture::empty().await;
    let mut conn = f.s.store.conn().unwrap();
    // 100,000 emails, every third one in the archive, the rest in the inbox; inserted in SQL
    // because only the plan is under test here.
    let sql = format!(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
         INSERT INTO emails (account_id, id, blob_id, thread_id, size, received_at)
         SELECT '{a}', printf('e%06d', i), 'b', printf('t%06d', i / 3), 1000 + i, 1700000000 + i FROM n;
         INSERT INTO email_mailboxes (account_id, email_id, mailbox_id, received_at)
         SELECT e.account_id, e.id, CASE WHEN e.size % 3 = 0 THEN '{archive}' ELSE '{inbox}' END, e.received_at
         FROM emails e WHERE e.account_id = '{a}';
         ANALYZE;",
        a = f.account,
        inbox = f.inbox,
        archive = f.archive
    );
    use diesel::connection::SimpleConnection;
    match &mut *conn {
        herald::store::AnyConnection::Sqlite(c) => c.batch_execute(&sql).unwrap(),
        _ => panic!("this test runs on SQLite"),
    }
    // Rows written around the store: its maintained counts are rebuilt, as `herald check
    // --repair` does.
    herald::store::mailbox_counts::repair(&mut conn, &f.account).unwrap();
    let query = herald::jmap::methods::email_query::EmailQuery {
        filter: Some(
            herald::jmap::methods::email_query::Filter::parse(
                &json!({"inMailbox": f.inbox}),
                &Default::default(),
            )
            .unwrap(),
        ),
        sort: herald::jmap::methods::email_query::parse_sort(&[], &Default::default()).unwrap(),
        collapse_threads: false,
    };
    let plan = herald::store::email_query::sqlite_query_plan(&mut conn, &f.account, &query, 0, 50)
        .unwrap();
    let plan = plan.join("\n");
    println!("EXPLAIN QUERY PLAN (inMailbox, receivedAt desc, limit 50):\n{plan}");
    assert!(plan.contains("email_mailboxes_received"), "{plan}");
    assert!(!plan.contains("TEMP B-TREE"), "no sort step: {plan}");
    assert!(!plan.contains("SCAN e "), "{plan}");
    drop(conn);
    // And the answer over HTTP is the newest inbox emails.
    let r = f
        .query(json!({"filter": {"inMailbox": f.inbox}, "limit": 3, "calculateTotal": true}))
        .await;
    assert_eq!(r[1]["ids"], json!(["e100000", "e099999", "e099997"]));
    assert_eq!(r[1]["total"], 66667);
    f.s.stop().await;
}

/// Gives `user` access to `account_id` (no sharing API yet: straight into the table).
fn share(s: &TestServer, user: &str, account_id: &str, may_write: bool) {
    use diesel::prelude::*;
    use herald::store::schema::account_access;
    let mut conn = s.store.conn().unwrap();
    let user_id = herald::store::users::find_by_name(&mut conn, user)
        .unwrap()
        .unwrap()
        .id;
    diesel::insert_into(account_access::table)
        .values((
            account_access::user_id.eq(user_id),
            account_access::account_id.eq(account_id),
            account_access::is_owner.eq(false),
            account_access::may_write.eq(may_write),
        ))
        .execute(&mut *conn)
        .unwrap();
}

#[on_both_backends]
async fn email_copy_copies_into_another_account_and_can_destroy_the_originals() {
    let f = Fixture::standard().await;
    let bob = f.s.add_user("bob", "pw");
    let bob_account = f.s.get("/jmap/session", &bob).await.body["primaryAccounts"][MAIL]
        .as_str()
        .unwrap()
        .to_owned();
    share(&f.s, "alice", &bob_account, true);
    let bob_inbox = crate::harness::push::inbox_id(&f.s, &f.alice, &bob_account).await;
    let from_state = f.query(json!({})).await[1]["queryState"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = f
        .call(json!([
            ["Email/copy", {"fromAccountId": f.account, "accountId": bob_account,
                "ifFromInState": from_state,
                "create": {
                    "c1": {"id": f.id("m1"), "mailboxIds": {bob_inbox.clone(): true}, "keywords": {"$flagged": true}},
                    "c2": {"id": f.id("m3"), "mailboxIds": {bob_inbox.clone(): true}, "receivedAt": "2025-05-05T05:05:05Z"},
                    "c3": {"id": f.id("m2"), "mailboxIds": {bob_inbox.clone(): true}, "subject": "no"},
                    "c4": {"id": "nope", "mailboxIds": {bob_inbox.clone(): true}},
                    "c5": {"id": f.id("m4")},
                },
                "onSuccessDestroyOriginal": true}, "cp"],
            ["Email/get", {"accountId": bob_account, "ids": ["#c1", "#c2"],
                "properties": ["subject", "keywords", "mailboxIds", "receivedAt", "blobId"]}, "g"],
            ["Email/query", {"accountId": f.account}, "q"],
        ]))
        .await;
    // CPY-02: the /copy response.
    assert_eq!(r[0][0], "Email/copy", "{:?}", r[0]);
    let cp = &r[0][1];
    assert_eq!(cp["fromAccountId"], f.account.as_str());
    assert_eq!(cp["accountId"], bob_account.as_str());
    assert!(cp["oldState"].is_string() && cp["newState"].is_string());
    let created = cp["created"].as_object().unwrap();
    assert_eq!(created.keys().collect::<Vec<_>>(), vec!["c1", "c2"]);
    for c in created.values() {
        for k in ["id", "blobId", "threadId", "size"] {
            assert!(c.get(k).is_some(), "{k} in {c}"); // ECP-01
        }
    }
    // ECP-01: only mailboxIds, keywords and receivedAt may be set; mailboxIds are required.
    assert_eq!(cp["notCreated"]["c3"]["type"], "invalidProperties");
    assert_eq!(cp["notCreated"]["c3"]["properties"], json!(["subject"]));
    assert_eq!(cp["notCreated"]["c4"]["type"], "notFound");
    assert_eq!(cp["notCreated"]["c5"]["type"], "invalidProperties");
    // CPY-03: then the implicit Email/set destroying the copied originals, same call id.
    assert_eq!(r[1][0], "Email/set", "{:?}", r[1]);
    assert_eq!(r[1][2], "cp");
    let mut destroyed = ids_of(&r[1][1]["destroyed"]);
    destroyed.sort();
    let mut want = vec![f.id("m1"), f.id("m3")];
    want.sort();
    assert_eq!(destroyed, want);
    // The copies have the originals' message and the overrides.
    let list = r[2][1]["list"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{:?}", r[2]);
    let c1 = list
        .iter()
        .find(|e| e["id"] == created["c1"]["id"])
        .unwrap();
    assert_eq!(c1["subject"], "Quarterly report");
    assert_eq!(c1["keywords"], json!({"$flagged": true}));
    assert_eq!(c1["mailboxIds"], json!({bob_inbox.clone(): true}));
    assert_eq!(c1["receivedAt"], "2024-01-01T10:00:00Z");
    let c2 = list
        .iter()
        .find(|e| e["id"] == created["c2"]["id"])
        .unwrap();
    assert_eq!(c2["keywords"], json!({"$flagged": true, "$seen": true}));
    assert_eq!(c2["receivedAt"], "2025-05-05T05:05:05Z");
    assert_eq!(f.names(&r[3][1]["ids"]), names(&["m4", "m2"]));

    // CPY-04: state checks and a source account the user cannot see.
    let r = f
        .call(json!([
            ["Email/copy", {"fromAccountId": f.account, "accountId": bob_account, "ifFromInState": "x1",
                "create": {"c": {"id": f.id("m2"), "mailboxIds": {bob_inbox.clone(): true}}}}, "a"],
            ["Email/copy", {"fromAccountId": f.account, "accountId": bob_account, "ifInState": "x1",
                "create": {"c": {"id": f.id("m2"), "mailboxIds": {bob_inbox.clone(): true}}}}, "b"],
            ["Email/copy", {"fromAccountId": "nobody", "accountId": bob_account,
                "create": {}}, "c"],
            ["Email/copy", {"fromAccountId": f.account, "accountId": f.account,
                "create": {}}, "d"],
        ]))
        .await;
    let types: Vec<&str> = r
        .iter()
        .map(|x| x[1]["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        types,
        vec![
            "stateMismatch",
            "stateMismatch",
            "fromAccountNotFound",
            "invalidArguments"
        ]
    );
    f.s.stop().await;
}
