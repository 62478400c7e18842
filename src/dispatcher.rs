//! The `Dispatcher`: a pool of synchronous actors (Diesel is synchronous) that authenticate users
//! and run JMAP requests against the store.
//!
//! Each thread builds the method table once and, per request, borrows one store connection for the
//! request's whole run. Method calls run in order (`jmap::dispatch`); every committed write is
//! published as a `StateChanged` after commit, and only what committed.

mod delivery;
mod outbox;
mod tickets;

use std::sync::Arc;

use actix::prelude::*;

pub use delivery::{Deliver, DeliveryOutcome, ResolveRecipient};
pub use outbox::{ClaimOutbox, Claimed, DeliverToAccount, SettleOutbox};
pub use tickets::{IssueTicket, IssuedTicket, RedeemTicket};

use crate::jmap::dispatch::{MethodTable, run_request};
use crate::jmap::error::RequestError;
use crate::jmap::methods::method_table;
use crate::jmap::request::{Request, Response};
use crate::jmap::session::{Principal, ServerInfo};
use crate::push::StateChanged;
use crate::store::credentials::{CredentialCache, Credentials, authenticate};
use crate::store::{Store, StoreContext, StoreError, changelog};

/// Authenticate credentials and load the principal. `Ok(None)`: wrong credentials.
#[derive(Message)]
#[rtype(result = "Result<Option<Principal>, StoreError>")]
pub struct Authenticate(pub Credentials);

/// Run one API request for an authenticated principal.
#[derive(Message)]
#[rtype(result = "Result<Result<Response, RequestError>, StoreError>")]
pub struct RunRequest {
    pub principal: Principal,
    pub request: Request,
    /// When it was sent, for the queue-wait metric.
    pub queued_at: std::time::Instant,
}

/// Authenticate credentials and, if they still belong to `user_id`, run one API request for them:
/// one round trip where [`Authenticate`] then [`RunRequest`] take two (`http::callers`).
#[derive(Message)]
#[rtype(result = "Result<AuthenticatedRun, StoreError>")]
pub struct AuthenticateAndRun {
    pub credentials: Credentials,
    /// The user the HTTP side expects; the request runs only for this user.
    pub user_id: String,
    pub request: Request,
    /// When it was sent, for the queue-wait metric.
    pub queued_at: std::time::Instant,
}

/// Run one request of a connection that authenticated when it opened (a WebSocket): its
/// principal's access is read again first, and nothing runs once its credentials no longer
/// hold (RFC 8887 §4.2; checklist WS-03).
#[derive(Message)]
#[rtype(result = "Result<AuthenticatedRun, StoreError>")]
pub struct RunStreamRequest {
    pub principal: Principal,
    pub request: Request,
    /// When it was sent, for the queue-wait metric.
    pub queued_at: std::time::Instant,
}

/// What became of an [`AuthenticateAndRun`] or a [`RunStreamRequest`].
pub enum AuthenticatedRun {
    /// The credentials were good for the expected user and the request ran.
    Ran(Result<Response, RequestError>),
    /// The credentials no longer authenticate, or belong to another user: nothing ran.
    Refused,
}

/// Where push streams stand in each account: the account's newest seq (its push position) and,
/// when `since` is given, every type changed after that position with its new state
/// (`store::changelog::types_changed_since`). Accounts that no longer exist are left out.
#[derive(Message)]
#[rtype(result = "Result<Vec<AccountPosition>, StoreError>")]
pub struct PushBaseline {
    pub accounts: Vec<(String, Option<i64>)>,
}

/// One account's answer to [`PushBaseline`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountPosition {
    pub account_id: String,
    pub seq: i64,
    pub changed: std::collections::BTreeMap<String, i64>,
}

/// One dispatcher thread.
pub struct Dispatcher {
    store: Store,
    server: Arc<ServerInfo>,
    credentials: Arc<CredentialCache>,
    publishers: Vec<Recipient<StateChanged>>,
    table: MethodTable<StoreContext>,
}

impl Dispatcher {
    /// Starts `threads` dispatcher threads.
    pub fn start(
        threads: usize,
        store: Store,
        server: Arc<ServerInfo>,
        credentials: Arc<CredentialCache>,
        publishers: Vec<Recipient<StateChanged>>,
    ) -> Addr<Dispatcher> {
        SyncArbiter::start(threads.max(1), move || Dispatcher {
            store: store.clone(),
            server: server.clone(),
            credentials: credentials.clone(),
            publishers: publishers.clone(),
            table: method_table(),
        })
    }
}

impl Dispatcher {
    /// Hands every committed write to every publisher (push registry, webhook sender…).
    /// `try_send`: the dispatcher never waits on push.
    pub(crate) fn publish(&self, committed: Vec<crate::store::Committed>) {
        for c in committed {
            let change = StateChanged::from(c);
            for publisher in &self.publishers {
                if publisher.try_send(change.clone()).is_err() {
                    log::warn!(
                        "push publisher is full or gone; state change of {} dropped",
                        change.account_id
                    );
                }
            }
        }
    }

    /// When and how deliveries answer for an absent user (`store::auto_reply`).
    pub(crate) fn auto_reply_policy(&self) -> crate::store::auto_reply::AutoReplyPolicy {
        crate::store::auto_reply::AutoReplyPolicy {
            mail_domain: self.server.mail_domain.clone(),
            relay: !self.server.relay_url.is_empty(),
            interval_secs: self.server.vacation_reply_interval_secs as i64,
        }
    }

