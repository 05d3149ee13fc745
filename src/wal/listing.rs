//! Segment file names, and what a directory holds by them.

use std::path::Path;

use crate::error::{Error, Result};
use crate::repair;
use crate::vfs::{self, Vfs};

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
    /// Files of truncated segments kept for reuse, ascending.
    pub(super) recycled: Vec<u64>,
    pub(super) temp_files: Vec<String>,
    pub(super) repair_plan: bool,
}

pub(super) fn list_directory(vfs: &dyn Vfs, directory: &Path) -> Result<Listing> {
    let names = vfs.read_dir(directory).map_err(|error| Error::io(directory, "read_dir", error))?;
    let mut listing =
        Listing { segments: Vec::new(), recycled: Vec::new(), temp_files: Vec::new(), repair_plan: false };
    for name in names {
        if name == vfs::LOCK_FILE_NAME {
            continue;
        }
        if name == repair::PLAN_FILE_NAME {
            listing.repair_plan = true;
            continue;
        }
        if name.ends_with(".tmp") {
            listing.temp_files.push(name);
            continue;
        }
        if let Some(number) = parse_recycle_file_name(&name) {
            listing.recycled.push(number);
            continue;
        }
        match parse_segment_file_name(&name) {
            Some(number) => listing.segments.push(number),
            None => return Err(Error::BadFileName { file: directory.join(name) }),
        }
    }
    listing.segments.sort_unstable();
    listing.recycled.sort_unstable();
    for pair in listing.segments.windows(2) {
        if pair[1] != pair[0] + 1 {
            return Err(Error::SegmentGap { directory: directory.to_path_buf(), missing: pair[0] + 1 });
        }
    }
    Ok(listing)
}
