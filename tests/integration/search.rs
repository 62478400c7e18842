//! Full-text search through the index (RFC 8621 §4.4.1 text conditions, EQ-04, EQ-05, and
//! SearchSnippet/get, SNIP-03): how words match, on both backends, and how emails stored before
//! the index existed get indexed.

use serde_json::{Value, json};

use super::email_query::{Fixture, Msg};
use crate::harness::on_both_backends;

/// Three emails in several scripts.
async fn multilingual() -> Fixture {
    let mut f = Fixture::empty().await;
    let inbox = f.inbox.clone();
    for (name, subject, body, at) in [
        (
            "de",
            "Über die Rechnung",
            "Die Straße ist gesperrt. Bitte die Invoice prüfen.",
            "2024-02-01T10:00:00Z",
        ),
        (
            "el",
            "Ταξίδι στην Αθήνα",
            "Θα φτάσουμε στην ΑΘΗΝΑ το πρωί.",
            "2024-02-02T10:00:00Z",
        ),
        (
            "en",
            "Your e-mail invoices",
            "Three invoices are attached; the financial report follows.",
            "2024-02-03T10:00:00Z",
        ),
    ] {
        f.add(
            name,
            &Msg {
                from: "Zoë Zwart <zoe@example.com>",
                to: "alice@example.com",
                subject,
                date: "Thu, 01 Feb 2024 09:00:00 +0000",
                body: body.into(),
                ..Msg::default()
            },
            &[&inbox],
            &[],
            at,
        );
    }
    f
}

async fn found(f: &Fixture, filter: Value) -> Vec<String> {
    let mut got = f.query_names(json!({"filter": filter})).await;
    got.sort();
    got
}

#[on_both_backends]
async fn text_search_ignores_case_and_diacritics_and_matches_word_prefixes() {
    let f = multilingual().await;
    let cases: &[(Value, &[&str])] = &[
        // Case and diacritics fold away, whichever side has them.
        (json!({"subject": "uber"}), &["de"]),
        (json!({"subject": "ÜBER"}), &["de"]),
        (json!({"text": "αθηνα"}), &["el"]),
        (json!({"body": "Αθήνα"}), &["el"]),
        (json!({"from": "zoe"}), &["de", "el", "en"]),
        // A plain word is a word prefix; not a substring.
        (json!({"text": "inv"}), &["de", "en"]),
        (json!({"text": "nvoice"}), &[]),
        (json!({"body": "straß"}), &["de"]),
        // A quoted phrase is whole words, in order.
        (json!({"body": "\"financial report\""}), &["en"]),
        (json!({"body": "\"report financial\""}), &[]),
        (json!({"body": "\"financial rep\""}), &[]),
        // Punctuation separates words: "e-mail" is "e" then "mail", as typed or as found.
        (json!({"subject": "e-mail"}), &["en"]),
        (json!({"to": "alice@example.com"}), &["de", "el", "en"]),
        // Every term must match, each in any field for `text`.
        (json!({"text": "zoe invoices"}), &["en"]),
        (json!({"text": "zoe αθηνα invoice"}), &[]),
        // Field conditions look only at their field.
        (json!({"subject": "invoice"}), &["en"]),
        (json!({"from": "invoice"}), &[]),
    ];
    for (filter, want) in cases {
        let want: Vec<String> = want.iter().map(std::string::ToString::to_string).collect();
        assert_eq!(found(&f, filter.clone()).await, want, "filter {filter}");
    }
    // SNIP-03: the snippet marks what matched, in the original spelling.
    let r = f
        .call(json!([["SearchSnippet/get", {"accountId": f.account,
            "filter": {"text": "uber straß rechn"}, "emailIds": [f.id("de")]}, "sn"]]))
        .await;
    assert_eq!(
        r[0][1]["list"][0]["subject"],
        "<mark>Über</mark> die <mark>Rechnung</mark>"
    );
    f.s.stop().await;
}

