//! Email/copy (RFC 8621 §4.7, RFC 8620 §5.4): copies emails from another account the user can
//! read into an account they can write, through the email store's write path, and with
//! `onSuccessDestroyOriginal` destroys the originals in an implicit `Email/set`.
//!
//! The copy is made from the original's message bytes, so it has the same blob id (blobs are
//! addressed by their content) and is threaded in the target account like any new email.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value, json};

use crate::jmap::args::Id;
use crate::jmap::dispatch::Call;
use crate::jmap::error::MethodError;
use crate::jmap::methods::email::{self, EmailOp, EmailStore, NewEmail, OpResult, Source};
use crate::jmap::methods::email_query::parse_utc_date;
use crate::jmap::request::Invocation;
use crate::jmap::standard::{SetError, SetResponse};

/// What a create entry may set besides `id` (ECP-01).
const OVERRIDABLE: &[&str] = &["mailboxIds", "keywords", "receivedAt"];

/// One requested copy, validated.
struct CopyEntry {
    creation_id: String,
    source_id: String,
    mailbox_ids: Option<BTreeSet<String>>,
    keywords: Option<BTreeSet<String>>,
    received_at: Option<i64>,
}

fn read_entry(
    creation_id: &str,
    props: &Map<String, Value>,
    created_ids: &HashMap<String, String>,
) -> Result<CopyEntry, SetError> {
    // CPY-01: `id` names the email in the source account.
    let source_id = match props.get("id") {
        Some(Value::String(id)) if Id::is_valid(id) => id.clone(),
        _ => {
            return Err(SetError::invalid_properties(
                &["id"],
                "id must be the id of the email to copy",
            ));
        }
    };
    let bad: Vec<&str> = props
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "id" && !OVERRIDABLE.contains(k))
        .collect();
    if !bad.is_empty() {
        return Err(SetError::invalid_properties(
            &bad,
            "Email/copy may only set mailboxIds, keywords and receivedAt",
        ));
    }
    let mailbox_ids = match props.get("mailboxIds") {
        None => None,
        Some(Value::Object(map)) => {
            let mut out = BTreeSet::new();
            for (k, v) in map {
                if v != &Value::Bool(true) {
                    return Err(SetError::invalid_properties(
                        &["mailboxIds"],
                        "every mailboxIds value must be true",
                    ));
                }
                let id = match k.strip_prefix('#') {
                    Some(cid) => created_ids.get(cid).cloned().ok_or_else(|| {
                        SetError::invalid_properties(
                            &["mailboxIds"],
                            format!("unknown creation id {k:?}"),
                        )
                    })?,
                    None => k.clone(),
                };
                out.insert(id);
            }
            Some(out)
        }
        Some(_) => {
            return Err(SetError::invalid_properties(
                &["mailboxIds"],
                "mailboxIds is an Id[Boolean] object",
            ));
        }
    };
    let keywords = props
        .get("keywords")
        .map(email::read_keywords)
        .transpose()?;
    let received_at = match props.get("receivedAt") {
        None => None,
        Some(v) => Some(v.as_str().and_then(parse_utc_date).ok_or_else(|| {
            SetError::invalid_properties(&["receivedAt"], "receivedAt is a UTCDate")
        })?),
    };
    Ok(CopyEntry {
        creation_id: creation_id.to_owned(),
        source_id,
        mailbox_ids,
        keywords,
        received_at,
    })
}

/// The arguments of one Email/copy (RFC 8621 §4.7), checked.
struct CopyRequest {
    from_account: String,
    /// Whether the caller may only read the source account.
    from_read_only: bool,
    if_from_in_state: Option<String>,
    if_in_state: Option<String>,
    create: Map<String, Value>,
    destroy_original: bool,
    destroy_from_if_in_state: Option<String>,
}

fn read_copy_request(call: &mut Call<'_>) -> Result<CopyRequest, MethodError> {
    let Id(from_account) = call.args.required::<Id>("fromAccountId")?;
    let if_from_in_state = call.args.optional::<String>("ifFromInState")?;
    let if_in_state = call.args.optional::<String>("ifInState")?;
    let Some(Value::Object(create)) = call.args.take_value("create") else {
        return Err(MethodError::InvalidArguments(
            "create must be an Id[Email] object".into(),
        ));
    };
    let destroy_original = call.args.defaulted("onSuccessDestroyOriginal", false)?;
    let destroy_from_if_in_state = call.args.optional::<String>("destroyFromIfInState")?;
    std::mem::take(&mut call.args).finish()?;
    // CPY-04: the source must be an account the user can read.
    let from_read_only = call
        .principal
        .account(&from_account)
        .ok_or(MethodError::FromAccountNotFound)?
        .read_only;
    if from_account == call.account_id() {
        return Err(MethodError::InvalidArguments(
            "fromAccountId and accountId must differ".into(),
        ));
    }
    let max = call.server.limits.max_objects_in_set;
    if create.len() as u64 > max {
        return Err(MethodError::RequestTooLarge(format!(
            "at most {max} copies per Email/copy"
        )));
    }
    if let Some(cid) = create.keys().find(|cid| !Id::is_valid(cid)) {
        return Err(MethodError::InvalidArguments(format!(
            "creation id {cid:?} is not a valid Id"
        )));
    }
    Ok(CopyRequest {
        from_account,
        from_read_only,
        if_from_in_state,
        if_in_state,
        create,
        destroy_original,
        destroy_from_if_in_state,
    })
}

