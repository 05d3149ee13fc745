//! Durable steps on files and directories, each made of `Vfs` calls in the one order that is
//! safe against a crash between any two of them: atomic creation, removal, truncation, and the
//! locked open of a structure's directory.

use std::io;
use std::path::Path;

use super::{read_exact_retrying, OpenMode, Vfs, VfsFile, VfsLock};
use crate::error::Error;

/// Creates `directory/name` holding `contents`, atomically (invariant 7 of ARCHITECTURE.md): write a temp
/// file `name.tmp`, sync it, read it back and compare, rename it into place, sync the
/// directory. Returns the new file opened for reading and writing.
///
/// The read-back catches a write the disk put somewhere else: a file created this way is
/// trusted by every later open, so it must be right before its name exists. A leftover temp
/// file of the same name is replaced.
pub fn create_file_atomically(
    vfs: &dyn Vfs,
    directory: &Path,
    name: &str,
    contents: &[u8],
) -> crate::Result<Box<dyn VfsFile>> {
    create_atomically_with(vfs, directory, name, |file, temp_path| {
        write_synced_and_verified(file, temp_path, contents, 0)
    })
}

/// Creates `directory/name` atomically the way [`create_file_atomically`] does, but `fill`
/// gives the temp file its contents and makes them durable. For a file created empty (logstor's
/// preallocated data files: all zeros, every segment free) there is nothing to read back; its
/// first use writes a header that is verified where it matters.
pub fn create_atomically_with(
    vfs: &dyn Vfs,
    directory: &Path,
    name: &str,
    fill: impl FnOnce(&dyn VfsFile, &Path) -> crate::Result<()>,
) -> crate::Result<Box<dyn VfsFile>> {
    let temp_path = directory.join(format!("{name}.tmp"));
    let path = directory.join(name);
    // A leftover temp file's removal is made durable before the name is made again: else a
    // crash could lose both the removal and the new file's entry but keep the rename, which
    // then puts the leftover under `name` (tsdb seeds 21481 and 25111 met it through the
    // head's own cleanup: a `refs` file of 0 and 14 bytes, the temp files of a crashed and of
    // a failed write).
    remove_durably(vfs, directory, &format!("{name}.tmp"))?;
    let file = vfs.open(&temp_path, OpenMode::CreateNew).map_err(|error| Error::io(&temp_path, "open", error))?;
    if let Err(error) = fill(file.as_ref(), &temp_path) {
        if matches!(error, Error::Io { operation: "verify", .. }) {
            drop(file);
            remove_durably(vfs, directory, &format!("{name}.tmp"))?;
        }
        return Err(error);
    }
    vfs.rename(&temp_path, &path).map_err(|error| Error::io(&temp_path, "rename", error))?;
    vfs.sync_dir(directory).map_err(|error| Error::io(directory, "sync_dir", error))?;
    Ok(file)
}

/// Writes `contents` at `offset` of `file`, syncs, and reads them back. A write the disk lost
/// or put elsewhere is an [`Error::Io`](crate::Error::Io) whose operation is `"verify"`, instead
/// of a file that looks right until the next crash.
pub fn write_synced_and_verified(file: &dyn VfsFile, path: &Path, contents: &[u8], offset: u64) -> crate::Result<()> {
    file.write_at(contents, offset).map_err(|error| Error::io(path, "write_at", error))?;
    file.sync_data().map_err(|error| Error::io(path, "sync_data", error))?;
    let mut read_back = vec![0u8; contents.len()];
    read_exact_retrying(file, path, &mut read_back, offset)?;
    if read_back != contents {
        let error = io::Error::other("file read back differs from what was written");
        return Err(Error::io(path, "verify", error));
    }
    Ok(())
}

/// Truncates (or extends) `file` to `length` and syncs it.
pub fn truncate_durably(file: &dyn VfsFile, path: &Path, length: u64) -> crate::Result<()> {
    file.set_len(length).map_err(|error| Error::io(path, "set_len", error))?;
    file.sync_data().map_err(|error| Error::io(path, "sync_data", error))
}

/// Creates `directory` if it is missing (making its entry durable in the parent), then takes
/// its exclusive lock. A lock held elsewhere is [`crate::Error::Locked`] naming the directory.
pub fn open_directory_locked(vfs: &dyn Vfs, directory: &Path) -> crate::Result<Box<dyn VfsLock>> {
    match vfs.read_dir(directory) {
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            vfs.create_dir_all(directory).map_err(|error| Error::io(directory, "create_dir_all", error))?;
            let parent = match directory.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                _ => std::path::PathBuf::from("."),
            };
            vfs.sync_dir(&parent).map_err(|error| Error::io(&parent, "sync_dir", error))?;
        }
        Err(error) => return Err(Error::io(directory, "read_dir", error)),
    }
    vfs.lock_dir(directory).map_err(|error| {
        if error.kind() == io::ErrorKind::WouldBlock {
            Error::Locked { directory: directory.to_path_buf(), holder: lock_holder(vfs, directory) }
        } else {
            Error::io(directory, "lock_dir", error)
        }
    })
}

/// The process ID the holder of `directory`'s lock wrote in its `LOCK` file, if it wrote one
/// that reads back: only for the error message, so anything else is `None`.
fn lock_holder(vfs: &dyn Vfs, directory: &Path) -> Option<u32> {
    let file = vfs.open(&directory.join(super::LOCK_FILE_NAME), OpenMode::Read).ok()?;
    let mut bytes = [0u8; 16];
    let read = file.read_at(&mut bytes, 0).ok()?;
    std::str::from_utf8(&bytes[..read]).ok()?.trim_end().parse().ok()
}

