//! PushSubscriptions and the webhook outbox (`push_deliveries`) in the database.
//!
//! The outbox holds at most one pending delivery per subscription: a PushVerification, or a
//! StateChange into which newer states are merged. A row is claimed with a lease
//! (`claimed_by`, `claimed_until`) while its POST is in flight, so at most one POST per
//! subscription runs, and a node that dies mid-POST only delays the row until the lease runs out.
//! The claim is one conditional `UPDATE`: on PostgreSQL a second node's update waits for the
//! first one's row lock and then re-checks its `WHERE` against the claimed row, so it claims
//! nothing; no `SELECT … FOR UPDATE SKIP LOCKED` is needed (`tests/cluster.rs` races eight
//! claimers). The lease is `push.claim_lease_secs`.

use super::first_row::FirstRowDsl;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::LazyLock;

use diesel::prelude::*;

use super::schema::{
    account_access, accounts, change_log, push_creation_windows, push_cursors, push_deliveries,
    push_subscriptions,
};
use super::{AnyConnection, StoreContext, StoreError, changelog, new_id, now, random_secret};
use crate::jmap::error::MethodError;
use crate::jmap::push_subscription::{
    KNOWN_TYPES, NewSubscription, PushSubscriptionStore, Subscription, SubscriptionChange,
};
use crate::push::webpush::UaKeys;

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
        let readers: Vec<String> = account_access::table
            .filter(account_access::account_id.eq(account_id))
            .select(account_access::user_id)
            .load(conn)?;
        if readers.is_empty() {
            return Ok(0);
        }
        let subs: Vec<(String, Option<String>)> = push_subscriptions::table
            .filter(push_subscriptions::user_id.eq_any(&readers))
            .filter(push_subscriptions::verified.eq(true))
            .filter(push_subscriptions::expires.gt(at / 1000))
            .select((push_subscriptions::id, push_subscriptions::types))
            .load(conn)?;
        let mut states_since: HashMap<i64, BTreeMap<String, i64>> = HashMap::new();
        let mut touched = 0;
        for (sub_id, sub_types) in subs {
            let cursor: Option<i64> = push_cursors::table
                .find((&sub_id, account_id))
                .select(push_cursors::seq)
                .first_row(conn)
                .optional()?;
            let from = match (cursor, missing) {
                (Some(c), _) => c,
                (None, MissingCursor::NewestWrite) => target - 1,
                (None, MissingCursor::Skip) => target,
            };
            if from < target {
                let states = match states_since.get(&from) {
                    Some(s) => s.clone(),
                    None => {
                        let s = changed_states(conn, account_id, from, target, floor)?;
                        states_since.insert(from, s.clone());
                        s
                    }
                };
                let filter: Option<Vec<String>> = sub_types
                    .as_deref()
                    .and_then(|t| serde_json::from_str(t).ok());
                let wanted: BTreeMap<String, i64> = states
                    .into_iter()
                    .filter(|(t, _)| filter.as_ref().is_none_or(|f| f.contains(t)))
                    .collect();
                if !wanted.is_empty() {
                    merge_into_outbox(conn, &sub_id, account_id, &wanted, at)?;
                    touched += 1;
                }
            }
            if cursor.is_none_or(|c| c < target) {
                set_cursor(conn, &sub_id, account_id, target, cursor.is_some())?;
            }
        }
        Ok(touched)
    })
}

