//! Claiming due deliveries with a lease, and settling them once their POSTs ended.

use std::collections::{HashMap, HashSet};

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Nullable, Text};

use super::{ChangedStates, KIND_STATE_CHANGE, take_write_lock};
use crate::jmap::methods::push_subscription::Subscription;
use crate::store::first_row::FirstRowDsl;
use crate::store::now_ms;
use crate::store::push_subscription::{
    SubscriptionRow, destroy, subscription_columns, subscription_from_row,
};
use crate::store::schema::{push_deliveries, push_subscriptions};
use crate::store::static_sql::{SqlParam, StaticSql};
use crate::store::{AnyConnection, StoreError};

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

// `CAST`: SQLite re-prepares a statement whose LIMIT is a bare parameter every time the
// parameter is bound (it may plan by the value), which this one is at every pass.
const CLAIM_DUE_SQLITE: &str = "\
UPDATE push_deliveries SET claimed_by = $1, claimed_until = $2
WHERE subscription_id IN (
    SELECT subscription_id FROM push_deliveries
    WHERE next_attempt_at <= $3 AND (claimed_until IS NULL OR claimed_until < $3)
    ORDER BY next_attempt_at LIMIT CAST($4 AS INTEGER))
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
