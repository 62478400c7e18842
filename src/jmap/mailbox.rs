//! Mailbox (RFC 8621 §2): get, changes, query, queryChanges, set.
//!
//! Mailboxes of one account are few, so /set validates against an in-memory snapshot taken inside
//! the write transaction: the store hands the snapshot to [`plan_set`]'s decision and applies the
//! operations it returns, all in one transaction.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value, json};

use super::changes::ChangesPage;
use super::dispatch::Call;
use super::error::MethodError;
use super::patch::apply_patch;
use super::standard::{
    self, Comparator, DataType, Listed, Queried, SetError, SetErrorType, SetResponse,
};

/// The push and state type name.
pub const DATA_TYPE: &str = "Mailbox";

/// Every Mailbox property (MBX-01).
pub const PROPERTIES: &[&str] = &[
    "id",
    "name",
    "parentId",
    "role",
    "sortOrder",
    "totalEmails",
    "unreadEmails",
    "totalThreads",
    "unreadThreads",
    "myRights",
    "isSubscribed",
];

/// The server-computed counts (RFC 8621 §2.2 `updatedProperties`).
pub const COUNT_PROPERTIES: &[&str] = &[
    "totalEmails",
    "unreadEmails",
    "totalThreads",
    "unreadThreads",
];

const SERVER_SET: &[&str] = &[
    "id",
    "totalEmails",
    "unreadEmails",
    "totalThreads",
    "unreadThreads",
    "myRights",
];

/// Roles from the IANA IMAP Mailbox Name Attributes registry, lowercased (MBX-04).
pub const ROLES: &[&str] = &[
    "all",
    "archive",
    "drafts",
    "flagged",
    "important",
    "inbox",
    "junk",
    "sent",
    "subscribed",
    "trash",
    "snoozed",
    "scheduled",
    "memos",
];

/// The mailboxes every new account gets: (role, name).
pub const DEFAULT_MAILBOXES: &[(&str, &str)] = &[
    ("inbox", "Inbox"),
    ("drafts", "Drafts"),
    ("sent", "Sent"),
    ("archive", "Archive"),
    ("junk", "Junk"),
    ("trash", "Trash"),
];

/// Mailbox names are at most this many octets (advertised as `maxSizeMailboxName`).
pub const MAX_NAME_OCTETS: usize = 255;
/// Nesting limit (advertised as `maxMailboxDepth`).
pub const MAX_DEPTH: usize = 10;

/// A stored mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox {
    pub id: String,
    pub name: String,
    pub parent_id: Option<String>,
    pub role: Option<String>,
    pub sort_order: i64,
    pub is_subscribed: bool,
}

/// A mailbox's counts (MBX-06).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MailboxCounts {
    pub total_emails: u64,
    pub unread_emails: u64,
    pub total_threads: u64,
    pub unread_threads: u64,
}

/// An account's mailboxes as of one state.
#[derive(Clone, Debug, Default)]
pub struct MailboxSnapshot {
    pub state: String,
    pub mailboxes: Vec<Mailbox>,
    pub counts: HashMap<String, MailboxCounts>,
}

/// A change to apply in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MailboxOp {
    Insert(Mailbox),
    Update(Mailbox),
    /// Destroy a mailbox; with `remove_emails`, take its emails out of it first, destroying those
    /// left in no mailbox (RFC 8621 §2.5 `onDestroyRemoveEmails`).
    Delete {
        id: String,
        remove_emails: bool,
    },
}

/// Whose view of an account's mailboxes: `isSubscribed` is stored per user (MBX-10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Viewer {
    pub user_id: String,
    /// The user owns the account (their value is the mailbox's own); others default to false.
    pub is_owner: bool,
}

impl Viewer {
    /// The user making `call`, on the call's account.
    pub fn of(call: &Call<'_>) -> Viewer {
        Viewer {
            user_id: call.principal.user_id.clone(),
            is_owner: call.account.as_ref().is_some_and(|a| a.is_personal),
        }
    }
}

