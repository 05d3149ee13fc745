//! The write path: puts and deletes into write buffers, segments opened, sealed and synced.

use std::collections::hash_map;
use std::io;

use super::format::{self, BufferKind, Record, BLOCK_SIZE, BUFFER_HEADER_SIZE};
use super::index::Entry;
use super::key::IndexKey;
use super::segment::{create_data_file, Segment, SegmentKind, SegmentState};
use super::{io_error, reclaim, Logstor};
use crate::error::{Error, Result};

/// A segment being written.
#[derive(Debug)]
pub(super) struct Writer {
    pub(super) segment: u64,
    /// Header space followed by the records not yet written.
    pub(super) buffer: Vec<u8>,
    pub(super) records_count: u32,
    /// Where `buffer` will land in the segment.
    pub(super) buffer_offset: u64,
}
impl Logstor {
    /// The largest record (key, value and header) a segment holds.
    pub fn record_size_max(&self) -> usize {
        let room = self.geometry.segment_size - BLOCK_SIZE;
        usize::try_from(room).expect("fits") - BUFFER_HEADER_SIZE
    }

    /// Stores `value` under `key` in the key's default group. Buffered until [`Logstor::sync`].
    ///
    /// Most puts only copy the record into a buffer; every `write_buffer_size` bytes one writes
    /// a buffer, and one in a segment seals it (two syncs). A put that opens a new mixed segment
    /// while fewer than `groups_count + 2 × compaction_batch_max` segments are free first
    /// reclaims space (see the module docs): at most 3 + ⌈`groups_count` × 4 KiB / (segment
    /// capacity)⌉ steps, 4 with the defaults, each a separator step (one segment read, its live
    /// records copied) or a compaction step (up to `compaction_batch_max` segments read, fewer
    /// segments' worth of live records copied), each ending in a sync of what it wrote and a
    /// FREE marker, synced, for each segment it frees. So one put reads at most
    /// steps × `compaction_batch_max` segments (16 MiB with the defaults) and writes about as
    /// much, once per segment of writes at most, and only when free segments run short.
    ///
    /// An error from that reclaiming (an I/O error, or [`Error::Corruption`] in a segment it
    /// read) fails the put, which then wrote nothing, and poisons the store: reopen it, and
    /// recovery reports or repairs what was found.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let group = self.group_of(key);
        self.put_in_group(group, key, value)
    }

    /// Stores `value` under `key` in compaction group `group`.
    pub fn put_in_group(&mut self, group: u32, key: &[u8], value: &[u8]) -> Result<()> {
        self.write(group, key, Some(value))
    }

    /// Deletes `key` (a tombstone, buffered until [`Logstor::sync`]). Deleting a key that is
    /// not there writes nothing. A delete may reclaim space first, as [`Logstor::put`] says.
    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        match self.entry_of(key) {
            Some(entry) if !entry.tombstone => {
                let group = entry.group;
                self.write(group, key, None)
            }
            _ => Ok(()),
        }
    }

    pub(super) fn write(&mut self, group: u32, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.health.check()?;
        if group >= self.options.groups_count {
            return Err(Error::InvalidArgument {
                reason: format!("group {group} is not below {}", self.options.groups_count),
            });
        }
        let size = format::record_size(key, value);
        if key.len() > usize::from(u16::MAX)
            || size > self.record_size_max()
            || value.is_some_and(|value| value.len() > u32::MAX as usize)
        {
            return Err(Error::RecordTooLarge { length: size as u64, max: self.record_size_max() as u64 });
        }
        self.begin_write()?;
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let record = Record { key, value, group, sequence };
        let (segment, offset) = self.append(SegmentKind::Mixed, &record)?;
        let length = u32::try_from(size).expect("fits a segment");
        let entry = Entry { segment, offset, length, sequence, tombstone: value.is_none(), group, stale_copies: 0 };
        self.point(key, entry);
        Ok(())
    }

    /// Points the index at a newer record of `key`; the older one becomes a stale copy.
    pub(super) fn point(&mut self, key: &[u8], mut entry: Entry) {
        // One probe of the map, and no allocation for an inline key.
        let old = match self.index.entry(IndexKey::new(key)) {
            hash_map::Entry::Vacant(vacant) => {
                vacant.insert(entry);
                None
            }
            hash_map::Entry::Occupied(mut occupied) => {
                let old = *occupied.get();
                assert!(old.sequence < entry.sequence, "records only supersede older ones");
                entry.stale_copies = old.stale_copies + 1;
                occupied.insert(entry);
                Some(old)
            }
        };
        if let Some(old) = old {
            self.segment_mut(old.segment).live_bytes -= u64::from(old.length);
            self.keys_count -= u64::from(!old.tombstone);
        }
        self.segment_mut(entry.segment).live_bytes += u64::from(entry.length);
        self.keys_count += u64::from(!entry.tombstone);
    }

    /// Appends a record to the writer of `kind`, opening, flushing and sealing segments as
    /// needed. Returns where the record will be.
    pub(super) fn append(&mut self, kind: SegmentKind, record: &Record<'_>) -> Result<(u64, u64)> {
        let size = record.size();
        // A segment keeps its last block for the seal.
        let capacity = self.geometry.segment_size - BLOCK_SIZE;
        // Flush first, then check the room left: the flush moves the write position.
        if let Some(writer) = self.writers.get(&kind) {
            let data_length = writer.buffer.len() - BUFFER_HEADER_SIZE;
            if writer.records_count > 0 && BUFFER_HEADER_SIZE + data_length + size > self.options.write_buffer_size {
                self.flush_writer(kind)?;
            }
        }
        if let Some(writer) = self.writers.get(&kind) {
            let data_length = writer.buffer.len() - BUFFER_HEADER_SIZE;
            let grown = u64::from(format::blocks_for(data_length + size)) * BLOCK_SIZE;
            if writer.buffer_offset + grown > capacity {
                self.seal(kind)?;
            }
        }
        if !self.writers.contains_key(&kind) {
            // Only the write path opens mixed segments; the steps' own copies go to groups, so
            // a step never reclaims from inside another.
            if kind == SegmentKind::Mixed {
                self.reclaim_before_opening()?;
            }
            let segment = self.allocate(kind)?;
            self.writers.insert(
                kind,
                Writer { segment, buffer: vec![0u8; BUFFER_HEADER_SIZE], records_count: 0, buffer_offset: 0 },
            );
        }
        let writer = self.writers.get_mut(&kind).expect("inserted above");
        let offset = writer.buffer_offset + writer.buffer.len() as u64;
        let blocks = u64::from(format::blocks_for(writer.buffer.len() - BUFFER_HEADER_SIZE + size));
        assert!(writer.buffer_offset + blocks * BLOCK_SIZE <= capacity, "a buffer never reaches the seal's block");
        format::encode_record(&mut writer.buffer, record);
        writer.records_count += 1;
        Ok((writer.segment, offset))
    }

    /// Runs the write path's bounded reclaiming (see [`Logstor::put`]): while fewer than the
    /// reserve of segments are free, up to the budget's steps, each carried out by
    /// [`Self::relocate`], which makes everything durable before it frees a segment. Any error
    /// poisons the store: the write that asked for it fails, having written nothing.
    pub(super) fn reclaim_before_opening(&mut self) -> Result<()> {
        let budget = reclaim::WriteBudget::new(
            self.options.groups_count,
            self.options.compaction_batch_max,
            self.geometry.segment_size,
        );
        let capacity = self.geometry.segment_size - BLOCK_SIZE;
        // A step may open a segment for every group its records go to and for its copies. A
        // store that cannot grow takes those from its free segments, and running short there
        // poisons it: a put that a free segment would have taken failed with StorageFull, and
        // again after every reopen (found in review). Such a store reclaims only while a step
        // cannot run short; otherwise the put goes ahead as it would without reclaiming.
        let step_need = u64::from(self.options.groups_count)
            .saturating_add(u64::try_from(self.options.compaction_batch_max).unwrap_or(u64::MAX));
        for step in 0..budget.steps_max {
            if self.free.len() as u64 >= budget.reserve {
                return Ok(());
            }
            let can_grow = (self.files.len() as u64) < self.options.files_max;
            if !can_grow && (self.free.len() as u64) < step_need {
                return Ok(());
            }
            let sources = match reclaim::choose(&self.segments, capacity, self.options.compaction_batch_max, step == 0)
            {
                reclaim::Choice::Nothing => return Ok(()),
                reclaim::Choice::Separate(segment) => vec![segment],
                reclaim::Choice::Compact(batch) => batch,
            };
            match self.relocate(&sources) {
                Ok(report) => tracing::debug!(step, ?sources, ?report, "the write path reclaimed space"),
                Err(error) if self.health.is_poisoned() => return Err(error),
                Err(error) => return Err(self.poison(error)),
            }
        }
        Ok(())
    }

    /// Takes a free segment for `kind`, growing the store by a data file if none is free.
    pub(super) fn allocate(&mut self, kind: SegmentKind) -> Result<u64> {
        if self.free.is_empty() {
            let index = self.files.len() as u64;
            if index >= self.options.files_max {
                // Callers may be part way through a step; refuse further writes until reopen.
                let error = io::Error::new(io::ErrorKind::StorageFull, "the store reached files_max data files");
                return Err(self.poison(Error::io(&self.directory, "allocate_segment", error)));
            }
            let file = match create_data_file(self.vfs.as_ref(), &self.directory, index, self.geometry) {
                Ok(file) => file,
                Err(error) => return Err(self.poison(error)),
            };
            assert!(self.files.len() as u64 == index, "data files are numbered densely");
            self.files.push(file);
            for segment in index * self.geometry.segments_per_file..(index + 1) * self.geometry.segments_per_file {
                self.segments.push(Segment { state: SegmentState::Free, generation: 1, written: 0, live_bytes: 0 });
                self.free.insert(segment);
            }
        }
        let segment = self.free.pop_first().expect("a free segment exists");
        let state = self.segment_mut(segment);
        assert_eq!(state.state, SegmentState::Free, "the free list holds free segments");
        *state = Segment { state: SegmentState::Active(kind), generation: state.generation, written: 0, live_bytes: 0 };
        Ok(segment)
    }

    /// Writes the writer's buffered records as one buffer.
    pub(super) fn flush_writer(&mut self, kind: SegmentKind) -> Result<()> {
        let Some(writer) = self.writers.get_mut(&kind) else { return Ok(()) };
        if writer.records_count == 0 {
            return Ok(());
        }
        let segment = writer.segment;
        let generation = self.segments[usize::try_from(segment).expect("fits")].generation;
        let mut buffer = std::mem::replace(&mut writer.buffer, vec![0u8; BUFFER_HEADER_SIZE]);
        let records_count = std::mem::take(&mut writer.records_count);
        let buffer_offset = writer.buffer_offset;
        format::seal_buffer(
            &mut buffer,
            BufferKind::Data,
            kind.owner(),
            segment,
            generation,
            buffer_offset,
            records_count,
        );
        writer.buffer_offset += buffer.len() as u64;
        let (file_index, base, path) = self.file_of(segment);
        if let Err(error) = self.files[file_index].write_at(&buffer, base + buffer_offset) {
            return Err(self.poison(Error::io(&path, "write_at", error)));
        }
        self.dirty_files.insert(file_index as u64);
        self.segment_mut(segment).written = buffer_offset + buffer.len() as u64;
        Ok(())
    }

    /// Closes the writer of `kind`: writes its buffer, then the seal, and syncs. Every record in
    /// the segment is in the index already (the write gate), so the sealed segment is fully
    /// indexed.
    pub(super) fn seal(&mut self, kind: SegmentKind) -> Result<()> {
        self.flush_writer(kind)?;
        let Some(writer) = self.writers.remove(&kind) else { return Ok(()) };
        let segment = writer.segment;
        let generation = self.segments[usize::try_from(segment).expect("fits")].generation;
        let seal = format::marker(BufferKind::Seal, kind.owner(), segment, generation, writer.buffer_offset);
        let (file_index, base, path) = self.file_of(segment);
        let file = &self.files[file_index];
        // A seal claims that everything before it is durable, so the data is synced before the
        // seal is written: writes between two syncs may reach the disk in any order, and a seal
        // that landed before its data would make a torn tail look like damaged synced data.
        let result = file
            .sync_data()
            .and_then(|()| file.write_at(&seal, base + writer.buffer_offset))
            .and_then(|()| file.sync_data())
            .map_err(io_error(&path, "seal"));
        if let Err(error) = result {
            return Err(self.poison(error));
        }
        self.segment_mut(segment).state = SegmentState::Sealed(kind);
        #[cfg(feature = "checks")]
        self.sealed_since_check.push(segment);
        Ok(())
    }

    /// Writes every buffer and fsyncs: every write before the call survives a crash.
    pub fn sync(&mut self) -> Result<()> {
        self.begin_write()?;
        let kinds: Vec<SegmentKind> = self.writers.keys().copied().collect();
        for kind in kinds {
            self.flush_writer(kind)?;
        }
        self.sync_dirty()
    }

    pub(super) fn sync_dirty(&mut self) -> Result<()> {
        for file_index in std::mem::take(&mut self.dirty_files) {
            let path = self.directory.join(format::data_file_name(file_index));
            if let Err(error) = self.files[usize::try_from(file_index).expect("fits")].sync_data() {
                return Err(self.poison(Error::io(&path, "sync_data", error)));
            }
        }
        Ok(())
    }

    /// Makes every write durable, seals every segment the store was writing, and closes it:
    /// [`verify`](super::verify) then finds no torn segment, and the next open seals nothing. (A store dropped
    /// without `close` keeps only what was synced, and its open segments read as torn until
    /// the next open seals them.)
    pub fn close(mut self) -> Result<()> {
        self.begin_write()?;
        self.seal_all()
    }

    /// Seals every writer: their buffers written and synced first, one sync per data file, then
    /// every seal, then one more sync per file. (Sealing them one by one would sync a file
    /// twice for each of its writers.)
    pub(super) fn seal_all(&mut self) -> Result<()> {
        let kinds: Vec<SegmentKind> = self.writers.keys().copied().collect();
        for &kind in &kinds {
            self.flush_writer(kind)?;
        }
        // A seal claims that everything before it is durable (see `seal`).
        self.sync_dirty()?;
        for kind in kinds {
            let writer = self.writers.remove(&kind).expect("listed above");
            let segment = writer.segment;
            let generation = self.segments[usize::try_from(segment).expect("fits")].generation;
            let seal = format::marker(BufferKind::Seal, kind.owner(), segment, generation, writer.buffer_offset);
            let (file_index, base, path) = self.file_of(segment);
            if let Err(error) = self.files[file_index].write_at(&seal, base + writer.buffer_offset) {
                return Err(self.poison(Error::io(&path, "seal", error)));
            }
            self.dirty_files.insert(file_index as u64);
            self.segment_mut(segment).state = SegmentState::Sealed(kind);
            #[cfg(feature = "checks")]
            self.sealed_since_check.push(segment);
        }
        self.sync_dirty()
    }

    pub(super) fn begin_write(&mut self) -> Result<()> {
        self.health.begin_write(self.vfs.as_ref(), &self.directory)
    }
}
