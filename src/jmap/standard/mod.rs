//! The standard methods (RFC 8620 §5), written once for every data type.
//!
//! A data type declares only what is its own, in a descriptor implemented by its record type:
//! [`DataType`] (the wire name, which is also its name in the change log) serves `/changes`;
//! [`Listed`] (its properties, how to load an account's records, how to render one) serves
//! `/get`; [`Queried`] (its filter and sort over the loaded records) serves `/query` and
//! `/queryChanges`. The method table names `get::<C, Mailbox>` and so on. Types whose methods
//! cannot work over a loaded list (Email, Thread, PushSubscription) use the argument parsers and
//! response shapes of the files below directly.

mod changes;
mod filter;
mod get;
mod query;
mod set;

use std::collections::HashMap;

use serde_json::{Map, Value};

pub use changes::{ChangesRequest, changes_response, parse_changes};
pub use filter::filter_matches;
pub use get::{GetRequest, get_response, parse_get, select};
pub use query::{
    COLLATIONS, Comparator, QueryChangesRequest, QueryRequest, collate, parse_query,
    parse_query_changes, query_changes_response, query_response, window,
};
pub use set::{
    ObjectEntries, SetError, SetErrorType, SetRequest, SetResponse, created_reply, parse_set,
    patch_diff,
};

use super::changes::{ChangeLogStore, ChangesPage};
use super::dispatch::Call;
use super::error::MethodError;

/// A JMAP data type, as far as every type is alike.
pub trait DataType {
    /// The wire name (`Mailbox`): also the type's name in the change log and in StateChange.
    const NAME: &'static str;

    /// Adds what this type's `/changes` response carries beyond RFC 8620 §5.2.
    fn extend_changes(_page: &ChangesPage, _response: &mut Map<String, Value>) {}
}

