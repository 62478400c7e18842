//! Identity (RFC 8621 §6): get, changes, set.
//!
//! Every account has one default identity, which cannot be destroyed (`mayDelete: false`): its
//! address is the user name when that is an email address, else `<user>@<submission.domain>`.
//! A user may send only from that address ([`may_send_from`]); other identities may reuse it
//! (IDN-03) with another name, reply-to, bcc or signatures.

use serde_json::{Map, Value, json};

use crate::jmap::dispatch::Call;
use crate::jmap::error::MethodError;
use crate::jmap::patch::apply_patch;
use crate::jmap::standard::{self, DataType, Listed, SetError, SetErrorType, SetResponse};

/// The push and state type name.
pub const DATA_TYPE: &str = "Identity";

/// Every Identity property (IDN-01).
pub const PROPERTIES: &[&str] = &[
    "id",
    "name",
    "email",
    "replyTo",
    "bcc",
    "textSignature",
    "htmlSignature",
    "mayDelete",
];

/// Longest name or signature accepted, in octets.
pub const MAX_TEXT_OCTETS: usize = 64 * 1024;

/// A stored identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub id: String,
    pub name: String,
    pub email: String,
    /// `EmailAddress[]` as JSON, or `None` for null.
    pub reply_to: Option<Value>,
    pub bcc: Option<Value>,
    pub text_signature: String,
    pub html_signature: String,
    pub may_delete: bool,
}

/// The id of an account's default identity: fixed, so creating it twice is harmless.
pub const DEFAULT_ID: &str = "idefault";

/// The address of the default identity of user `username` (see the module documentation).
pub fn default_email(username: &str, domain: &str) -> String {
    if username.contains('@') {
        username.to_lowercase()
    } else {
        format!("{}@{}", username.to_lowercase(), domain.to_lowercase())
    }
}

/// The default identity of user `username`.
pub fn default_identity(username: &str, domain: &str) -> Identity {
    Identity {
        id: DEFAULT_ID.into(),
        name: username.into(),
        email: default_email(username, domain),
        reply_to: None,
        bcc: None,
        text_signature: String::new(),
        html_signature: String::new(),
        may_delete: false,
    }
}

/// Whether the owner of the default identity `own` may send from `email` (RFC 8621 §9.6): only from
/// their own address, compared case-insensitively.
pub fn may_send_from(own: &str, email: &str) -> bool {
    own.eq_ignore_ascii_case(email)
}

/// An account's identities as of one state.
#[derive(Clone, Debug, Default)]
pub struct IdentitySnapshot {
    pub state: String,
    pub identities: Vec<Identity>,
}

/// A change to apply in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityOp {
    Insert(Identity),
    Update(Identity),
    Delete(String),
}

/// What the Identity methods need from the store.
pub trait IdentityStore {
    /// Stores `default` if the account has no default identity yet.
    fn identity_prepare(&mut self, account_id: &str, default: &Identity)
    -> Result<(), MethodError>;
    /// The account's identities and Identity state (reads only: [`IdentityStore::identity_prepare`]
    /// first stores the default identity).
    fn identity_snapshot(&mut self, account_id: &str) -> Result<IdentitySnapshot, MethodError>;
    /// In one write transaction: takes a snapshot, lets `decide` return the operations, applies
    /// them. Returns the Identity state before and after. An `Err` from `decide` rolls back.
    fn identity_write(
        &mut self,
        account_id: &str,
        default: &Identity,
        decide: &mut dyn FnMut(&IdentitySnapshot) -> Result<Vec<IdentityOp>, MethodError>,
    ) -> Result<(String, String), MethodError>;
}

/// The full JSON form of an identity.
pub fn to_json(i: &Identity) -> Map<String, Value> {
    let v = json!({
        "id": i.id,
        "name": i.name,
        "email": i.email,
        "replyTo": i.reply_to,
        "bcc": i.bcc,
        "textSignature": i.text_signature,
        "htmlSignature": i.html_signature,
        "mayDelete": i.may_delete,
    });
    match v {
        Value::Object(o) => o,
        _ => Map::new(),
    }
}

/// The default identity of the account the call names. Identity methods are offered only in the
/// user's own account (see `session::PERSONAL_ONLY`), so its owner is the principal.
fn default_for(call: &Call<'_>) -> Identity {
    default_identity(&call.principal.username, &call.server.mail_domain)
}

impl DataType for Identity {
    const NAME: &'static str = DATA_TYPE;
}

