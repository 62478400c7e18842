//! Planning one Mailbox/set: which creates, updates and destroys succeed, and the store
//! operations that make them.
//!
//! RFC 8620 §5.3 asks only that the state *after* the whole call be valid (SET-06): a client may
//! move a role from one mailbox to another, swap two names or re-parent a subtree in one call, in
//! any order. So each operation is first checked on its own (properties, patch, existence), all of
//! them are applied to a copy of the mailboxes, and only then is the tree checked (parents, cycles,
//! depth, sibling names, unique roles, children of destroyed mailboxes). An operation that leaves
//! the result invalid is undone and reported; undoing one can invalidate another (a child whose
//! parent's creation failed), so the check repeats until nothing more fails. Later operations are
//! checked first: of two creates with the same name, the first one given stays.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::set::{check_tree, new_mailbox_id, patched_properties, read_properties};
use super::{MAX_DEPTH, Mailbox, MailboxCounts, MailboxOp, MailboxSnapshot, to_json};
use crate::jmap::error::MethodError;
use crate::jmap::patch::apply_patch;
use crate::jmap::standard::{self, SetError, SetErrorType, SetResponse};

/// Decides a Mailbox/set against `snap`: fills `response` and returns the store operations.
pub(super) fn plan_set(
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
        changes: Vec::new(),
        response,
        new_ids,
    };
    plan.create_all(&req.create);
    for (key, patch) in &req.update {
        plan.update(key, patch);
    }
    plan.destroy_all(&req.destroy, remove_emails);
    plan.undo_what_leaves_the_tree_invalid();
    Ok(plan.operations())
}

/// One operation applied to the planned mailboxes, with what undoing it needs.
enum Change {
    Created {
        cid: String,
        id: String,
    },
    Updated {
        key: String,
        id: String,
        before: Mailbox,
    },
    Destroyed {
        key: String,
        before: Mailbox,
        remove_emails: bool,
    },
}

