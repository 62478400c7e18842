//! Filters and sorts beyond what `[query]` allows are method errors, never `serverFail`: the
//! database's own limits (expression depth, bound variables, ORDER BY terms) are never reached.

use crate::harness::push::account_id;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::harness::{Auth, CORE, TestServer, on_both_backends};

const MAIL: &str = "urn:ietf:params:jmap:mail";

struct Setup {
    s: TestServer,
    alice: Auth,
    account: String,
    inbox: String,
}

async fn setup() -> Setup {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let account = account_id(&s, &alice).await;
    let inbox = crate::harness::push::inbox_id(&s, &alice, &account).await;
    for (i, subject) in ["invoice march", "lunch on friday", "über alles"]
        .iter()
        .enumerate()
    {
        let message = format!(
            "From: a{i}@example.com\r\nTo: alice@localhost\r\nSubject: {subject}\r\n\
             Message-ID: <m{i}@example.com>\r\n\r\nbody of {subject}\r\n"
        );
        let upload = s
            .post_raw(
                &format!("/jmap/upload/{account}/"),
                &alice,
                "message/rfc822",
                message.into_bytes(),
            )
            .await;
        let blob = upload.body["blobId"].as_str().unwrap().to_owned();
        let r = s
            .call(
                &alice,
                &[CORE, MAIL],
                json!([["Email/import", {"accountId": account, "emails": {
                    "e": {"blobId": blob, "mailboxIds": {inbox.clone(): true}}}}, "0"]]),
            )
            .await;
        assert!(r[0][1]["created"]["e"].is_object(), "{r:?}");
    }
    Setup {
        s,
        alice,
        account,
        inbox,
    }
}

impl Setup {
    /// Runs `filter`/`sort` through Email/query, Email/queryChanges and SearchSnippet/get and
    /// returns each answer's method name and error type (None for a result).
    async fn ask(&self, filter: &Value, sort: &Value) -> Vec<(String, Option<String>)> {
        let r = self
            .s
            .call(
                &self.alice,
                &[CORE, MAIL],
                json!([
                    ["Email/query", {"accountId": self.account, "filter": filter, "sort": sort,
                        "calculateTotal": true}, "0"],
                    ["Email/queryChanges", {"accountId": self.account, "filter": filter,
                        "sort": sort, "sinceQueryState": "0"}, "1"],
                    ["SearchSnippet/get", {"accountId": self.account, "filter": filter,
                        "emailIds": []}, "2"]
                ]),
            )
            .await;
        r.iter()
            .map(|answer| {
                let error = (answer[0] == "error")
                    .then(|| answer[1]["type"].as_str().unwrap_or("?").to_owned());
                (answer[0].as_str().unwrap().to_owned(), error)
            })
            .collect()
    }
}

fn only_method_errors(answers: &[(String, Option<String>)], what: &str) {
    for (_, error) in answers {
        if let Some(e) = error {
            assert!(
                [
                    "unsupportedFilter",
                    "unsupportedSort",
                    "invalidArguments",
                    "cannotCalculateChanges"
                ]
                .contains(&e.as_str()),
                "{what}: {answers:?}"
            );
        }
    }
}

#[on_both_backends]
async fn filters_and_sorts_that_once_broke_the_database_are_refused_as_method_errors() {
    let t = setup().await;
    let or_of = |conditions: Vec<Value>| json!({"operator": "OR", "conditions": conditions});
    let cases = [
        (
            "1,000 OR'd inMailbox",
            or_of(vec![json!({"inMailbox": t.inbox}); 1000]),
            json!([]),
        ),
        (
            "1,000 text conditions",
            or_of(vec![json!({"text": "invoice"}); 1000]),
            json!([]),
        ),
        (
            "a 1,000-word text search",
            json!({"text": (0..1000).map(|i| format!("w{i}")).collect::<Vec<_>>().join(" ")}),
            json!([]),
        ),
        (
            // Each word is a scan of every message's text until search is indexed.
            "five words of text search, one past max_text_terms",
            or_of(vec![
                json!({"text": "invoice lunch"}),
                json!({"from": "alice"}),
                json!({"body": "\"quarterly report\" draft"}),
            ]),
            json!([]),
        ),
        (
            "40,000 ids in inMailboxOtherThan",
            json!({"inMailboxOtherThan": vec![t.inbox.clone(); 40_000]}),
            json!([]),
        ),
        (
            "2,000 comparators",
            json!({}),
            json!(vec![json!({"property": "receivedAt"}); 2000]),
        ),
    ];
    for (what, filter, sort) in cases {
        let answers = t.ask(&filter, &sort).await;
        only_method_errors(&answers, what);
        assert!(
            answers[0]
                .1
                .as_deref()
                .is_some_and(|e| e.starts_with("unsupported")),
            "{what}: {answers:?}"
        );
    }
    // At the limits, the same shapes run.
    let limits = herald::config::limits::QueryLimits::default();
    let at_limit = or_of(vec![
        json!({"hasKeyword": "$seen"});
        limits.max_filter_conditions
    ]);
    let answers = t.ask(&at_limit, &json!([])).await;
    assert_eq!(answers[0].1, None, "{answers:?}");
    let words: Vec<String> = (0..limits.max_text_terms)
        .map(|i| format!("w{i}"))
        .collect();
    let answers = t.ask(&json!({"text": words.join(" ")}), &json!([])).await;
    assert_eq!(answers[0].1, None, "{answers:?}");
}

