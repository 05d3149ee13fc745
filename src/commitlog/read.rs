//! Reading commits back: an index seek that falls back when the index is wrong, and the
//! `Commits` and `Transactions` iterators.

use std::fmt;

use super::format::{self, IndexEntry, SEGMENT_HEADER_SIZE};
use super::segment::{CommitScanner, ScanItem};
use super::{open_file, Commit, Commitlog};
use crate::error::{CorruptionReason, Error, Result};
use crate::vfs::{OpenMode, VfsFile};

/// Iterator over commits, from [`Commitlog::commits_from`]. After an error it yields nothing.
pub struct Commits<'a> {
    log: &'a Commitlog,
    from: u64,
    segment: usize,
    start: IndexEntry,
    scanner: Option<CommitScanner>,
    file: Option<Box<dyn VfsFile>>,
    done: bool,
    /// Cleared once an index entry led somewhere wrong; the segment is then read from its start.
    trusted_index: bool,
}

impl fmt::Debug for Commits<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Commits").field("from", &self.from).field("segment", &self.segment).finish()
    }
}

impl Commits<'_> {
    pub(super) fn next_commit(&mut self) -> Result<Option<Commit>> {
        let log = self.log;
        let segments = log.segments();
        // Bounded: each iteration yields, fails, or moves to a later segment or position.
        loop {
            if self.segment >= segments.len() {
                return Ok(None);
            }
            let min_offset = segments[self.segment];
            let is_active = self.segment == log.sealed.len();
            let path = log.directory.join(format::segment_file_name(min_offset));
            if self.scanner.is_none() {
                let limit = if is_active {
                    self.file = None;
                    log.active.writer.end
                } else {
                    let (file, _) = open_file(log.vfs.as_ref(), &path, OpenMode::Read)?;
                    self.file = Some(file);
                    log.sealed[self.segment].length
                };
                self.scanner = Some(CommitScanner::new(min_offset, limit, self.start.position, self.start.offset));
            }
            let file: &dyn VfsFile = match &self.file {
                Some(file) => file.as_ref(),
                None => log.active.writer.file.as_ref(),
            };
            let scanner = self.scanner.as_mut().expect("created above");
            match scanner.next_item(file, &path)? {
                ScanItem::Commit { header, .. } => {
                    if header.last_offset() < self.from {
                        continue;
                    }
                    let bytes = scanner.commit_bytes();
                    let transactions = format::transactions(bytes).map(<[u8]>::to_vec).collect();
                    return Ok(Some(Commit { first_offset: header.first_offset, epoch: header.epoch, transactions }));
                }
                ScanItem::End { position } if position == scanner.limit() => {
                    let next_offset = scanner.next_offset();
                    if let Some(&next_segment) = segments.get(self.segment + 1) {
                        if next_segment != next_offset {
                            let reason = CorruptionReason::OutOfOrder { expected: next_offset, found: next_segment };
                            let file = log.directory.join(format::segment_file_name(next_segment));
                            return Err(Error::Corruption { file, segment: next_segment, offset: 0, reason });
                        }
                    }
                    self.segment += 1;
                    self.start = IndexEntry { offset: next_offset, position: SEGMENT_HEADER_SIZE as u64 };
                    self.scanner = None;
                }
                ScanItem::End { position } => {
                    let reason = CorruptionReason::NonZeroPadding;
                    return Err(Error::Corruption { file: path, segment: min_offset, offset: position, reason });
                }
                ScanItem::Damage { position, reason } => {
                    let from_index =
                        position == self.start.position && self.start.position != SEGMENT_HEADER_SIZE as u64;
                    if from_index && self.trusted_index {
                        // The index led to the wrong place: never trust it blindly; read the
                        // segment from its start instead.
                        tracing::warn!(path = %path.display(), position, %reason, "offset index entry is wrong");
                        self.trusted_index = false;
                        self.start = IndexEntry { offset: min_offset, position: SEGMENT_HEADER_SIZE as u64 };
                        self.scanner = None;
                        continue;
                    }
                    return Err(Error::Corruption { file: path, segment: min_offset, offset: position, reason });
                }
            }
        }
    }
}

impl Iterator for Commits<'_> {
    type Item = Result<Commit>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.next_commit().transpose();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

/// Iterator over transactions, from [`Commitlog::transactions_from`].
pub struct Transactions<'a> {
    commits: Commits<'a>,
    from: u64,
    current: Option<(u64, std::vec::IntoIter<Vec<u8>>)>,
}

impl fmt::Debug for Transactions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transactions").field("from", &self.from).finish()
    }
}

impl Iterator for Transactions<'_> {
    type Item = Result<(u64, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((offset, transactions)) = &mut self.current {
                if let Some(transaction) = transactions.next() {
                    let this = *offset;
                    *offset += 1;
                    if this >= self.from {
                        return Some(Ok((this, transaction)));
                    }
                    continue;
                }
            }
            match self.commits.next()? {
                Ok(commit) => self.current = Some((commit.first_offset, commit.transactions.into_iter())),
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

impl Commitlog {
    /// Where to start reading for `offset`: the segment holding it, and the last index entry
    /// at or before it below `limit`.
    pub(super) fn seek(&self, offset: u64) -> (usize, IndexEntry) {
        let segments = self.segments();
        let segment = segments.iter().rposition(|&min_offset| min_offset <= offset).unwrap_or(0);
        let (index, limit) = match self.sealed.get(segment) {
            Some(sealed) => (&sealed.index, sealed.length),
            None => (&self.active.index, self.active.writer.end),
        };
        let start = IndexEntry { offset: segments[segment], position: SEGMENT_HEADER_SIZE as u64 };
        let entry = index
            .iter()
            .take_while(|entry| entry.offset <= offset && entry.position < limit)
            .last()
            .copied()
            .unwrap_or(start);
        assert!(entry.position >= SEGMENT_HEADER_SIZE as u64, "an index entry points past the segment header");
        (segment, entry)
    }

    /// Iterates over the flushed commits holding `offset` and after (from the log's start if
    /// `offset` is below it), verifying each.
    pub fn commits_from(&self, offset: u64) -> Commits<'_> {
        let (segment, entry) = self.seek(offset);
        Commits {
            log: self,
            from: offset,
            segment,
            start: entry,
            scanner: None,
            file: None,
            done: false,
            trusted_index: true,
        }
    }

    /// Iterates over the flushed transactions at `offset` and after, as `(offset, payload)`.
    pub fn transactions_from(&self, offset: u64) -> Transactions<'_> {
        Transactions { commits: self.commits_from(offset), from: offset, current: None }
    }
}
