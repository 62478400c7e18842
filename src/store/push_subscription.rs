//! PushSubscriptions and the webhook outbox (`push_deliveries`) in the database.
//!
//! The outbox holds at most one pending delivery per subscription: a PushVerification, or a
//! StateChange into which newer states are merged. A row is claimed with a lease
//! (`claimed_by`, `claimed_until`) while its POST is in flight, so at most one POST per
//! subscription runs, and a node that dies mid-POST only delays the row until the lease runs out.
//! The sender claims due rows in batches ([`claim_due`]: one `UPDATE … RETURNING`; on
//! PostgreSQL the rows are picked `FOR UPDATE SKIP LOCKED`, so concurrent claimers split the due
//! rows instead of queueing on them) and records the outcomes of finished POSTs in batches
//! ([`settle`]); until its outcome is recorded a row stays claimed, so a crash in between only
//! means the delivery is sent again. A single-row [`claim`] is one conditional `UPDATE`: on
//! PostgreSQL a second node's update waits for the first one's row lock and then re-checks its
//! `WHERE` against the claimed row, so it claims nothing (`tests/integration/cluster.rs` races eight
//! claimers of each kind). The lease is `push.claim_lease_secs`.

use super::first_row::FirstRowDsl;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::LazyLock;

use diesel::prelude::*;

use super::schema::{
    account_access, accounts, change_log, push_creation_windows, push_cursors, push_deliveries,
    push_subscriptions,
};
use super::static_sql::{SqlParam, StaticSql};
use super::{AnyConnection, StoreContext, StoreError, changelog, new_id, now, random_secret};
use crate::jmap::error::MethodError;
use crate::jmap::push_subscription::{
    KNOWN_TYPES, NewSubscription, PushSubscriptionStore, Subscription, SubscriptionChange,
};
use crate::push::webpush::UaKeys;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text};

/// Outbox row kinds.
pub const KIND_VERIFICATION: i32 = 1;
pub const KIND_STATE_CHANGE: i32 = 2;

/// `{"accountId": {"Type": seq}}`: what a pending StateChange will say.
pub type ChangedStates = BTreeMap<String, BTreeMap<String, i64>>;

static OUTBOX_SIGNAL: LazyLock<tokio::sync::watch::Sender<u64>> =
    LazyLock::new(|| tokio::sync::watch::channel(0).0);

/// Bumped whenever a request queues an outbox row (a new subscription's verification), so the
/// webhook sender wakes at once instead of at its next poll. Process-wide: every sender in the
/// process wakes and looks at its own store.
pub fn outbox_signal() -> &'static tokio::sync::watch::Sender<u64> {
    &OUTBOX_SIGNAL
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

type SubscriptionRow = (
    String,
    String,
    String,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    String,
    bool,
    i64,
    Option<String>,
);

fn subscription_from_row(row: SubscriptionRow) -> Subscription {
    let (id, device_client_id, url, p256dh, auth, verification_code, verified, expires, types) =
        row;
    Subscription {
        id,
        device_client_id,
        url,
        keys: match (p256dh, auth) {
            (Some(p256dh), Some(auth)) => Some(UaKeys { p256dh, auth }),
            _ => None,
        },
        verification_code,
        verified,
        expires,
        types: types.and_then(|t| serde_json::from_str(&t).ok()),
    }
}

macro_rules! subscription_columns {
    () => {
        (
            push_subscriptions::id,
            push_subscriptions::device_client_id,
            push_subscriptions::url,
            push_subscriptions::p256dh,
            push_subscriptions::auth,
            push_subscriptions::verification_code,
            push_subscriptions::verified,
            push_subscriptions::expires,
            push_subscriptions::types,
        )
    };
}

/// The user's subscriptions, oldest first.
pub fn list(conn: &mut AnyConnection, user_id: &str) -> Result<Vec<Subscription>, StoreError> {
    let rows: Vec<SubscriptionRow> = push_subscriptions::table
        .filter(push_subscriptions::user_id.eq(user_id))
        .order((
            push_subscriptions::created_at.asc(),
            push_subscriptions::id.asc(),
        ))
        .select(subscription_columns!())
        .load(conn)?;
    Ok(rows.into_iter().map(subscription_from_row).collect())
}

/// One subscription by id, whoever owns it.
pub fn find(conn: &mut AnyConnection, id: &str) -> Result<Option<Subscription>, StoreError> {
    let row: Option<SubscriptionRow> = push_subscriptions::table
        .find(id)
        .select(subscription_columns!())
        .first_row(conn)
        .optional()?;
    Ok(row.map(subscription_from_row))
}