#[on_both_backends]
async fn emails_stored_before_the_index_existed_are_found_once_the_backlog_is_indexed() {
    let f = multilingual().await;
    // Make the store look as the migration leaves an existing one: text kept, nothing indexed.
    let mut conn = f.s.store.conn().unwrap();
    use diesel::connection::SimpleConnection;
    match &mut *conn {
        herald::store::AnyConnection::Sqlite(c) => c
            .batch_execute("DELETE FROM email_fts; UPDATE email_search SET fts_docid = NULL;")
            .unwrap(),
        herald::store::AnyConnection::Postgresql(c) => c
            .batch_execute(
                "UPDATE email_search SET from_doc = NULL, to_doc = NULL, cc_doc = NULL, \
                 bcc_doc = NULL, subject_doc = NULL, body_doc = NULL;",
            )
            .unwrap(),
    }
    drop(conn);
    assert_eq!(
        found(&f, json!({"text": "invoice"})).await,
        Vec::<String>::new()
    );
    let indexed = herald::store::email_search::index_backlog(&f.s.store).unwrap();
    assert_eq!(indexed, 3);
    assert_eq!(
        found(&f, json!({"text": "invoice"})).await,
        vec!["de", "en"]
    );
    // A second run finds nothing left to do.
    assert_eq!(
        herald::store::email_search::index_backlog(&f.s.store).unwrap(),
        0
    );
    f.s.stop().await;
}

/// `herald reindex`: an email indexed by an older extraction (here: a body reduced to one stale
/// word) is found by what its message says once indexed again, and no longer by the old text.
#[on_both_backends]
async fn reindex_replaces_the_search_text_of_stored_emails_with_todays_extraction() {
    let f = multilingual().await;
    {
        use diesel::prelude::*;
        use herald::store::email_search::{PendingText, insert_all};
        use herald::store::schema::email_search;
        let mut conn = f.s.store.conn().unwrap();
        let en = f.id("en");
        diesel::delete(email_search::table.find((&f.account, &en)))
            .execute(&mut *conn)
            .unwrap();
        let stale = herald::mail::SearchText {
            body: "stalewording".into(),
            ..Default::default()
        };
        let pending = vec![PendingText {
            email_id: en,
            received_at: 0,
            text: stale,
        }];
        insert_all(&mut conn, &f.account, pending).unwrap();
        // A sort key from before the Unicode-aware collation.
        use herald::store::schema::emails;
        diesel::update(emails::table.find((&f.account, f.id("en"))))
            .set(emails::from_sort.eq("zoë zwart"))
            .execute(&mut *conn)
            .unwrap();
    }
    assert_eq!(
        found(&f, json!({"body": "financial"})).await,
        Vec::<String>::new()
    );
    assert_eq!(found(&f, json!({"body": "stalewording"})).await, vec!["en"]);
    let (ok, out) = f.s.cli(&["reindex", "ALICE"]);
    assert!(ok && out.contains("3 emails indexed again"), "{out}");
    assert_eq!(found(&f, json!({"body": "financial"})).await, vec!["en"]);
    assert_eq!(
        found(&f, json!({"body": "stalewording"})).await,
        Vec::<String>::new()
    );
    assert_eq!(
        found(&f, json!({"text": "invoice"})).await,
        vec!["de", "en"]
    );
    {
        use diesel::prelude::*;
        use herald::store::schema::emails;
        let key: String = emails::table
            .find((&f.account, f.id("en")))
            .select(emails::from_sort)
            .first(&mut *f.s.store.conn().unwrap())
            .unwrap();
        assert_eq!(key, herald::mail::text::casemap_key("Zoë Zwart"));
    }
    f.s.stop().await;
}

#[on_both_backends]
async fn a_search_finds_only_the_emails_of_its_own_account() {
    let mut f = multilingual().await;
    let alice = (f.alice.clone(), f.account.clone());
    // Bob's account gets a message with the same words (and words that start like Alice's).
    let bob = f.s.add_user("bob", "pw");
    f.account = crate::harness::push::account_id(&f.s, &bob).await;
    f.alice = bob;
    let bob_inbox = crate::harness::push::inbox_id(&f.s, &f.alice, &f.account).await;
    f.add(
        "bob",
        &super::email_query::Msg {
            from: "Zoë Zwart <zoe@example.com>",
            to: "bob@example.com",
            subject: "Invoices and more invoicing",
            date: "Thu, 01 Feb 2024 09:00:00 +0000",
            body: "Die Straße, Αθήνα.".into(),
            ..super::email_query::Msg::default()
        },
        &[&bob_inbox],
        &[],
        "2024-02-04T10:00:00Z",
    );
    assert_eq!(found(&f, json!({"text": "invoic"})).await, vec!["bob"]);
    assert_eq!(found(&f, json!({"from": "zoe"})).await, vec!["bob"]);
    (f.alice, f.account) = alice;
    assert_eq!(found(&f, json!({"text": "invoic"})).await, vec!["de", "en"]);
    assert_eq!(found(&f, json!({"text": "αθηνα"})).await, vec!["el"]);
    assert_eq!(found(&f, json!({"from": "zoe"})).await.len(), 3);
    f.s.stop().await;
}

