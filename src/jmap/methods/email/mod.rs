//! Email (RFC 8621 §4) and Thread (§3): Email/get, Email/changes, Email/set, Email/import,
//! Thread/get, Thread/changes.
//!
//! This module parses and validates; the store applies. Every change to emails is a list of
//! [`EmailOp`]s handed to [`EmailStore::email_write`], which runs them in one write transaction and
//! records the implied changes (Thread, Mailbox counts, EmailDelivery) itself. Creating an Email
//! from JMAP properties builds an RFC 5322 message ([`crate::jmap::methods::email::create`]) and then takes exactly
//! the import path.

mod body_parts;
pub mod copy;
pub mod create;
mod get;
mod import;
pub mod parse;
mod set;

pub use get::{Email, Thread, get, thread_get};
pub use import::import;
pub use set::set;

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value, json};

use crate::jmap::error::MethodError;
use crate::jmap::patch::parse_path;
use crate::jmap::standard::{SetError, SetErrorType};
use crate::mail::{self};

/// The push and state type names.
pub const DATA_TYPE: &str = "Email";
pub const THREAD_TYPE: &str = "Thread";
/// RFC 8621 §1.5: changes only when new mail arrives (PSH-04).
pub const DELIVERY_TYPE: &str = "EmailDelivery";

/// Thread properties (THR-02).
pub const THREAD_PROPERTIES: &[&str] = &["id", "emailIds"];

/// At most this many keywords per email (advertised nowhere by RFC 8621; `tooManyKeywords`).
pub const MAX_KEYWORDS: usize = 100;
/// At most this many mailboxes per email (`maxMailboxesPerEmail` in the mail capability).
pub const MAX_MAILBOXES_PER_EMAIL: usize = 100;

/// An email's metadata, as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailMeta {
    pub id: String,
    pub blob_id: String,
    pub thread_id: String,
    pub mailbox_ids: Vec<String>,
    pub keywords: Vec<String>,
    pub size: i64,
    /// Seconds since the epoch.
    pub received_at: i64,
    /// The list-view properties kept at import; only
    /// [`EmailStore::email_metadata`] with `with_summary` fills it, with `None` for an email whose
    /// summary was never computed.
    pub summary: Option<mail::StoredSummary>,
}

/// Where a new email's message comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A blob the importing user can see in the account (Email/import).
    Blob(String),
    /// Bytes built or received by the server (Email/set create, `herald deliver`).
    Message(Vec<u8>),
}

/// A new email, validated except for what only the store knows (blob and mailbox existence).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEmail {
    pub id: String,
    pub source: Source,
    pub mailbox_ids: BTreeSet<String>,
    pub keywords: BTreeSet<String>,
    /// `None`: the latest `Received:` time, else now (EIMP-01).
    pub received_at: Option<i64>,
    /// New mail: records an `EmailDelivery` change (RFC 8621 §1.5).
    pub delivery: bool,
}

/// A change to a set of ids or keywords: a whole new value, or entries added and removed by patch
/// paths (ESET-01).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetEdit {
    Replace(BTreeSet<String>),
    /// `(entry, true)` adds, `(entry, false)` removes.
    Patch(Vec<(String, bool)>),
}

impl SetEdit {
    /// The set after the edit.
    pub fn apply(&self, current: &BTreeSet<String>) -> BTreeSet<String> {
        match self {
            SetEdit::Replace(s) => s.clone(),
            SetEdit::Patch(entries) => {
                let mut out = current.clone();
                for (entry, add) in entries {
                    if *add {
                        out.insert(entry.clone());
                    } else {
                        out.remove(entry);
                    }
                }
                out
            }
        }
    }
}

/// One operation of an Email write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EmailOp {
    Create {
        creation_id: String,
        email: NewEmail,
    },
    Update {
        /// The key as the client sent it (maybe `#cid`).
        key: String,
        id: String,
        mailbox_ids: Option<SetEdit>,
        keywords: Option<SetEdit>,
        /// Server-set properties the patch named, which must hold their current values (SET-16).
        server_set: Map<String, Value>,
    },
    Destroy {
        key: String,
        id: String,
    },
}

/// `created` entry of a new email (ESET-04, EIMP-04).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedEmail {
    pub id: String,
    pub blob_id: String,
    pub thread_id: String,
    pub size: i64,
}

