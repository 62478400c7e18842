//! EmailSubmission (RFC 8621 §7): get, changes, query, queryChanges, set.
//!
//! A created submission is queued, not sent: the EmailSubmission and one outbox row per
//! recipient are recorded in one write, and the request returns at once with every recipient
//! `queued` and `undoStatus` `pending` (issue 11). The outbox sender (`crate::outbound`) then
//! delivers, retries and reports each outcome as a change of the EmailSubmission. Until it starts
//! sending (at once, or at the time `HOLDFOR`/`HOLDUNTIL` asked for, RFC 4865), a submission can be
//! canceled by setting `undoStatus` to `canceled`. A recipient address that names a local user (the
//! user name itself, or `<name>@<submission.domain>`) gets the message in their inbox as new mail;
//! every other recipient goes to the SMTP relay (`[submission] relay`). Without a relay, any
//! non-local recipient makes the whole submission fail with `invalidRecipients`.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};

use super::changes::ChangesPage;
use super::dispatch::Call;
use super::email::{self, EmailStore};
use super::error::MethodError;
use super::identity::{Identity, IdentityStore, default_identity, may_send_from};
use super::request::Invocation;
use super::standard::{self, Comparator, SetError, SetErrorType, SetResponse};
use super::submission_envelope::{addresses, envelope_json, read_envelope, send_at, strip_bcc};

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
    /// One page of EmailSubmission changes since `since`.
    fn submission_changes(
        &mut self,
        account_id: &str,
        since: i64,
        max_changes: usize,
    ) -> Result<ChangesPage, MethodError>;
    /// Every submission id touched since `since`.
    fn submission_touched_since(
        &mut self,
        account_id: &str,
        since: i64,
    ) -> Result<Vec<String>, MethodError>;
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
    super::vacation::is_utc_date(s)
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

fn default_for(call: &Call<'_>) -> Identity {
    default_identity(&call.principal.username, &call.server.mail_domain)
}

/// `EmailSubmission/get` (SUB-12).
pub fn get<C: SubmissionStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Result<Map<String, Value>, MethodError> {
    let req = standard::parse_get(call, PROPERTIES)?;
    std::mem::take(&mut call.args).finish()?;
    let account_id = call.account_id().to_owned();
    let (state, all) = ctx.submission_list(&account_id)?;
    let render =
        |s: &Submission| Value::Object(standard::select(to_json(s), req.properties.as_deref()));
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    match &req.ids {
        None => list.extend(all.iter().map(render)),
        Some(ids) => {
            for id in ids {
                match all.iter().find(|s| &s.id == id) {
                    Some(s) => list.push(render(s)),
                    None => not_found.push(id.clone()),
                }
            }
        }
    }
    Ok(standard::get_response(&account_id, &state, list, not_found))
}

/// `EmailSubmission/changes` (SUB-12).
pub fn changes<C: SubmissionStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Result<Map<String, Value>, MethodError> {
    let req = standard::parse_changes(call, call.server.limits.max_objects_in_get as usize)?;
    std::mem::take(&mut call.args).finish()?;
    let since = req.since_seq.ok_or_else(|| {
        MethodError::CannotCalculateChanges(format!("unknown state {:?}", req.since_state))
    })?;
    let page = ctx.submission_changes(call.account_id(), since, req.max_changes)?;
    Ok(standard::changes_response(
        call.account_id(),
        &req.since_state,
        &page,
    ))
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
    let Value::Object(f) = filter else {
        return Err(MethodError::InvalidArguments(
            "a filter is an object".into(),
        ));
    };
    if let Some(op) = f.get("operator") {
        let conditions = f
            .get("conditions")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                MethodError::InvalidArguments("a FilterOperator needs conditions".into())
            })?;
        let results = conditions
            .iter()
            .map(|c| matches(c, s))
            .collect::<Result<Vec<_>, _>>()?;
        return match op.as_str() {
            Some("AND") => Ok(results.iter().all(|r| *r)),
            Some("OR") => Ok(results.iter().any(|r| *r)),
            Some("NOT") => Ok(!results.iter().any(|r| *r)),
            _ => Err(MethodError::InvalidArguments(format!(
                "unknown operator {op}"
            ))),
        };
    }
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

