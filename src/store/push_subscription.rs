//! PushSubscriptions in the database.
//!
//! Subscriptions, their verification rows in the outbox, and their cursors (where each one stands
//! in each account). The outbox itself, catch-up, claims and settlement, is
//! [`super::webhook_outbox`], which builds on this module.

use super::first_row::FirstRowDsl;
use std::net::{IpAddr, ToSocketAddrs};

use diesel::prelude::*;

use super::schema::{
    account_access, accounts, push_creation_windows, push_cursors, push_deliveries,
    push_subscriptions,
};
use super::webhook_outbox::{
    KIND_VERIFICATION, MissingCursor, catch_up, outbox_signal, take_write_lock,
};
use super::{AnyConnection, StoreContext, StoreError, new_id, now, random_secret};
use crate::jmap::error::MethodError;
use crate::jmap::methods::push_subscription::keys::UaKeys;
use crate::jmap::methods::push_subscription::{
    NewSubscription, PushSubscriptionStore, Subscription, SubscriptionChange,
};

pub use super::now_ms;

pub(crate) type SubscriptionRow = (
    String,
    String,
    String,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    String,
    bool,
    i64,
    Option<String>,
    Option<String>,
);

pub(crate) fn subscription_from_row(row: SubscriptionRow) -> Subscription {
    let (
        id,
        device_client_id,
        url,
        p256dh,
        auth,
        verification_code,
        verified,
        expires,
        types,
        token_hash,
    ) = row;
    Subscription {
        id,
        device_client_id,
        url,
        keys: match (p256dh, auth) {
            (Some(p256dh), Some(auth)) => Some(UaKeys { p256dh, auth }),
            _ => None,
        },
        verification_code,
        verified,
        expires,
        types: types.and_then(|t| serde_json::from_str(&t).ok()),
        token_hash,
    }
}

macro_rules! subscription_columns {
    () => {
        (
            push_subscriptions::id,
            push_subscriptions::device_client_id,
            push_subscriptions::url,
            push_subscriptions::p256dh,
            push_subscriptions::auth,
            push_subscriptions::verification_code,
            push_subscriptions::verified,
            push_subscriptions::expires,
            push_subscriptions::types,
            push_subscriptions::token_hash,
        )
    };
}
pub(crate) use subscription_columns;

/// The user's subscriptions, oldest first.
pub fn list(conn: &mut AnyConnection, user_id: &str) -> Result<Vec<Subscription>, StoreError> {
    let rows: Vec<SubscriptionRow> = push_subscriptions::table
        .filter(push_subscriptions::user_id.eq(user_id))
        .order((
            push_subscriptions::created_at.asc(),
            push_subscriptions::id.asc(),
        ))
        .select(subscription_columns!())
        .load(conn)?;
    Ok(rows.into_iter().map(subscription_from_row).collect())
}

/// One subscription by id, whoever owns it.
pub fn find(conn: &mut AnyConnection, id: &str) -> Result<Option<Subscription>, StoreError> {
    let row: Option<SubscriptionRow> = push_subscriptions::table
        .find(id)
        .select(subscription_columns!())
        .first_row(conn)
        .optional()?;
    Ok(row.map(subscription_from_row))
}

/// Stores a subscription with a fresh id and a 256-bit verification code (PSUB-05), and queues
/// its PushVerification. Returns the id.
pub fn create(
    conn: &mut AnyConnection,
    user_id: &str,
    new: &NewSubscription,
) -> Result<String, StoreError> {
    let id = new_id('p');
    let code = random_secret(32);
    let types = new
        .types
        .as_ref()
        .map(|t| serde_json::to_string(t).unwrap_or_default());
    let at = now_ms();
    conn.transaction::<_, StoreError, _>(|conn| {
        diesel::insert_into(push_subscriptions::table)
            .values((
                push_subscriptions::id.eq(&id),
                push_subscriptions::user_id.eq(user_id),
                push_subscriptions::device_client_id.eq(&new.device_client_id),
                push_subscriptions::url.eq(&new.url),
                push_subscriptions::p256dh.eq(new.keys.as_ref().map(|k| k.p256dh.clone())),
                push_subscriptions::auth.eq(new.keys.as_ref().map(|k| k.auth.clone())),
                push_subscriptions::verification_code.eq(&code),
                push_subscriptions::verified.eq(false),
                push_subscriptions::expires.eq(new.expires),
                push_subscriptions::types.eq(types),
                push_subscriptions::created_at.eq(now()),
                push_subscriptions::token_hash.eq(&new.token_hash),
            ))
            .execute(conn)?;
        diesel::insert_into(push_deliveries::table)
            .values((
                push_deliveries::subscription_id.eq(&id),
                push_deliveries::kind.eq(KIND_VERIFICATION),
                push_deliveries::changed.eq("{}"),
                push_deliveries::revision.eq(0),
                push_deliveries::attempts.eq(0),
                push_deliveries::first_pending_at.eq(at),
                push_deliveries::next_attempt_at.eq(at),
            ))
            .execute(conn)?;
        Ok(())
    })?;
    outbox_signal().send_modify(|n| *n = n.wrapping_add(1));
    Ok(id)
}

