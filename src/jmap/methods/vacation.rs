//! VacationResponse (RFC 8621 §8): get and set of the one object per account, `singleton`.
//!
//! Only the object is kept here; sending the replies belongs to local delivery (VAC-04, VAC-05).

use serde_json::{Map, Value, json};

use crate::jmap::dispatch::Call;
use crate::jmap::error::MethodError;
use crate::jmap::patch::apply_patch;
use crate::jmap::standard::{self, DataType, Listed, SetError, SetErrorType, SetResponse};

/// The push and state type name.
pub const DATA_TYPE: &str = "VacationResponse";

/// The one id (VAC-01).
pub const SINGLETON: &str = "singleton";

/// Every VacationResponse property (VAC-02).
pub const PROPERTIES: &[&str] = &[
    "id",
    "isEnabled",
    "fromDate",
    "toDate",
    "subject",
    "textBody",
    "htmlBody",
];

/// Longest subject or body accepted, in octets.
pub const MAX_TEXT_OCTETS: usize = 256 * 1024;

/// The stored object; the default is disabled with every other property null.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VacationResponse {
    pub is_enabled: bool,
    /// UTCDate strings (RFC 8620 §1.4), normalised as sent.
    pub from_date: Option<String>,
    pub to_date: Option<String>,
    pub subject: Option<String>,
    pub text_body: Option<String>,
    pub html_body: Option<String>,
}

/// Decides a VacationResponse/set from the current state and object: the new object, or `None`
/// when nothing changes.
pub type VacationDecision<'a> =
    dyn FnMut(&str, &VacationResponse) -> Result<Option<VacationResponse>, MethodError> + 'a;

/// What the VacationResponse methods need from the store.
pub trait VacationStore {
    /// The account's VacationResponse (the default when never set) and its state.
    fn vacation_get(&mut self, account_id: &str)
    -> Result<(String, VacationResponse), MethodError>;
    /// In one write transaction: reads the object and state, lets `decide` return the new object
    /// (`None`: unchanged), stores it. Returns the state before and after. An `Err` from `decide`
    /// rolls back.
    fn vacation_write(
        &mut self,
        account_id: &str,
        decide: &mut VacationDecision<'_>,
    ) -> Result<(String, String), MethodError>;
}

/// The full JSON form.
pub fn to_json(v: &VacationResponse) -> Map<String, Value> {
    match json!({
        "id": SINGLETON,
        "isEnabled": v.is_enabled,
        "fromDate": v.from_date,
        "toDate": v.to_date,
        "subject": v.subject,
        "textBody": v.text_body,
        "htmlBody": v.html_body,
    }) {
        Value::Object(o) => o,
        _ => Map::new(),
    }
}

/// Whether `s` is a UTCDate (RFC 8620 §1.4): RFC 3339 `date-time` with `Z` and upper-case letters.
pub fn is_utc_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b[10] == b'T'
        && s.ends_with('Z')
        && chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

impl DataType for VacationResponse {
    const NAME: &'static str = DATA_TYPE;
}

/// `VacationResponse/get` (RFC 8621 §8.1): a list of one, `singleton`.
impl<C: VacationStore> Listed<C> for VacationResponse {
    const PROPERTIES: &'static [&'static str] = PROPERTIES;
    /// The VacationResponse state and the object.
    type Snapshot = (String, VacationResponse);

    fn load(ctx: &mut C, call: &Call<'_>) -> Result<Self::Snapshot, MethodError> {
        ctx.vacation_get(call.account_id())
    }

    fn state(snapshot: &Self::Snapshot) -> &str {
        &snapshot.0
    }

    fn records(snapshot: &Self::Snapshot) -> &[VacationResponse] {
        std::slice::from_ref(&snapshot.1)
    }

    fn id(&self) -> &str {
        SINGLETON
    }

    fn to_json(&self, _: &Self::Snapshot, _: &Call<'_>) -> Map<String, Value> {
        to_json(self)
    }
}

fn optional_text(key: &str, value: &Value) -> Result<Option<String>, SetError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.len() <= MAX_TEXT_OCTETS => Ok(Some(s.clone())),
        _ => Err(SetError::invalid_properties(
            &[key],
            format!("{key} is null or a string of at most {MAX_TEXT_OCTETS} octets"),
        )),
    }
}

fn optional_date(key: &str, value: &Value) -> Result<Option<String>, SetError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if is_utc_date(s) => Ok(Some(s.clone())),
        _ => Err(SetError::invalid_properties(
            &[key],
            format!("{key} is null or a UTCDate such as 2026-12-24T00:00:00Z"),
        )),
    }
}

