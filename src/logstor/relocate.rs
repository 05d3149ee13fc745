//! Reclaiming space: the separator and compaction steps, group drops, and the relocation and
//! freeing they share (which space to reclaim is chosen in `reclaim.rs`).

use std::collections::BTreeSet;

use super::format::{self, BufferKind, BLOCK_SIZE};
use super::index::Entry;
use super::scan::{highest_generation, scan_segment, SegmentScan};
use super::segment::{Segment, SegmentKind, SegmentState};
use super::{reclaim, Logstor, StepReport};
use crate::error::{CorruptionReason, Error, Result};
use crate::vfs;

/// A segment being relocated: its number, its bytes, and where its records lie in them.
type Source = (u64, Vec<u8>, Vec<std::ops::Range<usize>>);

/// A tombstone a relocation drops instead of copying: its key, and its segment and offset.
type DroppedTombstone = (Vec<u8>, (u64, u64));

/// Every record of the `found` sources: its segment, its offset there, and its bytes.
fn records_of(found: &[Source]) -> impl Iterator<Item = (u64, u64, &[u8])> {
    found.iter().flat_map(|(segment, bytes, ranges)| {
        ranges.iter().map(move |range| (*segment, range.start as u64, &bytes[range.clone()]))
    })
}

impl Logstor {
    /// One bounded compaction step: takes up to `compaction_batch_max` sealed group segments
    /// with the least live data, only if copying their live records frees at least one
    /// segment (of such batches, the one freeing the most, and the smallest of those), copies
    /// those records (and the tombstones still needed) to their groups' open segments, syncs,
    /// moves the index, and frees the old segments.
    pub fn compact_step(&mut self) -> Result<StepReport> {
        self.begin_write()?;
        let capacity = self.geometry.segment_size - BLOCK_SIZE;
        match reclaim::compaction_batch(&self.segments, capacity, self.options.compaction_batch_max) {
            Some(batch) => self.relocate(&batch),
            None => Ok(StepReport::default()),
        }
    }

    /// One bounded separator step: rewrites the oldest sealed mixed segment's live records into
    /// their groups' segments and frees it.
    pub fn separator_step(&mut self) -> Result<StepReport> {
        self.begin_write()?;
        let oldest = self
            .segments
            .iter()
            .position(|segment| segment.state == SegmentState::Sealed(SegmentKind::Mixed))
            .map(|id| id as u64);
        match oldest {
            Some(segment) => self.relocate(&[segment]),
            None => Ok(StepReport::default()),
        }
    }

    /// Seals the open mixed segment, so the separator can take everything written so far.
    pub fn seal_mixed(&mut self) -> Result<()> {
        self.begin_write()?;
        self.seal(SegmentKind::Mixed)
    }

    /// Copies the live records of `sources` (sealed segments) to their groups' segments, then
    /// frees the sources. The copies are synced before any source is freed, so at every
    /// instant each live record is safely somewhere.
    pub(super) fn relocate(&mut self, sources: &[u64]) -> Result<StepReport> {
        let mut report = StepReport::default();
        let found = self.read_sources(sources)?;
        let dropped = self.copy_live(records_of(&found), &mut report)?;
        // Everything written so far becomes durable before any source is freed: the copies
        // made here, and also the newer records that superseded the stale ones about to go.
        // Freeing a segment whose stale record is the only durable version of its key, while
        // the newer one is still buffered, would lose synced data at the next crash.
        let kinds: Vec<SegmentKind> = self.writers.keys().copied().collect();
        for kind in kinds {
            self.flush_writer(kind)?;
        }
        self.sync_dirty()?;
        let dropped_locations: BTreeSet<(u64, u64)> = dropped.iter().map(|(_, location)| *location).collect();
        for (key, (old_segment, old_offset)) in dropped {
            let entry = self.index.get(key.as_slice()).copied().expect("a dropped key is indexed");
            assert_eq!((entry.segment, entry.offset), (old_segment, old_offset), "nothing moved a dropped tombstone");
            self.index.remove(key.as_slice());
            self.segment_mut(old_segment).live_bytes -= u64::from(entry.length);
            report.tombstones_dropped += 1;
        }
        // Free the sources; their records stop counting as copies.
        for (segment, offset, record_bytes) in records_of(&found) {
            if dropped_locations.contains(&(segment, offset)) {
                continue;
            }
            let record = format::decode_record(record_bytes).expect("verified by the scan");
            if let Some(entry) = self.entry_mut_of(record.key) {
                assert!(entry.stale_copies > 0, "a record on disk that the index does not point to is a counted copy");
                entry.stale_copies -= 1;
            }
        }
        for (segment, bytes, _) in &found {
            self.free_segment(*segment, highest_generation(bytes, *segment))?;
            report.segments_freed += 1;
        }
        Ok(report)
    }

