//! Sequential verification of one commitlog segment: the one decoder recovery, readers and
//! `verify` share.

use std::path::Path;

use super::format::{self, CommitHeader, COMMIT_HEADER_SIZE, SEGMENT_HEADER_SIZE};
use crate::error::{CorruptionReason, Error, Result};
use crate::vfs::{read_exact_retrying, VfsFile};

/// Bytes read per I/O call while scanning (a larger commit is read whole).
const CHUNK_SIZE: u64 = 1 << 20;

#[derive(Debug, PartialEq, Eq)]
pub enum ScanItem {
    /// A verified commit at `position`; its bytes are [`CommitScanner::commit_bytes`].
    Commit { position: u64, header: CommitHeader },
    /// The data ends at `position`: the limit, or zeros.
    End { position: u64 },
    /// The commit at `position` failed verification.
    Damage { position: u64, reason: CorruptionReason },
}

/// Walks a segment's commits from a commit boundary up to `limit`, checking that offsets
/// continue without gaps or repeats and that epochs never go down.
#[derive(Debug)]
pub struct CommitScanner {
    min_offset: u64,
    limit: u64,
    position: u64,
    next_offset: u64,
    epoch: u64,
    chunk: Vec<u8>,
    chunk_offset: u64,
    commit: std::ops::Range<usize>,
}

impl CommitScanner {
    /// A scanner from `position`, where the commit holding `next_offset` must start. Every call
    /// is handed the segment's file; it must be the same file each time.
    pub fn new(min_offset: u64, limit: u64, position: u64, next_offset: u64) -> Self {
        assert!(position >= SEGMENT_HEADER_SIZE as u64, "scans start after the segment header");
        Self { min_offset, limit, position, next_offset, epoch: 0, chunk: Vec::new(), chunk_offset: 0, commit: 0..0 }
    }

    pub fn position(&self) -> u64 {
        self.position
    }

    /// The offset the next commit must start at.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The bytes of the commit the last `Commit` item described.
    pub fn commit_bytes(&self) -> &[u8] {
        &self.chunk[self.commit.clone()]
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    fn buffered(&mut self, io: Io<'_>, offset: u64, length: u64) -> Result<std::ops::Range<usize>> {
        assert!(offset + length <= self.limit, "reads stay below the scan limit");
        let chunk_end = self.chunk_offset + self.chunk.len() as u64;
        if offset < self.chunk_offset || offset + length > chunk_end {
            let size = length.max(CHUNK_SIZE).min(self.limit - offset);
            self.chunk.resize(usize::try_from(size).expect("a chunk fits in memory"), 0);
            self.chunk_offset = offset;
            if let Err(error) = read_exact_retrying(io.0, io.1, &mut self.chunk, offset) {
                self.chunk.clear();
                return Err(error);
            }
        }
        let start = usize::try_from(offset - self.chunk_offset).expect("in chunk");
        Ok(start..start + usize::try_from(length).expect("in chunk"))
    }

    pub fn next_item(&mut self, file: &dyn VfsFile, path: &Path) -> Result<ScanItem> {
        let io = Io(file, path);
        let position = self.position;
        if position >= self.limit {
            return Ok(ScanItem::End { position });
        }
        let available = self.limit - position;
        let header_length = available.min(COMMIT_HEADER_SIZE as u64);
        let range = self.buffered(io, position, header_length)?;
        let header_bytes = &self.chunk[range];
        if header_bytes.iter().all(|&byte| byte == 0) {
            return Ok(ScanItem::End { position });
        }
        let header = match format::decode_commit_header(header_bytes, available) {
            Ok(header) => header,
            Err(reason) => return Ok(ScanItem::Damage { position, reason }),
        };
        let range = self.buffered(io, position, header.size())?;
        if let Err(reason) = format::verify_commit(&self.chunk[range.clone()], self.min_offset, position) {
            return Ok(ScanItem::Damage { position, reason });
        }
        if header.first_offset > self.next_offset {
            let reason = CorruptionReason::OutOfOrder { expected: self.next_offset, found: header.first_offset };
            return Ok(ScanItem::Damage { position, reason });
        }
        if header.first_offset < self.next_offset {
            let reason = CorruptionReason::Forked { expected: self.next_offset, found: header.first_offset };
            return Ok(ScanItem::Damage { position, reason });
        }
        if header.epoch < self.epoch {
            let reason = CorruptionReason::EpochRegression { previous: self.epoch, found: header.epoch };
            return Ok(ScanItem::Damage { position, reason });
        }
        self.commit = range;
        self.position = position + header.size();
        self.next_offset = header.last_offset() + 1;
        self.epoch = header.epoch;
        Ok(ScanItem::Commit { position, header })
    }

    /// Counts the commits that verify from the scanner's position (included) to its limit,
    /// damage or not, by searching forward for the commit magic: a commit's checksum binds its
    /// segment and position, so one that verifies was written there. Used only to report what
    /// a repair drops; never fails on bad bytes.
    pub fn count_commits_after_damage(&mut self, file: &dyn VfsFile, path: &Path) -> Result<u64> {
        let io = Io(file, path);
        let mut count = 0;
        let mut position = self.position;
        // Each iteration moves `position` forward by at least one byte.
        while position + COMMIT_HEADER_SIZE as u64 <= self.limit {
            let range = self.buffered(io, position, COMMIT_HEADER_SIZE as u64)?;
            let available = self.limit - position;
            if self.chunk[range.clone()][0..4] == format::COMMIT_MAGIC {
                if let Ok(header) = format::decode_commit_header(&self.chunk[range], available) {
                    let range = self.buffered(io, position, header.size())?;
                    if format::verify_commit(&self.chunk[range], self.min_offset, position).is_ok() {
                        count += 1;
                        position += header.size();
                        continue;
                    }
                }
            }
            position += 1;
        }
        Ok(count)
    }
}

/// The file a scanner reads, and its path for errors.
#[derive(Clone, Copy)]
struct Io<'a>(&'a dyn VfsFile, &'a Path);

/// Reads and verifies the header of the segment starting at `min_offset`.
pub fn read_segment_header(file: &dyn VfsFile, path: &Path, min_offset: u64, file_length: u64) -> Result<()> {
    let corruption = |reason| Error::Corruption { file: path.to_path_buf(), segment: min_offset, offset: 0, reason };
    if file_length < SEGMENT_HEADER_SIZE as u64 {
        return Err(corruption(CorruptionReason::Truncated { length: file_length }));
    }
    let mut header = [0u8; SEGMENT_HEADER_SIZE];
    read_exact_retrying(file, path, &mut header, 0)?;
    format::decode_segment_header(&header, min_offset).map_err(corruption)
}
