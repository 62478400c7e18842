//! Mailbox/query and Mailbox/queryChanges (RFC 8621 §2.3): the filter, the sort and the trees
//! (`sortAsTree`, `filterAsTree`) over the account's mailboxes, loaded whole.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::{MAX_DEPTH, Mailbox, MailboxSnapshot, MailboxStore};
use crate::jmap::dispatch::Call;
use crate::jmap::error::MethodError;
use crate::jmap::standard::{self, Comparator, Queried};

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
            "name" => standard::collate(c.collation.as_deref(), &a.name, &b.name),
            _ => std::cmp::Ordering::Equal,
        };
        let ord = if c.is_ascending { ord } else { ord.reverse() };
        if ord.is_ne() {
            return ord;
        }
    }
    // MBX-05: ties by sortOrder, then name (in the default collation), then id, so the order
    // is stable (QRY-05).
    a.sort_order
        .cmp(&b.sort_order)
        .then_with(|| standard::collate(None, &a.name, &b.name))
        .then_with(|| a.name.cmp(&b.name))
        .then_with(|| a.id.cmp(&b.id))
}

/// The full, sorted result of a Mailbox query.
pub(super) fn run_query(
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
    // RFC 8621 §2.3: an ancestor comes before its descendants, and two mailboxes that do not
    // share a parent compare as their nearest ancestors that do. So the walk goes over the whole
    // tree, siblings in sort order, and emits the hits: a hit whose parent was filtered out
    // still comes after that parent's earlier siblings' subtrees and before its later ones.
    let mut all: Vec<&Mailbox> = mailboxes.iter().collect();
    all.sort_by(|a, b| compare(a, b, sort));
    let mut children: HashMap<Option<&str>, Vec<&Mailbox>> = HashMap::new();
    for m in &all {
        let parent = m.parent_id.as_deref().filter(|p| by_id.contains_key(p));
        children.entry(parent).or_default().push(m);
    }
    let mut out = Vec::with_capacity(selected.len());
    let mut visited: HashSet<&str> = HashSet::new();
    let mut stack: Vec<&Mailbox> = children
        .get(&None)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .rev()
        .collect();
    while let Some(m) = stack.pop() {
        if !visited.insert(m.id.as_str()) {
            continue;
        }
        if hits.contains(m.id.as_str()) {
            out.push(m.id.clone());
        }
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

    /// In a tree sort a mailbox's place, and in a tree filter whether it is there at all,
    /// depend on its ancestors: a touched mailbox's descendants count as touched (a child
    /// moved away is touched itself).
    fn touched_with_dependents(
        snapshot: &MailboxSnapshot,
        touched: Vec<String>,
        args: &TreeArgs,
    ) -> Vec<String> {
        if !args.sort_as_tree && !args.filter_as_tree {
            return touched;
        }
        with_descendants(&snapshot.mailboxes, touched)
    }
}

/// `ids` and every mailbox below any of them.
pub(super) fn with_descendants(all: &[Mailbox], ids: Vec<String>) -> Vec<String> {
    let mut children: HashMap<&str, Vec<&str>> = HashMap::new();
    for m in all {
        if let Some(parent) = &m.parent_id {
            children.entry(parent.as_str()).or_default().push(&m.id);
        }
    }
    let mut seen: HashSet<String> = ids.iter().cloned().collect();
    let mut stack: Vec<String> = ids.clone();
    let mut out = ids;
    while let Some(id) = stack.pop() {
        for kid in children.get(id.as_str()).into_iter().flatten() {
            if seen.insert((*kid).to_owned()) {
                out.push((*kid).to_owned());
                stack.push((*kid).to_owned());
            }
        }
    }
    out
}
