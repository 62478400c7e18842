//! Users: who may log in. Creating a user also creates their personal account.

use super::first_row::FirstRowDsl;
use diesel::prelude::*;

use super::schema::{account_access, accounts, stream_tickets, users};
use super::{AnyConnection, StoreError, credentials, new_id, now};

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// The condition that finds users by name, the one way every lookup by name is written: names
/// compare without case (they are local parts of addresses, and creation refuses a name that
/// differs from another only in case), with the database's `lower` on both sides, so a name is
/// always found by its own spelling, and through the `users_lower_name` index.
pub fn named(name: &str) -> diesel::dsl::Eq<lower<users::name>, lower<String>> {
    lower(users::name).eq(lower(name.to_owned()))
}

/// The id of the user whose name is `name`, ignoring case ([`named`]). Of names differing only in
/// case (from before creation refused them), the smallest id wins, as in [`find_by_name`].
pub fn id_by_name_ignoring_case(
    conn: &mut AnyConnection,
    name: &str,
) -> Result<Option<String>, StoreError> {
    Ok(users::table
        .filter(named(name))
        .select(users::id)
        .order(users::id.asc())
        .first_row(conn)
        .optional()?)
}

/// A user row.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = users)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct User {
    pub id: String,
    pub name: String,
    pub password_hash: String,
    pub created_at: i64,
}

/// Checks a user name: it travels in HTTP Basic credentials (no `:`) and in the session's
/// `username`, so it is printable, without spaces, and at most 255 octets.
pub fn validate_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.len() > 255 {
        return Err(StoreError::Invalid(
            "a user name has 1 to 255 octets".into(),
        ));
    }
    if name
        .chars()
        .any(|c| c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err(StoreError::Invalid(
            "a user name has no ':', spaces or control characters".into(),
        ));
    }
    Ok(())
}

fn validate_password(password: &str) -> Result<(), StoreError> {
    if password.is_empty() {
        return Err(StoreError::Invalid("the password is empty".into()));
    }
    if password.len() > 1024 {
        return Err(StoreError::Invalid(
            "the password is longer than 1024 octets".into(),
        ));
    }
    Ok(())
}

/// Creates a user and their personal account, which the user owns and may write.
pub fn create(conn: &mut AnyConnection, name: &str, password: &str) -> Result<User, StoreError> {
    validate_name(name)?;
    validate_password(password)?;
    let hash = credentials::hash_password(password)?;
    conn.transaction(|conn| {
        // Names are addresses' local parts, which compare without case: `Alice` next to `alice`
        // would share a sending address and split incoming mail by accident.
        if id_by_name_ignoring_case(conn, name)?.is_some() {
            return Err(StoreError::AlreadyExists(format!(
                "user {name} (names differing only in case are one)"
            )));
        }
        let user = User {
            id: new_id('u'),
            name: name.to_owned(),
            password_hash: hash,
            created_at: now(),
        };
        diesel::insert_into(users::table)
            .values((
                users::id.eq(&user.id),
                users::name.eq(&user.name),
                users::password_hash.eq(&user.password_hash),
                users::created_at.eq(user.created_at),
            ))
            .execute(conn)?;
        let account_id = new_id('a');
        diesel::insert_into(accounts::table)
            .values((
                accounts::id.eq(&account_id),
                accounts::name.eq(name),
                accounts::owner_id.eq(&user.id),
                accounts::seq.eq(0),
                accounts::log_floor.eq(0),
                accounts::created_at.eq(user.created_at),
            ))
            .execute(conn)?;
        diesel::insert_into(account_access::table)
            .values((
                account_access::user_id.eq(&user.id),
                account_access::account_id.eq(&account_id),
                account_access::is_owner.eq(true),
                account_access::may_write.eq(true),
            ))
            .execute(conn)?;
        super::mailbox::create_defaults(conn, &account_id)?;
        Ok(user)
    })
}

/// Creates user `name` if the store has no user at all, for the first start of a server; `None`
/// when it has one. Nodes may start together on a fresh database (docs/cluster.md): both find no
/// user and both create one, and the loser's insert fails (the unique name on PostgreSQL, a
/// snapshot that another write overtook on SQLite). Its failure is no failure when a user exists
/// after it: the first user was made, by someone else.
pub fn create_first(
    conn: &mut AnyConnection,
    name: &str,
    password: &str,
) -> Result<Option<User>, StoreError> {
    if count(conn)? > 0 {
        return Ok(None);
    }
    match create(conn, name, password) {
        Ok(user) => Ok(Some(user)),
        Err(_) if count(conn)? > 0 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every user, by name.
pub fn list(conn: &mut AnyConnection) -> Result<Vec<User>, StoreError> {
    Ok(users::table
        .order(users::name.asc())
        .select(User::as_select())
        .load(conn)?)
}

/// How many users exist.
pub fn count(conn: &mut AnyConnection) -> Result<i64, StoreError> {
    Ok(users::table.count().get_result(conn)?)
}

/// The user called `name`, ignoring case ([`named`]), if any.
pub fn find_by_name(conn: &mut AnyConnection, name: &str) -> Result<Option<User>, StoreError> {
    Ok(users::table
        .filter(named(name))
        .order(users::id.asc())
        .select(User::as_select())
        .first_row(conn)
        .optional()?)
}

/// Replaces a user's password. Takes effect at once: the credential cache checks the stored hash,
/// WebSockets opened with the old one run nothing more, and the PushSubscriptions created with
/// it are destroyed (PSUB-03: they belong to the credentials that created them).
pub fn set_password(
    conn: &mut AnyConnection,
    name: &str,
    password: &str,
) -> Result<(), StoreError> {
    validate_password(password)?;
    let hash = credentials::hash_password(password)?;
    conn.transaction(|conn| {
        let Some(user_id) = id_by_name_ignoring_case(conn, name)? else {
            return Err(StoreError::NotFound(format!("user {name}")));
        };
        diesel::update(users::table.find(&user_id))
            .set(users::password_hash.eq(hash))
            .execute(conn)?;
        super::push_subscription::destroy_bound_to(conn, &user_id, None)?;
        // Stream tickets minted with the old password die with it.
        diesel::delete(
            stream_tickets::table
                .filter(stream_tickets::user_id.eq(&user_id))
                .filter(stream_tickets::token_hash.is_null()),
        )
        .execute(conn)?;
        // Streams opened with the old password end at once (`store::access_epoch`).
        super::access_epoch::announce(conn)
    })
}

/// Removes a user, their tokens, their access and the accounts they own, with their mail: the
/// messages and uploads only they held are deleted in the same transaction (a removed user's
/// mail must not stay in the store until some upload triggers a purge).
pub fn remove(conn: &mut AnyConnection, name: &str) -> Result<(), StoreError> {
    conn.transaction(|conn| {
        let Some(user_id) = id_by_name_ignoring_case(conn, name)? else {
            return Err(StoreError::NotFound(format!("user {name}")));
        };
        let owned: Vec<String> = accounts::table
            .filter(accounts::owner_id.eq(&user_id))
            .select(accounts::id)
            .load(conn)?;
        let held = super::blobs::held_by(conn, &owned)?;
        diesel::delete(users::table.find(&user_id)).execute(conn)?;
        super::blobs::delete_unheld(conn, &held)?;
        super::access_epoch::announce(conn)
    })
}
