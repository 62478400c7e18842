//! `Foo/changes` from the change log, as pure logic (RFC 8620 §5.2).
//!
//! The store hands over the log rows of one data type after a position, in `(seq, object id)`
//! order; this module folds them into `created` / `updated` / `destroyed` and decides where a page
//! ends. A page ends between two writes (`seq`s), whose state string *is* that `seq`; only a single
//! write that changed more objects than `maxChanges` is split, at a state that names the write and
//! the last object the page holds (`"{seq}.{object id}"`, [`ChangesSince`]), from which the next
//! page resumes. Before, such a write (a mailbox of 520 emails destroyed) made every client's
//! `/changes` fail with `cannotCalculateChanges` and forced a full resynchronisation.

use std::collections::HashMap;

use crate::jmap::error::MethodError;

/// The change log as the standard methods read it: one log for every data type, named by its
/// wire name (RFC 8620 §5.2, §5.6).
pub trait ChangeLogStore {
    /// One page of changes to `data_type` after `since`.
    fn changes(
        &mut self,
        account_id: &str,
        data_type: &str,
        since: &ChangesSince,
        max_changes: usize,
    ) -> Result<ChangesPage, MethodError>;

    /// Every object of `data_type` created, updated or destroyed after `since`.
    fn touched_since(
        &mut self,
        account_id: &str,
        data_type: &str,
        since: i64,
    ) -> Result<Vec<String>, MethodError>;

    /// Runs `read` so that every read it makes sees one committed state: a state string must
    /// describe the data returned with it, or a client that syncs from it misses a change for
    /// good (RFC 8620 §5.1, §5.6).
    fn read_snapshot<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, MethodError>,
    ) -> Result<T, MethodError>
    where
        Self: Sized;
}

/// What one committed write did to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeOp {
    Created = 1,
    Updated = 2,
    Destroyed = 3,
    /// Updated only in server-computed counts (Mailbox counts: RFC 8621 §2.2 `updatedProperties`).
    CountsUpdated = 4,
}

impl ChangeOp {
    /// The value stored in the `op` column.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// Reads a stored `op` value.
    pub fn from_code(code: i32) -> Option<ChangeOp> {
        match code {
            1 => Some(ChangeOp::Created),
            2 => Some(ChangeOp::Updated),
            3 => Some(ChangeOp::Destroyed),
            4 => Some(ChangeOp::CountsUpdated),
            _ => None,
        }
    }

    /// Folds a later change of the same object into this one, within one write.
    /// `None` means the two cancel out (created, then destroyed).
    pub fn then(self, later: ChangeOp) -> Option<ChangeOp> {
        match (self, later) {
            (ChangeOp::Created, ChangeOp::Destroyed) => None,
            (ChangeOp::Created, _) => Some(ChangeOp::Created),
            (_, ChangeOp::Destroyed) | (ChangeOp::Destroyed, _) => Some(ChangeOp::Destroyed),
            (ChangeOp::Updated, _) | (_, ChangeOp::Updated) => Some(ChangeOp::Updated),
            (ChangeOp::CountsUpdated, _) => Some(ChangeOp::CountsUpdated),
        }
    }
}

/// One change-log row, as read for `/changes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeRow {
    pub seq: i64,
    pub object_id: String,
    pub op: ChangeOp,
}

/// Renders a change-log position as a state string. States are opaque to clients (RFC 8620 §1.2
/// does not constrain them); ours is the decimal `seq`.
pub fn state_string(seq: i64) -> String {
    let mut out = String::new();
    write_state_string(&mut out, seq);
    out
}

/// Appends [`state_string`]`(seq)` to `out` (push renders it for every connection).
pub fn write_state_string(out: &mut String, seq: i64) {
    use std::fmt::Write;
    let _ = write!(out, "{seq}");
}

/// Reads a state string back; `None` for anything we never issued.
pub fn parse_state(state: &str) -> Option<i64> {
    if state.is_empty() || state.len() > 19 || !state.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if state.len() > 1 && state.starts_with('0') {
        return None;
    }
    state.parse().ok()
}

