//! The coalescing slot of one push connection.
//!
//! A connection that cannot keep up must cost a fixed amount of memory and then get the newest
//! states, never a backlog (../shared/DESIGN.md). A mailbox cannot do that: a WebSocket actor whose
//! client stops reading is not polled at all (actix-web #2441, ../shared/STACK.md pitfall 15), so
//! messages would pile up, or be dropped and lost. Instead the account hubs merge each change into
//! the connection's slot under a short lock (at most one state per account and type), and raise
//! the session's `WakeSignal` only when the slot goes from idle to pending. The session takes
//! everything at once when it can write.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use super::pending::PendingStates;
use super::position::{Changed, Positions};

/// Which data types a connection wants pushed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TypeFilter {
    /// Nothing (a WebSocket before `WebSocketPushEnable` or after `WebSocketPushDisable`).
    Off,
    /// Every type.
    All,
    /// Only these types; unknown names simply never match (checklist WS-14).
    Only(BTreeSet<String>),
}

impl TypeFilter {
    fn accepts(&self, data_type: &str) -> bool {
        match self {
            TypeFilter::Off => false,
            TypeFilter::All => true,
            TypeFilter::Only(types) => types.contains(data_type),
        }
    }
}

/// How much a slot holds, for limits and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotStats {
    /// (account, type) states waiting to be written now.
    pub pending: usize,
    /// The most (account, type) states ever waiting at once.
    pub high_water: usize,
    /// Changes offered to this slot since it was created.
    pub offered: u64,
}

/// Out-of-order seqs remembered per account before the position gives up waiting for a gap.
const MAX_AHEAD: usize = 64;

/// How far a stream has seen an account's writes.
///
/// Committed writes of an account have consecutive seqs, but dispatcher threads publish them
/// independently, so seq 7 may arrive after seq 8. The position handed to the client (in
/// `pushState` / the event id) is the highest seq up to which *every* write was seen, so a client
/// resuming from it never skips a write that was still on its way. Should a write never arrive
/// (dropped on overload), the position moves on once `MAX_AHEAD` later ones have.
#[derive(Debug, Default)]
struct Progress {
    /// Every write up to here was seen (or covered by the baseline read from the store).
    contiguous: Option<i64>,
    /// Seen seqs above `contiguous`.
    ahead: BTreeSet<i64>,
    /// The account's position read from the store for the stream's baseline: what the client
    /// was given (or told it missed) covers every write up to here.
    baseline: Option<i64>,
}

impl Progress {
    fn see(&mut self, seq: i64) {
        match self.contiguous {
            Some(c) if seq <= c => return,
            Some(_) => {}
            None if self.ahead.len() >= MAX_AHEAD => {
                // Before the baseline (a WebSocket that never enables push sees every write of
                // its accounts): only the newest writes can still matter, the older ones the
                // baseline's store read covers; memory stays bounded.
                self.ahead.pop_first();
            }
            None => {}
        }
        self.ahead.insert(seq);
        self.settle();
    }

    /// Whether the baseline already covered the write at `seq` (a publication that reached the
    /// hub after the store was read).
    fn covers(&self, seq: i64) -> bool {
        self.baseline.is_some_and(|b| seq <= b)
    }

    fn cover(&mut self, seq: i64) {
        self.contiguous = Some(self.contiguous.map_or(seq, |c| c.max(seq)));
        self.settle();
    }

    fn settle(&mut self) {
        let Some(mut c) = self.contiguous else {
            return;
        };
        self.ahead.retain(|s| *s > c);
        while self.ahead.remove(&(c + 1)) {
            c += 1;
        }
        if self.ahead.len() > MAX_AHEAD {
            c = self.ahead.last().copied().unwrap_or(c);
            self.ahead.clear();
        }
        self.contiguous = Some(c);
    }
}

#[derive(Debug)]
struct SlotState {
    filter: TypeFilter,
    /// The stream's starting position is known; before that nothing is handed out.
    ready: bool,
    /// Per account the connection follows, in account order (a StateChange's and a position's
    /// order). A list, not a map: most users read one to a few accounts, and a map's first node
    /// costs ~700 bytes on every idle connection.
    progress: Vec<(String, Progress)>,
    /// Accounts by their place in `progress`.
    pending: PendingStates,
    /// The session was woken and has not taken since.
    wake_sent: bool,
    /// The connection must close, and why.
    closed: Option<Closing>,
    stats: SlotStats,
    /// Commit time (ms) of the oldest write merged into what is pending: the push latency
    /// metric measures from it.
    oldest_commit_ms: Option<i64>,
}

