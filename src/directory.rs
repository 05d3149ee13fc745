//! What a data directory holds, told from its file names, so that an open refuses a directory
//! of another structure before it writes anything there.

use std::io;
use std::path::Path;

use crate::error::{Error, Result};
use crate::vfs::Vfs;
// Each structure's file names, from the modules that define them (not the structures' handles,
// which import this module).
use crate::commitlog::format as commitlog_names;
use crate::logstor::format as logstor_names;
use crate::wal::listing as wal_names;

/// The structures whose directories can be told apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Structure {
    Wal,
    Commitlog,
    Logstor,
    /// A TSDB head: told by its `refs` file.
    #[cfg(feature = "tsdb")]
    Tsdb,
}

impl Structure {
    /// How errors name it: "a ballast WAL".
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Wal => "a ballast WAL",
            Self::Commitlog => "a ballast commitlog",
            Self::Logstor => "a ballast logstor store",
            #[cfg(feature = "tsdb")]
            Self::Tsdb => "a ballast TSDB head",
        }
    }

    /// The structure `name` is a file of, if it is one no other structure writes.
    fn owning(name: &str) -> Option<Self> {
        if wal_names::parse_segment_file_name(name).is_some() || wal_names::parse_recycle_file_name(name).is_some() {
            return Some(Self::Wal);
        }
        if commitlog_names::parse_file_name(name).is_some() {
            return Some(Self::Commitlog);
        }
        if name == logstor_names::META_FILE_NAME || logstor_names::parse_data_file_name(name).is_some() {
            return Some(Self::Logstor);
        }
        #[cfg(feature = "tsdb")]
        if crate::tsdb::owns_file_name(name) {
            return Some(Self::Tsdb);
        }
        None
    }
}

/// Refuses an empty directory path: it would put the files in whatever directory the process
/// happens to run in.
pub(crate) fn check_path(directory: &Path) -> Result<()> {
    if directory.as_os_str().is_empty() {
        return Err(Error::InvalidArgument { reason: "the directory path is empty".to_string() });
    }
    Ok(())
}

/// Fails with [`Error::ForeignDirectory`] if `directory` holds a file of a structure other than
/// `expected`. A directory that does not exist yet holds nothing.
pub(crate) fn refuse_foreign(vfs: &dyn Vfs, directory: &Path, expected: Structure) -> Result<()> {
    let names = match vfs.read_dir(directory) {
        Ok(names) => names,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(Error::io(directory, "read_dir", error)),
    };
    let mut names = names;
    names.sort_unstable();
    for name in names {
        match Structure::owning(&name) {
            Some(found) if found != expected => {
                return Err(Error::ForeignDirectory {
                    directory: directory.to_path_buf(),
                    holds: format!("{} (file {name})", found.name()),
                    expected: expected.name(),
                });
            }
            _ => {}
        }
    }
    Ok(())
}
