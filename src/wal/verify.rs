//! `verify`: a read-only check of a WAL directory, for tools and users.

use std::path::Path;

use super::listing::{list_directory, segment_file_name};
use super::scan;
use super::segment::{open_segment, scan_segment, Ending, SegmentFile};
use super::TornTail;
use crate::error::{Error, Result};
use crate::vfs::{OpenMode, Vfs};

/// What [`verify`] found.
#[derive(Debug)]
pub struct VerifyReport {
    pub segments_count: u64,
    pub records_count: u64,
    /// Bytes after the last whole record of the last segment that recovery would truncate.
    pub torn_tail: Option<TornTail>,
    /// The first problem that would fail a strict open.
    pub problem: Option<Error>,
}

/// Checks every segment in `directory` the way a strict open would, changing nothing and taking
/// no lock. Reports the record count, a torn tail, and the first problem. The page size is read
/// from the first segment's header; a segment written with another one is a problem.
pub fn verify(vfs: &dyn Vfs, directory: &Path) -> Result<VerifyReport> {
    let mut report = VerifyReport { segments_count: 0, records_count: 0, torn_tail: None, problem: None };
    let listing = match list_directory(vfs, directory, 0) {
        Ok(listing) => listing,
        Err(error @ (Error::BadFileName { .. } | Error::SegmentGap { .. })) => {
            report.problem = Some(error);
            return Ok(report);
        }
        Err(error) => return Err(error),
    };
    report.segments_count = listing.segments.len() as u64;
    let last = listing.segments.last().copied();
    let Some(&first) = listing.segments.first() else { return Ok(report) };
    let page_size = {
        let path = directory.join(segment_file_name(first));
        let file = vfs.open(&path, OpenMode::Read).map_err(|error| Error::io(&path, "open", error))?;
        let length = file.len().map_err(|error| Error::io(&path, "len", error))?;
        match scan::read_segment_header(file.as_ref(), &path, first, length) {
            Ok(header) => header.page_size,
            Err(error @ Error::Corruption { .. }) => {
                report.problem = Some(error);
                return Ok(report);
            }
            Err(error) => return Err(error),
        }
    };
    for &number in &listing.segments {
        let sealed = Some(number) != last;
        let segment = match open_segment(vfs, directory, number, OpenMode::Read, page_size) {
            Ok(opened) => opened,
            Err(error @ Error::Corruption { .. }) => {
                report.problem = Some(error);
                return Ok(report);
            }
            Err(error) => return Err(error),
        };
        let scan = scan_segment(&segment, number, page_size, Ending::of(sealed, segment.header))?;
        let SegmentFile { path, length, .. } = segment;
        report.records_count += scan.records_count;
        match scan.damage {
            Some((offset, _, reason)) if sealed => {
                report.problem = Some(Error::Corruption { file: path, segment: number, offset, reason });
                return Ok(report);
            }
            _ if scan.torn => {
                report.torn_tail =
                    Some(TornTail { segment: number, offset: scan.end, bytes_dropped: length - scan.end });
            }
            _ => {}
        }
    }
    Ok(report)
}