/// `EmailSubmission/query` (SUB-12).
pub fn query<C: SubmissionStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Result<Map<String, Value>, MethodError> {
    let q = standard::parse_query(call)?;
    std::mem::take(&mut call.args).finish()?;
    let (state, all) = ctx.submission_list(call.account_id())?;
    let ids = run_query(&all, q.filter.as_ref(), &q.sort)?;
    let (position, window, limit) =
        standard::window(&ids, &q, call.server.limits.max_objects_in_get.max(1000))?;
    let total = q.calculate_total.then_some(ids.len());
    Ok(standard::query_response(
        call.account_id(),
        &state,
        true,
        position,
        window,
        total,
        limit,
    ))
}

/// `EmailSubmission/queryChanges` (SUB-12).
pub fn query_changes<C: SubmissionStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Result<Map<String, Value>, MethodError> {
    let q = standard::parse_query_changes(call)?;
    std::mem::take(&mut call.args).finish()?;
    let since = q.since_seq.ok_or_else(|| {
        MethodError::CannotCalculateChanges(format!(
            "unknown query state {:?}",
            q.since_query_state
        ))
    })?;
    let account_id = call.account_id().to_owned();
    let touched = ctx.submission_touched_since(&account_id, since)?;
    let (state, all) = ctx.submission_list(&account_id)?;
    let current = run_query(&all, q.filter.as_ref(), &q.sort)?;
    standard::query_changes_response(&account_id, &q, &state, &touched, &current)
}

// ---------------------------------------------------------------------------------------------
// set

/// The addresses of one address header, in order.
/// What every create of one EmailSubmission/set shares.
struct CreateContext<'a> {
    account_id: &'a str,
    domain: &'a str,
    relay: &'a str,
    identities: &'a [Identity],
    own_email: &'a str,
    created_ids: &'a HashMap<String, String>,
    /// Seconds since the epoch.
    now: i64,
    max_delayed_send_secs: u64,
}

