//! Mailbox/set (RFC 8621 §2.5): the changes are planned against a snapshot taken inside the
//! write transaction ([`super::plan::plan_set`]) and applied in that same transaction.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::{
    MAX_DEPTH, MAX_NAME_OCTETS, Mailbox, MailboxStore, ROLES, SERVER_SET, Viewer, read_only,
};
use crate::jmap::dispatch::Call;
use crate::jmap::error::MethodError;
use crate::jmap::standard::{self, SetError, SetErrorType, SetResponse};

/// Reads a create's or an updated record's client-settable properties into `m`.
/// `original` is the record before the patch (`None` on create), for server-set checks (SET-16).
#[expect(
    clippy::too_many_lines,
    reason = "one arm per Mailbox property (RFC 8621 §2.1)"
)]
pub(super) fn read_properties(
    m: &mut Mailbox,
    props: &Map<String, Value>,
    original: Option<&Map<String, Value>>,
    resolve: &dyn Fn(&str) -> Option<String>,
) -> Result<(), SetError> {
    for (key, value) in props {
        match key.as_str() {
            "name" => match value.as_str() {
                Some(n)
                    if !n.is_empty()
                        && n.len() <= MAX_NAME_OCTETS
                        && !n.chars().any(char::is_control) =>
                {
                    m.name = n.to_owned();
                }
                _ => {
                    return Err(SetError::invalid_properties(
                        &["name"],
                        format!(
                            "a name is 1 to {MAX_NAME_OCTETS} octets without control characters"
                        ),
                    ));
                }
            },
            "parentId" => match value {
                Value::Null => m.parent_id = None,
                Value::String(p) => match resolve(p) {
                    Some(id) => m.parent_id = Some(id),
                    None => {
                        return Err(SetError::invalid_properties(
                            &["parentId"],
                            format!("unknown creation id {p:?}"),
                        ));
                    }
                },
                _ => {
                    return Err(SetError::invalid_properties(
                        &["parentId"],
                        "parentId is an Id or null",
                    ));
                }
            },
            // Mail is delivered to the mailbox whose role is inbox: without one, every message
            // for the user would wait at the MTA until it gave up.
            "role"
                if original.and_then(|o| o.get("role")) == Some(&json!("inbox"))
                    && value != "inbox" =>
            {
                return Err(SetError::new(
                    SetErrorType::Forbidden,
                    "the inbox keeps its role: new mail is delivered there",
                ));
            }
            "role" => match value {
                Value::Null => m.role = None,
                Value::String(r) if ROLES.contains(&r.as_str()) => m.role = Some(r.clone()),
                _ => {
                    return Err(SetError::invalid_properties(
                        &["role"],
                        "not a known role (RFC 8621 §2, IANA registry)",
                    ));
                }
            },
            "sortOrder" => match value.as_u64() {
                Some(n) if n < (1 << 31) => m.sort_order = n as i64,
                _ => {
                    return Err(SetError::invalid_properties(
                        &["sortOrder"],
                        "sortOrder is an integer from 0 to 2^31-1",
                    ));
                }
            },
            "isSubscribed" => match value.as_bool() {
                Some(b) => m.is_subscribed = b,
                None => {
                    return Err(SetError::invalid_properties(
                        &["isSubscribed"],
                        "isSubscribed is a boolean",
                    ));
                }
            },
            k if SERVER_SET.contains(&k) => {
                // SET-16: allowed on update only if unchanged.
                if original.and_then(|o| o.get(k)) != Some(value) {
                    return Err(SetError::invalid_properties(
                        &[k],
                        format!("{k} is set by the server"),
                    ));
                }
            }
            k => {
                return Err(SetError::invalid_properties(
                    &[k],
                    format!("Mailbox has no property {k:?}"),
                ));
            }
        }
    }
    Ok(())
}

/// Checks `m` against the other mailboxes (MBX-02..MBX-04): parent exists, no cycle, depth,
/// sibling names and roles unique.
pub(super) fn check_tree(m: &Mailbox, all: &[Mailbox]) -> Result<(), SetError> {
    let by_id: HashMap<&str, &Mailbox> = all.iter().map(|x| (x.id.as_str(), x)).collect();
    let mut depth = 1;
    let mut cur = m.parent_id.clone();
    while let Some(p) = cur {
        if p == m.id {
            return Err(SetError::invalid_properties(
                &["parentId"],
                "a mailbox cannot be its own ancestor",
            ));
        }
        let Some(parent) = by_id.get(p.as_str()) else {
            return Err(SetError::invalid_properties(
                &["parentId"],
                format!("no mailbox {p:?}"),
            ));
        };
        depth += 1;
        if depth > MAX_DEPTH {
            return Err(SetError::invalid_properties(
                &["parentId"],
                format!("mailboxes nest at most {MAX_DEPTH} deep"),
            ));
        }
        cur = parent.parent_id.clone();
    }
    if all
        .iter()
        .any(|x| x.id != m.id && x.parent_id == m.parent_id && x.name == m.name)
    {
        return Err(SetError::invalid_properties(
            &["name"],
            format!("a sibling is already called {:?}", m.name),
        ));
    }
    if let Some(role) = &m.role
        && all
            .iter()
            .any(|x| x.id != m.id && x.role.as_ref() == Some(role))
    {
        return Err(SetError::invalid_properties(
            &["role"],
            format!("another mailbox has role {role}"),
        ));
    }
    Ok(())
}

/// `Mailbox/set` (RFC 8621 §2.5, MBX-14).
pub fn set<C: MailboxStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Result<Map<String, Value>, MethodError> {
    let req = standard::parse_set(call)?;
    let remove_emails = call.args.defaulted("onDestroyRemoveEmails", false)?;
    std::mem::take(&mut call.args).finish()?;
    let account_id = call.account_id().to_owned();
    let ro = read_only(call);
    let mut response = SetResponse::default();
    let mut new_ids: Vec<(String, String)> = Vec::new();
    let known_created = call.created_ids.clone();
    let viewer = Viewer::of(call);
    let (old_state, new_state) = ctx.mailbox_write(&account_id, &viewer, &mut |snap| {
        response = SetResponse::default();
        new_ids.clear();
        req.check_state(&snap.state)?;
        super::plan::plan_set(
            snap,
            &req,
            remove_emails,
            ro,
            &known_created,
            &mut response,
            &mut new_ids,
        )
    })?;
    for (cid, id) in new_ids {
        call.created_ids.insert(cid, id);
    }
    Ok(response.to_response(Some(&account_id), Some((old_state, new_state))))
}

/// The properties a patch changed, with a removed property reset to its default (SET-14).
pub(super) fn patched_properties(
    before: &Map<String, Value>,
    after: &Map<String, Value>,
) -> Result<Map<String, Value>, SetError> {
    let (mut props, removed) = standard::patch_diff(before, after);
    for k in removed {
        let default = match k.as_str() {
            "parentId" | "role" => Value::Null,
            "sortOrder" => json!(0),
            "isSubscribed" => json!(true),
            other => {
                return Err(SetError::invalid_properties(
                    &[other],
                    format!("{other} cannot be removed"),
                ));
            }
        };
        props.insert(k, default);
    }
    Ok(props)
}

/// A fresh mailbox id (`m` + 15 of `[a-z0-9]`).
pub(super) fn new_mailbox_id() -> String {
    crate::jmap::args::new_id('m')
}