impl CreatedEmail {
    pub fn to_json(&self) -> Value {
        json!({"id": self.id, "blobId": self.blob_id, "threadId": self.thread_id, "size": self.size})
    }
}

/// The result of one [`EmailOp`], in the order given.
#[derive(Clone, Debug, PartialEq)]
pub enum OpResult {
    Created(String, CreatedEmail),
    NotCreated(String, SetError),
    Updated(String),
    NotUpdated(String, SetError),
    Destroyed(String),
    NotDestroyed(String, SetError),
}

/// What an Email write did.
#[derive(Clone, Debug, PartialEq)]
pub struct WriteOutcome {
    pub old_state: String,
    pub new_state: String,
    pub results: Vec<OpResult>,
}

/// A thread and its email ids, oldest first (THR-02).
pub type ThreadEmails = (String, Vec<String>);

/// What the Email and Thread methods need from the store.
pub trait EmailStore {
    /// The current state of `data_type` (`Email` or `Thread`) in an account.
    fn email_type_state(
        &mut self,
        account_id: &str,
        data_type: &str,
    ) -> Result<String, MethodError>;
    /// Metadata of the emails with these ids (those that exist), or of every email when `ids` is
    /// `None` (at most `limit`), with each one's stored summary (`EmailMeta::summary`) when
    /// `with_summary`. Returns the Email state too.
    fn email_metadata(
        &mut self,
        account_id: &str,
        ids: Option<&[String]>,
        limit: usize,
        with_summary: bool,
    ) -> Result<(String, Vec<EmailMeta>), MethodError>;
    /// Keeps a summary computed from the message of an email stored without one. Not a change
    /// of the Email: the summary is derived from its immutable message.
    fn email_keep_summary(
        &mut self,
        account_id: &str,
        email_id: &str,
        summary: &mail::Summary,
    ) -> Result<(), MethodError>;
    /// The bytes of a blob (stored or a message part) that `user_id` can see in the account.
    fn email_blob(
        &mut self,
        account_id: &str,
        user_id: &str,
        blob_id: &str,
    ) -> Result<Option<Vec<u8>>, MethodError>;
    /// The raw message of a stored blob.
    fn email_message(&mut self, blob_id: &str) -> Result<Option<Vec<u8>>, MethodError>;
    /// Threads by id (or all, at most `limit`): `(threadId, emailIds)` with emailIds sorted by
    /// receivedAt then id (THR-02). Returns the Thread state too.
    fn thread_emails(
        &mut self,
        account_id: &str,
        ids: Option<&[String]>,
        limit: usize,
    ) -> Result<(String, Vec<ThreadEmails>), MethodError>;
    /// Runs `ops` as one write on behalf of `user_id`. `if_in_state` is checked against the
    /// Email state inside the transaction (→ `stateMismatch`).
    fn email_write(
        &mut self,
        account_id: &str,
        user_id: &str,
        if_in_state: Option<&str>,
        ops: Vec<EmailOp>,
    ) -> Result<WriteOutcome, MethodError>;
}

// ---------------------------------------------------------------------------------------------
// Validation shared by create, import and update

/// EML-03: 1–255 characters of `%x21-%x7E` except `( ) { ] % * " \`.
pub fn is_valid_keyword(k: &str) -> bool {
    (1..=255).contains(&k.len())
        && k.bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && !b"(){]%*\"\\".contains(&b))
}

/// A fresh email id, in the order emails are made ([`crate::jmap::args::new_ordered_id`]).
pub fn new_email_id() -> String {
    crate::jmap::args::new_ordered_id('e')
}

/// Resolves `#cid` references among mailbox ids (CID-07).
fn resolve(created: &HashMap<String, String>, id: &str) -> Option<String> {
    match id.strip_prefix('#') {
        Some(cid) => created.get(cid).cloned(),
        None => Some(id.to_owned()),
    }
}

