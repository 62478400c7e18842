//! Mailbox/set (RFC 8621 §2.5): the changes are planned against a snapshot taken inside the
//! write transaction ([`plan_set`]) and applied in that same transaction.

use super::{
    MAX_DEPTH, MAX_NAME_OCTETS, Mailbox, MailboxCounts, MailboxOp, MailboxSnapshot, MailboxStore,
    ROLES, SERVER_SET, Viewer, read_only, to_json,
};
use crate::jmap::dispatch::Call;
use crate::jmap::error::MethodError;
use crate::jmap::patch::apply_patch;
use crate::jmap::standard::{self, SetError, SetErrorType, SetResponse};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// Reads a create's or an updated record's client-settable properties into `m`.
/// `original` is the record before the patch (`None` on create), for server-set checks (SET-16).
fn read_properties(
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
                    m.name = n.to_owned()
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
        if let Some(expected) = &req.if_in_state
            && *expected != snap.state
        {
            return Err(MethodError::StateMismatch);
        }
        plan_set(
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

/// Decides a Mailbox/set against `snap`: fills `response` and returns the store operations.
fn plan_set(
    snap: &MailboxSnapshot,
    req: &standard::SetRequest,
    remove_emails: bool,
    read_only: bool,
    known_created: &HashMap<String, String>,
    response: &mut SetResponse,
    new_ids: &mut Vec<(String, String)>,
) -> Result<Vec<MailboxOp>, MethodError> {
    let mut all = snap.mailboxes.clone();
    let mut ops = Vec::new();
    let mut created: HashMap<String, String> = HashMap::new();

    // Creates may name each other as parents (CID-03): take them in rounds, each round creating
    // those whose parent is known by then.
    let mut pending: Vec<&(String, Map<String, Value>)> = req.create.iter().collect();
    loop {
        let before = pending.len();
        let mut next = Vec::new();
        for entry in pending {
            let (cid, props) = entry;
            let parent_ref = props
                .get("parentId")
                .and_then(Value::as_str)
                .and_then(|p| p.strip_prefix('#'));
            if let Some(pcid) = parent_ref
                && !created.contains_key(pcid)
                && !known_created.contains_key(pcid)
                && req.create.iter().any(|(c, _)| c == pcid)
            {
                next.push(entry);
                continue;
            }
            let resolve = |p: &str| match p.strip_prefix('#') {
                Some(c) => created.get(c).or_else(|| known_created.get(c)).cloned(),
                None => Some(p.to_owned()),
            };
            let mut m = Mailbox {
                id: new_mailbox_id(),
                name: String::new(),
                parent_id: None,
                role: None,
                sort_order: 0,
                is_subscribed: true,
            };
            let result = read_properties(&mut m, props, None, &resolve).and_then(|()| {
                if !props.contains_key("name") {
                    return Err(SetError::invalid_properties(&["name"], "name is required"));
                }
                check_tree(&m, &all)
            });
            match result {
                Ok(()) => {
                    let mut reply = Map::new();
                    reply.insert("id".into(), json!(m.id));
                    let full = to_json(&m, MailboxCounts::default(), read_only);
                    for (k, v) in full {
                        if k != "id" && !props.contains_key(&k) {
                            reply.insert(k, v);
                        }
                    }
                    response.created.insert(cid.clone(), Value::Object(reply));
                    created.insert(cid.clone(), m.id.clone());
                    new_ids.push((cid.clone(), m.id.clone()));
                    all.push(m.clone());
                    ops.push(MailboxOp::Insert(m));
                }
                Err(e) => response.create_failed(cid, e),
            }
        }
        if next.is_empty() || next.len() == before {
            for (cid, _) in next {
                response.create_failed(
                    cid,
                    SetError::invalid_properties(&["parentId"], "the parent cannot be created"),
                );
            }
            break;
        }
        pending = next;
    }

    let resolve_key = |id: &str| match id.strip_prefix('#') {
        Some(c) => created.get(c).or_else(|| known_created.get(c)).cloned(),
        None => Some(id.to_owned()),
    };

    for (key, patch) in &req.update {
        let Some(id) = resolve_key(key) else {
            response.update_failed(key, SetError::not_found());
            continue;
        };
        let Some(index) = all.iter().position(|m| m.id == id) else {
            response.update_failed(key, SetError::not_found());
            continue;
        };
        let current = all[index].clone();
        let counts = snap.counts.get(&id).copied().unwrap_or_default();
        let before = to_json(&current, counts, read_only);
        let mut after = before.clone();
        if let Err(e) = apply_patch(&mut after, patch) {
            response.update_failed(key, SetError::invalid_patch(e.to_string()));
            continue;
        }
        let changed: Map<String, Value> = after
            .iter()
            .filter(|(k, v)| before.get(*k) != Some(v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let removed: Vec<String> = before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .cloned()
            .collect();
        let mut props = changed;
        for k in removed {
            // A null patch resets to the default (SET-14).
            let default = match k.as_str() {
                "parentId" | "role" => Value::Null,
                "sortOrder" => json!(0),
                "isSubscribed" => json!(true),
                other => {
                    response.update_failed(
                        key,
                        SetError::invalid_properties(
                            &[other],
                            format!("{other} cannot be removed"),
                        ),
                    );
                    props.clear();
                    continue;
                }
            };
            props.insert(k, default);
        }
        if response.not_updated.contains_key(key) {
            continue;
        }
        let resolve = |p: &str| resolve_key(p);
        let mut m = current.clone();
        let result = read_properties(&mut m, &props, Some(&before), &resolve)
            .and_then(|()| check_tree(&m, &all));
        match result {
            Ok(()) => {
                response.updated.insert(id.clone(), Value::Null);
                if m != current {
                    all[index] = m.clone();
                    ops.push(MailboxOp::Update(m));
                }
            }
            Err(e) => response.update_failed(key, e),
        }
    }

    // Destroy children before parents, so a whole subtree can go in one call.
    let depth = |id: &str| {
        let mut d = 0;
        let mut cur = all
            .iter()
            .find(|m| m.id == id)
            .and_then(|m| m.parent_id.clone());
        while let Some(p) = cur {
            d += 1;
            cur = all
                .iter()
                .find(|m| m.id == p)
                .and_then(|m| m.parent_id.clone());
            if d > MAX_DEPTH * 2 {
                break;
            }
        }
        d
    };
    let mut destroy: Vec<(String, Option<String>)> = req
        .destroy
        .iter()
        .map(|k| (k.clone(), resolve_key(k)))
        .collect();
    destroy.sort_by_key(|(_, id)| std::cmp::Reverse(id.as_deref().map(depth).unwrap_or(0)));
    for (key, id) in destroy {
        let Some(id) = id.filter(|id| all.iter().any(|m| &m.id == id)) else {
            response.destroy_failed(&key, SetError::not_found());
            continue;
        };
        if all.iter().any(|m| m.parent_id.as_deref() == Some(&id)) {
            response.destroy_failed(
                &key,
                SetError::new(
                    SetErrorType::MailboxHasChild,
                    "the mailbox has child mailboxes",
                ),
            );
            continue;
        }
        let has_email = snap.counts.get(&id).is_some_and(|c| c.total_emails > 0);
        if has_email && !remove_emails {
            response.destroy_failed(
                &key,
                SetError::new(
                    SetErrorType::MailboxHasEmail,
                    "the mailbox holds emails; set onDestroyRemoveEmails to remove them",
                ),
            );
            continue;
        }
        all.retain(|m| m.id != id);
        ops.push(MailboxOp::Delete {
            id: id.clone(),
            remove_emails: has_email,
        });
        response.destroyed.push(id);
    }
    Ok(ops)
}

/// A fresh mailbox id (`m` + 15 of `[a-z0-9]`).
fn new_mailbox_id() -> String {
    crate::jmap::args::new_id('m')
}
