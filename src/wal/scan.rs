//! Sequential verification of one segment file: the one decoder used by recovery, readers and
//! `verify`, so that all three agree on what is valid.

use std::io;
use std::ops::Range;
use std::path::Path;

use super::format::{self, Fragment, FragmentType, SegmentHeader, FRAGMENT_HEADER_SIZE, SEGMENT_HEADER_SIZE};
use crate::error::{CorruptionReason, Error, Result};
use crate::vfs::{read_exact_retrying, VfsFile};

/// Bytes read per I/O call while scanning, rounded to whole pages.
const CHUNK_SIZE_TARGET: u64 = 1 << 20;

/// What the scanner found next.
#[derive(Debug, PartialEq, Eq)]
pub enum ScanItem {
    /// A whole, verified record whose first fragment starts at `offset`.
    Record { offset: u64, data: Vec<u8> },
    /// The data ends at `offset`: padding marked the end, or the scan limit was reached.
    End { offset: u64 },
    /// The seal fragment at `offset`: the data ends there, and the segment was sealed. The
    /// scanner's position is after the seal.
    Seal { offset: u64 },
    /// Verification failed on the fragment at `offset`. `record_offset` is where the record it
    /// belongs to starts (the place to truncate to); it equals `offset` outside a record.
    Damage { offset: u64, record_offset: u64, reason: CorruptionReason },
}

/// Where a scanner reads a segment's bytes.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// The segment's file.
    File(&'a dyn VfsFile),
    /// The active segment as its readers see it: the file below `tail_offset` (what was written
    /// to the OS), then the records still in the write buffer, `tail`. The file is never read
    /// from `tail_offset` on: it may hold a reused file's stale bytes there.
    BufferedTail { file: &'a dyn VfsFile, tail: &'a [u8], tail_offset: u64 },
}

impl<'a> From<&'a dyn VfsFile> for Source<'a> {
    fn from(file: &'a dyn VfsFile) -> Self {
        Self::File(file)
    }
}

impl Source<'_> {
    /// Reads `buf.len()` bytes at `offset`, retrying the file's transient errors
    /// ([`read_exact_retrying`]); bytes past the end are an `UnexpectedEof` error.
    fn read_exact(&self, path: &Path, buf: &mut [u8], offset: u64) -> Result<()> {
        let (file, tail, tail_offset) = match *self {
            Self::File(file) => return read_exact_retrying(file, path, buf, offset),
            Self::BufferedTail { file, tail, tail_offset } => (file, tail, tail_offset),
        };
        let in_file = usize::try_from(tail_offset.saturating_sub(offset)).unwrap_or(usize::MAX).min(buf.len());
        let (from_file, from_tail) = buf.split_at_mut(in_file);
        if !from_file.is_empty() {
            read_exact_retrying(file, path, from_file, offset)?;
        }
        if from_tail.is_empty() {
            return Ok(());
        }
        let start = usize::try_from(offset + in_file as u64 - tail_offset).unwrap_or(usize::MAX);
        match tail.get(start..start.saturating_add(from_tail.len())) {
            Some(bytes) => {
                from_tail.copy_from_slice(bytes);
                Ok(())
            }
            None => {
                let error = io::Error::new(io::ErrorKind::UnexpectedEof, "file ends early");
                Err(Error::io(path, "read_at", error))
            }
        }
    }
}

/// Walks one segment's fragments from a record boundary up to `limit`.
pub struct SegmentScanner<'a> {
    source: Source<'a>,
    path: &'a Path,
    segment: u64,
    page_size: u64,
    limit: u64,
    position: u64,
    chunk: Vec<u8>,
    chunk_offset: u64,
    record: Vec<u8>,
    record_offset: Option<u64>,
}

impl<'a> SegmentScanner<'a> {
    /// A scanner over `[start, limit)` of `file`. `start` must be a record boundary at or after
    /// the segment header.
    pub fn new(
        source: impl Into<Source<'a>>,
        path: &'a Path,
        segment: u64,
        page_size: u32,
        start: u64,
        limit: u64,
    ) -> Self {
        assert!(start >= SEGMENT_HEADER_SIZE as u64, "scan starts after the segment header");
        assert!(format::page_size_is_valid(page_size), "page size was validated");
        Self {
            source: source.into(),
            path,
            segment,
            page_size: u64::from(page_size),
            limit,
            position: start,
            chunk: Vec::new(),
            chunk_offset: 0,
            record: Vec::new(),
            record_offset: None,
        }
    }

    /// Like [`Self::new`], reusing a chunk an earlier scanner of the same file read, so that a
    /// reader stepping record by record reads each block once.
    pub fn resume(
        source: Source<'a>,
        path: &'a Path,
        segment: u64,
        page_size: u32,
        start: u64,
        limit: u64,
        (chunk, chunk_offset): (Vec<u8>, u64),
    ) -> Self {
        Self { chunk, chunk_offset, ..Self::new(source, path, segment, page_size, start, limit) }
    }

