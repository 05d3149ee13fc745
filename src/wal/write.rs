//! The write path: appends into the active segment's buffer, flush, sync, rotation with its
//! seal, truncation and file reuse.

use std::path::{Path, PathBuf};

use super::format::{self, FragmentType, FRAGMENT_HEADER_SIZE, SEGMENT_HEADER_SIZE};
use super::listing::{recycle_file_name, segment_file_name};
use super::options::WalOptions;
use super::{Position, Wal};
use crate::error::{Error, Result};
use crate::segment_writer::SegmentWriter;
use crate::vfs::{self, OpenMode, Vfs, VfsFile};

pub(super) struct ActiveSegment {
    pub(super) number: u64,
    /// Its file; `writer.end` is where the buffered records start (everything before was
    /// written to the OS), and `writer.allocated` the records plus zeros preallocated for those
    /// to come, or the bytes a reused file held before.
    pub(super) writer: SegmentWriter,
    /// A reused file's old bytes lie in `end..stale_until`: fragments of another segment, which
    /// fail verification here. Sealing cuts them off. Equal to `end` or below in a new file.
    pub(super) stale_until: u64,
    /// Whether sealing writes a seal fragment: every segment this build creates does; a
    /// segment of format version 1 recovered as the last one does not.
    pub(super) seals: bool,
    /// Where this segment's data must end, its seal included: [`WalOptions::segment_size`],
    /// or more for a segment recovered from a log written with a larger one (see
    /// [`ActiveSegment::recovered`]).
    pub(super) segment_size: u64,
}

impl ActiveSegment {
    /// The last segment found by recovery, its records ending at `end` and its file
    /// `allocated` bytes long (only zeros after `end`).
    ///
    /// The segment size is not on disk, so the log may have been written with a larger one
    /// than `options` give, and this segment may hold more than the new size allows. It then
    /// keeps just the room its seal needs after its records: the next append finds no room,
    /// seals it there, and the segments after it take the new size.
    pub(super) fn recovered(
        number: u64,
        path: PathBuf,
        file: Box<dyn VfsFile>,
        end: u64,
        allocated: u64,
        seals: bool,
        options: &WalOptions,
    ) -> Self {
        let sealed_end = format::seal_offset(end, u64::from(options.page_size)) + FRAGMENT_HEADER_SIZE as u64;
        let segment_size = options.segment_size.max(sealed_end);
        Self { number, writer: SegmentWriter::new(path, file, end, allocated), stale_until: end, seals, segment_size }
    }
}

/// Appended records are written to the OS once this many bytes are buffered.
pub(super) const WRITE_BUFFER_MAX: usize = 1 << 20;

/// Encodes `record` into `buffer`, whose first byte will land at `buffer_offset` of `segment`.
/// Returns the record's position.
pub(super) fn encode_record(
    buffer: &mut Vec<u8>,
    segment: u64,
    buffer_offset: u64,
    record: &[u8],
    page_size: u64,
) -> Position {
    let header_size = FRAGMENT_HEADER_SIZE as u64;
    let mut remaining = record;
    let mut first_offset = None;
    loop {
        let at = buffer_offset + buffer.len() as u64;
        let page_end = (at / page_size + 1) * page_size;
        let room = page_end - at;
        if room <= header_size {
            buffer.resize(buffer.len() + usize::try_from(room).expect("room fits usize"), 0);
            continue;
        }
        let take = remaining.len().min(usize::try_from(room - header_size).expect("room fits usize"));
        let (payload, rest) = remaining.split_at(take);
        let fragment_type = match (first_offset.is_none(), rest.is_empty()) {
            (true, true) => FragmentType::Full,
            (true, false) => FragmentType::First,
            (false, false) => FragmentType::Middle,
            (false, true) => FragmentType::Last,
        };
        format::encode_fragment(buffer, segment, at, fragment_type, payload);
        first_offset.get_or_insert(at);
        remaining = rest;
        if remaining.is_empty() {
            return Position { segment, offset: first_offset.expect("set above") };
        }
    }
}

/// Creates segment `number` atomically, its header verified (see [`vfs::create_file_atomically`]).
pub(super) fn create_segment(
    vfs: &dyn Vfs,
    directory: &Path,
    number: u64,
    options: &WalOptions,
) -> Result<ActiveSegment> {
    let name = segment_file_name(number);
    let header = format::encode_segment_header(number, options.page_size);
    let file = vfs::create_file_atomically(vfs, directory, &name, &header)?;
    let end = SEGMENT_HEADER_SIZE as u64;
    Ok(ActiveSegment {
        number,
        writer: SegmentWriter::new(directory.join(name), file, end, end),
        stale_until: end,
        seals: true,
        segment_size: options.segment_size,
    })
}

