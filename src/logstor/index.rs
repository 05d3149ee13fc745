//! The in-memory index: where the newest record of every key is, and how an open builds it.

use std::collections::hash_map;
#[allow(clippy::disallowed_types, reason = "the index's HashMap has a fixed hasher; see `Index`")]
use std::collections::HashMap;

use super::key::IndexKey;

/// Where the newest record of a key is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) segment: u64,
    pub(super) offset: u64,
    pub(super) length: u32,
    pub(super) sequence: u64,
    pub(super) tombstone: bool,
    pub(super) group: u32,
    /// Older records of this key still on disk in segments that are not free. A tombstone may
    /// be dropped only when this is zero: otherwise a crash could bring an older version back.
    pub(super) stale_copies: u32,
}

/// The in-memory index: every key's newest record. A hash map, where it was a B-tree: a put or
/// get is one probe instead of a walk of five or six nodes, mostly cache misses (perf of the
/// `kv` benchmark had 46% of its samples in the B-tree search; puts went from 0.73 to 1.0 M/s
/// and gets from 0.74 to 1.0 M/s). The hasher is std's SipHash with fixed keys, so the same
/// operations give the same map and iteration order in every run. The costs: memory, a slot of
/// 64 bytes per key at up to 7/8 load (by the table's sizing rule 1 M keys take 2 M slots,
/// 134 MB; by our count of its nodes the tree took 65-100 MB; neither measured), `scan` sorts the keys it visits, and a reopen fills a table rather than
/// building a tree from a sorted run (see [`build_index`] for how it keeps that cheap).
#[allow(clippy::disallowed_types, reason = "a fixed hasher, not RandomState: the order is the same every run")]
pub(super) type Index = HashMap<IndexKey, Entry, std::hash::BuildHasherDefault<std::hash::DefaultHasher>>;

/// Builds the index from every record `found` at open, in scan order (see [`index_found`]).
///
/// The records go in grouped by where their keys land in the table, so that the table is
/// written a small region at a time instead of at a random place for every key: perf of
/// reopening the `kv` benchmark's 1 M-key store put most of the open in cache misses of the
/// inserts. The grouping is stable, so records of one key keep their scan order. It assumes the
/// table places a key at its hash modulo the power-of-two slot count, as std's does; if that
/// changed, only the speed would suffer.
pub(super) fn build_index(found: Vec<(IndexKey, Entry)>) -> Index {
    let mut index = Index::with_capacity_and_hasher(found.len(), Default::default());
    // The slot count std's table takes for this capacity (7/8 load, a power of two).
    let slots = (found.len() * 8 / 7 + 1).next_power_of_two() as u64;
    let slot_bits = slots.trailing_zeros();
    let group_bits = slot_bits.min(INDEX_BUILD_GROUP_BITS);
    let hasher = index.hasher().clone();
    let mut groups: Vec<Vec<(IndexKey, Entry)>> = (0..1usize << group_bits).map(|_| Vec::new()).collect();
    for (key, entry) in found {
        let slot = std::hash::BuildHasher::hash_one(&hasher, &key) & (slots - 1);
        let group = usize::try_from(slot >> (slot_bits - group_bits)).expect("below the group count");
        groups[group].push((key, entry));
    }
    for group in groups {
        for (key, entry) in group {
            index_found(&mut index, key, entry);
        }
    }
    index
}

/// [`build_index`] fills the table in 2^this groups of neighbouring slots: 2048 groups keep
/// the groups' growing ends in cache while the records are grouped, and a group of a 1 M-key
/// table spans about 64 KiB of it.
pub(super) const INDEX_BUILD_GROUP_BITS: u32 = 11;

/// Adds a record found at open, in scan order, to the index, which keeps for each key its
/// newest record (the highest sequence; between copies of one record, which relocation leaves
/// until it frees the source, the first in scan order) and counts the others as stale copies.
pub(super) fn index_found(index: &mut Index, key: IndexKey, entry: Entry) {
    match index.entry(key) {
        hash_map::Entry::Vacant(vacant) => {
            vacant.insert(entry);
        }
        hash_map::Entry::Occupied(mut occupied) => {
            let kept = occupied.get_mut();
            if kept.sequence < entry.sequence {
                *kept = Entry { stale_copies: kept.stale_copies + 1, ..entry };
            } else {
                kept.stale_copies += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use proptest::prelude::*;

    /// The index by another route, as open built it before the hash map: sort by key, newest
    /// sequence first, then scan order, and keep the first of each key.
    fn build_index_by_sorting(mut found: Vec<(IndexKey, Entry)>) -> BTreeMap<IndexKey, Entry> {
        found.sort_by(|(key, entry), (other_key, other)| {
            key.cmp(other_key)
                .then(other.sequence.cmp(&entry.sequence))
                .then((entry.segment, entry.offset).cmp(&(other.segment, other.offset)))
        });
        // `dedup_by` hands (later, kept): the kept one is the first of its key, the newest.
        found.dedup_by(|(key, _), (kept_key, kept)| {
            let duplicate = key == kept_key;
            kept.stale_copies += u32::from(duplicate);
            duplicate
        });
        found.into_iter().collect()
    }

    proptest! {
        /// Inserting in scan order, grouped by table slot, gives exactly the index sorting gives: the newest record of
        /// each key, the first in scan order between copies of one record (same sequence), and
        /// the others counted as stale copies.
        #[test]
        fn build_index_matches_sorting_by_key_and_sequence(
            records in proptest::collection::vec((0u8..6, 0u64..5, any::<bool>(), 0u32..3), 0..60),
        ) {
            // Scan order: by segment, then offset; a few keys, so duplicates are common.
            let found: Vec<(IndexKey, Entry)> = records
                .iter()
                .enumerate()
                .map(|(position, &(key, sequence, tombstone, group))| {
                    let entry = Entry {
                        segment: position as u64 / 8,
                        offset: (position as u64 % 8) * 100,
                        length: 100,
                        sequence,
                        tombstone,
                        group,
                        stale_copies: 0,
                    };
                    (IndexKey::new(&vec![key; usize::from(key) * 5]), entry)
                })
                .collect();
            let built: BTreeMap<IndexKey, Entry> = build_index(found.clone()).into_iter().collect();
            prop_assert_eq!(built, build_index_by_sorting(found));
        }
    }
}
