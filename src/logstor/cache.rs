//! A cache of 4 KiB blocks of sealed and flushed data, so that a get of a recently read block
//! costs no system call.
//!
//! Without it, every get is a `pread` of its record: a profile of the `kv` benchmark's gets
//! (perf, see `bench/README.md`) put about 45 % of a get in the kernel's read path, most of it
//! copying from page-cache memory not in the CPU cache.
//!
//! What may be cached: a block below a segment's written end. Buffers take whole blocks and
//! never change once written, so such a block only changes when its segment is freed and used
//! again, and freeing bumps the segment's generation. Entries carry the generation they were read
//! under, and a lookup under another generation misses. Nothing here is durable state, and what
//! is served from it is verified by the record's checksum like what is read from the file.
//!
//! The cache is deterministic: a lookup table per segment (no hashing) and CLOCK eviction, so
//! one sequence of operations always leaves it the same.

use super::format::BLOCK_SIZE;

pub const BLOCK: usize = 4096;
const _: () = assert!(BLOCK_SIZE == 4096);
const EMPTY: u32 = u32::MAX;

/// A cached block's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tag {
    segment: u64,
    generation: u64,
    block: u32,
}

#[derive(Debug)]
pub struct BlockCache {
    capacity: usize,
    blocks_per_segment: usize,
    /// Per segment, per block, the slot holding it or `EMPTY`; allocated when first used.
    table: Vec<Box<[u32]>>,
    tags: Vec<Tag>,
    referenced: Vec<bool>,
    /// The slots' bytes, `BLOCK` each.
    bytes: Vec<u8>,
    /// CLOCK's hand: the next slot to consider for eviction.
    hand: usize,
}

