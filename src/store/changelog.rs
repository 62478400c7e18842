//! The per-account change log: the spine of synchronisation (../shared/DESIGN.md).
//!
//! Every write to an account runs in [`write`]: one transaction that first advances the account's
//! `seq` (which also takes the write lock at once, so two SQLite writers never deadlock upgrading a
//! read lock), lets the caller change data and [`WriteTxn::record`] what it changed, then appends
//! the change-log rows. A write that records nothing is rolled back, so states stay put when nothing
//! changed (RFC 8620 §5.1). A type's state is the `seq` of its newest change.

use super::first_row::FirstRowDsl;
use std::collections::{BTreeMap, BTreeSet};

use diesel::prelude::*;

use super::batch_insert::insert_rows;
use super::schema::{accounts, change_log};
use super::static_sql::{SqlParam, StaticSql};
use super::{AnyConnection, StoreError};
use crate::jmap::changes::{
    CannotCalculate, ChangeLogStore, ChangeRow, ChangesBuilder, ChangesPage, ChangesSince,
};
use crate::jmap::error::MethodError;

pub use crate::jmap::changes::ChangeOp;

/// What a committed write changed, for push: published only after commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub account_id: String,
    /// The account's new push position; also the new state of every type in `types`.
    pub seq: i64,
    pub types: BTreeSet<String>,
    /// When it committed (milliseconds since the epoch), for the push latency metric; `None` for
    /// writes read back from the log.
    pub committed_at_ms: Option<i64>,
}

/// The PostgreSQL channel committed writes are announced on.
pub const NOTIFY_CHANNEL: &str = "herald_state";

impl Committed {
    /// `account_id seq Type,Type… committed_at_ms` — the NOTIFY payload (ids and type names
    /// hold no spaces).
    pub fn to_payload(&self) -> String {
        let types: Vec<&str> = self.types.iter().map(String::as_str).collect();
        format!(
            "{} {} {} {}",
            self.account_id,
            self.seq,
            types.join(","),
            self.committed_at_ms.unwrap_or(0)
        )
    }

    /// Reads a NOTIFY payload back.
    pub fn from_payload(payload: &str) -> Option<Committed> {
        let mut parts = payload.split(' ');
        let account_id = parts.next()?.to_owned();
        let seq = parts.next()?.parse().ok()?;
        let types = parts
            .next()?
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        // Older nodes sent three fields.
        let committed_at_ms = parts.next().and_then(|t| t.parse().ok()).filter(|t| *t > 0);
        Some(Committed {
            account_id,
            seq,
            types,
            committed_at_ms,
        })
    }
}

/// An open write transaction on one account.
pub struct WriteTxn<'c> {
    conn: &'c mut AnyConnection,
    account_id: String,
    seq: i64,
    changes: BTreeMap<(String, String), ChangeOp>,
    touched: BTreeSet<String>,
}

impl WriteTxn<'_> {
    /// The connection, inside the transaction.
    pub fn conn(&mut self) -> &mut AnyConnection {
        self.conn
    }

    /// The account being written.
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// The `seq` this write commits as: the new state of every type it records.
    pub fn seq(&self) -> i64 {
        self.seq
    }

    /// Records that `object_id` of `data_type` was created, updated or destroyed by this write.
    /// Several changes to one object fold into one (created + updated = created, and so on).
    pub fn record(&mut self, data_type: &str, object_id: &str, op: ChangeOp) {
        let key = (data_type.to_owned(), object_id.to_owned());
        self.touched.insert(data_type.to_owned());
        match self.changes.get(&key).copied() {
            None => {
                self.changes.insert(key, op);
            }
            Some(earlier) => match earlier.then(op) {
                Some(folded) => {
                    self.changes.insert(key, folded);
                }
                None => {
                    self.changes.remove(&key);
                }
            },
        }
    }

    /// Whether a change to `data_type` has been recorded so far (and not folded away: created
    /// and destroyed in one write is none). Only such a type's state moves at commit.
    pub fn changes_type(&self, data_type: &str) -> bool {
        self.changes.keys().any(|(t, _)| t == data_type)
    }
}

enum Abort {
    Unchanged,
    Failed(StoreError),
}

impl From<diesel::result::Error> for Abort {
    fn from(e: diesel::result::Error) -> Self {
        Abort::Failed(StoreError::Database(e))
    }
}

