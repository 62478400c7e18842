//! `EmailSubmission/set` (RFC 8621 §7.5; SUB-07..SUB-11): checking each create and resolving what
//! it queues, cancellation of pending submissions, destruction of records, and the implicit
//! Email/set of `onSuccessUpdateEmail`/`onSuccessDestroyEmail`. The submission itself only
//! queues; `crate::outbound` sends (see the `submission` module).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};

use crate::jmap::dispatch::Call;
use crate::jmap::error::MethodError;
use crate::jmap::methods::email::{self, EmailMeta, EmailStore};
use crate::jmap::methods::identity::{Identity, IdentityStore, may_send_from};
use crate::jmap::methods::submission::envelope::{
    addresses_of, envelope_json, read_envelope, send_at, strip_bcc,
};
use crate::jmap::methods::submission::{
    MAX_RECIPIENTS, Queued, QueuedRecipient, Submission, SubmissionStore, SubmissionWrite,
    default_for, new_submission_id, to_json, utc_date,
};
use crate::jmap::request::Invocation;
use crate::jmap::standard::{self, SetError, SetErrorType, SetResponse};

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

/// Why one create failed: a SetError for that create alone, or a MethodError that ends the call.
enum CreateFailure {
    Refused(SetError),
    Failed(MethodError),
}

impl From<SetError> for CreateFailure {
    fn from(e: SetError) -> Self {
        CreateFailure::Refused(e)
    }
}

impl From<MethodError> for CreateFailure {
    fn from(e: MethodError) -> Self {
        CreateFailure::Failed(e)
    }
}

/// Checks one create and resolves what it sends: the record and what it queues.
fn prepare_create<C: SubmissionStore + EmailStore>(
    ctx: &mut C,
    cx: &CreateContext<'_>,
    props: &Map<String, Value>,
) -> Result<(Submission, Queued), CreateFailure> {
    check_create_properties(props)?;
    let resolve = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .and_then(|id| match id.strip_prefix('#') {
                Some(c) => cx.created_ids.get(c).cloned(),
                None => Some(id.to_owned()),
            })
    };
    // SUB-08
    let identity = resolve(props.get("identityId"))
        .and_then(|id| cx.identities.iter().find(|i| i.id == id))
        .ok_or_else(|| SetError::invalid_properties(&["identityId"], "no such identity"))?;
    let (meta, raw) = load_email(ctx, cx, resolve(props.get("emailId")))?;
    let parsed = mail_parser::MessageParser::default()
        .parse(&raw)
        .ok_or_else(|| SetError::new(SetErrorType::InvalidEmail, "the message cannot be parsed"))?;
    let allowed = |e: &str| may_send_from(cx.own_email, e) && may_send_from(&identity.email, e);
    let from = checked_from(&parsed, identity, &allowed)?;
    let route = match props.get("envelope") {
        Some(v) if !v.is_null() => given_route(v, cx, &allowed)?,
        // SUB-03: from the Email.
        _ => {
            let sender = addresses_of(parsed.sender());
            let first = sender.first().or(from.first()).cloned().unwrap_or_default();
            let mail_from = if allowed(&first) {
                first
            } else {
                identity.email.clone()
            };
            let mut seen = HashSet::new();
            // Every To, Cc and Bcc field, not only the last of each name.
            let rcpt: Vec<String> = [
                addresses_of(parsed.all_to()),
                addresses_of(parsed.all_cc()),
                addresses_of(parsed.all_bcc()),
            ]
            .into_iter()
            .flatten()
            .filter(|a| seen.insert(a.to_lowercase()))
            .collect();
            Route {
                envelope: envelope_json(&mail_from, &rcpt),
                mail_from,
                rcpt,
                send_at: cx.now,
            }
        }
    };
    let recipients = queue_recipients(ctx, cx, &route.rcpt)?;
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
    Ok((
        Submission {
            id: new_submission_id(),
            identity_id: identity.id.clone(),
            email_id: meta.id.clone(),
            thread_id: meta.thread_id.clone(),
            envelope: route.envelope,
            send_at: route.send_at,
            undo_status: "pending".into(),
            delivery_status: Value::Object(delivery_status),
        },
        Queued {
            mail_from: route.mail_from,
            recipients,
            message: strip_bcc(&raw),
            send_at_ms: route.send_at.saturating_mul(1000),
        },
    ))
}

