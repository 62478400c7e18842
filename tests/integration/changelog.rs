//! The change log on a real store: one `seq` per committed write, rollback of empty and failed
//! writes, concurrent writers, and `/changes` paging that always lets a client catch up.

use std::collections::{BTreeMap, BTreeSet};

use crate::harness;
use crate::harness::on_both_backends;
use herald::jmap::changes::{ChangeOp, ChangesSince};
use herald::store::changelog::{self, changes_since, log_bounds, type_state};
use herald::store::{Store, StoreError, snapshot, users};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

/// A fresh store on the test's backend, with one user's account.
fn store() -> (tempfile::TempDir, Store, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&harness::backend::fresh_store_url(dir.path()), 8).unwrap();
    let account = new_account(&store, "alice");
    (dir, store, account)
}

/// Creates user `name` and returns their (empty) account.
fn new_account(store: &Store, name: &str) -> String {
    let mut conn = store.conn().unwrap();
    let user = users::create(&mut conn, name, "pw").unwrap();
    herald::store::accounts::personal_account(&mut conn, &user.id).unwrap()
}

#[on_both_backends]
fn each_committed_write_advances_the_account_by_one_and_sets_the_state_of_its_types() {
    let (_d, store, account) = store();
    let mut conn = store.conn().unwrap();
    let (_, before) = log_bounds(&mut conn, &account).unwrap();
    let (_, committed) = changelog::write(&mut conn, &account, |txn| {
        txn.record("Thing", "t1", ChangeOp::Created);
        txn.record("Other", "o1", ChangeOp::Updated);
        Ok(())
    })
    .unwrap();
    let committed = committed.unwrap();
    assert_eq!(committed.seq, before + 1);
    assert_eq!(
        committed.types,
        BTreeSet::from(["Other".to_owned(), "Thing".to_owned()])
    );
    assert_eq!(
        type_state(&mut conn, &account, "Thing").unwrap(),
        before + 1
    );
    assert_eq!(type_state(&mut conn, &account, "Unrelated").unwrap(), 0);
}

#[on_both_backends]
fn a_write_that_records_nothing_or_fails_leaves_no_trace() {
    let (_d, store, account) = store();
    let mut conn = store.conn().unwrap();
    let (_, before) = log_bounds(&mut conn, &account).unwrap();
    let (value, committed) = changelog::write(&mut conn, &account, |_| Ok(7)).unwrap();
    assert_eq!((value, committed), (7, None));
    let failed: Result<((), _), _> = changelog::write(&mut conn, &account, |txn| {
        txn.record("Thing", "t1", ChangeOp::Created);
        Err(StoreError::Invalid("no".into()))
    });
    assert!(failed.is_err());
    let (_, cancelled) = changelog::write(&mut conn, &account, |txn| {
        txn.record("Thing", "t2", ChangeOp::Created);
        txn.record("Thing", "t2", ChangeOp::Destroyed);
        Ok(())
    })
    .unwrap();
    assert!(
        cancelled.is_none(),
        "created and destroyed in one write is no change"
    );
    assert_eq!(log_bounds(&mut conn, &account).unwrap().1, before);
    assert_eq!(type_state(&mut conn, &account, "Thing").unwrap(), 0);
}

#[on_both_backends]
fn concurrent_writers_get_distinct_consecutive_positions_and_lose_no_change() {
    let (_d, store, account) = store();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (store, account) = (store.clone(), account.clone());
            std::thread::spawn(move || {
                let mut seqs = Vec::new();
                for i in 0..25 {
                    let mut conn = store.conn().unwrap();
                    let (_, c) = changelog::write(&mut conn, &account, |txn| {
                        txn.record("Thing", &format!("t{t}-{i}"), ChangeOp::Created);
                        Ok(())
                    })
                    .unwrap();
                    seqs.push(c.unwrap().seq);
                }
                seqs
            })
        })
        .collect();
    let mut all: Vec<i64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort();
    assert_eq!(all, (1..=100).collect::<Vec<_>>());
    let mut conn = store.conn().unwrap();
    let page = changes_since(&mut conn, &account, "Thing", &ChangesSince::default(), 1000).unwrap();
    assert_eq!(page.created.len(), 100);
    assert_eq!((page.new_seq, page.has_more_changes), (100, false));
}

/// One write: for each op, an object index and what happens to it.
type Write = Vec<(u8, u8)>;

/// Applies a write to the model. Ids are never reused once destroyed (RFC 8620 §1.6.3), so
/// actions on a dead id are skipped.
fn apply_truth(
    truth: &mut BTreeMap<String, u32>,
    dead: &mut BTreeSet<String>,
    next_version: &mut u32,
    write: &Write,
) -> Vec<(String, ChangeOp)> {
    let mut recorded = Vec::new();
    for (obj, action) in write {
        let id = format!("o{obj}");
        if dead.contains(&id) {
            continue;
        }
        *next_version += 1;
        let op = match (truth.contains_key(&id), action % 3) {
            (false, _) => {
                truth.insert(id.clone(), *next_version);
                ChangeOp::Created
            }
            (true, 0) => {
                truth.remove(&id);
                dead.insert(id.clone());
                ChangeOp::Destroyed
            }
            (true, _) => {
                truth.insert(id.clone(), *next_version);
                ChangeOp::Updated
            }
        };
        recorded.push((id, op));
    }
    recorded
}

