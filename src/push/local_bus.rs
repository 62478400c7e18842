//! `LocalBus`: the publication path on SQLite, for writes of this process and of every other.
//!
//! The dispatcher hands each committed write of this process to the bus, which publishes it at
//! once when it is the account's next position. Other processes on the same database file
//! (`herald deliver`, `herald account …`, a second `herald serve`) cannot tell the bus anything,
//! so it watches: every `change_poll` it asks its own connection for `PRAGMA data_version`, which
//! changes whenever another connection committed (this process's dispatcher included), and then
//! reads which accounts have change-log rows above the log's end it last saw
//! (`store::log_head`: a read as long as what was written meanwhile, not one row per account of
//! the store), and from the change log every write of those accounts after the positions it has
//! published, as `ClusterBus` does after a reconnect. Either way a
//! write is published once and in order per account: positions are contiguous per account, so
//! when the dispatcher announces a write beyond the next position, the writes in between (made by
//! another process, not yet seen) are read from the log and published first.
//!
//! The same check reads the access epoch (`store::access_epoch`), so access withdrawn by another
//! process reaches the push registry at once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use diesel::{Connection, RunQueryDsl};

use super::StateChanged;
use super::publication::{Publication, writes_after};
use super::registry::AccessChanged;
use crate::store::{
    AnyConnection, Store, StoreError, access_epoch, changelog, connection, log_head,
};

/// The bus of a node on SQLite.
pub struct LocalBus {
    store: Store,
    out: Publication,
    access_listeners: Vec<Recipient<AccessChanged>>,
    watch: Arc<Mutex<Watch>>,
    change_poll: Duration,
    /// A check or catch-up is under way; the next tick waits for it.
    polling: bool,
}

/// The bus's own connection and what it last saw on it.
struct Watch {
    conn: AnyConnection,
    data_version: i64,
    access_epoch: i64,
    /// The change log's end (`store::log_head`).
    log_head: i64,
}

/// What a check found: nothing new, or (when someone committed) the position of every account
/// written since the last check (or of every account) and whether access was withdrawn.
struct Seen {
    positions: Option<Vec<(String, i64)>>,
    access_changed: bool,
}

#[derive(diesel::QueryableByName)]
struct DataVersion {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    data_version: i64,
}

impl Watch {
    fn open(store: &Store) -> Result<Watch, StoreError> {
        let mut conn = connection::establish(store.url())?;
        let data_version = data_version(&mut conn)?;
        let access_epoch = access_epoch::current(&mut conn)?;
        let log_head = log_head::log_head(&mut conn)?;
        Ok(Watch {
            conn,
            data_version,
            access_epoch,
            log_head,
        })
    }

    fn check(&mut self) -> Result<Seen, StoreError> {
        let version = data_version(&mut self.conn)?;
        if version == self.data_version {
            return Ok(Seen {
                positions: None,
                access_changed: false,
            });
        }
        self.data_version = version;
        let seen_head = self.log_head;
        let seen_epoch = self.access_epoch;
        // One read transaction: the log's end and the rows below it are of one moment.
        let (epoch, head, positions) = self.conn.transaction(|c| {
            let epoch = access_epoch::current(c)?;
            let head = log_head::log_head(c)?;
            // Rows were deleted (a user removed: the epoch moved) and their numbers may be
            // reused: every account, once.
            let positions = if epoch != seen_epoch || head < seen_head {
                changelog::positions(c)?
            } else {
                log_head::written_after(c, seen_head)?
            };
            Ok::<_, StoreError>((epoch, head, positions))
        })?;
        self.access_epoch = epoch;
        self.log_head = head;
        Ok(Seen {
            positions: Some(positions),
            access_changed: epoch != seen_epoch,
        })
    }
}

fn data_version(conn: &mut AnyConnection) -> Result<i64, StoreError> {
    match conn {
        AnyConnection::Sqlite(c) => Ok(diesel::sql_query("PRAGMA data_version")
            .get_result::<DataVersion>(c)?
            .data_version),
        AnyConnection::Postgresql(_) => Err(StoreError::Invalid(
            "the local bus watches SQLite only".into(),
        )),
    }
}