/// What the Mailbox methods need from the store.
pub trait MailboxStore {
    /// The account's mailboxes as `viewer` sees them, counts and Mailbox state.
    fn mailbox_snapshot(
        &mut self,
        account_id: &str,
        viewer: &Viewer,
    ) -> Result<MailboxSnapshot, MethodError>;
    /// In one write transaction: takes a snapshot, lets `decide` return the operations, applies
    /// them. Returns the Mailbox state before and after. An `Err` from `decide` rolls back.
    fn mailbox_write(
        &mut self,
        account_id: &str,
        viewer: &Viewer,
        decide: &mut dyn FnMut(&MailboxSnapshot) -> Result<Vec<MailboxOp>, MethodError>,
    ) -> Result<(String, String), MethodError>;
}

fn rights(read_only: bool) -> Value {
    let w = !read_only;
    json!({
        "mayReadItems": true, "mayAddItems": w, "mayRemoveItems": w, "maySetSeen": w, "maySetKeywords": w,
        "mayCreateChild": w, "mayRename": w, "mayDelete": w, "maySubmit": w,
    })
}

/// The full JSON form of a mailbox.
pub fn to_json(m: &Mailbox, counts: MailboxCounts, read_only: bool) -> Map<String, Value> {
    let v = json!({
        "id": m.id,
        "name": m.name,
        "parentId": m.parent_id,
        "role": m.role,
        "sortOrder": m.sort_order,
        "totalEmails": counts.total_emails,
        "unreadEmails": counts.unread_emails,
        "totalThreads": counts.total_threads,
        "unreadThreads": counts.unread_threads,
        "myRights": rights(read_only),
        "isSubscribed": m.is_subscribed,
    });
    match v {
        Value::Object(o) => o,
        _ => Map::new(),
    }
}

fn read_only(call: &Call<'_>) -> bool {
    call.account.as_ref().is_some_and(|a| a.read_only)
}

impl DataType for Mailbox {
    const NAME: &'static str = DATA_TYPE;

    /// MBX-12: `updatedProperties` names the counts when nothing else changed.
    fn extend_changes(page: &ChangesPage, response: &mut Map<String, Value>) {
        let updated_properties = if page.only_counts_updated {
            json!(COUNT_PROPERTIES)
        } else {
            Value::Null
        };
        response.insert("updatedProperties".into(), updated_properties);
    }
}

/// Mailbox/get (RFC 8621 §2.1; MBX-11: `ids: null` allowed) over the account's mailboxes.
impl<C: MailboxStore> Listed<C> for Mailbox {
    const PROPERTIES: &'static [&'static str] = PROPERTIES;
    type Snapshot = MailboxSnapshot;

    fn load(ctx: &mut C, call: &Call<'_>) -> Result<MailboxSnapshot, MethodError> {
        ctx.mailbox_snapshot(call.account_id(), &Viewer::of(call))
    }

    fn state(snapshot: &MailboxSnapshot) -> &str {
        &snapshot.state
    }

    fn records(snapshot: &MailboxSnapshot) -> &[Mailbox] {
        &snapshot.mailboxes
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn to_json(&self, snapshot: &MailboxSnapshot, call: &Call<'_>) -> Map<String, Value> {
        let counts = snapshot.counts.get(&self.id).copied().unwrap_or_default();
        to_json(self, counts, read_only(call))
    }
}

// ---------------------------------------------------------------------------------------------
// query

fn matches(filter: &Value, m: &Mailbox) -> Result<bool, MethodError> {
    standard::filter_matches(filter, &|f| condition_matches(f, m))
}