    /// Reads each of `sources`, which must scan as sealed; anything else is corruption.
    fn read_sources(&self, sources: &[u64]) -> Result<Vec<Source>> {
        let mut found = Vec::with_capacity(sources.len());
        for &segment in sources {
            let (file_index, base, path) = self.file_of(segment);
            let mut bytes = vec![0u8; usize::try_from(self.geometry.segment_size).expect("fits")];
            vfs::read_exact_retrying(self.files[file_index].as_ref(), &path, &mut bytes, base)?;
            match scan_segment(&bytes, segment) {
                SegmentScan::Used { sealed_at: Some(_), records, .. } => found.push((segment, bytes, records)),
                SegmentScan::Damaged { offset, reason, .. } => {
                    return Err(Error::Corruption { file: path, segment, offset: base + offset, reason });
                }
                other => {
                    let reason = CorruptionReason::Unsealed;
                    tracing::error!(segment, ?other, "a sealed segment does not read back sealed");
                    return Err(Error::Corruption { file: path, segment, offset: base, reason });
                }
            }
        }
        Ok(found)
    }

    /// Copies what is live among `records`, moving the index to each copy as it is appended
    /// (the write gate: a group segment that fills up and seals mid-step is fully indexed). The
    /// old copy becomes a stale copy until its segment is freed. Returns the tombstones that no
    /// older version outlives, with where they lie: they are dropped instead, once the step's
    /// writes are durable.
    fn copy_live<'a>(
        &mut self,
        records: impl Iterator<Item = (u64, u64, &'a [u8])>,
        report: &mut StepReport,
    ) -> Result<Vec<DroppedTombstone>> {
        let mut dropped = Vec::new();
        for (segment, offset, record_bytes) in records {
            let record = format::decode_record(record_bytes).expect("verified by the scan");
            let Some(entry) = self.entry_of(record.key).copied() else { continue };
            if entry.segment != segment || entry.offset != offset {
                continue;
            }
            // A tombstone goes only once no other record of its key is left anywhere on disk,
            // not even in the segments this step frees: they are freed one at a time, and an
            // interruption after the tombstone's segment but before an older version's would
            // bring the deleted key back. Such a tombstone is copied now and dropped later.
            if entry.tombstone && entry.stale_copies == 0 {
                dropped.push((record.key.to_vec(), (segment, offset)));
                continue;
            }
            let (new_segment, new_offset) = self.append(SegmentKind::Group(record.group), &record)?;
            report.records_moved += 1;
            report.bytes_moved += record.size() as u64;
            let moved =
                Entry { segment: new_segment, offset: new_offset, stale_copies: entry.stale_copies + 1, ..entry };
            self.segment_mut(entry.segment).live_bytes -= u64::from(entry.length);
            self.segment_mut(new_segment).live_bytes += u64::from(entry.length);
            *self.entry_mut_of(record.key).expect("appending moves no index entry") = moved;
        }
        Ok(dropped)
    }