/// Checks one create and resolves what it sends: the record and what it queues.
fn prepare<C: SubmissionStore + EmailStore>(
    ctx: &mut C,
    cx: &CreateContext<'_>,
    props: &Map<String, Value>,
) -> Result<Result<(Submission, Queued), SetError>, MethodError> {
    for key in props.keys() {
        if !matches!(
            key.as_str(),
            "identityId" | "emailId" | "envelope" | "undoStatus"
        ) {
            return Ok(Err(SetError::invalid_properties(
                &[key.as_str()],
                format!("{key} cannot be set on create"),
            )));
        }
    }
    if props.get("undoStatus").is_some_and(|u| u != "pending") {
        // SUB-05: a new submission is pending until the outbox starts sending it.
        return Ok(Err(SetError::invalid_properties(
            &["undoStatus"],
            "a new submission's undoStatus is pending",
        )));
    }
    let resolve = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .and_then(|id| match id.strip_prefix('#') {
                Some(c) => cx.created_ids.get(c).cloned(),
                None => Some(id.to_owned()),
            })
    };
    // SUB-08
    let Some(identity) =
        resolve(props.get("identityId")).and_then(|id| cx.identities.iter().find(|i| i.id == id))
    else {
        return Ok(Err(SetError::invalid_properties(
            &["identityId"],
            "no such identity",
        )));
    };
    let Some(email_id) = resolve(props.get("emailId")) else {
        return Ok(Err(SetError::invalid_properties(
            &["emailId"],
            "no such email",
        )));
    };
    let (_, metas) = ctx.email_metadata(
        cx.account_id,
        Some(std::slice::from_ref(&email_id)),
        1,
        false,
    )?;
    let Some(meta) = metas.into_iter().next() else {
        return Ok(Err(SetError::invalid_properties(
            &["emailId"],
            "no such email",
        )));
    };
    let Some(raw) = ctx.email_message(&meta.blob_id)? else {
        return Ok(Err(SetError::invalid_properties(
            &["emailId"],
            "no such email",
        )));
    };
    let Some(parsed) = mail_parser::MessageParser::default().parse(&raw) else {
        return Ok(Err(SetError::new(
            SetErrorType::InvalidEmail,
            "the message cannot be parsed",
        )));
    };
    let allowed = |e: &str| may_send_from(cx.own_email, e) && may_send_from(&identity.email, e);
    // SUB-07: the From header must match the identity.
    let from = addresses(parsed.from());
    if from.is_empty() {
        return Ok(Err(SetError::new(
            SetErrorType::InvalidEmail,
            "the message has no From address",
        )
        .with("properties", json!(["from"]))));
    }
    if let Some(bad) = from.iter().find(|f| !allowed(f)) {
        return Ok(Err(SetError::new(
            SetErrorType::ForbiddenFrom,
            format!("identity {} may not send as {bad:?}", identity.email),
        )));
    }
    let (mail_from, rcpt, envelope, send_at_secs) = match props.get("envelope") {
        Some(v) if !v.is_null() => match read_envelope(v) {
            Ok(e) => {
                if !allowed(&e.mail_from) {
                    return Ok(Err(SetError::new(
                        SetErrorType::ForbiddenMailFrom,
                        format!("this user may not use {:?} as MAIL FROM", e.mail_from),
                    )));
                }
                let at = match send_at(&e.parameters, cx.now, cx.max_delayed_send_secs) {
                    Ok(at) => at,
                    Err(why) => {
                        return Ok(Err(SetError::invalid_properties(&["envelope"], why)));
                    }
                };
                (e.mail_from, e.rcpt_to, v.clone(), at)
            }
            Err(e) => return Ok(Err(e)),
        },
        // SUB-03: from the Email.
        _ => {
            let sender = addresses(parsed.sender());
            let first = sender.first().or(from.first()).cloned().unwrap_or_default();
            let mail_from = if allowed(&first) {
                first
            } else {
                identity.email.clone()
            };
            let mut seen = HashSet::new();
            let rcpt: Vec<String> = [parsed.to(), parsed.cc(), parsed.bcc()]
                .into_iter()
                .flat_map(addresses)
                .filter(|a| seen.insert(a.to_lowercase()))
                .collect();
            let envelope = envelope_json(&mail_from, &rcpt);
            (mail_from, rcpt, envelope, cx.now)
        }
    };
    if rcpt.is_empty() {
        return Ok(Err(SetError::new(
            SetErrorType::NoRecipients,
            "the message has no recipients",
        )));
    }
    if rcpt.len() > MAX_RECIPIENTS {
        return Ok(Err(SetError::new(
            SetErrorType::TooManyRecipients,
            format!("at most {MAX_RECIPIENTS} recipients"),
        )
        .with("maxRecipients", json!(MAX_RECIPIENTS))));
    }
    let mut recipients = Vec::new();
    let mut seen = HashSet::new();
    for r in &rcpt {
        if !seen.insert(r.to_lowercase()) {
            continue;
        }
        recipients.push(QueuedRecipient {
            address: r.clone(),
            local_account: ctx.local_recipient(r, cx.domain)?,
        });
    }
    let remote: Vec<&String> = recipients
        .iter()
        .filter(|r| r.local_account.is_none())
        .map(|r| &r.address)
        .collect();
    if !remote.is_empty() && cx.relay.is_empty() {
        return Ok(Err(SetError::new(
            SetErrorType::InvalidRecipients,
            "no SMTP relay is configured, and these addresses are not local users",
        )
        .with("invalidRecipients", json!(remote))));
    }
    // SUB-06: every recipient is queued until the outbox reports on it.
    let delivery_status: Map<String, Value> = recipients
        .iter()
        .map(|r| {
            (
                r.address.clone(),
                json!({"smtpReply": "", "delivered": "queued", "displayed": "unknown"}),
            )
        })
        .collect();
    Ok(Ok((
        Submission {
            id: new_submission_id(),
            identity_id: identity.id.clone(),
            email_id: meta.id.clone(),
            thread_id: meta.thread_id.clone(),
            envelope,
            send_at: send_at_secs,
            undo_status: "pending".into(),
            delivery_status: Value::Object(delivery_status),
        },
        Queued {
            mail_from,
            recipients,
            message: strip_bcc(&raw),
            send_at_ms: send_at_secs.saturating_mul(1000),
        },
    )))
}