/// Runs `body` as one write to `account_id`. Returns its value and, if it changed anything and
/// committed, what to publish. An `Err` from `body` rolls everything back.
pub fn write<T>(
    conn: &mut AnyConnection,
    account_id: &str,
    body: impl FnOnce(&mut WriteTxn<'_>) -> Result<T, StoreError>,
) -> Result<(T, Option<Committed>), StoreError> {
    let mut value = None;
    let mut committed = None;
    let outcome = conn.transaction::<(), Abort, _>(|conn| {
        // Hand-written: Diesel never keeps an UPDATE prepared, and this one runs for every
        // write (its parse was 4.4 % of a Mailbox/set's processor time); RETURNING saves the
        // read of the new number.
        let bump = StaticSql::new(
            "UPDATE accounts SET seq = seq + 1 WHERE id = $1 RETURNING seq",
            vec![SqlParam::Text(account_id.to_owned())],
        );
        let bumped: Vec<Seq> = match conn {
            AnyConnection::Sqlite(c) => bump.load(c)?,
            AnyConnection::Postgresql(c) => bump.load(c)?,
        };
        let Some(Seq { seq }) = bumped.into_iter().next() else {
            return Err(Abort::Failed(StoreError::NotFound(format!(
                "account {account_id}"
            ))));
        };
        let mut txn = WriteTxn {
            conn,
            account_id: account_id.to_owned(),
            seq,
            changes: BTreeMap::new(),
            touched: BTreeSet::new(),
        };
        let result = body(&mut txn).map_err(Abort::Failed)?;
        if txn.changes.is_empty() {
            value = Some(result);
            return Err(Abort::Unchanged);
        }
        insert_change_rows(txn.conn, account_id, seq, &txn.changes)?;
        let types = txn.changes.keys().map(|(t, _)| t.clone()).collect();
        let change = Committed {
            account_id: account_id.to_owned(),
            seq,
            types,
            committed_at_ms: Some(super::now_ms()),
        };
        // PostgreSQL: announce the write to every node. NOTIFY is transactional, so only a
        // committed write is announced, once, in commit order (DESIGN.md, ClusterBus).
        if let AnyConnection::Postgresql(c) = &mut *txn.conn {
            diesel::sql_query("SELECT pg_notify($1, $2)")
                .bind::<diesel::sql_types::Text, _>(NOTIFY_CHANNEL)
                .bind::<diesel::sql_types::Text, _>(change.to_payload())
                .execute(c)?;
        }
        committed = Some(change);
        value = Some(result);
        Ok(())
    });
    match outcome {
        Ok(()) | Err(Abort::Unchanged) => {
            #[allow(
                clippy::expect_used,
                reason = "both arms are reached only after the body returned and set it"
            )]
            let value = value.expect("the write body ran");
            Ok((value, committed))
        }
        Err(Abort::Failed(e)) => Err(e),
    }
}

/// Up to this many change rows, a SQLite write inserts them one by one with a prepared statement.
const PREPARED_CHANGE_ROWS: usize = 16;

#[derive(QueryableByName)]
struct Seq {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq: i64,
}

/// Writes a write's change rows. SQLite, for the few rows of a client's write: one statement,
/// kept prepared, run once per row; a multi-row `INSERT` has a text per row count, which Diesel
/// never caches, and parsing it was 4.6 % of a Mailbox/set's processor time. Many rows (an
/// import) and PostgreSQL: multi-row statements, parsed once per chunk (an import of 100,000
/// took 4–7 % longer row by row; on PostgreSQL each row would be a round trip).
fn insert_change_rows(
    conn: &mut AnyConnection,
    account_id: &str,
    seq: i64,
    changes: &BTreeMap<(String, String), ChangeOp>,
) -> QueryResult<()> {
    if let AnyConnection::Sqlite(c) = conn
        && changes.len() <= PREPARED_CHANGE_ROWS
    {
        for ((data_type, object_id), op) in changes {
            StaticSql::new(
                "INSERT INTO change_log (account_id, data_type, seq, object_id, op) \
                 VALUES ($1, $2, $3, $4, $5)",
                vec![
                    SqlParam::Text(account_id.to_owned()),
                    SqlParam::Text(data_type.clone()),
                    SqlParam::Int(seq),
                    SqlParam::Text(object_id.clone()),
                    SqlParam::Int(i64::from(op.code())),
                ],
            )
            .execute(c)?;
        }
        return Ok(());
    }
    let rows: Vec<_> = changes
        .iter()
        .map(|((data_type, object_id), op)| {
            (
                change_log::account_id.eq(account_id),
                change_log::data_type.eq(data_type.as_str()),
                change_log::seq.eq(seq),
                change_log::object_id.eq(object_id.as_str()),
                change_log::op.eq(op.code()),
            )
        })
        .collect();
    insert_rows!(conn, change_log::table, &rows, 5)
}