    /// Frees a sealed segment durably: FREE markers, with the generation bumped, over its first
    /// buffer and its seal, then a sync. `highest_on_disk` is the highest generation any header
    /// in the segment names (see `scan::highest_generation`): the next use's generation is above
    /// it as well as above the segment's own, so that no buffer left on disk is ever read as
    /// part of that use.
    ///
    /// Found in review: two misdirected writes in one freeing (both FREE markers) could leave
    /// a segment whose own generation was below a buffer of a lost later use; freeing it again
    /// with its generation + 1 reused that later use's generation.
    pub(super) fn free_segment(&mut self, segment: u64, highest_on_disk: u64) -> Result<()> {
        let state = self.segments[usize::try_from(segment).expect("fits")].clone();
        let SegmentState::Sealed(kind) = state.state else { panic!("only sealed segments are freed") };
        assert_eq!(state.live_bytes, 0, "a freed segment holds nothing the index points to");
        let generation = state.generation.max(highest_on_disk).saturating_add(1);
        let (file_index, base, path) = self.file_of(segment);
        let file = &self.files[file_index];
        // The seal goes first, durably. Were the FREE marker at offset 0 written first and torn
        // by a crash, the old seal after it would pass the torn unsynced write off as damage to
        // synced data. With the seal gone, a crash in between leaves a FREE marker of the new
        // generation where the buffers end, which recovery takes for the freeing it is.
        //
        // Each marker is read back and written again if it went astray (see
        // `vfs::write_verified_rewriting`): a stray copy of one may damage the other, and the
        // two are all that say the segment's records are stale (logstor seed 35298).
        let void_seal = format::marker(BufferKind::Free, kind.owner(), segment, generation, state.written);
        let free_at_0 = format::marker(BufferKind::Free, kind.owner(), segment, generation, 0);
        let result = (if state.written > 0 {
            vfs::write_verified_rewriting(file.as_ref(), &path, &void_seal, base + state.written)
        } else {
            Ok(())
        })
        .and_then(|()| vfs::write_verified_rewriting(file.as_ref(), &path, &free_at_0, base));
        if let Err(error) = result {
            return Err(self.poison(error));
        }
        *self.segment_mut(segment) = Segment { state: SegmentState::Free, generation, written: 0, live_bytes: 0 };
        self.free.insert(segment);
        Ok(())
    }

    /// Drops every key of `group`: a tombstone for each (synced), then every segment of the
    /// group is freed. The tombstones go once no older version of their keys is left on disk.
    pub fn drop_group(&mut self, group: u32) -> Result<StepReport> {
        self.begin_write()?;
        let keys: Vec<Vec<u8>> = self
            .index
            .iter()
            .filter(|(_, entry)| entry.group == group && !entry.tombstone)
            .map(|(key, _)| key.as_slice().to_vec())
            .collect();
        // In key order, as the index gave them when it was a B-tree, not the hash map's order.
        let mut keys = keys;
        keys.sort_unstable();
        for key in &keys {
            self.write(group, key, None)?;
        }
        self.seal(SegmentKind::Group(group))?;
        self.sync()?;
        let segments: Vec<u64> = self
            .segments
            .iter()
            .enumerate()
            .filter(|(_, segment)| segment.state == SegmentState::Sealed(SegmentKind::Group(group)))
            .map(|(id, _)| id as u64)
            .collect();
        let mut report = StepReport::default();
        if !segments.is_empty() {
            report = self.relocate(&segments)?;
        }
        Ok(report)
    }

    /// Runs the separator and compaction until neither has work (bounded by the segment count).
    pub fn maintain_to_quiescence(&mut self) -> Result<()> {
        self.seal_mixed()?;
        for _ in 0..=self.segments.len() * 2 {
            let separated = self.separator_step()?;
            let compacted = self.compact_step()?;
            if separated.segments_freed == 0 && compacted.segments_freed == 0 {
                return Ok(());
            }
        }
        Ok(())
    }
}
