//! The method table: every JMAP method Herald serves, by wire name. Each wire name appears here
//! once; a handler is a plain function over the request context.

use super::capability::CORE;
use super::core;
use super::dispatch::{AccountUse, MethodSpec, MethodTable};

/// Builds the table for a context type `C`.
pub fn method_table<C>() -> MethodTable<C> {
    MethodTable::new(vec![MethodSpec {
        name: "Core/echo",
        capability: CORE,
        account: AccountUse::None,
        handler: core::echo::<C>,
    }])
}