/// `Identity/get` (RFC 8621 §6.1; IDN-04: `ids: null` allowed); the default identity is stored
/// on first sight.
impl<C: IdentityStore> Listed<C> for Identity {
    const PROPERTIES: &'static [&'static str] = PROPERTIES;
    type Snapshot = IdentitySnapshot;

    fn prepare(ctx: &mut C, call: &Call<'_>) -> Result<(), MethodError> {
        ctx.identity_prepare(call.account_id(), &default_for(call))
    }

    fn load(ctx: &mut C, call: &Call<'_>) -> Result<IdentitySnapshot, MethodError> {
        ctx.identity_snapshot(call.account_id())
    }

    fn state(snapshot: &IdentitySnapshot) -> &str {
        &snapshot.state
    }

    fn records(snapshot: &IdentitySnapshot) -> &[Identity] {
        &snapshot.identities
    }

    fn id(&self) -> &str {
        &self.id
    }

    fn to_json(&self, _: &IdentitySnapshot, _: &Call<'_>) -> Map<String, Value> {
        to_json(self)
    }
}

/// Checks an `EmailAddress[]|null` value (RFC 8621 §4.1.2.3).
fn addresses(key: &str, value: &Value) -> Result<Option<Value>, SetError> {
    let bad = || {
        SetError::invalid_properties(
            &[key],
            format!("{key} is null or an array of {{name, email}} objects"),
        )
    };
    match value {
        Value::Null => Ok(None),
        Value::Array(items) => {
            for item in items {
                let Value::Object(o) = item else {
                    return Err(bad());
                };
                let email_ok = o
                    .get("email")
                    .and_then(Value::as_str)
                    .is_some_and(|e| e.contains('@') && !e.chars().any(char::is_whitespace));
                let name_ok = matches!(o.get("name"), None | Some(Value::Null | Value::String(_)));
                if !email_ok || !name_ok || o.keys().any(|k| k != "name" && k != "email") {
                    return Err(bad());
                }
            }
            Ok(Some(value.clone()))
        }
        _ => Err(bad()),
    }
}

fn text(key: &str, value: &Value) -> Result<String, SetError> {
    match value.as_str() {
        Some(s) if s.len() <= MAX_TEXT_OCTETS => Ok(s.to_owned()),
        _ => Err(SetError::invalid_properties(
            &[key],
            format!("{key} is a string of at most {MAX_TEXT_OCTETS} octets"),
        )),
    }
}

/// Reads client-set properties into `i`. `original` is the record before the patch (`None` on
/// create): immutable and server-set properties may be "changed" on update only to their current
/// value (SET-16).
fn read_properties(
    i: &mut Identity,
    props: &Map<String, Value>,
    original: Option<&Map<String, Value>>,
) -> Result<(), SetError> {
    for (key, value) in props {
        match key.as_str() {
            "name" => i.name = text(key, value)?,
            "textSignature" => i.text_signature = text(key, value)?,
            "htmlSignature" => i.html_signature = text(key, value)?,
            "replyTo" => i.reply_to = addresses(key, value)?,
            "bcc" => i.bcc = addresses(key, value)?,
            "email" if original.is_none() => match value.as_str() {
                Some(e) if e.contains('@') && !e.chars().any(char::is_whitespace) => {
                    i.email = e.to_owned();
                }
                _ => {
                    return Err(SetError::invalid_properties(
                        &["email"],
                        "email is an email address",
                    ));
                }
            },
            k @ ("id" | "mayDelete" | "email") => {
                if original.and_then(|o| o.get(k)) != Some(value) {
                    let why = if k == "email" {
                        "email is immutable"
                    } else {
                        "set by the server"
                    };
                    return Err(SetError::invalid_properties(&[k], format!("{k}: {why}")));
                }
            }
            k => {
                return Err(SetError::invalid_properties(
                    &[k],
                    format!("Identity has no property {k:?}"),
                ));
            }
        }
    }
    Ok(())
}

/// `Identity/set` (RFC 8621 §6.3; IDN-02).
pub fn set<C: IdentityStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Result<Map<String, Value>, MethodError> {
    let req = standard::parse_set(call)?;
    std::mem::take(&mut call.args).finish()?;
    let account_id = call.account_id().to_owned();
    let default = default_for(call);
    let known_created = call.created_ids.clone();
    let mut response = SetResponse::default();
    let mut new_ids: Vec<(String, String)> = Vec::new();
    let (old_state, new_state) = ctx.identity_write(&account_id, &default, &mut |snap| {
        response = SetResponse::default();
        new_ids.clear();
        req.check_state(&snap.state)?;
        Ok(plan_set(
            snap,
            &req,
            &default.email,
            &known_created,
            &mut response,
            &mut new_ids,
        ))
    })?;
    for (cid, id) in new_ids {
        call.created_ids.insert(cid, id);
    }
    Ok(response.to_response(Some(&account_id), Some((old_state, new_state))))
}