/// Reads a whole `keywords` value: lowercased (EML-03), every value `true`.
pub fn read_keywords(value: &Value) -> Result<BTreeSet<String>, SetError> {
    let bad = |why: &str| SetError::invalid_properties(&["keywords"], why.to_owned());
    let Value::Object(map) = value else {
        return Err(bad("keywords is a String[Boolean] object"));
    };
    let mut out = BTreeSet::new();
    for (k, v) in map {
        if v != &Value::Bool(true) {
            return Err(bad("every keyword value must be true"));
        }
        if !is_valid_keyword(k) {
            return Err(bad(&format!("{k:?} is not a valid keyword")));
        }
        out.insert(k.to_ascii_lowercase());
    }
    if out.len() > MAX_KEYWORDS {
        return Err(SetError::new(
            SetErrorType::TooManyKeywords,
            format!("at most {MAX_KEYWORDS} keywords"),
        ));
    }
    Ok(out)
}

/// Reads a whole `mailboxIds` value: every value `true`, `#cid` keys resolved (CID-07), at least
/// one (EML-02).
pub fn read_mailbox_ids(
    value: &Value,
    created: &HashMap<String, String>,
) -> Result<BTreeSet<String>, SetError> {
    let bad = |why: String| SetError::invalid_properties(&["mailboxIds"], why);
    let Value::Object(map) = value else {
        return Err(bad("mailboxIds is an Id[Boolean] object".into()));
    };
    let mut out = BTreeSet::new();
    for (k, v) in map {
        if v != &Value::Bool(true) {
            return Err(bad("every mailboxIds value must be true".into()));
        }
        let id = resolve(created, k).ok_or_else(|| bad(format!("unknown creation id {k:?}")))?;
        out.insert(id);
    }
    if out.is_empty() {
        return Err(bad("an email must be in at least one mailbox".into()));
    }
    if out.len() > MAX_MAILBOXES_PER_EMAIL {
        return Err(SetError::new(
            SetErrorType::TooManyMailboxes,
            format!("at most {MAX_MAILBOXES_PER_EMAIL} mailboxes per email"),
        ));
    }
    Ok(out)
}

/// Parses a UTCDate (`2014-10-30T06:12:00Z`, RFC 3339) to seconds since the epoch.
pub fn parse_utc_date(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp())
}

/// The server-set properties of an Email (RFC 8621 §4.1.1): a patch may name them only with
/// their current values (RFC 8620 §5.3, SET-16).
pub const SERVER_SET: &[&str] = &["id", "blobId", "threadId", "size"];

/// What an Email/set update patch asks (ESET-01): edits of `mailboxIds` and `keywords`, and
/// the server-set properties it names, to be checked against the email.
#[derive(Debug, Default)]
pub struct UpdatePatch {
    pub mailbox_ids: Option<SetEdit>,
    pub keywords: Option<SetEdit>,
    pub server_set: Map<String, Value>,
}

/// Reads an Email/set update patch (ESET-01).
pub fn read_update(
    patch: &Map<String, Value>,
    created: &HashMap<String, String>,
) -> Result<UpdatePatch, SetError> {
    let mut mailboxes: Option<SetEdit> = None;
    let mut keywords: Option<SetEdit> = None;
    let mut server_set = Map::new();
    let overlap =
        |p: &str| SetError::invalid_patch(format!("{p} is patched both whole and by entry"));
    for (path, value) in patch {
        let segments = parse_path(path).map_err(|e| SetError::invalid_patch(e.to_string()))?;
        match segments.as_slice() {
            [p] if p == "keywords" => {
                if keywords.is_some() {
                    return Err(overlap("keywords"));
                }
                keywords = Some(SetEdit::Replace(read_keywords(value)?));
            }
            [p] if p == "mailboxIds" => {
                if mailboxes.is_some() {
                    return Err(overlap("mailboxIds"));
                }
                mailboxes = Some(SetEdit::Replace(read_mailbox_ids(value, created)?));
            }
            [p, k] if p == "keywords" => {
                let add = entry_value(value, path, "keywords")?;
                if !is_valid_keyword(k) {
                    return Err(SetError::invalid_properties(
                        &[path.as_str()],
                        format!("{k:?} is not a valid keyword"),
                    ));
                }
                match &mut keywords {
                    Some(SetEdit::Patch(v)) => v.push((k.to_ascii_lowercase(), add)),
                    Some(SetEdit::Replace(_)) => return Err(overlap("keywords")),
                    None => keywords = Some(SetEdit::Patch(vec![(k.to_ascii_lowercase(), add)])),
                }
            }
            [p, m] if p == "mailboxIds" => {
                let add = entry_value(value, path, "mailboxIds")?;
                let id = resolve(created, m).ok_or_else(|| {
                    SetError::invalid_properties(
                        &[path.as_str()],
                        format!("unknown creation id {m:?}"),
                    )
                })?;
                match &mut mailboxes {
                    Some(SetEdit::Patch(v)) => v.push((id, add)),
                    Some(SetEdit::Replace(_)) => return Err(overlap("mailboxIds")),
                    None => mailboxes = Some(SetEdit::Patch(vec![(id, add)])),
                }
            }
            [p, ..] if p == "keywords" || p == "mailboxIds" => {
                return Err(SetError::invalid_patch(format!("{path:?} is too deep")));
            }
            [p] if SERVER_SET.contains(&p.as_str()) => {
                server_set.insert(p.clone(), value.clone());
            }
            _ => {
                // ESET-01: only mailboxIds and keywords may change after creation.
                let name = segments.first().map_or(path.as_str(), String::as_str);
                return Err(SetError::invalid_properties(
                    &[name],
                    format!("{name} cannot be changed after creation"),
                ));
            }
        }
    }
    Ok(UpdatePatch {
        mailbox_ids: mailboxes,
        keywords,
        server_set,
    })
}

