//! The VacationResponse singleton in the store: one row per account once set.

use super::first_row::FirstRowDsl;
use diesel::prelude::*;

use super::changelog::{self, ChangeOp};
use super::schema::{vacation_replies as vrep, vacation_responses as vr};
use super::{AnyConnection, StoreContext, StoreError};
use crate::jmap::changes::state_string;
use crate::jmap::error::MethodError;
use crate::jmap::methods::vacation::{
    DATA_TYPE, SINGLETON, VacationDecision, VacationResponse, VacationStore,
};

type Row = (
    bool,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The account's VacationResponse; the default when it was never set.
pub fn load(conn: &mut AnyConnection, account_id: &str) -> Result<VacationResponse, StoreError> {
    let row: Option<Row> = vr::table
        .find(account_id)
        .select((
            vr::is_enabled,
            vr::from_date,
            vr::to_date,
            vr::subject,
            vr::text_body,
            vr::html_body,
        ))
        .first_row(conn)
        .optional()?;
    Ok(row
        .map(|r| VacationResponse {
            is_enabled: r.0,
            from_date: r.1,
            to_date: r.2,
            subject: r.3,
            text_body: r.4,
            html_body: r.5,
        })
        .unwrap_or_default())
}

/// Stores `v`: an update, or an insert the first time. Runs inside the account's write
/// transaction, which serialises writers, so the two steps cannot race.
fn store(conn: &mut AnyConnection, account_id: &str, v: &VacationResponse) -> QueryResult<()> {
    let values = (
        vr::is_enabled.eq(v.is_enabled),
        vr::from_date.eq(&v.from_date),
        vr::to_date.eq(&v.to_date),
        vr::subject.eq(&v.subject),
        vr::text_body.eq(&v.text_body),
        vr::html_body.eq(&v.html_body),
    );
    let n = diesel::update(vr::table.find(account_id))
        .set(values)
        .execute(conn)?;
    if n == 0 {
        diesel::insert_into(vr::table)
            .values((vr::account_id.eq(account_id), values))
            .execute(conn)?;
    }
    Ok(())
}

/// Forgets whom `account_id` answered (`store::auto_reply` records them): its VacationResponse
/// changed, and a new response is sent anew to everyone (RFC 5230 §4.2).
fn forget_replies(conn: &mut AnyConnection, account_id: &str) -> Result<(), StoreError> {
    diesel::delete(vrep::table.filter(vrep::account_id.eq(account_id))).execute(conn)?;
    Ok(())
}

impl VacationStore for StoreContext {
    fn vacation_get(
        &mut self,
        account_id: &str,
    ) -> Result<(String, VacationResponse), MethodError> {
        let conn = self.conn();
        let state =
            changelog::type_state(conn, account_id, DATA_TYPE).map_err(MethodError::from)?;
        Ok((
            state_string(state),
            load(conn, account_id).map_err(MethodError::from)?,
        ))
    }

    fn vacation_write(
        &mut self,
        account_id: &str,
        decide: &mut VacationDecision<'_>,
    ) -> Result<(String, String), MethodError> {
        let mut method_error = None;
        let result = self.write(account_id, |txn| {
            let state = state_string(changelog::type_state(txn.conn(), account_id, DATA_TYPE)?);
            let current = load(txn.conn(), account_id)?;
            match decide(&state, &current) {
                Ok(Some(next)) => {
                    store(txn.conn(), account_id, &next)?;
                    // A changed absence answers everyone again (RFC 5230 §4.2).
                    forget_replies(txn.conn(), account_id)?;
                    txn.record(DATA_TYPE, SINGLETON, ChangeOp::Updated);
                    Ok((state, state_string(txn.seq())))
                }
                Ok(None) => Ok((state.clone(), state)),
                Err(e) => {
                    method_error = Some(e);
                    Err(StoreError::Invalid("decided against".into()))
                }
            }
        });
        match (result, method_error) {
            (_, Some(e)) => Err(e),
            (Ok(states), None) => Ok(states),
            (Err(e), None) => Err(MethodError::from(e)),
        }
    }
}
