//! Email (RFC 8621 §4) and Thread (§3): Email/get, Email/changes, Email/set, Email/import,
//! Thread/get, Thread/changes.
//!
//! This module parses and validates; the store applies. Every change to emails is a list of
//! [`EmailOp`]s handed to [`EmailStore::email_write`], which runs them in one write transaction and
//! records the implied changes (Thread, Mailbox counts, EmailDelivery) itself. Creating an Email
//! from JMAP properties builds an RFC 5322 message ([`super::email_create`]) and then takes exactly
//! the import path.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value, json};

use super::args::Id;
use super::dispatch::Call;
use super::error::MethodError;
use super::patch::parse_path;
use super::standard::{self, DataType, SetError, SetErrorType, SetResponse};
use crate::mail::{self, EmailProperty, FetchOptions, PropertySelection};

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

/// A fresh email id (`e` + 15 of `[a-z0-9]`).
pub fn new_email_id() -> String {
    super::args::new_id('e')
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

/// Reads an Email/set update patch into edits of `mailboxIds` and `keywords` (ESET-01).
pub fn read_update(
    patch: &Map<String, Value>,
    created: &HashMap<String, String>,
) -> Result<(Option<SetEdit>, Option<SetEdit>), SetError> {
    let mut mailboxes: Option<SetEdit> = None;
    let mut keywords: Option<SetEdit> = None;
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
            _ => {
                // ESET-01: only mailboxIds and keywords may change after creation.
                let name = segments.first().map(String::as_str).unwrap_or(path);
                return Err(SetError::invalid_properties(
                    &[name],
                    format!("{name} cannot be changed after creation"),
                ));
            }
        }
    }
    Ok((mailboxes, keywords))
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

// ---------------------------------------------------------------------------------------------
// Email/get

/// Email/get's body arguments (shared with Email/parse, EML-12, EML-13), with `id` always
/// selected (RFC 8620 §5.1).
fn read_get_arguments(
    call: &mut Call<'_>,
) -> Result<(PropertySelection, FetchOptions), MethodError> {
    let (mut selection, fetch) =
        super::email_parse::read_body_arguments(&mut call.args, mail::DEFAULT_GET_PROPERTIES)?;
    if !selection.has(&EmailProperty::Id) {
        selection
            .properties
            .insert(0, ("id".to_owned(), EmailProperty::Id));
    }
    Ok((selection, fetch))
}

