//! EmailSubmission (RFC 8621 §7): get, changes, query, queryChanges, set.
//!
//! A created submission is queued, not sent: the EmailSubmission and one outbox row per
//! recipient are recorded in one write, and the request returns at once with every recipient
//! `queued` and `undoStatus` `pending` (issue 11). The outbox sender (`crate::outbound`) then
//! delivers, retries and reports each outcome as a change of the EmailSubmission. Until it starts
//! sending (at once, or at the time `HOLDFOR`/`HOLDUNTIL` asked for, RFC 4865), a submission can be
//! canceled by setting `undoStatus` to `canceled`. A recipient address that names a local user as
//! LMTP would (the user name, `<name>@<submission.domain>`, an alias, a subaddress, a catch-all:
//! `store::addresses`) gets the message in their inbox as new mail;
//! every other recipient goes to the SMTP relay (`[submission] relay`). Without a relay, any
//! non-local recipient makes the whole submission fail with `invalidRecipients`.

pub mod envelope;
pub mod set;

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use crate::jmap::dispatch::Call;
use crate::jmap::error::MethodError;
use crate::jmap::methods::identity::{Identity, default_identity};
use crate::jmap::standard::{self, Comparator, DataType, Listed, Queried};

pub use set::set;

/// The push and state type name.
pub const DATA_TYPE: &str = "EmailSubmission";

/// Every EmailSubmission property (SUB-01).
pub const PROPERTIES: &[&str] = &[
    "id",
    "identityId",
    "emailId",
    "threadId",
    "envelope",
    "sendAt",
    "undoStatus",
    "deliveryStatus",
    "dsnBlobIds",
    "mdnBlobIds",
];

/// Most recipients of one submission (advertised through `tooManyRecipients`).
pub const MAX_RECIPIENTS: usize = 100;

/// A stored submission.
#[derive(Clone, Debug, PartialEq)]
pub struct Submission {
    pub id: String,
    pub identity_id: String,
    pub email_id: String,
    pub thread_id: String,
    /// `{mailFrom, rcptTo}` (SUB-02).
    pub envelope: Value,
    /// Seconds since the epoch.
    pub send_at: i64,
    pub undo_status: String,
    /// `String[DeliveryStatus]` (SUB-06).
    pub delivery_status: Value,
}

/// What the EmailSubmission methods need from the store, besides Email and Identity.
pub trait SubmissionStore {
    /// Every submission of the account and the EmailSubmission state.
    fn submission_list(
        &mut self,
        account_id: &str,
    ) -> Result<(String, Vec<Submission>), MethodError>;
    /// The personal account of the local user an address names, if any (see the module
    /// documentation).
    fn local_recipient(&mut self, email: &str, domain: &str)
    -> Result<Option<String>, MethodError>;
    /// In one write: records new submissions with their outbox rows, cancels pending ones and
    /// destroys records. Returns the state before and after, and the submissions that could not
    /// be canceled because sending had begun.
    fn submission_write(
        &mut self,
        account_id: &str,
        write: SubmissionWrite<'_>,
    ) -> Result<(String, String, Vec<String>), MethodError>;
}

/// What one EmailSubmission/set writes.
#[derive(Default)]
pub struct SubmissionWrite<'a> {
    /// New submissions and what each queues.
    pub insert: &'a [(Submission, Queued)],
    /// Pending submissions to cancel (`undoStatus` → `canceled`).
    pub cancel: &'a [String],
    pub destroy: &'a [String],
}

/// One recipient to queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedRecipient {
    pub address: String,
    /// The local account that receives it; `None`: through the relay.
    pub local_account: Option<String>,
}

/// What one EmailSubmission puts in the outbox.
#[derive(Clone, Debug)]
pub struct Queued {
    pub mail_from: String,
    pub recipients: Vec<QueuedRecipient>,
    /// The message as sent (Bcc stripped).
    pub message: Vec<u8>,
    /// Not before this time (ms since the epoch): `HOLDFOR`/`HOLDUNTIL`, or now.
    pub send_at_ms: i64,
}