/// Applies an update's patch to `current` (VAC-02 types; `id` may only be "changed" to itself).
fn patched(
    current: &VacationResponse,
    patch: &Map<String, Value>,
) -> Result<VacationResponse, SetError> {
    let before = to_json(current);
    let mut after = before.clone();
    apply_patch(&mut after, patch).map_err(|e| SetError::invalid_patch(e.to_string()))?;
    let mut v = current.clone();
    for key in before
        .keys()
        .chain(after.keys().filter(|k| !before.contains_key(*k)))
    {
        let value = after.get(key).cloned().unwrap_or(Value::Null);
        if before.get(key) == Some(&value) {
            continue;
        }
        match key.as_str() {
            "isEnabled" => match value {
                Value::Bool(b) => v.is_enabled = b,
                // A null patch resets to the default, disabled.
                Value::Null => v.is_enabled = false,
                _ => {
                    return Err(SetError::invalid_properties(
                        &["isEnabled"],
                        "isEnabled is a boolean",
                    ));
                }
            },
            "fromDate" => v.from_date = optional_date(key, &value)?,
            "toDate" => v.to_date = optional_date(key, &value)?,
            "subject" => v.subject = optional_text(key, &value)?,
            "textBody" => v.text_body = optional_text(key, &value)?,
            "htmlBody" => v.html_body = optional_text(key, &value)?,
            "id" => {
                return Err(SetError::invalid_properties(
                    &["id"],
                    "id is set by the server",
                ));
            }
            k => {
                return Err(SetError::invalid_properties(
                    &[k],
                    format!("VacationResponse has no property {k:?}"),
                ));
            }
        }
    }
    Ok(v)
}

/// `VacationResponse/set` (RFC 8621 §8.2; VAC-03: create and destroy → `singleton`).
pub fn set<C: VacationStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Result<Map<String, Value>, MethodError> {
    let req = standard::parse_set(call)?;
    std::mem::take(&mut call.args).finish()?;
    let account_id = call.account_id().to_owned();
    let mut response = SetResponse::default();
    let (old_state, new_state) = ctx.vacation_write(&account_id, &mut |state, current| {
        response = SetResponse::default();
        req.check_state(state)?;
        for (cid, _) in &req.create {
            response.create_failed(
                cid,
                SetError::new(
                    SetErrorType::Singleton,
                    "the VacationResponse exists already and is the only one",
                ),
            );
        }
        let mut next = current.clone();
        for (key, patch) in &req.update {
            if key != SINGLETON {
                response.update_failed(key, SetError::not_found());
                continue;
            }
            match patched(&next, patch) {
                Ok(v) => {
                    next = v;
                    response.updated.insert(SINGLETON.into(), Value::Null);
                }
                Err(e) => response.update_failed(key, e),
            }
        }
        for id in &req.destroy {
            let e = if id == SINGLETON {
                SetError::new(
                    SetErrorType::Singleton,
                    "the VacationResponse cannot be destroyed",
                )
            } else {
                SetError::not_found()
            };
            response.destroy_failed(id, e);
        }
        Ok((next != *current).then_some(next))
    })?;
    Ok(response.to_response(Some(&account_id), Some((old_state, new_state))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_need_z_and_upper_case() {
        assert!(is_utc_date("2026-12-24T08:00:00Z"));
        assert!(is_utc_date("2026-12-24T08:00:00.5Z"));
        for bad in [
            "2026-12-24t08:00:00Z",
            "2026-12-24T08:00:00+01:00",
            "2026-12-24",
            "x",
        ] {
            assert!(!is_utc_date(bad), "{bad}");
        }
    }

    #[test]
    fn a_patch_to_null_resets_and_wrong_types_are_invalid_properties() {
        let v = VacationResponse {
            is_enabled: true,
            subject: Some("away".into()),
            ..Default::default()
        };
        let p = |j: Value| j.as_object().unwrap().clone();
        let reset = patched(&v, &p(json!({"subject": null}))).unwrap();
        assert_eq!(reset.subject, None);
        let e = patched(&v, &p(json!({"fromDate": "tomorrow"}))).unwrap_err();
        assert_eq!(e.properties, Some(vec!["fromDate".to_owned()]));
        let e = patched(&v, &p(json!({"colour": "red"}))).unwrap_err();
        assert_eq!(e.kind, SetErrorType::InvalidProperties);
    }
}