    /// The chunk read so far, for [`Self::resume`].
    pub fn into_chunk(self) -> (Vec<u8>, u64) {
        (self.chunk, self.chunk_offset)
    }

    pub fn position(&self) -> u64 {
        self.position
    }

    /// Makes `[offset, offset + length)` available in the chunk buffer and returns it. The range
    /// must lie within one page and below the limit.
    fn bytes(&mut self, offset: u64, length: u64) -> Result<&[u8]> {
        let range = self.buffered(offset, length)?;
        Ok(&self.chunk[range])
    }

    /// Like [`Self::bytes`], returning the range within `self.chunk` so other fields stay usable.
    fn buffered(&mut self, offset: u64, length: u64) -> Result<std::ops::Range<usize>> {
        assert!(offset + length <= self.limit, "read stays below the scan limit");
        let chunk_end = self.chunk_offset + self.chunk.len() as u64;
        if offset < self.chunk_offset || offset + length > chunk_end {
            let page_start = offset - offset % self.page_size;
            let chunk_size = (CHUNK_SIZE_TARGET / self.page_size).max(1) * self.page_size;
            let read_end = (page_start + chunk_size).min(self.limit);
            let size = usize::try_from(read_end - page_start).expect("chunk fits in memory");
            self.chunk.resize(size, 0);
            self.chunk_offset = page_start;
            if let Err(error) = self.source.read_exact(self.path, &mut self.chunk, page_start) {
                self.chunk.clear();
                return Err(error);
            }
        }
        let start = usize::try_from(offset - self.chunk_offset).expect("in chunk");
        let end = start + usize::try_from(length).expect("in chunk");
        Ok(start..end)
    }

    fn damage(&mut self, offset: u64, reason: CorruptionReason) -> ScanItem {
        let record_offset = self.record_offset.take().unwrap_or(offset);
        self.record.clear();
        ScanItem::Damage { offset, record_offset, reason }
    }

    /// The next record, the end of the data, or the first damage. I/O errors are `Err`.
    pub fn next_item(&mut self) -> Result<ScanItem> {
        let header_size = FRAGMENT_HEADER_SIZE as u64;
        // Each iteration advances `position` by at least one byte or returns, and positions are
        // bounded by `limit`.
        loop {
            let position = self.position;
            if position >= self.limit {
                if let Some(record_offset) = self.record_offset {
                    let item = self.damage(position, CorruptionReason::Truncated { length: position });
                    debug_assert!(matches!(item, ScanItem::Damage { record_offset: r, .. } if r == record_offset));
                    return Ok(item);
                }
                return Ok(ScanItem::End { offset: position });
            }
            let page_end = (position / self.page_size + 1) * self.page_size;
            let readable_end = page_end.min(self.limit);
            let room = page_end - position;
            if room <= header_size {
                // Too little room for a fragment: the writer padded the page with zeros.
                let bytes = self.bytes(position, readable_end - position)?;
                if bytes.iter().any(|&byte| byte != 0) {
                    return Ok(self.damage(position, CorruptionReason::NonZeroPadding));
                }
                self.position = readable_end;
                continue;
            }
            let range = self.buffered(position, readable_end - position)?;
            let bytes = &self.chunk[range.clone()];
            if bytes[0] == 0 {
                // Padding with room for a fragment marks the end of the data. Everything after
                // it in the page must be zero too, or this is not a clean end.
                if bytes.iter().any(|&byte| byte != 0) {
                    return Ok(self.damage(position, CorruptionReason::NonZeroPadding));
                }
                if self.record_offset.is_some() {
                    return Ok(self.damage(position, CorruptionReason::Truncated { length: position }));
                }
                return Ok(ScanItem::End { offset: position });
            }
            let fragment = match format::decode_fragment(bytes, self.segment, position) {
                Ok(fragment) => fragment,
                Err(reason) => return Ok(self.damage(position, reason)),
            };
            let payload =
                range.start + FRAGMENT_HEADER_SIZE..range.start + FRAGMENT_HEADER_SIZE + fragment.payload_length;
            if let Some(item) = self.take_fragment(position, &fragment, payload) {
                return Ok(item);
            }
        }
    }