/// Stores a subscription with a fresh id and a 256-bit verification code (PSUB-05), and queues
/// its PushVerification. Returns the id.
pub fn create(
    conn: &mut AnyConnection,
    user_id: &str,
    new: &NewSubscription,
) -> Result<String, StoreError> {
    let id = new_id('p');
    let code = random_secret(32);
    let types = new
        .types
        .as_ref()
        .map(|t| serde_json::to_string(t).unwrap_or_default());
    let at = now_ms();
    conn.transaction::<_, StoreError, _>(|conn| {
        diesel::insert_into(push_subscriptions::table)
            .values((
                push_subscriptions::id.eq(&id),
                push_subscriptions::user_id.eq(user_id),
                push_subscriptions::device_client_id.eq(&new.device_client_id),
                push_subscriptions::url.eq(&new.url),
                push_subscriptions::p256dh.eq(new.keys.as_ref().map(|k| k.p256dh.clone())),
                push_subscriptions::auth.eq(new.keys.as_ref().map(|k| k.auth.clone())),
                push_subscriptions::verification_code.eq(&code),
                push_subscriptions::verified.eq(false),
                push_subscriptions::expires.eq(new.expires),
                push_subscriptions::types.eq(types),
                push_subscriptions::created_at.eq(now()),
            ))
            .execute(conn)?;
        diesel::insert_into(push_deliveries::table)
            .values((
                push_deliveries::subscription_id.eq(&id),
                push_deliveries::kind.eq(KIND_VERIFICATION),
                push_deliveries::changed.eq("{}"),
                push_deliveries::revision.eq(0),
                push_deliveries::attempts.eq(0),
                push_deliveries::first_pending_at.eq(at),
                push_deliveries::next_attempt_at.eq(at),
            ))
            .execute(conn)?;
        Ok(())
    })?;
    outbox_signal().send_modify(|n| *n = n.wrapping_add(1));
    Ok(id)
}

/// Applies a validated change. Verifying drops a PushVerification still queued for retry.
pub fn update(
    conn: &mut AnyConnection,
    user_id: &str,
    id: &str,
    change: &SubscriptionChange,
) -> Result<(), StoreError> {
    if change.types.is_some() {
        // Changes committed before `types` changes are judged by the filter in force when they
        // were made: bring the outbox up to date under the old filter first. (The sender catches
        // up asynchronously; without this, a change the old filter excluded could be delivered
        // under the new one.) Outside the update's transaction: catch_up must write first.
        let accounts: Vec<String> = push_cursors::table
            .filter(push_cursors::subscription_id.eq(id))
            .select(push_cursors::account_id)
            .load(conn)?;
        for account in accounts {
            catch_up(conn, &account, MissingCursor::Skip)?;
        }
    }
    conn.transaction::<_, StoreError, _>(|conn| {
        let target = push_subscriptions::table
            .filter(push_subscriptions::id.eq(id))
            .filter(push_subscriptions::user_id.eq(user_id));
        if change.verify {
            diesel::update(target)
                .set(push_subscriptions::verified.eq(true))
                .execute(conn)?;
            start_cursors(conn, user_id, id)?;
            diesel::delete(
                push_deliveries::table
                    .filter(push_deliveries::subscription_id.eq(id))
                    .filter(push_deliveries::kind.eq(KIND_VERIFICATION)),
            )
            .execute(conn)?;
        }
        if let Some(expires) = change.expires {
            diesel::update(target)
                .set(push_subscriptions::expires.eq(expires))
                .execute(conn)?;
        }
        if let Some(types) = &change.types {
            let types = types
                .as_ref()
                .map(|t| serde_json::to_string(t).unwrap_or_default());
            diesel::update(target)
                .set(push_subscriptions::types.eq(types))
                .execute(conn)?;
        }
        Ok(())
    })
}

/// Destroys a subscription (and, by cascade, its outbox row). The URL and keys are overwritten
/// first, so they do not linger in the row's old versions any longer than needed (PSUB-10).
/// `user_id: None` destroys whoever owns it (a retired or expired subscription).
pub fn destroy(
    conn: &mut AnyConnection,
    user_id: Option<&str>,
    id: &str,
) -> Result<bool, StoreError> {
    conn.transaction::<_, StoreError, _>(|conn| {
        let mut erase = diesel::update(push_subscriptions::table)
            .filter(push_subscriptions::id.eq(id))
            .into_boxed();
        if let Some(user_id) = user_id {
            erase = erase.filter(push_subscriptions::user_id.eq(user_id));
        }
        let n = erase
            .set((
                push_subscriptions::url.eq(""),
                push_subscriptions::p256dh.eq(None::<Vec<u8>>),
                push_subscriptions::auth.eq(None::<Vec<u8>>),
                push_subscriptions::verification_code.eq(""),
            ))
            .execute(conn)?;
        if n == 0 {
            return Ok(false);
        }
        diesel::delete(push_subscriptions::table.find(id)).execute(conn)?;
        Ok(true)
    })
}