/// The message's From addresses, each one the identity may send as (SUB-07).
fn checked_from(
    parsed: &mail_parser::Message<'_>,
    identity: &Identity,
    allowed: &dyn Fn(&str) -> bool,
) -> Result<Vec<String>, SetError> {
    // RFC 5322 §3.6: exactly one From field. With two, readers differ on which one they show,
    // so the one checked here might not be the one seen.
    if parsed.header_values(mail_parser::HeaderName::From).count() > 1 {
        return Err(SetError::new(
            SetErrorType::InvalidEmail,
            "the message has more than one From field",
        )
        .with("properties", json!(["from"])));
    }
    let from = addresses_of(parsed.from());
    if from.is_empty() {
        return Err(SetError::new(
            SetErrorType::InvalidEmail,
            "the message has no From address",
        )
        .with("properties", json!(["from"])));
    }
    if let Some(bad) = from.iter().find(|f| !allowed(f)) {
        return Err(SetError::new(
            SetErrorType::ForbiddenFrom,
            format!("identity {} may not send as {bad:?}", identity.email),
        ));
    }
    Ok(from)
}

/// Only `identityId`, `emailId`, `envelope` and a pending `undoStatus` may be given (SUB-05).
fn check_create_properties(props: &Map<String, Value>) -> Result<(), SetError> {
    if let Some(key) = props.keys().find(|key| {
        !matches!(
            key.as_str(),
            "identityId" | "emailId" | "envelope" | "undoStatus"
        )
    }) {
        return Err(SetError::invalid_properties(
            &[key.as_str()],
            format!("{key} cannot be set on create"),
        ));
    }
    if props.get("undoStatus").is_some_and(|u| u != "pending") {
        // SUB-05: a new submission is pending until the outbox starts sending it.
        return Err(SetError::invalid_properties(
            &["undoStatus"],
            "a new submission's undoStatus is pending",
        ));
    }
    Ok(())
}

/// The email to send and its message.
fn load_email<C: EmailStore>(
    ctx: &mut C,
    cx: &CreateContext<'_>,
    email_id: Option<String>,
) -> Result<(EmailMeta, Vec<u8>), CreateFailure> {
    let no_such_email = || SetError::invalid_properties(&["emailId"], "no such email");
    let email_id = email_id.ok_or_else(no_such_email)?;
    let (_, metas) = ctx.email_metadata(
        cx.account_id,
        Some(std::slice::from_ref(&email_id)),
        1,
        false,
    )?;
    let meta = metas.into_iter().next().ok_or_else(no_such_email)?;
    let raw = ctx
        .email_message(&meta.blob_id)?
        .ok_or_else(no_such_email)?;
    Ok((meta, raw))
}

/// Where and when a submission goes.
struct Route {
    mail_from: String,
    rcpt: Vec<String>,
    /// The Envelope as the record shows it.
    envelope: Value,
    /// Seconds since the epoch.
    send_at: i64,
}

/// The envelope the client gave, checked: its MAIL FROM and its HOLDFOR/HOLDUNTIL.
fn given_route(
    v: &Value,
    cx: &CreateContext<'_>,
    allowed: &dyn Fn(&str) -> bool,
) -> Result<Route, SetError> {
    let e = read_envelope(v)?;
    if !allowed(&e.mail_from) {
        return Err(SetError::new(
            SetErrorType::ForbiddenMailFrom,
            format!("this user may not use {:?} as MAIL FROM", e.mail_from),
        ));
    }
    let send_at = send_at(&e.parameters, cx.now, cx.max_delayed_send_secs)
        .map_err(|why| SetError::invalid_properties(&["envelope"], why))?;
    Ok(Route {
        mail_from: e.mail_from,
        rcpt: e.rcpt_to,
        envelope: v.clone(),
        send_at,
    })
}