/// Applies a validated change. Verifying drops a PushVerification still queued for retry.
pub fn update(
    conn: &mut AnyConnection,
    user_id: &str,
    id: &str,
    change: &SubscriptionChange,
) -> Result<(), StoreError> {
    if change.types.is_some() {
        // Changes committed before `types` changes are judged by the filter in force when they
        // were made: bring the outbox up to date under the old filter first. (The sender catches
        // up asynchronously; without this, a change the old filter excluded could be delivered
        // under the new one.) Outside the update's transaction: catch_up must write first.
        let accounts: Vec<String> = push_cursors::table
            .filter(push_cursors::subscription_id.eq(id))
            .select(push_cursors::account_id)
            .load(conn)?;
        for account in accounts {
            catch_up(conn, &account, MissingCursor::Skip)?;
        }
    }
    conn.transaction::<_, StoreError, _>(|conn| {
        let target = push_subscriptions::table
            .filter(push_subscriptions::id.eq(id))
            .filter(push_subscriptions::user_id.eq(user_id));
        if change.verify {
            diesel::update(target)
                .set(push_subscriptions::verified.eq(true))
                .execute(conn)?;
            start_cursors(conn, user_id, id)?;
            diesel::delete(
                push_deliveries::table
                    .filter(push_deliveries::subscription_id.eq(id))
                    .filter(push_deliveries::kind.eq(KIND_VERIFICATION)),
            )
            .execute(conn)?;
        }
        if let Some(expires) = change.expires {
            diesel::update(target)
                .set(push_subscriptions::expires.eq(expires))
                .execute(conn)?;
        }
        if let Some(types) = &change.types {
            let types = types
                .as_ref()
                .map(|t| serde_json::to_string(t).unwrap_or_default());
            diesel::update(target)
                .set(push_subscriptions::types.eq(types))
                .execute(conn)?;
        }
        Ok(())
    })
}

/// Destroys a subscription (and, by cascade, its outbox row). The URL and keys are overwritten
/// first, so they do not linger in the row's old versions any longer than needed (PSUB-10).
/// `user_id: None` destroys whoever owns it (a retired or expired subscription).
pub fn destroy(
    conn: &mut AnyConnection,
    user_id: Option<&str>,
    id: &str,
) -> Result<bool, StoreError> {
    conn.transaction::<_, StoreError, _>(|conn| {
        let mut erase = diesel::update(push_subscriptions::table)
            .filter(push_subscriptions::id.eq(id))
            .into_boxed();
        if let Some(user_id) = user_id {
            erase = erase.filter(push_subscriptions::user_id.eq(user_id));
        }
        let n = erase
            .set((
                push_subscriptions::url.eq(""),
                push_subscriptions::p256dh.eq(None::<Vec<u8>>),
                push_subscriptions::auth.eq(None::<Vec<u8>>),
                push_subscriptions::verification_code.eq(""),
            ))
            .execute(conn)?;
        if n == 0 {
            return Ok(false);
        }
        diesel::delete(push_subscriptions::table.find(id)).execute(conn)?;
        Ok(true)
    })
}

/// Destroys `user_id`'s subscriptions created with the bearer token of `token_hash`, or with a
/// password for `None`: those credentials were revoked (PSUB-03). URLs and keys are overwritten
/// first, as [`destroy`] does.
pub fn destroy_bound_to(
    conn: &mut AnyConnection,
    user_id: &str,
    token_hash: Option<&str>,
) -> Result<usize, StoreError> {
    let bound: Vec<String> = match token_hash {
        Some(hash) => push_subscriptions::table
            .filter(push_subscriptions::user_id.eq(user_id))
            .filter(push_subscriptions::token_hash.eq(hash))
            .select(push_subscriptions::id)
            .load(conn)?,
        None => push_subscriptions::table
            .filter(push_subscriptions::user_id.eq(user_id))
            .filter(push_subscriptions::token_hash.is_null())
            .select(push_subscriptions::id)
            .load(conn)?,
    };
    for id in &bound {
        destroy(conn, None, id)?;
    }
    Ok(bound.len())
}

/// Counts one subscription creation by `user_id` in a fixed window of `window_secs`; `false`
/// when `limit` creations were already counted in the current window.
pub fn take_creation_slot(
    conn: &mut AnyConnection,
    user_id: &str,
    limit: u64,
    window_secs: i64,
    at: i64,
) -> Result<bool, StoreError> {
    conn.transaction::<_, StoreError, _>(|conn| {
        take_write_lock(conn)?;
        let row: Option<(i64, i32)> = push_creation_windows::table
            .find(user_id)
            .select((
                push_creation_windows::window_start,
                push_creation_windows::created,
            ))
            .first_row(conn)
            .optional()?;
        let (start, created) = match row {
            Some((start, created)) if at - start < window_secs => (start, created as u64),
            _ => (at, 0),
        };
        if created >= limit {
            return Ok(false);
        }
        let values = (
            push_creation_windows::window_start.eq(start),
            push_creation_windows::created.eq((created + 1) as i32),
        );
        if row.is_some() {
            diesel::update(push_creation_windows::table.find(user_id))
                .set(values)
                .execute(conn)?;
        } else {
            diesel::insert_into(push_creation_windows::table)
                .values((
                    push_creation_windows::user_id.eq(user_id),
                    values.0,
                    values.1,
                ))
                .execute(conn)?;
        }
        Ok(true)
    })
}