    /// Runs one request for `principal` on `ctx`'s connection and publishes what it committed.
    fn run(
        &self,
        ctx: &mut StoreContext,
        principal: &Principal,
        request: Request,
    ) -> Result<Response, RequestError> {
        let metrics = crate::metrics::metrics();
        let started = std::time::Instant::now();
        let table = &self.table;
        let mut observe = |name: &str, took: std::time::Duration| {
            // Only the table's names: a label per name a client invents would grow without bound.
            let name = if table.get(name).is_some() {
                name
            } else {
                "unknown"
            };
            metrics.method_calls.with_label_values(&[name]).inc();
            metrics
                .method_call_seconds
                .with_label_values(&[name])
                .observe(took.as_secs_f64());
        };
        let response = run_request(table, ctx, principal, &self.server, request, &mut observe);
        metrics.api_requests.inc();
        metrics
            .api_request_seconds
            .observe(started.elapsed().as_secs_f64());
        self.publish(std::mem::take(&mut ctx.committed));
        response
    }
}

impl Actor for Dispatcher {
    type Context = SyncContext<Self>;
}

impl Handler<Authenticate> for Dispatcher {
    type Result = Result<Option<Principal>, StoreError>;

    fn handle(&mut self, msg: Authenticate, _: &mut Self::Context) -> Self::Result {
        let mut conn = self.store.conn()?;
        authenticate(&mut conn, &self.credentials, &msg.0)
    }
}

impl Handler<RunRequest> for Dispatcher {
    type Result = Result<Result<Response, RequestError>, StoreError>;

    fn handle(&mut self, msg: RunRequest, _: &mut Self::Context) -> Self::Result {
        crate::metrics::queued(msg.queued_at);
        let mut ctx = StoreContext::new(self.store.conn()?);
        Ok(self.run(&mut ctx, &msg.principal, msg.request))
    }
}

impl Handler<RunStreamRequest> for Dispatcher {
    type Result = Result<AuthenticatedRun, StoreError>;

    fn handle(&mut self, msg: RunStreamRequest, _: &mut Self::Context) -> Self::Result {
        crate::metrics::queued(msg.queued_at);
        let mut conn = self.store.conn()?;
        let Some(principal) = crate::store::credentials::current(&mut conn, &msg.principal)? else {
            return Ok(AuthenticatedRun::Refused);
        };
        let mut ctx = StoreContext::new(conn);
        Ok(AuthenticatedRun::Ran(self.run(
            &mut ctx,
            &principal,
            msg.request,
        )))
    }
}

impl Handler<AuthenticateAndRun> for Dispatcher {
    type Result = Result<AuthenticatedRun, StoreError>;

    fn handle(&mut self, msg: AuthenticateAndRun, _: &mut Self::Context) -> Self::Result {
        crate::metrics::queued(msg.queued_at);
        let mut conn = self.store.conn()?;
        match authenticate(&mut conn, &self.credentials, &msg.credentials)? {
            Some(principal) if principal.user_id == msg.user_id => {
                let mut ctx = StoreContext::new(conn);
                Ok(AuthenticatedRun::Ran(self.run(
                    &mut ctx,
                    &principal,
                    msg.request,
                )))
            }
            _ => Ok(AuthenticatedRun::Refused),
        }
    }
}

impl Handler<PushBaseline> for Dispatcher {
    type Result = Result<Vec<AccountPosition>, StoreError>;

    fn handle(&mut self, msg: PushBaseline, _: &mut Self::Context) -> Self::Result {
        let mut conn = self.store.conn()?;
        let mut out = Vec::with_capacity(msg.accounts.len());
        for (account_id, since) in msg.accounts {
            let found = match since {
                None => changelog::log_bounds(&mut conn, &account_id)
                    .map(|(_, seq)| (seq, Default::default())),
                Some(since) => changelog::types_changed_since(
                    &mut conn,
                    &account_id,
                    since,
                    crate::push::DATA_TYPES,
                ),
            };
            match found {
                Ok((seq, changed)) => out.push(AccountPosition {
                    account_id,
                    seq,
                    changed,
                }),
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

/// Store an upload (RFC 8620 §6.1) for a principal who may write `account_id`. Returns the blob id.
#[derive(Message)]
#[rtype(result = "Result<String, StoreError>")]
pub struct UploadBlob {
    pub user_id: String,
    pub account_id: String,
    pub data: Vec<u8>,
}

/// Read a blob (stored or a message part) if it exists in `account_id` for `user_id` (RFC 8620
/// §6.2); `None` when it does not or is not visible to them.
#[derive(Message)]
#[rtype(result = "Result<Option<Vec<u8>>, StoreError>")]
pub struct DownloadBlob {
    pub user_id: String,
    pub account_id: String,
    pub blob_id: String,
}

impl Handler<UploadBlob> for Dispatcher {
    type Result = Result<String, StoreError>;

    fn handle(&mut self, msg: UploadBlob, _: &mut Self::Context) -> Self::Result {
        let mut conn = self.store.conn()?;
        if let Err(e) = crate::store::blobs::purge_if_due(&mut conn) {
            log::warn!("purging unused blobs failed: {e}");
        }
        crate::store::blobs::upload(&mut conn, &msg.account_id, &msg.user_id, &msg.data)
    }
}

impl Handler<DownloadBlob> for Dispatcher {
    type Result = Result<Option<Vec<u8>>, StoreError>;

    fn handle(&mut self, msg: DownloadBlob, _: &mut Self::Context) -> Self::Result {
        let mut conn = self.store.conn()?;
        crate::store::blobs::read_visible(&mut conn, &msg.account_id, &msg.user_id, &msg.blob_id)
    }
}
