//! The spool's in-memory index of its entries and the eviction policy.
//!
//! [`Index`] knows each entry's value and size, not its files: [`Index::plan_eviction`] decides
//! which entries to evict for a new one, or why the new one is refused ([`RejectReason`]), and the
//! spool carries the plan out on disk. Entries are evicted lowest value first (oldest first among
//! equals), and only entries valued strictly lower than the new one.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

/// Why a put stored nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RejectReason {
    /// Making room would evict entries valued as high as the new frame or higher.
    LowerValue,
    /// The entry alone is larger than `max_bytes`.
    TooLarge,
    /// The filesystem has too little space left above `min_free_bytes`, even after evicting
    /// every lower-valued entry.
    DiskSpace,
}

/// What the index holds of an entry.
#[derive(Debug, Clone, Copy)]
pub(super) struct Entry {
    /// [`value_key`] of the record's `scores.value`.
    pub(super) key: u32,
    /// Size of the entry's files (JPEG + record).
    pub(super) bytes: u64,
}

/// Order-preserving map of a value to u32 (NaN ranks lowest).
pub(super) fn value_key(value: f32) -> u32 {
    let value = if value.is_nan() {
        f32::NEG_INFINITY
    } else {
        value
    };
    let bits = value.to_bits();
    if bits & 0x8000_0000 != 0 {
        !bits
    } else {
        bits | 0x8000_0000
    }
}

/// The entries by id (which is also age) and by value, with their total size.
#[derive(Debug, Default)]
pub(super) struct Index {
    entries: BTreeMap<u64, Entry>,
    by_value: BTreeSet<(u32, u64)>,
    bytes: u64,
}

impl Index {
    /// Adds entry `id`.
    pub(super) fn insert(&mut self, id: u64, entry: Entry) {
        self.bytes += entry.bytes;
        self.by_value.insert((entry.key, id));
        self.entries.insert(id, entry);
    }

    /// Drops entry `id`, if present.
    pub(super) fn forget(&mut self, id: u64) {
        if let Some(entry) = self.entries.remove(&id) {
            self.bytes -= entry.bytes;
            self.by_value.remove(&(entry.key, id));
        }
    }

    /// True if entry `id` is present.
    pub(super) fn contains(&self, id: u64) -> bool {
        self.entries.contains_key(&id)
    }

    /// Number of entries.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Sum of the entries' sizes.
    pub(super) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The highest id present.
    pub(super) fn newest(&self) -> Option<u64> {
        self.entries.keys().next_back().copied()
    }