/// Where a `/changes` page starts: after every write up to `seq`, or, when `after` is set, after
/// the writes before `seq` and the objects of write `seq` up to `after` (in id order).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangesSince {
    pub seq: i64,
    pub after: Option<String>,
}

impl ChangesSince {
    /// The state string of this position.
    pub fn state(&self) -> String {
        match &self.after {
            None => state_string(self.seq),
            Some(object) => format!("{}.{object}", state_string(self.seq)),
        }
    }

    /// Reads a state string that `/changes` may have issued; `None` for anything else.
    pub fn parse(state: &str) -> Option<ChangesSince> {
        match state.split_once('.') {
            None => Some(ChangesSince {
                seq: parse_state(state)?,
                after: None,
            }),
            Some((seq, object)) if !object.is_empty() => Some(ChangesSince {
                seq: parse_state(seq)?,
                after: Some(object.to_owned()),
            }),
            Some(_) => None,
        }
    }
}

/// One page of `/changes`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangesPage {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub destroyed: Vec<String>,
    /// The state the client continues from.
    pub new_seq: i64,
    /// Set when the page ends inside write `new_seq`: the last object of it the page holds.
    pub new_after: Option<String>,
    pub has_more_changes: bool,
    /// Every object in `updated` changed only in server-computed counts.
    pub only_counts_updated: bool,
}

/// Why `/changes` cannot answer: the client must resynchronise (`cannotCalculateChanges`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CannotCalculate {
    /// The state was trimmed from the log, or was never issued.
    #[error("the state is older than the change log reaches, or was never issued")]
    UnknownState,
}

/// Folds change-log rows into pages of at most `max_changes` objects.
pub struct ChangesBuilder {
    max_changes: usize,
    /// object id -> (first op, last op, every update was counts-only), in first-seen order via `order`.
    objects: HashMap<String, (ChangeOp, ChangeOp, bool)>,
    order: Vec<String>,
    group: Vec<ChangeRow>,
    last_complete_seq: Option<i64>,
    /// The page ends inside this write, after this object.
    split: Option<(i64, String)>,
    full: bool,
}

impl ChangesBuilder {
    /// Starts a page of at most `max_changes` (at least 1) objects.
    pub fn new(max_changes: usize) -> Self {
        ChangesBuilder {
            max_changes: max_changes.max(1),
            objects: HashMap::new(),
            order: Vec::new(),
            group: Vec::new(),
            last_complete_seq: None,
            split: None,
            full: false,
        }
    }

    /// Feeds the next row (rows arrive in `seq` order). Returns `false` once the page is full and
    /// further rows would be ignored.
    pub fn push(&mut self, row: ChangeRow) -> bool {
        if self.full {
            return false;
        }
        if let Some(first) = self.group.first()
            && first.seq != row.seq
        {
            self.close_group();
            if self.full {
                return false;
            }
        }
        self.group.push(row);
        true
    }

    fn close_group(&mut self) {
        let Some(seq) = self.group.first().map(|r| r.seq) else {
            return;
        };
        let new_objects = {
            let mut seen = std::collections::HashSet::new();
            self.group
                .iter()
                .filter(|r| !self.objects.contains_key(&r.object_id) && seen.insert(&r.object_id))
                .count()
        };
        if self.order.len() + new_objects > self.max_changes {
            self.full = true;
            if self.last_complete_seq.is_none() {
                // The page's first write alone is too large: it holds the first objects of it.
                // Within one write each object has one row, in id order.
                self.group.truncate(self.max_changes);
                self.split = self.group.last().map(|r| (seq, r.object_id.clone()));
                for row in std::mem::take(&mut self.group) {
                    let counts_only = row.op != ChangeOp::Updated;
                    self.objects
                        .insert(row.object_id.clone(), (row.op, row.op, counts_only));
                    self.order.push(row.object_id);
                }
            }
            return;
        }
        for row in std::mem::take(&mut self.group) {
            let counts_only = row.op != ChangeOp::Updated;
            match self.objects.get_mut(&row.object_id) {
                Some((_, last, only)) => {
                    *last = row.op;
                    *only &= counts_only;
                }
                None => {
                    self.objects
                        .insert(row.object_id.clone(), (row.op, row.op, counts_only));
                    self.order.push(row.object_id);
                }
            }
        }
        self.last_complete_seq = Some(seq);
    }

