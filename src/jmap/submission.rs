//! EmailSubmission (RFC 8621 §7): get, changes, query, queryChanges, set.
//!
//! Sending is immediate and cannot be undone, so `undoStatus` is always `final` (SUB-05) and
//! `maxDelayedSend` is 0. A recipient address that names a local user (the user name itself, or
//! `<name>@<submission.domain>`) gets the message in their inbox as new mail; every other
//! recipient goes to the SMTP relay (`[submission] relay`). Without a relay, any non-local
//! recipient makes the whole submission fail with `invalidRecipients` before anything is sent.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};

use super::changes::ChangesPage;
use super::dispatch::Call;
use super::email::{self, EmailStore};
use super::error::MethodError;
use super::identity::{Identity, IdentityStore, default_identity, may_send_from};
use super::request::Invocation;
use super::standard::{self, Comparator, SetError, SetErrorType, SetResponse};

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
    /// Hands `message` to the SMTP relay at `relay_url`: the relay's reply, or (inner `Err`) why it
    /// did not take the message.
    fn relay_send(
        &mut self,
        relay_url: &str,
        mail_from: &str,
        rcpt_to: &[String],
        message: &[u8],
    ) -> Result<Result<String, String>, MethodError>;
    /// Delivers `message` to the inbox of `account_id` as new mail.
    fn deliver_local(&mut self, account_id: &str, message: &[u8]) -> Result<(), MethodError>;
    /// Records new submissions and destroys others in one write, if the state is `if_in_state`
    /// (→ `stateMismatch`). Returns the state before and after.
    fn submission_write(
        &mut self,
        account_id: &str,
        if_in_state: Option<&str>,
        insert: &[Submission],
        destroy: &[String],
    ) -> Result<(String, String), MethodError>;
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
fn addresses(a: Option<&mail_parser::Address<'_>>) -> Vec<String> {
    a.map(|a| {
        a.iter()
            .filter_map(|x| x.address())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

/// Removes every `Bcc` header field (with its folded lines) from a message (SUB-07).
pub fn strip_bcc(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len());
    let mut rest = message;
    let mut skipping = false;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|b| *b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        if line == b"\r\n" || line == b"\n" {
            out.extend_from_slice(rest);
            return out;
        }
        let folded = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !folded {
            skipping = line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"bcc:");
        }
        if !skipping {
            out.extend_from_slice(line);
        }
        rest = tail;
    }
    out
}

fn envelope_address(v: &Value) -> Option<String> {
    let o = v.as_object()?;
    let email = o.get("email")?.as_str()?;
    let params_ok = match o.get("parameters") {
        None | Some(Value::Null) => true,
        Some(Value::Object(p)) => p.values().all(|x| x.is_null() || x.is_string()),
        Some(_) => false,
    };
    (params_ok && o.keys().all(|k| k == "email" || k == "parameters")).then(|| email.to_owned())
}

/// Reads a client envelope (SUB-02): `(mailFrom, rcptTo)`.
fn read_envelope(v: &Value) -> Result<(String, Vec<String>), SetError> {
    let bad = || SetError::invalid_properties(&["envelope"], "an Envelope is {mailFrom, rcptTo}");
    let o = v.as_object().ok_or_else(bad)?;
    let from = o
        .get("mailFrom")
        .and_then(envelope_address)
        .ok_or_else(bad)?;
    let rcpt = o
        .get("rcptTo")
        .and_then(Value::as_array)
        .ok_or_else(bad)?
        .iter()
        .map(|a| envelope_address(a).ok_or_else(bad))
        .collect::<Result<Vec<_>, _>>()?;
    if o.keys().any(|k| k != "mailFrom" && k != "rcptTo") {
        return Err(bad());
    }
    Ok((from, rcpt))
}

fn envelope_json(from: &str, rcpt: &[String]) -> Value {
    json!({
        "mailFrom": {"email": from, "parameters": null},
        "rcptTo": rcpt.iter().map(|r| json!({"email": r, "parameters": null})).collect::<Vec<_>>(),
    })
}

/// Everything one create needs, resolved.
struct Outgoing {
    submission: Submission,
    /// Recipient account per local rcptTo address.
    deliveries: Vec<(String, String)>,
    /// rcptTo addresses for the relay.
    remote: Vec<String>,
    mail_from: String,
    message: Vec<u8>,
}