#[on_both_backends]
async fn a_destroyed_email_leaves_the_index() {
    let f = multilingual().await;
    let r = f
        .call(json!([["Email/set", {"accountId": f.account, "destroy": [f.id("en")]}, "d"]]))
        .await;
    assert_eq!(r[0][1]["destroyed"], json!([f.id("en")]), "{:?}", r[0]);
    assert_eq!(found(&f, json!({"text": "invoice"})).await, vec!["de"]);
    // On SQLite the FTS5 row goes with its email_search row (a trigger).
    let mut conn = f.s.store.conn().unwrap();
    if let herald::store::AnyConnection::Sqlite(c) = &mut *conn {
        use diesel::prelude::*;
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let n: Vec<N> = diesel::sql_query(
            "SELECT COUNT(*) AS n FROM email_fts WHERE email_fts MATCH '\"financial\"'",
        )
        .load(c)
        .unwrap();
        assert_eq!(n[0].n, 0);
    }
    drop(conn);
    f.s.stop().await;
}

#[on_both_backends]
async fn a_text_search_windows_by_position_and_anchor_with_its_total() {
    let f = multilingual().await;
    // Newest first: en, el, de (all from Zoë).
    let r = f
        .call(
            json!([["Email/query", {"accountId": f.account, "filter": {"from": "zoe"},
            "anchor": f.id("el"), "limit": 1, "calculateTotal": true}, "q"]]),
        )
        .await;
    assert_eq!(r[0][1]["ids"], json!([f.id("el")]), "{:?}", r[0]);
    assert_eq!(r[0][1]["position"], 1);
    assert_eq!(r[0][1]["total"], 3);
    let r = f
        .call(json!([["Email/query", {"accountId": f.account,
            "filter": {"operator": "AND", "conditions": [{"text": "zoe"}, {"inMailbox": f.inbox}]},
            "position": -1, "calculateTotal": true}, "q"]]))
        .await;
    assert_eq!(r[0][1]["ids"], json!([f.id("de")]), "{:?}", r[0]);
    assert_eq!(r[0][1]["position"], 2);
    f.s.stop().await;
}

#[on_both_backends]
async fn a_text_search_by_received_at_orders_ties_by_id_in_either_direction() {
    let mut f = multilingual().await;
    let inbox = f.inbox.clone();
    // Received at the same second as "el", so their ids decide their order (QRY-05).
    for name in ["tie1", "tie2", "tie3"] {
        f.add(
            name,
            &Msg {
                subject: "Invoice reminder",
                body: "Please pay.".into(),
                ..Msg::default()
            },
            &[&inbox],
            &[],
            "2024-02-02T10:00:00Z",
        );
    }
    for ascending in [false, true] {
        let sort = json!([{"property": "receivedAt", "isAscending": ascending}]);
        // The same order through the emails' own index, without the text condition.
        let expected: Vec<String> = f
            .query_names(json!({"sort": sort}))
            .await
            .into_iter()
            .filter(|n| n != "el")
            .collect();
        assert_eq!(expected.len(), 5);
        let text = json!({"text": "invoice"});
        assert_eq!(
            f.query_names(json!({"filter": text, "sort": sort})).await,
            expected,
            "ascending: {ascending}"
        );
        assert_eq!(
            f.query_names(json!({"filter": text, "sort": sort, "position": 1, "limit": 3}))
                .await,
            expected[1..4],
            "ascending: {ascending}"
        );
    }
    f.s.stop().await;
}

