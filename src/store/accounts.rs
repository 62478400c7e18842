//! Accounts and who may use them.

use diesel::prelude::*;

use super::schema::{account_access, accounts};
use super::{AnyConnection, StoreError};
use crate::jmap::session::AccountAccess;

/// Every account user `user_id` may read, own account first, then by name.
pub fn access_for_user(
    conn: &mut AnyConnection,
    user_id: &str,
) -> Result<Vec<AccountAccess>, StoreError> {
    let rows: Vec<(String, String, bool, bool)> = account_access::table
        .inner_join(accounts::table)
        .filter(account_access::user_id.eq(user_id))
        .select((
            accounts::id,
            accounts::name,
            account_access::is_owner,
            account_access::may_write,
        ))
        .order((
            account_access::is_owner.desc(),
            accounts::name.asc(),
            accounts::id.asc(),
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(account_id, name, is_owner, may_write)| AccountAccess {
            account_id,
            name,
            is_personal: is_owner,
            read_only: !may_write,
        })
        .collect())
}

/// The id of the personal account of `user_id` (the account the user owns).
pub fn personal_account(conn: &mut AnyConnection, user_id: &str) -> Result<String, StoreError> {
    account_access::table
        .filter(account_access::user_id.eq(user_id))
        .filter(account_access::is_owner.eq(true))
        .select(account_access::account_id)
        .order(account_access::account_id.asc())
        .first(conn)
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("the personal account of user {user_id}")))
}
