//! Vacation replies at delivery (RFC 8621 §8): when new mail reaches an account whose
//! VacationResponse is on, one reply is queued in the submission outbox, inside the delivery's
//! own write, so it exists exactly when the delivery does. The rules about which mail may be
//! answered are `mail::auto_reply`'s; this module adds what needs the store: the VacationResponse,
//! the account's own addresses, and whom it answered lately.

use diesel::prelude::*;

use super::first_row::FirstRowDsl;
use super::schema::{accounts, users, vacation_replies as vrep};
use super::{AnyConnection, StoreError, addresses, identity, submission_outbox, vacation};
use crate::jmap::methods::submission::{Queued, QueuedRecipient};
use crate::mail::auto_reply::{self, Away};

/// What deciding and sending a vacation reply needs from the configuration.
#[derive(Clone, Debug)]
pub struct AutoReplyPolicy {
    /// `[submission] domain`.
    pub mail_domain: String,
    /// Whether a relay is configured: without one, only local senders can be answered.
    pub relay: bool,
    /// `[submission] vacation_reply_interval_secs`.
    pub interval_secs: i64,
}

/// Queues the vacation reply to `message`, just delivered to `account_id`, if one is due.
/// Returns whether one was queued. Run it inside the delivery's write.
pub fn after_delivery(
    conn: &mut AnyConnection,
    account_id: &str,
    message: &[u8],
    policy: &AutoReplyPolicy,
) -> Result<bool, StoreError> {
    let away = vacation::load(conn, account_id)?;
    let now = chrono::Utc::now();
    let within = |date: &Option<String>, after: bool| {
        date.as_deref()
            .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
            .is_none_or(|d| if after { now >= d } else { now < d })
    };
    if !away.is_enabled || !within(&away.from_date, true) || !within(&away.to_date, false) {
        return Ok(false);
    }
    let Ok(original) = auto_reply::examine(message) else {
        return Ok(false);
    };
    let (owner, owner_name): (String, String) = accounts::table
        .inner_join(users::table.on(users::id.eq(accounts::owner_id)))
        .filter(accounts::id.eq(account_id))
        .select((users::id, users::name))
        .first_row(conn)?;
    // RFC 3834 §2: answer only mail addressed to the user, not Bcc copies or list traffic.
    let mut addressed = false;
    for r in &original.recipients {
        if addresses::resolve(conn, r, &policy.mail_domain)?.as_deref() == Some(owner.as_str()) {
            addressed = true;
            break;
        }
    }
    if !addressed {
        return Ok(false);
    }
    let sender = original.sender.to_lowercase();
    let now_secs = now.timestamp();
    let recent: Option<i64> = vrep::table
        .find((account_id, &sender))
        .select(vrep::replied_at)
        .first_row(conn)
        .optional()?;
    if recent.is_some_and(|at| now_secs - at < policy.interval_secs) {
        return Ok(false);
    }
    let local_account = match addresses::resolve(conn, &original.sender, &policy.mail_domain)? {
        Some(user) => Some(super::accounts::personal_account(conn, &user)?),
        None if policy.relay => None,
        None => return Ok(false),
    };
    diesel::delete(vrep::table.find((account_id, &sender))).execute(conn)?;
    diesel::insert_into(vrep::table)
        .values((
            vrep::account_id.eq(account_id),
            vrep::sender.eq(&sender),
            vrep::replied_at.eq(now_secs),
        ))
        .execute(conn)?;
    let default =
        crate::jmap::methods::identity::default_identity(&owner_name, &policy.mail_domain);
    let from = identity::list(conn, account_id)?
        .into_iter()
        .next()
        .unwrap_or(default);
    let reply = auto_reply::build(
        &Away {
            subject: away.subject.as_deref(),
            text_body: away.text_body.as_deref(),
            html_body: away.html_body.as_deref(),
        },
        (&from.name, &from.email),
        &original,
        &policy.mail_domain,
        now_secs,
    );
    let queued = Queued {
        // RFC 3834 §3.3: the null sender, so that nothing ever answers the reply.
        mail_from: String::new(),
        recipients: vec![QueuedRecipient {
            address: original.sender.clone(),
            local_account,
        }],
        message: reply,
        send_at_ms: now_secs * 1000,
    };
    let id = format!("vacation-{}", super::random_secret(9));
    submission_outbox::enqueue(conn, account_id, &id, &queued, now_secs * 1000)?;
    Ok(true)
}
