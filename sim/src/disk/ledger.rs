//! An entry of the damage ledger, and the byte-range arithmetic that writes and healing use on
//! it. Below both the disk's state (`state.rs`, which holds the ledger) and the damage it does
//! (`damage.rs`), so that neither imports the other.

use std::ops::Range;

use super::SECTOR_SIZE;
use crate::faults::FaultKind;

#[derive(Clone, Debug)]
pub(super) struct DamageEntry {
    pub(super) inode: u64,
    pub(super) offset: u64,
    pub(super) length: u64,
    pub(super) kind: FaultKind,
    /// The pending write that caused it, while that write may still be lost.
    pub(super) write_id: Option<u64>,
    /// Only operations issued after this sequence number can replace the damaged bytes.
    pub(super) sequence: u64,
    /// The bytes a misdirected write put where it landed: a crash that tears that write keeps
    /// only the parts of it that reached the disk.
    pub(super) stray: bool,
}

/// The smallest range of `image` from `at` whose bytes differ from `data` (past the image's end
/// a file reads as zeros), or `None` if `data` is what `image` already holds there.
pub(super) fn differing(image: &[u8], at: u64, data: &[u8]) -> Option<Range<u64>> {
    let start = usize::try_from(at).expect("fits");
    let held = |index: usize| image.get(start + index).copied().unwrap_or(0);
    let first = (0..data.len()).find(|&index| held(index) != data[index])?;
    let last = (0..data.len()).rev().find(|&index| held(index) != data[index]).expect("first differs");
    Some(at + first as u64..at + last as u64 + 1)
}

/// Whether `range` covers sector `sector` whole.
pub(super) fn covers_sector(range: &Range<u64>, sector: u64) -> bool {
    range.start <= sector * SECTOR_SIZE && (sector + 1) * SECTOR_SIZE <= range.end
}
