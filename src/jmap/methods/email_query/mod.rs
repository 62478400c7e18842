//! Email/query, Email/queryChanges (RFC 8621 §4.4, §4.5) and SearchSnippet/get (RFC 8621 §5).
//!
//! This module owns the model: the parsed filter ([`Filter`], [`Condition`]), the sort
//! ([`EmailSort`]), text-search terms ([`SearchText`]) and the snippet highlighting. The store
//! translates the model into SQL over indexed columns (`store::email_query`) and does the sorting
//! and windowing there, so an account of 100,000 messages never travels to Rust for one page.

mod filter;
mod snippet;
mod sort;

pub use filter::*;
pub use snippet::*;
pub use sort::*;

use std::collections::HashSet;

use serde_json::{Map, Value};

use crate::config::limits::QueryLimits;
use crate::jmap::changes::ChangeLogStore;
use crate::jmap::dispatch::Call;
use crate::jmap::error::MethodError;
use crate::jmap::standard::{self, Comparator};

/// The query state is the Email type state.
pub const DATA_TYPE: &str = "Email";

/// The sort properties we support, advertised as `emailQuerySortOptions` (EQ-06).
pub const SORT_OPTIONS: &[&str] = &[
    "receivedAt",
    "sentAt",
    "size",
    "from",
    "to",
    "subject",
    "hasKeyword",
    "allInThreadHaveKeyword",
    "someInThreadHaveKeyword",
];

/// `preview` of a snippet is at most this many octets (SNIP-04).
pub const SNIPPET_PREVIEW_OCTETS: usize = 255;

/// A parsed Email query: what to select and in which order. Ties always break by id, so the
/// order is stable (QRY-05).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmailQuery {
    pub filter: Option<Filter>,
    pub sort: Vec<EmailSort>,
    /// Keep only the first email of each thread, after filtering and sorting (EQ-01).
    pub collapse_threads: bool,
}

/// Where the window starts (QRY-06, QRY-07).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WindowStart {
    Position(i64),
    Anchor { id: String, offset: i64 },
}

/// Which part of the result to return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryWindow {
    pub start: WindowStart,
    /// How many ids at most (already capped by the server).
    pub limit: u64,
    /// Whether the total is wanted (it may be computed anyway).
    pub calculate_total: bool,
}

/// One window of a query result, all read from one snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryPage {
    /// The Email state the result belongs to.
    pub state: String,
    pub position: u64,
    pub ids: Vec<String>,
    pub total: Option<u64>,
}

/// The first index of a window (QRY-06, QRY-07), given what the store knows: `total` if it
/// counted, and the anchor's index if there is an anchor (`None` → `anchorNotFound`).
/// Returns `None` when the start needs the total and it was not given.
pub fn window_start(
    start: &WindowStart,
    total: Option<u64>,
    anchor_index: Option<u64>,
) -> Result<Option<u64>, MethodError> {
    Ok(match start {
        WindowStart::Position(p) if *p >= 0 => Some(*p as u64),
        WindowStart::Position(p) => total.map(|t| (t as i64 + p).max(0) as u64),
        WindowStart::Anchor { offset, .. } => {
            let index = anchor_index.ok_or(MethodError::AnchorNotFound)? as i64;
            Some((index + offset).max(0) as u64)
        }
    })
}

/// What the Email query methods need from the store.
pub trait EmailQueryStore {
    /// Runs `query` and returns the window, the total if asked or needed, and the Email state,
    /// all from one snapshot. Uses [`window_start`] for the start.
    fn email_query(
        &mut self,
        account_id: &str,
        query: &EmailQuery,
        window: &QueryWindow,
    ) -> Result<QueryPage, MethodError>;

    /// Builds what `query` reads that is built lazily (the header index), so that the query can
    /// then run inside a read snapshot: on SQLite a snapshot cannot write once another write
    /// has committed after it began.
    fn email_prepare(&mut self, account_id: &str, query: &EmailQuery) -> Result<(), MethodError>;

    /// Every Email id whose membership or position in `query` may have changed since `since`
    /// (RFC 8620 §5.6): emails touched since then; with `whole_threads`, every email of a thread
    /// touched since then, or of a touched email's thread.
    fn email_touched_since(
        &mut self,
        account_id: &str,
        since: i64,
        whole_threads: bool,
    ) -> Result<Vec<String>, MethodError>;

    /// Subject and searchable body text of the emails that exist among `ids`.
    fn email_snippet_sources(
        &mut self,
        account_id: &str,
        ids: &[String],
    ) -> Result<Vec<SnippetSource>, MethodError>;