impl SlotState {
    /// The place of `account` in `progress`, added when new.
    fn account_index(&mut self, account: &str) -> usize {
        match self
            .progress
            .binary_search_by(|(a, _)| a.as_str().cmp(account))
        {
            Ok(i) => i,
            Err(i) => {
                self.progress
                    .insert(i, (account.to_owned(), Progress::default()));
                self.pending.account_inserted(i);
                i
            }
        }
    }

    fn count_pending(&mut self) {
        self.stats.pending = self.pending.len();
        self.stats.high_water = self.stats.high_water.max(self.stats.pending);
    }
}

/// What a [`ChangeSlot::take_with`] hands out, borrowed from the slot: the pending states and the
/// stream position that includes them.
pub struct Taken<'a> {
    pending: &'a PendingStates,
    progress: &'a [(String, Progress)],
}

impl Taken<'_> {
    /// Each (account, data type, state), in account then type order.
    pub fn changed(&self) -> impl Iterator<Item = (&str, &str, i64)> {
        // Every pending state's account is in `progress` (`SlotState::account_index`); `get`
        // rather than indexing all the same: a worker thread serves thousands of connections.
        self.pending
            .iter()
            .filter_map(|(account, t, seq)| Some((self.progress.get(account)?.0.as_str(), t, seq)))
    }

    /// Each (account, position) of the stream, in account order.
    pub fn positions(&self) -> impl Iterator<Item = (&str, i64)> {
        self.progress
            .iter()
            .filter_map(|(account, p)| Some((account.as_str(), p.contiguous?)))
    }
}

/// Why a push connection must close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closing {
    /// Nothing left to follow (access revoked), or its credentials no longer hold.
    AccessRevoked,
    /// The server is stopping: the client reconnects, to another node or once this one is back,
    /// and resumes from its position.
    ServerStopping,
}

/// One connection's pending changes: at most one state per account and type.
#[derive(Debug)]
pub struct ChangeSlot {
    state: Mutex<SlotState>,
    /// The metrics of the connection's transport.
    series: crate::metrics::PushSeries,
}

impl ChangeSlot {
    pub fn new(filter: TypeFilter) -> Self {
        Self::for_transport(filter, "other")
    }