/// RFC 8620 §5.2: whatever state a client holds and whatever maxChanges it asks for, following
/// hasMoreChanges brings it exactly to the server's current set of objects. A property test over
/// one store: each case gets an account of its own, which starts empty.
#[on_both_backends]
fn a_client_paging_through_changes_from_any_state_reaches_the_truth() {
    let (_d, store, _) = store();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 24,
        // Replays the seeds in changelog.proptest-regressions.
        source_file: Some(file!()),
        ..ProptestConfig::default()
    });
    let case = std::cell::Cell::new(0);
    let strategy = (
        prop::collection::vec(prop::collection::vec((0u8..12, any::<u8>()), 1..5), 1..25),
        0usize..25,
        1usize..6,
    );
    runner
        .run(&strategy, |(writes, start, max_changes)| {
            case.set(case.get() + 1);
            let account = new_account(&store, &format!("user{}", case.get()));
            paging_reaches_the_truth(&store, &account, &writes, start, max_changes)
        })
        .unwrap();
}

fn paging_reaches_the_truth(
    store: &Store,
    account: &str,
    writes: &[Write],
    start: usize,
    max_changes: usize,
) -> Result<(), TestCaseError> {
    let mut conn = store.conn().unwrap();
    let mut truth = BTreeMap::new();
    let mut dead = BTreeSet::new();
    let mut version = 0;
    let mut snapshots = vec![(0i64, truth.clone())];
    for w in writes {
        let recorded = apply_truth(&mut truth, &mut dead, &mut version, w);
        let (_, c) = changelog::write(&mut conn, account, |txn| {
            for (id, op) in &recorded {
                txn.record("Thing", id, *op);
            }
            Ok(())
        })
        .unwrap();
        let seq = c.map_or(snapshots.last().unwrap().0, |c| c.seq);
        snapshots.push((seq, truth.clone()));
    }
    let (seq, known) = snapshots[start.min(snapshots.len() - 1)].clone();
    let mut since = ChangesSince { seq, after: None };
    let mut client: BTreeSet<String> = known.keys().cloned().collect();
    for _ in 0..1000 {
        match changes_since(&mut conn, account, "Thing", &since, max_changes) {
            Ok(page) => {
                prop_assert!(
                    page.created.len() + page.updated.len() + page.destroyed.len() <= max_changes
                );
                for id in page.created.iter().chain(&page.updated) {
                    client.insert(id.clone());
                }
                for id in &page.destroyed {
                    client.remove(id);
                }
                since = ChangesSince {
                    seq: page.new_seq,
                    after: page.new_after,
                };
                if !page.has_more_changes {
                    break;
                }
            }
            // Even one write larger than maxChanges comes in pages (split states).
            Err(e) => panic!("{e}"),
        }
    }
    let expected: BTreeSet<String> = truth.keys().cloned().collect();
    prop_assert_eq!(client, expected);
    Ok(())
}

#[on_both_backends]
fn reads_in_one_snapshot_do_not_see_a_write_committed_between_them() {
    // What a /get or /queryChanges response rests on (ST-01, QCH-02): its state and its data.
    let (_d, store, account) = store();
    let mut reader = store.conn().unwrap();
    let mut writer = store.conn().unwrap();
    let (before, inside) = snapshot::read::<_, StoreError>(&mut reader, |r| {
        let before = type_state(r, &account, "Thing")?;
        changelog::write(&mut writer, &account, |txn| {
            txn.record("Thing", "t1", ChangeOp::Created);
            Ok(())
        })?;
        Ok((before, type_state(r, &account, "Thing")?))
    })
    .unwrap();
    assert_eq!(
        inside, before,
        "the write committed after the snapshot began"
    );
    assert!(type_state(&mut reader, &account, "Thing").unwrap() > before);
}

#[on_both_backends]
fn a_snapshot_whose_reader_panics_leaves_no_transaction_open() {
    let (_d, store, account) = store();
    let mut conn = store.conn().unwrap();
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        snapshot::read::<(), StoreError>(&mut conn, |c| {
            type_state(c, &account, "Thing")?;
            panic!("a method's bug");
        })
    }));
    assert!(panicked.is_err());
    // A write on the same connection commits for real, not inside a stale transaction.
    changelog::write(&mut conn, &account, |txn| {
        txn.record("Thing", "t1", ChangeOp::Created);
        Ok(())
    })
    .unwrap();
    let mut other = store.conn().unwrap();
    assert!(type_state(&mut other, &account, "Thing").unwrap() > 0);
}
