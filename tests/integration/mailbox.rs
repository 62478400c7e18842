//! Mailbox over HTTP (RFC 8621 §2). Checklist ids in comments.

use crate::harness::push::account_id;
use crate::harness::{Auth, CORE, TestServer, on_both_backends};
use serde_json::{Value, json};

const MAIL: &str = "urn:ietf:params:jmap:mail";

async fn setup() -> (TestServer, Auth, String) {
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let account = account_id(&s, &alice).await;
    (s, alice, account)
}

async fn call(s: &TestServer, auth: &Auth, calls: Value) -> Vec<Value> {
    s.call(auth, &[CORE, MAIL], calls).await
}

fn ids_by_name(get: &Value) -> std::collections::HashMap<String, String> {
    get["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                m["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[on_both_backends]
async fn a_new_account_has_the_six_standard_mailboxes_with_roles_and_zero_counts() {
    let (s, alice, account) = setup().await;
    let r = call(
        &s,
        &alice,
        json!([["Mailbox/get", {"accountId": account, "ids": null}, "0"]]),
    )
    .await;
    let list = r[0][1]["list"].as_array().unwrap();
    let mut roles: Vec<&str> = list.iter().map(|m| m["role"].as_str().unwrap()).collect();
    roles.sort();
    assert_eq!(
        roles,
        vec!["archive", "drafts", "inbox", "junk", "sent", "trash"]
    );
    for m in list {
        for count in [
            "totalEmails",
            "unreadEmails",
            "totalThreads",
            "unreadThreads",
        ] {
            assert_eq!(m[count], 0);
        }
        assert_eq!(m["myRights"]["mayDelete"], true);
        assert_eq!(m["parentId"], Value::Null);
    }
    assert!(r[0][1]["state"].is_string());
    assert_eq!(r[0][1]["notFound"], json!([])); // GET-04
}

#[on_both_backends]
async fn get_selects_properties_reports_unknown_ids_and_refuses_unknown_properties() {
    let (s, alice, account) = setup().await;
    let r = call(
        &s,
        &alice,
        json!([
            ["Mailbox/get", {"accountId": account, "ids": ["nope"], "properties": ["name"]}, "0"],
            ["Mailbox/get", {"accountId": account, "properties": ["colour"]}, "1"],
            ["Mailbox/get", {"accountId": account, "properties": ["role"]}, "2"],
        ]),
    )
    .await;
    assert_eq!(r[0][1]["notFound"], json!(["nope"]));
    assert_eq!(
        (r[1][0].as_str(), r[1][1]["type"].as_str()),
        (Some("error"), Some("invalidArguments"))
    ); // GET-03
    let first = &r[2][1]["list"][0];
    assert_eq!(
        first.as_object().unwrap().len(),
        2,
        "only id and role: {first}"
    );
}

#[on_both_backends]
async fn create_update_and_destroy_move_the_state_and_changes_reports_each() {
    let (s, alice, account) = setup().await;
    let before = call(
        &s,
        &alice,
        json!([["Mailbox/get", {"accountId": account, "ids": []}, "0"]]),
    )
    .await[0][1]["state"]
        .clone();
    // CID-03: a child names its parent by creation id, before the parent in the map
    let r = call(
        &s,
        &alice,
        json!([["Mailbox/set", {"accountId": account, "create": {
            "child": {"name": "Child", "parentId": "#parent"},
            "parent": {"name": "Projects", "sortOrder": 5}
        }}, "0"]]),
    )
    .await;
    let set = &r[0][1];
    assert_eq!(set["oldState"], before); // ST-04
    assert_ne!(set["newState"], before);
    let parent = set["created"]["parent"]["id"].as_str().unwrap().to_owned();
    let child = set["created"]["child"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        set["created"]["parent"]["totalEmails"], 0,
        "server-set properties come back (SET-08)"
    );
    assert_eq!(set["created"]["parent"]["isSubscribed"], true);
    assert_eq!(set["notCreated"], Value::Null); // SET-09
    let got = call(
        &s,
        &alice,
        json!([["Mailbox/get", {"accountId": account, "ids": [child.clone()]}, "0"]]),
    )
    .await;
    assert_eq!(got[0][1]["list"][0]["parentId"], json!(parent));
    assert_eq!(got[0][1]["state"], set["newState"]);

    let r = call(
        &s,
        &alice,
        json!([
            ["Mailbox/set", {"accountId": account, "update": {child.clone(): {"name": "Renamed", "parentId": null}}}, "0"],
            ["Mailbox/set", {"accountId": account, "destroy": [parent.clone()]}, "1"],
            ["Mailbox/changes", {"accountId": account, "sinceState": before}, "2"],
        ]),
    )
    .await;
    assert_eq!(r[0][1]["updated"], json!({child.clone(): null}));
    assert_eq!(r[1][1]["destroyed"], json!([parent]));
    let ch = &r[2][1];
    assert_eq!(ch["oldState"], before);
    assert_eq!(ch["newState"], r[1][1]["newState"]);
    assert_eq!(
        ch["created"],
        json!([child]),
        "created then updated is reported as created (CHG-04)"
    );
    assert_eq!(ch["updated"], json!([]));
    assert_eq!(
        ch["destroyed"],
        json!([]),
        "created then destroyed is left out"
    );
    assert_eq!(ch["hasMoreChanges"], false);
}

#[on_both_backends]
async fn changes_page_by_max_changes_and_refuse_unknown_states() {
    let (s, alice, account) = setup().await;
    let before = call(
        &s,
        &alice,
        json!([["Mailbox/get", {"accountId": account, "ids": []}, "0"]]),
    )
    .await[0][1]["state"]
        .clone();
    for i in 0..3 {
        call(&s, &alice, json!([["Mailbox/set", {"accountId": account, "create": {"k": {"name": format!("M{i}")}}}, "0"]])).await;
    }
    let mut since = before.clone();
    let mut seen = Vec::new();
    for _ in 0..10 {
        let r = call(&s, &alice, json!([["Mailbox/changes", {"accountId": account, "sinceState": since, "maxChanges": 2}, "0"]])).await;
        let ch = &r[0][1];
        let n = ch["created"].as_array().unwrap().len()
            + ch["updated"].as_array().unwrap().len()
            + ch["destroyed"].as_array().unwrap().len();
        assert!(n <= 2, "CHG-03");
        seen.extend(ch["created"].as_array().unwrap().iter().cloned());
        assert_ne!(ch["newState"], since, "progress on every page (CHG-08)");
        since = ch["newState"].clone();
        if ch["hasMoreChanges"] == false {
            break;
        }
    }
    assert_eq!(seen.len(), 3);
    let r = call(
        &s,
        &alice,
        json!([
            ["Mailbox/changes", {"accountId": account, "sinceState": "not-a-state"}, "0"],
            ["Mailbox/changes", {"accountId": account, "sinceState": "999999"}, "1"],
            ["Mailbox/changes", {"accountId": account, "sinceState": before, "maxChanges": 0}, "2"],
        ]),
    )
    .await;
    assert_eq!(r[0][1]["type"], "cannotCalculateChanges");
    assert_eq!(r[1][1]["type"], "cannotCalculateChanges");
    assert_eq!(r[2][1]["type"], "invalidArguments"); // CHG-01
}

/// CHG-03 and RFC 8620 §5.2: one write larger than maxChanges still comes in pages (before, it
/// was cannotCalculateChanges, and every client resynchronised from scratch). The state inside a
/// write is good for /changes only: /set with it as ifInState is a stateMismatch.
#[on_both_backends]
async fn one_write_larger_than_max_changes_comes_in_pages() {
    let (s, alice, account) = setup().await;
    let before = call(
        &s,
        &alice,
        json!([["Mailbox/get", {"accountId": account, "ids": []}, "0"]]),
    )
    .await[0][1]["state"]
        .clone();
    let create: serde_json::Map<String, Value> = (0..5)
        .map(|i| (format!("k{i}"), json!({"name": format!("Big{i}")})))
        .collect();
    let r = call(
        &s,
        &alice,
        json!([["Mailbox/set", {"accountId": account, "create": create}, "0"]]),
    )
    .await;
    let after = r[0][1]["newState"].clone();
    let mut since = before;
    let mut seen = std::collections::BTreeSet::new();
    let mut pages = 0;
    loop {
        let r = call(&s, &alice, json!([["Mailbox/changes", {"accountId": account, "sinceState": since, "maxChanges": 2}, "0"]])).await;
        let ch = &r[0][1];
        assert_eq!(ch["oldState"], since, "{r:?}");
        let created = ch["created"].as_array().unwrap();
        assert!(!created.is_empty() && created.len() <= 2, "{r:?}");
        seen.extend(created.iter().map(|c| c.as_str().unwrap().to_owned()));
        pages += 1;
        since = ch["newState"].clone();
        if ch["hasMoreChanges"] == false {
            break;
        }
        let r = call(
            &s,
            &alice,
            json!([["Mailbox/set", {"accountId": account, "ifInState": since, "update": {}}, "0"]]),
        )
        .await;
        assert_eq!(r[0][1]["type"], "stateMismatch", "{r:?}");
    }
    assert_eq!((seen.len(), pages), (5, 3));
    assert_eq!(since, after);
    // A state inside a write names one of its objects; a made-up one is not a state we issued.
    let made_up = format!("{}.zzzz", after.as_str().unwrap());
    let r = call(
        &s,
        &alice,
        json!([["Mailbox/changes", {"accountId": account, "sinceState": made_up}, "0"]]),
    )
    .await;
    assert_eq!(r[0][1]["type"], "cannotCalculateChanges", "{r:?}");
}

#[on_both_backends]
async fn set_refuses_bad_records_one_by_one_and_state_mismatch_as_a_whole() {
    let (s, alice, account) = setup().await;
    let get = call(
        &s,
        &alice,
        json!([["Mailbox/get", {"accountId": account}, "0"]]),
    )
    .await;
    let names = ids_by_name(&get[0][1]);
    let inbox = names["Inbox"].clone();
    let archive = names["Archive"].clone();
    let r = call(
        &s,
        &alice,
        json!([["Mailbox/set", {"accountId": account,
            "create": {
                "ok": {"name": "Fine", "parentId": archive},
                "nameless": {},
                "server": {"name": "X", "totalEmails": 3},
                "alien": {"name": "Y", "colour": "red"},
                "twin": {"name": "Inbox"},
                "orphan": {"name": "Z", "parentId": "nosuch"},
                "badrole": {"name": "R", "role": "inbox"}
            },
            "update": {"nosuch": {"name": "x"}, inbox.clone(): {"totalEmails/x": 1}},
            "destroy": ["nosuch", archive.clone()]
        }, "0"]]),
    )
    .await;
    let set = &r[0][1];
    assert!(set["created"]["ok"]["id"].is_string());
    for (cid, prop) in [
        ("nameless", "name"),
        ("server", "totalEmails"),
        ("alien", "colour"),
        ("twin", "name"),
        ("orphan", "parentId"),
        ("badrole", "role"),
    ] {
        let e = &set["notCreated"][cid];
        assert_eq!(e["type"], "invalidProperties", "{cid}: {e}");
        assert_eq!(e["properties"], json!([prop]), "{cid}");
    }
    assert_eq!(set["notUpdated"]["nosuch"]["type"], "notFound"); // SET-07
    assert_eq!(set["notUpdated"][&inbox]["type"], "invalidPatch");
    assert_eq!(set["notDestroyed"]["nosuch"]["type"], "notFound");
    assert_eq!(set["notDestroyed"][&archive]["type"], "mailboxHasChild"); // MBX-14
    let r = call(&s, &alice, json!([["Mailbox/set", {"accountId": account, "ifInState": "0", "create": {"a": {"name": "A"}}}, "0"]])).await;
    assert_eq!(r[0][1]["type"], "stateMismatch"); // SET-02
}

#[on_both_backends]
async fn query_filters_sorts_and_windows_and_the_result_feeds_get_by_reference() {
    let (s, alice, account) = setup().await;
    let r = call(
        &s,
        &alice,
        json!([
            ["Mailbox/query", {"accountId": account, "filter": {"hasAnyRole": true}, "sort": [{"property": "name"}], "calculateTotal": true}, "q"],
            ["Mailbox/get", {"accountId": account, "#ids": {"resultOf": "q", "name": "Mailbox/query", "path": "/ids"}, "properties": ["name"]}, "g"],
            ["Mailbox/query", {"accountId": account, "filter": {"operator": "NOT", "conditions": [{"role": "inbox"}]}, "position": -2}, "n"],
            ["Mailbox/query", {"accountId": account, "anchor": "nosuch"}, "a"],
            ["Mailbox/query", {"accountId": account, "filter": {"colour": "red"}}, "f"],
            ["Mailbox/query", {"accountId": account, "sort": [{"property": "totalEmails"}]}, "s"],
            ["Mailbox/query", {"accountId": account, "sort": [{"property": "name", "collation": "i;klingon"}]}, "c"],
        ]),
    )
    .await;
    assert_eq!(r[0][1]["total"], 6);
    let names: Vec<&str> = r[1][1]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names.len(), 6);
    let order: Vec<&str> = r[0][1]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let by_id: std::collections::HashMap<&str, &str> = r[1][1]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m["name"].as_str().unwrap()))
        .collect();
    let queried: Vec<&str> = order.iter().map(|id| by_id[id]).collect();
    assert_eq!(queried, sorted, "sorted by name");
    assert_eq!(
        (
            r[2][1]["position"].clone(),
            r[2][1]["ids"].as_array().unwrap().len()
        ),
        (json!(3), 2)
    ); // QRY-06
    assert_eq!(r[3][1]["type"], "anchorNotFound");
    assert_eq!(r[4][1]["type"], "unsupportedFilter");
    assert_eq!(r[5][1]["type"], "unsupportedSort");
    assert_eq!(r[6][1]["type"], "unsupportedSort"); // QRY-03
}

