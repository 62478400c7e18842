//! Blobs (RFC 8620 §6): immutable bytes in the database, addressed by their SHA-256, shared by every
//! account that uses them.
//!
//! A stored blob's id is `b` + the lowercase hex SHA-256 of its bytes (65 characters, a valid JMAP
//! Id, checklist T-02). The parts of a message are not stored again: their ids are derived from the
//! message's blob id (`crate::mail::blob_id`), and [`read`] resolves them by parsing the stored
//! message. A blob exists in an account for a user when (BIN-07, BIN-13):
//! - an email of the account is that message (`emails.blob_id`, index `emails_blob`) or another
//!   object of the account references it (`blob_refs`, e.g. `("EmailSubmission", id)`), for
//!   every user who may read the account; or
//! - that user uploaded it to that account (`blob_uploads`), for that user only.
//!
//! A derived id is visible exactly when its stored blob is.

use diesel::prelude::*;

use super::batch_insert::insert_rows;
use super::first_row::FirstRowDsl;
use super::schema::{blob_refs, blob_uploads, blobs, emails};
use super::{AnyConnection, StoreError, now, sha256_hex};
use crate::mail::blob_id as derived;

/// How long an unreferenced upload is kept, at least (BIN-08: one hour).
pub const UPLOAD_TTL_SECS: i64 = 3600;

/// The blob id of `data`: `b` + hex SHA-256.
pub fn blob_id_for(data: &[u8]) -> String {
    format!("b{}", sha256_hex(data))
}

/// Whether `id` has the form of a stored blob's id.
pub fn is_stored_id(id: &str) -> bool {
    id.len() == 65
        && id.starts_with('b')
        && id[1..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Stores `data` (once: identical bytes share one row, BIN-05) and returns its blob id. Does not
/// make it visible anywhere: follow with [`record_upload`] or [`add_reference`].
pub fn put(conn: &mut AnyConnection, data: &[u8]) -> Result<String, StoreError> {
    let id = blob_id_for(data);
    put_all(conn, &[(&id, data)])?;
    Ok(id)
}

#[derive(Insertable)]
#[diesel(table_name = blobs)]
struct BlobRow<'a> {
    id: &'a str,
    data: &'a [u8],
    size: i64,
    created_at: i64,
}

/// [`put`] for several blobs, given with their ids ([`blob_id_for`]), in few statements.
pub fn put_all(conn: &mut AnyConnection, all: &[(&str, &[u8])]) -> Result<(), StoreError> {
    let created_at = now();
    let rows: Vec<BlobRow<'_>> = all
        .iter()
        .map(|(id, data)| BlobRow {
            id,
            data,
            size: data.len() as i64,
            created_at,
        })
        .collect();
    insert_rows!(conn, blobs::table, &rows, 4, ignore_conflicts)?;
    Ok(())
}

/// The bytes of a stored blob (not a derived part id), regardless of visibility.
pub fn get(conn: &mut AnyConnection, blob_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(blobs::table
        .find(blob_id)
        .select(blobs::data)
        .first_row::<Vec<u8>, _>(conn)
        .optional()?)
}

/// The size of a stored blob, if it exists.
pub fn size(conn: &mut AnyConnection, blob_id: &str) -> Result<Option<i64>, StoreError> {
    Ok(blobs::table
        .find(blob_id)
        .select(blobs::size)
        .first_row::<i64, _>(conn)
        .optional()?)
}

/// The bytes of a stored blob or of a message part named by a derived id, regardless of
/// visibility. `None` when the blob or the part does not exist.
pub fn read(conn: &mut AnyConnection, blob_id: &str) -> Result<Option<Vec<u8>>, StoreError> {
    let Some((base, path)) = derived::split(blob_id) else {
        return Ok(None);
    };
    let Some(bytes) = get(conn, base)? else {
        return Ok(None);
    };
    Ok(derived::resolve(bytes, &path))
}

/// Records (or refreshes, BIN-08) that `user_id` uploaded `blob_id` to `account_id`.
pub fn record_upload(
    conn: &mut AnyConnection,
    account_id: &str,
    user_id: &str,
    blob_id: &str,
) -> Result<(), StoreError> {
    let at = now();
    let insert = diesel::insert_into(blob_uploads::table).values((
        blob_uploads::account_id.eq(account_id),
        blob_uploads::user_id.eq(user_id),
        blob_uploads::blob_id.eq(blob_id),
        blob_uploads::uploaded_at.eq(at),
    ));
    let key = (
        blob_uploads::account_id,
        blob_uploads::user_id,
        blob_uploads::blob_id,
    );
    match conn {
        AnyConnection::Sqlite(c) => insert
            .on_conflict(key)
            .do_update()
            .set(blob_uploads::uploaded_at.eq(at))
            .execute(c)?,
        AnyConnection::Postgresql(c) => insert
            .on_conflict(key)
            .do_update()
            .set(blob_uploads::uploaded_at.eq(at))
            .execute(c)?,
    };
    Ok(())
}

/// Stores `data` as an upload by `user_id` to `account_id` (RFC 8620 §6.1) and returns its id.
pub fn upload(
    conn: &mut AnyConnection,
    account_id: &str,
    user_id: &str,
    data: &[u8],
) -> Result<String, StoreError> {
    conn.transaction(|conn| {
        let id = put(conn, data)?;
        record_upload(conn, account_id, user_id, &id)?;
        Ok(id)
    })
}

/// Records that object `(owner_type, owner_id)` of `account_id` uses `blob_id` (a stored id; a
/// derived id is recorded as its stored blob). Every user who may read the account may then read
/// the blob. Idempotent. Run it inside the write that creates the object.
pub fn add_reference(
    conn: &mut AnyConnection,
    account_id: &str,
    blob_id: &str,
    owner_type: &str,
    owner_id: &str,
) -> Result<(), StoreError> {
    let (blob_id, _) = derived::split(blob_id)
        .ok_or_else(|| StoreError::Invalid(format!("{blob_id:?} is not a blob id")))?;
    let row = BlobRefRow {
        account_id,
        blob_id,
        owner_type,
        owner_id,
    };
    insert_rows!(conn, blob_refs::table, &[row], 4, ignore_conflicts)?;
    Ok(())
}

#[derive(Insertable)]
#[diesel(table_name = blob_refs)]
struct BlobRefRow<'a> {
    account_id: &'a str,
    blob_id: &'a str,
    owner_type: &'a str,
    owner_id: &'a str,
}