/// The multilingual emails and one from Zoë with twenty words that start with `ab`.
async fn with_many_completions() -> Fixture {
    let mut f = multilingual().await;
    let inbox = f.inbox.clone();
    f.add(
        "many",
        &Msg {
            from: "Zoë Zwart <zoe@example.com>",
            subject: "Numbers",
            body: (0..20).map(|i| format!("ab{i} ")).collect(),
            ..Msg::default()
        },
        &[&inbox],
        &[],
        "2024-02-04T10:00:00Z",
    );
    f
}

#[on_both_backends]
async fn several_prefixes_in_one_search_match_as_each_would_alone() {
    let f = with_many_completions().await;
    assert_eq!(found(&f, json!({"text": "inv zo"})).await, vec!["de", "en"]);
    assert_eq!(found(&f, json!({"text": "invoices zo"})).await, vec!["en"]);
    // Twenty words complete `ab`: more than are listed, so the index takes it as a prefix.
    assert_eq!(found(&f, json!({"text": "ab zo"})).await, vec!["many"]);
    assert_eq!(found(&f, json!({"text": "ab1 zoe"})).await, vec!["many"]);
    assert_eq!(
        found(
            &f,
            json!({"operator": "AND", "conditions": [
                {"from": "zo"}, {"operator": "NOT", "conditions": [{"body": "inv"}]}
            ]})
        )
        .await,
        vec!["el", "many"]
    );
    assert_eq!(
        found(&f, json!({"text": "inv nowhere"})).await,
        Vec::<String>::new()
    );
    f.s.stop().await;
}

// SQLite only: the completions come from SQLite's index.
#[actix_web::test]
async fn a_search_asks_the_index_for_the_words_that_complete_each_prefix() {
    use herald::jmap::methods::email_query::Filter;
    let f = with_many_completions().await;
    let completions = |filter: Value| {
        let mut filter = Filter::parse(&filter, &Default::default()).unwrap();
        let mut conn = f.s.store.conn().unwrap();
        herald::store::email_search::complete_prefixes(&mut conn, &f.account, &mut filter).unwrap();
        let Filter::Condition(c) = filter else {
            panic!("not a condition")
        };
        c.text
            .unwrap()
            .terms
            .into_iter()
            .map(|t| t.completions)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        completions(json!({"text": "inv zo \"zoë\""})),
        vec![
            vec!["inv", "invoice", "invoices"],
            vec!["zo", "zoe"],
            vec![]
        ]
    );
    // More than sixteen: left as a prefix.
    let ab1: Vec<String> = std::iter::once(1)
        .chain(10..20)
        .map(|i| format!("ab{i}"))
        .collect();
    // The typed word itself always completes it, indexed or not.
    assert_eq!(completions(json!({"text": "ab ab1"})), vec![vec![], ab1]);
    assert_eq!(
        completions(json!({"text": "inv"})),
        vec![vec!["inv", "invoice", "invoices"]]
    );
    f.s.stop().await;
}

// SQLite only: it reads SQLite's query plan.
#[actix_web::test]
async fn a_search_for_a_rare_word_starts_from_the_index_matches() {
    let f = multilingual().await;
    let query = herald::jmap::methods::email_query::EmailQuery {
        filter: Some(
            herald::jmap::methods::email_query::Filter::parse(
                &json!({"text": "αθηνα"}),
                &Default::default(),
            )
            .unwrap(),
        ),
        sort: herald::jmap::methods::email_query::parse_sort(&[], &Default::default()).unwrap(),
        collapse_threads: false,
    };
    let mut conn = f.s.store.conn().unwrap();
    let plan = herald::store::email_query::sqlite_query_plan(&mut conn, &f.account, &query, 0, 50)
        .unwrap()
        .join("\n");
    // The matches come first, then each one's email by its key: no walk over the account.
    assert!(plan.starts_with("SCAN email_fts"), "{plan}");
    assert!(plan.contains("SEARCH e USING INDEX"), "{plan}");
    assert!(!plan.contains("emails_received_id"), "{plan}");
    drop(conn);
    f.s.stop().await;
}