/// Starts a transaction's writing before its reads. SQLite answers "database is locked" at once,
/// without waiting, to a transaction that read and then wants to write while another writer is
/// active (waiting could deadlock); a transaction that writes first waits its turn instead
/// (`busy_timeout`), as `changelog::write` does. This write matches no row.
fn take_write_lock(conn: &mut AnyConnection) -> Result<(), StoreError> {
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

/// Merges `states` of one account into a subscription's pending StateChange, creating it if
/// needed. Publications may arrive out of order: the newest state of a type wins.
fn merge_into_outbox(
    conn: &mut AnyConnection,
    sub_id: &str,
    account_id: &str,
    states: &BTreeMap<String, i64>,
    at: i64,
) -> Result<(), StoreError> {
    let existing: Option<(i32, String)> = push_deliveries::table
        .find(sub_id)
        .select((push_deliveries::kind, push_deliveries::changed))
        .first_row(conn)
        .optional()?;
    let mut changed: ChangedStates = match &existing {
        Some((KIND_STATE_CHANGE, json)) => serde_json::from_str(json).unwrap_or_default(),
        _ => ChangedStates::new(),
    };
    let entry = changed.entry(account_id.to_owned()).or_default();
    for (t, seq) in states {
        let state = entry.entry(t.clone()).or_insert(*seq);
        *state = (*state).max(*seq);
    }
    let json = serde_json::to_string(&changed).unwrap_or_default();
    match existing {
        Some((KIND_STATE_CHANGE, _)) => {
            diesel::update(push_deliveries::table.find(sub_id))
                .set((
                    push_deliveries::changed.eq(&json),
                    push_deliveries::revision.eq(push_deliveries::revision + 1),
                ))
                .execute(conn)?;
        }
        other => {
            if other.is_some() {
                // A stale verification retry of an already verified subscription.
                diesel::delete(push_deliveries::table.find(sub_id)).execute(conn)?;
            }
            diesel::insert_into(push_deliveries::table)
                .values((
                    push_deliveries::subscription_id.eq(sub_id),
                    push_deliveries::kind.eq(KIND_STATE_CHANGE),
                    push_deliveries::changed.eq(&json),
                    push_deliveries::revision.eq(0),
                    push_deliveries::attempts.eq(0),
                    push_deliveries::first_pending_at.eq(at),
                    push_deliveries::next_attempt_at.eq(at),
                ))
                .execute(conn)?;
        }
    }
    Ok(())
}

/// Subscription ids whose delivery is due and not claimed (or whose claim ran out).
pub fn due(conn: &mut AnyConnection, at: i64, limit: i64) -> Result<Vec<String>, StoreError> {
    Ok(push_deliveries::table
        .filter(push_deliveries::next_attempt_at.le(at))
        .filter(
            push_deliveries::claimed_until
                .is_null()
                .or(push_deliveries::claimed_until.lt(at)),
        )
        .order(push_deliveries::next_attempt_at.asc())
        .select(push_deliveries::subscription_id)
        .limit(limit)
        .load(conn)?)
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

/// Claims one due delivery for `node` until `at + lease_ms`. `None` if another claim won, or
/// the row or subscription is gone; an expired subscription is destroyed here (PSUB-08).
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
        let (kind, changed, revision, attempts, first_pending_at): (i32, String, i64, i32, i64) =
            push_deliveries::table
                .find(subscription_id)
                .select((
                    push_deliveries::kind,
                    push_deliveries::changed,
                    push_deliveries::revision,
                    push_deliveries::attempts,
                    push_deliveries::first_pending_at,
                ))
                .first_row(conn)?;
        let Some(subscription) = find(conn, subscription_id)? else {
            return Ok(None);
        };
        if subscription.expires <= at / 1000 {
            destroy(conn, None, subscription_id)?;
            return Ok(None);
        }
        if kind == KIND_STATE_CHANGE && !subscription.verified {
            // PSUB-06: never. (Unreachable through the API; kept as a guard.)
            diesel::delete(push_deliveries::table.find(subscription_id)).execute(conn)?;
            return Ok(None);
        }
        Ok(Some(ClaimedDelivery {
            subscription,
            kind,
            changed: serde_json::from_str(&changed).unwrap_or_default(),
            revision,
            attempts,
            first_pending_at,
        }))
    })
}

/// A delivery was accepted. States merged in while it was in flight stay queued; what was sent
/// is removed (checklist PSH-02: only what changed since the last StateChange).
pub fn complete(
    conn: &mut AnyConnection,
    claimed: &ClaimedDelivery,
    node: &str,
) -> Result<(), StoreError> {
    let id = claimed.subscription.id.as_str();
    conn.transaction::<_, StoreError, _>(|conn| {
        take_write_lock(conn)?;
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
        if claimed_by.as_deref() != Some(node) {
            return Ok(()); // our lease ran out and someone else owns the row now
        }
        if revision == claimed.revision || kind != claimed.kind {
            if kind == claimed.kind {
                diesel::delete(push_deliveries::table.find(id)).execute(conn)?;
            } else {
                release(conn, id)?;
            }
            return Ok(());
        }
        let mut remaining: ChangedStates = serde_json::from_str(&changed).unwrap_or_default();
        for (account, sent) in &claimed.changed {
            if let Some(types) = remaining.get_mut(account) {
                types.retain(|t, state| sent.get(t) != Some(state));
            }
        }
        remaining.retain(|_, types| !types.is_empty());
        if remaining.is_empty() {
            diesel::delete(push_deliveries::table.find(id)).execute(conn)?;
        } else {
            let at = now_ms();
            diesel::update(push_deliveries::table.find(id))
                .set((
                    push_deliveries::changed
                        .eq(serde_json::to_string(&remaining).unwrap_or_default()),
                    push_deliveries::attempts.eq(0),
                    push_deliveries::first_pending_at.eq(at),
                    push_deliveries::next_attempt_at.eq(at),
                    push_deliveries::claimed_by.eq(None::<String>),
                    push_deliveries::claimed_until.eq(None::<i64>),
                    push_deliveries::last_error.eq(None::<String>),
                ))
                .execute(conn)?;
        }
        Ok(())
    })
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
