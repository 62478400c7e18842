//! Two Herald nodes on one PostgreSQL database (docs/cluster.md): push sessions on either node
//! hear writes made through either node, a webhook gets each change once however many nodes
//! hear it, and a node that dies mid-delivery leaves its claim to another node once the lease
//! runs out. Skipped, with a clear line, where PostgreSQL binaries are missing.

use std::collections::HashSet;
use std::sync::{Arc, Barrier};

use crate::harness::push::{
    WAIT, account_id, create_mailbox, sse_open, ws_pushed_everything, ws_until_mailbox_state,
};
use crate::harness::webhook_sink::{WebhookSink, subscribe_verified};
use crate::harness::{TestServer, eventually, pg};
use diesel::prelude::*;
use herald::config::Config;
use herald::jmap::methods::push_subscription::NewSubscription;
use herald::store::push_subscription::{self as subscriptions, now_ms};
use herald::store::schema::push_deliveries;
use herald::store::webhook_outbox as outbox;
use herald::store::{Store, users};

/// A node of the cluster on `url`, allowed to push to a sink on 127.0.0.1.
fn node(url: &str, lease_secs: u64) -> impl FnOnce(&mut Config) + '_ {
    move |c: &mut Config| {
        c.store.url = url.to_owned();
        c.push.allow_private_targets = true;
        c.push.retry_base_ms = 50;
        c.push.retry_cap_ms = 200;
        c.push.claim_lease_secs = lease_secs;
    }
}

