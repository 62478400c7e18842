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

use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;

use super::publication::{Publication, missed_writes};
use super::registry::AccessChanged;
use crate::push::StateChanged;
use crate::store::access_epoch::ACCESS_CHANNEL;
use crate::store::changelog::{self, NOTIFY_CHANNEL};
use crate::store::{Committed, Store, StoreError};

/// The bus actor of one node.
pub struct ClusterBus {
    url: String,
    store: Store,
    out: Publication,
    /// Told when `herald_access` announces withdrawn access (the push registry).
    access_listeners: Vec<Recipient<AccessChanged>>,
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
        access_listeners: Vec<Recipient<AccessChanged>>,
    ) -> Result<Addr<ClusterBus>, StoreError> {
        let published = changelog::positions(&mut *store.conn()?)?;
        Ok(ClusterBus {
            url,
            store,
            out: Publication::new(publishers, published),
            access_listeners,
            generation: 0,
            reconnect_delay: Duration::from_millis(100),
        }
        .start())
    }

    fn publish(&mut self, c: Committed) {
        self.out.publish(StateChanged::from(c));
    }

    fn access_changed(&self) {
        for l in &self.access_listeners {
            let _ = l.try_send(AccessChanged);
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
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(bool, String)>();
            // The connection object yields notifications; drive it on its own task.
            actix_web::rt::spawn(async move {
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                while let Some(Ok(message)) = messages.next().await {
                    if let tokio_postgres::AsyncMessage::Notification(n) = message
                        && tx
                            .send((n.channel() == ACCESS_CHANNEL, n.payload().to_owned()))
                            .is_err()
                    {
                        break;
                    }
                }
            });
            client
                .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}; LISTEN {ACCESS_CHANNEL}"))
                .await?;
            me.do_send(Listening { generation });
            while let Some((access, payload)) = rx.recv().await {
                if access {
                    me.do_send(AccessAnnounced { generation });
                } else if let Some(c) = Committed::from_payload(&payload) {
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
}

/// Stops the bus: its LISTEN connection closes and it publishes nothing more. Sent when the node
/// stops (`server::Running::run`).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for ClusterBus {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        // The LISTEN future, and with it the client, goes with the context; without a client
        // the connection task ends and the connection closes. Logged here, not in `stopped`:
        // a stopping node that awaited Stop may exit first.
        log::info!("cluster bus stopped");
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

/// `NOTIFY herald_access`: some process withdrew access.
#[derive(Message)]
#[rtype(result = "()")]
struct AccessAnnounced {
    generation: u64,
}

impl Handler<AccessAnnounced> for ClusterBus {
    type Result = ();
    fn handle(&mut self, msg: AccessAnnounced, _: &mut Context<Self>) {
        if msg.generation == self.generation {
            self.access_changed();
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
        // Access may have been withdrawn while no LISTEN was active.
        self.access_changed();
        let (store, published) = (self.store.clone(), self.out.positions());
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
                    bus.out.publish(c);
                }
            }
            Err(e) => log::error!("cluster bus: replay failed: {e}"),
        })
        .wait(ctx);
    }
}
