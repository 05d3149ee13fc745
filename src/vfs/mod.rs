//! The filesystem boundary.
//!
//! Every durable structure in ballast reaches the disk only through [`Vfs`] and [`VfsFile`].
//! [`OsVfs`] is the real filesystem; the simulator provides a `SimVfs` that implements the same
//! contract and then breaks every promise the contract allows it to break. The rustdoc on each
//! method is that contract: an implementation must do what it says, and the engine must assume
//! nothing more.
//!
//! Durability in one paragraph: a `write_at` or `set_len` is durable only after a later
//! `sync_data` on the same file returned `Ok`. A file's existence under a name (create, rename,
//! remove) is durable only after `sync_dir` of its parent directory returned `Ok`. Nothing else
//! makes anything durable.

mod durable;
mod os;

use std::fmt;
use std::io;
use std::path::Path;

pub use durable::{
    create_atomically_with, create_file_atomically, open_directory_locked, remove_all_durably, remove_durably,
    remove_if_present, truncate_durably, write_synced_and_verified, write_verified_rewriting, MISDIRECTED_REWRITES_MAX,
};
pub use os::{OsVfs, LOCK_FILE_NAME};

/// How to open a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Open an existing file for reading only. Must fail with `NotFound` if it does not exist.
    Read,
    /// Open an existing file for reading and writing. Must fail with `NotFound` if absent.
    ReadWrite,
    /// Create a new, empty file for reading and writing. Must fail with `AlreadyExists` if the
    /// name is taken.
    CreateNew,
}

/// A filesystem. Object safe; held as `Arc<dyn Vfs>`.
///
/// Paths are used as given; implementations must not resolve them against a working directory
/// other than the process's own.
pub trait Vfs: Send + Sync + fmt::Debug {
    /// Opens `path` in `mode`.
    ///
    /// With [`OpenMode::CreateNew`] the new directory entry is not durable until
    /// [`Vfs::sync_dir`] of the parent returns `Ok`: after a crash the file may be gone.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>>;

    /// Removes the directory entry `path`. Open handles stay usable. Durable only after
    /// `sync_dir` of the parent; after a crash the file may be back.
    fn remove_file(&self, path: &Path) -> io::Result<()>;

    /// Renames `from` to `to`, atomically replacing `to` if it exists (a directory `from` may
    /// replace no directory `to`: then `to` must not exist). Both must be in the same
    /// directory. Durable only after `sync_dir` of that directory; after a crash either the old
    /// or the new name must be visible, never a mix of contents.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// Creates `path` and any missing parents. Succeeds if it already exists as a directory.
    /// The new directories are durable only after `sync_dir` of each parent.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;

    /// The names of the regular files directly in `path`, sorted bytewise ascending.
    /// Must fail with `NotFound` if `path` does not exist.
    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>>;

    /// The names of the directories directly in `path`, sorted bytewise ascending. Must fail
    /// with `NotFound` if `path` does not exist.
    fn subdirectories(&self, path: &Path) -> io::Result<Vec<String>>;

    /// Removes the empty directory `path`; fails if it holds anything. Durable only after
    /// `sync_dir` of its parent.
    fn remove_dir(&self, path: &Path) -> io::Result<()>;

    /// Makes every entry operation (create, rename, remove) in directory `path` durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;

    /// Takes an exclusive lock on directory `path`, held until the returned guard is dropped.
    /// Must fail with `WouldBlock` if any other guard, in this process or another, holds it.
    fn lock_dir(&self, path: &Path) -> io::Result<Box<dyn VfsLock>>;
}

/// A held directory lock; dropping it releases the lock.
pub trait VfsLock: Send + Sync + fmt::Debug {}

/// An open file with positional I/O. All methods take `&self`: a file may be read while it is
/// written, and implementations synchronise internally.
#[allow(clippy::len_without_is_empty, reason = "a file's length is a query of I/O, not a collection's size")]
pub trait VfsFile: Send + Sync + fmt::Debug {
    /// Reads into `buf` from `offset`, returning how many bytes were read. The count may be
    /// short of `buf.len()` for any reason; `0` with a non-empty `buf` means end of file. A
    /// read error may be transient: the same read may succeed later.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Writes all of `buf` at `offset`, extending the file if needed (a hole reads as zeros).
    /// On `Err` any prefix of `buf`, including none or all, may have been written. On `Ok` the
    /// bytes are visible to reads but not durable until [`VfsFile::sync_data`] returns `Ok`.
    /// Must fail with `StorageFull` when there is no space.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// Makes every earlier write and length change of this file durable, including its length.
    /// On `Err` the caller must assume the unsynced data is lost (the OS may have dropped it)
    /// and must not retry: a later `sync_data` may return `Ok` without having written it.
    fn sync_data(&self) -> io::Result<()>;

    /// The file's current length in bytes, including unsynced writes.
    fn len(&self) -> io::Result<u64>;

    /// Truncates or extends (with zeros) the file to `len` bytes. Durable only after
    /// `sync_data`.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Ensures the file is at least `len` bytes long with its blocks allocated, so that later
    /// writes below `len` cannot fail with `StorageFull`. New bytes read as zeros. Durable only
    /// after `sync_data`.
    fn allocate(&self, len: u64) -> io::Result<()>;
}

/// Reads exactly `buf.len()` bytes at `offset`, looping over short reads.
///
/// Fails with `UnexpectedEof` if the file ends first.
pub fn read_exact_at(file: &dyn VfsFile, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    // Each iteration either fills at least one byte or returns, so the loop is bounded by
    // buf.len() iterations.
    while !buf.is_empty() {
        match file.read_at(buf, offset) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file ends early")),
            Ok(count) => {
                assert!(count <= buf.len(), "read_at returned more bytes than asked for");
                buf = &mut buf[count..];
                offset += count as u64;
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// How many times a failed read is tried before the error is returned. Read errors may be
/// transient; more tries than this means the disk is failing and the caller should know.
pub const READ_ATTEMPTS_MAX: u32 = 4;

/// Reads `buf.len()` bytes at `offset`, retrying transient errors up to [`READ_ATTEMPTS_MAX`]
/// times. End of file is not retried.
pub fn read_exact_retrying(file: &dyn VfsFile, path: &Path, buf: &mut [u8], offset: u64) -> crate::Result<()> {
    read_exact_retrying_named(file, || path.to_path_buf(), buf, offset)
}

/// [`read_exact_retrying`] for hot paths: the file's path is built only if an error must name it.
pub fn read_exact_retrying_named(
    file: &dyn VfsFile,
    path: impl Fn() -> std::path::PathBuf,
    buf: &mut [u8],
    offset: u64,
) -> crate::Result<()> {
    let mut attempt = 1;
    loop {
        match read_exact_at(file, buf, offset) {
            Ok(()) => return Ok(()),
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof || attempt >= READ_ATTEMPTS_MAX => {
                return Err(crate::error::Error::io(path(), "read_at", error));
            }
            Err(error) => {
                tracing::debug!(path = %path().display(), offset, attempt, %error, "read failed; trying again");
                attempt += 1;
            }
        }
    }
}