/// Waits (within [`WAIT`]) until `n` backends of this database are LISTENing: a node's
/// ClusterBus hears only writes committed after it listens.
async fn wait_for_listeners(url: &str, n: i64) {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = diesel::PgConnection::establish(url).unwrap();
    eventually(&format!("{n} cluster buses listen"), WAIT, || {
        let rows: Vec<Count> = diesel::sql_query(
            "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .load(&mut conn)
        .unwrap();
        std::future::ready((rows[0].n >= n).then_some(()))
    })
    .await;
}

/// Waits (within [`WAIT`]) until the subscription has no outbox row: nothing pending, nothing
/// in flight (a POST holds its row until its outcome is recorded).
async fn wait_until_outbox_empty(store: &Store, subscription_id: &str) {
    let what = format!("the outbox row of {subscription_id} goes away");
    eventually(&what, WAIT, || {
        std::future::ready(outbox_row(store, subscription_id).is_none().then_some(()))
    })
    .await;
}

/// The subscription's outbox row: (`claimed_by`, `claimed_until`, `changed`).
fn outbox_row(
    store: &Store,
    subscription_id: &str,
) -> Option<(Option<String>, Option<i64>, String)> {
    let mut conn = store.conn().unwrap();
    push_deliveries::table
        .find(subscription_id)
        .select((
            push_deliveries::claimed_by,
            push_deliveries::claimed_until,
            push_deliveries::changed,
        ))
        .first(&mut conn)
        .optional()
        .unwrap()
}

#[actix_web::test]
async fn clients_on_either_node_hear_writes_through_either_node_and_a_webhook_gets_each_change_once()
 {
    let cluster = pg::cluster();
    let url = cluster.fresh_database();
    let a = TestServer::start_with(node(&url, 0)).await;
    let b = TestServer::start_with(node(&url, 0)).await;
    wait_for_listeners(&url, 2).await;
    let alice = a.add_user("alice", "pw");
    let account = account_id(&a, &alice).await;

    // A WebSocket with push on node A (RFC 8887 §4.3.5), an EventSource on node B (RFC 8620 §7.3).
    let mut ws = ws_pushed_everything(&a, &alice).await;
    let mut sse = sse_open(
        &b,
        &alice,
        "/jmap/eventsource/?types=*&closeafter=no&ping=0",
        None,
    )
    .await;
    sse.ready().await;
    // A webhook (RFC 8620 §7.2), created and verified through node A.
    let mut sink = WebhookSink::start().await;
    let subscription = subscribe_verified(&a, &alice, &mut sink, "/push").await;

    // A write through node B, then one through node A: both clients hear both.
    let through_b = create_mailbox(&b, &alice, &account, "Through B").await;
    ws_until_mailbox_state(&mut ws, &account, &through_b).await;
    sse.until_mailbox_state(&account, &through_b).await;
    let through_a = create_mailbox(&a, &alice, &account, "Through A").await;
    assert_ne!(through_a, through_b);
    ws_until_mailbox_state(&mut ws, &account, &through_a).await;
    sse.until_mailbox_state(&account, &through_a).await;

    // The webhook: every POST a StateChange, the final state arrives, no state twice (the
    // sender may merge the two changes into one POST, never split or repeat them).
    let mut deliveries = Vec::new();
    loop {
        let d = sink.next_json().await;
        assert_eq!(d["@type"], "StateChange", "{d}");
        let last = d["changed"][&account]["Mailbox"] == through_a.as_str();
        deliveries.push(d);
        if last {
            break;
        }
    }
    // Nothing pending or in flight any more on either node, so anything else sent is in the sink.
    wait_until_outbox_empty(&a.store, &subscription).await;
    while let Some(d) = sink.try_next().map(|r| r.json()) {
        deliveries.push(d);
    }
    assert!(
        deliveries.len() <= 2,
        "more deliveries than changes: {deliveries:?}"
    );
    let mut seen = HashSet::new();
    for d in &deliveries {
        let changed = d["changed"].as_object().expect("changed");
        assert_eq!(changed.keys().collect::<Vec<_>>(), vec![&account], "{d}");
        for (data_type, state) in changed[&account].as_object().unwrap() {
            let state = state.as_str().unwrap().to_owned();
            assert!(
                seen.insert((data_type.clone(), state.clone())),
                "{data_type} state {state} delivered twice: {deliveries:?}"
            );
        }
    }
    let mailbox_states: HashSet<&str> = deliveries
        .iter()
        .map(|d| d["changed"][&account]["Mailbox"].as_str().unwrap())
        .collect();
    assert!(
        mailbox_states.is_subset(&HashSet::from([through_a.as_str(), through_b.as_str()])),
        "{deliveries:?}"
    );

    sink.stop().await;
    a.stop().await;
    b.stop().await;
}

#[actix_web::test]
async fn a_node_killed_mid_delivery_leaves_its_claim_to_another_node_once_the_lease_runs_out() {
    let cluster = pg::cluster();
    let url = cluster.fresh_database();
    const LEASE_SECS: u64 = 2;
    let a = TestServer::start_with(node(&url, LEASE_SECS)).await;
    wait_for_listeners(&url, 1).await;
    let alice = a.add_user("alice", "pw");
    let account = account_id(&a, &alice).await;
    let mut sink = WebhookSink::start().await;
    let subscription = subscribe_verified(&a, &alice, &mut sink, "/push").await;

    // Node A claims the StateChange and POSTs it; the push service does not answer.
    sink.hang_next();
    let first = create_mailbox(&a, &alice, &account, "First").await;
    let hung = sink.next_json().await;
    assert_eq!(
        hung["changed"][&account]["Mailbox"],
        first.as_str(),
        "{hung}"
    );
    let (claimed_by, claimed_until, _) =
        outbox_row(&a.store, &subscription).expect("the row stays while its POST is in flight");
    assert!(claimed_by.is_some());
    let lease_end = claimed_until.expect("a lease");

    // Node B joins while A's claim holds, and a write through B is merged into the claimed row.
    let b = TestServer::start_with(node(&url, LEASE_SECS)).await;
    wait_for_listeners(&url, 2).await;
    let second = create_mailbox(&b, &alice, &account, "Second").await;

    // A dies mid-POST: its claim is never settled. B sends the newest state, after the lease.
    a.stop().await;
    let d = sink.next_json().await;
    let received_at = now_ms();
    assert_eq!(d["@type"], "StateChange", "{d}");
    assert_eq!(d["changed"][&account]["Mailbox"], second.as_str(), "{d}");
    assert!(
        received_at >= lease_end,
        "delivered {} ms before node A's lease ran out",
        lease_end - received_at
    );
    wait_until_outbox_empty(&b.store, &subscription).await;
    assert!(sink.try_next().is_none(), "nothing else was sent");

    sink.stop().await;
    b.stop().await;
}

#[test]
fn concurrent_claims_of_one_delivery_succeed_once_and_an_expired_lease_can_be_taken_over() {
    let cluster = pg::cluster();
    let url = cluster.fresh_database();
    let store = Store::open(&url, 12).unwrap();
    let id = {
        let mut conn = store.conn().unwrap();
        let user = users::create(&mut conn, "alice", "pw").unwrap();
        let new = NewSubscription {
            device_client_id: "dev".into(),
            url: "https://push.example/x".into(),
            keys: None,
            expires: now_ms() / 1000 + 3600,
            types: None,
            token_hash: None,
        };
        // Queues the PushVerification, due now.
        subscriptions::create(&mut conn, &user.id, &new).unwrap()
    };
    const LEASE_MS: i64 = 60_000;
    let at = now_ms();
    let nodes = 8;
    let start = Arc::new(Barrier::new(nodes));
    let claims: Vec<_> = (0..nodes)
        .map(|n| {
            let (store, id, start) = (store.clone(), id.clone(), start.clone());
            std::thread::spawn(move || {
                let mut conn = store.conn().unwrap();
                start.wait();
                outbox::claim(&mut conn, &id, &format!("node{n}"), at, LEASE_MS)
                    .unwrap()
                    .is_some()
            })
        })
        .collect();
    let won = claims
        .into_iter()
        .map(|t| t.join().unwrap())
        .filter(|won| *won)
        .count();
    assert_eq!(won, 1, "exactly one node claims a due delivery");
    let mut conn = store.conn().unwrap();
    let (holder, until, _) = outbox_row(&store, &id).unwrap();
    assert_eq!(until, Some(at + LEASE_MS));
    // While the lease holds nobody else gets the row; once it has run out, another node does.
    assert!(
        outbox::claim(&mut conn, &id, "late", at + LEASE_MS - 1, LEASE_MS)
            .unwrap()
            .is_none()
    );
    let heir = outbox::claim(&mut conn, &id, "heir", at + LEASE_MS + 1, LEASE_MS).unwrap();
    assert!(heir.is_some());
    let (now_held_by, _, _) = outbox_row(&store, &id).unwrap();
    assert_eq!(now_held_by.as_deref(), Some("heir"));
    assert_ne!(holder.as_deref(), Some("heir"));
}

/// Batch claims (`FOR UPDATE SKIP LOCKED`): eight nodes claiming batches of the same due rows at
/// once split them; no row is handed to two nodes, none is left out, and each row names the node
/// that got it.
#[test]
fn concurrent_batch_claims_split_the_due_deliveries_and_never_hand_one_to_two_nodes() {
    let cluster = pg::cluster();
    let url = cluster.fresh_database();
    let store = Store::open(&url, 12).unwrap();
    const ROWS: usize = 200;
    {
        let mut conn = store.conn().unwrap();
        let user = users::create(&mut conn, "alice", "pw").unwrap();
        for n in 0..ROWS {
            let new = NewSubscription {
                device_client_id: format!("dev{n}"),
                url: "https://push.example/x".into(),
                keys: None,
                expires: now_ms() / 1000 + 3600,
                types: None,
                token_hash: None,
            };
            // Each queues a PushVerification, due now.
            subscriptions::create(&mut conn, &user.id, &new).unwrap();
        }
    }
    const LEASE_MS: i64 = 60_000;
    let at = now_ms();
    let nodes = 8;
    let start = Arc::new(Barrier::new(nodes));
    let claims: Vec<_> = (0..nodes)
        .map(|n| {
            let (store, start) = (store.clone(), start.clone());
            std::thread::spawn(move || {
                let mut conn = store.conn().unwrap();
                let node = format!("node{n}");
                start.wait();
                let mut got = Vec::new();
                loop {
                    let batch = outbox::claim_due(&mut conn, &node, at, LEASE_MS, 7).unwrap();
                    if batch.is_empty() {
                        return (node, got);
                    }
                    got.extend(batch.into_iter().map(|c| c.subscription.id));
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for t in claims {
        let (node, got) = t.join().unwrap();
        for id in got {
            let (holder, until, _) = outbox_row(&store, &id).unwrap();
            assert_eq!(holder.as_deref(), Some(node.as_str()), "{id}");
            assert_eq!(until, Some(at + LEASE_MS));
            assert!(seen.insert(id.clone()), "{id} was handed to two nodes");
        }
    }
    assert_eq!(seen.len(), ROWS, "every due row was claimed once");
    let mut conn = store.conn().unwrap();
    assert!(
        outbox::claim_due(&mut conn, "late", at + 1, LEASE_MS, ROWS)
            .unwrap()
            .is_empty(),
        "nothing is claimable while the leases hold"
    );
}
