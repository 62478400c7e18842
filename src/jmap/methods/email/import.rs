//! Email/import (RFC 8621 §4.8): stored blobs become emails.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value};

use super::{
    EmailOp, EmailStore, NewEmail, OpResult, Source, new_email_id, parse_utc_date, read_keywords,
    read_mailbox_ids, resolve,
};
use crate::jmap::args::Id;
use crate::jmap::dispatch::Call;
use crate::jmap::error::MethodError;
use crate::jmap::standard::SetError;

const IMPORT_PROPERTIES: &[&str] = &["blobId", "mailboxIds", "keywords", "receivedAt"];

/// Reads one EmailImport object (EIMP-01).
fn read_import(
    props: &Map<String, Value>,
    created: &HashMap<String, String>,
) -> Result<NewEmail, SetError> {
    if let Some(k) = props
        .keys()
        .find(|k| !IMPORT_PROPERTIES.contains(&k.as_str()))
    {
        return Err(SetError::invalid_properties(
            &[k.as_str()],
            format!("EmailImport has no property {k:?}"),
        ));
    }
    let blob_id = match props.get("blobId") {
        Some(Value::String(b)) => resolve(created, b).ok_or_else(|| {
            SetError::invalid_properties(&["blobId"], format!("unknown creation id {b:?}"))
        })?,
        _ => {
            return Err(SetError::invalid_properties(
                &["blobId"],
                "blobId is required",
            ));
        }
    };
    let mailbox_ids = match props.get("mailboxIds") {
        Some(v) => read_mailbox_ids(v, created)?,
        None => {
            return Err(SetError::invalid_properties(
                &["mailboxIds"],
                "mailboxIds is required",
            ));
        }
    };
    let keywords = match props.get("keywords") {
        None | Some(Value::Null) => BTreeSet::new(),
        Some(v) => read_keywords(v)?,
    };
    let received_at = match props.get("receivedAt") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(parse_utc_date(s).ok_or_else(|| {
            SetError::invalid_properties(&["receivedAt"], "receivedAt is a UTCDate")
        })?),
        Some(_) => {
            return Err(SetError::invalid_properties(
                &["receivedAt"],
                "receivedAt is a UTCDate",
            ));
        }
    };
    Ok(NewEmail {
        id: new_email_id(),
        source: Source::Blob(blob_id),
        mailbox_ids,
        keywords,
        received_at,
        delivery: true,
    })
}

/// `Email/import` (RFC 8621 §4.8, EIMP-01..04).
pub fn import<C: EmailStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Result<Map<String, Value>, MethodError> {
    let if_in_state = call.args.optional::<String>("ifInState")?;
    let Some(Value::Object(emails)) = call.args.take_value("emails") else {
        return Err(MethodError::InvalidArguments(
            "emails is a map of creation id to EmailImport".into(),
        ));
    };
    std::mem::take(&mut call.args).finish()?;
    let max = call.server.limits.max_objects_in_set;
    if emails.len() as u64 > max {
        return Err(MethodError::RequestTooLarge(format!(
            "at most {max} emails per import"
        )));
    }
    let account_id = call.account_id().to_owned();
    let mut not_created = Map::new();
    let mut ops = Vec::new();
    for (cid, value) in &emails {
        if !Id::is_valid(cid) {
            return Err(MethodError::InvalidArguments(format!(
                "creation id {cid:?} is not a valid Id"
            )));
        }
        let result = match value {
            Value::Object(props) => read_import(props, call.created_ids),
            _ => Err(SetError::invalid_properties(
                &[],
                "an EmailImport is an object",
            )),
        };
        match result {
            Ok(email) => ops.push(EmailOp::Create {
                creation_id: cid.clone(),
                email,
            }),
            Err(e) => {
                not_created.insert(cid.clone(), e.to_json());
            }
        }
    }
    let user = call.principal.user_id.clone();
    let outcome = ctx.email_write(&account_id, &user, if_in_state.as_deref(), ops)?;
    let mut created = Map::new();
    for r in outcome.results {
        match r {
            OpResult::Created(cid, c) => {
                call.created_ids.insert(cid.clone(), c.id.clone());
                created.insert(cid, c.to_json());
            }
            OpResult::NotCreated(cid, e) => {
                not_created.insert(cid, e.to_json());
            }
            _ => {}
        }
    }
    let nullable = |m: Map<String, Value>| {
        if m.is_empty() {
            Value::Null
        } else {
            Value::Object(m)
        }
    };
    let mut out = Map::new();
    out.insert("accountId".into(), Value::from(account_id));
    out.insert("oldState".into(), Value::from(outcome.old_state));
    out.insert("newState".into(), Value::from(outcome.new_state));
    out.insert("created".into(), nullable(created));
    out.insert("notCreated".into(), nullable(not_created));
    Ok(out)
}