/// Makes the kept file of truncated segment `old` the new segment `number`. Its header is
/// rewritten, synced and read back under the old name; only then does it take the segment's
/// name, durably, so a crash leaves either a file kept for reuse or a segment with a valid
/// header. The rest of the file still holds the old segment's fragments, which fail
/// verification as this segment's (their checksums bind segment `old`): until records overwrite
/// them they are what recovery finds after the records, and truncates as a torn tail.
///
/// The file may be longer than [`WalOptions::segment_size`] (it was written with a larger
/// one): the records stop at the segment size all the same, and sealing cuts off the rest.
pub(super) fn reuse_segment_file(
    vfs: &dyn Vfs,
    directory: &Path,
    old: u64,
    number: u64,
    options: &WalOptions,
) -> Result<ActiveSegment> {
    let from = directory.join(recycle_file_name(old));
    let path = directory.join(segment_file_name(number));
    let header = format::encode_segment_header(number, options.page_size);
    let file = vfs.open(&from, OpenMode::ReadWrite).map_err(|error| Error::io(&from, "open", error))?;
    let length = file.len().map_err(|error| Error::io(&from, "len", error))?;
    vfs::write_synced_and_verified(file.as_ref(), &from, &header, 0)?;
    vfs.rename(&from, &path).map_err(|error| Error::io(&from, "rename", error))?;
    vfs.sync_dir(directory).map_err(|error| Error::io(directory, "sync_dir", error))?;
    tracing::debug!(old, segment = number, bytes = length, "reused the file of a truncated segment");
    let end = SEGMENT_HEADER_SIZE as u64;
    Ok(ActiveSegment {
        number,
        writer: SegmentWriter::new(path, file, end, length.max(end)),
        stale_until: length,
        seals: true,
        segment_size: options.segment_size,
    })
}

impl Wal {
    /// Appends one record. See [`Wal::append_batch`].
    pub fn append(&mut self, record: &[u8]) -> Result<Position> {
        self.begin_write()?;
        self.check_length(record)?;
        self.append_one(record)
    }

    /// Appends `records` in order and returns where each starts. Records are buffered in memory
    /// and reach the OS in one write call when the buffer fills (1 MiB), at [`Wal::sync`], or at
    /// rotation; readers of this handle see them at once. Nothing is durable until
    /// [`Wal::sync`].
    ///
    /// Fails with [`Error::RecordTooLarge`], buffering nothing, if any record exceeds
    /// [`Wal::record_length_max`]. Any I/O failure poisons the log; a prefix of what was
    /// appended may then survive a crash.
    pub fn append_batch(&mut self, records: &[&[u8]]) -> Result<Vec<Position>> {
        self.begin_write()?;
        for record in records {
            self.check_length(record)?;
        }
        records.iter().map(|record| self.append_one(record)).collect()
    }

    pub(super) fn check_length(&self, record: &[u8]) -> Result<()> {
        let record_length_max = self.record_length_max();
        if record.len() as u64 > record_length_max {
            return Err(Error::RecordTooLarge { length: record.len() as u64, max: record_length_max });
        }
        Ok(())
    }

    pub(super) fn append_one(&mut self, record: &[u8]) -> Result<Position> {
        let page_size = u64::from(self.options.page_size);
        let at = self.active.writer.end + self.buffer.len() as u64;
        if !format::record_fits(at, record.len(), page_size, self.active.segment_size) {
            self.rotate_inner()?;
        }
        let position = encode_record(&mut self.buffer, self.active.number, self.active.writer.end, record, page_size);
        if self.buffer.len() >= WRITE_BUFFER_MAX {
            self.flush_buffer()?;
        }
        Ok(position)
    }

    /// Writes the buffered records to the OS in one call.
    pub(super) fn flush_buffer(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let result = self.write_out_buffer();
        // A failed write poisons the log; the buffer goes either way.
        self.buffer.clear();
        result
    }

    fn write_out_buffer(&mut self) -> Result<()> {
        let end = self.active.writer.end + self.buffer.len() as u64;
        // Recovery tells preallocated zeros from records because a fragment's type is never 0.
        if end > self.active.writer.allocated && self.options.preallocate > 0 {
            let allocated = end.next_multiple_of(self.options.preallocate).min(self.active.segment_size);
            self.set_active_len(allocated)?;
        }
        if let Err(error) = self.active.writer.write(&self.buffer) {
            return Err(self.poison(error));
        }
        assert!(self.active.writer.end <= self.active.segment_size, "a segment never grows past its size");
        Ok(())
    }

    /// Sets the active segment file's length (zeros past the records), poisoning on failure.
    pub(super) fn set_active_len(&mut self, length: u64) -> Result<()> {
        if let Err(error) = self.active.writer.set_len(length) {
            return Err(self.poison(error));
        }
        Ok(())
    }