    /// Ends the page. `current_seq` is the type's current state, reported when every row fitted.
    pub fn finish(mut self, current_seq: i64) -> ChangesPage {
        if !self.full {
            self.close_group();
        }
        let (new_seq, new_after) = match (self.split.take(), self.last_complete_seq) {
            (Some((seq, object)), _) => (seq, Some(object)),
            (None, Some(seq)) if self.full => (seq, None),
            _ => (current_seq, None),
        };
        let mut page = ChangesPage {
            new_seq,
            new_after,
            has_more_changes: self.full,
            ..ChangesPage::default()
        };
        let mut only_counts = true;
        for id in self.order {
            let (first, last, counts) = self.objects[&id];
            // RFC 8620 §5.2: created-then-updated is "created", updated-then-destroyed is
            // "destroyed", created-then-destroyed may be left out entirely.
            match (first, last) {
                (ChangeOp::Created, ChangeOp::Destroyed) => {}
                (ChangeOp::Created, _) => page.created.push(id),
                (_, ChangeOp::Destroyed) => page.destroyed.push(id),
                _ => {
                    only_counts &= counts;
                    page.updated.push(id);
                }
            }
        }
        page.only_counts_updated = only_counts && !page.updated.is_empty();
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, id: &str, op: ChangeOp) -> ChangeRow {
        ChangeRow {
            seq,
            object_id: id.to_owned(),
            op,
        }
    }

    fn page(rows: Vec<ChangeRow>, max: usize, current: i64) -> ChangesPage {
        let mut b = ChangesBuilder::new(max);
        for r in rows {
            if !b.push(r) {
                break;
            }
        }
        b.finish(current)
    }

    #[test]
    fn state_strings_round_trip_and_reject_foreign_values() {
        for seq in [0, 1, 42, i64::MAX] {
            assert_eq!(parse_state(&state_string(seq)), Some(seq));
        }
        for bad in ["", "-1", "+1", "01", "abc", "1.0", "99999999999999999999"] {
            assert_eq!(parse_state(bad), None, "{bad}");
        }
    }

    #[test]
    fn created_then_updated_is_reported_as_created_only() {
        let p = page(
            vec![
                row(1, "a", ChangeOp::Created),
                row(2, "a", ChangeOp::Updated),
            ],
            10,
            2,
        );
        assert_eq!(p.created, vec!["a"]);
        assert!(p.updated.is_empty() && p.destroyed.is_empty());
        assert_eq!((p.new_seq, p.has_more_changes), (2, false));
    }

    #[test]
    fn created_then_destroyed_is_left_out_and_updated_then_destroyed_is_destroyed() {
        let p = page(
            vec![
                row(1, "a", ChangeOp::Created),
                row(1, "b", ChangeOp::Updated),
                row(2, "a", ChangeOp::Destroyed),
                row(3, "b", ChangeOp::Destroyed),
            ],
            10,
            3,
        );
        assert!(p.created.is_empty() && p.updated.is_empty());
        assert_eq!(p.destroyed, vec!["b"]);
    }

    #[test]
    fn a_page_ends_between_writes_and_reports_an_intermediate_state() {
        let rows = vec![
            row(1, "a", ChangeOp::Created),
            row(2, "b", ChangeOp::Created),
            row(2, "c", ChangeOp::Created),
            row(3, "d", ChangeOp::Created),
        ];
        let p = page(rows.clone(), 2, 3);
        assert_eq!(p.created, vec!["a"]);
        assert_eq!((p.new_seq, p.has_more_changes), (1, true));
        let p = page(rows, 3, 3);
        assert_eq!(p.created, vec!["a", "b", "c"]);
        assert_eq!((p.new_seq, p.has_more_changes), (2, true));
    }

