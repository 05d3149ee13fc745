//! The read-only pass over a commitlog directory: what files it holds, and what scanning its
//! segments finds. Nothing here writes; recovery decides from what it finds.

use std::path::Path;

use super::format::{self, FileName, IndexEntry, SEGMENT_HEADER_SIZE};
use super::open_file;
use super::segment::{self, CommitScanner, ScanItem};
use crate::error::{CorruptionReason, Error, Result};
use crate::listing;
use crate::vfs::{self, OpenMode, Vfs};

/// The files found in a commitlog directory.
#[derive(Debug, Default)]
pub(super) struct Listing {
    pub(super) segments: Vec<u64>,
    pub(super) indexes: Vec<u64>,
    pub(super) snapshots: Vec<u64>,
    pub(super) temp_files: Vec<String>,
    pub(super) repair_plan: bool,
}

pub(super) fn list_directory(vfs: &dyn Vfs, directory: &Path) -> Result<Listing> {
    let listed = listing::list(vfs, directory, format::parse_file_name)?;
    let mut listing = Listing { temp_files: listed.temp_files, repair_plan: listed.repair_plan, ..Listing::default() };
    for file in listed.files {
        match file {
            FileName::Segment(offset) => listing.segments.push(offset),
            FileName::Index(offset) => listing.indexes.push(offset),
            FileName::Snapshot(offset) => listing.snapshots.push(offset),
        }
    }
    listing.segments.sort_unstable();
    listing.indexes.sort_unstable();
    listing.snapshots.sort_unstable();
    Ok(listing)
}

/// What scanning one segment found.
#[derive(Debug)]
pub(super) struct SegmentScan {
    pub(super) min_offset: u64,
    pub(super) length: u64,
    /// End of the valid commits.
    pub(super) end: u64,
    pub(super) next_offset: u64,
    pub(super) epoch: u64,
    pub(super) commits_count: u64,
    pub(super) transactions_count: u64,
    /// Entries every `index_interval_bytes`, as a new index file is written.
    pub(super) index: Vec<IndexEntry>,
    /// The entries of the segment's index file, when the scope checks it and it is right for
    /// the segment (see [`IndexCheck`]), whatever interval it was written with.
    pub(super) index_file: Option<Vec<IndexEntry>>,
}

/// The first corruption found, and where a repair cuts for it.
#[derive(Debug)]
pub(super) struct Damage {
    /// The segment (first offset) and byte offset reported.
    pub(super) segment: u64,
    pub(super) offset: u64,
    pub(super) reason: CorruptionReason,
    /// Where a repair cuts: this segment at this length; every later segment is removed.
    pub(super) cut_segment: u64,
    pub(super) cut_at: u64,
}

impl Damage {
    /// The corruption a strict open reports for it.
    pub(super) fn into_error(self, directory: &Path) -> Error {
        let file = directory.join(format::segment_file_name(self.segment));
        Error::Corruption { file, segment: self.segment, offset: self.offset, reason: self.reason }
    }
}

/// Everything a read-only pass over the segments found.
#[derive(Debug)]
pub(super) struct Inspection {
    pub(super) scans: Vec<SegmentScan>,
    /// Corruption of synced data: in a sealed segment, a bad header, or a gap between segments.
    pub(super) damage: Option<Damage>,
    /// Where the last segment's valid data ends, if bytes follow it (a torn tail).
    pub(super) torn_at: Option<u64>,
}

/// A cut that a repair plan found on disk has still to make: until it is carried out, an
/// inspection reads the segment as the cut will leave it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Cut {
    pub(super) segment: u64,
    /// The segment's length after the cut; below the header's size the plan rewrites the
    /// segment as an empty one (see [`repair::Segments::cut`]).
    pub(super) at: u64,
}

/// What an inspection reads.
#[derive(Clone, Copy, Debug)]
pub(super) struct Scope<'a> {
    /// The segments, ascending.
    pub(super) segments: &'a [u64],
    /// Segments with an index file to check against them; only sealed ones are checked.
    pub(super) indexes: &'a [u64],
    pub(super) cut: Option<Cut>,
    /// The interval of the entries each scan collects for an index file it may have to write
    /// ([`SegmentScan::index`]).
    pub(super) index_interval_bytes: u64,
}

