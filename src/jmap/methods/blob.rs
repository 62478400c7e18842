//! `Blob/copy` (RFC 8620 §6.3, checklist CPY-05) and the blob access every method that reads
//! blobs (Email/parse, Email/import) goes through.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::jmap::args::Id;
use crate::jmap::dispatch::Call;
use crate::jmap::error::MethodError;

/// Blob access for one user. Blob ids may be stored ids or message-part ids
/// (`crate::mail::blob_id`).
pub trait BlobStore {
    /// Whether `blob_id` exists in `account_id` for `user_id`: referenced by an object of the
    /// account, or uploaded there by that user (BIN-07, BIN-13).
    fn blob_visible(
        &mut self,
        account_id: &str,
        user_id: &str,
        blob_id: &str,
    ) -> Result<bool, MethodError>;

    /// The bytes of `blob_id` if it is visible as above; `None` otherwise.
    fn blob_read(
        &mut self,
        account_id: &str,
        user_id: &str,
        blob_id: &str,
    ) -> Result<Option<Vec<u8>>, MethodError>;

    /// Makes `blob_id` (visible in some other account) exist in `account_id` for `user_id`, as
    /// an upload of theirs would.
    fn blob_copy_into(
        &mut self,
        account_id: &str,
        user_id: &str,
        blob_id: &str,
    ) -> Result<(), MethodError>;
}

/// `Blob/copy`: `fromAccountId`, `accountId`, `blobIds` → `copied`, `notCopied` (CPY-05).
pub fn copy<C: BlobStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Result<Map<String, Value>, MethodError> {
    let from: Id = call.args.required("fromAccountId")?;
    let blob_ids: Vec<Id> = call.args.required("blobIds")?;
    std::mem::take(&mut call.args).finish()?;
    let to = call.account_id().to_owned();
    let user = call.principal.user_id.clone();
    if call.principal.account(&from.0).is_none() {
        return Err(MethodError::FromAccountNotFound);
    }
    let max = call.server.limits.max_objects_in_set;
    if blob_ids.len() as u64 > max {
        return Err(MethodError::RequestTooLarge(format!(
            "at most {max} blobs may be copied at once"
        )));
    }
    let mut copied = BTreeMap::new();
    let mut not_copied = BTreeMap::new();
    for Id(blob_id) in blob_ids {
        if copied.contains_key(&blob_id) || not_copied.contains_key(&blob_id) {
            continue;
        }
        if ctx.blob_visible(&from.0, &user, &blob_id)? {
            ctx.blob_copy_into(&to, &user, &blob_id)?;
            copied.insert(blob_id.clone(), Value::from(blob_id));
        } else {
            not_copied.insert(
                blob_id,
                json!({"type": "notFound", "description": "no such blob in the source account"}),
            );
        }
    }
    let or_null = |m: BTreeMap<String, Value>| {
        if m.is_empty() {
            Value::Null
        } else {
            Value::Object(m.into_iter().collect())
        }
    };
    let mut out = Map::new();
    out.insert("fromAccountId".into(), Value::from(from.0));
    out.insert("accountId".into(), Value::from(to));
    out.insert("copied".into(), or_null(copied));
    out.insert("notCopied".into(), or_null(not_copied));
    Ok(out)
}
