//! Accounts and who may use them.

use super::first_row::FirstRowDsl;
use diesel::prelude::*;

use super::schema::{account_access, accounts};
use super::{AnyConnection, StoreError};
use crate::jmap::session::AccountAccess;

/// The id of the personal account of `user_id` (the account the user owns).
pub fn personal_account(conn: &mut AnyConnection, user_id: &str) -> Result<String, StoreError> {
    account_access::table
        .filter(account_access::user_id.eq(user_id))
        .filter(account_access::is_owner.eq(true))
        .select(account_access::account_id)
        .order(account_access::account_id.asc())
        .first_row(conn)
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("the personal account of user {user_id}")))
}

/// The personal account of the user called `owner`: `(user id, account id)`.
fn owned_account_of(conn: &mut AnyConnection, owner: &str) -> Result<(String, String), StoreError> {
    let user = super::users::find_by_name(conn, owner)?
        .ok_or_else(|| StoreError::NotFound(format!("user {owner}")))?;
    let account_id: String = accounts::table
        .filter(accounts::owner_id.eq(&user.id))
        .order(accounts::created_at.asc())
        .select(accounts::id)
        .first_row(conn)
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("an account of {owner}")))?;
    Ok((user.id, account_id))
}

fn user_id(conn: &mut AnyConnection, name: &str) -> Result<String, StoreError> {
    Ok(super::users::find_by_name(conn, name)?
        .ok_or_else(|| StoreError::NotFound(format!("user {name}")))?
        .id)
}

/// Shares `owner`'s personal account with user `with`, writable unless `read_only`. Sharing again
/// changes the access. Takes effect on the other user's next request: the principal, and with it
/// the session's accounts, is loaded per request.
pub fn share(
    conn: &mut AnyConnection,
    owner: &str,
    with: &str,
    read_only: bool,
) -> Result<(), StoreError> {
    conn.transaction(|conn| {
        let (owner_id, account_id) = owned_account_of(conn, owner)?;
        let with_id = user_id(conn, with)?;
        if with_id == owner_id {
            return Err(StoreError::Invalid(format!(
                "{owner} owns the account; it cannot be shared with its owner"
            )));
        }
        let updated = diesel::update(account_access::table.find((&with_id, &account_id)))
            .set(account_access::may_write.eq(!read_only))
            .execute(conn)?;
        if updated == 0 {
            diesel::insert_into(account_access::table)
                .values((
                    account_access::user_id.eq(&with_id),
                    account_access::account_id.eq(&account_id),
                    account_access::is_owner.eq(false),
                    account_access::may_write.eq(!read_only),
                ))
                .execute(conn)?;
            super::push_subscription::start_cursors_on_account(conn, &with_id, &account_id)?;
        }
        // The user's open push streams start following the account (`push::registry`).
        super::access_epoch::announce(conn)
    })
}

/// Withdraws user `with`'s access to `owner`'s personal account, at once.
pub fn unshare(conn: &mut AnyConnection, owner: &str, with: &str) -> Result<(), StoreError> {
    conn.transaction(|conn| {
        let (_, account_id) = owned_account_of(conn, owner)?;
        let with_id = user_id(conn, with)?;
        let removed = diesel::delete(
            account_access::table
                .filter(account_access::user_id.eq(&with_id))
                .filter(account_access::account_id.eq(&account_id))
                .filter(account_access::is_owner.eq(false)),
        )
        .execute(conn)?;
        if removed == 0 {
            return Err(StoreError::NotFound(format!(
                "a share of {owner}'s account with {with}"
            )));
        }
        super::access_epoch::announce(conn)
    })
}

/// The (user, account) pairs among `user_ids` that may read the account, for the push registry's
/// access audit.
pub fn readable_pairs(
    conn: &mut AnyConnection,
    user_ids: &[String],
) -> Result<Vec<(String, String)>, StoreError> {
    let mut out = Vec::new();
    for chunk in user_ids.chunks(500) {
        let rows: Vec<(String, String)> = account_access::table
            .filter(account_access::user_id.eq_any(chunk))
            .select((account_access::user_id, account_access::account_id))
            .load(conn)?;
        out.extend(rows);
    }
    Ok(out)
}

/// One account of a principal as read by [`user_with_access`]: (account id, account name, is
/// owner, may write); `None` for a user without any account.
type AccessColumns = Option<(String, String, bool, bool)>;

/// Which user [`user_with_access`] looks for.
pub enum UserKey<'a> {
    /// By user name (HTTP Basic).
    Name(&'a str),
    /// By user id (a stream ticket issued to a password login).
    Id(&'a str),
    /// By the SHA-256 of a bearer token (`tokens::secret_hash`).
    TokenHash(&'a str),
}

/// A user with every account they may use, in one query: it runs for every API request, where
/// each round trip to PostgreSQL counts. Accounts come owned first, then by name and id.
pub fn user_with_access(
    conn: &mut AnyConnection,
    key: UserKey<'_>,
) -> Result<Option<(super::users::User, Vec<AccountAccess>)>, StoreError> {
    use super::schema::{tokens, users};
    use super::users::User;
    let access = (
        accounts::id,
        accounts::name,
        account_access::is_owner,
        account_access::may_write,
    )
        .nullable();
    let order = (
        account_access::is_owner.desc(),
        accounts::name.asc(),
        accounts::id.asc(),
    );
    let rows: Vec<(User, AccessColumns)> = match key {
        UserKey::Name(name) => users::table
            .left_join(account_access::table.on(account_access::user_id.eq(users::id)))
            .left_join(accounts::table.on(accounts::id.eq(account_access::account_id)))
            .filter(super::users::named(name))
            .select((User::as_select(), access))
            .order(order)
            .load(conn)?,
        UserKey::Id(id) => users::table
            .left_join(account_access::table.on(account_access::user_id.eq(users::id)))
            .left_join(accounts::table.on(accounts::id.eq(account_access::account_id)))
            .filter(users::id.eq(id))
            .select((User::as_select(), access))
            .order(order)
            .load(conn)?,
        UserKey::TokenHash(hash) => tokens::table
            .inner_join(users::table)
            .left_join(account_access::table.on(account_access::user_id.eq(users::id)))
            .left_join(accounts::table.on(accounts::id.eq(account_access::account_id)))
            .filter(tokens::secret_hash.eq(hash))
            .select((User::as_select(), access))
            .order(order)
            .load(conn)?,
    };
    // A name may match users differing only in case, from before creation refused them: the
    // smallest id wins, as in `users::find_by_name`.
    let Some(user) = rows.iter().map(|(u, _)| u).min_by(|a, b| a.id.cmp(&b.id)) else {
        return Ok(None);
    };
    let user = user.clone();
    let accounts = rows
        .into_iter()
        .filter(|(u, _)| u.id == user.id)
        .filter_map(|(_, a)| a)
        .map(|(account_id, name, is_owner, may_write)| AccountAccess {
            account_id,
            name,
            is_personal: is_owner,
            read_only: !may_write,
        })
        .collect();
    Ok(Some((user, accounts)))
}