#[on_both_backends]
async fn query_changes_gives_exactly_the_delta_a_client_needs() {
    let (s, alice, account) = setup().await;
    let q = json!({"accountId": account, "sort": [{"property": "name"}]});
    let first = call(&s, &alice, json!([["Mailbox/query", q, "0"]])).await[0][1].clone();
    let mut cached = ids_of(&first);
    let names = ids_by_name(
        &call(
            &s,
            &alice,
            json!([["Mailbox/get", {"accountId": account}, "0"]]),
        )
        .await[0][1],
    );
    call(
        &s,
        &alice,
        json!([["Mailbox/set", {"accountId": account, "create": {"a": {"name": "Aardvark"}}, "destroy": [names["Junk"]], "update": {names["Sent"].clone(): {"name": "Zzz"}}}, "0"]]),
    )
    .await;
    let mut qc = q.clone();
    qc["sinceQueryState"] = first["queryState"].clone();
    qc["calculateTotal"] = json!(true);
    let r = call(
        &s,
        &alice,
        json!([["Mailbox/queryChanges", qc, "0"], ["Mailbox/query", q, "1"]]),
    )
    .await;
    let changes = &r[0][1];
    apply_query_changes(&mut cached, changes);
    let fresh = ids_of(&r[1][1]);
    assert_eq!(cached, fresh);
    assert_eq!(changes["total"], fresh.len());
    assert_eq!(changes["newQueryState"], r[1][1]["queryState"]);
}