    /// Whether each of `ids` matches `filter` (ids that do not exist are absent).
    fn email_matching(
        &mut self,
        account_id: &str,
        filter: &Filter,
        ids: &[String],
    ) -> Result<HashSet<String>, MethodError>;
}

/// The text a snippet is cut from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnippetSource {
    pub email_id: String,
    pub subject: String,
    /// The plain text of the body (HTML converted).
    pub body: String,
}

fn parse_email_query(
    filter: Option<&Value>,
    sort: &[Comparator],
    collapse_threads: bool,
    limits: &QueryLimits,
) -> Result<EmailQuery, MethodError> {
    Ok(EmailQuery {
        filter: filter.map(|f| Filter::parse(f, limits)).transpose()?,
        sort: parse_sort(sort, limits)?,
        collapse_threads,
    })
}

/// Reads Email's own query argument (`collapseThreads`), ends the arguments, and parses the
/// filter and sort the standard parser left as JSON (Email/query and Email/queryChanges alike).
fn read_email_query(
    call: &mut Call<'_>,
    filter: Option<&Value>,
    sort: &[Comparator],
) -> Result<EmailQuery, MethodError> {
    let collapse_threads = call.args.defaulted("collapseThreads", false)?;
    std::mem::take(&mut call.args).finish()?;
    parse_email_query(filter, sort, collapse_threads, &call.server.query_limits)
}

/// The largest window one query returns when the client sets no smaller `limit` (QRY-08).
pub fn max_query_limit(call: &Call<'_>) -> u64 {
    call.server.limits.max_objects_in_get.max(1000)
}

/// `Email/query` (RFC 8621 §4.4).
pub fn query<C: EmailQueryStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Result<Map<String, Value>, MethodError> {
    let q = standard::parse_query(call)?;
    let query = read_email_query(call, q.filter.as_ref(), &q.sort)?;
    let cap = max_query_limit(call);
    let (limit, capped) = match q.limit {
        Some(l) if l > cap => (cap, Some(cap)),
        Some(l) => (l, None),
        None => (cap, None),
    };
    let start = match q.anchor {
        Some(id) => WindowStart::Anchor {
            id,
            offset: q.anchor_offset,
        },
        None => WindowStart::Position(q.position),
    };
    // Ask for one more than the cap when the client gave no limit: the extra id tells us whether
    // the cap cut the result, which we then must report (QRY-08).
    let probe = q.limit.is_none();
    let window = QueryWindow {
        start,
        limit: if probe { limit + 1 } else { limit },
        calculate_total: q.calculate_total,
    };
    let account_id = call.account_id().to_owned();
    let mut page = ctx.email_query(&account_id, &query, &window)?;
    let mut limit_out = capped;
    if probe && page.ids.len() as u64 > limit {
        page.ids.truncate(limit as usize);
        limit_out = Some(limit);
    }
    let total = q
        .calculate_total
        .then(|| page.total.unwrap_or_default() as usize);
    Ok(standard::query_response(
        &account_id,
        &page.state,
        true,
        page.position as usize,
        page.ids,
        total,
        limit_out,
    ))
}

/// `Email/queryChanges` (RFC 8621 §4.5, EQ-08): every email touched since the query state is
/// reported removed and, if it still matches, added at its index. With `collapseThreads` or a
/// thread-keyword filter or sort, every email of a touched thread counts as touched, because its
/// place depends on its siblings.
pub fn query_changes<C: EmailQueryStore + ChangeLogStore>(
    ctx: &mut C,
    call: &mut Call<'_>,
) -> Result<Map<String, Value>, MethodError> {
    let q = standard::parse_query_changes(call)?;
    let query = read_email_query(call, q.filter.as_ref(), &q.sort)?;
    let since = q.since()?;
    let whole_threads = query.collapse_threads
        || query
            .filter
            .as_ref()
            .is_some_and(Filter::uses_thread_keywords)
        || query.sort.iter().any(|s| {
            matches!(
                s.key,
                SortKey::AllInThreadHaveKeyword(_) | SortKey::SomeInThreadHaveKeyword(_)
            )
        });
    let account_id = call.account_id().to_owned();
    // The touched ids, the results and newQueryState from one state (QCH-02): a write committed
    // between them would be in newQueryState but in neither `removed` nor `added`. Except with a
    // header condition: its index is built as the query runs (for emails that arrived since the
    // last header query), and a snapshot cannot write; such a query reads as it always did.
    if query.filter.as_ref().is_some_and(Filter::uses_header) {
        return touched_and_results(ctx, &account_id, &q, &query, since, whole_threads);
    }
    ctx.email_prepare(&account_id, &query)?;
    ctx.read_snapshot(|ctx| touched_and_results(ctx, &account_id, &q, &query, since, whole_threads))
}