/// Scans every segment in order, changing nothing; stops at the first corruption.
pub(super) fn inspect(vfs: &dyn Vfs, directory: &Path, scope: &Scope<'_>) -> Result<Inspection> {
    let mut inspection = Inspection { scans: Vec::new(), damage: None, torn_at: None };
    let mut expected: Option<u64> = None;
    for (position_in_list, &min_offset) in scope.segments.iter().enumerate() {
        let sealed = position_in_list + 1 < scope.segments.len();
        if let Some(expected) = expected.filter(|&expected| expected != min_offset) {
            let previous = inspection.scans.last().expect("a previous segment was scanned");
            let reason = if min_offset > expected {
                CorruptionReason::OutOfOrder { expected, found: min_offset }
            } else {
                CorruptionReason::Forked { expected, found: min_offset }
            };
            let (cut_segment, cut_at) = (previous.min_offset, previous.end);
            inspection.damage = Some(Damage { segment: min_offset, offset: 0, reason, cut_segment, cut_at });
            return Ok(inspection);
        }
        let (scan, problem) = match scan_segment(vfs, directory, scope, min_offset, sealed)? {
            Scanned::BadHeader(reason) => {
                let damage = Damage { segment: min_offset, offset: 0, reason, cut_segment: min_offset, cut_at: 0 };
                inspection.damage = Some(damage);
                return Ok(inspection);
            }
            Scanned::Commits(scan, problem) => (scan, problem),
        };
        expected = Some(scan.next_offset);
        let end = scan.end;
        inspection.scans.push(scan);
        if let Some((offset, reason)) = problem {
            if sealed {
                let damage = Damage { segment: min_offset, offset, reason, cut_segment: min_offset, cut_at: end };
                inspection.damage = Some(damage);
                return Ok(inspection);
            }
            inspection.torn_at = Some(end);
        }
    }
    Ok(inspection)
}

/// What scanning one segment found.
enum Scanned {
    /// Its header is damaged: none of it can be read.
    BadHeader(CorruptionReason),
    /// Its valid commits, and where and why they stop short of its end, if they do.
    Commits(SegmentScan, Option<(u64, CorruptionReason)>),
}

fn scan_segment(vfs: &dyn Vfs, directory: &Path, scope: &Scope<'_>, min_offset: u64, sealed: bool) -> Result<Scanned> {
    let path = directory.join(format::segment_file_name(min_offset));
    let (file, file_length) = open_file(vfs, &path, OpenMode::Read)?;
    let cut_at = scope.cut.filter(|cut| cut.segment == min_offset).map(|cut| cut.at);
    let rewritten_empty = cut_at.is_some_and(|at| at < SEGMENT_HEADER_SIZE as u64);
    let length = match cut_at {
        _ if rewritten_empty => SEGMENT_HEADER_SIZE as u64,
        Some(at) => file_length.min(at),
        None => file_length,
    };
    if !rewritten_empty {
        match segment::read_segment_header(file.as_ref(), &path, min_offset, length) {
            Ok(()) => {}
            Err(Error::Corruption { reason, .. }) => return Ok(Scanned::BadHeader(reason)),
            Err(error) => return Err(error),
        }
    }
    let index_path = directory.join(format::index_file_name(min_offset));
    let mut index_check = if sealed && scope.indexes.contains(&min_offset) {
        read_index(vfs, &index_path, min_offset)?.map(IndexCheck::new)
    } else {
        None
    };
    let mut scanner = CommitScanner::new(min_offset, length, SEGMENT_HEADER_SIZE as u64, min_offset);
    let mut scan = SegmentScan {
        min_offset,
        length,
        end: SEGMENT_HEADER_SIZE as u64,
        next_offset: min_offset,
        epoch: 0,
        commits_count: 0,
        transactions_count: 0,
        index: Vec::new(),
        index_file: None,
    };
    let problem = loop {
        match scanner.next_item(file.as_ref(), &path)? {
            ScanItem::Commit { position, header } => {
                let due = scan.index.last().is_none_or(|last| position - last.position >= scope.index_interval_bytes);
                if due {
                    scan.index.push(IndexEntry { offset: header.first_offset, position });
                }
                if let Some(check) = &mut index_check {
                    check.commit(position, header.first_offset);
                }
                scan.commits_count += 1;
                scan.transactions_count += u64::from(header.transactions_count);
                scan.end = scanner.position();
                scan.next_offset = scanner.next_offset();
                scan.epoch = scanner.epoch();
            }
            ScanItem::End { position } if position == length => break None,
            // Zeros after the data: a sealed segment ends exactly at its last commit.
            ScanItem::End { position } => break Some((position, CorruptionReason::NonZeroPadding)),
            ScanItem::Damage { position, reason } => break Some((position, reason)),
        }
    };
    if problem.is_none() {
        scan.index_file = index_check.and_then(|check| check.finish(length));
    }
    Ok(Scanned::Commits(scan, problem))
}

