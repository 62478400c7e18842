//! Identity (RFC 8621 §6) and VacationResponse (RFC 8621 §8) over HTTP. Checklist ids in comments.

use crate::harness::push::account_id;
use crate::harness::{Auth, CORE, TestServer, on_both_backends};
use serde_json::{Value, json};

const MAIL: &str = "urn:ietf:params:jmap:mail";
const SUBMISSION: &str = "urn:ietf:params:jmap:submission";
const VACATION: &str = "urn:ietf:params:jmap:vacationresponse";

async fn setup_with(s: TestServer, user: &str) -> (TestServer, Auth, String) {
    let auth = s.add_user(user, "pw");
    let account = account_id(&s, &auth).await;
    (s, auth, account)
}

async fn setup() -> (TestServer, Auth, String) {
    setup_with(TestServer::start().await, "alice").await
}

async fn call(s: &TestServer, auth: &Auth, calls: Value) -> Vec<Value> {
    s.call(auth, &[CORE, MAIL, SUBMISSION, VACATION], calls)
        .await
}

#[on_both_backends]
async fn the_session_advertises_submission_and_vacation_response() {
    let (s, alice, account) = setup().await;
    let session = s.get("/jmap/session", &alice).await.body;
    // MCAP-01
    assert_eq!(session["capabilities"][SUBMISSION], json!({}));
    assert_eq!(session["capabilities"][VACATION], json!({}));
    let caps = &session["accounts"][&account]["accountCapabilities"];
    // MCAP-03: submissionExtensions is an object, not an array; delayed send (RFC 4865
    // FUTURERELEASE) up to the configured 7 days, until a release date-time a week from now.
    assert_eq!(caps[SUBMISSION]["maxDelayedSend"], 604_800);
    let release = &caps[SUBMISSION]["submissionExtensions"]["FUTURERELEASE"];
    assert_eq!(release[0], "604800", "{caps}");
    let latest = chrono::DateTime::parse_from_rfc3339(release[1].as_str().unwrap()).unwrap();
    let in_a_week = chrono::Utc::now() + chrono::Duration::days(7);
    assert!(
        (latest.timestamp() - in_a_week.timestamp()).abs() < 60,
        "{latest}"
    );
    assert_eq!(caps[VACATION], json!({})); // MCAP-05
    assert_eq!(session["primaryAccounts"][VACATION], json!(account));
    s.stop().await;
}

