//! Bearer tokens: `hrd_<id>_<secret>`. Only a SHA-256 of the whole token is stored, so a database
//! leak gives no usable token; revoking deletes the row and takes effect on the next request.

use super::first_row::FirstRowDsl;
use diesel::prelude::*;

use super::schema::{tokens, users};
use super::{AnyConnection, StoreError, new_id, now, random_secret, sha256_hex};

const PREFIX: &str = "hrd_";

/// A token as listed (never with its secret).
#[derive(Clone, Debug, Queryable)]
pub struct TokenInfo {
    pub id: String,
    pub user_name: String,
    pub created_at: i64,
}

/// Creates a token for user `name`; returns `(token id, token)`. The token is shown only now.
pub fn create(conn: &mut AnyConnection, name: &str) -> Result<(String, String), StoreError> {
    let user_id = super::users::id_by_name_ignoring_case(conn, name)?
        .ok_or_else(|| StoreError::NotFound(format!("user {name}")))?;
    let id = new_id('t');
    // 256 bits of secret: guessing is hopeless, so a plain hash (not argon2) is enough to store it.
    let token = format!("{PREFIX}{id}_{}", random_secret(32));
    diesel::insert_into(tokens::table)
        .values((
            tokens::id.eq(&id),
            tokens::user_id.eq(&user_id),
            tokens::secret_hash.eq(sha256_hex(token.as_bytes())),
            tokens::created_at.eq(now()),
        ))
        .execute(conn)?;
    Ok((id, token))
}

/// Revokes a token given by its id or by the whole token.
pub fn revoke(conn: &mut AnyConnection, id_or_token: &str) -> Result<(), StoreError> {
    let id = match id_or_token.strip_prefix(PREFIX) {
        Some(rest) => rest.split('_').next().unwrap_or_default(),
        None => id_or_token,
    };
    conn.transaction(|conn| {
        let token: Option<(String, String)> = tokens::table
            .find(id)
            .select((tokens::user_id, tokens::secret_hash))
            .first_row(conn)
            .optional()?;
        let Some((user_id, hash)) = token else {
            return Err(StoreError::NotFound(format!("token {id}")));
        };
        diesel::delete(tokens::table.find(id)).execute(conn)?;
        // The PushSubscriptions it created go with it (PSUB-03).
        super::push_subscription::destroy_bound_to(conn, &user_id, Some(&hash))?;
        // Streams opened with it end at once (`store::access_epoch`).
        super::access_epoch::announce(conn)
    })
}

/// Which of `hashes` (`secret_hash` values) belong to tokens that still exist.
pub fn existing(
    conn: &mut AnyConnection,
    hashes: &[String],
) -> Result<std::collections::HashSet<String>, StoreError> {
    if hashes.is_empty() {
        return Ok(Default::default());
    }
    let found: Vec<String> = tokens::table
        .filter(tokens::secret_hash.eq_any(hashes))
        .select(tokens::secret_hash)
        .load(conn)?;
    Ok(found.into_iter().collect())
}

/// Tokens, optionally only those of user `name` (an error when there is no such user, as for
/// every other command naming one).
pub fn list(conn: &mut AnyConnection, name: Option<&str>) -> Result<Vec<TokenInfo>, StoreError> {
    let mut query = tokens::table
        .inner_join(users::table)
        .select((tokens::id, users::name, tokens::created_at))
        .order((users::name.asc(), tokens::created_at.asc()))
        .into_boxed();
    if let Some(name) = name {
        let user_id = super::users::id_by_name_ignoring_case(conn, name)?
            .ok_or_else(|| StoreError::NotFound(format!("user {name}")))?;
        query = query.filter(users::id.eq(user_id));
    }
    Ok(query.load(conn)?)
}

/// What a bearer token is stored as (`tokens::secret_hash`), or `None` for a string that cannot
/// be one of ours.
pub fn secret_hash_of(token: &str) -> Option<String> {
    (token.starts_with(PREFIX) && token.len() <= 200).then(|| sha256_hex(token.as_bytes()))
}