fn plan_set(
    snap: &IdentitySnapshot,
    req: &standard::SetRequest,
    own_email: &str,
    known_created: &std::collections::HashMap<String, String>,
    response: &mut SetResponse,
    new_ids: &mut Vec<(String, String)>,
) -> Vec<IdentityOp> {
    let mut all = snap.identities.clone();
    let mut ops = Vec::new();
    for (cid, props) in &req.create {
        match new_identity(props, own_email) {
            Ok(i) => {
                response
                    .created
                    .insert(cid.clone(), standard::created_reply(to_json(&i), props));
                new_ids.push((cid.clone(), i.id.clone()));
                all.push(i.clone());
                ops.push(IdentityOp::Insert(i));
            }
            Err(e) => response.create_failed(cid, e),
        }
    }
    let resolve = |key: &str| match key.strip_prefix('#') {
        Some(c) => new_ids
            .iter()
            .find(|(cid, _)| cid == c)
            .map(|(_, id)| id.clone())
            .or_else(|| known_created.get(c).cloned()),
        None => Some(key.to_owned()),
    };
    for (key, patch) in &req.update {
        let Some(index) = resolve(key).and_then(|id| all.iter().position(|i| i.id == id)) else {
            response.update_failed(key, SetError::not_found());
            continue;
        };
        let current = all[index].clone();
        match patched(&current, patch) {
            Ok(i) => {
                response.updated.insert(current.id.clone(), Value::Null);
                if i != current {
                    all[index] = i.clone();
                    ops.push(IdentityOp::Update(i));
                }
            }
            Err(e) => response.update_failed(key, e),
        }
    }
    for key in &req.destroy {
        let Some(index) = resolve(key).and_then(|id| all.iter().position(|i| i.id == id)) else {
            response.destroy_failed(key, SetError::not_found());
            continue;
        };
        if !all[index].may_delete {
            // IDN-02
            response.destroy_failed(
                key,
                SetError::forbidden("the default identity cannot be destroyed"),
            );
            continue;
        }
        let i = all.remove(index);
        response.destroyed.push(i.id.clone());
        ops.push(IdentityOp::Delete(i.id));
    }
    ops
}

/// A created identity, checked: it needs an email this user may send from (IDN-02).
fn new_identity(props: &Map<String, Value>, own_email: &str) -> Result<Identity, SetError> {
    let mut i = Identity {
        id: new_identity_id(),
        name: String::new(),
        email: String::new(),
        reply_to: None,
        bcc: None,
        text_signature: String::new(),
        html_signature: String::new(),
        may_delete: true,
    };
    read_properties(&mut i, props, None)?;
    if !props.contains_key("email") {
        return Err(SetError::invalid_properties(
            &["email"],
            "email is required",
        ));
    }
    if !may_send_from(own_email, &i.email) {
        // IDN-02, RFC 8621 §6.3
        return Err(SetError::new(
            SetErrorType::ForbiddenFrom,
            format!("this user may not send from {:?}", i.email),
        ));
    }
    Ok(i)
}

/// `current` with a patch applied; a property patched to null returns to its default (SET-14).
fn patched(current: &Identity, patch: &Map<String, Value>) -> Result<Identity, SetError> {
    let before = to_json(current);
    let mut after = before.clone();
    apply_patch(&mut after, patch).map_err(|e| SetError::invalid_patch(e.to_string()))?;
    let (mut props, removed) = standard::patch_diff(&before, &after);
    for k in removed {
        let default = match k.as_str() {
            "name" | "textSignature" | "htmlSignature" => json!(""),
            _ => Value::Null,
        };
        props.insert(k, default);
    }
    let mut i = current.clone();
    read_properties(&mut i, &props, Some(&before))?;
    Ok(i)
}

/// A fresh identity id (`i` + 15 of `[a-z0-9]`).
fn new_identity_id() -> String {
    crate::jmap::args::new_id('i')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_address_is_the_user_name_or_the_name_at_the_domain() {
        assert_eq!(default_email("Bob@Example.org", "x"), "bob@example.org");
        assert_eq!(default_email("alice", "mail.test"), "alice@mail.test");
        assert!(may_send_from("alice@mail.test", "Alice@Mail.Test"));
        assert!(!may_send_from("alice@mail.test", "mallory@mail.test"));
    }

    #[test]
    fn reply_to_must_be_a_list_of_addresses() {
        assert!(addresses("replyTo", &json!([{"name": null, "email": "a@b"}])).is_ok());
        assert!(addresses("replyTo", &Value::Null).unwrap().is_none());
        for bad in [
            json!("a@b"),
            json!([{"email": "nope"}]),
            json!([{"email": "a@b", "x": 1}]),
        ] {
            assert_eq!(
                addresses("replyTo", &bad).unwrap_err().kind,
                SetErrorType::InvalidProperties
            );
        }
    }

    #[test]
    fn email_and_may_delete_cannot_change_on_update() {
        let d = default_identity("alice", "h");
        let before = to_json(&d);
        let mut i = d.clone();
        let e = read_properties(
            &mut i,
            &json!({"email": "x@h"}).as_object().unwrap().clone(),
            Some(&before),
        )
        .unwrap_err();
        assert_eq!(e.properties, Some(vec!["email".to_owned()]));
        let e = read_properties(
            &mut i,
            &json!({"mayDelete": true}).as_object().unwrap().clone(),
            Some(&before),
        )
        .unwrap_err();
        assert_eq!(e.properties, Some(vec!["mayDelete".to_owned()]));
    }
}
