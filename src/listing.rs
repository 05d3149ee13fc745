//! What a structure's directory holds, told from its file names: the first check every open
//! makes, and the one place that knows the names every structure shares (the `LOCK` file, the
//! repair plan, temp files).

use std::path::Path;

use crate::error::{Error, Result};
use crate::repair;
use crate::vfs::{self, Vfs};

/// A directory's files, sorted out by name.
#[derive(Debug)]
pub(crate) struct Listing<F> {
    /// The structure's own files, each as `parse` told it, in no particular order.
    pub files: Vec<F>,
    /// Temp files of files the structure creates atomically, left by a crash while it created
    /// one (or its repair plan's).
    pub temp_files: Vec<String>,
    /// Whether a repair plan is on disk.
    pub repair_plan: bool,
}

/// Lists `directory`, with `parse` telling which names are the structure's own files. The
/// `LOCK` file is left out; any other name that is neither the structure's, the repair plan,
/// nor the temp file of one of them is [`Error::BadFileName`]: a file the structure does not
/// own, which it must neither remove nor open over.
pub(crate) fn list<F>(vfs: &dyn Vfs, directory: &Path, parse: impl Fn(&str) -> Option<F>) -> Result<Listing<F>> {
    let names = vfs.read_dir(directory).map_err(|error| Error::io(directory, "read_dir", error))?;
    let mut listing = Listing { files: Vec::new(), temp_files: Vec::new(), repair_plan: false };
    for name in names {
        if name == vfs::LOCK_FILE_NAME {
            continue;
        }
        if name == repair::PLAN_FILE_NAME {
            listing.repair_plan = true;
            continue;
        }
        let is_own_temp_file = name
            .strip_suffix(".tmp")
            .is_some_and(|created| created == repair::PLAN_FILE_NAME || parse(created).is_some());
        if is_own_temp_file {
            listing.temp_files.push(name);
            continue;
        }
        match parse(&name) {
            Some(file) => listing.files.push(file),
            None => return Err(Error::BadFileName { file: directory.join(name) }),
        }
    }
    Ok(listing)
}

/// Refuses a hole in `numbers`, sorted ascending, which must run one by one from `first` (or
/// from their lowest, when `first` is `None`): [`Error::SegmentGap`] names the first missing.
pub(crate) fn check_contiguous(directory: &Path, numbers: &[u64], first: Option<u64>) -> Result<()> {
    let Some(&lowest) = numbers.first() else { return Ok(()) };
    let mut expected = first.unwrap_or(lowest);
    for &number in numbers {
        if number != expected {
            return Err(Error::SegmentGap { directory: directory.to_path_buf(), missing: expected });
        }
        expected = expected.saturating_add(1);
    }
    Ok(())
}