    /// Writes the buffered records to the OS in one call, without syncing: they survive the
    /// process dying but not the machine losing power.
    pub fn flush(&mut self) -> Result<()> {
        self.begin_write()?;
        self.flush_buffer()
    }

    /// Makes every record appended so far durable.
    pub fn sync(&mut self) -> Result<()> {
        self.begin_write()?;
        self.flush_buffer()?;
        if let Err(error) = self.active.writer.sync() {
            return Err(self.poison(error));
        }
        Ok(())
    }

    /// Seals the active segment (pads its last page, syncs it) and starts the next one. Every
    /// record appended before the call is durable when it returns.
    pub fn rotate(&mut self) -> Result<()> {
        self.begin_write()?;
        self.rotate_inner()
    }

    pub(super) fn rotate_inner(&mut self) -> Result<()> {
        if self.active.seals {
            self.buffer_seal();
        }
        self.flush_buffer()?;
        // The last page is padded with zeros by extending the file, never by writing zeros: a
        // padding write that went astray could zero the last records and look like a clean
        // end (simulator, wal seed 126). Preallocated zeros past the padding stay, so that a
        // record write that went astray into them is found as non-zero bytes after the end.
        // A reused file's old bytes after the records are cut off first, for the same reason.
        let end = self.active.writer.end;
        if self.active.stale_until > end {
            self.set_active_len(end)?;
            self.active.stale_until = end;
        }
        let padded_end = end.next_multiple_of(u64::from(self.options.page_size));
        if self.active.writer.allocated < padded_end {
            self.set_active_len(padded_end)?;
        }
        self.sync()?;
        let next = self.active.number + 1;
        let started = match self.recycled.first().copied() {
            Some(old) => {
                self.recycled.remove(0);
                reuse_segment_file(self.vfs.as_ref(), &self.directory, old, next, &self.options)
            }
            None => create_segment(self.vfs.as_ref(), &self.directory, next, &self.options),
        };
        match started {
            Ok(active) => {
                self.active = active;
                Ok(())
            }
            Err(error) => Err(self.poison(error)),
        }
    }

    /// Buffers the seal fragment after the buffered records (zeros first if it must go on the
    /// next page); it reaches the file in the same write as the last records.
    pub(super) fn buffer_seal(&mut self) {
        let page_size = u64::from(self.options.page_size);
        let at = self.active.writer.end + self.buffer.len() as u64;
        let seal_at = format::seal_offset(at, page_size);
        self.buffer.resize(self.buffer.len() + usize::try_from(seal_at - at).expect("within a page"), 0);
        format::encode_fragment(&mut self.buffer, self.active.number, seal_at, FragmentType::Seal, &[]);
    }

    /// Removes every segment numbered below `segment`, durably, oldest first. `segment` may be
    /// the active segment; it may not be beyond it. Up to [`WalOptions::recycle_segments`] of the
    /// removed segments' files are kept under another name for later segments to reuse.
    pub fn truncate_before(&mut self, segment: u64) -> Result<()> {
        self.begin_write()?;
        if segment > self.active.number {
            return Err(Error::InvalidArgument {
                reason: format!("cannot truncate before segment {segment}: the last is {}", self.active.number),
            });
        }
        // Oldest first, each removal durable before the next, so a crash part way leaves the
        // remaining segments contiguous.
        while self.first_segment < segment {
            let number = self.first_segment;
            let path = self.directory.join(segment_file_name(number));
            let recycle = self.recycled.len() < self.options.recycle_segments && !self.recycled.contains(&number);
            let removed = if recycle {
                let to = self.directory.join(recycle_file_name(number));
                self.vfs.rename(&path, &to).map_err(|error| Error::io(&path, "rename", error))
            } else {
                self.vfs.remove_file(&path).map_err(|error| Error::io(&path, "remove_file", error))
            };
            let result = removed.and_then(|()| {
                self.vfs.sync_dir(&self.directory).map_err(|error| Error::io(&self.directory, "sync_dir", error))
            });
            if let Err(error) = result {
                return Err(self.poison(error));
            }
            if recycle {
                self.recycled.push(number);
            }
            self.first_segment += 1;
        }
        Ok(())
    }

    /// Syncs and closes the log. The active segment's preallocated zeros are cut off, so a
    /// closed log's files hold only what was written.
    pub fn close(mut self) -> Result<()> {
        self.begin_write()?;
        self.flush_buffer()?;
        if self.active.writer.allocated > self.active.writer.end {
            let end = self.active.writer.end;
            self.set_active_len(end)?;
        }
        self.sync()
    }
}