/// The client algorithm of RFC 8620 §5.6 (errata 6604): splice out `removed`, splice in
/// `added` by index.
fn apply_query_changes(cached: &mut Vec<String>, changes: &Value) {
    let removed: Vec<&str> = changes["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    cached.retain(|id| !removed.contains(&id.as_str()));
    for added in changes["added"].as_array().unwrap() {
        cached.insert(
            added["index"].as_u64().unwrap() as usize,
            added["id"].as_str().unwrap().to_owned(),
        );
    }
}

fn ids_of(query: &Value) -> Vec<String> {
    query["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[on_both_backends]
async fn tree_query_changes_move_a_renamed_parents_children_with_it() {
    // MBX-13 with QCH-02: in a tree sort a child's place follows its parent's, and in a tree
    // filter whether it is there at all, so it changes when only the parent was touched.
    let (s, alice, account) = setup().await;
    let r = call(
        &s,
        &alice,
        json!([["Mailbox/set", {"accountId": account, "create": {
            "p": {"name": "Parent"},
            "c": {"name": "Charlie", "parentId": "#p"},
            "g": {"name": "Grandma", "parentId": "#c"}
        }}, "0"]]),
    )
    .await;
    let parent = r[0][1]["created"]["p"]["id"].as_str().unwrap().to_owned();
    for (tree_args, rename_to) in [
        (json!({"sortAsTree": true}), "AAA"),
        (
            json!({"sortAsTree": true, "filterAsTree": true, "filter": {"name": "a"}}),
            "Zzz",
        ),
    ] {
        let mut q = json!({"accountId": account, "sort": [{"property": "name"}]});
        for (k, v) in tree_args.as_object().unwrap() {
            q[k] = v.clone();
        }
        let first = call(&s, &alice, json!([["Mailbox/query", q, "0"]])).await[0][1].clone();
        let mut cached = ids_of(&first);
        call(
            &s,
            &alice,
            json!([["Mailbox/set", {"accountId": account, "update": {parent.clone(): {"name": rename_to}}}, "0"]]),
        )
        .await;
        let mut qc = q.clone();
        qc["sinceQueryState"] = first["queryState"].clone();
        let r = call(
            &s,
            &alice,
            json!([["Mailbox/queryChanges", qc, "0"], ["Mailbox/query", q, "1"]]),
        )
        .await;
        apply_query_changes(&mut cached, &r[0][1]);
        assert_eq!(cached, ids_of(&r[1][1]), "{tree_args}");
    }
}

/// RFC 8621 §2.3 sortAsTree: an ancestor comes first even when the mailbox between them is
/// filtered out, and mailboxes that do not share a parent compare as their nearest ancestors
/// that do. RFC 8620 §5.5: names sort Unicode-aware by default ("Ärger" with the a's).
#[on_both_backends]
async fn a_tree_sort_keeps_descendants_under_ancestors_whatever_the_filter_drops() {
    let (s, alice, account) = setup().await;
    let r = call(
        &s,
        &alice,
        json!([["Mailbox/set", {"accountId": account, "create": {
            "w": {"name": "Work"},
            "m": {"name": "mid", "parentId": "#w"},
            "x": {"name": "Axe", "parentId": "#m"},
            "z": {"name": "Ärger"},
            "y": {"name": "Yak"}
        }}, "0"]]),
    )
    .await;
    let created = &r[0][1]["created"];
    let id = |k: &str| created[k]["id"].as_str().unwrap().to_owned();
    let q = json!({"accountId": account, "sortAsTree": true, "sort": [{"property": "name"}],
        "filter": {"operator": "NOT", "conditions": [{"name": "mid"}]}});
    let ids = ids_of(&call(&s, &alice, json!([["Mailbox/query", q, "0"]])).await[0][1]);
    let at = |k: &str| ids.iter().position(|i| *i == id(k)).unwrap();
    assert_eq!(at("x"), at("w") + 1, "Axe right after Work: {ids:?}");
    assert!(at("x") < at("y"), "Work's subtree before Yak: {ids:?}");
    assert!(!ids.contains(&id("m")));
    assert!(at("z") < at("y"), "Ärger sorts with the a's: {ids:?}");
    // Without a sort, ties of sortOrder go by name in the same collation.
    let q = json!({"accountId": account, "sortAsTree": true});
    let ids = ids_of(&call(&s, &alice, json!([["Mailbox/query", q, "0"]])).await[0][1]);
    let at = |k: &str| ids.iter().position(|i| *i == id(k)).unwrap();
    assert!(at("z") < at("y"), "Ärger before Yak: {ids:?}");
}

#[on_both_backends]
async fn another_users_account_does_not_exist_for_me() {
    let (s, alice, _) = setup().await;
    let bob = s.add_user("bob", "pw");
    let bobs = s.get("/jmap/session", &bob).await.body["primaryAccounts"][MAIL]
        .as_str()
        .unwrap()
        .to_owned();
    let r = call(&s, &alice, json!([["Mailbox/get", {"accountId": bobs}, "0"], ["Mailbox/set", {"accountId": bobs, "create": {"x": {"name": "x"}}}, "1"]])).await;
    assert_eq!(r[0][1]["type"], "accountNotFound", "{r:?}"); // SEC-02
    assert_eq!(r[1][1]["type"], "accountNotFound");
}

#[on_both_backends]
async fn mail_methods_need_the_mail_capability_in_using() {
    let (s, alice, account) = setup().await;
    let r = s
        .call(
            &alice,
            &[CORE],
            json!([["Mailbox/get", {"accountId": account}, "0"]]),
        )
        .await;
    assert_eq!(r[0][1]["type"], "unknownMethod"); // TR-06
}

#[on_both_backends]
async fn creation_ids_from_this_request_and_from_the_clients_created_ids_resolve() {
    let (s, alice, account) = setup().await;
    let first = call(
        &s,
        &alice,
        json!([["Mailbox/set", {"accountId": account, "create": {"new": {"name": "New"}}}, "0"]]),
    )
    .await;
    let id = first[0][1]["created"]["new"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // CID-01: the client's createdIds seed the map; CID-04: update keys may be creation ids
    let a = s
        .api(
            &alice,
            json!({"using": [CORE, MAIL], "createdIds": {"earlier": id}, "methodCalls": [
                ["Mailbox/get", {"accountId": account, "ids": ["#earlier"], "properties": ["name"]}, "0"],
                ["Mailbox/set", {"accountId": account, "create": {"kid": {"name": "Kid", "parentId": "#earlier"}}, "update": {"#earlier": {"name": "Renamed"}}}, "1"],
            ]}),
        )
        .await;
    let r = a.body["methodResponses"].as_array().unwrap();
    assert_eq!(r[0][1]["list"][0]["id"], json!(id));
    assert_eq!(r[1][1]["updated"], json!({id.clone(): null}));
    let kid = r[1][1]["created"]["kid"]["id"].as_str().unwrap();
    assert_eq!(a.body["createdIds"]["earlier"], json!(id));
    assert_eq!(
        a.body["createdIds"]["kid"],
        json!(kid),
        "CID-08: the response holds the final map"
    );
}

#[on_both_backends]
async fn get_of_all_records_beyond_max_objects_in_get_is_request_too_large() {
    let s = TestServer::start_with(|c| c.limits.max_objects_in_get = 3).await;
    let alice = s.add_user("alice", "pw");
    let account = s.get("/jmap/session", &alice).await.body["primaryAccounts"][MAIL]
        .as_str()
        .unwrap()
        .to_owned();
    let r = call(&s, &alice, json!([["Mailbox/get", {"accountId": account}, "0"], ["Mailbox/get", {"accountId": account, "ids": ["a", "b", "c", "d"]}, "1"]])).await;
    assert_eq!(r[0][1]["type"], "requestTooLarge"); // GET-02
    assert_eq!(r[1][1]["type"], "requestTooLarge");
}

#[on_both_backends]
async fn the_inbox_keeps_its_role_and_cannot_be_destroyed() {
    // Mail is delivered to the role=inbox mailbox: without one it would wait at the MTA.
    let (s, alice, account) = setup().await;
    let names = ids_by_name(
        &call(
            &s,
            &alice,
            json!([["Mailbox/get", {"accountId": account}, "0"]]),
        )
        .await[0][1],
    );
    let inbox = names["Inbox"].clone();
    let r = call(
        &s,
        &alice,
        json!([["Mailbox/set", {"accountId": account,
            "update": {inbox.clone(): {"role": null}}}, "0"],
            ["Mailbox/set", {"accountId": account, "destroy": [inbox.clone()]}, "1"],
            ["Mailbox/set", {"accountId": account,
                "update": {inbox.clone(): {"name": "Incoming", "role": "inbox"}}}, "2"]]),
    )
    .await;
    assert_eq!(r[0][1]["notUpdated"][&inbox]["type"], "forbidden", "{r:?}");
    assert_eq!(
        r[1][1]["notDestroyed"][&inbox]["type"], "forbidden",
        "{r:?}"
    );
    assert!(
        r[2][1]["updated"].get(&inbox).is_some(),
        "renaming it is fine: {r:?}"
    );
}

#[on_both_backends]
async fn set_is_judged_by_the_state_after_the_whole_call_in_any_order() {
    // SET-06: only the final state must be valid: a role moved, names swapped and a child
    // re-parented before its new parent moved, each in one call.
    let (s, alice, account) = setup().await;
    let get = json!([["Mailbox/get", {"accountId": account}, "0"]]);
    let names = ids_by_name(&call(&s, &alice, get.clone()).await[0][1]);
    let r = call(
        &s,
        &alice,
        json!([["Mailbox/set", {"accountId": account,
            "create": {"new": {"name": "Outgoing", "role": "sent"}},
            "update": {names["Sent"].clone(): {"role": null}}}, "0"],
            ["Mailbox/set", {"accountId": account, "update": {
                names["Archive"].clone(): {"name": "Junk"},
                names["Junk"].clone(): {"name": "Archive"}}}, "1"],
            ["Mailbox/set", {"accountId": account,
                "create": {"p": {"name": "P"}, "c": {"name": "C", "parentId": "#p"}}}, "2"]]),
    )
    .await;
    assert!(
        r[0][1]["notCreated"].is_null() && r[0][1]["notUpdated"].is_null(),
        "{r:?}"
    );
    assert!(r[1][1]["notUpdated"].is_null(), "{r:?}");
    let (p, c) = (
        r[2][1]["created"]["p"]["id"].as_str().unwrap().to_owned(),
        r[2][1]["created"]["c"]["id"].as_str().unwrap().to_owned(),
    );
    // C leaves P for the top level while P becomes C's child: a cycle only if taken one at a
    // time in the wrong order (updates come sorted by id, not as the client meant them).
    let r2 = call(
        &s,
        &alice,
        json!([["Mailbox/set", {"accountId": account, "update": {
            c.clone(): {"parentId": null}, p.clone(): {"parentId": c.clone()}}}, "0"]]),
    )
    .await;
    assert!(r2[0][1]["notUpdated"].is_null(), "{r2:?}");
    let after = call(&s, &alice, get).await[0][1].clone();
    let by_name = ids_by_name(&after);
    let role_of = |name: &str| {
        after["list"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .map(|m| m["role"].clone())
            .unwrap()
    };
    assert_eq!(role_of("Outgoing"), "sent");
    assert_eq!(role_of("Sent"), Value::Null);
    assert_eq!(by_name["Junk"], names["Archive"]);
    assert_eq!(by_name["Archive"], names["Junk"]);

    // Two creates with one name: the first given stays, the second is refused.
    let r = call(
        &s,
        &alice,
        json!([["Mailbox/set", {"accountId": account, "create": {
            "a": {"name": "Twin"}, "b": {"name": "Twin"}}}, "0"]]),
    )
    .await;
    assert!(r[0][1]["created"]["a"].is_object(), "{r:?}");
    assert_eq!(
        r[0][1]["notCreated"]["b"]["type"], "invalidProperties",
        "{r:?}"
    );
}

#[on_both_backends]
async fn moving_a_mailbox_deeper_takes_its_subtree_into_account() {
    // MBX-04: a move that would put a descendant beyond the deepest level is refused.
    let (s, alice, account) = setup().await;
    let chain = |prefix: &str, n: usize| {
        let mut create = serde_json::Map::new();
        for i in 1..=n {
            let mut m = json!({"name": format!("{prefix}{i}")});
            if i > 1 {
                m["parentId"] = json!(format!("#{prefix}{}", i - 1));
            }
            create.insert(format!("{prefix}{i}"), m);
        }
        Value::Object(create)
    };
    let r = call(
        &s,
        &alice,
        json!([["Mailbox/set", {"accountId": account, "create": chain("a", 5)}, "0"],
            ["Mailbox/set", {"accountId": account, "create": chain("b", 6)}, "1"]]),
    )
    .await;
    let a5 = r[0][1]["created"]["a5"]["id"].as_str().unwrap().to_owned();
    let b1 = r[1][1]["created"]["b1"]["id"].as_str().unwrap().to_owned();
    let r = call(
        &s,
        &alice,
        json!([["Mailbox/set", {"accountId": account, "update": {b1.clone(): {"parentId": a5}}}, "0"]]),
    )
    .await;
    assert_eq!(
        r[0][1]["notUpdated"][&b1]["type"], "invalidProperties",
        "{r:?}"
    );
    assert_eq!(
        r[0][1]["notUpdated"][&b1]["properties"],
        json!(["parentId"]),
        "{r:?}"
    );
}