/// A type whose records in one account are few enough to load whole (mailboxes, identities,
/// submissions, the vacation response): `/get` picks from that list.
pub trait Listed<C>: DataType + Sized {
    /// Every property a client may ask for.
    const PROPERTIES: &'static [&'static str];
    /// What one load returns: the records, the type's state and whatever rendering needs.
    type Snapshot;

    /// Writes what loading needs to exist (Identity: the account's default identity), before
    /// the load's read snapshot, which cannot write (`store::snapshot`).
    fn prepare(_ctx: &mut C, _call: &Call<'_>) -> Result<(), MethodError> {
        Ok(())
    }
    /// Loads the account's records as the caller may see them.
    fn load(ctx: &mut C, call: &Call<'_>) -> Result<Self::Snapshot, MethodError>;
    fn state(snapshot: &Self::Snapshot) -> &str;
    fn records(snapshot: &Self::Snapshot) -> &[Self];
    fn id(&self) -> &str;
    /// The record's full JSON form, every property included.
    fn to_json(&self, snapshot: &Self::Snapshot, call: &Call<'_>) -> Map<String, Value>;
}

/// A listed type with a filter and a sort: `/query` and `/queryChanges` run over the loaded list.
pub trait Queried<C>: Listed<C> {
    /// The type's own `/query` arguments (Mailbox: `sortAsTree`, `filterAsTree`).
    type QueryArgs;

    fn query_args(call: &mut Call<'_>) -> Result<Self::QueryArgs, MethodError>;
    /// Every matching record's id, sorted.
    fn query(
        snapshot: &Self::Snapshot,
        filter: Option<&Value>,
        sort: &[Comparator],
        args: &Self::QueryArgs,
    ) -> Result<Vec<String>, MethodError>;

    /// For `/queryChanges`: the records whose place in the results may have changed when
    /// `touched` changed. Each record's place depends only on itself unless a type says
    /// otherwise (Mailbox in a tree: on its ancestors too).
    fn touched_with_dependents(
        _snapshot: &Self::Snapshot,
        touched: Vec<String>,
        _args: &Self::QueryArgs,
    ) -> Vec<String> {
        touched
    }
}

/// The response of a method: its arguments object.
pub type Response = Result<Map<String, Value>, MethodError>;

/// `Foo/get` (RFC 8620 §5.1) for a listed type.
pub fn get<C: ChangeLogStore, T: Listed<C>>(ctx: &mut C, call: &mut Call<'_>) -> Response {
    let req = parse_get(call, T::PROPERTIES)?;
    std::mem::take(&mut call.args).finish()?;
    T::prepare(ctx, call)?;
    let snapshot = ctx.read_snapshot(|ctx| T::load(ctx, call))?;
    let records = T::records(&snapshot);
    let render = |r: &T| {
        Value::Object(select(
            r.to_json(&snapshot, call),
            req.properties.as_deref(),
        ))
    };
    let mut list = Vec::new();
    let mut not_found = Vec::new();
    match &req.ids {
        None => {
            // GET-02: all records only if they fit in maxObjectsInGet.
            let max = call.server.limits.max_objects_in_get;
            if records.len() as u64 > max {
                return Err(MethodError::RequestTooLarge(format!(
                    "more than {max} {} records; ask by ids",
                    T::NAME
                )));
            }
            list.extend(records.iter().map(render));
        }
        Some(ids) => {
            let by_id: HashMap<&str, &T> = records.iter().map(|r| (r.id(), r)).collect();
            for id in ids {
                match by_id.get(id.as_str()) {
                    Some(r) => list.push(render(r)),
                    None => not_found.push(id.clone()),
                }
            }
        }
    }
    Ok(get_response(
        call.account_id(),
        T::state(&snapshot),
        list,
        not_found,
    ))
}

/// `Foo/changes` (RFC 8620 §5.2) for any type, from the change log.
pub fn changes<C: ChangeLogStore, T: DataType>(ctx: &mut C, call: &mut Call<'_>) -> Response {
    let req = parse_changes(call, call.server.limits.max_objects_in_get as usize)?;
    std::mem::take(&mut call.args).finish()?;
    let since = req.since()?;
    let page = ctx.changes(call.account_id(), T::NAME, since, req.max_changes)?;
    let mut response = changes_response(call.account_id(), &req.since_state, &page);
    T::extend_changes(&page, &mut response);
    Ok(response)
}

/// `Foo/query` (RFC 8620 §5.5) over a listed type's records.
pub fn query<C: ChangeLogStore, T: Queried<C>>(ctx: &mut C, call: &mut Call<'_>) -> Response {
    let q = parse_query(call)?;
    let args = T::query_args(call)?;
    std::mem::take(&mut call.args).finish()?;
    T::prepare(ctx, call)?;
    let snapshot = ctx.read_snapshot(|ctx| T::load(ctx, call))?;
    let all = T::query(&snapshot, q.filter.as_ref(), &q.sort, &args)?;
    let (position, ids, limit) = window(&all, &q, call.server.limits.max_objects_in_get.max(1000))?;
    let total = q.calculate_total.then_some(all.len());
    Ok(query_response(
        call.account_id(),
        T::state(&snapshot),
        true,
        position,
        ids,
        total,
        limit,
    ))
}

/// `Foo/queryChanges` (RFC 8620 §5.6) over a listed type's records: every record touched since
/// the query state is reported removed and, if it still matches, added at its index.
pub fn query_changes<C: ChangeLogStore, T: Queried<C>>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Response {
    let q = parse_query_changes(call)?;
    let args = T::query_args(call)?;
    std::mem::take(&mut call.args).finish()?;
    let since = q.since()?;
    let account_id = call.account_id().to_owned();
    // The touched ids and the results from one state (QCH-02): a write committed between the
    // two would be in newQueryState but in neither `removed` nor `added`.
    T::prepare(ctx, call)?;
    let (touched, snapshot) = ctx.read_snapshot(|ctx| {
        let touched = ctx.touched_since(&account_id, T::NAME, since)?;
        Ok((touched, T::load(ctx, call)?))
    })?;
    let touched = T::touched_with_dependents(&snapshot, touched, &args);
    let current = T::query(&snapshot, q.filter.as_ref(), &q.sort, &args)?;
    let total = current.len();
    query_changes_response(
        &account_id,
        &q,
        T::state(&snapshot),
        &touched,
        &current,
        total,
    )
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}