    #[test]
    fn a_single_write_larger_than_max_changes_is_split_after_an_object() {
        let rows = vec![
            row(5, "a", ChangeOp::Created),
            row(5, "b", ChangeOp::Destroyed),
            row(5, "c", ChangeOp::Created),
            row(6, "d", ChangeOp::Created),
        ];
        let p = page(rows.clone(), 2, 6);
        assert_eq!(
            (p.created, p.destroyed),
            (vec!["a".to_owned()], vec!["b".to_owned()])
        );
        assert_eq!((p.new_seq, p.new_after.as_deref()), (5, Some("b")));
        assert!(p.has_more_changes);
        // The store resumes after (5, "b"): the rest of the write, then the next ones.
        let p = page(rows[2..].to_vec(), 2, 6);
        assert_eq!(p.created, vec!["c", "d"]);
        assert_eq!(
            (p.new_seq, p.new_after, p.has_more_changes),
            (6, None, false)
        );
        // A write that fits whole is not split.
        let p = page(rows, 3, 6);
        assert_eq!(p.created, vec!["a", "c"]);
        assert_eq!(
            (p.new_seq, p.new_after, p.has_more_changes),
            (5, None, true)
        );
    }

    #[test]
    fn split_states_round_trip_and_plain_states_stay_plain() {
        let split = ChangesSince {
            seq: 5,
            after: Some("e1.x".into()),
        };
        assert_eq!(split.state(), "5.e1.x");
        assert_eq!(ChangesSince::parse("5.e1.x"), Some(split));
        assert_eq!(
            ChangesSince::parse("5"),
            Some(ChangesSince {
                seq: 5,
                after: None
            })
        );
        for bad in ["5.", ".e1", "x.e1", "05.e1", ""] {
            assert_eq!(ChangesSince::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_object_changed_again_does_not_count_twice_toward_max_changes() {
        let rows = vec![
            row(1, "a", ChangeOp::Created),
            row(2, "a", ChangeOp::Updated),
            row(3, "a", ChangeOp::Updated),
        ];
        let p = page(rows, 1, 3);
        assert_eq!(
            (p.created.clone(), p.new_seq, p.has_more_changes),
            (vec!["a".to_owned()], 3, false)
        );
    }

    #[test]
    fn no_rows_means_the_current_state_and_nothing_more() {
        let p = page(vec![], 5, 7);
        assert_eq!(
            p,
            ChangesPage {
                new_seq: 7,
                ..Default::default()
            }
        );
    }

    #[test]
    fn ops_fold_within_one_write() {
        use ChangeOp::*;
        assert_eq!(Created.then(Updated), Some(Created));
        assert_eq!(Created.then(Destroyed), None);
        assert_eq!(Updated.then(Destroyed), Some(Destroyed));
        assert_eq!(Updated.then(Updated), Some(Updated));
        assert_eq!(CountsUpdated.then(Updated), Some(Updated));
        assert_eq!(CountsUpdated.then(CountsUpdated), Some(CountsUpdated));
        assert_eq!(Created.then(CountsUpdated), Some(Created));
    }

    #[test]
    fn a_page_knows_when_only_counts_were_updated() {
        let p = page(
            vec![
                row(1, "a", ChangeOp::CountsUpdated),
                row(2, "b", ChangeOp::Created),
            ],
            10,
            2,
        );
        assert!(p.only_counts_updated);
        let p = page(
            vec![
                row(1, "a", ChangeOp::CountsUpdated),
                row(2, "a", ChangeOp::Updated),
            ],
            10,
            2,
        );
        assert!(!p.only_counts_updated);
        let p = page(vec![row(1, "b", ChangeOp::Created)], 10, 1);
        assert!(!p.only_counts_updated);
    }
}
