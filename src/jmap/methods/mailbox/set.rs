//! Mailbox/set (RFC 8621 §2.5): the changes are planned against a snapshot taken inside the
//! write transaction ([`plan_set`]) and applied in that same transaction.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::{
    MAX_DEPTH, MAX_NAME_OCTETS, Mailbox, MailboxCounts, MailboxOp, MailboxSnapshot, MailboxStore,
    ROLES, SERVER_SET, Viewer, read_only, to_json,
};
use crate::jmap::dispatch::Call;
use crate::jmap::error::MethodError;
use crate::jmap::patch::apply_patch;
use crate::jmap::standard::{self, SetError, SetErrorType, SetResponse};

/// Reads a create's or an updated record's client-settable properties into `m`.
/// `original` is the record before the patch (`None` on create), for server-set checks (SET-16).
#[expect(
    clippy::too_many_lines,
    reason = "one arm per Mailbox property (RFC 8621 §2.1)"
)]
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
    let mut plan = Plan {
        snap,
        read_only,
        known_created,
        all: snap.mailboxes.clone(),
        created: HashMap::new(),
        ops: Vec::new(),
        response,
        new_ids,
    };
    plan.create_all(&req.create);
    for (key, patch) in &req.update {
        plan.update(key, patch);
    }
    plan.destroy_all(&req.destroy, remove_emails);
    Ok(plan.ops)
}

/// One Mailbox/set being planned: the mailboxes as they will be after the operations so far.
struct Plan<'a> {
    snap: &'a MailboxSnapshot,
    read_only: bool,
    /// Creation ids of earlier calls in the request.
    known_created: &'a HashMap<String, String>,
    all: Vec<Mailbox>,
    /// Creation ids of this call.
    created: HashMap<String, String>,
    ops: Vec<MailboxOp>,
    response: &'a mut SetResponse,
    new_ids: &'a mut Vec<(String, String)>,
}