/// Removes every blob reference of object `(owner_type, owner_id)` in `account_id` (e.g. when an
/// Email is destroyed). The blob itself stays until [`purge`] finds it unused (BIN-09).
pub fn remove_references(
    conn: &mut AnyConnection,
    account_id: &str,
    owner_type: &str,
    owner_id: &str,
) -> Result<usize, StoreError> {
    Ok(diesel::delete(
        blob_refs::table
            .filter(blob_refs::account_id.eq(account_id))
            .filter(blob_refs::owner_type.eq(owner_type))
            .filter(blob_refs::owner_id.eq(owner_id)),
    )
    .execute(conn)?)
}

/// Whether `blob_id` (stored or derived) exists in `account_id` for `user_id`: referenced by an
/// object of the account, or uploaded there by this user. The caller has checked that the user may
/// read the account.
pub fn visible(
    conn: &mut AnyConnection,
    account_id: &str,
    user_id: &str,
    blob_id: &str,
) -> Result<bool, StoreError> {
    let Some((base, _)) = derived::split(blob_id) else {
        return Ok(false);
    };
    // One statement: an Email/import by blob asks this for every email it creates.
    use diesel::dsl::exists;
    let an_email = emails::table
        .filter(emails::blob_id.eq(base))
        .filter(emails::account_id.eq(account_id));
    let an_object = blob_refs::table
        .filter(blob_refs::account_id.eq(account_id))
        .filter(blob_refs::blob_id.eq(base));
    let an_upload = blob_uploads::table
        .filter(blob_uploads::account_id.eq(account_id))
        .filter(blob_uploads::user_id.eq(user_id))
        .filter(blob_uploads::blob_id.eq(base));
    Ok(
        diesel::select(exists(an_email).or(exists(an_object)).or(exists(an_upload)))
            .get_result(conn)?,
    )
}

/// The bytes of `blob_id` if it is [`visible`] in `account_id` for `user_id`; `None` otherwise, so
/// that an invisible blob looks exactly like a missing one.
pub fn read_visible(
    conn: &mut AnyConnection,
    account_id: &str,
    user_id: &str,
    blob_id: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    if !visible(conn, account_id, user_id, blob_id)? {
        return Ok(None);
    }
    read(conn, blob_id)
}

/// The last time [`purge_if_due`] ran, in seconds since the epoch (process-wide).
static LAST_PURGE: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// How often uploads trigger a [`purge`].
pub const PURGE_INTERVAL_SECS: i64 = 600;

/// Runs [`purge`] if it has not run in this process for [`PURGE_INTERVAL_SECS`]. Uploads call it, so
/// unreferenced blobs do not pile up (BIN-08 keeps them at least an hour).
pub fn purge_if_due(conn: &mut AnyConnection) -> Result<usize, StoreError> {
    use std::sync::atomic::Ordering;
    let now_secs = now();
    let last = LAST_PURGE.load(Ordering::Relaxed);
    if now_secs - last < PURGE_INTERVAL_SECS
        || LAST_PURGE
            .compare_exchange(last, now_secs, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return Ok(0);
    }
    purge(conn, now_secs, UPLOAD_TTL_SECS)
}