/// Counts one subscription creation by `user_id` in a fixed window of `window_secs`; `false`
/// when `limit` creations were already counted in the current window.
pub fn take_creation_slot(
    conn: &mut AnyConnection,
    user_id: &str,
    limit: u64,
    window_secs: i64,
    at: i64,
) -> Result<bool, StoreError> {
    conn.transaction::<_, StoreError, _>(|conn| {
        take_write_lock(conn)?;
        let row: Option<(i64, i32)> = push_creation_windows::table
            .find(user_id)
            .select((
                push_creation_windows::window_start,
                push_creation_windows::created,
            ))
            .first_row(conn)
            .optional()?;
        let (start, created) = match row {
            Some((start, created)) if at - start < window_secs => (start, created as u64),
            _ => (at, 0),
        };
        if created >= limit {
            return Ok(false);
        }
        let values = (
            push_creation_windows::window_start.eq(start),
            push_creation_windows::created.eq((created + 1) as i32),
        );
        if row.is_some() {
            diesel::update(push_creation_windows::table.find(user_id))
                .set(values)
                .execute(conn)?;
        } else {
            diesel::insert_into(push_creation_windows::table)
                .values((
                    push_creation_windows::user_id.eq(user_id),
                    values.0,
                    values.1,
                ))
                .execute(conn)?;
        }
        Ok(true)
    })
}

fn method_error(e: StoreError) -> MethodError {
    MethodError::ServerFail(e.to_string())
}

impl PushSubscriptionStore for StoreContext {
    fn push_subscriptions(&mut self, user_id: &str) -> Result<Vec<Subscription>, MethodError> {
        list(self.conn(), user_id).map_err(method_error)
    }

    fn create_push_subscription(
        &mut self,
        user_id: &str,
        new: &NewSubscription,
    ) -> Result<String, MethodError> {
        create(self.conn(), user_id, new).map_err(method_error)
    }

    fn update_push_subscription(
        &mut self,
        user_id: &str,
        id: &str,
        change: &SubscriptionChange,
    ) -> Result<(), MethodError> {
        update(self.conn(), user_id, id, change).map_err(method_error)
    }

    fn destroy_push_subscription(&mut self, user_id: &str, id: &str) -> Result<bool, MethodError> {
        destroy(self.conn(), Some(user_id), id).map_err(method_error)
    }

    fn take_creation_slot(
        &mut self,
        user_id: &str,
        limit: u64,
        window_secs: i64,
    ) -> Result<bool, MethodError> {
        take_creation_slot(self.conn(), user_id, limit, window_secs, now()).map_err(method_error)
    }

    fn resolve_host(&mut self, host: &str, port: u16) -> Result<Vec<IpAddr>, String> {
        (host, port)
            .to_socket_addrs()
            .map(|addrs| addrs.map(|a| a.ip()).collect())
            .map_err(|e| format!("{host} does not resolve: {e}"))
    }

    fn now(&self) -> i64 {
        now()
    }
}

// ---------------------------------------------------------------------------------------------
// The outbox.

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
            .first::<(i64, i64)>(conn)
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
            let filter: Option<Vec<String>> = row
                .types
                .as_deref()
                .and_then(|t| serde_json::from_str(t).ok());
            let wanted: BTreeMap<String, i64> = states
                .iter()
                .filter(|(t, _)| filter.as_ref().is_none_or(|f| f.contains(t)))
                .map(|(t, s)| (t.clone(), *s))
                .collect();
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
        // Every cursor of the account moves to `target` (missing ones start there): two
        // statements for all subscriptions.
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
        Ok(touched)
    })
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