/// [`query_changes`] once its arguments are read: the touched ids and the results, inside the
/// caller's read snapshot when it opened one.
fn touched_and_results<C: EmailQueryStore>(
    ctx: &mut C,
    account_id: &str,
    q: &standard::QueryChangesRequest,
    query: &EmailQuery,
    since: i64,
    whole_threads: bool,
) -> Result<Map<String, Value>, MethodError> {
    let account_id = account_id.to_owned();
    let touched = ctx.email_touched_since(&account_id, since, whole_threads)?;
    // RFC 8620 §5.6 `upToId`: when no email's place among the untouched ones can change (a sort
    // on immutable properties, threads not collapsed), the results after the client's last
    // cached id need not be read: a touched email beyond it is reported removed only.
    let immutable_sort = !whole_threads
        && !query
            .sort
            .iter()
            .any(|s| matches!(s.key, SortKey::HasKeyword(_)));
    let prefix = match &q.up_to_id {
        Some(up_to) if immutable_sort && !touched.contains(up_to) => {
            results_through(ctx, &account_id, query, up_to)?
        }
        // Without `upToId` only the touched emails' places are reported: the results need be
        // read no further than the last of them that still matches.
        None if immutable_sort => Some(results_through_touched(ctx, &account_id, query, &touched)?),
        _ => None,
    };
    let (page, total) = match prefix {
        Some(page) => {
            let total = match q.calculate_total {
                true => ctx.email_query(&account_id, query, &window(0, true))?.total,
                false => None,
            };
            (page, total.unwrap_or_default() as usize)
        }
        None => {
            let page = ctx.email_query(&account_id, query, &window(u64::MAX >> 11, false))?;
            let total = page.ids.len();
            (page, total)
        }
    };
    standard::query_changes_response(&account_id, q, &page.state, &touched, &page.ids, total)
}

/// The results of `query` from the first through `id`, read in growing windows so that no more
/// than about four times what precedes `id` is read; `None` if `id` is not among them.
fn results_through<C: EmailQueryStore>(
    ctx: &mut C,
    account_id: &str,
    query: &EmailQuery,
    id: &str,
) -> Result<Option<QueryPage>, MethodError> {
    let mut limit = 256;
    loop {
        let mut page = ctx.email_query(account_id, query, &window(limit, false))?;
        if let Some(i) = page.ids.iter().position(|x| x == id) {
            page.ids.truncate(i + 1);
            return Ok(Some(page));
        }
        if (page.ids.len() as u64) < limit {
            return Ok(None);
        }
        limit *= 4;
    }
}

/// The results of `query` from the first through the last of `touched` that still matches, read
/// in growing windows as in [`results_through`].
fn results_through_touched<C: EmailQueryStore>(
    ctx: &mut C,
    account_id: &str,
    query: &EmailQuery,
    touched: &[String],
) -> Result<QueryPage, MethodError> {
    let everything = Filter::Operator(Operator::And, Vec::new());
    let filter = query.filter.as_ref().unwrap_or(&everything);
    let wanted = ctx.email_matching(account_id, filter, touched)?;
    let mut limit = if wanted.is_empty() { 0 } else { 256 };
    loop {
        let mut page = ctx.email_query(account_id, query, &window(limit, false))?;
        let found = page.ids.iter().filter(|id| wanted.contains(*id)).count();
        if found == wanted.len() {
            let through = page
                .ids
                .iter()
                .rposition(|id| wanted.contains(id))
                .map_or(0, |i| i + 1);
            page.ids.truncate(through);
            return Ok(page);
        }
        if (page.ids.len() as u64) < limit {
            return Ok(page);
        }
        limit *= 4;
    }
}

/// The first `limit` results.
fn window(limit: u64, calculate_total: bool) -> QueryWindow {
    QueryWindow {
        start: WindowStart::Position(0),
        limit,
        calculate_total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_starts_follow_position_and_anchor_rules() {
        let p = |n| WindowStart::Position(n);
        assert_eq!(window_start(&p(3), None, None).unwrap(), Some(3));
        assert_eq!(window_start(&p(-2), Some(10), None).unwrap(), Some(8));
        assert_eq!(window_start(&p(-20), Some(10), None).unwrap(), Some(0));
        assert_eq!(window_start(&p(-2), None, None).unwrap(), None);
        let a = WindowStart::Anchor {
            id: "x".into(),
            offset: -5,
        };
        assert_eq!(window_start(&a, None, Some(2)).unwrap(), Some(0));
        assert_eq!(
            window_start(&a, None, None),
            Err(MethodError::AnchorNotFound)
        );
    }
}
