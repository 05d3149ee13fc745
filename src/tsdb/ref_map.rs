//! The head's series by ref: a map for the append path, which looks a series up for every
//! sample it takes (twice: to check the sample, then to apply it at commit).
//!
//! Refs are issued in increasing order and series leave mostly oldest first (a truncation
//! drops the series whose every sample a block now holds), so the refs the head holds are
//! nearly consecutive. The map keeps them in one sorted vector beside their values: a lookup
//! first tries the slot the ref would have if the refs were consecutive from the first, and
//! only if that misses searches by bisection; a new ref past the last is a push. The profile
//! this answers (`ballast-bench prometheus`, head-only ingest): `BTreeMap` lookups were about
//! 40 % of the append path.

use super::SeriesRef;

/// Values by series ref, iterated in ref order.
#[derive(Clone, Debug)]
pub(crate) struct RefMap<T> {
    /// Sorted, no duplicates.
    refs: Vec<SeriesRef>,
    /// `values[i]` belongs to `refs[i]`.
    values: Vec<T>,
}

impl<T> Default for RefMap<T> {
    fn default() -> Self {
        Self { refs: Vec::new(), values: Vec::new() }
    }
}

impl<T> RefMap<T> {
    /// Where `series_ref` is, or `Err` with where it would go: the slot it has if the refs
    /// from the first to it are consecutive, or if those from it to the last are (a gap
    /// left by series dropped from the middle leaves the newer series found from the end).
    fn position(&self, series_ref: SeriesRef) -> Result<usize, usize> {
        let (Some(&first), Some(&last)) = (self.refs.first(), self.refs.last()) else { return Err(0) };
        let from_first = series_ref.checked_sub(first).and_then(|offset| usize::try_from(offset).ok());
        let from_last = last.checked_sub(series_ref).and_then(|offset| usize::try_from(offset).ok());
        let from_last = from_last.and_then(|offset| (self.refs.len() - 1).checked_sub(offset));
        for guess in [from_first, from_last].into_iter().flatten() {
            if self.refs.get(guess) == Some(&series_ref) {
                return Ok(guess);
            }
        }
        self.refs.binary_search(&series_ref)
    }

    pub fn get(&self, series_ref: &SeriesRef) -> Option<&T> {
        self.position(*series_ref).ok().map(|at| &self.values[at])
    }

    pub fn get_mut(&mut self, series_ref: &SeriesRef) -> Option<&mut T> {
        self.position(*series_ref).ok().map(|at| &mut self.values[at])
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, series_ref: SeriesRef, value: T) -> Option<T> {
        if self.refs.last().is_none_or(|&last| last < series_ref) {
            self.refs.push(series_ref);
            self.values.push(value);
            return None;
        }
        match self.position(series_ref) {
            Ok(at) => Some(std::mem::replace(&mut self.values[at], value)),
            Err(at) => {
                self.refs.insert(at, series_ref);
                self.values.insert(at, value);
                None
            }
        }
    }

    /// Keeps the entries `keep` returns true for, in one pass.
    pub fn retain(&mut self, mut keep: impl FnMut(SeriesRef, &mut T) -> bool) {
        let mut kept = 0;
        for at in 0..self.refs.len() {
            if keep(self.refs[at], &mut self.values[at]) {
                self.refs.swap(kept, at);
                self.values.swap(kept, at);
                kept += 1;
            }
        }
        self.refs.truncate(kept);
        self.values.truncate(kept);
    }

    pub fn len(&self) -> usize {
        self.refs.len()
    }

    /// The highest ref held.
    pub fn last_ref(&self) -> Option<SeriesRef> {
        self.refs.last().copied()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (SeriesRef, &T)> {
        self.refs.iter().copied().zip(&self.values)
    }

    pub fn values(&self) -> std::slice::Iter<'_, T> {
        self.values.iter()
    }
}

impl<T> std::ops::Index<&SeriesRef> for RefMap<T> {
    type Output = T;

    fn index(&self, series_ref: &SeriesRef) -> &T {
        self.get(series_ref).expect("the series exists")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(SeriesRef, u32),
        Retain(u8),
        Get(SeriesRef),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Refs mostly near each other, as the head's are, with a few far apart.
        let series_ref = prop_oneof![4 => 0u64..64, 1 => any::<u64>()];
        prop_oneof![
            6 => (series_ref.clone(), any::<u32>()).prop_map(|(r, v)| Op::Insert(r, v)),
            1 => any::<u8>().prop_map(Op::Retain),
            4 => series_ref.prop_map(Op::Get),
        ]
    }

    proptest! {
        /// Whatever the order of inserts, replacements and removals, the map answers as a
        /// `BTreeMap` does, and iterates in the same order.
        #[test]
        fn behaves_as_a_btree_map(ops in prop::collection::vec(op(), 0..200)) {
            let mut map = RefMap::default();
            let mut model = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(r, v) => prop_assert_eq!(map.insert(r, v), model.insert(r, v)),
                    // Drops the values whose low bits match: removals anywhere in the refs.
                    Op::Retain(mask) => {
                        let keep = |v: u32| v & u32::from(mask) != 0;
                        map.retain(|_, v| keep(*v));
                        model.retain(|_, v| keep(*v));
                    }
                    Op::Get(r) => prop_assert_eq!(map.get(&r), model.get(&r)),
                }
                prop_assert_eq!(map.len(), model.len());
                prop_assert_eq!(map.last_ref(), model.keys().next_back().copied());
            }
            let listed: Vec<(SeriesRef, u32)> = map.iter().map(|(r, v)| (r, *v)).collect();
            let expected: Vec<(SeriesRef, u32)> = model.into_iter().collect();
            prop_assert_eq!(listed, expected);
        }
    }
}
