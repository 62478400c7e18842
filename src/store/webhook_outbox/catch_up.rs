//! Catching the outbox up with the change log: one pending StateChange per subscription, into
//! which newer states are merged.

use std::collections::{BTreeMap, HashMap};

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text};

use super::{ChangedStates, KIND_STATE_CHANGE, take_write_lock};
use crate::jmap::methods::push_subscription::KNOWN_TYPES;
use crate::store::first_row::FirstRowDsl;
use crate::store::now_ms;
use crate::store::schema::{
    account_access, accounts, change_log, push_deliveries, push_subscriptions,
};
use crate::store::static_sql::{SqlParam, StaticSql};
use crate::store::{AnyConnection, StoreError, changelog};

/// What [`catch_up`] assumes for a subscription that has no cursor on the account yet (the user
/// was given access after verifying).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MissingCursor {
    /// A write was just published: push its types.
    NewestWrite,
    /// A periodic or start-up scan: start from here, push nothing.
    Skip,
}

/// Brings the outbox of every verified, unexpired subscription whose owner may read
/// `account_id` up to date with the account's change log: the types changed after the
/// subscription's cursor, with their newest states, are merged into its pending StateChange
/// (filtered by its `types`), and the cursor moves to the account's `seq`, in one transaction.
///
/// Driven by `StateChanged`, but reading the log rather than the message, so a message that
/// arrives late, out of order or never (a crash between commit and this call, a full mailbox)
/// still ends up in the outbox at the next scan. Returns how many outbox rows were touched.
pub fn catch_up(
    conn: &mut AnyConnection,
    account_id: &str,
    missing: MissingCursor,
) -> Result<usize, StoreError> {
    // Most accounts are followed by no subscription: a read says so without the write
    // transaction, which on SQLite waited for the write lock after every write of the
    // account's users (9 % of a Mailbox/set's processor time, BENCHMARKS.md). A subscription
    // verified after this read meets the account's next write with no cursor, and starts there.
    if !followed(conn, account_id)? {
        return Ok(0);
    }
    let at = now_ms();
    conn.transaction::<_, StoreError, _>(|conn| {
        take_write_lock(conn)?;
        // Every node hears every write on PostgreSQL (ClusterBus): one catch-up per account at a
        // time, so two nodes never merge the same changes or start the same cursor.
        if let AnyConnection::Postgresql(pg) = conn {
            diesel::sql_query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind::<diesel::sql_types::Text, _>(account_id)
                .execute(pg)?;
        }
        let Some((floor, target)) = accounts::table
            .find(account_id)
            .select((accounts::log_floor, accounts::seq))
            .first_row::<(i64, i64), _>(conn)
            .optional()?
        else {
            return Ok(0);
        };
        if let AnyConnection::Postgresql(pg) = conn {
            // Catch-ups of other accounts and settlements on other nodes change these rows
            // too: lock them (in one order, so two lockers cannot deadlock) before reading.
            StaticSql::new(
                LOCK_OUTBOX_ROWS_SQL,
                vec![SqlParam::Text(account_id.to_owned())],
            )
            .execute(pg)?;
        }
        let query = StaticSql::new(
            CATCH_UP_SQL,
            vec![
                SqlParam::Text(account_id.to_owned()),
                SqlParam::Int(at / 1000),
                SqlParam::Int(target),
            ],
        );
        let rows: Vec<CatchUpRow> = match conn {
            AnyConnection::Sqlite(c) => query.load(c)?,
            AnyConnection::Postgresql(c) => query.load(c)?,
        };
        let mut states_since: HashMap<i64, BTreeMap<String, i64>> = HashMap::new();
        let mut new_rows: Vec<(String, String)> = Vec::new();
        let mut merged: Vec<(String, String)> = Vec::new();
        let mut touched = 0;
        for row in rows {
            let from = match (row.cursor, missing) {
                (Some(c), _) => c,
                (None, MissingCursor::NewestWrite) => target - 1,
                (None, MissingCursor::Skip) => target,
            };
            if from >= target {
                continue;
            }
            let states = match states_since.get(&from) {
                Some(s) => s,
                None => {
                    let s = changed_states(conn, account_id, from, target, floor)?;
                    states_since.entry(from).or_insert(s)
                }
            };
            let wanted = wanted_states(states, row.types.as_deref());
            if wanted.is_empty() {
                continue;
            }
            touched += 1;
            let existing = row.kind.zip(row.changed);
            let json = merged_states(existing.as_ref(), account_id, &wanted);
            match existing {
                Some((KIND_STATE_CHANGE, _)) => merged.push((row.id, json)),
                other => {
                    if other.is_some() {
                        // A stale verification retry of an already verified subscription.
                        diesel::delete(push_deliveries::table.find(&row.id)).execute(conn)?;
                    }
                    new_rows.push((row.id, json));
                }
            }
        }
        update_state_changes(conn, &merged)?;
        insert_state_changes(conn, &new_rows, at)?;
        advance_cursors(conn, account_id, at, target)?;
        Ok(touched)
    })
}