#[on_both_backends]
async fn every_account_has_an_undeletable_default_identity_at_the_configured_domain() {
    let s = TestServer::start_with(|c| c.submission.domain = "example.org".into()).await;
    let (s, alice, account) = setup_with(s, "alice").await;
    let r = call(
        &s,
        &alice,
        json!([["Identity/get", {"accountId": account, "ids": null}, "0"]]),
    )
    .await;
    let list = r[0][1]["list"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{r:?}");
    let default = &list[0];
    // IDN-01: every property, with its default.
    assert_eq!(default["email"], "alice@example.org");
    assert_eq!(default["name"], "alice");
    assert_eq!(default["mayDelete"], false);
    assert_eq!(default["replyTo"], Value::Null);
    assert_eq!(default["bcc"], Value::Null);
    assert_eq!(default["textSignature"], "");
    assert_eq!(default["htmlSignature"], "");
    // The same object, at the same state, on the next request.
    let again = call(
        &s,
        &alice,
        json!([["Identity/get", {"accountId": account, "ids": [default["id"]], "properties": ["email"]}, "0"]]),
    )
    .await;
    assert_eq!(again[0][1]["state"], r[0][1]["state"]);
    assert_eq!(
        again[0][1]["list"],
        json!([{"id": default["id"], "email": "alice@example.org"}])
    );
    s.stop().await;
}

#[on_both_backends]
async fn a_user_name_that_is_an_address_is_the_default_identitys_address() {
    let (s, bob, account) = setup_with(TestServer::start().await, "Bob@Example.com").await;
    let r = call(
        &s,
        &bob,
        json!([["Identity/get", {"accountId": account}, "0"]]),
    )
    .await;
    assert_eq!(r[0][1]["list"][0]["email"], "bob@example.com");
    s.stop().await;
}

#[on_both_backends]
async fn the_default_identity_cannot_be_destroyed_and_foreign_addresses_are_forbidden_from() {
    let (s, alice, account) = setup().await;
    let r = call(
        &s,
        &alice,
        json!([
            ["Identity/get", {"accountId": account}, "0"],
            ["Identity/set", {"accountId": account,
                "#destroy": {"resultOf": "0", "name": "Identity/get", "path": "/list/*/id"},
                "create": {
                    "other": {"email": "mallory@elsewhere.test", "name": "Not me"},
                    "same": {"email": "alice@localhost", "name": "Alice at work",
                             "replyTo": [{"name": null, "email": "work@localhost"}]},
                }}, "1"],
        ]),
    )
    .await;
    let set = &r[1][1];
    let default_id = r[0][1]["list"][0]["id"].as_str().unwrap();
    // IDN-02
    assert_eq!(
        set["notDestroyed"][default_id]["type"], "forbidden",
        "{set}"
    );
    assert_eq!(set["notCreated"]["other"]["type"], "forbiddenFrom");
    // IDN-03: a second identity with the same address; the server fills in the rest.
    let created = &set["created"]["same"];
    assert!(created["id"].is_string(), "{set}");
    assert_eq!(created["mayDelete"], true);
    assert_eq!(created["textSignature"], "");
    assert_eq!(created["bcc"], Value::Null);
    assert!(
        created.get("name").is_none(),
        "properties sent are not echoed"
    );
    assert_ne!(set["oldState"], set["newState"]);

    // mayDelete reflects reality: the new one can go.
    let new_id = created["id"].as_str().unwrap();
    let r = call(
        &s,
        &alice,
        json!([
            ["Identity/get", {"accountId": account, "ids": [new_id], "properties": ["name", "replyTo", "mayDelete"]}, "0"],
            ["Identity/set", {"accountId": account, "destroy": [new_id, "nope"]}, "1"],
            ["Identity/get", {"accountId": account, "ids": null}, "2"],
        ]),
    )
    .await;
    assert_eq!(r[0][1]["list"][0]["name"], "Alice at work");
    assert_eq!(
        r[0][1]["list"][0]["replyTo"],
        json!([{"name": null, "email": "work@localhost"}])
    );
    assert_eq!(r[1][1]["destroyed"], json!([new_id]));
    assert_eq!(r[1][1]["notDestroyed"]["nope"]["type"], "notFound");
    assert_eq!(r[2][1]["list"].as_array().unwrap().len(), 1);
    s.stop().await;
}

#[on_both_backends]
async fn updates_change_names_and_signatures_but_not_the_address_or_server_set_properties() {
    let (s, alice, account) = setup().await;
    let r = call(
        &s,
        &alice,
        json!([["Identity/get", {"accountId": account}, "0"]]),
    )
    .await;
    let id = r[0][1]["list"][0]["id"].as_str().unwrap().to_owned();
    let state = r[0][1]["state"].clone();
    let r = call(
        &s,
        &alice,
        json!([
            ["Identity/set", {"accountId": account, "update": {
                id.clone(): {"name": "Alice A.", "textSignature": "-- \nAlice", "bcc": [{"email": "archive@localhost"}]},
            }}, "0"],
            ["Identity/set", {"accountId": account, "update": {
                id.clone(): {"email": "other@localhost"},
            }}, "1"],
            ["Identity/set", {"accountId": account, "update": {
                id.clone(): {"mayDelete": true},
                "nope": {"name": "x"},
            }}, "2"],
            ["Identity/set", {"accountId": account, "update": {
                id.clone(): {"replyTo": "someone"},
            }, "create": {"x": {"email": "alice@localhost", "colour": "red"}, "y": {"name": "no email"}}}, "3"],
            ["Identity/set", {"accountId": account, "ifInState": state, "update": {id.clone(): {"name": "late"}}}, "4"],
            ["Identity/changes", {"accountId": account, "sinceState": state}, "5"],
            ["Identity/get", {"accountId": account, "ids": [id.clone()]}, "6"],
        ]),
    )
    .await;
    assert_eq!(r[0][1]["updated"], json!({id.clone(): null}), "{r:?}");
    // IDN-01: email is immutable; mayDelete is server-set.
    assert_eq!(r[1][1]["notUpdated"][&id]["type"], "invalidProperties");
    assert_eq!(r[1][1]["notUpdated"][&id]["properties"], json!(["email"]));
    assert_eq!(
        r[2][1]["notUpdated"][&id]["properties"],
        json!(["mayDelete"])
    );
    assert_eq!(r[2][1]["notUpdated"]["nope"]["type"], "notFound");
    assert_eq!(r[3][1]["notUpdated"][&id]["properties"], json!(["replyTo"]));
    assert_eq!(r[3][1]["notCreated"]["x"]["properties"], json!(["colour"]));
    assert_eq!(r[3][1]["notCreated"]["y"]["properties"], json!(["email"]));
    // RFC 8620 §5.3: ifInState no longer matches after the first update.
    assert_eq!(r[4][0], "error");
    assert_eq!(r[4][1]["type"], "stateMismatch");
    // IDN-04: standard /changes.
    assert_eq!(r[5][1]["updated"], json!([id.clone()]));
    assert_eq!(r[5][1]["created"], json!([]));
    let got = &r[6][1]["list"][0];
    assert_eq!(got["name"], "Alice A.");
    assert_eq!(got["textSignature"], "-- \nAlice");
    assert_eq!(got["bcc"], json!([{"email": "archive@localhost"}]));
    assert_eq!(got["email"], "alice@localhost");

    // A null patch resets to the default (SET-14).
    let r = call(
        &s,
        &alice,
        json!([
            ["Identity/set", {"accountId": account, "update": {id.clone(): {"name": null, "bcc": null}}}, "0"],
            ["Identity/get", {"accountId": account, "ids": [id.clone()], "properties": ["name", "bcc"]}, "1"],
            ["Identity/changes", {"accountId": account, "sinceState": "bogus"}, "2"],
        ]),
    )
    .await;
    assert_eq!(
        r[1][1]["list"][0],
        json!({"id": id, "name": "", "bcc": null})
    );
    assert_eq!(r[2][1]["type"], "cannotCalculateChanges");
    s.stop().await;
}

#[on_both_backends]
async fn identity_and_vacation_methods_need_their_capability_in_using() {
    let (s, alice, account) = setup().await;
    let r = s
        .call(
            &alice,
            &[CORE, MAIL],
            json!([
                ["Identity/get", {"accountId": account}, "0"],
                ["VacationResponse/get", {"accountId": account}, "1"],
            ]),
        )
        .await;
    // IDN-04, VAC-06
    assert_eq!(r[0][1]["type"], "unknownMethod");
    assert_eq!(r[1][1]["type"], "unknownMethod");
    s.stop().await;
}

#[on_both_backends]
async fn the_vacation_response_is_one_singleton_that_starts_disabled() {
    let (s, alice, account) = setup().await;
    let r = call(
        &s,
        &alice,
        json!([
            ["VacationResponse/get", {"accountId": account, "ids": null}, "0"],
            ["VacationResponse/get", {"accountId": account, "ids": ["singleton", "other"], "properties": ["isEnabled"]}, "1"],
        ]),
    )
    .await;
    // VAC-01, VAC-02
    assert_eq!(
        r[0][1]["list"],
        json!([{"id": "singleton", "isEnabled": false, "fromDate": null, "toDate": null,
                "subject": null, "textBody": null, "htmlBody": null}])
    );
    assert_eq!(r[0][1]["notFound"], json!([]));
    assert_eq!(
        r[1][1]["list"],
        json!([{"id": "singleton", "isEnabled": false}])
    );
    assert_eq!(r[1][1]["notFound"], json!(["other"]));
    s.stop().await;
}

#[on_both_backends]
async fn vacation_create_and_destroy_are_singleton_errors_and_updates_are_kept() {
    let (s, alice, account) = setup().await;
    let r = call(
        &s,
        &alice,
        json!([
            ["VacationResponse/get", {"accountId": account}, "0"],
            ["VacationResponse/set", {"accountId": account,
                "create": {"v": {"isEnabled": true}},
                "destroy": ["singleton"],
                "update": {
                    "singleton": {"isEnabled": true, "fromDate": "2026-12-24T00:00:00Z",
                                  "toDate": "2027-01-02T00:00:00Z", "subject": "Away",
                                  "textBody": "Back in January."},
                    "other": {"isEnabled": false},
                }}, "1"],
            ["VacationResponse/get", {"accountId": account}, "2"],
        ]),
    )
    .await;
    let set = &r[1][1];
    // VAC-03
    assert_eq!(set["notCreated"]["v"]["type"], "singleton", "{set}");
    assert_eq!(set["notDestroyed"]["singleton"]["type"], "singleton");
    assert_eq!(set["notUpdated"]["other"]["type"], "notFound");
    assert_eq!(set["updated"], json!({"singleton": null}));
    assert_eq!(set["oldState"], r[0][1]["state"]);
    assert_ne!(set["oldState"], set["newState"]);
    let v = &r[2][1]["list"][0];
    assert_eq!(v["isEnabled"], true);
    assert_eq!(v["fromDate"], "2026-12-24T00:00:00Z");
    assert_eq!(v["toDate"], "2027-01-02T00:00:00Z");
    assert_eq!(v["subject"], "Away");
    assert_eq!(v["textBody"], "Back in January.");
    assert_eq!(v["htmlBody"], Value::Null);
    assert_eq!(r[2][1]["state"], set["newState"]);
    s.stop().await;
}

#[on_both_backends]
async fn vacation_updates_with_bad_values_or_a_stale_state_change_nothing() {
    let (s, alice, account) = setup().await;
    let r = call(
        &s,
        &alice,
        json!([
            ["VacationResponse/get", {"accountId": account}, "0"],
            ["VacationResponse/set", {"accountId": account, "update": {"singleton": {"fromDate": "24 Dec 2026"}}}, "1"],
            ["VacationResponse/set", {"accountId": account, "update": {"singleton": {"isEnabled": "yes"}}}, "2"],
            ["VacationResponse/set", {"accountId": account, "update": {"singleton": {"autoReply": true}}}, "3"],
            ["VacationResponse/set", {"accountId": account, "update": {"singleton": {"subject": "Off"}}}, "4"],
            ["VacationResponse/set", {"accountId": account, "ifInState": "0", "update": {"singleton": {"subject": "late"}}}, "5"],
            ["VacationResponse/set", {"accountId": account, "update": {"singleton": {"subject": null}}}, "6"],
            ["VacationResponse/get", {"accountId": account}, "7"],
        ]),
    )
    .await;
    assert_eq!(
        r[1][1]["notUpdated"]["singleton"]["properties"],
        json!(["fromDate"])
    );
    assert_eq!(
        r[2][1]["notUpdated"]["singleton"]["properties"],
        json!(["isEnabled"])
    );
    assert_eq!(
        r[3][1]["notUpdated"]["singleton"]["properties"],
        json!(["autoReply"])
    );
    // Failed updates change no state.
    assert_eq!(r[1][1]["newState"], r[0][1]["state"]);
    assert_eq!(r[4][1]["updated"], json!({"singleton": null}));
    assert_eq!(r[5][0], "error");
    assert_eq!(r[5][1]["type"], "stateMismatch");
    assert_eq!(r[7][1]["list"][0]["subject"], Value::Null);
    s.stop().await;
}

#[on_both_backends]
async fn the_first_identity_get_of_many_clients_at_once_succeeds_for_each() {
    // The default identity is written before the read snapshot (which cannot write): clients
    // racing to create it all get it.
    let s = TestServer::start().await;
    let alice = s.add_user("alice", "pw");
    let account = account_id(&s, &alice).await;
    let get = json!([["Identity/get", {"accountId": account}, "0"]]);
    let calls = (0..8).map(|_| {
        s.call(
            &alice,
            &[CORE, "urn:ietf:params:jmap:submission"],
            get.clone(),
        )
    });
    for r in futures_util::future::join_all(calls).await {
        assert_eq!(r[0][0], "Identity/get", "{r:?}");
        assert_eq!(r[0][1]["list"].as_array().unwrap().len(), 1, "{r:?}");
    }
}
