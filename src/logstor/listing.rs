//! What a logstor directory holds, told from its file names: the first check an open makes.

use std::path::Path;

use super::format;
use super::io_error;
use crate::error::{Error, Result};
use crate::repair;
use crate::vfs::{self, Vfs};

/// What the directory holds, by name.
pub(super) struct Listing {
    pub data_files_count: u64,
    /// Temp files of files logstor creates atomically, left by a crash while it created one.
    pub temp_files: Vec<String>,
    pub has_meta: bool,
    pub has_plan: bool,
}

/// Whether `name` is the temp file of a file logstor creates atomically (see
/// [`vfs::create_file_atomically`] and `create_data_file`). No other `*.tmp` file is its own
/// to remove.
fn is_own_temp_file(name: &str) -> bool {
    name.strip_suffix(".tmp").is_some_and(|stem| {
        stem == format::META_FILE_NAME || stem == repair::PLAN_FILE_NAME || format::parse_data_file_name(stem).is_some()
    })
}

/// Lists the directory, refusing a file logstor does not write ([`Error::BadFileName`]) and a
/// hole in the data files' numbering ([`Error::SegmentGap`]).
pub(super) fn list(vfs: &dyn Vfs, directory: &Path) -> Result<Listing> {
    let names = vfs.read_dir(directory).map_err(io_error(directory, "read_dir"))?;
    let mut listing = Listing { data_files_count: 0, temp_files: Vec::new(), has_meta: false, has_plan: false };
    let mut data_files = Vec::new();
    for name in names {
        if name == vfs::LOCK_FILE_NAME {
            continue;
        }
        if name == format::META_FILE_NAME {
            listing.has_meta = true;
        } else if name == repair::PLAN_FILE_NAME {
            listing.has_plan = true;
        } else if is_own_temp_file(&name) {
            listing.temp_files.push(name);
        } else if let Some(index) = format::parse_data_file_name(&name) {
            data_files.push(index);
        } else {
            return Err(Error::BadFileName { file: directory.join(name) });
        }
    }
    data_files.sort_unstable();
    for (expected, &found) in data_files.iter().enumerate() {
        if found != expected as u64 {
            return Err(Error::SegmentGap { directory: directory.to_path_buf(), missing: expected as u64 });
        }
    }
    listing.data_files_count = data_files.len() as u64;
    Ok(listing)
}
