//! Email/set (RFC 8621 §4.6): creates, keyword and mailbox updates, destroys.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{EmailOp, EmailStore, OpResult, read_update, resolve};
use crate::jmap::dispatch::Call;
use crate::jmap::error::MethodError;
use crate::jmap::standard::{self, SetError, SetResponse};

/// `Email/set` (RFC 8621 §4.6, ESET-01..06).
pub fn set<C: EmailStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Result<Map<String, Value>, MethodError> {
    let req = standard::parse_set(call)?;
    std::mem::take(&mut call.args).finish()?;
    let account_id = call.account_id().to_owned();
    let mut response = SetResponse::default();
    let mut ops = Vec::new();
    // Ids of this call's creates are chosen here, so updates and destroys in the same call may
    // name them (CID-04).
    let mut created_here: HashMap<String, String> = call.created_ids.clone();
    let user = call.principal.user_id.clone();
    for (cid, props) in &req.create {
        let mut read_blob = |blob_id: &str| ctx.email_blob(&account_id, &user, blob_id);
        match crate::jmap::methods::email::create::read_create(
            props,
            &created_here,
            &mut read_blob,
        )? {
            Ok(email) => {
                created_here.insert(cid.clone(), email.id.clone());
                ops.push(EmailOp::Create {
                    creation_id: cid.clone(),
                    email,
                });
            }
            Err(e) => response.create_failed(cid, e),
        }
    }
    let resolve_key = |k: &str| resolve(&created_here, k);
    for (key, patch) in &req.update {
        let Some(id) = resolve_key(key) else {
            response.update_failed(key, SetError::not_found());
            continue;
        };
        match read_update(patch, &created_here) {
            Ok(p) => ops.push(EmailOp::Update {
                key: key.clone(),
                id,
                mailbox_ids: p.mailbox_ids,
                keywords: p.keywords,
                server_set: p.server_set,
            }),
            Err(e) => response.update_failed(key, e),
        }
    }
    for key in &req.destroy {
        match resolve_key(key) {
            Some(id) => ops.push(EmailOp::Destroy {
                key: key.clone(),
                id,
            }),
            None => response.destroy_failed(key, SetError::not_found()),
        }
    }
    let outcome = ctx.email_write(&account_id, &user, req.if_in_state.as_deref(), ops)?;
    for r in outcome.results {
        match r {
            OpResult::Created(cid, c) => {
                call.created_ids.insert(cid.clone(), c.id.clone());
                response.created.insert(cid, c.to_json());
            }
            OpResult::NotCreated(cid, e) => response.create_failed(&cid, e),
            OpResult::Updated(id) => {
                response.updated.insert(id, Value::Null);
            }
            OpResult::NotUpdated(key, e) => response.update_failed(&key, e),
            OpResult::Destroyed(id) => response.destroyed.push(id),
            OpResult::NotDestroyed(key, e) => response.destroy_failed(&key, e),
        }
    }
    Ok(response.to_response(
        Some(&account_id),
        Some((outcome.old_state, outcome.new_state)),
    ))
}