    /// A slot of a connection of `transport` (`crate::metrics::WEBSOCKET`, `EVENTSOURCE`).
    pub fn for_transport(filter: TypeFilter, transport: &'static str) -> Self {
        ChangeSlot {
            series: crate::metrics::PushSeries::of(transport),
            state: Mutex::new(SlotState {
                filter,
                ready: false,
                progress: Default::default(),
                pending: PendingStates::default(),
                wake_sent: false,
                closed: None,
                stats: SlotStats::default(),
                oldest_commit_ms: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hub side: merges a committed write (`account` now at `seq`, `types` changed). Returns true
    /// when the owner must be woken (the slot just became pending).
    pub fn offer(&self, account: &str, seq: i64, types: &[String]) -> bool {
        self.offer_at(account, seq, types, None)
    }

    /// [`ChangeSlot::offer`] of a write that committed at `committed_at_ms`.
    pub fn offer_at(
        &self,
        account: &str,
        seq: i64,
        types: &[String],
        committed_at_ms: Option<i64>,
    ) -> bool {
        // Runs for every connection of the account on every write: nothing is allocated but the
        // first time an account or a type is seen (`PendingStates`).
        let mut s = self.lock();
        let s = &mut *s;
        s.stats.offered += 1;
        let index = s.account_index(account);
        s.progress[index].1.see(seq);
        if s.progress[index].1.covers(seq) || !types.iter().any(|t| s.filter.accepts(t)) {
            return false;
        }
        if s.ready && !s.pending.is_empty() {
            // Goes out in the StateChange already waiting, not in one of its own.
            self.series.merged();
        }
        if let Some(at) = committed_at_ms {
            s.oldest_commit_ms = Some(s.oldest_commit_ms.map_or(at, |o| o.min(at)));
        }
        for t in types.iter().filter(|t| s.filter.accepts(t)) {
            s.pending.merge(index, t, seq);
        }
        s.count_pending();
        if s.ready && !s.wake_sent {
            s.wake_sent = true;
            return true;
        }
        false
    }

    /// Session side: changes the type filter. Turning push off drops what is pending; any change
    /// waits for a new [`ChangeSlot::baseline`] before anything is handed out.
    pub fn set_filter(&self, filter: TypeFilter) {
        let mut s = self.lock();
        s.ready = false;
        s.pending.clear();
        s.stats.pending = 0;
        s.filter = filter;
        // The session is here, so no wake is outstanding: with what was pending gone, the next
        // change must wake it again, or the connection would stay silent for good.
        s.wake_sent = false;
    }

    /// Session side: installs the stream's starting point, read from the store after subscribing:
    /// each account's newest seq and the changes the client missed (filtered). Changes that
    /// arrived meanwhile are kept, except, when the client `resumed` from a position of its own
    /// (`pushState`, `Last-Event-ID`), those at or below the store's: `missed` already holds
    /// what the client lacks up to there, and the rest it has (sent again, a publication that
    /// reached the hub late was a second StateChange for a state the client already knew).
    /// Returns true when something is pending.
    pub fn baseline(&self, positions: Positions, missed: Changed, resumed: bool) -> bool {
        let mut s = self.lock();
        let s = &mut *s;
        for (account, seq) in positions {
            let index = s.account_index(&account);
            if resumed {
                s.pending.drop_up_to(index, seq);
            }
            let progress = &mut s.progress[index].1;
            progress.cover(seq);
            progress.baseline = Some(progress.baseline.map_or(seq, |b| b.max(seq)));
        }
        for (account, types) in missed {
            let index = s.account_index(&account);
            for (t, seq) in types {
                if s.filter.accepts(&t) {
                    s.pending.merge(index, &t, seq);
                }
            }
        }
        s.count_pending();
        s.ready = true;
        s.wake_sent = false;
        !s.pending.is_empty()
    }

    /// Registry side: the connection's user was given access to `account` while the stream
    /// was open. The stream follows it from `seq` (read after the hub took the connection in,
    /// so no later write is missed), and the client is told every type's current `states`: the
    /// whole account is news to it. Returns true when the owner must be woken.
    pub fn grant(&self, account: &str, seq: i64, states: &BTreeMap<String, i64>) -> bool {
        let mut s = self.lock();
        let s = &mut *s;
        let index = s.account_index(account);
        s.progress[index].1.cover(seq);
        for (t, state) in states {
            if s.filter.accepts(t) {
                s.pending.merge(index, t, *state);
            }
        }
        s.count_pending();
        if s.ready && !s.wake_sent && !s.pending.is_empty() {
            s.wake_sent = true;
            return true;
        }
        false
    }

    /// Session side: hands every pending change and the stream position that includes them to
    /// `write` (which renders them; it runs under the slot's lock, so it should be quick), then
    /// empties the slot and counts the StateChange as sent (with its latency from the commit of
    /// its oldest write): the session writes what `write` returns at once. `None` when nothing is
    /// pending (or the starting point is not known yet).
    pub fn take_with<R>(&self, write: impl FnOnce(&Taken<'_>) -> R) -> Option<R> {
        let (written, oldest_commit_ms) = {
            let mut s = self.lock();
            let s = &mut *s;
            s.wake_sent = false;
            if !s.ready || s.pending.is_empty() {
                return None;
            }
            s.stats.pending = 0;
            s.pending.sort();
            let written = write(&Taken {
                pending: &s.pending,
                progress: &s.progress,
            });
            s.pending.clear();
            (written, s.oldest_commit_ms.take())
        };
        self.series.sent(oldest_commit_ms);
        Some(written)
    }

    /// [`ChangeSlot::take_with`] as maps, for tests.
    #[cfg(test)]
    pub fn take(&self) -> Option<(Changed, Positions)> {
        self.take_with(|taken| {
            let mut changed = Changed::new();
            for (account, t, seq) in taken.changed() {
                changed
                    .entry(account.to_owned())
                    .or_default()
                    .insert(t.to_owned(), seq);
            }
            let positions = taken
                .positions()
                .map(|(a, seq)| (a.to_owned(), seq))
                .collect();
            (changed, positions)
        })
    }

    /// Marks the connection as one that must close (the first reason given stays).
    pub fn close(&self, why: Closing) {
        self.lock().closed.get_or_insert(why);
    }

    /// Whether the connection must close, and why.
    pub fn closing(&self) -> Option<Closing> {
        self.lock().closed
    }

    /// Whether changes wait to be taken.
    pub fn has_pending(&self) -> bool {
        let s = self.lock();
        s.ready && !s.pending.is_empty()
    }

    pub fn stats(&self) -> SlotStats {
        self.lock().stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ten_thousand_changes_coalesce_into_one_state_per_account_and_type() {
        let slot = ChangeSlot::new(TypeFilter::All);
        assert!(!slot.baseline(Positions::from([("a".into(), 0)]), Changed::new(), false));
        let mut wakes = 0;
        for seq in 1..=10_000 {
            let t = if seq % 2 == 0 { "Mailbox" } else { "Email" };
            if slot.offer("a", seq, &types(&[t, "Thread"])) {
                wakes += 1;
            }
        }
        assert_eq!(wakes, 1, "one wake until the session takes");
        let stats = slot.stats();
        assert_eq!(stats.pending, 3);
        assert_eq!(stats.high_water, 3);
        let (changed, positions) = slot.take().unwrap();
        assert_eq!(changed["a"]["Mailbox"], 10_000);
        assert_eq!(changed["a"]["Email"], 9_999);
        assert_eq!(changed["a"]["Thread"], 10_000);
        assert_eq!(positions["a"], 10_000);
        assert!(slot.take().is_none());
        assert!(slot.offer("a", 10_001, &types(&["Mailbox"])));
    }

    #[test]
    fn a_slot_without_a_baseline_remembers_a_bounded_number_of_writes() {
        // A WebSocket used only for requests never enables push, yet follows its accounts.
        let slot = ChangeSlot::new(TypeFilter::Off);
        for seq in 1..=10_000 {
            assert!(!slot.offer("a", seq, &types(&["Mailbox"])));
        }
        assert!(slot.lock().progress[0].1.ahead.len() <= MAX_AHEAD);
        slot.set_filter(TypeFilter::All);
        assert!(!slot.baseline(
            Positions::from([("a".into(), 9_990)]),
            Changed::new(),
            false
        ));
        assert!(slot.offer("a", 10_001, &types(&["Mailbox"])));
        let (_, positions) = slot.take().unwrap();
        assert_eq!(
            positions["a"], 10_001,
            "writes seen before the baseline still count"
        );
    }

    #[test]
    fn a_new_filter_while_a_wake_is_outstanding_lets_the_next_change_wake_the_session() {
        // WS-11: a second WebSocketPushEnable replaces the first.
        let slot = ChangeSlot::new(TypeFilter::All);
        slot.baseline(Positions::from([("a".into(), 0)]), Changed::new(), false);
        assert!(slot.offer("a", 1, &types(&["Mailbox"])));
        slot.set_filter(TypeFilter::All);
        assert!(!slot.baseline(Positions::from([("a".into(), 1)]), Changed::new(), true));
        assert!(slot.offer("a", 2, &types(&["Mailbox"])), "woken again");
    }

    #[test]
    fn a_publication_the_baseline_covered_is_not_pushed_again() {
        let slot = ChangeSlot::new(TypeFilter::All);
        let missed = Changed::from([("a".into(), [("Email".to_string(), 5)].into())]);
        assert!(slot.baseline(Positions::from([("a".into(), 5)]), missed, true));
        assert!(slot.take().is_some());
        assert!(
            !slot.offer("a", 5, &types(&["Email"])),
            "reached the hub late"
        );
        assert!(!slot.offer("a", 4, &types(&["Email"])));
        assert!(slot.take().is_none());
        assert!(slot.offer("a", 6, &types(&["Email"])));
    }

    #[test]
    fn an_account_granted_later_is_told_in_full_and_followed_from_its_position() {
        let slot = ChangeSlot::new(TypeFilter::Only(["Mailbox".to_string()].into()));
        slot.baseline(Positions::from([("a".into(), 1)]), Changed::new(), false);
        // A write of the new account reached the hub before its position was read.
        slot.offer("b", 7, &types(&["Mailbox"]));
        slot.take();
        let states = [("Mailbox".to_string(), 6), ("Email".to_string(), 7)].into();
        assert!(slot.grant("b", 7, &states));
        let (changed, positions) = slot.take().unwrap();
        assert_eq!(
            changed,
            Changed::from([("b".into(), [("Mailbox".to_string(), 6)].into())])
        );
        assert_eq!(
            positions,
            Positions::from([("a".into(), 1), ("b".into(), 7)])
        );
        assert!(slot.offer("b", 8, &types(&["Mailbox"])));
        assert_eq!(slot.take().unwrap().1["b"], 8);
    }

    #[test]
    fn nothing_is_handed_out_before_the_baseline_and_late_arrivals_keep_the_newest_state() {
        let slot = ChangeSlot::new(TypeFilter::Only(["Mailbox".to_string()].into()));
        assert!(!slot.offer("a", 5, &types(&["Mailbox", "Email"])));
        assert!(slot.take().is_none());
        let missed = Changed::from([("a".into(), [("Mailbox".to_string(), 4)].into())]);
        assert!(slot.baseline(
            Positions::from([("a".into(), 4), ("b".into(), 2)]),
            missed,
            false
        ));
        let (changed, positions) = slot.take().unwrap();
        assert_eq!(changed["a"].len(), 1, "Email is filtered out");
        assert_eq!(changed["a"]["Mailbox"], 5);
        assert_eq!(
            positions,
            Positions::from([("a".into(), 5), ("b".into(), 2)])
        );
    }

    #[test]
    fn a_resumed_stream_drops_what_arrived_meanwhile_at_or_below_the_store_position() {
        let slot = ChangeSlot::new(TypeFilter::All);
        // Published late: seq 3 (the client resumes at 3) and seq 4 (after the store's read).
        slot.offer("a", 3, &types(&["Mailbox"]));
        slot.offer("a", 4, &types(&["Email"]));
        assert!(slot.baseline(Positions::from([("a".into(), 3)]), Changed::new(), true));
        let (changed, _) = slot.take().unwrap();
        assert_eq!(
            changed["a"],
            [("Email".to_string(), 4)].into(),
            "seq 3 is not sent again"
        );
        // A fresh stream keeps it: its client's state is not known to the server.
        let fresh = ChangeSlot::new(TypeFilter::All);
        fresh.offer("a", 3, &types(&["Mailbox"]));
        assert!(fresh.baseline(Positions::from([("a".into(), 3)]), Changed::new(), false));
    }

    #[test]
    fn the_position_waits_for_a_write_that_arrives_out_of_order() {
        let slot = ChangeSlot::new(TypeFilter::All);
        slot.baseline(Positions::from([("a".into(), 6)]), Changed::new(), false);
        slot.offer("a", 8, &types(&["Email"]));
        let (changed, positions) = slot.take().unwrap();
        assert_eq!(changed["a"]["Email"], 8);
        assert_eq!(positions["a"], 6, "seq 7 is still on its way");
        slot.offer("a", 7, &types(&["Mailbox"]));
        let (changed, positions) = slot.take().unwrap();
        assert_eq!(changed["a"]["Mailbox"], 7);
        assert_eq!(positions["a"], 8);
        // A write that never arrives holds the position back only so long.
        for seq in 10..10 + MAX_AHEAD as i64 + 1 {
            slot.offer("a", seq, &types(&["Email"]));
        }
        let (_, positions) = slot.take().unwrap();
        assert_eq!(positions["a"], 10 + MAX_AHEAD as i64);
    }

    #[test]
    fn an_account_seen_later_but_named_earlier_keeps_each_pending_state_with_its_account() {
        let slot = ChangeSlot::new(TypeFilter::All);
        slot.baseline(Positions::from([("m".into(), 1)]), Changed::new(), false);
        slot.offer("m", 2, &types(&["Email"]));
        slot.offer("c", 7, &types(&["Mailbox"]));
        slot.offer("x", 3, &types(&["Thread"]));
        let (changed, positions) = slot.take().unwrap();
        assert_eq!(
            changed,
            Changed::from([
                ("c".into(), [("Mailbox".to_string(), 7)].into()),
                ("m".into(), [("Email".to_string(), 2)].into()),
                ("x".into(), [("Thread".to_string(), 3)].into()),
            ])
        );
        assert_eq!(
            positions,
            Positions::from([("m".into(), 2)]),
            "c and x have no start yet"
        );
    }

    #[test]
    fn a_filtered_out_change_moves_the_position_without_waking() {
        let slot = ChangeSlot::new(TypeFilter::Off);
        slot.baseline(Positions::from([("a".into(), 2)]), Changed::new(), false);
        assert!(!slot.offer("a", 3, &types(&["Mailbox"])));
        slot.set_filter(TypeFilter::All);
        assert!(
            !slot.offer("a", 4, &types(&["Mailbox"])),
            "not ready again yet"
        );
        slot.baseline(Positions::new(), Changed::new(), false);
        let (_, positions) = slot.take().unwrap();
        assert_eq!(positions["a"], 4);
    }
}