/// Deletes uploads older than `upload_ttl_secs` and then every blob nobody references or has
/// uploaded. Returns the number of blobs deleted.
pub fn purge(
    conn: &mut AnyConnection,
    now_secs: i64,
    upload_ttl_secs: i64,
) -> Result<usize, StoreError> {
    let ttl = upload_ttl_secs.max(UPLOAD_TTL_SECS);
    conn.transaction(|conn| {
        diesel::delete(blob_uploads::table.filter(blob_uploads::uploaded_at.lt(now_secs - ttl)))
            .execute(conn)?;
        let deleted = diesel::delete(
            blobs::table
                .filter(diesel::dsl::not(diesel::dsl::exists(
                    blob_uploads::table.filter(blob_uploads::blob_id.eq(blobs::id)),
                )))
                .filter(diesel::dsl::not(diesel::dsl::exists(
                    blob_refs::table.filter(blob_refs::blob_id.eq(blobs::id)),
                )))
                .filter(diesel::dsl::not(diesel::dsl::exists(
                    emails::table.filter(emails::blob_id.eq(blobs::id)),
                ))),
        )
        .execute(conn)?;
        Ok(deleted)
    })
}

/// The blobs that the accounts `account_ids` hold: their emails' messages, what their objects
/// reference and what was uploaded into them.
pub fn held_by(
    conn: &mut AnyConnection,
    account_ids: &[String],
) -> Result<Vec<String>, StoreError> {
    let mut held: Vec<String> = emails::table
        .filter(emails::account_id.eq_any(account_ids))
        .select(emails::blob_id)
        .load(conn)?;
    held.extend(
        blob_refs::table
            .filter(blob_refs::account_id.eq_any(account_ids))
            .select(blob_refs::blob_id)
            .load::<String>(conn)?,
    );
    held.extend(
        blob_uploads::table
            .filter(blob_uploads::account_id.eq_any(account_ids))
            .select(blob_uploads::blob_id)
            .load::<String>(conn)?,
    );
    held.sort();
    held.dedup();
    Ok(held)
}

/// Deletes those of `blob_ids` that no email, reference or upload holds any more (a removed
/// user's mail: content shared with others stays). Returns how many went.
pub fn delete_unheld(conn: &mut AnyConnection, blob_ids: &[String]) -> Result<usize, StoreError> {
    let mut deleted = 0;
    for chunk in blob_ids.chunks(500) {
        let mut still: Vec<String> = emails::table
            .filter(emails::blob_id.eq_any(chunk))
            .select(emails::blob_id)
            .load(conn)?;
        still.extend(
            blob_refs::table
                .filter(blob_refs::blob_id.eq_any(chunk))
                .select(blob_refs::blob_id)
                .load::<String>(conn)?,
        );
        still.extend(
            blob_uploads::table
                .filter(blob_uploads::blob_id.eq_any(chunk))
                .select(blob_uploads::blob_id)
                .load::<String>(conn)?,
        );
        let still: std::collections::HashSet<String> = still.into_iter().collect();
        let gone: Vec<&String> = chunk.iter().filter(|b| !still.contains(*b)).collect();
        deleted += diesel::delete(blobs::table.filter(blobs::id.eq_any(gone))).execute(conn)?;
    }
    Ok(deleted)
}

impl crate::jmap::methods::blob::BlobStore for super::StoreContext {
    fn blob_visible(
        &mut self,
        account_id: &str,
        user_id: &str,
        blob_id: &str,
    ) -> Result<bool, crate::jmap::error::MethodError> {
        visible(self.conn(), account_id, user_id, blob_id)
            .map_err(crate::jmap::error::MethodError::from)
    }

    fn blob_read(
        &mut self,
        account_id: &str,
        user_id: &str,
        blob_id: &str,
    ) -> Result<Option<Vec<u8>>, crate::jmap::error::MethodError> {
        read_visible(self.conn(), account_id, user_id, blob_id)
            .map_err(crate::jmap::error::MethodError::from)
    }

    fn blob_copy_into(
        &mut self,
        account_id: &str,
        user_id: &str,
        blob_id: &str,
    ) -> Result<(), crate::jmap::error::MethodError> {
        let Some((base, _)) = derived::split(blob_id) else {
            return Err(crate::jmap::error::MethodError::ServerFail(
                "not a blob id".into(),
            ));
        };
        record_upload(self.conn(), account_id, user_id, base)
            .map_err(crate::jmap::error::MethodError::from)
    }
}