/// The current state of `data_type` in an account: the `seq` of its newest change, or the log's
/// floor when the log holds none.
pub fn type_state(
    conn: &mut AnyConnection,
    account_id: &str,
    data_type: &str,
) -> Result<i64, StoreError> {
    // The newest row by the key, not `max(seq)`: without statistics (a table just filled by an
    // import) PostgreSQL planned the aggregate over every change of the type (12 ms at 30,000).
    let newest: Option<i64> = change_log::table
        .filter(change_log::account_id.eq(account_id))
        .filter(change_log::data_type.eq(data_type))
        .order(change_log::seq.desc())
        .select(change_log::seq)
        .first_row(conn)
        .optional()?;
    match newest {
        Some(seq) => Ok(seq),
        None => Ok(log_bounds(conn, account_id)?.0),
    }
}

/// `(log_floor, seq)` of an account: the oldest position `/changes` can start from, and the newest.
pub fn log_bounds(conn: &mut AnyConnection, account_id: &str) -> Result<(i64, i64), StoreError> {
    accounts::table
        .find(account_id)
        .select((accounts::log_floor, accounts::seq))
        .first_row(conn)
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("account {account_id}")))
}

/// Why a `/changes` read failed.
#[derive(Debug, thiserror::Error)]
pub enum ChangesError {
    #[error("cannot calculate changes: {0:?}")]
    CannotCalculate(CannotCalculate),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for ChangesError {
    fn from(e: diesel::result::Error) -> Self {
        ChangesError::Store(StoreError::Database(e))
    }
}

/// Reads one page of changes of `data_type` since `since` (RFC 8620 §5.2).
pub fn changes_since(
    conn: &mut AnyConnection,
    account_id: &str,
    data_type: &str,
    since: &ChangesSince,
    max_changes: usize,
) -> Result<ChangesPage, ChangesError> {
    const CHUNK: i64 = 1000;
    let (floor, newest) = log_bounds(conn, account_id)?;
    // Every write after `since.seq` must still be in the log; inside a write, that write too.
    let reached = match since.after {
        None => since.seq,
        Some(_) => since.seq - 1,
    };
    if reached < floor || since.seq > newest {
        return Err(ChangesError::CannotCalculate(CannotCalculate::UnknownState));
    }
    // A state inside a write names one of its objects: one made up would skip what sorts
    // before it.
    if let Some(object) = &since.after {
        let issued = change_log::table
            .filter(change_log::account_id.eq(account_id))
            .filter(change_log::data_type.eq(data_type))
            .filter(change_log::seq.eq(since.seq))
            .filter(change_log::object_id.eq(object))
            .select(change_log::seq)
            .first_row::<i64, _>(conn)
            .optional()?;
        if issued.is_none() {
            return Err(ChangesError::CannotCalculate(CannotCalculate::UnknownState));
        }
    }
    let current = type_state(conn, account_id, data_type)?;
    let mut builder = ChangesBuilder::new(max_changes);
    // Rows come in chunks; a chunk boundary may fall inside one seq, which the builder handles
    // because it only closes a group when the next seq arrives. Inside a write, rows are in
    // object id order, which is what a split state's object counts in.
    let mut after: (i64, String) = (since.seq, since.after.clone().unwrap_or_default());
    'chunks: loop {
        let rows: Vec<(i64, String, i32)> = change_log::table
            .filter(change_log::account_id.eq(account_id))
            .filter(change_log::data_type.eq(data_type))
            .filter(
                change_log::seq.gt(after.0).or(change_log::seq
                    .eq(after.0)
                    .and(change_log::object_id.gt(&after.1))),
            )
            .filter(change_log::seq.gt(reached))
            .order((change_log::seq.asc(), change_log::object_id.asc()))
            .select((change_log::seq, change_log::object_id, change_log::op))
            .limit(CHUNK)
            .load(conn)?;
        let n = rows.len() as i64;
        for (seq, object_id, op) in rows {
            after = (seq, object_id.clone());
            let op = ChangeOp::from_code(op).unwrap_or(ChangeOp::Updated);
            if !builder.push(ChangeRow { seq, object_id, op }) {
                break 'chunks;
            }
        }
        if n < CHUNK {
            break;
        }
    }
    Ok(builder.finish(current))
}