/// `n` emails in the inbox in one write, received a second apart (`note 0` first): every one
/// says `everywhere`, six of every seven (all but `i % 7 == 3`) `mostly`, every hundredth
/// `hundredth`.
fn import_many(f: &Fixture, n: usize) {
    use herald::jmap::methods::email::{EmailOp, NewEmail, OpResult, Source, new_email_id};
    let ops = (0..n)
        .map(|i| {
            let mostly = if i % 7 == 3 { "" } else { " mostly" };
            let tag = if i % 100 == 0 { " hundredth" } else { "" };
            EmailOp::Create {
                creation_id: format!("c{i}"),
                email: NewEmail {
                    id: new_email_id(),
                    source: Source::Message(
                        format!(
                            "From: a@example.com\r\nSubject: note {i}\r\nMessage-ID: <m{i}@x>\r\n\r\neverywhere{mostly}{tag}\r\n"
                        )
                        .into_bytes(),
                    ),
                    mailbox_ids: [f.inbox.clone()].into(),
                    keywords: Default::default(),
                    received_at: Some(1_700_000_000 + i as i64),
                    delivery: true,
                },
            }
        })
        .collect();
    let mut conn = f.s.store.conn().unwrap();
    let (results, _) = herald::store::changelog::write(&mut conn, &f.account, |txn| {
        herald::store::email::apply(txn, None, ops)
    })
    .unwrap();
    assert!(results.iter().all(|r| matches!(r, OpResult::Created(..))));
}

#[on_both_backends]
async fn a_word_in_thousands_of_emails_gives_the_windows_of_the_emails_in_order() {
    let f = Fixture::empty().await;
    import_many(&f, 6_000);
    // A word in most emails: near the start, SQLite asks the index about each walked email;
    // deep in, it checks each against the list of every match. A word in every hundredth: it
    // starts from the matches.
    let mostly = |i: &usize| i % 7 != 3;
    let hundredth = |i: &usize| i.is_multiple_of(100);
    for (word, matches, total) in [
        ("mostly", &mostly as &dyn Fn(&usize) -> bool, 5_143),
        ("hundredth", &hundredth, 60),
    ] {
        // The second window without its total: the matches are then counted only as far as
        // the choice of walk needs.
        for (position, limit, with_total) in [(0, 5, true), (3, 4, false), (total - 10, 5, true)] {
            let r = f
                .call(json!([
                    ["Email/query", {"accountId": f.account, "filter": {"text": word},
                        "position": position, "limit": limit, "calculateTotal": with_total}, "q"],
                    ["Email/get", {"accountId": f.account, "properties": ["subject"],
                        "#ids": {"resultOf": "q", "name": "Email/query", "path": "/ids"}}, "g"]
                ]))
                .await;
            if with_total {
                assert_eq!(r[0][1]["total"], total, "{word}: {:?}", r[0]);
            }
            let got: Vec<String> = r[1][1]["list"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["subject"].as_str().unwrap().to_owned())
                .collect();
            let expected: Vec<String> = (0..6_000usize)
                .rev()
                .filter(|i| matches(i))
                .skip(position)
                .take(limit)
                .map(|i| format!("note {i}"))
                .collect();
            assert_eq!(got, expected, "{word} at {position}");
        }
    }
    f.s.stop().await;
}

// SQLite only: it reads SQLite's query plan.
#[actix_web::test]
async fn a_word_in_most_emails_is_asked_of_the_index_for_each_walked_email() {
    use herald::jmap::methods::email_query::{EmailQuery, Filter, parse_sort};
    let f = Fixture::empty().await;
    import_many(&f, 6_000);
    let plan = |text: &str, position: u64| {
        let mut filter = Filter::parse(&json!({"text": text}), &Default::default()).unwrap();
        let mut conn = f.s.store.conn().unwrap();
        herald::store::email_search::complete_prefixes(&mut conn, &f.account, &mut filter).unwrap();
        let query = EmailQuery {
            filter: Some(filter),
            sort: parse_sort(&[], &Default::default()).unwrap(),
            collapse_threads: false,
        };
        herald::store::email_query::sqlite_query_plan(&mut conn, &f.account, &query, position, 5)
            .unwrap()
            .join("\n")
    };
    // Five from the start: about five emails walked, each asked of the index by its row.
    let near = plan("mostly", 0);
    assert!(near.contains("SCAN f EXISTS VIRTUAL TABLE"), "{near}");
    assert!(!near.contains("LIST SUBQUERY"), "{near}");
    // From the 5,000th: listing the 5,143 matches once costs less than 5,800 questions.
    let deep = plan("mostly", 5_000);
    assert!(deep.contains("LIST SUBQUERY"), "{deep}");
    f.s.stop().await;
}
