//! `/changes` arguments and response (RFC 8620 §5.2).

use serde_json::{Map, Value, json};

use super::object;
use crate::jmap::args::UnsignedInt;
use crate::jmap::changes::{ChangesPage, ChangesSince};
use crate::jmap::dispatch::Call;
use crate::jmap::error::MethodError;

/// Parsed `Foo/changes` arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangesRequest {
    pub since_state: String,
    /// The decoded state; `None` when we never issued it (→ `cannotCalculateChanges`).
    pub since: Option<ChangesSince>,
    pub max_changes: usize,
}

impl ChangesRequest {
    /// The change-log position `sinceState` names; `cannotCalculateChanges` for a state we never
    /// issued.
    pub fn since(&self) -> Result<&ChangesSince, MethodError> {
        self.since.as_ref().ok_or_else(|| {
            MethodError::CannotCalculateChanges(format!("unknown state {:?}", self.since_state))
        })
    }
}

/// Reads `sinceState` and `maxChanges` (RFC 8620 §5.2). The server caps `maxChanges` at
/// `server_max`.
pub fn parse_changes(
    call: &mut Call<'_>,
    server_max: usize,
) -> Result<ChangesRequest, MethodError> {
    let since_state: String = call.args.required("sinceState")?;
    let max_changes = match call.args.optional::<UnsignedInt>("maxChanges")? {
        Some(UnsignedInt(0)) => {
            return Err(MethodError::InvalidArguments(
                "maxChanges must be at least 1".into(),
            ));
        }
        Some(UnsignedInt(n)) => (n as usize).min(server_max),
        None => server_max,
    };
    Ok(ChangesRequest {
        since: ChangesSince::parse(&since_state),
        since_state,
        max_changes,
    })
}

/// The `/changes` response (CHG-02).
pub fn changes_response(
    account_id: &str,
    since_state: &str,
    page: &ChangesPage,
) -> Map<String, Value> {
    object(json!({
        "accountId": account_id,
        "oldState": since_state,
        "newState": ChangesSince {
            seq: page.new_seq,
            after: page.new_after.clone(),
        }
        .state(),
        "hasMoreChanges": page.has_more_changes,
        "created": page.created,
        "updated": page.updated,
        "destroyed": page.destroyed,
    }))
}