/// A UTCDate from seconds since the epoch.
pub fn utc_date(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn parse_utc_date(s: &str) -> Option<i64> {
    crate::jmap::methods::vacation::is_utc_date(s)
        .then(|| chrono::DateTime::parse_from_rfc3339(s).ok())
        .flatten()
        .map(|d| d.timestamp())
}

/// The full JSON form.
pub fn to_json(s: &Submission) -> Map<String, Value> {
    match json!({
        "id": s.id,
        "identityId": s.identity_id,
        "emailId": s.email_id,
        "threadId": s.thread_id,
        "envelope": s.envelope,
        "sendAt": utc_date(s.send_at),
        "undoStatus": s.undo_status,
        "deliveryStatus": s.delivery_status,
        "dsnBlobIds": [],
        "mdnBlobIds": [],
    }) {
        Value::Object(o) => o,
        _ => Map::new(),
    }
}

pub(super) fn default_for(call: &Call<'_>) -> Identity {
    default_identity(&call.principal.username, &call.server.mail_domain)
}

impl DataType for Submission {
    const NAME: &'static str = DATA_TYPE;
}

/// `EmailSubmission/get` (SUB-12) over the account's submissions.
impl<C: SubmissionStore> Listed<C> for Submission {
    const PROPERTIES: &'static [&'static str] = PROPERTIES;
    /// The EmailSubmission state and every submission.
    type Snapshot = (String, Vec<Submission>);

    fn load(ctx: &mut C, call: &Call<'_>) -> Result<Self::Snapshot, MethodError> {
        ctx.submission_list(call.account_id())
    }

    fn state(snapshot: &Self::Snapshot) -> &str {
        &snapshot.0
    }

    fn records(snapshot: &Self::Snapshot) -> &[Submission] {
        &snapshot.1
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn to_json(&self, _: &Self::Snapshot, _: &Call<'_>) -> Map<String, Value> {
        to_json(self)
    }
}

/// `EmailSubmission/query` and `/queryChanges` (SUB-12): no arguments of its own.
impl<C: SubmissionStore> Queried<C> for Submission {
    type QueryArgs = ();

    fn query_args(_: &mut Call<'_>) -> Result<(), MethodError> {
        Ok(())
    }

    fn query(
        snapshot: &Self::Snapshot,
        filter: Option<&Value>,
        sort: &[Comparator],
        _: &(),
    ) -> Result<Vec<String>, MethodError> {
        run_query(&snapshot.1, filter, sort)
    }
}

fn id_list(f: &Map<String, Value>, key: &str) -> Result<Option<HashSet<String>>, MethodError> {
    match f.get(key) {
        None => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| MethodError::InvalidArguments(format!("{key} is a list of ids")))
            })
            .collect::<Result<HashSet<_>, _>>()
            .map(Some),
        Some(_) => Err(MethodError::InvalidArguments(format!(
            "{key} is a list of ids"
        ))),
    }
}

/// SUB-12 FilterCondition.
fn matches(filter: &Value, s: &Submission) -> Result<bool, MethodError> {
    standard::filter_matches(filter, &|f| condition_matches(f, s))
}

fn condition_matches(f: &Map<String, Value>, s: &Submission) -> Result<bool, MethodError> {
    for key in f.keys() {
        let ok = match key.as_str() {
            "identityIds" => id_list(f, key)?.is_none_or(|ids| ids.contains(&s.identity_id)),
            "emailIds" => id_list(f, key)?.is_none_or(|ids| ids.contains(&s.email_id)),
            "threadIds" => id_list(f, key)?.is_none_or(|ids| ids.contains(&s.thread_id)),
            "undoStatus" => match f[key].as_str() {
                Some(u) => s.undo_status == u,
                None => {
                    return Err(MethodError::InvalidArguments(
                        "undoStatus is a string".into(),
                    ));
                }
            },
            "before" | "after" => {
                let at = f[key]
                    .as_str()
                    .and_then(parse_utc_date)
                    .ok_or_else(|| MethodError::InvalidArguments(format!("{key} is a UTCDate")))?;
                if key == "before" {
                    s.send_at < at
                } else {
                    s.send_at >= at
                }
            }
            _ => {
                return Err(MethodError::UnsupportedFilter(format!(
                    "EmailSubmission cannot be filtered by {key:?}"
                )));
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn run_query(
    all: &[Submission],
    filter: Option<&Value>,
    sort: &[Comparator],
) -> Result<Vec<String>, MethodError> {
    for c in sort {
        // SUB-12: the RFC names the sort `sentAt`; the property is `sendAt`. Both are accepted.
        if !matches!(
            c.property.as_str(),
            "emailId" | "threadId" | "sentAt" | "sendAt"
        ) {
            return Err(MethodError::UnsupportedSort(format!(
                "EmailSubmission cannot be sorted by {:?}",
                c.property
            )));
        }
    }
    let mut hits: Vec<&Submission> = Vec::new();
    for s in all {
        if filter.map(|f| matches(f, s)).transpose()?.unwrap_or(true) {
            hits.push(s);
        }
    }
    hits.sort_by(|a, b| {
        for c in sort {
            let ord = match c.property.as_str() {
                "emailId" => a.email_id.cmp(&b.email_id),
                "threadId" => a.thread_id.cmp(&b.thread_id),
                _ => a.send_at.cmp(&b.send_at),
            };
            let ord = if c.is_ascending { ord } else { ord.reverse() };
            if ord.is_ne() {
                return ord;
            }
        }
        a.send_at.cmp(&b.send_at).then_with(|| a.id.cmp(&b.id))
    });
    Ok(hits.into_iter().map(|s| s.id.clone()).collect())
}

// ---------------------------------------------------------------------------------------------
// set

/// The addresses of one address header, in order.
/// A fresh submission id (`s` + 15 of `[a-z0-9]`).
pub(super) fn new_submission_id() -> String {
    crate::jmap::args::new_id('s')
}