impl LocalBus {
    /// Starts the bus. The baseline (positions when the node starts) is read here, before the
    /// node accepts a connection, as `ClusterBus::start` explains.
    pub fn start(
        store: Store,
        publishers: Vec<Recipient<StateChanged>>,
        access_listeners: Vec<Recipient<AccessChanged>>,
        change_poll: Duration,
    ) -> Result<Addr<LocalBus>, StoreError> {
        let baseline = changelog::positions(&mut *store.conn()?)?;
        let watch = Watch::open(&store)?;
        Ok(LocalBus {
            store,
            out: Publication::new(publishers, baseline),
            access_listeners,
            watch: Arc::new(Mutex::new(watch)),
            change_poll,
            polling: false,
        }
        .start())
    }

    fn check(&mut self, ctx: &mut Context<Self>) {
        if self.polling {
            return;
        }
        self.polling = true;
        let watch = self.watch.clone();
        async move {
            actix_web::rt::task::spawn_blocking(move || {
                watch.lock().unwrap_or_else(|p| p.into_inner()).check()
            })
            .await
            .unwrap_or_else(|e| Err(StoreError::Invalid(e.to_string())))
        }
        .into_actor(self)
        .map(|seen, bus, ctx| match seen {
            Ok(Seen {
                positions,
                access_changed,
            }) => {
                if access_changed {
                    for l in &bus.access_listeners {
                        let _ = l.try_send(AccessChanged);
                    }
                }
                // Usually this process's own writes, published already: nothing to read.
                let behind = bus.out.behind(positions.unwrap_or_default());
                if behind.is_empty() {
                    bus.polling = false;
                } else {
                    bus.catch_up(behind, ctx);
                }
            }
            Err(e) => {
                log::warn!("local bus: cannot check for commits: {e}");
                bus.polling = false;
            }
        })
        .spawn(ctx);
    }

    /// Publishes the writes of the accounts `behind` after what was published. Holds the bus's
    /// mailbox meanwhile, so writes announced by the dispatcher are published after, never
    /// between, these.
    fn catch_up(&mut self, behind: Vec<(String, i64)>, ctx: &mut Context<Self>) {
        let store = self.store.clone();
        async move {
            actix_web::rt::task::spawn_blocking(move || writes_after(&store, &behind))
                .await
                .unwrap_or_else(|e| Err(StoreError::Invalid(e.to_string())))
        }
        .into_actor(self)
        .map(|missed, bus, _| {
            bus.polling = false;
            match missed {
                Ok(writes) => writes.into_iter().for_each(|w| bus.out.publish(w)),
                Err(e) => log::warn!("local bus: cannot read the change log: {e}"),
            }
        })
        .wait(ctx);
    }
}

impl Actor for LocalBus {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The dispatcher publishes with try_send: leave room for bursts.
        ctx.set_mailbox_capacity(65_536);
        ctx.run_interval(self.change_poll, |bus, ctx| bus.check(ctx));
    }
}

/// A write of this process, from the dispatcher after commit.
impl Handler<StateChanged> for LocalBus {
    type Result = ();

    fn handle(&mut self, change: StateChanged, ctx: &mut Context<Self>) {
        let next = self.out.position(&change.account_id) + 1;
        if change.seq <= next {
            // The next position (publish), or one already read back from the log (skipped).
            self.out.publish(change);
            return;
        }
        // Another process wrote to this account in between, unseen yet: those writes first.
        let (store, account) = (self.store.clone(), change.account_id.clone());
        async move {
            actix_web::rt::task::spawn_blocking(move || {
                writes_after(&store, &[(account, next - 1)])
            })
            .await
            .unwrap_or_else(|e| Err(StoreError::Invalid(e.to_string())))
        }
        .into_actor(self)
        .map(move |writes, bus, _| {
            match writes {
                Ok(writes) => writes.into_iter().for_each(|w| bus.out.publish(w)),
                Err(e) => log::warn!("local bus: cannot read the change log: {e}"),
            }
            bus.out.publish(change);
        })
        .wait(ctx);
    }
}

/// Stops the bus (the node is stopping): it publishes nothing more.
impl Handler<super::cluster_bus::Stop> for LocalBus {
    type Result = ();
    fn handle(&mut self, _: super::cluster_bus::Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
