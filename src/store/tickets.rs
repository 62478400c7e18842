//! Stream tickets in the store (`stream_tickets`): browsers cannot put an `Authorization` header
//! on `EventSource` or `WebSocket`, so an authenticated client asks `POST /jmap/ticket` for a
//! short-lived, single-use ticket and passes it as `?ticket=`. Kept in the database, a ticket
//! issued by one node opens a stream on any node of the cluster, once. Only its SHA-256 is stored.

use diesel::prelude::*;

use super::accounts::{UserKey, user_with_access};
use super::schema::stream_tickets;
use super::{AnyConnection, StoreError, now, random_secret, sha256_hex};
use crate::jmap::session::Principal;

/// Why no ticket was issued.
#[derive(Debug, thiserror::Error)]
pub enum TicketError {
    #[error("too many unused tickets; try again shortly")]
    TooMany,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for TicketError {
    fn from(e: diesel::result::Error) -> Self {
        TicketError::Store(e.into())
    }
}

/// Issues a ticket for `user_id` valid for `ttl_secs`; `token_hash` is the bearer token the
/// request authenticated with, if any. At most `max_unused` unexpired tickets per user.
pub fn issue(
    conn: &mut AnyConnection,
    user_id: &str,
    token_hash: Option<&str>,
    ttl_secs: u64,
    max_unused: usize,
) -> Result<String, TicketError> {
    let now = now();
    diesel::delete(stream_tickets::table.filter(stream_tickets::expires_at.le(now)))
        .execute(conn)?;
    let unused: i64 = stream_tickets::table
        .filter(stream_tickets::user_id.eq(user_id))
        .count()
        .get_result(conn)?;
    if unused as usize >= max_unused {
        return Err(TicketError::TooMany);
    }
    let ticket = format!("t{}", random_secret(24));
    diesel::insert_into(stream_tickets::table)
        .values((
            stream_tickets::hash.eq(sha256_hex(ticket.as_bytes())),
            stream_tickets::user_id.eq(user_id),
            stream_tickets::token_hash.eq(token_hash),
            stream_tickets::expires_at.eq(now + ttl_secs as i64),
        ))
        .execute(conn)?;
    Ok(ticket)
}

/// Uses a ticket up: the principal it was issued to, as the store has it now, once, if it has
/// not expired and its user (and token) still exist. Whoever deletes the row owns the ticket,
/// so two nodes redeeming at once cannot both succeed.
pub fn redeem(conn: &mut AnyConnection, ticket: &str) -> Result<Option<Principal>, StoreError> {
    let hash = sha256_hex(ticket.as_bytes());
    let row: Option<(String, Option<String>, i64)> = stream_tickets::table
        .find(&hash)
        .select((
            stream_tickets::user_id,
            stream_tickets::token_hash,
            stream_tickets::expires_at,
        ))
        .get_result(conn)
        .optional()?;
    let Some((user_id, token_hash, expires_at)) = row else {
        return Ok(None);
    };
    let taken = diesel::delete(stream_tickets::table.find(&hash)).execute(conn)?;
    if taken != 1 || expires_at <= now() {
        return Ok(None);
    }
    let key = match &token_hash {
        Some(token) => UserKey::TokenHash(token),
        None => UserKey::Id(&user_id),
    };
    Ok(user_with_access(conn, key)?
        .filter(|(user, _)| user.id == user_id)
        .map(|(user, accounts)| Principal {
            // A ticket minted by a password login holds to the password of now (it lives for
            // seconds): a stream opened with it ends when the password changes.
            password_stamp: token_hash
                .is_none()
                .then(|| super::credentials::password_stamp_of(&user.password_hash)),
            user_id: user.id,
            username: user.name,
            accounts,
            token_hash,
        }))
}
