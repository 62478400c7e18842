//! What only PostgreSQL has: repeated migrations of a shared database, the cluster bus
//! (LISTEN/NOTIFY) and two nodes on one store. Every store-backed feature test runs on PostgreSQL
//! too, through `#[on_both_backends]`. Skipped, with a clear line, where PostgreSQL binaries are
//! missing; `.ci/run` installs them.

use crate::harness::pg;
use crate::harness::{CORE, TestServer, eventually};
use herald::jmap::changes::ChangeOp;
use herald::store::changelog;
use herald::store::{Store, users};
use serde_json::json;

#[test]
fn migrations_apply_twice_without_harm() {
    let cluster = pg::cluster();
    let url = cluster.fresh_database();
    let store = Store::open(&url, 2).unwrap();
    users::create(&mut store.conn().unwrap(), "alice", "pw").unwrap();
    let again = Store::open(&url, 1).expect("a second start finds the store migrated");
    let mut conn = again.conn().unwrap();
    assert!(users::find_by_name(&mut conn, "alice").unwrap().is_some());
}

/// Waits (at most 30 s) until a backend of this database is LISTENing.
async fn wait_for_listener(url: &str) {
    wait_for_listeners(url, |n| n > 0, "the cluster bus never listened").await;
}

/// Waits (at most 30 s) until the number of backends of this database that LISTEN satisfies
/// `done`.
async fn wait_for_listeners(url: &str, done: impl Fn(i64) -> bool, failure: &str) {
    use diesel::{Connection, RunQueryDsl};
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = diesel::PgConnection::establish(url).unwrap();
    eventually(failure, std::time::Duration::from_secs(30), || {
        let rows: Vec<N> = diesel::sql_query(
            "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .load(&mut conn)
        .unwrap();
        std::future::ready(done(rows[0].n).then_some(()))
    })
    .await;
}

#[actix_web::test]
async fn a_node_that_stops_gracefully_closes_its_listen_connection_and_halts_its_webhook_sender() {
    let cluster = pg::cluster();
    let url = cluster.fresh_database();
    let mut config =
        herald::config::Config::load(std::path::Path::new("/nonexistent"), Vec::new()).unwrap();
    config.store.url = url.clone();
    config.server.workers = 1;
    config.server.dispatcher_threads = 1;
    config.lmtp.listen = String::new();
    let store = Store::open(&url, herald::server::pool_size(&config)).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let running = herald::server::start(&config, store, listener).unwrap();
    let (handle, webhooks) = (running.server.handle(), running.webhooks.clone());
    let node = actix_web::rt::spawn(running.run());
    wait_for_listener(&url).await;
    assert!(webhooks.connected());
    // What SIGTERM does to `herald serve`.
    handle.stop(true).await;
    node.await.unwrap().unwrap();
    // Halt has been handled; the sender's context winds down on its own thread right after.
    eventually(
        "the webhook sender halts",
        std::time::Duration::from_secs(30),
        || std::future::ready((!webhooks.connected()).then_some(())),
    )
    .await;
    wait_for_listeners(&url, |n| n == 0, "the cluster bus still LISTENs").await;
}

/// Records what the bus publishes, for the test to await.
struct Recorder(tokio::sync::mpsc::UnboundedSender<herald::push::StateChanged>);

impl actix::Actor for Recorder {
    type Context = actix::Context<Self>;
}

impl actix::Handler<herald::push::StateChanged> for Recorder {
    type Result = ();
    fn handle(&mut self, msg: herald::push::StateChanged, _: &mut Self::Context) {
        let _ = self.0.send(msg);
    }
}

async fn next_change(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<herald::push::StateChanged>,
) -> herald::push::StateChanged {
    tokio::time::timeout(std::time::Duration::from_secs(30), rx.recv())
        .await
        .expect("a state change within 30 s")
        .expect("bus alive")
}

#[actix_web::test]
async fn the_cluster_bus_announces_committed_writes_and_replays_what_a_dropped_listener_missed() {
    use actix::Actor;
    use diesel::connection::SimpleConnection;
    let cluster = pg::cluster();
    let url = cluster.fresh_database();
    let store = Store::open(&url, 4).unwrap();
    let account = {
        let mut conn = store.conn().unwrap();
        let user = users::create(&mut conn, "alice", "pw").unwrap();
        herald::store::accounts::personal_account(&mut conn, &user.id).unwrap()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let recorder = Recorder(tx).start();
    herald::push::cluster_bus::ClusterBus::start(
        url.clone(),
        store.clone(),
        vec![recorder.recipient()],
        Vec::new(),
    )
    .expect("bus");
    let write = |n: &str| {
        let mut conn = store.conn().unwrap();
        changelog::write(&mut conn, &account, |txn| {
            txn.record("Mailbox", n, ChangeOp::Created);
            Ok(())
        })
        .unwrap()
        .1
        .unwrap()
        .seq
    };
    // Writes before the bus listens are history, not pushes: wait for its LISTEN backend.
    wait_for_listener(&url).await;
    let first = write("m1");
    let got = next_change(&mut rx).await;
    assert_eq!(
        (got.account_id.as_str(), got.seq, got.types.clone()),
        (account.as_str(), first, vec!["Mailbox".to_owned()])
    );
    // A failed write announces nothing.
    let mut conn = store.conn().unwrap();
    let failed: Result<((), _), _> = changelog::write(&mut conn, &account, |txn| {
        txn.record("Mailbox", "never", ChangeOp::Created);
        Err(herald::store::StoreError::Invalid("rolled back".into()))
    });
    assert!(failed.is_err());
    // Drop the listener's connection, write meanwhile: every write still arrives once, in order.
    conn.batch_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .unwrap();
    let later: Vec<i64> = (2..=4).map(|i| write(&format!("m{i}"))).collect();
    let mut seen = Vec::new();
    while seen.len() < later.len() {
        seen.push(next_change(&mut rx).await.seq);
    }
    assert_eq!(seen, later);
    assert!(rx.try_recv().is_err(), "nothing twice");
}

#[actix_web::test]
async fn two_nodes_writing_to_one_account_at_once_lose_and_duplicate_nothing() {
    let cluster = pg::cluster();
    let url = cluster.fresh_database();
    let node = |c: &mut herald::config::Config| {
        c.store.url = url.clone();
        c.limits.max_concurrent_requests = 32;
    };
    let a = TestServer::start_with(node).await;
    let b = TestServer::start_with(node).await;
    let alice = a.add_user("alice", "pw");
    let mail = "urn:ietf:params:jmap:mail";
    let account = a.get("/jmap/session", &alice).await.body["primaryAccounts"][mail]
        .as_str()
        .unwrap()
        .to_owned();
    let before = a
        .call(
            &alice,
            &[CORE, mail],
            json!([["Mailbox/get", {"accountId": account, "ids": []}, "0"]]),
        )
        .await[0][1]["state"]
        .clone();
    let mut writes = Vec::new();
    for (node, server) in [("a", &a), ("b", &b)] {
        for i in 0..10 {
            let (alice, account) = (alice.clone(), account.clone());
            writes.push(async move {
                let r = server
                    .call(&alice, &[CORE, mail], json!([["Mailbox/set", {"accountId": account, "create": {"k": {"name": format!("{node}{i}")}}}, "0"]]))
                    .await;
                r[0][1]["newState"].as_str().unwrap().to_owned()
            });
        }
    }
    let mut states = futures_util::future::join_all(writes).await;
    states.sort();
    states.dedup();
    assert_eq!(states.len(), 20, "every write got its own state");
    let r = b
        .call(&alice, &[CORE, mail], json!([["Mailbox/changes", {"accountId": account, "sinceState": before}, "0"], ["Mailbox/get", {"accountId": account, "ids": null, "properties": ["name"]}, "1"]]))
        .await;
    assert_eq!(r[0][1]["created"].as_array().unwrap().len(), 20);
    assert_eq!(r[0][1]["newState"], r[1][1]["state"]);
    assert_eq!(r[1][1]["list"].as_array().unwrap().len(), 26);
}

/// Imports `n` small messages into the inbox of `user`'s account in one write, as an import
/// does, and says whether every one was created.
fn import_in_one_write(store: &Store, user: &str, n: usize) -> bool {
    use herald::jmap::methods::email::{EmailOp, NewEmail, OpResult, Source, new_email_id};
    use herald::store::{accounts, email, mailbox};
    let mut conn = store.conn().unwrap();
    let user = users::find_by_name(&mut conn, user).unwrap().unwrap();
    let account = accounts::personal_account(&mut conn, &user.id).unwrap();
    let inbox = mailbox::list(&mut conn, &account)
        .unwrap()
        .into_iter()
        .find(|m| m.role.as_deref() == Some("inbox"))
        .unwrap()
        .id;
    let ops = (0..n)
        .map(|i| EmailOp::Create {
            creation_id: format!("c{i}"),
            email: NewEmail {
                id: new_email_id(),
                source: Source::Message(
                    format!(
                        "From: a@example.com\r\nSubject: note {i}\r\nMessage-ID: <n{i}.{n}@x>\r\n\r\nword{i} body\r\n"
                    )
                    .into_bytes(),
                ),
                mailbox_ids: [inbox.clone()].into(),
                keywords: Default::default(),
                received_at: None,
                delivery: true,
            },
        })
        .collect();
    let (results, _) =
        changelog::write(&mut conn, &account, |txn| email::apply(txn, None, ops)).unwrap();
    results.iter().all(|r| matches!(r, OpResult::Created(..)))
}

/// Entries waiting in the pending list of the search index (read with `pageinspect`).
fn pending_search_words(url: &str) -> i64 {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, RunQueryDsl};
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = diesel::PgConnection::establish(url).unwrap();
    conn.batch_execute("CREATE EXTENSION IF NOT EXISTS pageinspect")
        .unwrap();
    let rows: Vec<N> = diesel::sql_query(
        "SELECT n_pending_tuples AS n \
         FROM gin_metapage_info(get_raw_page('email_search_words', 0))",
    )
    .load(&mut conn)
    .unwrap();
    rows[0].n
}

#[test]
fn a_write_of_many_emails_merges_their_search_words_unless_its_role_may_not() {
    use diesel::Connection;
    use diesel::connection::SimpleConnection;
    let cluster = pg::cluster();
    let url = cluster.fresh_database();
    let store = Store::open(&url, 1).unwrap();
    users::create(&mut store.conn().unwrap(), "alice", "pw").unwrap();
    // A few emails wait in the pending list; a write of many merges it, theirs included.
    assert!(import_in_one_write(&store, "alice", 3));
    assert!(pending_search_words(&url) > 0);
    assert!(import_in_one_write(&store, "alice", 60));
    assert_eq!(pending_search_words(&url), 0);

    // A role that may write every table but does not own the index cannot merge: its writes
    // still commit, and the words wait for the index's owner or autovacuum.
    let role = url.rsplit('/').next().unwrap().to_owned() + "_app";
    let mut admin = diesel::PgConnection::establish(&url).unwrap();
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN; GRANT CREATE, USAGE ON SCHEMA public TO {role}; \
             GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}"
        ))
        .unwrap();
    let app_url = url.replacen("postgres://postgres@", &format!("postgres://{role}@"), 1);
    let app = Store::open(&app_url, 1).unwrap();
    assert!(import_in_one_write(&app, "alice", 60));
    assert!(pending_search_words(&url) > 0);
}

