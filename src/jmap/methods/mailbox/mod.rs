//! Mailbox (RFC 8621 §2): get, changes, query, queryChanges, set.
//!
//! Mailboxes of one account are few, so /set validates against an in-memory snapshot taken inside
//! the write transaction: the store hands the snapshot to [`plan_set`]'s decision and applies the
//! operations it returns, all in one transaction.

mod plan;
mod query;
mod set;

pub use set::set;

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::jmap::changes::ChangesPage;
use crate::jmap::dispatch::Call;
use crate::jmap::error::MethodError;
use crate::jmap::standard::{DataType, Listed};

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

/// As an operator reads them (`herald check`): the Mailbox properties' names and values.
impl std::fmt::Display for MailboxCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "totalEmails {} unreadEmails {} totalThreads {} unreadThreads {}",
            self.total_emails, self.unread_emails, self.total_threads, self.unread_threads
        )
    }
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

#[cfg(test)]
mod tests {
    use super::query::run_query;
    use super::set::check_tree;
    use super::*;
    use crate::jmap::standard::SetErrorType;

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
    fn a_touched_mailbox_makes_its_descendants_touched_for_tree_query_changes() {
        let all = vec![
            mb("p", "p", None, 0),
            mb("c", "c", Some("p"), 0),
            mb("g", "g", Some("c"), 0),
            mb("o", "o", None, 0),
        ];
        let mut touched = super::query::with_descendants(&all, vec!["p".into()]);
        touched.sort();
        assert_eq!(touched, vec!["c", "g", "p"]);
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