impl PushSubscriptionStore for StoreContext {
    fn push_subscriptions(&mut self, user_id: &str) -> Result<Vec<Subscription>, MethodError> {
        list(self.conn(), user_id).map_err(MethodError::from)
    }

    fn create_push_subscription(
        &mut self,
        user_id: &str,
        new: &NewSubscription,
    ) -> Result<String, MethodError> {
        create(self.conn(), user_id, new).map_err(MethodError::from)
    }

    fn update_push_subscription(
        &mut self,
        user_id: &str,
        id: &str,
        change: &SubscriptionChange,
    ) -> Result<(), MethodError> {
        update(self.conn(), user_id, id, change).map_err(MethodError::from)
    }

    fn destroy_push_subscription(&mut self, user_id: &str, id: &str) -> Result<bool, MethodError> {
        destroy(self.conn(), Some(user_id), id).map_err(MethodError::from)
    }

    fn take_creation_slot(
        &mut self,
        user_id: &str,
        limit: u64,
        window_secs: i64,
    ) -> Result<bool, MethodError> {
        take_creation_slot(self.conn(), user_id, limit, window_secs, now())
            .map_err(MethodError::from)
    }

    fn resolve_host(&mut self, host: &str, port: u16) -> Result<Vec<IpAddr>, String> {
        (host, port)
            .to_socket_addrs()
            .map(|addrs| addrs.map(|a| a.ip()).collect())
            .map_err(|e| format!("{host} does not resolve: {e}"))
    }

    fn now(&self) -> i64 {
        now()
    }
}

// Cursors: where each subscription stands in each account it may read.

pub(crate) fn set_cursor(
    conn: &mut AnyConnection,
    subscription_id: &str,
    account_id: &str,
    seq: i64,
    exists: bool,
) -> Result<(), StoreError> {
    if exists {
        diesel::update(push_cursors::table.find((subscription_id, account_id)))
            .set(push_cursors::seq.eq(seq))
            .execute(conn)?;
    } else {
        diesel::insert_into(push_cursors::table)
            .values((
                push_cursors::subscription_id.eq(subscription_id),
                push_cursors::account_id.eq(account_id),
                push_cursors::seq.eq(seq),
            ))
            .execute(conn)?;
    }
    Ok(())
}
/// Starts the cursors of `user_id`'s verified subscriptions on `account_id` at its current
/// position, when the user is given access to it (`accounts::share`): every write after the
/// share is pushed, none from before. Without it, a periodic catch-up that met the account's
/// first write before the write's own announcement started the cursor past that write.
pub(crate) fn start_cursors_on_account(
    conn: &mut AnyConnection,
    user_id: &str,
    account_id: &str,
) -> Result<(), StoreError> {
    let seq: i64 = accounts::table
        .find(account_id)
        .select(accounts::seq)
        .first_row(conn)?;
    let subscriptions: Vec<String> = push_subscriptions::table
        .filter(push_subscriptions::user_id.eq(user_id))
        .filter(push_subscriptions::verified.eq(true))
        .select(push_subscriptions::id)
        .load(conn)?;
    for subscription_id in subscriptions {
        let exists = push_cursors::table
            .find((&subscription_id, account_id))
            .select(push_cursors::seq)
            .first_row::<i64, _>(conn)
            .optional()?
            .is_some();
        // A cursor left from an earlier share restarts too: what happened while the user had
        // no access is not theirs to hear of.
        set_cursor(conn, &subscription_id, account_id, seq, exists)?;
    }
    Ok(())
}

/// Starts a newly verified subscription's cursors at the current position of every account its
/// owner may read: nothing from before the verification is pushed (PSUB-06).
pub(crate) fn start_cursors(
    conn: &mut AnyConnection,
    user_id: &str,
    subscription_id: &str,
) -> Result<(), StoreError> {
    let positions: Vec<(String, i64)> = account_access::table
        .inner_join(accounts::table)
        .filter(account_access::user_id.eq(user_id))
        .select((accounts::id, accounts::seq))
        .load(conn)?;
    for (account_id, seq) in positions {
        let exists = push_cursors::table
            .find((subscription_id, &account_id))
            .select(push_cursors::seq)
            .first_row::<i64, _>(conn)
            .optional()?
            .is_some();
        if !exists {
            set_cursor(conn, subscription_id, &account_id, seq, false)?;
        }
    }
    Ok(())
}
