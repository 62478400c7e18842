//! EmailSubmission records in the store, and local delivery of what is sent.

use super::first_row::FirstRowDsl;
use std::collections::BTreeSet;

use diesel::prelude::*;

use super::changelog::{self, ChangeOp, ChangesError};
use super::schema::{email_submissions as es, mailboxes};
use super::{AnyConnection, StoreContext, StoreError};
use crate::jmap::changes::{ChangesPage, state_string};
use crate::jmap::email::{EmailOp, NewEmail, OpResult, Source};
use crate::jmap::error::MethodError;
use crate::jmap::submission::{DATA_TYPE, Submission, SubmissionStore};

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

fn fail(e: StoreError) -> MethodError {
    log::error!("submission store: {e}");
    MethodError::ServerFail("the store failed".into())
}

fn changes_error(e: ChangesError) -> MethodError {
    match e {
        ChangesError::CannotCalculate(why) => {
            MethodError::CannotCalculateChanges(format!("{why:?}"))
        }
        ChangesError::Store(e) => fail(e),
    }
}

impl SubmissionStore for StoreContext {
    fn submission_list(
        &mut self,
        account_id: &str,
    ) -> Result<(String, Vec<Submission>), MethodError> {
        let state = changelog::type_state(self.conn(), account_id, DATA_TYPE).map_err(fail)?;
        Ok((
            state_string(state),
            list(self.conn(), account_id).map_err(fail)?,
        ))
    }

    fn submission_changes(
        &mut self,
        account_id: &str,
        since: i64,
        max_changes: usize,
    ) -> Result<ChangesPage, MethodError> {
        changelog::changes_since(self.conn(), account_id, DATA_TYPE, since, max_changes)
            .map_err(changes_error)
    }

    fn submission_touched_since(
        &mut self,
        account_id: &str,
        since: i64,
    ) -> Result<Vec<String>, MethodError> {
        changelog::touched_since(self.conn(), account_id, DATA_TYPE, since).map_err(changes_error)
    }

    fn local_recipient(
        &mut self,
        email: &str,
        domain: &str,
    ) -> Result<Option<String>, MethodError> {
        let email = email.to_lowercase();
        let mut names = vec![email.clone()];
        if let Some((local, d)) = email.rsplit_once('@')
            && d.eq_ignore_ascii_case(domain)
        {
            names.push(local.to_owned());
        }
        for name in names {
            if let Some(user_id) =
                super::users::id_by_name_ignoring_case(self.conn(), &name).map_err(fail)?
            {
                return super::accounts::personal_account(self.conn(), &user_id)
                    .map(Some)
                    .map_err(fail);
            }
        }
        Ok(None)
    }

    fn relay_send(
        &mut self,
        relay_url: &str,
        mail_from: &str,
        rcpt_to: &[String],
        message: &[u8],
    ) -> Result<Result<String, String>, MethodError> {
        match crate::relay::send(relay_url, mail_from, rcpt_to, message) {
            Ok(reply) => Ok(Ok(reply)),
            Err(e) => {
                log::warn!("submission relay: {e}");
                Ok(Err(e.to_string()))
            }
        }
    }

    fn deliver_local(&mut self, account_id: &str, message: &[u8]) -> Result<(), MethodError> {
        let inbox: Option<String> = mailboxes::table
            .filter(mailboxes::account_id.eq(account_id))
            .filter(mailboxes::role.eq("inbox"))
            .select(mailboxes::id)
            .first_row(self.conn())
            .optional()
            .map_err(|e| fail(e.into()))?;
        let Some(inbox) = inbox else {
            return Err(MethodError::ServerFail(
                "a recipient has no inbox; the message was not delivered".into(),
            ));
        };
        let op = EmailOp::Create {
            creation_id: "submission".into(),
            email: NewEmail {
                id: crate::jmap::email::new_email_id(),
                source: Source::Message(message.to_vec()),
                mailbox_ids: BTreeSet::from([inbox]),
                keywords: BTreeSet::new(),
                received_at: None,
                delivery: true,
            },
        };
        // Through the context, so the recipient's account is pushed like any other write.
        let results = self
            .write(account_id, |txn| super::email::apply(txn, None, vec![op]))
            .map_err(fail)?;
        match results.into_iter().next() {
            Some(OpResult::Created(..)) => Ok(()),
            _ => Err(MethodError::ServerFail(
                "local delivery failed; see the server log".into(),
            )),
        }
    }

    fn submission_write(
        &mut self,
        account_id: &str,
        if_in_state: Option<&str>,
        insert: &[Submission],
        destroy: &[String],
    ) -> Result<(String, String), MethodError> {
        let mut mismatch = false;
        let result = self.write(account_id, |txn| {
            let state = state_string(changelog::type_state(txn.conn(), account_id, DATA_TYPE)?);
            if if_in_state.is_some_and(|s| s != state) {
                mismatch = true;
                return Err(StoreError::Invalid("state mismatch".into()));
            }
            for s in insert {
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
                txn.record(DATA_TYPE, &s.id, ChangeOp::Created);
            }
            for id in destroy {
                diesel::delete(es::table.find((account_id, id))).execute(txn.conn())?;
                txn.record(DATA_TYPE, id, ChangeOp::Destroyed);
            }
            let new_state = if txn.has_changes() {
                state_string(txn.seq())
            } else {
                state.clone()
            };
            Ok((state, new_state))
        });
        match result {
            Ok(states) => Ok(states),
            Err(_) if mismatch => Err(MethodError::StateMismatch),
            Err(e) => Err(fail(e)),
        }
    }
}