#[allow(clippy::too_many_arguments)]
fn prepare<C: SubmissionStore + EmailStore>(
    ctx: &mut C,
    account_id: &str,
    domain: &str,
    relay: &str,
    identities: &[Identity],
    own_email: &str,
    props: &Map<String, Value>,
    created_ids: &HashMap<String, String>,
    now: i64,
) -> Result<Result<Outgoing, SetError>, MethodError> {
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
    if props.get("undoStatus").is_some_and(|u| u != "final") {
        // SUB-05: no delayed send, so nothing is ever pending.
        return Ok(Err(SetError::invalid_properties(
            &["undoStatus"],
            "messages are sent at once: undoStatus can only be final",
        )));
    }
    let resolve = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .and_then(|id| match id.strip_prefix('#') {
                Some(c) => created_ids.get(c).cloned(),
                None => Some(id.to_owned()),
            })
    };
    // SUB-08
    let Some(identity) =
        resolve(props.get("identityId")).and_then(|id| identities.iter().find(|i| i.id == id))
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
    let (_, metas) =
        ctx.email_metadata(account_id, Some(std::slice::from_ref(&email_id)), 1, false)?;
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
    let allowed = |e: &str| may_send_from(own_email, e) && may_send_from(&identity.email, e);
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
    let (mail_from, rcpt) = match props.get("envelope") {
        Some(v) if !v.is_null() => match read_envelope(v) {
            Ok((mail_from, rcpt)) => {
                if !allowed(&mail_from) {
                    return Ok(Err(SetError::new(
                        SetErrorType::ForbiddenMailFrom,
                        format!("this user may not use {mail_from:?} as MAIL FROM"),
                    )));
                }
                (mail_from, rcpt)
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
            (mail_from, rcpt)
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
    let mut deliveries = Vec::new();
    let mut remote = Vec::new();
    for r in &rcpt {
        match ctx.local_recipient(r, domain)? {
            Some(account) => deliveries.push((r.clone(), account)),
            None => remote.push(r.clone()),
        }
    }
    if !remote.is_empty() && relay.is_empty() {
        let invalid = remote;
        return Ok(Err(SetError::new(
            SetErrorType::InvalidRecipients,
            "no SMTP relay is configured, and these addresses are not local users",
        )
        .with("invalidRecipients", json!(invalid))));
    }
    let delivery_status: Map<String, Value> = rcpt
        .iter()
        .map(|r| {
            (
                r.clone(),
                json!({"smtpReply": "250 2.0.0 delivered locally", "delivered": "yes", "displayed": "unknown"}),
            )
        })
        .collect();
    Ok(Ok(Outgoing {
        submission: Submission {
            id: new_submission_id(),
            identity_id: identity.id.clone(),
            email_id: meta.id.clone(),
            thread_id: meta.thread_id.clone(),
            envelope: envelope_json(&mail_from, &rcpt),
            send_at: now,
            undo_status: "final".into(),
            delivery_status: Value::Object(delivery_status),
        },
        deliveries,
        remote,
        mail_from,
        message: strip_bcc(&raw),
    }))
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
    let domain = call.server.mail_domain.clone();
    let relay = call.server.relay_url.clone();
    let default = default_for(call);
    let identities = ctx.identity_snapshot(&account_id, &default)?.identities;
    let (state, existing) = ctx.submission_list(&account_id)?;
    if let Some(expected) = &req.if_in_state
        && *expected != state
    {
        return Err(MethodError::StateMismatch);
    }
    let now = chrono::Utc::now().timestamp();
    let mut response = SetResponse::default();
    let mut outgoing: Vec<(String, Outgoing)> = Vec::new();
    for (cid, props) in &req.create {
        match prepare(
            ctx,
            &account_id,
            &domain,
            &relay,
            &identities,
            &default.email,
            props,
            call.created_ids,
            now,
        )? {
            Ok(o) => outgoing.push((cid.clone(), o)),
            Err(e) => response.create_failed(cid, e),
        }
    }
    // Send, then record: a message that went out is recorded even if a later one fails.
    let mut sent: Vec<Submission> = Vec::new();
    let mut key_of: HashMap<String, String> = HashMap::new();
    for (cid, mut o) in outgoing {
        // The relay first: if it refuses, nobody has received anything yet.
        if !o.remote.is_empty() {
            match ctx.relay_send(&relay, &o.mail_from, &o.remote, &o.message)? {
                Ok(reply) => {
                    for r in &o.remote {
                        o.submission.delivery_status[r.as_str()] = json!({
                            "smtpReply": reply, "delivered": "queued", "displayed": "unknown"});
                    }
                }
                Err(why) => {
                    response.create_failed(&cid, SetError::new(SetErrorType::ForbiddenToSend, why));
                    continue;
                }
            }
        }
        for (_, recipient_account) in &o.deliveries {
            ctx.deliver_local(recipient_account, &o.message)?;
        }
        let mut reply = Map::new();
        reply.insert("id".into(), json!(o.submission.id));
        reply.insert("threadId".into(), json!(o.submission.thread_id));
        reply.insert("sendAt".into(), json!(utc_date(o.submission.send_at)));
        reply.insert("undoStatus".into(), json!("final"));
        if !req
            .create
            .iter()
            .any(|(c, p)| c == &cid && p.get("envelope").is_some_and(|e| !e.is_null()))
        {
            reply.insert("envelope".into(), o.submission.envelope.clone());
        }
        reply.insert(
            "deliveryStatus".into(),
            o.submission.delivery_status.clone(),
        );
        response.created.insert(cid.clone(), Value::Object(reply));
        call.created_ids
            .insert(cid.clone(), o.submission.id.clone());
        key_of.insert(format!("#{cid}"), o.submission.email_id.clone());
        key_of.insert(o.submission.id.clone(), o.submission.email_id.clone());
        sent.push(o.submission);
    }
    for (key, patch) in &req.update {
        let id = call.resolve_id(key).unwrap_or_default();
        let Some(s) = existing.iter().chain(sent.iter()).find(|s| s.id == id) else {
            response.update_failed(key, SetError::not_found());
            continue;
        };
        let mut error = None;
        for (k, v) in patch {
            if k == "undoStatus" && v == "canceled" {
                error = Some(SetError::new(
                    SetErrorType::CannotUnsend,
                    "the message has been sent",
                ));
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
                response.updated.insert(s.id.clone(), Value::Null);
                key_of.insert(s.id.clone(), s.email_id.clone());
            }
        }
    }
    let mut destroy = Vec::new();
    for key in &req.destroy {
        let id = call.resolve_id(key).unwrap_or_default();
        match existing.iter().chain(sent.iter()).find(|s| s.id == id) {
            // SUB-11: destroying the record never affects delivery.
            Some(s) => {
                key_of.insert(s.id.clone(), s.email_id.clone());
                destroy.push(s.id.clone());
                response.destroyed.push(s.id.clone());
            }
            None => response.destroy_failed(key, SetError::not_found()),
        }
    }
    let (old_state, new_state) = if sent.is_empty() && destroy.is_empty() {
        (state.clone(), state)
    } else {
        ctx.submission_write(&account_id, None, &sent, &destroy)?
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcc_fields_and_their_folded_lines_are_stripped_from_the_header_only() {
        let m = b"From: a@x\r\nBcc: b@x,\r\n c@x\r\nTo: d@x\r\n\r\nBcc: body stays\r\n";
        assert_eq!(
            strip_bcc(m),
            b"From: a@x\r\nTo: d@x\r\n\r\nBcc: body stays\r\n".to_vec()
        );
    }

    #[test]
    fn an_envelope_needs_mail_from_and_rcpt_to_addresses() {
        let ok =
            json!({"mailFrom": {"email": "a@x"}, "rcptTo": [{"email": "b@x", "parameters": null}]});
        assert_eq!(
            read_envelope(&ok).unwrap(),
            ("a@x".into(), vec!["b@x".into()])
        );
        for bad in [
            json!({"mailFrom": "a@x", "rcptTo": []}),
            json!({"rcptTo": []}),
        ] {
            assert_eq!(
                read_envelope(&bad).unwrap_err().kind,
                SetErrorType::InvalidProperties
            );
        }
    }
}