/// The recipients to queue, each once, local ones with their account; refuses none, too many,
/// and remote ones when no relay is configured.
fn queue_recipients<C: SubmissionStore>(
    ctx: &mut C,
    cx: &CreateContext<'_>,
    rcpt: &[String],
) -> Result<Vec<QueuedRecipient>, CreateFailure> {
    if rcpt.is_empty() {
        return Err(
            SetError::new(SetErrorType::NoRecipients, "the message has no recipients").into(),
        );
    }
    if rcpt.len() > MAX_RECIPIENTS {
        return Err(SetError::new(
            SetErrorType::TooManyRecipients,
            format!("at most {MAX_RECIPIENTS} recipients"),
        )
        .with("maxRecipients", json!(MAX_RECIPIENTS))
        .into());
    }
    let mut recipients = Vec::new();
    let mut seen = HashSet::new();
    for r in rcpt {
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
        return Err(SetError::new(
            SetErrorType::InvalidRecipients,
            "no SMTP relay is configured, and these addresses are not local users",
        )
        .with("invalidRecipients", json!(remote))
        .into());
    }
    Ok(recipients)
}

/// `EmailSubmission/set` (RFC 8621 §7.5; SUB-07..SUB-11).
pub fn set<C: SubmissionStore + EmailStore + IdentityStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Result<Map<String, Value>, MethodError> {
    let req = standard::parse_set(call)?;
    let (on_update, on_destroy) = read_on_success(call)?;
    std::mem::take(&mut call.args).finish()?;
    let account_id = call.account_id().to_owned();
    let default = default_for(call);
    ctx.identity_prepare(&account_id, &default)?;
    let identities = ctx.identity_snapshot(&account_id)?.identities;
    let (state, existing) = ctx.submission_list(&account_id)?;
    req.check_state(&state)?;
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
        match prepare_create(ctx, &cx, props) {
            Ok(q) => {
                created_keys.push(cid.clone());
                queued.push(q);
            }
            Err(CreateFailure::Refused(e)) => response.create_failed(cid, e),
            Err(CreateFailure::Failed(e)) => return Err(e),
        }
    }
    // Submission id or `#creationId` → its email, for onSuccess…Email.
    let mut key_of: HashMap<String, String> = HashMap::new();
    for (cid, (submission, _)) in created_keys.iter().zip(&queued) {
        let envelope_given = req
            .create
            .iter()
            .any(|(c, p)| c == cid && p.get("envelope").is_some_and(|e| !e.is_null()));
        response
            .created
            .insert(cid.clone(), created_reply(submission, envelope_given));
        call.created_ids.insert(cid.clone(), submission.id.clone());
        key_of.insert(format!("#{cid}"), submission.email_id.clone());
        key_of.insert(submission.id.clone(), submission.email_id.clone());
    }
    let all: Vec<&Submission> = existing
        .iter()
        .chain(queued.iter().map(|(s, _)| s))
        .collect();
    let find = |key: &str| {
        let id = call.resolve_id(key).unwrap_or_default();
        all.iter().copied().find(|s| s.id == id)
    };
    let (cancel, destroy) = plan_changes(&req, &find, &mut response, &mut key_of);
    let write = SubmissionWrite {
        insert: &queued,
        cancel: &cancel,
        destroy: &destroy,
    };
    let (old_state, new_state) = commit(ctx, &account_id, state, write, &mut response)?;
    // SUB-10: one implicit Email/set for the submissions that succeeded.
    let succeeded = |key: &str| succeeded_email(&response, &key_of, key);
    let email_update: Map<String, Value> = on_update
        .iter()
        .filter_map(|(key, patch)| Some((succeeded(key)?, patch.clone())))
        .collect();
    let email_destroy: Vec<String> = on_destroy.iter().filter_map(|k| succeeded(k)).collect();
    let out = response.to_response(Some(&account_id), Some((old_state, new_state)));
    if !email_update.is_empty() || !email_destroy.is_empty() {
        implicit_email_set(ctx, call, email_update, email_destroy);
    }
    Ok(out)
}