/// A patch entry value: `true` adds, `null` removes; anything else (also `false`) is invalid.
fn entry_value(value: &Value, path: &str, property: &str) -> Result<bool, SetError> {
    match value {
        Value::Bool(true) => Ok(true),
        Value::Null => Ok(false),
        _ => Err(SetError::invalid_properties(
            &[path],
            format!("a {property} entry is set with true and removed with null"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn keywords_are_validated_and_lowercased() {
        let k = read_keywords(&json!({"$Seen": true, "Work": true})).unwrap();
        assert_eq!(k.into_iter().collect::<Vec<_>>(), vec!["$seen", "work"]);
        assert!(read_keywords(&json!({"a b": true})).is_err());
        assert!(read_keywords(&json!({"a(": true})).is_err());
        assert!(read_keywords(&json!({"ok": false})).is_err());
        assert!(read_keywords(&json!({"": true})).is_err());
    }

    #[test]
    fn mailbox_ids_resolve_creation_references_and_may_not_be_empty() {
        let created = HashMap::from([("mb".to_owned(), "m1".to_owned())]);
        let m = read_mailbox_ids(&json!({"#mb": true, "m2": true}), &created).unwrap();
        assert_eq!(m.into_iter().collect::<Vec<_>>(), vec!["m1", "m2"]);
        assert!(read_mailbox_ids(&json!({}), &created).is_err());
        assert!(read_mailbox_ids(&json!({"#nope": true}), &created).is_err());
    }

    #[test]
    fn update_patches_by_path_and_refuses_immutable_properties_and_false() {
        let created = HashMap::from([("mb".to_owned(), "m1".to_owned())]);
        let UpdatePatch {
            mailbox_ids: m,
            keywords: k,
            server_set,
        } = read_update(
            &obj(
                json!({"keywords/$Seen": true, "mailboxIds/#mb": true, "mailboxIds/m9": null,
                "size": 249}),
            ),
            &created,
        )
        .unwrap();
        assert_eq!(server_set.get("size"), Some(&json!(249)));
        assert_eq!(k, Some(SetEdit::Patch(vec![("$seen".into(), true)])));
        let m = m.unwrap();
        let after = m.apply(&BTreeSet::from(["m9".to_owned(), "m3".to_owned()]));
        assert_eq!(after.into_iter().collect::<Vec<_>>(), vec!["m1", "m3"]);
        let e = read_update(&obj(json!({"subject": "x"})), &created).unwrap_err();
        assert_eq!(e.kind, SetErrorType::InvalidProperties);
        let e = read_update(&obj(json!({"keywords/$seen": false})), &created).unwrap_err();
        assert_eq!(e.kind, SetErrorType::InvalidProperties);
        let e = read_update(
            &obj(json!({"keywords": {}, "keywords/$seen": true})),
            &created,
        )
        .unwrap_err();
        assert_eq!(e.kind, SetErrorType::InvalidPatch);
    }

    #[test]
    fn utc_dates_parse() {
        assert_eq!(parse_utc_date("1970-01-01T00:01:00Z"), Some(60));
        assert_eq!(parse_utc_date("yesterday"), None);
    }
}
