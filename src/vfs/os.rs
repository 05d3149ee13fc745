//! The real filesystem. This is the only module of the engine that touches `std::fs`.
#![allow(clippy::disallowed_methods, clippy::disallowed_types, reason = "the one place allowed to touch std::fs")]

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{OpenMode, Vfs, VfsFile, VfsLock};

/// Name of the lock file `OsVfs::lock_dir` creates inside a locked directory. Its holder
/// writes its process ID there, in decimal and a newline.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// [`Vfs`] on the operating system's filesystem: `pread`/`pwrite`, `fdatasync`, directory
/// `fsync`, and `flock` on a `LOCK` file for directory locks (exclusive across processes and
/// across handles within one process).
#[derive(Clone, Copy, Debug, Default)]
pub struct OsVfs;

impl OsVfs {
    pub fn new() -> Self {
        Self
    }
}

#[derive(Debug)]
struct OsFile {
    file: File,
}

#[derive(Debug)]
struct OsLock {
    file: File,
}

impl VfsLock for OsLock {}

impl Drop for OsLock {
    /// Releases the lock explicitly. Closing the descriptor alone does not while a copy of it is
    /// open elsewhere, and any thread of the process that starts a child process makes copies
    /// that live until the child's `exec`: reopening a store at once then failed with
    /// `Error::Locked` (tests/engine/bad_input.rs pins it).
    fn drop(&mut self) {
        // Nothing to do on failure: closing the descriptor next releases the lock anyway, once
        // no copy of it is left.
        let _ = self.file.unlock();
    }
}

impl Vfs for OsVfs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>> {
        let mut options = OpenOptions::new();
        match mode {
            OpenMode::Read => options.read(true),
            OpenMode::ReadWrite => options.read(true).write(true),
            OpenMode::CreateNew => options.read(true).write(true).create_new(true),
        };
        let file = options.open(path)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
        }
        Ok(Box::new(OsFile { file }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            match entry.file_name().into_string() {
                Ok(name) => names.push(name),
                Err(name) => names.push(name.to_string_lossy().into_owned()),
            }
        }
        names.sort();
        Ok(names)
    }

    fn subdirectories(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(path)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn remove_dir(&self, path: &Path) -> io::Result<()> {
        fs::remove_dir(path)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn lock_dir(&self, path: &Path) -> io::Result<Box<dyn VfsLock>> {
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path.join(LOCK_FILE_NAME))?;
        match file.try_lock() {
            Ok(()) => {
                // Who holds it, for the error a second open gets (`Error::Locked`). The lock is
                // the flock, never this number: a holder that dies releases the flock, and
                // the next holder overwrites the number it left. Writing it is a courtesy an
                // open does not fail for.
                let holder = format!("{}\n", std::process::id());
                let _ = file.set_len(0).and_then(|()| file.write_all_at(holder.as_bytes(), 0));
                Ok(Box::new(OsLock { file }))
            }
            Err(TryLockError::WouldBlock) => Err(io::Error::new(io::ErrorKind::WouldBlock, "directory is locked")),
            Err(TryLockError::Error(error)) => Err(error),
        }
    }
}

impl VfsFile for OsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        // Writing real zeros (rather than extending sparsely) allocates the blocks, so later
        // overwrites change no metadata and `fdatasync` after them writes only data.
        const CHUNK: usize = 1 << 20;
        let zeros = vec![0u8; CHUNK];
        let mut at = self.len()?;
        while at < len {
            let count = usize::try_from((len - at).min(CHUNK as u64)).expect("chunk fits usize");
            self.file.write_all_at(&zeros[..count], at)?;
            at += count as u64;
        }
        Ok(())
    }
}