impl BlockCache {
    /// A cache of at most `size_bytes` (rounded down to whole blocks; 0 turns it off).
    pub fn new(size_bytes: usize, segment_size: u64) -> Self {
        Self {
            capacity: size_bytes / BLOCK,
            blocks_per_segment: usize::try_from(segment_size / BLOCK_SIZE).expect("fits"),
            table: Vec::new(),
            tags: Vec::new(),
            referenced: Vec::new(),
            bytes: Vec::new(),
            hand: 0,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.capacity > 0
    }

    fn slot_of(&self, segment: u64, block: u32) -> Option<usize> {
        let row = self.table.get(usize::try_from(segment).ok()?)?;
        let slot = *row.get(block as usize)?;
        (slot != EMPTY).then_some(slot as usize)
    }

    /// The bytes of `block` of `segment` in `generation`, if cached.
    pub fn get(&mut self, segment: u64, generation: u64, block: u32) -> Option<&[u8]> {
        let slot = self.slot_of(segment, block)?;
        if self.tags[slot] != (Tag { segment, generation, block }) {
            return None;
        }
        self.referenced[slot] = true;
        Some(&self.bytes[slot * BLOCK..(slot + 1) * BLOCK])
    }

    /// Caches `bytes` (one block) as `block` of `segment` in `generation`, evicting by CLOCK.
    #[cfg(test)]
    pub fn insert(&mut self, segment: u64, generation: u64, block: u32, bytes: &[u8]) {
        assert_eq!(bytes.len(), BLOCK, "the cache holds whole blocks");
        if let Some(slot) = self.fill(segment, generation, block, |slot| {
            slot.copy_from_slice(bytes);
            Ok(())
        }) {
            slot.expect("copying cannot fail");
        }
    }

    /// Reads `block` of `segment` in `generation` straight into a slot (evicting by CLOCK) with
    /// `read`, and returns the slot's bytes; `None` if the cache is off. A failed read leaves
    /// the slot mapped under no generation, so nothing reads it back.
    pub fn fill(
        &mut self,
        segment: u64,
        generation: u64,
        block: u32,
        read: impl FnOnce(&mut [u8]) -> crate::Result<()>,
    ) -> Option<crate::Result<&[u8]>> {
        assert!((block as usize) < self.blocks_per_segment, "a block of the segment");
        if self.capacity == 0 {
            return None;
        }
        let tag = Tag { segment, generation, block };
        let slot = match self.slot_of(segment, block) {
            // The same block under an older generation: reuse its slot.
            Some(slot) => slot,
            None if self.tags.len() < self.capacity => {
                self.tags.push(tag);
                self.referenced.push(false);
                self.bytes.resize(self.tags.len() * BLOCK, 0);
                self.tags.len() - 1
            }
            None => {
                let victim = self.victim();
                let old = self.tags[victim];
                let row = &mut self.table[usize::try_from(old.segment).expect("fits")];
                row[old.block as usize] = EMPTY;
                victim
            }
        };
        let row_index = usize::try_from(segment).expect("a segment number fits memory");
        if self.table.len() <= row_index {
            self.table.resize_with(row_index + 1, || Box::new([]));
        }
        if self.table[row_index].is_empty() {
            self.table[row_index] = vec![EMPTY; self.blocks_per_segment].into_boxed_slice();
        }
        self.table[row_index][block as usize] = u32::try_from(slot).expect("slots fit a u32");
        self.referenced[slot] = false;
        let bytes = &mut self.bytes[slot * BLOCK..(slot + 1) * BLOCK];
        match read(bytes) {
            Ok(()) => {
                self.tags[slot] = tag;
                Some(Ok(&self.bytes[slot * BLOCK..(slot + 1) * BLOCK]))
            }
            Err(error) => {
                self.tags[slot] = Tag { generation: u64::MAX, ..tag };
                Some(Err(error))
            }
        }
    }

    /// CLOCK: the first slot from the hand not referenced since the hand last passed it.
    fn victim(&mut self) -> usize {
        loop {
            let slot = self.hand;
            self.hand = (self.hand + 1) % self.tags.len();
            if !std::mem::take(&mut self.referenced[slot]) {
                return slot;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(fill: u8) -> Vec<u8> {
        vec![fill; BLOCK]
    }

    #[test]
    fn a_cached_block_reads_back_only_under_its_generation() {
        let mut cache = BlockCache::new(4 * BLOCK, 1 << 20);
        cache.insert(3, 7, 5, &block(0xaa));
        assert_eq!(cache.get(3, 7, 5), Some(&block(0xaa)[..]));
        assert_eq!(cache.get(3, 8, 5), None, "the segment was freed and used again");
        assert_eq!(cache.get(3, 7, 4), None);
        assert_eq!(cache.get(2, 7, 5), None);
        assert_eq!(cache.get(400, 7, 5), None, "a segment never seen");
        cache.insert(3, 8, 5, &block(0xbb));
        assert_eq!(cache.get(3, 8, 5), Some(&block(0xbb)[..]));
        assert_eq!(cache.get(3, 7, 5), None);
    }

    #[test]
    fn eviction_keeps_within_capacity_and_spares_referenced_blocks() {
        let mut cache = BlockCache::new(3 * BLOCK, 1 << 20);
        for index in 0..3 {
            cache.insert(0, 1, index, &block(u8::try_from(index).expect("small")));
        }
        // Block 0 is referenced, so the hand passes it and evicts block 1 for block 3.
        assert!(cache.get(0, 1, 0).is_some());
        cache.insert(0, 1, 3, &block(3));
        assert_eq!(cache.tags.len(), 3);
        assert!(cache.get(0, 1, 1).is_none());
        for (index, fill) in [(0, 0u8), (2, 2), (3, 3)] {
            assert_eq!(cache.get(0, 1, index), Some(&block(fill)[..]));
        }
    }

    #[test]
    fn a_block_read_under_a_new_generation_takes_its_old_slot() {
        // Capacity one: every insert of another block evicts the only slot; the new generation
        // must not leave a second mapping behind that a later eviction would clear wrongly.
        let mut cache = BlockCache::new(BLOCK, 1 << 20);
        cache.insert(1, 1, 0, &block(1));
        cache.insert(1, 2, 0, &block(2));
        cache.insert(2, 1, 0, &block(3));
        assert_eq!(cache.get(1, 2, 0), None);
        assert_eq!(cache.get(2, 1, 0), Some(&block(3)[..]));
    }

    #[test]
    fn a_zero_sized_cache_holds_nothing() {
        let mut cache = BlockCache::new(BLOCK - 1, 1 << 20);
        assert!(!cache.is_enabled());
        cache.insert(0, 1, 0, &block(9));
        assert_eq!(cache.get(0, 1, 0), None);
    }
}