#[test]
fn the_search_rows_of_an_existing_store_get_their_emails_received_at_from_the_migration() {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, RunQueryDsl};
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count = |conn: &mut diesel::PgConnection, sql: &str| -> i64 {
        diesel::sql_query(sql).load::<N>(conn).unwrap()[0].n
    };
    const SEARCH_ROWS_WITH_THEIR_EMAILS_RECEIVED_AT: &str = "SELECT COUNT(*) AS n \
        FROM email_search s JOIN emails e ON e.account_id = s.account_id AND e.id = s.email_id \
        WHERE s.received_at = e.received_at";
    let cluster = pg::cluster();
    let url = cluster.fresh_database();
    let store = Store::open(&url, 1).unwrap();
    users::create(&mut store.conn().unwrap(), "alice", "pw").unwrap();
    assert!(import_in_one_write(&store, "alice", 5));
    drop(store);

    // The store as the release before the migration left it, its emails received at different
    // times.
    let mut admin = diesel::PgConnection::establish(&url).unwrap();
    admin
        .batch_execute(
            "ALTER TABLE email_search DROP COLUMN received_at; \
             DELETE FROM __diesel_schema_migrations WHERE version = '20261207160000'; \
             UPDATE emails e SET received_at = e.received_at - r.n * 3600 FROM \
             (SELECT id, row_number() OVER (ORDER BY id) AS n FROM emails) r WHERE r.id = e.id",
        )
        .unwrap();

    let store = Store::open(&url, 1).expect("the migration applies to an existing store");
    assert_eq!(
        count(&mut admin, SEARCH_ROWS_WITH_THEIR_EMAILS_RECEIVED_AT),
        5
    );
    assert_eq!(
        count(
            &mut admin,
            "SELECT COUNT(DISTINCT received_at) AS n FROM email_search"
        ),
        5
    );
    // The words index, dropped to fill the column, is back with its options.
    assert_eq!(
        count(
            &mut admin,
            "SELECT COUNT(*) AS n FROM pg_class WHERE relname = 'email_search_words' \
             AND reloptions @> ARRAY['fastupdate=on', 'gin_pending_list_limit=256']"
        ),
        1
    );
    // New emails keep theirs too.
    assert!(import_in_one_write(&store, "alice", 2));
    assert_eq!(
        count(&mut admin, SEARCH_ROWS_WITH_THEIR_EMAILS_RECEIVED_AT),
        7
    );
}
