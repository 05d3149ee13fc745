//! The write path: commits into the active segment's buffer, flush, sync, rotation with the
//! offset index, and `reset_to`.

use super::format::{self, IndexEntry, SEGMENT_HEADER_SIZE};
use super::segment::{CommitScanner, ScanItem};
use super::{io_error, open_file, Commitlog, Sealed};
use crate::error::{CorruptionReason, Error, Result};
use crate::segment_writer::SegmentWriter;
use crate::vfs::{self, OpenMode};

pub(super) struct Active {
    pub(super) min_offset: u64,
    /// Its file; readers stop at `writer.end`, the bytes written to the OS.
    pub(super) writer: SegmentWriter,
    pub(super) index: Vec<IndexEntry>,
}

/// The most of [`CommitlogOptions::write_buffer_size`] an open allocates up front.
pub(super) const WRITE_BUFFER_PREALLOCATED_MAX: usize = 1 << 20;

impl Commitlog {
    /// Sets the epoch stamped on later commits. Epochs never go down: a lower one is
    /// [`Error::EpochRegression`]. The epoch becomes durable with the next synced commit.
    pub fn set_epoch(&mut self, epoch: u64) -> Result<()> {
        if epoch < self.epoch {
            return Err(Error::EpochRegression { current: self.epoch, requested: epoch });
        }
        self.epoch = epoch;
        Ok(())
    }

    /// Buffers one commit holding every `(offset, payload)` given. The offsets must continue
    /// the log contiguously from [`Commitlog::next_offset`]; otherwise
    /// [`Error::OffsetMismatch`] and nothing is buffered. The commit reaches the OS at the next
    /// [`Commitlog::flush`] (or when the buffer fills) and the disk at the next
    /// [`Commitlog::sync`].
    pub fn commit(&mut self, transactions: &[(u64, &[u8])]) -> Result<()> {
        self.health.check()?;
        // Arguments first: a refused commit does no I/O at all.
        if transactions.is_empty() {
            return Err(Error::InvalidArgument { reason: "a commit holds at least one transaction".to_string() });
        }
        for (index, &(offset, _)) in transactions.iter().enumerate() {
            let expected = self.next_offset + index as u64;
            if offset != expected {
                return Err(Error::OffsetMismatch { expected, found: offset });
            }
        }
        let payloads = transactions.iter().map(|&(_, payload)| payload);
        let Some(payload_length) = format::payload_length(payloads.clone()) else {
            let length = transactions.iter().map(|(_, payload)| payload.len() as u64).sum();
            return Err(Error::RecordTooLarge { length, max: u64::from(u32::MAX) });
        };
        if u32::try_from(transactions.len()).is_err() {
            return Err(Error::RecordTooLarge { length: transactions.len() as u64, max: u64::from(u32::MAX) });
        }
        self.begin_write()?;
        let size = format::COMMIT_HEADER_SIZE as u64 + u64::from(payload_length);
        let active_has_commits = self.next_offset > self.active.min_offset;
        if active_has_commits
            && self.active.writer.end + self.buffer.len() as u64 + size > self.options.segment_size_max
        {
            self.rotate_inner()?;
        }
        let position = self.active.writer.end + self.buffer.len() as u64;
        assert!(position >= SEGMENT_HEADER_SIZE as u64, "commits follow the segment header");
        let index_due =
            self.active.index.last().is_none_or(|last| position - last.position >= self.options.index_interval_bytes);
        if index_due {
            self.active.index.push(IndexEntry { offset: self.next_offset, position });
        }
        format::encode_commit(
            &mut self.buffer,
            self.active.min_offset,
            position,
            self.next_offset,
            self.epoch,
            payloads,
        );
        self.next_offset += transactions.len() as u64;
        self.transactions_since_snapshot += transactions.len() as u64;
        if self.buffer.len() >= self.options.write_buffer_size {
            self.flush_inner()?;
        }
        Ok(())
    }

    /// Writes buffered commits to the OS in one call. They are visible to readers after it, but
    /// not durable until [`Commitlog::sync`].
    pub fn flush(&mut self) -> Result<()> {
        self.begin_write()?;
        self.flush_inner()
    }

    pub(super) fn flush_inner(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        if let Err(error) = self.active.writer.write(&self.buffer) {
            return Err(self.poison(error));
        }
        self.buffer.clear();
        Ok(())
    }

    /// Flushes and fsyncs: every commit before the call survives a crash once it returns.
    pub fn sync(&mut self) -> Result<()> {
        self.begin_write()?;
        self.flush_inner()?;
        if let Err(error) = self.active.writer.sync() {
            return Err(self.poison(error));
        }
        Ok(())
    }

    /// Seals the active segment (if it holds a commit) and starts the next. Everything
    /// committed before is durable when it returns, and a snapshot falls due.
    pub fn rotate(&mut self) -> Result<()> {
        self.begin_write()?;
        if self.next_offset > self.active.min_offset {
            self.rotate_inner()?;
        }
        Ok(())
    }

