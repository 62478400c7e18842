//! Server-wide secrets shared by every node (`server_secrets`): made once by whichever node needs
//! one first, replaced only by an operator (`herald vapid rotate`).

use diesel::prelude::*;

use super::first_row::FirstRowDsl;
use super::schema::server_secrets;
use super::{AnyConnection, StoreError, now};

/// The secret `name`, stored now from `make` if there is none yet. When several nodes start at
/// once, the first insert wins and everyone reads it.
pub fn get_or_create(
    conn: &mut AnyConnection,
    name: &str,
    make: impl FnOnce() -> String,
) -> Result<String, StoreError> {
    if let Some(value) = get(conn, name)? {
        return Ok(value);
    }
    let inserted = diesel::insert_into(server_secrets::table)
        .values((
            server_secrets::name.eq(name),
            server_secrets::value.eq(make()),
            server_secrets::created_at.eq(now()),
        ))
        .execute(conn);
    match inserted {
        Ok(_)
        | Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => get(conn, name)?.ok_or_else(|| StoreError::NotFound(format!("secret {name}"))),
        Err(e) => Err(e.into()),
    }
}

/// The secret `name`, if stored.
pub fn get(conn: &mut AnyConnection, name: &str) -> Result<Option<String>, StoreError> {
    Ok(server_secrets::table
        .find(name)
        .select(server_secrets::value)
        .first_row(conn)
        .optional()?)
}

/// Stores `value` as the secret `name`, replacing any earlier one.
pub fn replace(conn: &mut AnyConnection, name: &str, value: &str) -> Result<(), StoreError> {
    conn.transaction(|conn| {
        diesel::delete(server_secrets::table.find(name)).execute(conn)?;
        diesel::insert_into(server_secrets::table)
            .values((
                server_secrets::name.eq(name),
                server_secrets::value.eq(value),
                server_secrets::created_at.eq(now()),
            ))
            .execute(conn)?;
        Ok(())
    })
}
