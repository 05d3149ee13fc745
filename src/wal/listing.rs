//! Segment file names, and what a directory holds by them.

use std::path::Path;

use crate::error::Result;
use crate::listing;
use crate::vfs::Vfs;

/// File name of segment `number`: at least eight decimal digits, so names sort by number.
pub fn segment_file_name(number: u64) -> String {
    format!("{number:08}")
}

/// Parses a segment file name; `None` for anything [`segment_file_name`] would not produce.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    if name.len() < 8 || !name.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let number: u64 = name.parse().ok()?;
    (segment_file_name(number) == name).then_some(number)
}

/// Suffix of the files of truncated segments kept for reuse ([`WalOptions::recycle_segments`]).
pub(super) const RECYCLE_SUFFIX: &str = ".recycle";

/// File name under which the file of truncated segment `number` waits to be reused.
pub fn recycle_file_name(number: u64) -> String {
    format!("{}{RECYCLE_SUFFIX}", segment_file_name(number))
}

/// Parses a name [`recycle_file_name`] would produce.
pub fn parse_recycle_file_name(name: &str) -> Option<u64> {
    parse_segment_file_name(name.strip_suffix(RECYCLE_SUFFIX)?)
}

/// The files found in a WAL directory.
pub(super) struct Listing {
    pub(super) segments: Vec<u64>,
    /// Segments below the first the log holds ([`WalOptions::first_segment`]), ascending.
    pub(super) obsolete: Vec<u64>,
    /// Files of truncated segments kept for reuse, ascending.
    pub(super) recycled: Vec<u64>,
    pub(super) temp_files: Vec<String>,
    pub(super) repair_plan: bool,
}

/// A file the WAL writes.
enum WalFile {
    Segment(u64),
    Recycled(u64),
}

fn parse_file_name(name: &str) -> Option<WalFile> {
    parse_recycle_file_name(name).map(WalFile::Recycled).or_else(|| parse_segment_file_name(name).map(WalFile::Segment))
}

/// Lists the directory, refusing a file the WAL does not write ([`Error::BadFileName`]) and a
/// hole in the numbering of the segments from `first_segment` on ([`Error::SegmentGap`]);
/// those below it are listed apart, as obsolete.
pub(super) fn list_directory(vfs: &dyn Vfs, directory: &Path, first_segment: u64) -> Result<Listing> {
    let listed = listing::list(vfs, directory, parse_file_name)?;
    let mut listing = Listing {
        segments: Vec::new(),
        obsolete: Vec::new(),
        recycled: Vec::new(),
        temp_files: listed.temp_files,
        repair_plan: listed.repair_plan,
    };
    for file in listed.files {
        match file {
            WalFile::Segment(number) if number < first_segment => listing.obsolete.push(number),
            WalFile::Segment(number) => listing.segments.push(number),
            WalFile::Recycled(number) => listing.recycled.push(number),
        }
    }
    listing.segments.sort_unstable();
    listing.obsolete.sort_unstable();
    listing.recycled.sort_unstable();
    let first = (first_segment > 0).then_some(first_segment);
    listing::check_contiguous(directory, &listing.segments, first)?;
    Ok(listing)
}