/// A random filter: operators nested up to `depth`, every kind of condition.
fn random_filter(rng: &mut StdRng, depth: usize, inbox: &str) -> Value {
    // About 0.9 children per node on average: trees stay finite, and some grow past the limits.
    if depth > 0 && rng.random_bool(0.35) {
        let operator = ["AND", "OR", "NOT"][rng.random_range(0..3)];
        let n = rng.random_range(0..6);
        let conditions: Vec<Value> = (0..n)
            .map(|_| random_filter(rng, depth - 1, inbox))
            .collect();
        return json!({"operator": operator, "conditions": conditions});
    }
    let words = [
        "invoice",
        "über",
        "lunch",
        "50%_x",
        "\"on friday\"",
        "ALLES",
        "a b c d e f",
    ];
    let (w1, w2) = (
        words[rng.random_range(0..words.len())],
        words[rng.random_range(0..words.len())],
    );
    let body: Vec<String> = (0..rng.random_range(1..40))
        .map(|i| format!("b{i}"))
        .collect();
    match rng.random_range(0..10) {
        0 => json!({"inMailbox": inbox}),
        1 => json!({"inMailboxOtherThan": vec![inbox; rng.random_range(0..1500)]}),
        2 => json!({"text": w1, "hasKeyword": "$seen"}),
        3 => json!({"from": w1, "subject": w2}),
        4 => json!({"body": body.join(" ")}),
        5 => json!({"before": "2030-01-01T00:00:00Z", "minSize": rng.random_range(0..5000)}),
        6 => json!({"someInThreadHaveKeyword": "$flagged"}),
        7 => json!({"header": ["Subject", w1]}),
        8 => json!({"hasAttachment": rng.random_bool(0.5)}),
        _ => json!({"notKeyword": "$draft", "to": w2}),
    }
}

fn random_sort(rng: &mut StdRng) -> Value {
    let properties = [
        "receivedAt",
        "size",
        "from",
        "to",
        "subject",
        "sentAt",
        "hasKeyword",
    ];
    let n = rng.random_range(0..15);
    let comparators: Vec<Value> = (0..n)
        .map(|_| {
            let property = properties[rng.random_range(0..properties.len())];
            let mut c = json!({"property": property, "isAscending": rng.random_bool(0.5)});
            if property == "hasKeyword" {
                c["keyword"] = json!("$seen");
            }
            c
        })
        .collect();
    json!(comparators)
}

#[on_both_backends]
async fn generated_filters_and_sorts_within_and_beyond_the_limits_get_results_or_method_errors() {
    let t = setup().await;
    let mut rng = StdRng::seed_from_u64(8620);
    let (mut answered, mut refused) = (0, 0);
    for round in 0..150 {
        let filter = random_filter(&mut rng, 12, &t.inbox);
        let sort = random_sort(&mut rng);
        let answers = t.ask(&filter, &sort).await;
        only_method_errors(&answers, &format!("round {round}: {filter} / {sort}"));
        match answers[0].1 {
            None => answered += 1,
            Some(_) => refused += 1,
        }
    }
    // The generator reaches both sides of the limits.
    assert!(
        answered > 20 && refused > 20,
        "{answered} answered, {refused} refused"
    );
}