/// Whether a verified subscription's owner may read `account_id`.
fn followed(conn: &mut AnyConnection, account_id: &str) -> Result<bool, StoreError> {
    let query = StaticSql::new(FOLLOWED_SQL, vec![SqlParam::Text(account_id.to_owned())]);
    let found: Vec<Followed> = match conn {
        AnyConnection::Sqlite(c) => query.load(c)?,
        AnyConnection::Postgresql(c) => query.load(c)?,
    };
    Ok(!found.is_empty())
}

const FOLLOWED_SQL: &str = "\
SELECT 1 AS one FROM push_subscriptions s
JOIN account_access a ON a.user_id = s.user_id AND a.account_id = $1
WHERE s.verified = TRUE LIMIT 1";

#[derive(QueryableByName)]
struct Followed {
    #[diesel(sql_type = Integer)]
    #[allow(dead_code, reason = "only whether a row came back matters")]
    one: i32,
}

/// Of the changed types' states, those a subscription wants: its `types` (JSON, null = all).
fn wanted_states(states: &BTreeMap<String, i64>, types: Option<&str>) -> BTreeMap<String, i64> {
    let filter: Option<Vec<String>> = types.and_then(|t| serde_json::from_str(t).ok());
    states
        .iter()
        .filter(|(t, _)| filter.as_ref().is_none_or(|f| f.contains(t)))
        .map(|(t, s)| (t.clone(), *s))
        .collect()
}

/// Moves every cursor of the account to `target` (missing ones start there): two statements for
/// all subscriptions.
fn advance_cursors(
    conn: &mut AnyConnection,
    account_id: &str,
    at: i64,
    target: i64,
) -> Result<(), StoreError> {
    let params = vec![
        SqlParam::Text(account_id.to_owned()),
        SqlParam::Int(at / 1000),
        SqlParam::Int(target),
    ];
    let advance = StaticSql::new(ADVANCE_CURSORS_SQL, params.clone());
    let start = StaticSql::new(START_MISSING_CURSORS_SQL, params);
    match conn {
        AnyConnection::Sqlite(c) => {
            advance.execute(c)?;
            start.execute(c)?;
        }
        AnyConnection::Postgresql(c) => {
            advance.execute(c)?;
            start.execute(c)?;
        }
    }
    Ok(())
}

/// The subscriptions a catch-up of account `$1` concerns (verified, unexpired at `$2`, owner may
/// read the account) whose cursor is missing or behind `$3`, with their pending outbox row.
const CATCH_UP_SQL: &str = "\
SELECT s.id AS id, s.types AS types, c.seq AS cursor, d.kind AS kind, d.changed AS changed
FROM push_subscriptions s
JOIN account_access a ON a.user_id = s.user_id AND a.account_id = $1
LEFT JOIN push_cursors c ON c.subscription_id = s.id AND c.account_id = $1
LEFT JOIN push_deliveries d ON d.subscription_id = s.id
WHERE s.verified = TRUE AND s.expires > $2 AND (c.seq IS NULL OR c.seq < $3)";

/// PostgreSQL: locks the outbox rows of every subscription whose owner may read account `$1`.
const LOCK_OUTBOX_ROWS_SQL: &str = "\
SELECT d.subscription_id FROM push_deliveries d
JOIN push_subscriptions s ON s.id = d.subscription_id
JOIN account_access a ON a.user_id = s.user_id AND a.account_id = $1
ORDER BY d.subscription_id FOR UPDATE OF d";

const ADVANCE_CURSORS_SQL: &str = "\
UPDATE push_cursors SET seq = $3
WHERE account_id = $1 AND seq < $3 AND subscription_id IN (
    SELECT s.id FROM push_subscriptions s
    JOIN account_access a ON a.user_id = s.user_id AND a.account_id = $1
    WHERE s.verified = TRUE AND s.expires > $2)";

const START_MISSING_CURSORS_SQL: &str = "\
INSERT INTO push_cursors (subscription_id, account_id, seq)
SELECT s.id, $1, $3 FROM push_subscriptions s
JOIN account_access a ON a.user_id = s.user_id AND a.account_id = $1
WHERE s.verified = TRUE AND s.expires > $2 AND NOT EXISTS (
    SELECT 1 FROM push_cursors c WHERE c.subscription_id = s.id AND c.account_id = $1)
ON CONFLICT DO NOTHING";

#[derive(QueryableByName)]
struct CatchUpRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Nullable<Text>)]
    types: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    cursor: Option<i64>,
    #[diesel(sql_type = Nullable<Integer>)]
    kind: Option<i32>,
    #[diesel(sql_type = Nullable<Text>)]
    changed: Option<String>,
}

/// The JSON of a pending StateChange once `states` of one account are merged into the row's
/// current `(kind, changed)`. Publications may arrive out of order: the newest state wins.
fn merged_states(
    existing: Option<&(i32, String)>,
    account_id: &str,
    states: &BTreeMap<String, i64>,
) -> String {
    let mut changed: ChangedStates = match existing {
        Some((KIND_STATE_CHANGE, json)) => serde_json::from_str(json).unwrap_or_default(),
        _ => ChangedStates::new(),
    };
    let entry = changed.entry(account_id.to_owned()).or_default();
    for (t, seq) in states {
        let state = entry.entry(t.clone()).or_insert(*seq);
        *state = (*state).max(*seq);
    }
    serde_json::to_string(&changed).unwrap_or_default()
}