/// Every object of `data_type` created, updated or destroyed after `since`, for `/queryChanges`.
pub fn touched_since(
    conn: &mut AnyConnection,
    account_id: &str,
    data_type: &str,
    since: i64,
) -> Result<Vec<String>, ChangesError> {
    let (floor, newest) = log_bounds(conn, account_id)?;
    if since < floor || since > newest {
        return Err(ChangesError::CannotCalculate(CannotCalculate::UnknownState));
    }
    Ok(change_log::table
        .filter(change_log::account_id.eq(account_id))
        .filter(change_log::data_type.eq(data_type))
        .filter(change_log::seq.gt(since))
        .select(change_log::object_id)
        .distinct()
        .load(conn)?)
}

impl ChangeLogStore for super::StoreContext {
    fn changes(
        &mut self,
        account_id: &str,
        data_type: &str,
        since: &ChangesSince,
        max_changes: usize,
    ) -> Result<ChangesPage, MethodError> {
        Ok(changes_since(
            self.conn(),
            account_id,
            data_type,
            since,
            max_changes,
        )?)
    }

    fn touched_since(
        &mut self,
        account_id: &str,
        data_type: &str,
        since: i64,
    ) -> Result<Vec<String>, MethodError> {
        Ok(touched_since(self.conn(), account_id, data_type, since)?)
    }

    fn read_snapshot<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, MethodError>,
    ) -> Result<T, MethodError> {
        super::snapshot::run(self, super::StoreContext::conn, read)
    }
}

/// Every account's newest position, for a node that must catch up (ClusterBus replay).
pub fn positions(conn: &mut AnyConnection) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(accounts::table
        .select((accounts::id, accounts::seq))
        .load(conn)?)
}

