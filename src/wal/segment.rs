//! One segment file opened and scanned whole: how it must end (sealed or the active one) and
//! whether it does.

use std::path::{Path, PathBuf};

use super::format::{SegmentHeader, FRAGMENT_HEADER_SIZE, SEGMENT_HEADER_SIZE};
use super::listing::segment_file_name;
use super::scan::{self, ScanItem, SegmentScanner};
use crate::error::{CorruptionReason, Error, Result};
use crate::vfs::{OpenMode, Vfs, VfsFile};

/// A segment file opened and its header verified.
pub(super) struct SegmentFile {
    pub(super) path: PathBuf,
    pub(super) file: Box<dyn VfsFile>,
    pub(super) length: u64,
    pub(super) header: SegmentHeader,
}

/// Opens segment `number` and verifies its header and page size. Recovery has checked that
/// the log was written with `page_size` (`recovery::check_page_size`), so a header with another
/// one is corruption here.
pub(super) fn open_segment(
    vfs: &dyn Vfs,
    directory: &Path,
    number: u64,
    mode: OpenMode,
    page_size: u32,
) -> Result<SegmentFile> {
    let path = directory.join(segment_file_name(number));
    let file = vfs.open(&path, mode).map_err(|error| Error::io(&path, "open", error))?;
    let length = file.len().map_err(|error| Error::io(&path, "len", error))?;
    let header = scan::read_segment_header(file.as_ref(), &path, number, length)?;
    let found = header.page_size;
    if found != page_size {
        return Err(Error::Corruption {
            file: path,
            segment: number,
            offset: 0,
            reason: CorruptionReason::HeaderMismatch {
                field: "page_size",
                expected: u64::from(page_size),
                found: u64::from(found),
            },
        });
    }
    Ok(SegmentFile { path, file, length, header })
}

/// How a segment's data must end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ending {
    /// The last segment: its data may end anywhere, and what follows is a torn tail.
    Open,
    /// A sealed segment: its data ends with a seal fragment, then zeros.
    Sealed,
    /// A sealed segment of format version 1, which wrote no seal: its data ends at zeros.
    SealedUnmarked,
}

impl Ending {
    pub(super) fn of(sealed: bool, header: SegmentHeader) -> Self {
        match (sealed, header.seals()) {
            (false, _) => Self::Open,
            (true, true) => Self::Sealed,
            (true, false) => Self::SealedUnmarked,
        }
    }
}

/// The outcome of scanning one whole segment during recovery or verification.
pub(super) struct SegmentScan {
    pub(super) records_count: u64,
    /// End of the valid data.
    pub(super) end: u64,
    /// In the last segment: whether anything but zeros (preallocated space) follows the data.
    /// Such bytes are a torn tail.
    pub(super) torn: bool,
    /// The first damage, if any: (offset of the damaged fragment, truncation point, reason).
    pub(super) damage: Option<(u64, u64, CorruptionReason)>,
}

pub(super) fn scan_segment(segment: &SegmentFile, number: u64, page_size: u32, ending: Ending) -> Result<SegmentScan> {
    let SegmentFile { path, file, length, .. } = segment;
    let mut scanner = SegmentScanner::new(file.as_ref(), path, number, page_size, SEGMENT_HEADER_SIZE as u64, *length);
    let mut records_count = 0u64;
    loop {
        match scanner.next_item()? {
            ScanItem::Record { .. } => records_count += 1,
            item @ (ScanItem::End { offset } | ScanItem::Seal { offset }) if ending != Ending::Open => {
                let damage = check_sealed(&mut scanner, &item, ending, *length, page_size)?;
                let damage = damage.map(|(at, reason)| (at, offset, reason));
                return Ok(SegmentScan { records_count, end: offset, torn: false, damage });
            }
            ScanItem::End { offset } | ScanItem::Seal { offset } => {
                // The last segment: anything after its data, a seal included, is the torn tail
                // and the caller truncates it. (A seal is last only when a crash came between
                // the seal's sync and the next segment's creation; the records stay, and
                // appending continues in this segment.)
                let torn = scanner.first_nonzero_after(offset)?.is_some();
                return Ok(SegmentScan { records_count, end: offset, torn, damage: None });
            }
            ScanItem::Damage { offset, record_offset, reason } => {
                return Ok(SegmentScan {
                    records_count,
                    end: record_offset,
                    torn: true,
                    damage: Some((offset, record_offset, reason)),
                });
            }
        }
    }
}

/// Checks how a sealed segment's data ends, at `item` (an end or a seal): a segment that seals
/// must end at its seal, and zeros must follow. The seal is what tells a segment sealed after
/// its last record from one whose last records were written somewhere else and left zeros at
/// their place: that looks like a clean end, and a reused file's cut or a later write can erase
/// the stray copy (simulator, wal seeds 32139, 45464, 101032).
pub(super) fn check_sealed(
    scanner: &mut SegmentScanner<'_>,
    item: &ScanItem,
    ending: Ending,
    length: u64,
    page_size: u32,
) -> Result<Option<(u64, CorruptionReason)>> {
    match (item, ending) {
        (ScanItem::Seal { offset }, _) => {
            check_sealed_end(scanner, offset + FRAGMENT_HEADER_SIZE as u64, length, page_size)
        }
        (ScanItem::End { offset }, Ending::Sealed) => Ok(Some((*offset, CorruptionReason::Unsealed))),
        (ScanItem::End { offset }, _) => check_sealed_end(scanner, *offset, length, page_size),
        _ => unreachable!("called with an end or a seal"),
    }
}

/// Checks how a sealed segment ends. Sealing pads the last page with zeros and nothing writes
/// the segment again, so after the data ends at `end` there must be zeros to the end of the file
/// (the padding, then any preallocated space), and the file must reach at least the next page
/// boundary. Anything else means synced bytes went missing: a record written elsewhere than
/// meant leaves zeros at its place and non-zero bytes later, and a file cut short lost its end.
pub(super) fn check_sealed_end(
    scanner: &mut SegmentScanner<'_>,
    end: u64,
    length: u64,
    page_size: u32,
) -> Result<Option<(u64, CorruptionReason)>> {
    if let Some(nonzero) = scanner.first_nonzero_after(end)? {
        return Ok(Some((nonzero, CorruptionReason::NonZeroPadding)));
    }
    if length < end.next_multiple_of(u64::from(page_size)) {
        return Ok(Some((end, CorruptionReason::Truncated { length })));
    }
    Ok(None)
}
