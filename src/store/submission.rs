//! EmailSubmission records in the store, written with their outbox rows (`submission_outbox`).

use super::first_row::FirstRowDsl;

use diesel::prelude::*;

use super::changelog::{self, ChangeOp};
use super::schema::email_submissions as es;
use super::{AnyConnection, StoreContext, StoreError, submission_outbox};
use crate::jmap::changes::state_string;
use crate::jmap::error::MethodError;
use crate::jmap::methods::submission::{DATA_TYPE, Submission, SubmissionStore, SubmissionWrite};

type Row = (String, String, String, String, String, i64, String, String);

fn list(conn: &mut AnyConnection, account_id: &str) -> Result<Vec<Submission>, StoreError> {
    let rows: Vec<Row> = es::table
        .filter(es::account_id.eq(account_id))
        .select((
            es::id,
            es::identity_id,
            es::email_id,
            es::thread_id,
            es::envelope,
            es::send_at,
            es::undo_status,
            es::delivery_status,
        ))
        .order((es::send_at.asc(), es::id.asc()))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| Submission {
            id: r.0,
            identity_id: r.1,
            email_id: r.2,
            thread_id: r.3,
            envelope: serde_json::from_str(&r.4).unwrap_or_default(),
            send_at: r.5,
            undo_status: r.6,
            delivery_status: serde_json::from_str(&r.7).unwrap_or_default(),
        })
        .collect())
}

impl SubmissionStore for StoreContext {
    fn submission_list(
        &mut self,
        account_id: &str,
    ) -> Result<(String, Vec<Submission>), MethodError> {
        let state =
            changelog::type_state(self.conn(), account_id, DATA_TYPE).map_err(MethodError::from)?;
        Ok((
            state_string(state),
            list(self.conn(), account_id).map_err(MethodError::from)?,
        ))
    }

    fn local_recipient(
        &mut self,
        email: &str,
        domain: &str,
    ) -> Result<Option<String>, MethodError> {
        // Who an address reaches here is what LMTP decides (`store::addresses`): user names,
        // names at the mail domain, aliases, subaddresses, catch-alls.
        let Some(user_id) =
            super::addresses::resolve(self.conn(), email, domain).map_err(MethodError::from)?
        else {
            return Ok(None);
        };
        super::accounts::personal_account(self.conn(), &user_id)
            .map(Some)
            .map_err(MethodError::from)
    }

    fn submission_write(
        &mut self,
        account_id: &str,
        write: SubmissionWrite<'_>,
    ) -> Result<(String, String, Vec<String>), MethodError> {
        let now_ms = super::now_ms();
        // Queued mail is the user's outgoing message in Herald's keeping alone: on disk before
        // the client is told it is queued (`store::durable`).
        let result = self.write_durably(account_id, |txn| {
            let state = state_string(changelog::type_state(txn.conn(), account_id, DATA_TYPE)?);
            for (s, queued) in write.insert {
                diesel::insert_into(es::table)
                    .values((
                        es::account_id.eq(account_id),
                        es::id.eq(&s.id),
                        es::identity_id.eq(&s.identity_id),
                        es::email_id.eq(&s.email_id),
                        es::thread_id.eq(&s.thread_id),
                        es::envelope.eq(s.envelope.to_string()),
                        es::send_at.eq(s.send_at),
                        es::undo_status.eq(&s.undo_status),
                        es::delivery_status.eq(s.delivery_status.to_string()),
                    ))
                    .execute(txn.conn())?;
                submission_outbox::enqueue(txn.conn(), account_id, &s.id, queued, now_ms)?;
                txn.record(DATA_TYPE, &s.id, ChangeOp::Created);
            }
            let mut too_late = Vec::new();
            for id in write.cancel {
                // The outbox may have claimed it, or even finished it, since the request read it.
                let status: Option<String> = es::table
                    .find((account_id, id))
                    .select(es::undo_status)
                    .first_row(txn.conn())
                    .optional()?;
                if status.as_deref() != Some("pending")
                    || !submission_outbox::cancel(txn.conn(), account_id, id)?
                {
                    too_late.push(id.clone());
                    continue;
                }
                canceled_status(txn.conn(), account_id, id)?;
                txn.record(DATA_TYPE, id, ChangeOp::Updated);
            }
            for id in write.destroy {
                diesel::delete(es::table.find((account_id, id))).execute(txn.conn())?;
                txn.record(DATA_TYPE, id, ChangeOp::Destroyed);
            }
            let new_state = if txn.changes_type(DATA_TYPE) {
                state_string(txn.seq())
            } else {
                state.clone()
            };
            Ok((state, new_state, too_late))
        });
        result.map_err(MethodError::from)
    }
}

/// Marks a canceled submission: `undoStatus` `canceled`, and every recipient still queued will
/// never be delivered (`delivered: no`).
fn canceled_status(conn: &mut AnyConnection, account_id: &str, id: &str) -> Result<(), StoreError> {
    let current: String = es::table
        .find((account_id, id))
        .select(es::delivery_status)
        .first_row(conn)?;
    let mut status: serde_json::Value =
        serde_json::from_str(&current).unwrap_or(serde_json::json!({}));
    if let Some(recipients) = status.as_object_mut() {
        for s in recipients.values_mut() {
            if s["delivered"] == "queued" {
                s["delivered"] = "no".into();
            }
        }
    }
    diesel::update(es::table.find((account_id, id)))
        .set((
            es::undo_status.eq("canceled"),
            es::delivery_status.eq(status.to_string()),
        ))
        .execute(conn)?;
    Ok(())
}