/// `EmailSubmission/set` (RFC 8621 §7.5; SUB-07..SUB-11).
pub fn set<C: SubmissionStore + EmailStore + IdentityStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Result<Map<String, Value>, MethodError> {
    let req = standard::parse_set(call)?;
    let on_update = match call.args.take_value("onSuccessUpdateEmail") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(MethodError::InvalidArguments(
                "onSuccessUpdateEmail is an object or null".into(),
            ));
        }
    };
    let on_destroy: Vec<String> = call
        .args
        .optional::<Vec<String>>("onSuccessDestroyEmail")?
        .unwrap_or_default();
    std::mem::take(&mut call.args).finish()?;
    let account_id = call.account_id().to_owned();
    let default = default_for(call);
    let identities = ctx.identity_snapshot(&account_id, &default)?.identities;
    let (state, existing) = ctx.submission_list(&account_id)?;
    if let Some(expected) = &req.if_in_state
        && *expected != state
    {
        return Err(MethodError::StateMismatch);
    }
    let cx = CreateContext {
        account_id: &account_id,
        domain: &call.server.mail_domain,
        relay: &call.server.relay_url,
        identities: &identities,
        own_email: &default.email,
        created_ids: call.created_ids,
        now: chrono::Utc::now().timestamp(),
        max_delayed_send_secs: call.server.max_delayed_send_secs,
    };
    let mut response = SetResponse::default();
    let mut queued: Vec<(Submission, Queued)> = Vec::new();
    let mut created_keys: Vec<String> = Vec::new();
    for (cid, props) in &req.create {
        match prepare(ctx, &cx, props)? {
            Ok(q) => {
                created_keys.push(cid.clone());
                queued.push(q);
            }
            Err(e) => response.create_failed(cid, e),
        }
    }
    let mut key_of: HashMap<String, String> = HashMap::new();
    for (cid, (submission, _)) in created_keys.iter().zip(&queued) {
        let mut reply = Map::new();
        reply.insert("id".into(), json!(submission.id));
        reply.insert("threadId".into(), json!(submission.thread_id));
        reply.insert("sendAt".into(), json!(utc_date(submission.send_at)));
        reply.insert("undoStatus".into(), json!(submission.undo_status));
        if !req
            .create
            .iter()
            .any(|(c, p)| c == cid && p.get("envelope").is_some_and(|e| !e.is_null()))
        {
            reply.insert("envelope".into(), submission.envelope.clone());
        }
        reply.insert("deliveryStatus".into(), submission.delivery_status.clone());
        response.created.insert(cid.clone(), Value::Object(reply));
        call.created_ids.insert(cid.clone(), submission.id.clone());
        key_of.insert(format!("#{cid}"), submission.email_id.clone());
        key_of.insert(submission.id.clone(), submission.email_id.clone());
    }
    let new_ones: Vec<&Submission> = queued.iter().map(|(s, _)| s).collect();
    let mut cancel = Vec::new();
    for (key, patch) in &req.update {
        let id = call.resolve_id(key).unwrap_or_default();
        let Some(s) = existing
            .iter()
            .chain(new_ones.iter().copied())
            .find(|s| s.id == id)
        else {
            response.update_failed(key, SetError::not_found());
            continue;
        };
        let mut error = None;
        let mut canceling = false;
        for (k, v) in patch {
            if k == "undoStatus" && v == "canceled" {
                // RFC 8621 §7.5: only a pending submission can be canceled.
                if s.undo_status == "pending" {
                    canceling = true;
                } else {
                    error = Some(SetError::new(
                        SetErrorType::CannotUnsend,
                        "the message has been sent",
                    ));
                }
            } else if to_json(s).get(k) != Some(v) {
                error = Some(SetError::invalid_properties(
                    &[k.as_str()],
                    format!("{k} cannot be changed"),
                ));
            }
        }
        match error {
            Some(e) => response.update_failed(key, e),
            None => {
                if canceling {
                    cancel.push(s.id.clone());
                }
                response.updated.insert(s.id.clone(), Value::Null);
                key_of.insert(s.id.clone(), s.email_id.clone());
            }
        }
    }
    let mut destroy = Vec::new();
    for key in &req.destroy {
        let id = call.resolve_id(key).unwrap_or_default();
        match existing
            .iter()
            .chain(new_ones.iter().copied())
            .find(|s| s.id == id)
        {
            // SUB-11: destroying the record never affects delivery.
            Some(s) => {
                key_of.insert(s.id.clone(), s.email_id.clone());
                destroy.push(s.id.clone());
                response.destroyed.push(s.id.clone());
            }
            None => response.destroy_failed(key, SetError::not_found()),
        }
    }
    let (old_state, new_state) = if queued.is_empty() && cancel.is_empty() && destroy.is_empty() {
        (state.clone(), state)
    } else {
        let (old, new, too_late) = ctx.submission_write(
            &account_id,
            SubmissionWrite {
                insert: &queued,
                cancel: &cancel,
                destroy: &destroy,
            },
        )?;
        for id in too_late {
            response.updated.remove(&id);
            response.update_failed(
                &id,
                SetError::new(SetErrorType::CannotUnsend, "sending has begun"),
            );
        }
        (old, new)
    };
    // SUB-10: one implicit Email/set for the submissions that succeeded.
    let succeeded = |key: &str| -> Option<String> {
        let id = match key.strip_prefix('#') {
            Some(cid) => response.created.get(cid)?.get("id")?.as_str()?.to_owned(),
            None => key.to_owned(),
        };
        let ok = response.created.values().any(|c| c["id"] == id.as_str())
            || response.updated.contains_key(&id)
            || response.destroyed.contains(&id);
        if ok { key_of.get(&id).cloned() } else { None }
    };
    let mut email_update = Map::new();
    for (key, patch) in &on_update {
        if let Some(email_id) = succeeded(key) {
            email_update.insert(email_id, patch.clone());
        }
    }
    let email_destroy: Vec<String> = on_destroy.iter().filter_map(|k| succeeded(k)).collect();
    let out = response.to_response(Some(&account_id), Some((old_state, new_state)));
    if !email_update.is_empty() || !email_destroy.is_empty() {
        let mut args = Map::new();
        args.insert("update".into(), Value::Object(email_update));
        args.insert("destroy".into(), json!(email_destroy));
        let mut inner = Call {
            call_id: call.call_id,
            args: super::args::Arguments::new(args),
            account: call.account.clone(),
            principal: call.principal,
            server: call.server,
            created_ids: call.created_ids,
            implicit: Vec::new(),
        };
        let invocation = match email::set(ctx, &mut inner) {
            Ok(result) => Invocation::new("Email/set", result, call.call_id),
            Err(e) => Invocation::new(
                "error",
                e.to_arguments().as_object().cloned().unwrap_or_default(),
                call.call_id,
            ),
        };
        call.implicit.push(invocation);
    }
    Ok(out)
}

/// A fresh submission id (`s` + 15 of `[a-z0-9]`).
fn new_submission_id() -> String {
    super::args::new_id('s')
}