    /// Ids of the entries, oldest first.
    pub(super) fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.entries.keys().copied()
    }

    /// Ids of the entries, highest value first (equal values: newest first): the upload order.
    pub(super) fn ids_by_value(&self) -> impl Iterator<Item = u64> + '_ {
        self.by_value.iter().rev().map(|&(_, id)| id)
    }

    /// The entries to evict so that a new entry of `new_bytes` valued `new_key` fits, lowest
    /// value (then oldest) first.
    ///
    /// The bound is `max_bytes`; with `min_free_bytes > 0` also what the index holds plus what
    /// the filesystem has `available()` above `min_free_bytes` (`available` is only called then,
    /// and after the new entry passed the `max_bytes` check; `None` means unknown: no disk bound).
    pub(super) fn plan_eviction(
        &self,
        new_key: u32,
        new_bytes: u64,
        max_bytes: u64,
        min_free_bytes: u64,
        available: impl FnOnce() -> Option<u64>,
    ) -> Result<Vec<u64>, RejectReason> {
        let mut max = max_bytes;
        if new_bytes > max {
            return Err(RejectReason::TooLarge);
        }
        // The disk bound: what the spool holds plus what it may still take from the filesystem.
        let mut disk_bound = false;
        if min_free_bytes > 0 {
            if let Some(available) = available() {
                let bound = self
                    .bytes
                    .saturating_add(available.saturating_sub(min_free_bytes));
                if bound < max {
                    max = bound;
                    disk_bound = true;
                }
            }
        }
        let refuse = if disk_bound {
            RejectReason::DiskSpace
        } else {
            RejectReason::LowerValue
        };
        if new_bytes > max {
            return Err(RejectReason::DiskSpace);
        }
        let mut excess = (self.bytes + new_bytes).saturating_sub(max);
        let mut victims = Vec::new();
        for &(key, id) in &self.by_value {
            if excess == 0 {
                break;
            }
            if key >= new_key {
                return Err(refuse);
            }
            victims.push(id);
            excess = excess.saturating_sub(self.entries[&id].bytes);
        }
        Ok(victims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_key_orders_like_f32() {
        let vals = [
            f32::NEG_INFINITY,
            -2.0,
            -0.5,
            0.0,
            1e-6,
            0.5,
            3.0,
            f32::INFINITY,
        ];
        for pair in vals.windows(2) {
            assert!(value_key(pair[0]) < value_key(pair[1]), "{pair:?}");
        }
        assert_eq!(value_key(f32::NAN), value_key(f32::NEG_INFINITY));
    }

    /// An index of 100-byte entries valued `values`, ids from 1.
    fn index(values: &[f32]) -> Index {
        let mut index = Index::default();
        for (id, &v) in (1..).zip(values) {
            let entry = Entry {
                key: value_key(v),
                bytes: 100,
            };
            index.insert(id, entry);
        }
        index
    }

    #[test]
    fn evicts_lowest_value_then_oldest_and_only_lower_values() {
        let index = index(&[0.5, 0.2, 0.8, 0.2]);
        let plan = |value: f32, max_bytes: u64| {
            index.plan_eviction(value_key(value), 100, max_bytes, 0, || unreachable!())
        };
        assert_eq!(plan(0.1, 500), Ok(vec![]));
        assert_eq!(plan(0.6, 400), Ok(vec![2]));
        assert_eq!(plan(0.6, 300), Ok(vec![2, 4]));
        assert_eq!(plan(0.6, 200), Ok(vec![2, 4, 1]));
        assert_eq!(plan(0.6, 100), Err(RejectReason::LowerValue));
        assert_eq!(plan(0.2, 400), Err(RejectReason::LowerValue), "equal stays");
        assert_eq!(plan(1.0, 99), Err(RejectReason::TooLarge));

        let mut index = index;
        index.forget(2);
        index.forget(2);
        assert_eq!(
            (index.len(), index.bytes(), index.newest()),
            (3, 300, Some(4))
        );
        assert_eq!(index.ids().collect::<Vec<_>>(), vec![1, 3, 4]);
        assert!(!index.contains(2) && index.contains(4));
    }

    #[test]
    fn free_space_bounds_below_max_bytes() {
        let index = index(&[0.5, 0.6]);
        let key = value_key(0.9);
        // 150 available above the floor: room for one more without evicting.
        let plan = index.plan_eviction(key, 100, 1000, 50, || Some(200));
        assert_eq!(plan, Ok(vec![]));
        // 50 above the floor: the lowest goes.
        assert_eq!(
            index.plan_eviction(key, 100, 1000, 50, || Some(100)),
            Ok(vec![1])
        );
        // Making room would take a better entry: refused for the disk, not the value bound.
        let low = value_key(0.55);
        let plan = index.plan_eviction(low, 150, 1000, 50, || Some(50));
        assert_eq!(plan, Err(RejectReason::DiskSpace));
        // Unknown free space or no floor: only max_bytes bounds.
        assert_eq!(index.plan_eviction(key, 100, 1000, 50, || None), Ok(vec![]));
        assert_eq!(
            index.plan_eviction(key, 100, 1000, 0, || Some(0)),
            Ok(vec![])
        );
        // Not even an empty spool fits it.
        let plan = Index::default().plan_eviction(key, 100, 1000, 50, || Some(120));
        assert_eq!(plan, Err(RejectReason::DiskSpace));
    }
}
