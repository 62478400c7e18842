//! The `Dispatcher`: a pool of synchronous actors (Diesel is synchronous) that authenticate users
//! and run JMAP requests against the store.
//!
//! Each thread builds the method table once and, per request, borrows one store connection for the
//! request's whole run. Method calls run in order (`jmap::dispatch`); every committed write is
//! published as a `StateChanged` after commit, and only what committed.

use std::sync::Arc;

use actix::prelude::*;

use crate::jmap::dispatch::{MethodTable, run_request};
use crate::jmap::error::RequestError;
use crate::jmap::methods::method_table;
use crate::jmap::request::{Request, Response};
use crate::jmap::session::{Principal, ServerInfo};
use crate::push::StateChanged;
use crate::store::credentials::{CredentialCache, Credentials, authenticate};
use crate::store::{AnyConnection, Committed, PooledConnection, Store, StoreError};

/// What a method handler works with: the store connection for this request, and the writes it
/// committed (published when the request ends).
pub struct StoreContext {
    pub conn: PooledConnection,
    pub committed: Vec<Committed>,
}

impl StoreContext {
    /// The store connection.
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.conn
    }
}

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
}

/// One dispatcher thread.
pub struct Dispatcher {
    store: Store,
    server: Arc<ServerInfo>,
    credentials: Arc<CredentialCache>,
    publisher: Option<Recipient<StateChanged>>,
    table: MethodTable<StoreContext>,
}

impl Dispatcher {
    /// Starts `threads` dispatcher threads.
    pub fn start(
        threads: usize,
        store: Store,
        server: Arc<ServerInfo>,
        credentials: Arc<CredentialCache>,
        publisher: Option<Recipient<StateChanged>>,
    ) -> Addr<Dispatcher> {
        SyncArbiter::start(threads.max(1), move || Dispatcher {
            store: store.clone(),
            server: server.clone(),
            credentials: credentials.clone(),
            publisher: publisher.clone(),
            table: method_table(),
        })
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
        let mut ctx = StoreContext { conn: self.store.conn()?, committed: Vec::new() };
        let response = run_request(&self.table, &mut ctx, &msg.principal, &self.server, msg.request);
        if let Some(publisher) = &self.publisher {
            for committed in ctx.committed.drain(..) {
                // try_send: the dispatcher never waits on push.
                let _ = publisher.try_send(StateChanged::from(committed));
            }
        }
        Ok(response)
    }
}
