//! `Core/echo` (RFC 8620 §4): returns its arguments unchanged.

use serde_json::{Map, Value};

use crate::jmap::dispatch::Call;
use crate::jmap::error::MethodError;

/// `Core/echo`.
pub fn echo<C>(_ctx: &mut C, call: &mut Call<'_>) -> Result<Map<String, Value>, MethodError> {
    Ok(std::mem::take(&mut call.args).into_map())
}