/// `Email/copy` (RFC 8621 §4.7; CPY-01..CPY-04, ECP-01).
pub fn copy<C: EmailStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Result<Map<String, Value>, MethodError> {
    let req = read_copy_request(call)?;
    let account_id = call.account_id().to_owned();
    if let Some(want) = &req.if_from_in_state
        && *want != ctx.email_type_state(&req.from_account, email::DATA_TYPE)?
    {
        return Err(MethodError::StateMismatch);
    }
    let mut response = SetResponse::default();
    let mut entries = Vec::new();
    for (cid, value) in &req.create {
        let entry = match value {
            Value::Object(props) => read_entry(cid, props, call.created_ids),
            _ => Err(SetError::invalid_properties(&[], "an Email is an object")),
        };
        match entry {
            Ok(e) => entries.push(e),
            Err(e) => response.create_failed(cid, e),
        }
    }
    let (ops, source_of) = plan_copies(ctx, &req.from_account, entries, &mut response)?;
    let user = call.principal.user_id.clone();
    let outcome = ctx.email_write(&account_id, &user, req.if_in_state.as_deref(), ops)?;
    let mut copied = Vec::new();
    for r in outcome.results {
        match r {
            OpResult::Created(cid, c) => {
                call.created_ids.insert(cid.clone(), c.id.clone());
                if let Some(source) = source_of.get(&cid) {
                    copied.push(source.clone());
                }
                response.created.insert(cid, c.to_json());
            }
            OpResult::NotCreated(cid, e) => response.create_failed(&cid, e),
            _ => {}
        }
    }
    let mut out = Map::new();
    out.insert("fromAccountId".into(), json!(req.from_account));
    out.extend(response.to_response(
        Some(&account_id),
        Some((outcome.old_state, outcome.new_state)),
    ));
    // /copy has no updated/destroyed members.
    for k in ["updated", "destroyed", "notUpdated", "notDestroyed"] {
        out.remove(k);
    }

    // CPY-03: one implicit Email/set destroying the copied originals.
    if req.destroy_original && !copied.is_empty() {
        let implicit = if req.from_read_only {
            Err(MethodError::AccountReadOnly)
        } else {
            destroy_originals(
                ctx,
                &req.from_account,
                &user,
                req.destroy_from_if_in_state.as_deref(),
                copied,
            )
        };
        let invocation = match implicit {
            Ok(args) => Invocation::new("Email/set", args, call.call_id),
            Err(e) => {
                let args = match e.to_arguments() {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                Invocation::new("error", args, call.call_id)
            }
        };
        call.implicit.push(invocation);
    }
    Ok(out)
}

/// The creates of the copies whose originals exist: each keeps its original's message, and its
/// keywords and receivedAt unless the entry overrides them. Returns them with creation id →
/// original id.
fn plan_copies<C: EmailStore>(
    ctx: &mut C,
    from_account: &str,
    entries: Vec<CopyEntry>,
    response: &mut SetResponse,
) -> Result<(Vec<EmailOp>, HashMap<String, String>), MethodError> {
    let source_ids: Vec<String> = entries.iter().map(|e| e.source_id.clone()).collect();
    let (_, originals) =
        ctx.email_metadata(from_account, Some(&source_ids), source_ids.len(), false)?;
    let originals: HashMap<&str, _> = originals.iter().map(|m| (m.id.as_str(), m)).collect();
    let mut ops = Vec::new();
    let mut source_of: HashMap<String, String> = HashMap::new();
    for e in entries {
        let Some(original) = originals.get(e.source_id.as_str()) else {
            response.create_failed(&e.creation_id, SetError::not_found());
            continue;
        };
        let Some(message) = ctx.email_message(&original.blob_id)? else {
            response.create_failed(&e.creation_id, SetError::not_found());
            continue;
        };
        // ECP-01: mailboxIds must be valid in the target account, so the client gives them.
        let Some(mailbox_ids) = e.mailbox_ids else {
            response.create_failed(
                &e.creation_id,
                SetError::invalid_properties(
                    &["mailboxIds"],
                    "mailboxIds of the target account are required",
                ),
            );
            continue;
        };
        source_of.insert(e.creation_id.clone(), e.source_id.clone());
        ops.push(EmailOp::Create {
            creation_id: e.creation_id,
            email: NewEmail {
                id: email::new_email_id(),
                source: Source::Message(message),
                mailbox_ids,
                keywords: e
                    .keywords
                    .unwrap_or_else(|| original.keywords.iter().cloned().collect()),
                received_at: Some(e.received_at.unwrap_or(original.received_at)),
                delivery: false,
            },
        });
    }
    Ok((ops, source_of))
}

fn destroy_originals<C: EmailStore>(
    ctx: &mut C,
    account_id: &str,
    user: &str,
    if_in_state: Option<&str>,
    ids: Vec<String>,
) -> Result<Map<String, Value>, MethodError> {
    let ops = ids
        .into_iter()
        .map(|id| EmailOp::Destroy {
            key: id.clone(),
            id,
        })
        .collect();
    let outcome = ctx.email_write(account_id, user, if_in_state, ops)?;
    let mut response = SetResponse::default();
    for r in outcome.results {
        match r {
            OpResult::Destroyed(id) => response.destroyed.push(id),
            OpResult::NotDestroyed(id, e) => response.destroy_failed(&id, e),
            _ => {}
        }
    }
    Ok(response.to_response(
        Some(account_id),
        Some((outcome.old_state, outcome.new_state)),
    ))
}
