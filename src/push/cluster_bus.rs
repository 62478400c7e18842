//! `ClusterBus`: cross-node push on PostgreSQL, through PostgreSQL itself.
//!
//! Every write announces itself with `NOTIFY herald_state` inside its transaction, so only
//! committed writes are announced, exactly once, in commit order. Each node's bus LISTENs and
//! hands every announcement to its local publishers (the push registry, the webhook sender): on
//! PostgreSQL this is the *only* publication path, so a client never sees a change twice.
//!
//! A LISTEN connection can drop. The bus remembers the newest position it published per account;
//! after reconnecting (with backoff) it reads the change log for every account that moved meanwhile
//! and publishes each missed write, oldest first. So a dropped connection loses no push.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;

use crate::push::StateChanged;
use crate::store::changelog::{self, NOTIFY_CHANNEL};
use crate::store::{Committed, Store, StoreError};

/// The bus actor of one node.
pub struct ClusterBus {
    url: String,
    store: Store,
    publishers: Vec<Recipient<StateChanged>>,
    /// Newest position published per account.
    published: HashMap<String, i64>,
    /// Bumped on every (re)connection, so a stale stream's messages are ignored.
    generation: u64,
    reconnect_delay: Duration,
}

impl ClusterBus {
    /// Starts the bus; `url` is the PostgreSQL URL of the store.
    ///
    /// The baseline (what happened before this node started is not ours to push) is read here,
    /// before the node accepts a connection: read later, a write made through a client that had
    /// already subscribed would count as history and never be pushed.
    pub fn start(
        url: String,
        store: Store,
        publishers: Vec<Recipient<StateChanged>>,
    ) -> Result<Addr<ClusterBus>, StoreError> {
        let published = changelog::positions(&mut *store.conn()?)?;
        Ok(ClusterBus {
            url,
            store,
            publishers,
            published: published.into_iter().collect(),
            generation: 0,
            reconnect_delay: Duration::from_millis(100),
        }
        .start())
    }

    fn publish(&mut self, c: Committed) {
        let newest = self.published.entry(c.account_id.clone()).or_insert(0);
        if c.seq <= *newest {
            return; // already published (replay overlapping a notification)
        }
        *newest = c.seq;
        let change = StateChanged::from(c);
        for p in &self.publishers {
            if p.try_send(change.clone()).is_err() {
                log::warn!(
                    "push publisher full or gone; change of {} dropped",
                    change.account_id
                );
            }
        }
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        self.generation += 1;
        let generation = self.generation;
        let url = self.url.clone();
        let me = ctx.address();
        async move {
            let (client, mut connection) =
                tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            // The connection object yields notifications; drive it on its own task.
            actix_web::rt::spawn(async move {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(Ok(message)) = messages.next().await {
                    if let tokio_postgres::AsyncMessage::Notification(n) = message
                        && tx.send(n.payload().to_owned()).is_err()
                    {
                        break;
                    }
                }
            });
            client
                .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
                .await?;
            me.do_send(Listening { generation });
            while let Some(payload) = rx.recv().await {
                if let Some(c) = Committed::from_payload(&payload) {
                    me.do_send(Announced {
                        generation,
                        committed: c,
                    });
                }
            }
            drop(client);
            Ok::<(), tokio_postgres::Error>(())
        }
        .into_actor(self)
        .map(move |result, bus, ctx| {
            if bus.generation != generation {
                return;
            }
            match result {
                Ok(()) => log::warn!("cluster bus: LISTEN connection closed; reconnecting"),
                Err(e) => log::warn!(
                    "cluster bus: {e}; reconnecting in {:?}",
                    bus.reconnect_delay
                ),
            }
            ctx.run_later(bus.reconnect_delay, |bus, ctx| bus.connect(ctx));
            bus.reconnect_delay = (bus.reconnect_delay * 2).min(Duration::from_secs(5));
        })
        .spawn(ctx);
    }
}

impl Actor for ClusterBus {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.connect(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // The LISTEN future, and with it the client, went with the context; without a client
        // the connection task ends and the connection closes.
        log::info!("cluster bus stopped");
    }
}

/// Stops the bus: its LISTEN connection closes and it publishes nothing more. Sent when the node
/// stops (`server::Running::run`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for ClusterBus {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

/// The LISTEN of connection `generation` is active: catch up from the change log.
#[derive(Message)]
#[rtype(result = "()")]
struct Listening {
    generation: u64,
}

/// A write announced by NOTIFY.
#[derive(Message)]
#[rtype(result = "()")]
struct Announced {
    generation: u64,
    committed: Committed,
}

impl Handler<Announced> for ClusterBus {
    type Result = ();
    fn handle(&mut self, msg: Announced, _: &mut Context<Self>) {
        if msg.generation == self.generation {
            self.publish(msg.committed);
        }
    }
}

impl Handler<Listening> for ClusterBus {
    type Result = ();
    fn handle(&mut self, msg: Listening, ctx: &mut Context<Self>) {
        if msg.generation != self.generation {
            return;
        }
        self.reconnect_delay = Duration::from_millis(100);
        let (store, published) = (self.store.clone(), self.published.clone());
        async move {
            actix_web::rt::task::spawn_blocking(move || missed_writes(&store, &published))
                .await
                .unwrap_or_else(|e| Err(StoreError::Invalid(e.to_string())))
        }
        .into_actor(self)
        .map(|missed, bus, _| match missed {
            Ok(writes) => {
                if !writes.is_empty() {
                    log::info!("cluster bus: replaying {} missed writes", writes.len());
                }
                for c in writes {
                    bus.publish(c);
                }
            }
            Err(e) => log::error!("cluster bus: replay failed: {e}"),
        })
        .wait(ctx);
    }
}

/// The writes after the positions already published, for every account that moved.
fn missed_writes(
    store: &Store,
    published: &HashMap<String, i64>,
) -> Result<Vec<Committed>, StoreError> {
    let mut conn = store.conn()?;
    let mut out = Vec::new();
    for (account, seq) in changelog::positions(&mut conn)? {
        let since = published.get(&account).copied().unwrap_or(0);
        if seq > since {
            out.extend(changelog::writes_since(&mut conn, &account, since)?);
        }
    }
    Ok(out)
}