/// Starts a transaction's writing before its reads. SQLite answers "database is locked" at once,
/// without waiting, to a transaction that read and then wants to write while another writer is
/// active (waiting could deadlock); a transaction that writes first waits its turn instead
/// (`busy_timeout`), as `changelog::write` does. This write matches no row.
fn take_write_lock(conn: &mut AnyConnection) -> Result<(), StoreError> {
    if let AnyConnection::Postgresql(_) = conn {
        // Row locks, taken by the writes themselves: nothing to do, and a round trip saved.
        return Ok(());
    }
    diesel::update(push_cursors::table.filter(push_cursors::subscription_id.eq("")))
        .set(push_cursors::seq.eq(0))
        .execute(conn)?;
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

fn set_cursor(
    conn: &mut AnyConnection,
    subscription_id: &str,
    account_id: &str,
    seq: i64,
    exists: bool,
) -> Result<(), StoreError> {
    if exists {
        diesel::update(push_cursors::table.find((subscription_id, account_id)))
            .set(push_cursors::seq.eq(seq))
            .execute(conn)?;
    } else {
        diesel::insert_into(push_cursors::table)
            .values((
                push_cursors::subscription_id.eq(subscription_id),
                push_cursors::account_id.eq(account_id),
                push_cursors::seq.eq(seq),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Starts a newly verified subscription's cursors at the current position of every account its
/// owner may read: nothing from before the verification is pushed (PSUB-06).
fn start_cursors(
    conn: &mut AnyConnection,
    user_id: &str,
    subscription_id: &str,
) -> Result<(), StoreError> {
    let positions: Vec<(String, i64)> = account_access::table
        .inner_join(accounts::table)
        .filter(account_access::user_id.eq(user_id))
        .select((accounts::id, accounts::seq))
        .load(conn)?;
    for (account_id, seq) in positions {
        let exists = push_cursors::table
            .find((subscription_id, &account_id))
            .select(push_cursors::seq)
            .first::<i64>(conn)
            .optional()?
            .is_some();
        if !exists {
            set_cursor(conn, subscription_id, &account_id, seq, false)?;
        }
    }
    Ok(())
}

/// When the outbox next needs looking at: the earliest retry time or lease end, if any row
/// exists.
pub fn next_wake(conn: &mut AnyConnection) -> Result<Option<i64>, StoreError> {
    let unclaimed: Option<i64> = push_deliveries::table
        .filter(push_deliveries::claimed_until.is_null())
        .select(diesel::dsl::min(push_deliveries::next_attempt_at))
        .first_row(conn)?;
    let lease: Option<i64> = push_deliveries::table
        .select(diesel::dsl::min(push_deliveries::claimed_until))
        .first_row(conn)?;
    Ok(match (unclaimed, lease) {
        (Some(a), Some(b)) => Some(a.min(b + 1)),
        (a, b) => a.or(b.map(|b| b + 1)),
    })
}

/// A claimed delivery: everything needed to POST it.
#[derive(Clone, Debug)]
pub struct ClaimedDelivery {
    pub subscription: Subscription,
    pub kind: i32,
    pub changed: ChangedStates,
    pub revision: i64,
    pub attempts: i32,
    pub first_pending_at: i64,
}

/// Claims one delivery for `node` until `at + lease_ms`, if it is due and unclaimed (or its
/// lease ran out). `None` if another claim won, or the row or subscription is gone; an expired
/// subscription is destroyed here (PSUB-08).
pub fn claim(
    conn: &mut AnyConnection,
    subscription_id: &str,
    node: &str,
    at: i64,
    lease_ms: i64,
) -> Result<Option<ClaimedDelivery>, StoreError> {
    conn.transaction::<_, StoreError, _>(|conn| {
        let n = diesel::update(
            push_deliveries::table
                .filter(push_deliveries::subscription_id.eq(subscription_id))
                .filter(push_deliveries::next_attempt_at.le(at))
                .filter(
                    push_deliveries::claimed_until
                        .is_null()
                        .or(push_deliveries::claimed_until.lt(at)),
                ),
        )
        .set((
            push_deliveries::claimed_by.eq(node),
            push_deliveries::claimed_until.eq(at + lease_ms),
        ))
        .execute(conn)?;
        if n == 0 {
            return Ok(None);
        }
        let row: ClaimRow = push_deliveries::table
            .find(subscription_id)
            .select((
                push_deliveries::subscription_id,
                push_deliveries::kind,
                push_deliveries::changed,
                push_deliveries::revision,
                push_deliveries::attempts,
                push_deliveries::first_pending_at,
            ))
            .first_row(conn)?;
        Ok(with_subscriptions(conn, vec![row], at)?.pop())
    })
}

/// Claims up to `limit` due deliveries (oldest due first) for `node` until `at + lease_ms`, in
/// one transaction and one statement. On PostgreSQL the due rows are picked `FOR UPDATE SKIP
/// LOCKED`: rows another node is claiming at the same moment are skipped rather than waited
/// for, and a row whose claim committed meanwhile fails the re-checked condition, so no row is
/// handed to two nodes. On SQLite the statement runs under the database's write lock.
pub fn claim_due(
    conn: &mut AnyConnection,
    node: &str,
    at: i64,
    lease_ms: i64,
    limit: usize,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    conn.transaction::<_, StoreError, _>(|conn| {
        let params = vec![
            SqlParam::Text(node.to_owned()),
            SqlParam::Int(at + lease_ms),
            SqlParam::Int(at),
            SqlParam::Int(limit as i64),
        ];
        let rows: Vec<ClaimRow> = match conn {
            AnyConnection::Sqlite(c) => StaticSql::new(CLAIM_DUE_SQLITE, params)
                .load::<ClaimedRow>(c)?
                .into_iter()
                .map(ClaimedRow::into_tuple)
                .collect(),
            AnyConnection::Postgresql(c) => StaticSql::new(CLAIM_DUE_POSTGRES, params)
                .load::<ClaimedRow>(c)?
                .into_iter()
                .map(ClaimedRow::into_tuple)
                .collect(),
        };
        with_subscriptions(conn, rows, at)
    })
}

const CLAIM_DUE_SQLITE: &str = "\
UPDATE push_deliveries SET claimed_by = $1, claimed_until = $2
WHERE subscription_id IN (
    SELECT subscription_id FROM push_deliveries
    WHERE next_attempt_at <= $3 AND (claimed_until IS NULL OR claimed_until < $3)
    ORDER BY next_attempt_at LIMIT $4)
RETURNING subscription_id, kind, changed, revision, attempts, first_pending_at";

const CLAIM_DUE_POSTGRES: &str = "\
UPDATE push_deliveries SET claimed_by = $1, claimed_until = $2
WHERE subscription_id IN (
    SELECT subscription_id FROM push_deliveries
    WHERE next_attempt_at <= $3 AND (claimed_until IS NULL OR claimed_until < $3)
    ORDER BY next_attempt_at LIMIT $4
    FOR UPDATE SKIP LOCKED)
  AND next_attempt_at <= $3 AND (claimed_until IS NULL OR claimed_until < $3)
RETURNING subscription_id, kind, changed, revision, attempts, first_pending_at";

/// `(subscription_id, kind, changed, revision, attempts, first_pending_at)` of a claimed row.
type ClaimRow = (String, i32, String, i64, i32, i64);

#[derive(QueryableByName)]
struct ClaimedRow {
    #[diesel(sql_type = Text)]
    subscription_id: String,
    #[diesel(sql_type = Integer)]
    kind: i32,
    #[diesel(sql_type = Text)]
    changed: String,
    #[diesel(sql_type = BigInt)]
    revision: i64,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = BigInt)]
    first_pending_at: i64,
}

impl ClaimedRow {
    fn into_tuple(self) -> ClaimRow {
        (
            self.subscription_id,
            self.kind,
            self.changed,
            self.revision,
            self.attempts,
            self.first_pending_at,
        )
    }
}

/// Joins claimed rows with their subscriptions. A row whose subscription expired is destroyed
/// with it (PSUB-08); a StateChange of an unverified subscription is dropped (PSUB-06).
fn with_subscriptions(
    conn: &mut AnyConnection,
    rows: Vec<ClaimRow>,
    at: i64,
) -> Result<Vec<ClaimedDelivery>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let mut subscriptions: HashMap<String, Subscription> = push_subscriptions::table
        .filter(push_subscriptions::id.eq_any(&ids))
        .select(subscription_columns!())
        .load::<SubscriptionRow>(conn)?
        .into_iter()
        .map(|row| (row.0.clone(), subscription_from_row(row)))
        .collect();
    let mut claimed = Vec::with_capacity(rows.len());
    for (id, kind, changed, revision, attempts, first_pending_at) in rows {
        let Some(subscription) = subscriptions.remove(&id) else {
            continue;
        };
        if subscription.expires <= at / 1000 {
            destroy(conn, None, &id)?;
            continue;
        }
        if kind == KIND_STATE_CHANGE && !subscription.verified {
            // PSUB-06: never. (Unreachable through the API; kept as a guard.)
            diesel::delete(push_deliveries::table.find(&id)).execute(conn)?;
            continue;
        }
        claimed.push(ClaimedDelivery {
            subscription,
            kind,
            changed: serde_json::from_str(&changed).unwrap_or_default(),
            revision,
            attempts,
            first_pending_at,
        });
    }
    Ok(claimed)
}

/// How one POST ended, to be written to the outbox by [`settle`].
#[derive(Clone, Debug)]
pub enum Settlement {
    /// Accepted (2xx).
    Delivered(ClaimedDelivery),
    /// `404`/`410`: the subscription is destroyed (RFC 8030 §7.3).
    Gone(String),
    /// Retry at `next_attempt_at`, or drop the row when `give_up`.
    Failed {
        id: String,
        next_attempt_at: i64,
        error: String,
        give_up: bool,
    },
}

impl Settlement {
    fn subscription_id(&self) -> &str {
        match self {
            Settlement::Delivered(c) => &c.subscription.id,
            Settlement::Gone(id) => id,
            Settlement::Failed { id, .. } => id,
        }
    }
}

/// Writes the outcomes of several POSTs by `node` in one transaction. Until this commits, their
/// rows stay claimed by `node` (so no second POST starts for those subscriptions); if the
/// process dies before, the claims run out (or, on SQLite, are released at the next start) and
/// the deliveries are sent again: at least once, never lost.
pub fn settle(
    conn: &mut AnyConnection,
    node: &str,
    settlements: &mut [Settlement],
) -> Result<(), StoreError> {
    if settlements.is_empty() {
        return Ok(());
    }
    // One lock order for every writer of these rows (PostgreSQL row locks).
    settlements.sort_by(|a, b| a.subscription_id().cmp(b.subscription_id()));
    conn.transaction::<_, StoreError, _>(|conn| {
        take_write_lock(conn)?;
        let settled = delete_delivered(conn, node, settlements)?;
        let merged: Vec<&ClaimedDelivery> = settlements
            .iter()
            .filter_map(|s| match s {
                Settlement::Delivered(c) if !settled.contains(c.subscription.id.as_str()) => {
                    Some(c)
                }
                _ => None,
            })
            .collect();
        match conn {
            AnyConnection::Postgresql(pg) => complete_merged_postgres(pg, node, &merged)?,
            AnyConnection::Sqlite(_) => {
                for claimed in merged {
                    complete_merged(conn, claimed, node)?;
                }
            }
        }
        for settlement in settlements.iter() {
            match settlement {
                Settlement::Delivered(_) => {}
                Settlement::Gone(id) => {
                    destroy(conn, None, id)?;
                }
                Settlement::Failed {
                    id,
                    next_attempt_at,
                    error,
                    give_up,
                } => fail(conn, id, node, *next_attempt_at, error, *give_up)?,
            }
        }
        Ok(())
    })
}

/// The common case of a delivery accepted: nothing was merged in while its POST was in flight,
/// so its row goes. Returns the ids settled so; the others need [`complete_merged`]. On
/// PostgreSQL, first locks every row the batch touches, in id order (as `catch_up` does).
fn delete_delivered(
    conn: &mut AnyConnection,
    node: &str,
    settlements: &[Settlement],
) -> Result<HashSet<String>, StoreError> {
    let delivered: Vec<&ClaimedDelivery> = settlements
        .iter()
        .filter_map(|s| match s {
            Settlement::Delivered(c) => Some(c),
            _ => None,
        })
        .collect();
    if let AnyConnection::Postgresql(pg) = &mut *conn {
        let all: Vec<&str> = settlements.iter().map(|s| s.subscription_id()).collect();
        diesel::sql_query(
            "SELECT subscription_id FROM push_deliveries WHERE subscription_id = ANY($1) \
             ORDER BY subscription_id FOR UPDATE",
        )
        .bind::<Array<Text>, _>(all)
        .execute(pg)?;
        if delivered.is_empty() {
            return Ok(HashSet::new());
        }
        let ids: Vec<&str> = delivered
            .iter()
            .map(|c| c.subscription.id.as_str())
            .collect();
        let revisions: Vec<i64> = delivered.iter().map(|c| c.revision).collect();
        let kinds: Vec<i32> = delivered.iter().map(|c| c.kind).collect();
        let gone: Vec<IdRow> = diesel::sql_query(
            "DELETE FROM push_deliveries AS d \
             USING unnest($1::text[], $2::bigint[], $3::integer[]) AS v(id, revision, kind) \
             WHERE d.subscription_id = v.id AND d.revision = v.revision AND d.kind = v.kind \
               AND d.claimed_by = $4 \
             RETURNING d.subscription_id AS id",
        )
        .bind::<Array<Text>, _>(ids)
        .bind::<Array<BigInt>, _>(revisions)
        .bind::<Array<Integer>, _>(kinds)
        .bind::<Text, _>(node)
        .load(pg)?;
        return Ok(gone.into_iter().map(|r| r.id).collect());
    }
    let mut gone = HashSet::new();
    for claimed in delivered {
        let id = claimed.subscription.id.as_str();
        let n = diesel::delete(
            push_deliveries::table
                .filter(push_deliveries::subscription_id.eq(id))
                .filter(push_deliveries::claimed_by.eq(node))
                .filter(push_deliveries::kind.eq(claimed.kind))
                .filter(push_deliveries::revision.eq(claimed.revision)),
        )
        .execute(conn)?;
        if n > 0 {
            gone.insert(id.to_owned());
        }
    }
    Ok(gone)
}

#[derive(QueryableByName)]
struct IdRow {
    #[diesel(sql_type = Text)]
    id: String,
}

/// A delivery was accepted. States merged in while it was in flight stay queued; what was sent
/// is removed (checklist PSH-02: only what changed since the last StateChange).
pub fn complete(
    conn: &mut AnyConnection,
    claimed: &ClaimedDelivery,
    node: &str,
) -> Result<(), StoreError> {
    settle(conn, node, &mut [Settlement::Delivered(claimed.clone())])
}

/// A delivery was accepted while newer states were merged into its row (or its lease ran out):
/// what was sent is removed, the rest stays queued and the row is released.
fn complete_merged(
    conn: &mut AnyConnection,
    claimed: &ClaimedDelivery,
    node: &str,
) -> Result<(), StoreError> {
    let id = claimed.subscription.id.as_str();
    // On SQLite (write lock held) the first pass settles it; on PostgreSQL a merge may slip in
    // between read and write a few times at most. Past that the claim is left to run out and
    // the row is sent again (at least once).
    for _ in 0..8 {
        let row: Option<(i32, String, i64, Option<String>)> = push_deliveries::table
            .find(id)
            .select((
                push_deliveries::kind,
                push_deliveries::changed,
                push_deliveries::revision,
                push_deliveries::claimed_by,
            ))
            .first_row(conn)
            .optional()?;
        let Some((kind, changed, revision, claimed_by)) = row else {
            return Ok(());
        };
        let remaining = match what_remains(claimed, node, kind, &changed, claimed_by.as_deref()) {
            Remains::NotOurs => return Ok(()),
            Remains::Other => {
                release(conn, id)?;
                return Ok(());
            }
            Remains::Nothing => None,
            Remains::States(json) => Some(json),
        };
        // Guarded by the revision read: a merge committed in between (another node's
        // catch-up on PostgreSQL) makes this match nothing, and the row is read again.
        let current = push_deliveries::table
            .filter(push_deliveries::subscription_id.eq(id))
            .filter(push_deliveries::revision.eq(revision));
        let n = if let Some(remaining) = remaining {
            let at = now_ms();
            diesel::update(current)
                .set((
                    push_deliveries::changed.eq(remaining),
                    push_deliveries::attempts.eq(0),
                    push_deliveries::first_pending_at.eq(at),
                    push_deliveries::next_attempt_at.eq(at),
                    push_deliveries::claimed_by.eq(None::<String>),
                    push_deliveries::claimed_until.eq(None::<i64>),
                    push_deliveries::last_error.eq(None::<String>),
                ))
                .execute(conn)?
        } else {
            diesel::delete(current).execute(conn)?
        };
        if n > 0 {
            return Ok(());
        }
    }
    log::warn!("webhook outbox: delivery to {id} not settled (concurrent merges); resent later");
    Ok(())
}

/// What is left of a row after its delivery was accepted.
enum Remains {
    /// Our lease ran out and another node holds the row now: not ours to touch.
    NotOurs,
    /// The row became another kind meanwhile: release it, untouched.
    Other,
    /// Everything was sent: delete it.
    Nothing,
    /// States merged in meanwhile (this `changed` JSON) are still to be sent.
    States(String),
}

fn what_remains(
    claimed: &ClaimedDelivery,
    node: &str,
    kind: i32,
    changed: &str,
    claimed_by: Option<&str>,
) -> Remains {
    if claimed_by != Some(node) {
        return Remains::NotOurs;
    }
    if kind != claimed.kind {
        return Remains::Other;
    }
    let mut remaining: ChangedStates = serde_json::from_str(changed).unwrap_or_default();
    for (account, sent) in &claimed.changed {
        if let Some(types) = remaining.get_mut(account) {
            types.retain(|t, state| sent.get(t) != Some(state));
        }
    }
    remaining.retain(|_, types| !types.is_empty());
    if remaining.is_empty() {
        Remains::Nothing
    } else {
        Remains::States(serde_json::to_string(&remaining).unwrap_or_default())
    }
}

/// [`complete_merged`] for many rows on PostgreSQL, in four statements: the rows are locked by
/// [`delete_delivered`], so nothing changes them between read and write.
fn complete_merged_postgres(
    pg: &mut diesel::PgConnection,
    node: &str,
    claimed: &[&ClaimedDelivery],
) -> Result<(), StoreError> {
    if claimed.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = claimed.iter().map(|c| c.subscription.id.as_str()).collect();
    let rows: Vec<OutboxStateRow> = diesel::sql_query(
        "SELECT subscription_id AS id, kind, changed, claimed_by FROM push_deliveries \
         WHERE subscription_id = ANY($1)",
    )
    .bind::<Array<Text>, _>(ids)
    .load(pg)?;
    let by_id: HashMap<&str, &ClaimedDelivery> = claimed
        .iter()
        .map(|c| (c.subscription.id.as_str(), *c))
        .collect();
    let (mut release, mut delete, mut requeue, mut states) = (vec![], vec![], vec![], vec![]);
    for row in &rows {
        let Some(c) = by_id.get(row.id.as_str()) else {
            continue;
        };
        match what_remains(c, node, row.kind, &row.changed, row.claimed_by.as_deref()) {
            Remains::NotOurs => {}
            Remains::Other => release.push(row.id.as_str()),
            Remains::Nothing => delete.push(row.id.as_str()),
            Remains::States(json) => {
                requeue.push(row.id.as_str());
                states.push(json);
            }
        }
    }
    if !release.is_empty() {
        diesel::sql_query(
            "UPDATE push_deliveries SET claimed_by = NULL, claimed_until = NULL \
             WHERE subscription_id = ANY($1)",
        )
        .bind::<Array<Text>, _>(release)
        .execute(pg)?;
    }
    if !delete.is_empty() {
        diesel::sql_query("DELETE FROM push_deliveries WHERE subscription_id = ANY($1)")
            .bind::<Array<Text>, _>(delete)
            .execute(pg)?;
    }
    if !requeue.is_empty() {
        diesel::sql_query(
            "UPDATE push_deliveries AS d SET changed = v.changed, attempts = 0, \
             first_pending_at = $3, next_attempt_at = $3, claimed_by = NULL, \
             claimed_until = NULL, last_error = NULL \
             FROM unnest($1::text[], $2::text[]) AS v(id, changed) WHERE d.subscription_id = v.id",
        )
        .bind::<Array<Text>, _>(requeue)
        .bind::<Array<Text>, _>(states)
        .bind::<BigInt, _>(now_ms())
        .execute(pg)?;
    }
    Ok(())
}

#[derive(QueryableByName)]
struct OutboxStateRow {
    #[diesel(sql_type = Text)]
    id: String,
    #[diesel(sql_type = Integer)]
    kind: i32,
    #[diesel(sql_type = Text)]
    changed: String,
    #[diesel(sql_type = Nullable<Text>)]
    claimed_by: Option<String>,
}

fn release(conn: &mut AnyConnection, id: &str) -> Result<(), StoreError> {
    diesel::update(push_deliveries::table.find(id))
        .set((
            push_deliveries::claimed_by.eq(None::<String>),
            push_deliveries::claimed_until.eq(None::<i64>),
        ))
        .execute(conn)?;
    Ok(())
}

/// A delivery failed: retry at `next_attempt_at`, or drop the row when `give_up`.
pub fn fail(
    conn: &mut AnyConnection,
    id: &str,
    node: &str,
    next_attempt_at: i64,
    error: &str,
    give_up: bool,
) -> Result<(), StoreError> {
    let mine = push_deliveries::table
        .filter(push_deliveries::subscription_id.eq(id))
        .filter(push_deliveries::claimed_by.eq(node));
    if give_up {
        diesel::delete(mine).execute(conn)?;
        return Ok(());
    }
    diesel::update(mine)
        .set((
            push_deliveries::attempts.eq(push_deliveries::attempts + 1),
            push_deliveries::next_attempt_at.eq(next_attempt_at),
            push_deliveries::claimed_by.eq(None::<String>),
            push_deliveries::claimed_until.eq(None::<i64>),
            push_deliveries::last_error.eq(error),
        ))
        .execute(conn)?;
    Ok(())
}

/// Releases every claim: for a single-node store at start, where any claim is a dead process's.
pub fn release_all_claims(conn: &mut AnyConnection) -> Result<usize, StoreError> {
    Ok(diesel::update(push_deliveries::table)
        .set((
            push_deliveries::claimed_by.eq(None::<String>),
            push_deliveries::claimed_until.eq(None::<i64>),
        ))
        .execute(conn)?)
}

/// Destroys every subscription whose `expires` has passed (PSUB-08: nothing is sent after it,
/// and the server may destroy it). Returns how many.
pub fn destroy_expired(conn: &mut AnyConnection, now_secs: i64) -> Result<usize, StoreError> {
    let ids: Vec<String> = push_subscriptions::table
        .filter(push_subscriptions::expires.le(now_secs))
        .select(push_subscriptions::id)
        .load(conn)?;
    let mut n = 0;
    for id in ids {
        if destroy(conn, None, &id)? {
            n += 1;
        }
    }
    Ok(n)
}
