//! The method table: every JMAP method Herald serves, by wire name. Each wire name appears here
//! once; a handler is a plain function over the request context.

use super::capability::CORE;
use super::core;
use super::dispatch::{AccountUse, MethodSpec, MethodTable};
use super::push_subscription::{self, PushSubscriptionStore};

/// Builds the table for a context type `C`.
pub fn method_table<C>() -> MethodTable<C>
where
    C: PushSubscriptionStore,
{
    MethodTable::new(vec![
        MethodSpec {
            name: "Core/echo",
            capability: CORE,
            account: AccountUse::None,
            handler: core::echo::<C>,
        },
        // RFC 8620 §7.2: not account-scoped.
        MethodSpec {
            name: "PushSubscription/get",
            capability: CORE,
            account: AccountUse::None,
            handler: push_subscription::get::<C>,
        },
        MethodSpec {
            name: "PushSubscription/set",
            capability: CORE,
            account: AccountUse::None,
            handler: push_subscription::set::<C>,
        },
    ])
}
