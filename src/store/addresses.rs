//! Which user an email address delivers to (LMTP `RCPT TO`, RFC 2033 §4.2).
//!
//! An address belongs to a user when it is the user name (for names with `@`), or
//! `<user name>@<[submission] domain>` (the default identity's address), or an alias
//! (`herald alias add`); failing those, a subaddress `name+tag@domain` is `name@domain`'s (RFC
//! 5233), and a catch-all alias `@domain` takes any address of its domain. Local part and domain compare case-insensitively, as identities' addresses do.

use diesel::prelude::*;

use super::first_row::FirstRowDsl;
use super::schema::{aliases, users};
use super::{AnyConnection, StoreError, now};

/// An alias as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alias {
    pub address: String,
    pub user_name: String,
}

/// Splits and lowercases `local@domain`; `None` for anything else. ASCII case folding: SMTPUTF8
/// local parts are compared as sent, which is what RFC 6531 §3.2 allows a server to do.
fn normalise(address: &str) -> Option<(String, String)> {
    let address = address.trim();
    let (local, domain) = address.rsplit_once('@')?;
    if domain.is_empty() || domain.contains(['<', '>', ' ']) || local.contains(['<', '>']) {
        return None;
    }
    Some((local.to_ascii_lowercase(), domain.to_ascii_lowercase()))
}

/// The id of the user `address` delivers to, if any. `mail_domain` is `[submission] domain`.
///
/// A subaddress (RFC 5233) `alice+tag@domain` delivers where `alice@domain` does unless a user or
/// an alias names it as it is; a catch-all comes last. A bare `postmaster` (RFC 5321 §4.5.1) is
/// `postmaster@<mail_domain>`.
pub fn resolve(
    conn: &mut AnyConnection,
    address: &str,
    mail_domain: &str,
) -> Result<Option<String>, StoreError> {
    let address = address.trim();
    let postmaster;
    let address = if address.eq_ignore_ascii_case("postmaster") {
        postmaster = format!("postmaster@{}", mail_domain.trim());
        postmaster.as_str()
    } else {
        address
    };
    let Some((local, domain)) = normalise(address) else {
        return Ok(None);
    };
    if let Some(user) = resolve_exact(conn, &local, &domain, mail_domain)? {
        return Ok(Some(user));
    }
    if let Some((base, _tag)) = local.split_once('+')
        && !base.is_empty()
        && let Some(user) = resolve_exact(conn, base, &domain, mail_domain)?
    {
        return Ok(Some(user));
    }
    alias_user(conn, &format!("@{domain}"))
}

/// The user `local@domain` names as a user name, a name at the mail domain, or an alias.
fn resolve_exact(
    conn: &mut AnyConnection,
    local: &str,
    domain: &str,
    mail_domain: &str,
) -> Result<Option<String>, StoreError> {
    let full = format!("{local}@{domain}");
    let by_name = super::users::id_by_name_ignoring_case;
    if let Some(user) = by_name(conn, &full)? {
        return Ok(Some(user));
    }
    if domain.eq_ignore_ascii_case(mail_domain.trim())
        && !local.is_empty()
        && let Some(user) = by_name(conn, local)?
    {
        return Ok(Some(user));
    }
    alias_user(conn, &full)
}

/// The user of the alias `key` (an address, or `@domain` for a catch-all).
fn alias_user(conn: &mut AnyConnection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(aliases::table
        .find(key)
        .select(aliases::user_id)
        .first_row(conn)
        .optional()?)
}

/// Makes `address` (or `@domain`, a catch-all) deliver to user `user_name`.
pub fn add_alias(
    conn: &mut AnyConnection,
    address: &str,
    user_name: &str,
) -> Result<(), StoreError> {
    let key = alias_key(address)?;
    let user = super::users::find_by_name(conn, user_name)?
        .ok_or_else(|| StoreError::NotFound(format!("user {user_name}")))?;
    let inserted = diesel::insert_into(aliases::table)
        .values((
            aliases::address.eq(&key),
            aliases::user_id.eq(&user.id),
            aliases::created_at.eq(now()),
        ))
        .execute(conn);
    match inserted {
        Ok(_) => Ok(()),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Err(StoreError::AlreadyExists(format!("alias {key}"))),
        Err(e) => Err(e.into()),
    }
}

/// Removes an alias.
pub fn remove_alias(conn: &mut AnyConnection, address: &str) -> Result<(), StoreError> {
    let key = alias_key(address)?;
    match diesel::delete(aliases::table.find(&key)).execute(conn)? {
        0 => Err(StoreError::NotFound(format!("alias {key}"))),
        _ => Ok(()),
    }
}

/// Every alias, by address.
pub fn list_aliases(conn: &mut AnyConnection) -> Result<Vec<Alias>, StoreError> {
    let rows: Vec<(String, String)> = aliases::table
        .inner_join(users::table)
        .select((aliases::address, users::name))
        .order(aliases::address.asc())
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(address, user_name)| Alias { address, user_name })
        .collect())
}

/// The stored form of an alias: `local@domain` or `@domain`, lowercased.
fn alias_key(address: &str) -> Result<String, StoreError> {
    let bad = || StoreError::Invalid(format!("{address:?} is not an address or @domain"));
    let address = address.trim();
    if let Some(domain) = address.strip_prefix('@') {
        if domain.is_empty() || domain.contains(['@', '<', '>', ' ']) {
            return Err(bad());
        }
        return Ok(format!("@{}", domain.to_ascii_lowercase()));
    }
    let (local, domain) = normalise(address).ok_or_else(bad)?;
    if local.is_empty() {
        return Err(bad());
    }
    Ok(format!("{local}@{domain}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_keys_are_lowercased_addresses_or_domains() {
        assert_eq!(alias_key(" Info@Example.COM ").unwrap(), "info@example.com");
        assert_eq!(alias_key("@Example.com").unwrap(), "@example.com");
        for bad in ["", "@", "nobody", "a@", "<a@b>", "@a b"] {
            assert!(alias_key(bad).is_err(), "{bad:?}");
        }
    }
}
