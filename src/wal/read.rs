//! Reading records back: the `Records` iterator, which reads the active segment's unflushed
//! tail from its buffer.

use std::fmt;
use std::path::PathBuf;

use super::format::SEGMENT_HEADER_SIZE;
use super::scan::{ScanItem, SegmentScanner, Source};
use super::segment::{check_sealed, open_segment, Ending, SegmentFile};
use super::{Position, Wal};
use crate::error::{CorruptionReason, Error, Result};
use crate::vfs::{OpenMode, VfsFile};

/// Iterator over records, returned by [`Wal::records_from`]. Yields `(position, record)`; after
/// an error it yields nothing more.
pub struct Records<'a> {
    wal: &'a Wal,
    segment: u64,
    offset: u64,
    state: Option<OpenedSegment>,
    /// The bytes of the current segment read so far, reused from record to record.
    chunk: (Vec<u8>, u64),
    done: bool,
}

impl fmt::Debug for Records<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Records").field("segment", &self.segment).field("offset", &self.offset).finish()
    }
}

pub(super) struct OpenedSegment {
    pub(super) path: PathBuf,
    // None for the active segment, which is read through the writer's handle.
    pub(super) file: Option<Box<dyn VfsFile>>,
    pub(super) limit: u64,
    pub(super) ending: Ending,
}

/// Where a reader reads `state`'s bytes: its file, or for the active segment, the file up to
/// what was written to the OS and the write buffer after it.
fn source_of<'b>(wal: &'b Wal, state: &'b OpenedSegment) -> Source<'b> {
    match &state.file {
        Some(file) => Source::File(file.as_ref()),
        None => Source::BufferedTail {
            file: wal.active.writer.file.as_ref(),
            tail: &wal.buffer,
            tail_offset: wal.active.writer.end,
        },
    }
}

impl Records<'_> {
    /// The segment the reader is in, as it reads it: the active one through its write buffer,
    /// any other opened from its file.
    fn open_current(&self, is_active: bool) -> Result<OpenedSegment> {
        let wal = self.wal;
        if is_active {
            return Ok(OpenedSegment {
                path: wal.active.writer.path.clone(),
                file: None,
                limit: wal.active.writer.end + wal.buffer.len() as u64,
                ending: Ending::Open,
            });
        }
        let SegmentFile { path, file, length, header } =
            open_segment(wal.vfs.as_ref(), &wal.directory, self.segment, OpenMode::Read, wal.options.page_size)?;
        Ok(OpenedSegment { path, file: Some(file), limit: length, ending: Ending::of(true, header) })
    }

    fn move_to_next_segment(&mut self) {
        self.segment += 1;
        self.offset = SEGMENT_HEADER_SIZE as u64;
        self.state = None;
        self.chunk = (Vec::new(), 0);
    }

    pub(super) fn next_record(&mut self) -> Result<Option<(Position, Vec<u8>)>> {
        let wal = self.wal;
        // Bounded by the number of segments: each iteration either returns or moves to the next.
        loop {
            if self.segment > wal.active.number {
                return Ok(None);
            }
            let is_active = self.segment == wal.active.number;
            if self.state.is_none() {
                self.state = Some(self.open_current(is_active)?);
            }
            let state = self.state.as_ref().expect("opened above");
            let source = source_of(wal, state);
            let chunk = std::mem::take(&mut self.chunk);
            let mut scanner = SegmentScanner::resume(
                source,
                &state.path,
                self.segment,
                wal.options.page_size,
                self.offset,
                state.limit,
                chunk,
            );
            let item = scanner.next_item();
            let position = scanner.position();
            let end_check = match &item {
                Ok(item @ (ScanItem::End { .. } | ScanItem::Seal { .. })) if !is_active => {
                    Some(check_sealed(&mut scanner, item, state.ending, state.limit, wal.options.page_size))
                }
                _ => None,
            };
            self.chunk = scanner.into_chunk();
            match item? {
                ScanItem::Record { offset, data } => {
                    self.offset = position;
                    return Ok(Some((Position { segment: self.segment, offset }, data)));
                }
                ScanItem::End { offset } if is_active && offset < state.limit => {
                    return Err(Error::Corruption {
                        file: state.path.clone(),
                        segment: self.segment,
                        offset,
                        reason: CorruptionReason::Truncated { length: offset },
                    });
                }
                ScanItem::Seal { .. } if is_active => {
                    // Only a poisoned handle whose rotation failed after the seal reads one here.
                    return Ok(None);
                }
                ScanItem::End { .. } | ScanItem::Seal { .. } => {
                    // A sealed segment's data ends only at its seal, where zero padding runs to
                    // its end; zeros before it mean records are missing, not that none are left.
                    if let Some(check) = end_check {
                        if let Some((at, reason)) = check? {
                            return Err(Error::Corruption {
                                file: state.path.clone(),
                                segment: self.segment,
                                offset: at,
                                reason,
                            });
                        }
                    }
                    self.move_to_next_segment();
                }
                ScanItem::Damage { offset, reason, .. } => {
                    return Err(Error::Corruption { file: state.path.clone(), segment: self.segment, offset, reason });
                }
            }
        }
    }
}

impl Iterator for Records<'_> {
    type Item = Result<(Position, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_record() {
            Ok(Some(item)) => Some(Ok(item)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

impl Wal {
    /// Iterates over the records from `from` (a record start, or [`Position::segment_start`]) to
    /// the end of what this handle has written, verifying each.
    pub fn records_from(&self, from: Position) -> Result<Records<'_>> {
        if from.segment < self.first_segment || from.segment > self.active.number {
            return Err(Error::InvalidArgument {
                reason: format!(
                    "segment {} is outside the log's segments {}..={}",
                    from.segment, self.first_segment, self.active.number
                ),
            });
        }
        Ok(Records {
            wal: self,
            segment: from.segment,
            offset: from.offset.max(SEGMENT_HEADER_SIZE as u64),
            state: None,
            chunk: (Vec::new(), 0),
            done: false,
        })
    }

    /// Iterates over every record in the log.
    pub fn records(&self) -> Records<'_> {
        self.records_from(Position::segment_start(self.first_segment)).expect("the first segment is in range")
    }
}