    pub(super) fn rotate_inner(&mut self) -> Result<()> {
        assert!(self.next_offset > self.active.min_offset, "only a segment holding a commit is sealed");
        self.sync()?;
        let index = format::encode_index(self.active.min_offset, self.active.writer.end, &self.active.index);
        let index_name = format::index_file_name(self.active.min_offset);
        let next_name = format::segment_file_name(self.next_offset);
        let header = format::encode_segment_header(self.next_offset);
        let created = vfs::create_file_atomically(self.vfs.as_ref(), &self.directory, &index_name, &index)
            .and_then(|_| vfs::create_file_atomically(self.vfs.as_ref(), &self.directory, &next_name, &header));
        let file = match created {
            Ok(file) => file,
            Err(error) => return Err(self.poison(error)),
        };
        let end = SEGMENT_HEADER_SIZE as u64;
        let next = Active {
            min_offset: self.next_offset,
            writer: SegmentWriter::new(self.directory.join(next_name), file, end, end),
            index: Vec::new(),
        };
        let old = std::mem::replace(&mut self.active, next);
        assert!(
            self.sealed.last().is_none_or(|last| last.next_offset == old.min_offset),
            "sealed segments run on one from the other"
        );
        self.sealed.push(Sealed {
            min_offset: old.min_offset,
            next_offset: self.next_offset,
            length: old.writer.end,
            index: old.index,
        });
        self.rotated_since_snapshot = true;
        Ok(())
    }

    /// Durably removes every commit after `offset`: a commit holding `offset` and later offsets
    /// goes whole. Snapshots beyond the new end go too. Returns the new next offset. Refused
    /// with [`Error::InvalidArgument`] when retention has removed the log's start and no
    /// snapshot at or below `offset` would remain to restore from.
    pub fn reset_to(&mut self, offset: u64) -> Result<u64> {
        self.begin_write()?;
        if offset.saturating_add(1) >= self.next_offset {
            return Ok(self.next_offset);
        }
        if offset.saturating_add(1) < self.first_offset() {
            return Err(Error::InvalidArgument {
                reason: format!("cannot reset to {offset}: the log starts at {}", self.first_offset()),
            });
        }
        // Retention removed the log's start: restoring then needs a snapshot at or below the
        // reset point, since every snapshot beyond it goes.
        if self.first_offset() > 0 && !self.snapshots.iter().any(|&snapshot| snapshot <= offset) {
            return Err(Error::InvalidArgument {
                reason: format!(
                    "cannot reset to {offset}: the log before {} was removed and no snapshot at or below {offset} \
                     would be left to restore from",
                    self.first_offset()
                ),
            });
        }
        let result = self.reset_inner(offset);
        match result {
            Ok(next) => Ok(next),
            Err(error) => Err(self.poison(error)),
        }
    }

    pub(super) fn reset_inner(&mut self, offset: u64) -> Result<u64> {
        self.flush_inner()?;
        let vfs = self.vfs.as_ref();
        let directory = self.directory.clone();
        let segments = self.segments();
        let keep = segments.iter().rposition(|&min_offset| min_offset <= offset).unwrap_or(0);
        // Newest first, each removal durable, so a crash part way leaves a prefix of the log.
        for &min_offset in segments[keep + 1..].iter().rev() {
            for name in [format::segment_file_name(min_offset), format::index_file_name(min_offset)] {
                vfs::remove_durably(vfs, &directory, &name)?;
            }
        }
        let min_offset = segments[keep];
        let path = directory.join(format::segment_file_name(min_offset));
        let (file, length) = open_file(vfs, &path, OpenMode::ReadWrite)?;
        let mut scanner = CommitScanner::new(min_offset, length, SEGMENT_HEADER_SIZE as u64, min_offset);
        let mut index = Vec::new();
        let (cut, next_offset) = loop {
            match scanner.next_item(file.as_ref(), &path)? {
                ScanItem::Commit { position, header } if header.last_offset() > offset => {
                    break (position, header.first_offset);
                }
                ScanItem::Commit { position, header } => {
                    if index
                        .last()
                        .is_none_or(|last: &IndexEntry| position - last.position >= self.options.index_interval_bytes)
                    {
                        index.push(IndexEntry { offset: header.first_offset, position });
                    }
                }
                ScanItem::End { position } if position == length => break (position, scanner.next_offset()),
                // Zeros before the end of the file: commits went missing there (a misdirected
                // write), so cutting here would drop commits the caller asked to keep.
                ScanItem::End { position } => {
                    let reason = CorruptionReason::NonZeroPadding;
                    return Err(Error::Corruption { file: path, segment: min_offset, offset: position, reason });
                }
                ScanItem::Damage { position, reason } => {
                    return Err(Error::Corruption { file: path, segment: min_offset, offset: position, reason });
                }
            }
        };
        vfs::truncate_durably(file.as_ref(), &path, cut)?;
        if keep < self.sealed.len() {
            // The kept segment becomes the active one, which has no index file.
            let index_path = directory.join(format::index_file_name(min_offset));
            vfs.remove_file(&index_path).map_err(io_error(&index_path, "remove_file"))?;
            vfs.sync_dir(&directory).map_err(io_error(&directory, "sync_dir"))?;
        }
        let beyond: Vec<u64> = self.snapshots.iter().copied().filter(|&snapshot| snapshot >= next_offset).collect();
        for snapshot in beyond {
            let snapshot_path = directory.join(format::snapshot_file_name(snapshot));
            vfs.remove_file(&snapshot_path).map_err(io_error(&snapshot_path, "remove_file"))?;
            vfs.sync_dir(&directory).map_err(io_error(&directory, "sync_dir"))?;
            self.snapshots.retain(|&kept| kept != snapshot);
        }
        assert!(next_offset <= offset + 1 && next_offset >= min_offset, "the reset keeps a prefix up to offset");
        self.sealed.truncate(keep);
        self.active = Active { min_offset, writer: SegmentWriter::new(path, file, cut, cut), index };
        self.next_offset = next_offset;
        self.transactions_since_snapshot = 0;
        Ok(next_offset)
    }

    /// Syncs and closes the log.
    pub fn close(mut self) -> Result<()> {
        self.sync()
    }
}