/// The committed writes of an account after `since`, oldest first: each with the types it
/// changed. Empty if the log no longer reaches back that far (then see [`log_bounds`]).
pub fn writes_since(
    conn: &mut AnyConnection,
    account_id: &str,
    since: i64,
) -> Result<Vec<Committed>, StoreError> {
    let rows: Vec<(i64, String)> = change_log::table
        .filter(change_log::account_id.eq(account_id))
        .filter(change_log::seq.gt(since))
        .select((change_log::seq, change_log::data_type))
        .distinct()
        .order((change_log::seq.asc(), change_log::data_type.asc()))
        .load(conn)?;
    let mut out: Vec<Committed> = Vec::new();
    for (seq, data_type) in rows {
        match out.last_mut() {
            Some(last) if last.seq == seq => {
                last.types.insert(data_type);
            }
            _ => out.push(Committed {
                account_id: account_id.to_owned(),
                seq,
                types: BTreeSet::from([data_type]),
                committed_at_ms: None,
            }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notify_payload_round_trips() {
        let c = Committed {
            account_id: "a1".into(),
            seq: 42,
            types: BTreeSet::from(["Email".to_owned(), "Mailbox".to_owned()]),
            committed_at_ms: Some(1_764_806_400_123),
        };
        assert_eq!(Committed::from_payload(&c.to_payload()), Some(c));
        // A payload of a node from before the commit time.
        assert_eq!(
            Committed::from_payload("a1 7 Email").map(|c| c.committed_at_ms),
            Some(None)
        );
        assert_eq!(Committed::from_payload("garbage"), None);
    }
}

/// Every data type changed in an account after position `since`, each with its new state (the
/// seq of its newest change, equal to Foo/get's state), and the account's newest seq: what a push
/// client reconnecting with an old `pushState` / `Last-Event-ID` missed (RFC 8620 §7.3, RFC 8887
/// §4.3.5.2). When the log no longer reaches back to `since` (trimmed past it, or a position this
/// store never issued), every type in `all_types` and in the log is reported with its current state.
pub fn types_changed_since(
    conn: &mut AnyConnection,
    account_id: &str,
    since: i64,
    all_types: &[&str],
) -> Result<(i64, BTreeMap<String, i64>), StoreError> {
    let (floor, newest) = log_bounds(conn, account_id)?;
    let reachable = since >= floor && since <= newest;
    let rows: Vec<(String, Option<i64>)> = change_log::table
        .filter(change_log::account_id.eq(account_id))
        .filter(change_log::seq.gt(if reachable { since } else { i64::MIN }))
        .group_by(change_log::data_type)
        .select((change_log::data_type, diesel::dsl::max(change_log::seq)))
        .load(conn)?;
    let mut changed: BTreeMap<String, i64> = rows
        .into_iter()
        .filter_map(|(t, seq)| seq.map(|s| (t, s)))
        .collect();
    if !reachable {
        for t in all_types {
            changed.entry((*t).to_owned()).or_insert(floor);
        }
    }
    Ok((newest, changed))
}

#[cfg(test)]
mod push_position_tests {
    use super::*;
    use crate::store::{Store, users};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        (dir, Store::open(&url, 2).unwrap())
    }

    fn account_of(conn: &mut AnyConnection, user: &str) -> String {
        let u = users::create(conn, user, "pw").unwrap();
        accounts::table
            .filter(accounts::owner_id.eq(&u.id))
            .select(accounts::id)
            .first_row(conn)
            .unwrap()
    }

    fn write_types(conn: &mut AnyConnection, account: &str, types: &[&str]) -> i64 {
        let ((), committed) = write(conn, account, |txn| {
            for t in types {
                txn.record(t, "x1", ChangeOp::Updated);
            }
            Ok(())
        })
        .unwrap();
        committed.unwrap().seq
    }

    #[test]
    fn types_changed_since_names_each_type_once_with_its_newest_seq() {
        let (_dir, store) = store();
        let mut conn = store.conn().unwrap();
        let account = account_of(&mut conn, "alice");
        let start = log_bounds(&mut conn, &account).unwrap().1;
        let s1 = write_types(&mut conn, &account, &["Mailbox"]);
        let s2 = write_types(&mut conn, &account, &["Email", "Thread"]);
        let s3 = write_types(&mut conn, &account, &["Email"]);
        let (newest, changed) = types_changed_since(&mut conn, &account, start, &[]).unwrap();
        assert_eq!(newest, s3);
        assert_eq!(changed["Mailbox"], s1);
        assert_eq!(changed["Thread"], s2);
        assert_eq!(changed["Email"], s3);
        // Each state equals what Foo/get reports (type_state).
        for (t, seq) in &changed {
            assert_eq!(type_state(&mut conn, &account, t).unwrap(), *seq);
        }
        let (_, changed) = types_changed_since(&mut conn, &account, s2, &["Mailbox"]).unwrap();
        assert_eq!(
            changed.into_iter().collect::<Vec<_>>(),
            vec![("Email".into(), s3)]
        );
        let (_, changed) = types_changed_since(&mut conn, &account, s3, &["Mailbox"]).unwrap();
        assert!(changed.is_empty());
    }

    #[test]
    fn a_position_the_log_no_longer_reaches_reports_every_type() {
        let (_dir, store) = store();
        let mut conn = store.conn().unwrap();
        let account = account_of(&mut conn, "alice");
        let s1 = write_types(&mut conn, &account, &["Mailbox"]);
        let s2 = write_types(&mut conn, &account, &["Email"]);
        diesel::update(accounts::table.find(&account))
            .set(accounts::log_floor.eq(s1))
            .execute(&mut conn)
            .unwrap();
        let all = ["Mailbox", "Email", "Identity"];
        // Trimmed past, and never issued (ahead of the newest): every type.
        for since in [s1 - 1, s2 + 5, -1] {
            let (newest, changed) = types_changed_since(&mut conn, &account, since, &all).unwrap();
            assert_eq!(newest, s2);
            assert_eq!(changed.len(), 3, "{since}: {changed:?}");
            assert_eq!(changed["Email"], s2);
            assert_eq!(
                changed["Identity"], s1,
                "a type without rows is at the floor"
            );
        }
        let (_, changed) = types_changed_since(&mut conn, &account, s1, &all).unwrap();
        assert_eq!(changed.len(), 1);
    }
}
