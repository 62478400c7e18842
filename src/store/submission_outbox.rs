//! The submission outbox: one row per recipient of an EmailSubmission still to be delivered
//! (issue 11). Rows are queued in the write that creates the EmailSubmission, claimed with a lease
//! by the `SubmissionSender` (so a node that dies mid-send only delays them), and settled one by
//! one: each outcome is written into the EmailSubmission's `deliveryStatus` in a change-logged
//! write, so clients are pushed like for any other change.

use std::collections::{BTreeMap, BTreeSet};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use serde_json::{Value, json};

use super::changelog::{self, ChangeOp, Committed};
use super::first_row::FirstRowDsl;
use super::schema::{email_submissions as es, submission_outbox as ob};
use super::static_sql::{SqlParam, StaticSql};
use super::{AnyConnection, StoreError, blobs};
use crate::jmap::methods::submission::{DATA_TYPE, Queued};

/// The blob reference that keeps a queued message alive until its last recipient is settled.
const BLOB_OWNER: &str = "SubmissionOutbox";

/// Queues `queued` for submission `submission_id` of `account_id`. Run it inside the write that
/// creates the EmailSubmission, so both commit or neither does.
pub fn enqueue(
    conn: &mut AnyConnection,
    account_id: &str,
    submission_id: &str,
    queued: &Queued,
    now_ms: i64,
) -> Result<(), StoreError> {
    let blob_id = blobs::put(conn, &queued.message)?;
    blobs::add_reference(conn, account_id, &blob_id, BLOB_OWNER, submission_id)?;
    for r in &queued.recipients {
        diesel::insert_into(ob::table)
            .values((
                ob::account_id.eq(account_id),
                ob::submission_id.eq(submission_id),
                ob::recipient.eq(&r.address),
                ob::local_account_id.eq(r.local_account.as_deref()),
                ob::mail_from.eq(&queued.mail_from),
                ob::blob_id.eq(&blob_id),
                // Queued for sending when it is released: a message held for days (FUTURERELEASE)
                // gets its full `give_up_secs` of retries after that, not what is left of it.
                ob::queued_at.eq(now_ms.max(queued.send_at_ms)),
                ob::next_attempt_at.eq(queued.send_at_ms),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Cancels a submission that is still pending (RFC 8621 §7.5: `undoStatus` to `canceled`): removes
/// its rows, provided none was ever attempted or is being sent. Returns false (nothing removed)
/// when it is too late. Run it inside the write that records the cancellation.
pub fn cancel(
    conn: &mut AnyConnection,
    account_id: &str,
    submission_id: &str,
) -> Result<bool, StoreError> {
    let rows = ob::table
        .filter(ob::account_id.eq(account_id))
        .filter(ob::submission_id.eq(submission_id));
    let started: i64 = rows
        .filter(ob::attempts.gt(0).or(ob::claimed_until.is_not_null()))
        .count()
        .get_result(conn)?;
    if started > 0 {
        return Ok(false);
    }
    diesel::delete(rows).execute(conn)?;
    blobs::remove_references(conn, account_id, BLOB_OWNER, submission_id)?;
    Ok(true)
}

/// A claimed recipient: everything needed to send to it.
#[derive(Clone, Debug)]
pub struct ClaimedRecipient {
    pub account_id: String,
    pub submission_id: String,
    pub recipient: String,
    pub local_account: Option<String>,
    pub mail_from: String,
    pub blob_id: String,
    pub queued_at: i64,
    pub attempts: i32,
}

#[derive(QueryableByName)]
struct ClaimedRow {
    #[diesel(sql_type = Text)]
    account_id: String,
    #[diesel(sql_type = Text)]
    submission_id: String,
    #[diesel(sql_type = Text)]
    recipient: String,
    #[diesel(sql_type = Nullable<Text>)]
    local_account_id: Option<String>,
    #[diesel(sql_type = Text)]
    mail_from: String,
    #[diesel(sql_type = Text)]
    blob_id: String,
    #[diesel(sql_type = BigInt)]
    queued_at: i64,
    #[diesel(sql_type = Integer)]
    attempts: i32,
}

// `CAST`: SQLite re-prepares a statement whose LIMIT is a bare parameter every time the
// parameter is bound (it may plan by the value), which this one is at every pass.
const CLAIM_DUE_SQLITE: &str = "\
UPDATE submission_outbox SET claimed_by = $1, claimed_until = $2
WHERE (account_id, submission_id, recipient) IN (
    SELECT account_id, submission_id, recipient FROM submission_outbox
    WHERE next_attempt_at <= $3 AND (claimed_until IS NULL OR claimed_until < $3)
    ORDER BY next_attempt_at LIMIT CAST($4 AS INTEGER))
RETURNING account_id, submission_id, recipient, local_account_id, mail_from, blob_id, queued_at,
    attempts";

// Rows another node is claiming at this moment are skipped, not waited for; a row whose claim
// committed meanwhile fails the re-checked condition, so no row goes to two nodes.
const CLAIM_DUE_POSTGRES: &str = "\
UPDATE submission_outbox SET claimed_by = $1, claimed_until = $2
WHERE (account_id, submission_id, recipient) IN (
    SELECT account_id, submission_id, recipient FROM submission_outbox
    WHERE next_attempt_at <= $3 AND (claimed_until IS NULL OR claimed_until < $3)
    ORDER BY next_attempt_at LIMIT $4
    FOR UPDATE SKIP LOCKED)
  AND next_attempt_at <= $3 AND (claimed_until IS NULL OR claimed_until < $3)
RETURNING account_id, submission_id, recipient, local_account_id, mail_from, blob_id, queued_at,
    attempts";

/// Claims up to `limit` due recipients (oldest due first) for `node` until `now_ms + lease_ms`,
/// and moves the `undoStatus` of their submissions from `pending` to `final` (from now on the
/// message may be out: RFC 8621 §7). Returns the claims and what committed.
pub fn claim_due(
    conn: &mut AnyConnection,
    node: &str,
    now_ms: i64,
    lease_ms: i64,
    limit: usize,
) -> Result<(Vec<ClaimedRecipient>, Vec<Committed>), StoreError> {
    if limit == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    let params = vec![
        SqlParam::Text(node.to_owned()),
        SqlParam::Int(now_ms + lease_ms),
        SqlParam::Int(now_ms),
        SqlParam::Int(limit as i64),
    ];
    let rows: Vec<ClaimedRow> = conn.transaction::<_, StoreError, _>(|conn| {
        Ok(match conn {
            AnyConnection::Sqlite(c) => StaticSql::new(CLAIM_DUE_SQLITE, params).load(c)?,
            AnyConnection::Postgresql(c) => StaticSql::new(CLAIM_DUE_POSTGRES, params).load(c)?,
        })
    })?;
    let claimed: Vec<ClaimedRecipient> = rows
        .into_iter()
        .map(|r| ClaimedRecipient {
            account_id: r.account_id,
            submission_id: r.submission_id,
            recipient: r.recipient,
            local_account: r.local_account_id,
            mail_from: r.mail_from,
            blob_id: r.blob_id,
            queued_at: r.queued_at,
            attempts: r.attempts,
        })
        .collect();
    let mut pending: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for c in &claimed {
        pending
            .entry(c.account_id.as_str())
            .or_default()
            .push(c.submission_id.as_str());
    }
    let mut committed = Vec::new();
    for (account_id, ids) in pending {
        let ((), c) = changelog::write(conn, account_id, |txn| {
            let still_pending: Vec<String> = es::table
                .filter(es::account_id.eq(account_id))
                .filter(es::id.eq_any(&ids))
                .filter(es::undo_status.eq("pending"))
                .select(es::id)
                .load(txn.conn())?;
            for id in still_pending {
                diesel::update(es::table.find((account_id, &id)))
                    .set(es::undo_status.eq("final"))
                    .execute(txn.conn())?;
                txn.record(DATA_TYPE, &id, ChangeOp::Updated);
            }
            Ok(())
        })?;
        committed.extend(c);
    }
    Ok((claimed, committed))
}

/// Frees every claim: on a single-node store (SQLite) at start, any claim left is a dead
/// process's, whose attempts are then made again (at least once, never dropped).
pub fn release_all_claims(conn: &mut AnyConnection) -> Result<usize, StoreError> {
    Ok(
        diesel::update(ob::table.filter(ob::claimed_until.is_not_null()))
            .set((
                ob::claimed_by.eq(None::<String>),
                ob::claimed_until.eq(None::<i64>),
            ))
            .execute(conn)?,
    )
}

/// When the outbox next needs looking at: the earliest due row or lease end, if any row exists.
pub fn next_wake(conn: &mut AnyConnection) -> Result<Option<i64>, StoreError> {
    let unclaimed: Option<i64> = ob::table
        .filter(ob::claimed_until.is_null())
        .select(diesel::dsl::min(ob::next_attempt_at))
        .first_row(conn)?;
    let lease: Option<i64> = ob::table
        .select(diesel::dsl::min(ob::claimed_until))
        .first_row(conn)?;
    Ok(match (unclaimed, lease) {
        (Some(a), Some(b)) => Some(a.min(b + 1)),
        (a, b) => a.or(b.map(|b| b + 1)),
    })
}

/// The message of a claimed recipient.
pub fn message(conn: &mut AnyConnection, blob_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
    blobs::get(conn, blob_id)
}

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Taken by the relay or delivered locally, with the reply.
    Delivered(String),
    /// Refused for good (`gave_up`: or still failing at the give-up age): the reply, or why.
    Failed { reply: String, gave_up: bool },
    /// A temporary failure: try again at this time (ms since the epoch).
    Deferred { reply: String, retry_at: i64 },
}

/// A recipient that failed for good: the sender is told with a delivery status notification.
#[derive(Clone, Debug)]
pub struct Bounce {
    pub account_id: String,
    pub submission_id: String,
    /// The envelope sender, who is told.
    pub mail_from: String,
    pub recipient: String,
    pub reply: String,
    pub gave_up: bool,
    /// The message as queued, read before its blob may go.
    pub message: Vec<u8>,
}

/// Records the outcome of each attempt: a delivered or failed recipient leaves the outbox, a
/// deferred one waits for its retry; each submission's `deliveryStatus` follows in one
/// change-logged write per account. Returns what committed, the bounces to report, and the
/// attempts of the accounts whose write failed, to settle again (their rows stay claimed; lost,
/// they would be sent again when the lease ran out).
///
/// Per account, one transaction: first the change-logged status write (so the account's lock is
/// taken first, in the order every writer takes it), as a savepoint that rolls itself back when
/// no status moved (a retry with the same reply), then the outbox rows, which are kept either way.
pub fn settle(
    conn: &mut AnyConnection,
    attempts: Vec<(ClaimedRecipient, Outcome)>,
) -> (
    Vec<Committed>,
    Vec<Bounce>,
    Vec<(ClaimedRecipient, Outcome)>,
) {
    let mut by_account: BTreeMap<String, Vec<(ClaimedRecipient, Outcome)>> = BTreeMap::new();
    for a in attempts {
        by_account
            .entry(a.0.account_id.clone())
            .or_default()
            .push(a);
    }
    let mut committed = Vec::new();
    let mut bounces = Vec::new();
    let mut unsettled = Vec::new();
    for (account_id, attempts) in by_account {
        let settled = conn.transaction::<_, StoreError, _>(|conn| {
            let ((), c) = changelog::write(conn, &account_id, |txn| {
                record_statuses(txn, &account_id, &attempts)
            })?;
            let bounces = settle_rows(conn, &account_id, &attempts)?;
            Ok((bounces, c))
        });
        match settled {
            Ok((account_bounces, c)) => {
                bounces.extend(account_bounces);
                committed.extend(c);
            }
            Err(e) => {
                log::warn!("submission outbox: settling for account {account_id} failed: {e}");
                unsettled.extend(attempts);
            }
        }
    }
    (committed, bounces, unsettled)
}

/// Writes each attempt's outcome into its submission's `deliveryStatus` (RFC 8621 §7 SUB-06).
fn record_statuses(
    txn: &mut changelog::WriteTxn<'_>,
    account_id: &str,
    attempts: &[(ClaimedRecipient, Outcome)],
) -> Result<(), StoreError> {
    let mut statuses: BTreeMap<&str, Vec<(&str, Value)>> = BTreeMap::new();
    for (row, outcome) in attempts {
        let (reply, delivered) = match outcome {
            Outcome::Delivered(reply) => (reply, "yes"),
            Outcome::Failed { reply, .. } => (reply, "no"),
            Outcome::Deferred { reply, .. } => (reply, "queued"),
        };
        statuses.entry(&row.submission_id).or_default().push((
            &row.recipient,
            json!({"smtpReply": reply, "delivered": delivered, "displayed": "unknown"}),
        ));
    }
    for (submission_id, updates) in statuses {
        let current: Option<String> = es::table
            .find((account_id, submission_id))
            .select(es::delivery_status)
            .first_row(txn.conn())
            .optional()?;
        // The client may have destroyed the record; delivery goes on regardless (SUB-11).
        let Some(current) = current else {
            continue;
        };
        let mut status: Value = serde_json::from_str(&current).unwrap_or(json!({}));
        for (recipient, s) in updates {
            status[recipient] = s;
        }
        let status = status.to_string();
        if status != current {
            diesel::update(es::table.find((account_id, submission_id)))
                .set(es::delivery_status.eq(status))
                .execute(txn.conn())?;
            txn.record(DATA_TYPE, submission_id, ChangeOp::Updated);
        }
    }
    Ok(())
}

/// Removes delivered and failed recipients from the outbox and schedules deferred ones; frees a
/// submission's message once its last recipient is settled. Returns the bounces to send.
fn settle_rows(
    conn: &mut AnyConnection,
    account_id: &str,
    attempts: &[(ClaimedRecipient, Outcome)],
) -> Result<Vec<Bounce>, StoreError> {
    let mut bounces = Vec::new();
    let mut submissions: BTreeSet<&str> = BTreeSet::new();
    for (row, outcome) in attempts {
        submissions.insert(&row.submission_id);
        let key = ob::table.find((&row.account_id, &row.submission_id, &row.recipient));
        match outcome {
            Outcome::Delivered(_) => {
                diesel::delete(key).execute(conn)?;
            }
            Outcome::Failed { reply, gave_up } => {
                diesel::delete(key).execute(conn)?;
                bounces.push(Bounce {
                    account_id: row.account_id.clone(),
                    submission_id: row.submission_id.clone(),
                    mail_from: row.mail_from.clone(),
                    recipient: row.recipient.clone(),
                    reply: reply.clone(),
                    gave_up: *gave_up,
                    message: blobs::get(conn, &row.blob_id)?.unwrap_or_default(),
                });
            }
            Outcome::Deferred { reply, retry_at } => {
                diesel::update(key)
                    .set((
                        ob::attempts.eq(row.attempts + 1),
                        ob::next_attempt_at.eq(retry_at),
                        ob::last_reply.eq(reply),
                        ob::claimed_by.eq(None::<String>),
                        ob::claimed_until.eq(None::<i64>),
                    ))
                    .execute(conn)?;
            }
        }
    }
    for submission_id in submissions {
        let left: i64 = ob::table
            .filter(ob::account_id.eq(account_id))
            .filter(ob::submission_id.eq(submission_id))
            .count()
            .get_result(conn)?;
        if left == 0 {
            blobs::remove_references(conn, account_id, BLOB_OWNER, submission_id)?;
        }
    }
    Ok(bounces)
}

/// Outbox rows, for the metrics and tests.
pub fn depth(conn: &mut AnyConnection) -> Result<i64, StoreError> {
    Ok(ob::table.count().get_result(conn)?)
}