/// Checks the updates and destroys: returns the submissions to cancel and those to destroy.
fn plan_changes<'s>(
    req: &standard::SetRequest,
    find: &dyn Fn(&str) -> Option<&'s Submission>,
    response: &mut SetResponse,
    key_of: &mut HashMap<String, String>,
) -> (Vec<String>, Vec<String>) {
    let mut cancel = Vec::new();
    for (key, patch) in &req.update {
        let Some(s) = find(key) else {
            response.update_failed(key, SetError::not_found());
            continue;
        };
        match read_update(s, patch) {
            Err(e) => response.update_failed(key, e),
            Ok(canceling) => {
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
        // SUB-11: destroying the record never affects delivery.
        let Some(s) = find(key) else {
            response.destroy_failed(key, SetError::not_found());
            continue;
        };
        key_of.insert(s.id.clone(), s.email_id.clone());
        destroy.push(s.id.clone());
        response.destroyed.push(s.id.clone());
    }
    (cancel, destroy)
}

/// Writes the creates, cancellations and destructions, if any; a cancellation that came too late
/// (sending began) becomes `cannotUnsend`. Returns the states before and after.
fn commit<C: SubmissionStore>(
    ctx: &mut C,
    account_id: &str,
    state: String,
    write: SubmissionWrite<'_>,
    response: &mut SetResponse,
) -> Result<(String, String), MethodError> {
    if write.insert.is_empty() && write.cancel.is_empty() && write.destroy.is_empty() {
        return Ok((state.clone(), state));
    }
    let (old, new, too_late) = ctx.submission_write(account_id, write)?;
    for id in too_late {
        response.updated.remove(&id);
        response.update_failed(
            &id,
            SetError::new(SetErrorType::CannotUnsend, "sending has begun"),
        );
    }
    Ok((old, new))
}

/// `onSuccessUpdateEmail` and `onSuccessDestroyEmail` (RFC 8621 §7.5).
fn read_on_success(call: &mut Call<'_>) -> Result<(Map<String, Value>, Vec<String>), MethodError> {
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
    Ok((on_update, on_destroy))
}

/// The email of the submission `key` names (an id or `#creationId`) if this call created,
/// updated or destroyed it.
fn succeeded_email(
    response: &SetResponse,
    email_of: &HashMap<String, String>,
    key: &str,
) -> Option<String> {
    let id = match key.strip_prefix('#') {
        Some(cid) => response.created.get(cid)?.get("id")?.as_str()?.to_owned(),
        None => key.to_owned(),
    };
    let ok = response.created.values().any(|c| c["id"] == id.as_str())
        || response.updated.contains_key(&id)
        || response.destroyed.contains(&id);
    if ok { email_of.get(&id).cloned() } else { None }
}

/// What a create reports: the server-set properties, and the envelope when the server chose it.
fn created_reply(submission: &Submission, envelope_given: bool) -> Value {
    let mut reply = Map::new();
    reply.insert("id".into(), json!(submission.id));
    reply.insert("threadId".into(), json!(submission.thread_id));
    reply.insert("sendAt".into(), json!(utc_date(submission.send_at)));
    reply.insert("undoStatus".into(), json!(submission.undo_status));
    if !envelope_given {
        reply.insert("envelope".into(), submission.envelope.clone());
    }
    reply.insert("deliveryStatus".into(), submission.delivery_status.clone());
    Value::Object(reply)
}

/// Checks an update: only `undoStatus: canceled` changes anything (RFC 8621 §7.5), and only for a
/// pending submission. Returns whether it cancels.
fn read_update(s: &Submission, patch: &Map<String, Value>) -> Result<bool, SetError> {
    let mut error = None;
    let mut canceling = false;
    for (k, v) in patch {
        if k == "undoStatus" && v == "canceled" {
            if s.undo_status == "pending" {
                canceling = true;
            } else if s.undo_status == "canceled" {
                // Already what the client asks: an update to the current value (RFC 8620 §5.3).
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
        Some(e) => Err(e),
        None => Ok(canceling),
    }
}

/// Runs `onSuccessUpdateEmail`/`onSuccessDestroyEmail` as one implicit Email/set (SUB-10), whose
/// response follows the EmailSubmission/set response.
fn implicit_email_set<C: EmailStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
    email_update: Map<String, Value>,
    email_destroy: Vec<String>,
) {
    let mut args = Map::new();
    args.insert("update".into(), Value::Object(email_update));
    args.insert("destroy".into(), json!(email_destroy));
    let mut inner = Call {
        call_id: call.call_id,
        args: crate::jmap::args::Arguments::new(args),
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