/// How many times [`write_verified_rewriting`] writes again a write that read back different.
pub const MISDIRECTED_REWRITES_MAX: u32 = 3;

/// [`write_synced_and_verified`], writing again (up to [`MISDIRECTED_REWRITES_MAX`] times) when
/// the bytes read back different: the disk put the write somewhere else and the intended place
/// kept its old bytes. For a marker whose absence would undo a step already durable, where the
/// stray copy may have damaged whatever else said the step had happened, so that failing
/// alone would leave the next open to undo it. An I/O error is returned at once, never retried
/// (invariant 2 of ARCHITECTURE.md).
pub fn write_verified_rewriting(file: &dyn VfsFile, path: &Path, contents: &[u8], offset: u64) -> crate::Result<()> {
    let mut rewrites = 0;
    loop {
        match write_synced_and_verified(file, path, contents, offset) {
            Err(Error::Io { operation: "verify", .. }) if rewrites < MISDIRECTED_REWRITES_MAX => {
                tracing::warn!(path = %path.display(), offset, "a write read back different; writing it again");
                rewrites += 1;
            }
            result => return result,
        }
    }
}

/// Removes `path`; a file already gone is no error. Returns whether there was one to remove.
/// Nothing is durable until the directory is synced.
pub fn remove_if_present(vfs: &dyn Vfs, path: &Path) -> crate::Result<bool> {
    match vfs.remove_file(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(Error::io(path, "remove_file", error)),
    }
}

/// Removes `directory/name` durably (the directory synced after it), if it is there: one step
/// of a removal that a crash may interrupt and a later open finish.
pub fn remove_durably(vfs: &dyn Vfs, directory: &Path, name: &str) -> crate::Result<()> {
    if remove_if_present(vfs, &directory.join(name))? {
        vfs.sync_dir(directory).map_err(|error| Error::io(directory, "sync_dir", error))?;
    }
    Ok(())
}

/// Removes every file `names` lists from `directory` (each must be there), then syncs the
/// directory once if there was any.
pub fn remove_all_durably<'a>(
    vfs: &dyn Vfs,
    directory: &Path,
    names: impl IntoIterator<Item = &'a str>,
) -> crate::Result<u64> {
    let mut removed = 0;
    for name in names {
        let path = directory.join(name);
        vfs.remove_file(&path).map_err(|error| Error::io(&path, "remove_file", error))?;
        removed += 1;
    }
    if removed > 0 {
        vfs.sync_dir(directory).map_err(|error| Error::io(directory, "sync_dir", error))?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A file whose first `astray` writes report success but land nowhere: what a misdirected
    /// write looks like from the place it was meant for.
    #[derive(Debug)]
    struct StrayingFile {
        bytes: Mutex<Vec<u8>>,
        astray: Mutex<u32>,
    }

    impl VfsFile for StrayingFile {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            let bytes = self.bytes.lock().unwrap();
            let start = usize::try_from(offset).unwrap().min(bytes.len());
            let count = buf.len().min(bytes.len() - start);
            buf[..count].copy_from_slice(&bytes[start..start + count]);
            Ok(count)
        }
        fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
            let mut astray = self.astray.lock().unwrap();
            if *astray > 0 {
                *astray -= 1;
                return Ok(());
            }
            let start = usize::try_from(offset).unwrap();
            let mut bytes = self.bytes.lock().unwrap();
            bytes[start..start + buf.len()].copy_from_slice(buf);
            Ok(())
        }
        fn sync_data(&self) -> io::Result<()> {
            Ok(())
        }
        fn len(&self) -> io::Result<u64> {
            Ok(self.bytes.lock().unwrap().len() as u64)
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.bytes.lock().unwrap().resize(usize::try_from(len).unwrap(), 0);
            Ok(())
        }
        fn allocate(&self, len: u64) -> io::Result<()> {
            let mut bytes = self.bytes.lock().unwrap();
            let len = usize::try_from(len).unwrap().max(bytes.len());
            bytes.resize(len, 0);
            Ok(())
        }
    }

    fn file(astray: u32) -> StrayingFile {
        StrayingFile { bytes: Mutex::new(vec![0; 64]), astray: Mutex::new(astray) }
    }

    #[test]
    fn a_write_gone_astray_is_written_again_until_it_reads_back() {
        let path = Path::new("segment");
        let straying = file(2);
        write_verified_rewriting(&straying, path, b"marker", 8).unwrap();
        assert_eq!(&straying.bytes.lock().unwrap()[8..14], b"marker");
        // Without the rewrites, the same disk leaves the marker missing: an error, nothing more.
        let straying = file(1);
        let error = write_synced_and_verified(&straying, path, b"marker", 8).unwrap_err();
        assert!(matches!(error, Error::Io { operation: "verify", .. }), "{error:?}");
    }

    #[test]
    fn a_disk_that_keeps_losing_the_write_is_an_error_after_the_rewrites() {
        let straying = file(MISDIRECTED_REWRITES_MAX + 1);
        let error = write_verified_rewriting(&straying, Path::new("segment"), b"marker", 8).unwrap_err();
        assert!(matches!(error, Error::Io { operation: "verify", .. }), "{error:?}");
        assert_eq!(*straying.astray.lock().unwrap(), 0, "every allowed attempt was made");
    }
}