    /// Takes the verified `fragment` at `position`, whose payload is `payload` of the chunk:
    /// the item it ends (a record, a seal, or damage if it is out of order), or `None` if the
    /// scan goes on after it.
    fn take_fragment(&mut self, position: u64, fragment: &Fragment, payload: Range<usize>) -> Option<ScanItem> {
        let in_record = self.record_offset.is_some();
        match (fragment.fragment_type, in_record) {
            (FragmentType::Seal, false) if fragment.payload_length == 0 => {
                self.position = position + FRAGMENT_HEADER_SIZE as u64;
                return Some(ScanItem::Seal { offset: position });
            }
            (FragmentType::Seal, false) => {
                let length = fragment.payload_length as u64;
                return Some(self.damage(position, CorruptionReason::BadLength { length }));
            }
            (FragmentType::Full | FragmentType::First, false) => {
                self.record.clear();
                self.record.extend_from_slice(&self.chunk[payload]);
                self.record_offset = Some(position);
            }
            (FragmentType::Middle | FragmentType::Last, true) => {
                self.record.extend_from_slice(&self.chunk[payload]);
            }
            (fragment_type, _) => {
                let reason = CorruptionReason::BadFragmentOrder { fragment_type: fragment_type as u8 };
                return Some(self.damage(position, reason));
            }
        }
        self.position = position + FRAGMENT_HEADER_SIZE as u64 + fragment.payload_length as u64;
        if matches!(fragment.fragment_type, FragmentType::Full | FragmentType::Last) {
            let offset = self.record_offset.take().expect("a record was started");
            return Some(ScanItem::Record { offset, data: std::mem::take(&mut self.record) });
        }
        None
    }

    /// Counts the records that verify from the scanner's position to its limit, damage or not:
    /// every record whose fragments all verify where they lie. Used only to report what a
    /// repair drops; it never fails on bad bytes.
    ///
    /// After damage the count goes on at the next offset where a fragment verifies: a
    /// fragment's checksum binds its segment and offset, so one that verifies was written there.
    /// It resumed at the next page boundary before, and missed the records after the damage in
    /// its page, and the whole first page of every segment it counted from the header on (a
    /// repair of segment 0 of four reported 648 of 730 records: `tests/engine/repair_counts.rs`).
    pub fn count_records_after_damage(&mut self) -> Result<u64> {
        let mut count = 0u64;
        // Each iteration returns or moves `position` on: past a record or a seal, to the next
        // page after zeros that end a page's data, or past damage.
        loop {
            match self.next_item()? {
                ScanItem::Record { .. } => count += 1,
                ScanItem::Seal { .. } => {}
                ScanItem::End { .. } if self.position >= self.limit => return Ok(count),
                ScanItem::End { offset } => self.restart_at((offset / self.page_size + 1) * self.page_size),
                ScanItem::Damage { offset, record_offset, .. } => {
                    // Damage found inside a record may lie where a whole fragment begins (one
                    // of another record, or zeros): look there first.
                    let from = if record_offset < offset { offset } else { offset + 1 };
                    match self.next_verified_fragment(from)? {
                        Some(at) => self.restart_at(at),
                        None => return Ok(count),
                    }
                }
            }
        }
    }

    /// Goes on scanning from `position` with no record in progress. It may be where the scan
    /// stopped, when a fragment that verifies lies there: the scan then moves past it.
    fn restart_at(&mut self, position: u64) {
        assert!(position >= self.position, "a restart never moves the scan back");
        self.position = position;
        self.record.clear();
        self.record_offset = None;
    }

    /// The first offset from `from` on where a fragment verifies, before the limit. Zeros and
    /// bytes that cannot start a fragment are passed over one by one, without the padding
    /// checks [`Self::next_item`] makes, which would read the rest of the page at each.
    fn next_verified_fragment(&mut self, from: u64) -> Result<Option<u64>> {
        let header_size = FRAGMENT_HEADER_SIZE as u64;
        let mut position = from;
        // Each iteration moves `position` on by at least one byte.
        while position < self.limit {
            let page_end = (position / self.page_size + 1) * self.page_size;
            let readable_end = page_end.min(self.limit);
            if readable_end - position < header_size {
                position = readable_end;
                continue;
            }
            let segment = self.segment;
            let bytes = self.bytes(position, readable_end - position)?;
            if FragmentType::from_byte(bytes[0]).is_some() && format::decode_fragment(bytes, segment, position).is_ok()
            {
                return Ok(Some(position));
            }
            position += 1;
        }
        Ok(None)
    }

    /// Checks that every byte from `offset` to the limit is zero; returns the first offset that
    /// is not.
    pub fn first_nonzero_after(&mut self, offset: u64) -> Result<Option<u64>> {
        let mut position = offset;
        while position < self.limit {
            let page_end = ((position / self.page_size) + 1) * self.page_size;
            let end = page_end.min(self.limit);
            let bytes = self.bytes(position, end - position)?;
            if let Some(index) = bytes.iter().position(|&byte| byte != 0) {
                return Ok(Some(position + index as u64));
            }
            position = end;
        }
        Ok(None)
    }
}

/// Reads and verifies a segment header.
pub fn read_segment_header(file: &dyn VfsFile, path: &Path, segment: u64, file_length: u64) -> Result<SegmentHeader> {
    let corruption = |reason| Error::Corruption { file: path.to_path_buf(), segment, offset: 0, reason };
    if file_length < SEGMENT_HEADER_SIZE as u64 {
        return Err(corruption(CorruptionReason::Truncated { length: file_length }));
    }
    let mut header = [0u8; SEGMENT_HEADER_SIZE];
    read_exact_retrying(file, path, &mut header, 0)?;
    format::decode_segment_header(&header, segment).map_err(corruption)
}
