//! Email/get (RFC 8621 §4.2) and Thread/get (§3.1); Email and Thread as data types for the
//! standard `/changes`.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::{DATA_TYPE, EmailMeta, EmailStore, THREAD_PROPERTIES, THREAD_TYPE};
use crate::jmap::args::Id;
use crate::jmap::dispatch::Call;
use crate::jmap::error::MethodError;
use crate::jmap::standard::{self, DataType};
use crate::mail::{self, EmailProperty, FetchOptions, PropertySelection};

/// Email/get's body arguments (shared with Email/parse, EML-12, EML-13), with `id` always
/// selected (RFC 8620 §5.1).
fn read_get_arguments(
    call: &mut Call<'_>,
) -> Result<(PropertySelection, FetchOptions), MethodError> {
    let (mut selection, fetch) = crate::jmap::methods::email::parse::read_body_arguments(
        &mut call.args,
        mail::DEFAULT_GET_PROPERTIES,
    )?;
    if !selection.has(&EmailProperty::Id) {
        selection
            .properties
            .insert(0, ("id".to_owned(), EmailProperty::Id));
    }
    Ok((selection, fetch))
}

/// Reads `ids` (creation references resolved, duplicates dropped) with the /get limit.
fn read_ids(call: &mut Call<'_>) -> Result<Option<Vec<String>>, MethodError> {
    let ids = call.args.optional::<Vec<Id>>("ids")?;
    let max = call.server.limits.max_objects_in_get;
    let Some(ids) = ids else { return Ok(None) };
    if ids.len() as u64 > max {
        return Err(MethodError::RequestTooLarge(format!(
            "at most {max} ids per /get"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(ids.len());
    for Id(id) in ids {
        let id = call.resolve_id(&id).unwrap_or(id);
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(Some(out))
}

/// The metadata part of an Email as JSON.
fn metadata_value(meta: &EmailMeta, property: &EmailProperty) -> Option<Value> {
    let set = |items: &[String]| {
        Value::Object(
            items
                .iter()
                .map(|k| (k.clone(), Value::Bool(true)))
                .collect(),
        )
    };
    Some(match property {
        EmailProperty::Id => Value::from(meta.id.clone()),
        EmailProperty::BlobId => Value::from(meta.blob_id.clone()),
        EmailProperty::ThreadId => Value::from(meta.thread_id.clone()),
        EmailProperty::MailboxIds => set(&meta.mailbox_ids),
        EmailProperty::Keywords => set(&meta.keywords),
        EmailProperty::Size => Value::from(meta.size),
        EmailProperty::ReceivedAt => Value::from(mail::header::utc_date(meta.received_at)),
        _ => return None,
    })
}

/// Where Email/get finds the properties that are not metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MessageSource {
    /// Only metadata is asked for.
    None,
    /// The stored summary (list views); computed from the message where it is missing.
    Summary,
    /// The parsed message, once per email (body parts, body values, raw headers, `header:*`).
    Parsed,
}

impl MessageSource {
    fn of(selection: &PropertySelection) -> MessageSource {
        if selection.needs_parsed_message() {
            MessageSource::Parsed
        } else if selection.needs_message() {
            MessageSource::Summary
        } else {
            MessageSource::None
        }
    }
}

/// The message-derived properties of one email, from `source`.
fn message_values<C: EmailStore>(
    ctx: &mut C,
    account_id: &str,
    meta: &EmailMeta,
    source: MessageSource,
    selection: &PropertySelection,
    fetch: &FetchOptions,
) -> Result<Map<String, Value>, MethodError> {
    if source == MessageSource::None {
        return Ok(Map::new());
    }
    let summary_values = |summary: &mail::Summary| {
        selection
            .properties
            .iter()
            .filter_map(|(key, p)| summary.value(p).map(|v| (key.clone(), v)))
            .collect::<Map<String, Value>>()
    };
    if source == MessageSource::Summary
        && let Some(summary) = meta.summary.as_ref().and_then(|s| s.read(selection))
    {
        return Ok(summary_values(&summary));
    }
    let parsed = ctx
        .email_message(&meta.blob_id)?
        .and_then(|raw| mail::Email::parse(&raw));
    let Some(email) = parsed else {
        log::warn!("email {} has no readable message {}", meta.id, meta.blob_id);
        return Ok(Map::new());
    };
    if source == MessageSource::Parsed {
        return Ok(mail::render_email(&email, &meta.blob_id, selection, fetch));
    }
    // An email stored before summaries existed: compute it once and keep it.
    let summary = mail::Summary::of(&email);
    ctx.email_keep_summary(account_id, &meta.id, &summary)?;
    Ok(summary_values(&summary))
}

/// `Email/get` (RFC 8621 §4.2): metadata from the store; the list-view properties from the
/// summary stored at import; body properties and raw headers from the parsed message.
pub fn get<C: EmailStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Result<Map<String, Value>, MethodError> {
    let ids = read_ids(call)?;
    let (selection, fetch) = read_get_arguments(call)?;
    std::mem::take(&mut call.args).finish()?;
    let account_id = call.account_id().to_owned();
    let max = call.server.limits.max_objects_in_get as usize;
    let source = MessageSource::of(&selection);
    let with_summary = source == MessageSource::Summary;
    let (state, metas) = ctx.email_metadata(&account_id, ids.as_deref(), max + 1, with_summary)?;
    if ids.is_none() && metas.len() > max {
        return Err(MethodError::RequestTooLarge(format!(
            "the account has more than {max} emails: ask for ids"
        )));
    }
    let by_id: HashMap<&str, &EmailMeta> = metas.iter().map(|m| (m.id.as_str(), m)).collect();
    let order: Vec<&EmailMeta> = match &ids {
        Some(ids) => ids
            .iter()
            .filter_map(|i| by_id.get(i.as_str()).copied())
            .collect(),
        None => metas.iter().collect(),
    };
    let not_found: Vec<String> = ids
        .iter()
        .flatten()
        .filter(|i| !by_id.contains_key(i.as_str()))
        .cloned()
        .collect();
    let mut list = Vec::with_capacity(order.len());
    for meta in order {
        let mut out = message_values(ctx, &account_id, meta, source, &selection, &fetch)?;
        for (key, property) in &selection.properties {
            if let Some(v) = metadata_value(meta, property) {
                out.insert(key.clone(), v);
            } else if !out.contains_key(key) {
                out.insert(key.clone(), Value::Null);
            }
        }
        // Keep the order the client asked for.
        let ordered: Map<String, Value> = selection
            .properties
            .iter()
            .filter_map(|(k, _)| out.remove(k).map(|v| (k.clone(), v)))
            .collect();
        list.push(Value::Object(ordered));
    }
    Ok(standard::get_response(&account_id, &state, list, not_found))
}

// ---------------------------------------------------------------------------------------------
// Email and Thread as data types; Thread/get

/// The Email data type, as the standard methods see it (`Email/changes`, EML-14).
pub struct Email;

impl DataType for Email {
    const NAME: &'static str = DATA_TYPE;
}

/// The Thread data type, as the standard methods see it (`Thread/changes`, THR-06).
pub struct Thread;

impl DataType for Thread {
    const NAME: &'static str = THREAD_TYPE;
}

/// `Thread/get` (RFC 8621 §3.1, THR-02).
pub fn thread_get<C: EmailStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Result<Map<String, Value>, MethodError> {
    let req = standard::parse_get(call, THREAD_PROPERTIES)?;
    std::mem::take(&mut call.args).finish()?;
    let account_id = call.account_id().to_owned();
    let max = call.server.limits.max_objects_in_get as usize;
    let (state, threads) = ctx.thread_emails(&account_id, req.ids.as_deref(), max + 1)?;
    if req.ids.is_none() && threads.len() > max {
        return Err(MethodError::RequestTooLarge(format!(
            "the account has more than {max} threads: ask for ids"
        )));
    }
    let by_id: HashMap<&str, &Vec<String>> = threads.iter().map(|(t, e)| (t.as_str(), e)).collect();
    let render = |id: &str, emails: &Vec<String>| {
        let full = json!({"id": id, "emailIds": emails});
        Value::Object(standard::select(
            full.as_object().cloned().unwrap_or_default(),
            req.properties.as_deref(),
        ))
    };
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    match &req.ids {
        None => list.extend(threads.iter().map(|(t, e)| render(t, e))),
        Some(ids) => {
            for id in ids {
                match by_id.get(id.as_str()) {
                    Some(e) => list.push(render(id, e)),
                    None => not_found.push(id.clone()),
                }
            }
        }
    }
    Ok(standard::get_response(&account_id, &state, list, not_found))
}
