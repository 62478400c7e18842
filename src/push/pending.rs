//! The states one push connection has yet to write: at most one per account and data type.
//!
//! The account hubs merge into it on every write and each StateChange the connection writes
//! empties it, so it keeps its room in between: emptying keeps the list's capacity, and data type
//! names are the static ones of [`DATA_TYPES`]. A write merged into a connection that has written
//! before allocates nothing (issue 13: each write reaches hundreds of connections).

use std::borrow::Cow;

use super::DATA_TYPES;

#[derive(Debug, Clone)]
struct PendingState {
    /// The account's place in the connection's account list (`slot::SlotState::progress`).
    account: usize,
    data_type: Cow<'static, str>,
    seq: i64,
}

/// What a connection has to write: a state per (account, data type).
#[derive(Debug, Default)]
pub struct PendingStates {
    states: Vec<PendingState>,
}

impl PendingStates {
    pub fn is_empty(&self) -> bool {
        self.states.is_empty()
    }

    /// How many (account, type) states wait.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Raises the state of `data_type` in account number `account` to `seq` (states only move
    /// forward: a write published late does not move one back).
    pub fn merge(&mut self, account: usize, data_type: &str, seq: i64) {
        match self
            .states
            .iter_mut()
            .find(|s| s.account == account && s.data_type == data_type)
        {
            Some(state) => state.seq = state.seq.max(seq),
            None => self.states.push(PendingState {
                account,
                data_type: static_name(data_type),
                seq,
            }),
        }
    }

    /// Drops the states of account number `account` at or below `seq`.
    pub fn drop_up_to(&mut self, account: usize, seq: i64) {
        self.states.retain(|s| s.account != account || s.seq > seq);
    }

    /// An account was inserted at `index` of the connection's account list: those after it moved
    /// up by one.
    pub fn account_inserted(&mut self, index: usize) {
        for s in &mut self.states {
            if s.account >= index {
                s.account += 1;
            }
        }
    }

    /// Empties the list, keeping its room.
    pub fn clear(&mut self) {
        self.states.clear();
    }

    /// Puts the states in account, then type order: the order a StateChange lists them in.
    pub fn sort(&mut self) {
        self.states
            .sort_unstable_by(|a, b| (a.account, &a.data_type).cmp(&(b.account, &b.data_type)));
    }

    /// Each (account number, data type, state), in the list's order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &str, i64)> {
        self.states
            .iter()
            .map(|s| (s.account, s.data_type.as_ref(), s.seq))
    }
}

/// The static name of a known data type, so that keeping it costs no allocation.
fn static_name(data_type: &str) -> Cow<'static, str> {
    DATA_TYPES
        .iter()
        .find(|t| **t == data_type)
        .map_or_else(|| Cow::Owned(data_type.to_owned()), |t| Cow::Borrowed(*t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(p: &PendingStates) -> Vec<(usize, String, i64)> {
        p.iter().map(|(a, t, s)| (a, t.to_owned(), s)).collect()
    }

    #[test]
    fn one_state_per_account_and_type_moves_only_forward_and_sorts_by_account_then_type() {
        let mut p = PendingStates::default();
        p.merge(1, "Mailbox", 5);
        p.merge(0, "Email", 3);
        p.merge(1, "Mailbox", 4);
        p.merge(1, "Email", 6);
        p.merge(0, "SomethingNew", 2);
        assert_eq!(p.len(), 4);
        p.sort();
        assert_eq!(
            listed(&p),
            vec![
                (0, "Email".into(), 3),
                (0, "SomethingNew".into(), 2),
                (1, "Email".into(), 6),
                (1, "Mailbox".into(), 5),
            ]
        );
        p.drop_up_to(1, 5);
        p.account_inserted(1);
        assert_eq!(
            listed(&p),
            vec![
                (0, "Email".into(), 3),
                (0, "SomethingNew".into(), 2),
                (2, "Email".into(), 6)
            ]
        );
        let room = p.states.capacity();
        p.clear();
        assert!(p.is_empty());
        assert_eq!(p.states.capacity(), room, "emptying keeps the room");
    }

    #[test]
    fn known_data_types_are_kept_by_their_static_name() {
        assert!(matches!(static_name("Mailbox"), Cow::Borrowed("Mailbox")));
        assert!(matches!(static_name("Calendar"), Cow::Owned(ref s) if s == "Calendar"));
    }
}