/// Checks an index file against its segment while a scan walks the segment's commits. The
/// index is right when its entries name, in order, commits the scan finds at those positions,
/// and it covers the segment's whole length: whatever interval it was written with, it then
/// cannot send a reader anywhere but to the start of a commit.
struct IndexCheck {
    indexed_length: u64,
    entries: Vec<IndexEntry>,
    /// Entries matched with a commit so far.
    matched: usize,
    wrong: bool,
}

impl IndexCheck {
    fn new((indexed_length, entries): (u64, Vec<IndexEntry>)) -> Self {
        Self { indexed_length, entries, matched: 0, wrong: false }
    }

    /// The scan found the commit holding `first_offset` at `position`.
    fn commit(&mut self, position: u64, first_offset: u64) {
        let Some(entry) = self.entries.get(self.matched) else { return };
        if entry.position == position {
            self.wrong |= entry.offset != first_offset;
            self.matched += 1;
        } else if entry.position < position {
            // The entry points inside the commit before this one, or is out of order.
            self.wrong = true;
        }
    }

    /// The index's entries, if it is right for a segment of `length` bytes that scanned clean.
    fn finish(self, length: u64) -> Option<Vec<IndexEntry>> {
        let right = !self.wrong && self.matched == self.entries.len() && self.indexed_length == length;
        right.then_some(self.entries)
    }
}

/// Counts what a repair cutting `segment` at `cut_at` and removing `later` drops: the commits
/// that verify after the cut and in the later segments, wherever they lie (a commit at the cut
/// itself counts when it verifies: it was cut for its offset or epoch), and the bytes cut off
/// or removed. A cut below the header rewrites the segment empty, its header alone.
///
/// Regression: the search for commits started one byte after where it was told to, so the
/// first commit of every segment counted from its header on was missed (a repair of the first
/// of four segments reported 78 of 82 commits, `tests/engine/repair_counts.rs`), and a
/// segment rewritten empty counted its new header as dropped.
pub(super) fn count_dropped(
    vfs: &dyn Vfs,
    directory: &Path,
    segment: u64,
    cut_at: u64,
    later: &[u64],
) -> Result<(u64, u64)> {
    let header_size = SEGMENT_HEADER_SIZE as u64;
    let mut commits = 0;
    let mut bytes = 0;
    let cut = std::iter::once((segment, cut_at.max(header_size)));
    for (min_offset, kept) in cut.chain(later.iter().map(|&later| (later, 0))) {
        let path = directory.join(format::segment_file_name(min_offset));
        let (file, length) = open_file(vfs, &path, OpenMode::Read)?;
        bytes += length.saturating_sub(kept);
        let start = kept.max(header_size);
        if start < length {
            let mut scanner = CommitScanner::new(min_offset, length, start, 0);
            commits += scanner.count_commits_after_damage(file.as_ref(), &path)?;
        }
    }
    Ok((commits, bytes))
}

/// Reads an index file; `None` if it is damaged (it will be rebuilt).
pub(super) fn read_index(vfs: &dyn Vfs, path: &Path, min_offset: u64) -> Result<Option<(u64, Vec<IndexEntry>)>> {
    let (file, length) = open_file(vfs, path, OpenMode::Read)?;
    let mut bytes =
        vec![0u8; usize::try_from(length).map_err(|_| Error::InvalidArgument { reason: "index too large".into() })?];
    vfs::read_exact_retrying(file.as_ref(), path, &mut bytes, 0)?;
    Ok(format::decode_index(&bytes, min_offset).ok())
}
