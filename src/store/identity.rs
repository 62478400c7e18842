//! Identities in the store.

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::changelog::{self, ChangeOp};
use super::schema::identities;
use super::{AnyConnection, StoreContext, StoreError};
use crate::jmap::changes::state_string;
use crate::jmap::error::MethodError;
use crate::jmap::methods::identity::{
    DATA_TYPE, Identity, IdentityOp, IdentitySnapshot, IdentityStore,
};

type Row = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    bool,
);

fn parse_json(text: Option<String>) -> Option<serde_json::Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

/// Every identity of an account, the default first.
pub fn list(conn: &mut AnyConnection, account_id: &str) -> Result<Vec<Identity>, StoreError> {
    let rows: Vec<Row> = identities::table
        .filter(identities::account_id.eq(account_id))
        .select((
            identities::id,
            identities::name,
            identities::email,
            identities::reply_to,
            identities::bcc,
            identities::text_signature,
            identities::html_signature,
            identities::may_delete,
        ))
        .order((identities::may_delete.asc(), identities::id.asc()))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| Identity {
            id: r.0,
            name: r.1,
            email: r.2,
            reply_to: parse_json(r.3),
            bcc: parse_json(r.4),
            text_signature: r.5,
            html_signature: r.6,
            may_delete: r.7,
        })
        .collect())
}

fn insert(conn: &mut AnyConnection, account_id: &str, i: &Identity) -> QueryResult<usize> {
    diesel::insert_into(identities::table)
        .values((
            identities::account_id.eq(account_id),
            identities::id.eq(&i.id),
            identities::name.eq(&i.name),
            identities::email.eq(&i.email),
            identities::reply_to.eq(i.reply_to.as_ref().map(|v| v.to_string())),
            identities::bcc.eq(i.bcc.as_ref().map(|v| v.to_string())),
            identities::text_signature.eq(&i.text_signature),
            identities::html_signature.eq(&i.html_signature),
            identities::may_delete.eq(i.may_delete),
        ))
        .execute(conn)
}

/// Stores `default` unless the account has it already. It counts as part of the account since its
/// creation, so it is no change to report. Runs outside any transaction: a concurrent request
/// creating it too makes this insert fail as a duplicate, which is fine.
pub fn ensure_default(
    conn: &mut AnyConnection,
    account_id: &str,
    default: &Identity,
) -> Result<(), StoreError> {
    let exists: i64 = identities::table
        .filter(identities::account_id.eq(account_id))
        .filter(identities::id.eq(&default.id))
        .count()
        .get_result(conn)?;
    if exists > 0 {
        return Ok(());
    }
    match insert(conn, account_id, default) {
        Ok(_) | Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn snapshot(conn: &mut AnyConnection, account_id: &str) -> Result<IdentitySnapshot, StoreError> {
    Ok(IdentitySnapshot {
        state: state_string(changelog::type_state(conn, account_id, DATA_TYPE)?),
        identities: list(conn, account_id)?,
    })
}

impl IdentityStore for StoreContext {
    fn identity_prepare(
        &mut self,
        account_id: &str,
        default: &Identity,
    ) -> Result<(), MethodError> {
        ensure_default(self.conn(), account_id, default).map_err(MethodError::from)
    }

    fn identity_snapshot(&mut self, account_id: &str) -> Result<IdentitySnapshot, MethodError> {
        snapshot(self.conn(), account_id).map_err(MethodError::from)
    }

    fn identity_write(
        &mut self,
        account_id: &str,
        default: &Identity,
        decide: &mut dyn FnMut(&IdentitySnapshot) -> Result<Vec<IdentityOp>, MethodError>,
    ) -> Result<(String, String), MethodError> {
        ensure_default(self.conn(), account_id, default).map_err(MethodError::from)?;
        let mut method_error = None;
        let result = self.write(account_id, |txn| {
            let snap = snapshot(txn.conn(), account_id)?;
            let ops = match decide(&snap) {
                Ok(ops) => ops,
                Err(e) => {
                    method_error = Some(e);
                    return Err(StoreError::Invalid("decided against".into()));
                }
            };
            for op in ops {
                match op {
                    IdentityOp::Insert(i) => {
                        insert(txn.conn(), account_id, &i)?;
                        txn.record(DATA_TYPE, &i.id, ChangeOp::Created);
                    }
                    IdentityOp::Update(i) => {
                        diesel::update(identities::table.find((account_id, &i.id)))
                            .set((
                                identities::name.eq(&i.name),
                                identities::reply_to.eq(i.reply_to.as_ref().map(|v| v.to_string())),
                                identities::bcc.eq(i.bcc.as_ref().map(|v| v.to_string())),
                                identities::text_signature.eq(&i.text_signature),
                                identities::html_signature.eq(&i.html_signature),
                            ))
                            .execute(txn.conn())?;
                        txn.record(DATA_TYPE, &i.id, ChangeOp::Updated);
                    }
                    IdentityOp::Delete(id) => {
                        diesel::delete(identities::table.find((account_id, &id)))
                            .execute(txn.conn())?;
                        txn.record(DATA_TYPE, &id, ChangeOp::Destroyed);
                    }
                }
            }
            let new_state = if txn.changes_type(DATA_TYPE) {
                state_string(txn.seq())
            } else {
                snap.state.clone()
            };
            Ok((snap.state, new_state))
        });
        match (result, method_error) {
            (_, Some(e)) => Err(e),
            (Ok(states), None) => Ok(states),
            (Err(e), None) => Err(MethodError::from(e)),
        }
    }
}
