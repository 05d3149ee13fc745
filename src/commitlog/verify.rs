//! `verify`: a read-only check of a commitlog directory, for tools and users.

use std::path::Path;

use super::format::{self, IndexEntry, SEGMENT_HEADER_SIZE};
use super::inspect::{inspect, list_directory, read_index, Scope, SegmentScan};
use super::options::CommitlogOptions;
use super::segment::{CommitScanner, ScanItem};
use super::snapshot;
use super::{open_file, TornTail};
use crate::error::{Error, Result};
use crate::vfs::{OpenMode, Vfs};

/// What [`verify`] found.
#[derive(Debug)]
pub struct VerifyReport {
    pub segments_count: u64,
    pub commits_count: u64,
    pub transactions_count: u64,
    /// Where the last segment's whole commits end, if bytes follow (recovery truncates them).
    pub torn_tail: Option<TornTail>,
    /// Sealed segments whose index file is missing, damaged or wrong.
    pub indexes_damaged: Vec<u64>,
    /// Snapshot files that fail verification.
    pub snapshots_damaged: Vec<u64>,
    /// The first problem that would fail a strict open.
    pub problem: Option<Error>,
}

/// Checks segments, index files and snapshots in `directory` the way a strict open would,
/// changing nothing and taking no lock.
pub fn verify(vfs: &dyn Vfs, directory: &Path) -> Result<VerifyReport> {
    let mut report = VerifyReport {
        segments_count: 0,
        commits_count: 0,
        transactions_count: 0,
        torn_tail: None,
        indexes_damaged: Vec::new(),
        snapshots_damaged: Vec::new(),
        problem: None,
    };
    let listing = match list_directory(vfs, directory) {
        Ok(listing) => listing,
        Err(error @ Error::BadFileName { .. }) => {
            report.problem = Some(error);
            return Ok(report);
        }
        Err(error) => return Err(error),
    };
    report.segments_count = listing.segments.len() as u64;
    // Index files are checked below, entry by entry, the damaged segment's too.
    let scope = Scope {
        segments: &listing.segments,
        indexes: &[],
        cut: None,
        index_interval_bytes: CommitlogOptions::default().index_interval_bytes,
    };
    let inspection = inspect(vfs, directory, &scope)?;
    if let Some(damage) = inspection.damage {
        report.problem = Some(damage.into_error(directory));
    }
    report.commits_count = inspection.scans.iter().map(|scan| scan.commits_count).sum();
    report.transactions_count = inspection.scans.iter().map(|scan| scan.transactions_count).sum();
    if let (Some(end), Some(last)) = (inspection.torn_at, inspection.scans.last()) {
        report.torn_tail = Some(TornTail { segment: last.min_offset, offset: end, bytes_dropped: last.length - end });
    }
    let sealed_count =
        if report.problem.is_some() { inspection.scans.len() } else { inspection.scans.len().saturating_sub(1) };
    for scan in &inspection.scans[..sealed_count] {
        let path = directory.join(format::index_file_name(scan.min_offset));
        // An index is checked for what it says, not for where its entries fall: any interval
        // is valid, as long as every entry names a real commit boundary.
        let valid = listing.indexes.contains(&scan.min_offset)
            && read_index(vfs, &path, scan.min_offset)?.is_some_and(|(length, entries)| {
                length == scan.length && entries.iter().all(|entry| index_entry_is_real(vfs, directory, scan, entry))
            });
        if !valid {
            report.indexes_damaged.push(scan.min_offset);
        }
    }
    for &offset in &listing.snapshots {
        if snapshot::read_snapshot(vfs, directory, offset)?.is_none() {
            report.snapshots_damaged.push(offset);
        }
    }
    Ok(report)
}

pub(super) fn index_entry_is_real(vfs: &dyn Vfs, directory: &Path, scan: &SegmentScan, entry: &IndexEntry) -> bool {
    let path = directory.join(format::segment_file_name(scan.min_offset));
    let Ok((file, length)) = open_file(vfs, &path, OpenMode::Read) else { return false };
    if entry.position < SEGMENT_HEADER_SIZE as u64 || entry.position >= length {
        return false;
    }
    let mut scanner = CommitScanner::new(scan.min_offset, length, entry.position, entry.offset);
    matches!(scanner.next_item(file.as_ref(), &path), Ok(ScanItem::Commit { .. }))
}