/// One Mailbox/set being planned: the mailboxes as they will be after every operation.
struct Plan<'a> {
    snap: &'a MailboxSnapshot,
    read_only: bool,
    /// Creation ids of earlier calls in the request.
    known_created: &'a HashMap<String, String>,
    all: Vec<Mailbox>,
    /// Creation ids of this call.
    created: HashMap<String, String>,
    /// What was applied to `all`, in the order given; undone ones are removed.
    changes: Vec<Change>,
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

    fn find(&self, id: &str) -> Option<&Mailbox> {
        self.all.iter().find(|m| m.id == id)
    }

    /// Every create; they may name each other as parents (CID-03), so all ids are assigned
    /// first.
    fn create_all(&mut self, create: &[(String, Map<String, Value>)]) {
        for (cid, _) in create {
            self.created.insert(cid.clone(), new_mailbox_id());
        }
        for (cid, props) in create {
            self.create(cid, props);
        }
    }

    fn create(&mut self, cid: &str, props: &Map<String, Value>) {
        let id = self
            .created
            .get(cid)
            .cloned()
            .unwrap_or_else(new_mailbox_id);
        let mut m = Mailbox {
            id: id.clone(),
            name: String::new(),
            parent_id: None,
            role: None,
            sort_order: 0,
            is_subscribed: true,
        };
        let result = read_properties(&mut m, props, None, &|p| self.resolve(p)).and_then(|()| {
            if props.contains_key("name") {
                Ok(())
            } else {
                Err(SetError::invalid_properties(&["name"], "name is required"))
            }
        });
        if let Err(e) = result {
            self.created.remove(cid);
            self.response.create_failed(cid, e);
            return;
        }
        let full = to_json(&m, MailboxCounts::default(), self.read_only);
        self.response
            .created
            .insert(cid.to_owned(), standard::created_reply(full, props));
        self.new_ids.push((cid.to_owned(), id.clone()));
        self.all.push(m);
        self.changes.push(Change::Created {
            cid: cid.to_owned(),
            id,
        });
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
        let result = patched_properties(&before, &after)
            .and_then(|props| read_properties(&mut m, &props, Some(&before), &|p| self.resolve(p)));
        if let Err(e) = result {
            self.response.update_failed(key, e);
            return;
        }
        self.response.updated.insert(id.clone(), Value::Null);
        self.all[index] = m;
        self.changes.push(Change::Updated {
            key: key.to_owned(),
            id,
            before: current,
        });
    }

    /// Destroys children before parents, so a whole subtree can go in one call.
    fn destroy_all(&mut self, keys: &[String], remove_emails: bool) {
        let mut destroy: Vec<(String, Option<String>)> =
            keys.iter().map(|k| (k.clone(), self.resolve(k))).collect();
        destroy
            .sort_by_key(|(_, id)| std::cmp::Reverse(id.as_deref().map_or(0, |i| self.depth(i))));
        for (key, id) in destroy {
            if let Err(e) = self.destroy(&key, id, remove_emails) {
                self.response.destroy_failed(&key, e);
            }
        }
    }

    fn destroy(
        &mut self,
        key: &str,
        id: Option<String>,
        remove_emails: bool,
    ) -> Result<(), SetError> {
        let Some(before) = id.and_then(|id| self.find(&id).cloned()) else {
            return Err(SetError::not_found());
        };
        if before.role.as_deref() == Some("inbox") {
            return Err(SetError::new(
                SetErrorType::Forbidden,
                "the inbox cannot be destroyed: new mail is delivered there",
            ));
        }
        let has_email = self
            .snap
            .counts
            .get(&before.id)
            .is_some_and(|c| c.total_emails > 0);
        if has_email && !remove_emails {
            return Err(SetError::new(
                SetErrorType::MailboxHasEmail,
                "the mailbox holds emails; set onDestroyRemoveEmails to remove them",
            ));
        }
        self.all.retain(|m| m.id != before.id);
        self.response.destroyed.push(before.id.clone());
        self.changes.push(Change::Destroyed {
            key: key.to_owned(),
            before,
            remove_emails: has_email,
        });
        Ok(())
    }

    /// Checks the planned tree (MBX-02..MBX-04, MBX-14) and undoes each operation that leaves
    /// it invalid, until every remaining one holds (see the module doc).
    fn undo_what_leaves_the_tree_invalid(&mut self) {
        loop {
            let mut undone = false;
            for i in (0..self.changes.len()).rev() {
                if let Some(e) = self.problem_of(&self.changes[i]) {
                    let change = self.changes.remove(i);
                    self.undo(change, e);
                    undone = true;
                }
            }
            if !undone {
                return;
            }
        }
    }

    /// Why `change` leaves the planned mailboxes invalid, if it does.
    fn problem_of(&self, change: &Change) -> Option<SetError> {
        match change {
            Change::Created { id, .. } => {
                // A mailbox destroyed later in the call is checked no more.
                let m = self.find(id)?;
                check_tree(m, &self.all).err()
            }
            Change::Updated { id, before, .. } => {
                let m = self.find(id)?;
                check_tree(m, &self.all).err().or_else(|| {
                    // Moved deeper, it takes its subtree along: no descendant may end up
                    // beyond the deepest level either.
                    (m.parent_id != before.parent_id && self.subtree_too_deep(id)).then(|| {
                        SetError::invalid_properties(
                            &["parentId"],
                            format!("mailboxes nest at most {MAX_DEPTH} deep"),
                        )
                    })
                })
            }
            Change::Destroyed { before, .. } => self
                .all
                .iter()
                .any(|m| m.parent_id.as_deref() == Some(before.id.as_str()))
                .then(|| {
                    SetError::new(
                        SetErrorType::MailboxHasChild,
                        "the mailbox has child mailboxes",
                    )
                }),
        }
    }

    fn undo(&mut self, change: Change, e: SetError) {
        match change {
            Change::Created { cid, id } => {
                self.all.retain(|m| m.id != id);
                self.response.created.remove(&cid);
                self.new_ids.retain(|(c, _)| *c != cid);
                self.created.remove(&cid);
                self.response.create_failed(&cid, e);
            }
            Change::Updated { key, id, before } => {
                if let Some(m) = self.all.iter_mut().find(|m| m.id == id) {
                    *m = before;
                }
                self.response.updated.remove(&id);
                self.response.update_failed(&key, e);
            }
            Change::Destroyed { key, before, .. } => {
                self.response.destroyed.retain(|d| *d != before.id);
                self.all.push(before);
                self.response.destroy_failed(&key, e);
            }
        }
    }

    /// The store operations, in an order every step of which the database accepts (a role is
    /// unique at all times): roles that move are cleared first, then the destroys (children
    /// first), the creates, and the updates with their final values.
    fn operations(&self) -> Vec<MailboxOp> {
        let planned = |id: &str| self.find(id);
        let created_here = |id: &str| {
            self.changes
                .iter()
                .any(|c| matches!(c, Change::Created { id: created, .. } if created == id))
        };
        let mut ops = Vec::new();
        for change in &self.changes {
            if let Change::Updated { id, before, .. } = change
                && !created_here(id)
                && let Some(after) = planned(id)
                && before.role.is_some()
                && after.role != before.role
            {
                ops.push(MailboxOp::Update(Mailbox {
                    role: None,
                    ..before.clone()
                }));
            }
        }
        for change in &self.changes {
            if let Change::Destroyed {
                before,
                remove_emails,
                ..
            } = change
            {
                ops.push(MailboxOp::Delete {
                    id: before.id.clone(),
                    remove_emails: *remove_emails,
                });
            }
        }
        for change in &self.changes {
            if let Change::Created { id, .. } = change
                && let Some(m) = planned(id)
            {
                ops.push(MailboxOp::Insert(m.clone()));
            }
        }
        let mut updated: Vec<&str> = Vec::new();
        for change in &self.changes {
            if let Change::Updated { id, .. } = change
                && !updated.contains(&id.as_str())
                && let Some(after) = planned(id)
                && !created_here(id)
                && self.snap.mailboxes.iter().all(|m| m != after)
            {
                updated.push(id);
                ops.push(MailboxOp::Update(after.clone()));
            }
        }
        ops
    }

    /// Whether a mailbox below `id` is nested deeper than `MAX_DEPTH`.
    fn subtree_too_deep(&self, id: &str) -> bool {
        let mut below: Vec<&str> = vec![id];
        let mut i = 0;
        while let Some(&parent) = below.get(i) {
            i += 1;
            for m in &self.all {
                if m.parent_id.as_deref() == Some(parent) {
                    if self.depth(&m.id) + 1 > MAX_DEPTH {
                        return true;
                    }
                    below.push(&m.id);
                }
            }
            if below.len() > self.all.len() {
                // A cycle; check_tree reports it.
                return false;
            }
        }
        false
    }

    /// How many ancestors a mailbox has (bounded, in case of a cycle).
    fn depth(&self, id: &str) -> usize {
        let parent_of = |id: &str| self.find(id).and_then(|m| m.parent_id.clone());
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