/// Reads `ids` (creation references resolved, duplicates dropped) with the /get limit.
fn read_ids(call: &mut Call<'_>) -> Result<Option<Vec<String>>, MethodError> {
    let ids = call.args.optional::<Vec<Id>>("ids")?;
    let max = call.server.limits.max_objects_in_get;
    let Some(ids) = ids else { return Ok(None) };
    if ids.len() as u64 > max {
        return Err(MethodError::RequestTooLarge(format!(
            "at most {max} ids per /get"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(ids.len());
    for Id(id) in ids {
        let id = call.resolve_id(&id).unwrap_or(id);
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(Some(out))
}

/// The metadata part of an Email as JSON.
fn metadata_value(meta: &EmailMeta, property: &EmailProperty) -> Option<Value> {
    let set = |items: &[String]| {
        Value::Object(
            items
                .iter()
                .map(|k| (k.clone(), Value::Bool(true)))
                .collect(),
        )
    };
    Some(match property {
        EmailProperty::Id => Value::from(meta.id.clone()),
        EmailProperty::BlobId => Value::from(meta.blob_id.clone()),
        EmailProperty::ThreadId => Value::from(meta.thread_id.clone()),
        EmailProperty::MailboxIds => set(&meta.mailbox_ids),
        EmailProperty::Keywords => set(&meta.keywords),
        EmailProperty::Size => Value::from(meta.size),
        EmailProperty::ReceivedAt => Value::from(mail::header::utc_date(meta.received_at)),
        _ => return None,
    })
}

/// Where Email/get finds the properties that are not metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MessageSource {
    /// Only metadata is asked for.
    None,
    /// The stored summary (list views); computed from the message where it is missing.
    Summary,
    /// The parsed message, once per email (body parts, body values, raw headers, `header:*`).
    Parsed,
}

impl MessageSource {
    fn of(selection: &PropertySelection) -> MessageSource {
        if selection.needs_parsed_message() {
            MessageSource::Parsed
        } else if selection.needs_message() {
            MessageSource::Summary
        } else {
            MessageSource::None
        }
    }
}

/// The message-derived properties of one email, from `source`.
fn message_values<C: EmailStore>(
    ctx: &mut C,
    account_id: &str,
    meta: &EmailMeta,
    source: MessageSource,
    selection: &PropertySelection,
    fetch: &FetchOptions,
) -> Result<Map<String, Value>, MethodError> {
    if source == MessageSource::None {
        return Ok(Map::new());
    }
    let summary_values = |summary: &mail::Summary| {
        selection
            .properties
            .iter()
            .filter_map(|(key, p)| summary.value(p).map(|v| (key.clone(), v)))
            .collect::<Map<String, Value>>()
    };
    if source == MessageSource::Summary
        && let Some(summary) = meta.summary.as_ref().and_then(|s| s.read(selection))
    {
        return Ok(summary_values(&summary));
    }
    let parsed = ctx
        .email_message(&meta.blob_id)?
        .and_then(|raw| mail::Email::parse(&raw));
    let Some(email) = parsed else {
        log::warn!("email {} has no readable message {}", meta.id, meta.blob_id);
        return Ok(Map::new());
    };
    if source == MessageSource::Parsed {
        return Ok(mail::render_email(&email, &meta.blob_id, selection, fetch));
    }
    // An email stored before summaries existed: compute it once and keep it.
    let summary = mail::Summary::of(&email);
    ctx.email_keep_summary(account_id, &meta.id, &summary)?;
    Ok(summary_values(&summary))
}

/// `Email/get` (RFC 8621 §4.2): metadata from the store; the list-view properties from the
/// summary stored at import; body properties and raw headers from the parsed message.
pub fn get<C: EmailStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Result<Map<String, Value>, MethodError> {
    let ids = read_ids(call)?;
    let (selection, fetch) = read_get_arguments(call)?;
    std::mem::take(&mut call.args).finish()?;
    let account_id = call.account_id().to_owned();
    let max = call.server.limits.max_objects_in_get as usize;
    let source = MessageSource::of(&selection);
    let with_summary = source == MessageSource::Summary;
    let (state, metas) = ctx.email_metadata(&account_id, ids.as_deref(), max + 1, with_summary)?;
    if ids.is_none() && metas.len() > max {
        return Err(MethodError::RequestTooLarge(format!(
            "the account has more than {max} emails: ask for ids"
        )));
    }
    let by_id: HashMap<&str, &EmailMeta> = metas.iter().map(|m| (m.id.as_str(), m)).collect();
    let order: Vec<&EmailMeta> = match &ids {
        Some(ids) => ids
            .iter()
            .filter_map(|i| by_id.get(i.as_str()).copied())
            .collect(),
        None => metas.iter().collect(),
    };
    let not_found: Vec<String> = ids
        .iter()
        .flatten()
        .filter(|i| !by_id.contains_key(i.as_str()))
        .cloned()
        .collect();
    let mut list = Vec::with_capacity(order.len());
    for meta in order {
        let mut out = message_values(ctx, &account_id, meta, source, &selection, &fetch)?;
        for (key, property) in &selection.properties {
            if let Some(v) = metadata_value(meta, property) {
                out.insert(key.clone(), v);
            } else if !out.contains_key(key) {
                out.insert(key.clone(), Value::Null);
            }
        }
        // Keep the order the client asked for.
        let ordered: Map<String, Value> = selection
            .properties
            .iter()
            .filter_map(|(k, _)| out.remove(k).map(|v| (k.clone(), v)))
            .collect();
        list.push(Value::Object(ordered));
    }
    Ok(standard::get_response(&account_id, &state, list, not_found))
}

// ---------------------------------------------------------------------------------------------
// Email and Thread as data types; Thread/get

/// The Email data type, as the standard methods see it (`Email/changes`, EML-14).
pub struct Email;

impl DataType for Email {
    const NAME: &'static str = DATA_TYPE;
}

/// The Thread data type, as the standard methods see it (`Thread/changes`, THR-06).
pub struct Thread;

impl DataType for Thread {
    const NAME: &'static str = THREAD_TYPE;
}

/// `Thread/get` (RFC 8621 §3.1, THR-02).
pub fn thread_get<C: EmailStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Result<Map<String, Value>, MethodError> {
    let req = standard::parse_get(call, THREAD_PROPERTIES)?;
    std::mem::take(&mut call.args).finish()?;
    let account_id = call.account_id().to_owned();
    let max = call.server.limits.max_objects_in_get as usize;
    let (state, threads) = ctx.thread_emails(&account_id, req.ids.as_deref(), max + 1)?;
    if req.ids.is_none() && threads.len() > max {
        return Err(MethodError::RequestTooLarge(format!(
            "the account has more than {max} threads: ask for ids"
        )));
    }
    let by_id: HashMap<&str, &Vec<String>> = threads.iter().map(|(t, e)| (t.as_str(), e)).collect();
    let render = |id: &str, emails: &Vec<String>| {
        let full = json!({"id": id, "emailIds": emails});
        Value::Object(standard::select(
            full.as_object().cloned().unwrap_or_default(),
            req.properties.as_deref(),
        ))
    };
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    match &req.ids {
        None => list.extend(threads.iter().map(|(t, e)| render(t, e))),
        Some(ids) => {
            for id in ids {
                match by_id.get(id.as_str()) {
                    Some(e) => list.push(render(id, e)),
                    None => not_found.push(id.clone()),
                }
            }
        }
    }
    Ok(standard::get_response(&account_id, &state, list, not_found))
}

// ---------------------------------------------------------------------------------------------
// Email/import

const IMPORT_PROPERTIES: &[&str] = &["blobId", "mailboxIds", "keywords", "receivedAt"];

/// Reads one EmailImport object (EIMP-01).
fn read_import(
    props: &Map<String, Value>,
    created: &HashMap<String, String>,
) -> Result<NewEmail, SetError> {
    if let Some(k) = props
        .keys()
        .find(|k| !IMPORT_PROPERTIES.contains(&k.as_str()))
    {
        return Err(SetError::invalid_properties(
            &[k.as_str()],
            format!("EmailImport has no property {k:?}"),
        ));
    }
    let blob_id = match props.get("blobId") {
        Some(Value::String(b)) => resolve(created, b).ok_or_else(|| {
            SetError::invalid_properties(&["blobId"], format!("unknown creation id {b:?}"))
        })?,
        _ => {
            return Err(SetError::invalid_properties(
                &["blobId"],
                "blobId is required",
            ));
        }
    };
    let mailbox_ids = match props.get("mailboxIds") {
        Some(v) => read_mailbox_ids(v, created)?,
        None => {
            return Err(SetError::invalid_properties(
                &["mailboxIds"],
                "mailboxIds is required",
            ));
        }
    };
    let keywords = match props.get("keywords") {
        None | Some(Value::Null) => BTreeSet::new(),
        Some(v) => read_keywords(v)?,
    };
    let received_at = match props.get("receivedAt") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(parse_utc_date(s).ok_or_else(|| {
            SetError::invalid_properties(&["receivedAt"], "receivedAt is a UTCDate")
        })?),
        Some(_) => {
            return Err(SetError::invalid_properties(
                &["receivedAt"],
                "receivedAt is a UTCDate",
            ));
        }
    };
    Ok(NewEmail {
        id: new_email_id(),
        source: Source::Blob(blob_id),
        mailbox_ids,
        keywords,
        received_at,
        delivery: true,
    })
}

/// `Email/import` (RFC 8621 §4.8, EIMP-01..04).
pub fn import<C: EmailStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Result<Map<String, Value>, MethodError> {
    let if_in_state = call.args.optional::<String>("ifInState")?;
    let emails = match call.args.take_value("emails") {
        Some(Value::Object(m)) => m,
        _ => {
            return Err(MethodError::InvalidArguments(
                "emails is a map of creation id to EmailImport".into(),
            ));
        }
    };
    std::mem::take(&mut call.args).finish()?;
    let max = call.server.limits.max_objects_in_set;
    if emails.len() as u64 > max {
        return Err(MethodError::RequestTooLarge(format!(
            "at most {max} emails per import"
        )));
    }
    let account_id = call.account_id().to_owned();
    let mut not_created = Map::new();
    let mut ops = Vec::new();
    for (cid, value) in &emails {
        if !Id::is_valid(cid) {
            return Err(MethodError::InvalidArguments(format!(
                "creation id {cid:?} is not a valid Id"
            )));
        }
        let result = match value {
            Value::Object(props) => read_import(props, call.created_ids),
            _ => Err(SetError::invalid_properties(
                &[],
                "an EmailImport is an object",
            )),
        };
        match result {
            Ok(email) => ops.push(EmailOp::Create {
                creation_id: cid.clone(),
                email,
            }),
            Err(e) => {
                not_created.insert(cid.clone(), e.to_json());
            }
        }
    }
    let user = call.principal.user_id.clone();
    let outcome = ctx.email_write(&account_id, &user, if_in_state.as_deref(), ops)?;
    let mut created = Map::new();
    for r in outcome.results {
        match r {
            OpResult::Created(cid, c) => {
                call.created_ids.insert(cid.clone(), c.id.clone());
                created.insert(cid, c.to_json());
            }
            OpResult::NotCreated(cid, e) => {
                not_created.insert(cid, e.to_json());
            }
            _ => {}
        }
    }
    let nullable = |m: Map<String, Value>| {
        if m.is_empty() {
            Value::Null
        } else {
            Value::Object(m)
        }
    };
    let mut out = Map::new();
    out.insert("accountId".into(), Value::from(account_id));
    out.insert("oldState".into(), Value::from(outcome.old_state));
    out.insert("newState".into(), Value::from(outcome.new_state));
    out.insert("created".into(), nullable(created));
    out.insert("notCreated".into(), nullable(not_created));
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Email/set

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
        match super::email_create::read_create(props, &created_here, &mut read_blob)? {
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
            Ok((mailbox_ids, keywords)) => ops.push(EmailOp::Update {
                key: key.clone(),
                id,
                mailbox_ids,
                keywords,
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
        let (m, k) = read_update(
            &obj(json!({"keywords/$Seen": true, "mailboxIds/#mb": true, "mailboxIds/m9": null})),
            &created,
        )
        .unwrap();
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