fn condition_matches(f: &Map<String, Value>, m: &Mailbox) -> Result<bool, MethodError> {
    for (key, value) in f {
        let ok = match (key.as_str(), value) {
            ("parentId", Value::Null) => m.parent_id.is_none(),
            ("parentId", Value::String(p)) => m.parent_id.as_deref() == Some(p),
            ("name", Value::String(n)) => m.name.to_lowercase().contains(&n.to_lowercase()),
            ("role", Value::Null) => m.role.is_none(),
            ("role", Value::String(r)) => m.role.as_deref() == Some(r),
            ("hasAnyRole", Value::Bool(b)) => m.role.is_some() == *b,
            ("isSubscribed", Value::Bool(b)) => m.is_subscribed == *b,
            ("parentId" | "name" | "role" | "hasAnyRole" | "isSubscribed", _) => {
                return Err(MethodError::InvalidArguments(format!(
                    "filter {key} has the wrong type"
                )));
            }
            _ => {
                return Err(MethodError::UnsupportedFilter(format!(
                    "Mailbox cannot be filtered by {key:?}"
                )));
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn compare(a: &Mailbox, b: &Mailbox, sort: &[Comparator]) -> std::cmp::Ordering {
    for c in sort {
        let ord = match c.property.as_str() {
            "sortOrder" => a.sort_order.cmp(&b.sort_order),
            "name" => match c.collation.as_deref() {
                Some("i;ascii-numeric") | Some("i;octet") => a.name.cmp(&b.name),
                _ => a.name.to_lowercase().cmp(&b.name.to_lowercase()),
            },
            _ => std::cmp::Ordering::Equal,
        };
        let ord = if c.is_ascending { ord } else { ord.reverse() };
        if ord.is_ne() {
            return ord;
        }
    }
    // MBX-05: ties by name; then id, so the order is stable (QRY-05).
    a.sort_order
        .cmp(&b.sort_order)
        .then_with(|| a.name.cmp(&b.name))
        .then_with(|| a.id.cmp(&b.id))
}

/// The full, sorted result of a Mailbox query.
fn run_query(
    mailboxes: &[Mailbox],
    filter: Option<&Value>,
    sort: &[Comparator],
    sort_as_tree: bool,
    filter_as_tree: bool,
) -> Result<Vec<String>, MethodError> {
    for c in sort {
        if !matches!(c.property.as_str(), "sortOrder" | "name") || !c.extra.is_empty() {
            return Err(MethodError::UnsupportedSort(format!(
                "Mailbox cannot be sorted by {:?}",
                c.property
            )));
        }
    }
    let mut hits: HashSet<&str> = HashSet::new();
    for m in mailboxes {
        if filter.map(|f| matches(f, m)).transpose()?.unwrap_or(true) {
            hits.insert(&m.id);
        }
    }
    let by_id: HashMap<&str, &Mailbox> = mailboxes.iter().map(|m| (m.id.as_str(), m)).collect();
    if filter_as_tree {
        // RFC 8621 §2.3: a mailbox matches only if all its ancestors match too.
        let keep: HashSet<&str> = hits
            .iter()
            .copied()
            .filter(|id| {
                let mut cur = by_id.get(id).and_then(|m| m.parent_id.as_deref());
                let mut depth = 0;
                while let Some(p) = cur {
                    if !hits.contains(p) || depth > MAX_DEPTH + 1 {
                        return false;
                    }
                    cur = by_id.get(p).and_then(|m| m.parent_id.as_deref());
                    depth += 1;
                }
                true
            })
            .collect();
        hits = keep;
    }
    let mut selected: Vec<&Mailbox> = mailboxes
        .iter()
        .filter(|m| hits.contains(m.id.as_str()))
        .collect();
    selected.sort_by(|a, b| compare(a, b, sort));
    if !sort_as_tree {
        return Ok(selected.into_iter().map(|m| m.id.clone()).collect());
    }
    // Parents before children, siblings in sort order.
    let mut children: HashMap<Option<&str>, Vec<&Mailbox>> = HashMap::new();
    for m in &selected {
        let parent = m.parent_id.as_deref().filter(|p| hits.contains(p));
        children.entry(parent).or_default().push(m);
    }
    let mut out = Vec::with_capacity(selected.len());
    let mut stack: Vec<&Mailbox> = children
        .get(&None)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .rev()
        .collect();
    while let Some(m) = stack.pop() {
        out.push(m.id.clone());
        if let Some(kids) = children.get(&Some(m.id.as_str())) {
            stack.extend(kids.iter().rev());
        }
    }
    Ok(out)
}

/// Mailbox/query's own arguments (RFC 8621 §2.3).
pub struct TreeArgs {
    sort_as_tree: bool,
    filter_as_tree: bool,
}

/// Mailbox/query and Mailbox/queryChanges (RFC 8621 §2.3, MBX-13).
impl<C: MailboxStore> Queried<C> for Mailbox {
    type QueryArgs = TreeArgs;

    fn query_args(call: &mut Call<'_>) -> Result<TreeArgs, MethodError> {
        Ok(TreeArgs {
            sort_as_tree: call.args.defaulted("sortAsTree", false)?,
            filter_as_tree: call.args.defaulted("filterAsTree", false)?,
        })
    }

    fn query(
        snapshot: &MailboxSnapshot,
        filter: Option<&Value>,
        sort: &[Comparator],
        args: &TreeArgs,
    ) -> Result<Vec<String>, MethodError> {
        run_query(
            &snapshot.mailboxes,
            filter,
            sort,
            args.sort_as_tree,
            args.filter_as_tree,
        )
    }
}

// ---------------------------------------------------------------------------------------------
// set

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
fn check_tree(m: &Mailbox, all: &[Mailbox]) -> Result<(), SetError> {
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
    super::args::new_id('m')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(id: &str, name: &str, parent: Option<&str>, sort: i64) -> Mailbox {
        Mailbox {
            id: id.into(),
            name: name.into(),
            parent_id: parent.map(Into::into),
            role: None,
            sort_order: sort,
            is_subscribed: true,
        }
    }

    #[test]
    fn a_tree_sort_puts_parents_before_children_and_siblings_in_order() {
        let all = vec![
            mb("c", "child", Some("b"), 0),
            mb("b", "b", None, 2),
            mb("a", "a", None, 1),
            mb("d", "alpha", Some("b"), 0),
        ];
        let ids = run_query(&all, None, &[], true, false).unwrap();
        assert_eq!(ids, vec!["a", "b", "d", "c"]);
    }

    #[test]
    fn filter_as_tree_drops_mailboxes_whose_ancestors_do_not_match() {
        let all = vec![
            mb("p", "x-parent", None, 0),
            mb("c", "x-child", Some("p"), 0),
            mb("o", "other", None, 0),
            mb("g", "x-grand", Some("o"), 0),
        ];
        let f = json!({"name": "x-"});
        let mut ids = run_query(&all, Some(&f), &[], false, true).unwrap();
        ids.sort();
        assert_eq!(ids, vec!["c", "p"]);
    }

    #[test]
    fn cycles_and_sibling_name_clashes_are_refused() {
        let all = vec![mb("a", "a", None, 0), mb("b", "b", Some("a"), 0)];
        let mut moved = all[0].clone();
        moved.parent_id = Some("b".into());
        assert_eq!(
            check_tree(&moved, &all).unwrap_err().kind,
            SetErrorType::InvalidProperties
        );
        let clash = mb("n", "a", None, 0);
        assert_eq!(
            check_tree(&clash, &all).unwrap_err().properties,
            Some(vec!["name".to_owned()])
        );
    }

    #[test]
    fn unknown_filter_properties_are_unsupported() {
        let all = vec![mb("a", "a", None, 0)];
        let e = run_query(&all, Some(&json!({"color": "red"})), &[], false, false).unwrap_err();
        assert_eq!(e.wire_type(), "unsupportedFilter");
    }
}
