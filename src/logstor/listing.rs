//! What a logstor directory holds, told from its file names: the first check an open makes.

use std::path::Path;

use super::format;
use crate::error::Result;
use crate::listing;
use crate::vfs::Vfs;

/// What the directory holds, by name.
pub(super) struct Listing {
    pub data_files_count: u64,
    /// Temp files of files logstor creates atomically, left by a crash while it created one.
    pub temp_files: Vec<String>,
    pub has_meta: bool,
    pub has_plan: bool,
}

/// A file logstor writes.
enum LogstorFile {
    Meta,
    Data(u64),
}

fn parse_file_name(name: &str) -> Option<LogstorFile> {
    if name == format::META_FILE_NAME {
        return Some(LogstorFile::Meta);
    }
    format::parse_data_file_name(name).map(LogstorFile::Data)
}

/// Lists the directory, refusing a file logstor does not write ([`Error::BadFileName`]) and a
/// hole in the data files' numbering ([`Error::SegmentGap`]).
///
/// [`Error::BadFileName`]: crate::Error::BadFileName
/// [`Error::SegmentGap`]: crate::Error::SegmentGap
pub(super) fn list(vfs: &dyn Vfs, directory: &Path) -> Result<Listing> {
    let listed = listing::list(vfs, directory, parse_file_name)?;
    let mut has_meta = false;
    let mut data_files = Vec::new();
    for file in listed.files {
        match file {
            LogstorFile::Meta => has_meta = true,
            LogstorFile::Data(index) => data_files.push(index),
        }
    }
    data_files.sort_unstable();
    listing::check_contiguous(directory, &data_files, Some(0))?;
    Ok(Listing {
        data_files_count: data_files.len() as u64,
        temp_files: listed.temp_files,
        has_meta,
        has_plan: listed.repair_plan,
    })
}