/// Replaces the `changed` JSON of pending StateChanges `(subscription id, changed JSON)` and
/// bumps their revision. On PostgreSQL one statement for all (each statement is a round trip);
/// SQLite runs in-process, where one cached statement per row costs less than building one.
fn update_state_changes(
    conn: &mut AnyConnection,
    rows: &[(String, String)],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    if let AnyConnection::Postgresql(pg) = &mut *conn {
        let (ids, jsons): (Vec<&str>, Vec<&str>) =
            rows.iter().map(|(i, j)| (i.as_str(), j.as_str())).unzip();
        diesel::sql_query(
            "UPDATE push_deliveries AS d SET changed = v.changed, revision = d.revision + 1 \
             FROM unnest($1::text[], $2::text[]) AS v(id, changed) WHERE d.subscription_id = v.id",
        )
        .bind::<Array<Text>, _>(ids)
        .bind::<Array<Text>, _>(jsons)
        .execute(pg)?;
        return Ok(());
    }
    for (id, json) in rows {
        diesel::update(push_deliveries::table.find(id))
            .set((
                push_deliveries::changed.eq(json),
                push_deliveries::revision.eq(push_deliveries::revision + 1),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Queues new StateChange rows `(subscription id, changed JSON)`, due at `at`: multi-row
/// inserts, which Diesel offers per backend only.
fn insert_state_changes(
    conn: &mut AnyConnection,
    rows: &[(String, String)],
    at: i64,
) -> Result<(), StoreError> {
    for chunk in rows.chunks(500) {
        let values: Vec<_> = chunk
            .iter()
            .map(|(id, json)| {
                (
                    push_deliveries::subscription_id.eq(id),
                    push_deliveries::kind.eq(KIND_STATE_CHANGE),
                    push_deliveries::changed.eq(json),
                    push_deliveries::revision.eq(0i64),
                    push_deliveries::attempts.eq(0),
                    push_deliveries::first_pending_at.eq(at),
                    push_deliveries::next_attempt_at.eq(at),
                )
            })
            .collect();
        let insert = diesel::insert_into(push_deliveries::table).values(values);
        match conn {
            AnyConnection::Sqlite(c) => insert.execute(c)?,
            AnyConnection::Postgresql(c) => insert.execute(c)?,
        };
    }
    Ok(())
}

/// Catches up every account that some verified subscription's owner may read: at start and on
/// every outbox poll.
pub fn catch_up_all(conn: &mut AnyConnection) -> Result<usize, StoreError> {
    let users: Vec<String> = push_subscriptions::table
        .filter(push_subscriptions::verified.eq(true))
        .select(push_subscriptions::user_id)
        .distinct()
        .load(conn)?;
    let accounts: Vec<String> = account_access::table
        .filter(account_access::user_id.eq_any(&users))
        .select(account_access::account_id)
        .distinct()
        .load(conn)?;
    let mut touched = 0;
    for account in accounts {
        touched += catch_up(conn, &account, MissingCursor::Skip)?;
    }
    Ok(touched)
}

/// The newest state of every type changed in `(from, to]`; every type if the log was trimmed
/// past `from`.
fn changed_states(
    conn: &mut AnyConnection,
    account_id: &str,
    from: i64,
    to: i64,
    floor: i64,
) -> Result<BTreeMap<String, i64>, StoreError> {
    let rows: Vec<(String, Option<i64>)> = change_log::table
        .filter(change_log::account_id.eq(account_id))
        .filter(change_log::seq.gt(from))
        .filter(change_log::seq.le(to))
        .group_by(change_log::data_type)
        .select((change_log::data_type, diesel::dsl::max(change_log::seq)))
        .load(conn)?;
    let mut states: BTreeMap<String, i64> = rows
        .into_iter()
        .filter_map(|(t, s)| s.map(|s| (t, s)))
        .collect();
    if from < floor {
        for t in KNOWN_TYPES {
            if !states.contains_key(*t) {
                let state = changelog::type_state(conn, account_id, t)?;
                states.insert((*t).to_owned(), state);
            }
        }
    }
    Ok(states)
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;

    use super::*;
    use crate::store::{Store, users};

    #[test]
    fn an_account_no_subscription_follows_is_passed_over_without_the_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::open(&url, 2).unwrap();
        let mut conn = store.conn().unwrap();
        let alice = users::create(&mut conn, "alice", "pw").unwrap();
        let account: String = accounts::table
            .filter(accounts::owner_id.eq(&alice.id))
            .select(accounts::id)
            .first_row(&mut conn)
            .unwrap();
        let mut writer = store.conn().unwrap();
        writer.batch_execute("BEGIN IMMEDIATE").unwrap();
        // With the lock taken, a catch-up that wanted it would wait, then fail.
        let touched = catch_up(&mut conn, &account, MissingCursor::NewestWrite).unwrap();
        assert_eq!(touched, 0);
        writer.batch_execute("ROLLBACK").unwrap();
    }
}