impl Plan<'_> {
    /// An id or `#creationId` as the mailbox id it names, if known.
    fn resolve(&self, id: &str) -> Option<String> {
        match id.strip_prefix('#') {
            Some(c) => self
                .created
                .get(c)
                .or_else(|| self.known_created.get(c))
                .cloned(),
            None => Some(id.to_owned()),
        }
    }

    /// Creates may name each other as parents (CID-03): take them in rounds, each round creating
    /// those whose parent is known by then.
    fn create_all(&mut self, create: &[(String, Map<String, Value>)]) {
        let mut pending: Vec<&(String, Map<String, Value>)> = create.iter().collect();
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
                    && !self.created.contains_key(pcid)
                    && !self.known_created.contains_key(pcid)
                    && create.iter().any(|(c, _)| c == pcid)
                {
                    next.push(entry);
                    continue;
                }
                self.create(cid, props);
            }
            if next.is_empty() || next.len() == before {
                for (cid, _) in next {
                    self.response.create_failed(
                        cid,
                        SetError::invalid_properties(&["parentId"], "the parent cannot be created"),
                    );
                }
                break;
            }
            pending = next;
        }
    }

    fn create(&mut self, cid: &str, props: &Map<String, Value>) {
        let mut m = Mailbox {
            id: new_mailbox_id(),
            name: String::new(),
            parent_id: None,
            role: None,
            sort_order: 0,
            is_subscribed: true,
        };
        let result = read_properties(&mut m, props, None, &|p| self.resolve(p)).and_then(|()| {
            if !props.contains_key("name") {
                return Err(SetError::invalid_properties(&["name"], "name is required"));
            }
            check_tree(&m, &self.all)
        });
        if let Err(e) = result {
            self.response.create_failed(cid, e);
            return;
        }
        let full = to_json(&m, MailboxCounts::default(), self.read_only);
        self.response
            .created
            .insert(cid.to_owned(), standard::created_reply(full, props));
        self.created.insert(cid.to_owned(), m.id.clone());
        self.new_ids.push((cid.to_owned(), m.id.clone()));
        self.all.push(m.clone());
        self.ops.push(MailboxOp::Insert(m));
    }

    fn update(&mut self, key: &str, patch: &Map<String, Value>) {
        let Some(id) = self.resolve(key) else {
            self.response.update_failed(key, SetError::not_found());
            return;
        };
        let Some(index) = self.all.iter().position(|m| m.id == id) else {
            self.response.update_failed(key, SetError::not_found());
            return;
        };
        let current = self.all[index].clone();
        let counts = self.snap.counts.get(&id).copied().unwrap_or_default();
        let before = to_json(&current, counts, self.read_only);
        let mut after = before.clone();
        if let Err(e) = apply_patch(&mut after, patch) {
            self.response
                .update_failed(key, SetError::invalid_patch(e.to_string()));
            return;
        }
        let mut m = current.clone();
        let result = patched_properties(&before, &after).and_then(|props| {
            read_properties(&mut m, &props, Some(&before), &|p| self.resolve(p))?;
            check_tree(&m, &self.all)
        });
        match result {
            Ok(()) => {
                self.response.updated.insert(id, Value::Null);
                if m != current {
                    self.all[index] = m.clone();
                    self.ops.push(MailboxOp::Update(m));
                }
            }
            Err(e) => self.response.update_failed(key, e),
        }
    }

    /// Destroys children before parents, so a whole subtree can go in one call.
    fn destroy_all(&mut self, keys: &[String], remove_emails: bool) {
        let mut destroy: Vec<(String, Option<String>)> =
            keys.iter().map(|k| (k.clone(), self.resolve(k))).collect();
        destroy
            .sort_by_key(|(_, id)| std::cmp::Reverse(id.as_deref().map_or(0, |i| self.depth(i))));
        for (key, id) in destroy {
            match self.destroy(id, remove_emails) {
                Ok(id) => self.response.destroyed.push(id),
                Err(e) => self.response.destroy_failed(&key, e),
            }
        }
    }

    fn destroy(&mut self, id: Option<String>, remove_emails: bool) -> Result<String, SetError> {
        let Some(id) = id.filter(|id| self.all.iter().any(|m| &m.id == id)) else {
            return Err(SetError::not_found());
        };
        if self
            .all
            .iter()
            .any(|m| m.id == id && m.role.as_deref() == Some("inbox"))
        {
            return Err(SetError::new(
                SetErrorType::Forbidden,
                "the inbox cannot be destroyed: new mail is delivered there",
            ));
        }
        if self.all.iter().any(|m| m.parent_id.as_deref() == Some(&id)) {
            return Err(SetError::new(
                SetErrorType::MailboxHasChild,
                "the mailbox has child mailboxes",
            ));
        }
        let has_email = self
            .snap
            .counts
            .get(&id)
            .is_some_and(|c| c.total_emails > 0);
        if has_email && !remove_emails {
            return Err(SetError::new(
                SetErrorType::MailboxHasEmail,
                "the mailbox holds emails; set onDestroyRemoveEmails to remove them",
            ));
        }
        self.all.retain(|m| m.id != id);
        self.ops.push(MailboxOp::Delete {
            id: id.clone(),
            remove_emails: has_email,
        });
        Ok(id)
    }

    /// How many ancestors a mailbox has (bounded, in case of a cycle).
    fn depth(&self, id: &str) -> usize {
        let parent_of = |id: &str| {
            self.all
                .iter()
                .find(|m| m.id == id)
                .and_then(|m| m.parent_id.clone())
        };
        let mut d = 0;
        let mut cur = parent_of(id);
        while let Some(p) = cur {
            d += 1;
            if d > MAX_DEPTH * 2 {
                break;
            }
            cur = parent_of(&p);
        }
        d
    }
}

/// The properties a patch changed, with a removed property reset to its default (SET-14).
fn patched_properties(
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
fn new_mailbox_id() -> String {
    crate::jmap::args::new_id('m')
}
