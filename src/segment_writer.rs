//! The file of the one segment a log appends to, shared by the WAL and the commitlog: where the
//! bytes written to the OS end, how long the file is, and the three calls that change them.
//! Each structure keeps its own buffer and decides when to write it; an error from any call
//! here is one the caller's handle must be poisoned by (invariant 2 of ARCHITECTURE.md).

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::vfs::VfsFile;

#[derive(Debug)]
pub(crate) struct SegmentWriter {
    pub path: PathBuf,
    pub file: Box<dyn VfsFile>,
    /// Bytes written to the OS: readers stop here, and the next write lands here.
    pub end: u64,
    /// The length the file was given when it was created, found or last set (zeros
    /// preallocated for what is to come, or the bytes a reused file held before). A write past
    /// it grows the file without changing it.
    pub allocated: u64,
}

impl SegmentWriter {
    pub fn new(path: PathBuf, file: Box<dyn VfsFile>, end: u64, allocated: u64) -> Self {
        Self { path, file, end, allocated }
    }

    /// Writes `bytes` at `end`, in one call, and moves `end` past them.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.file.write_at(bytes, self.end).map_err(|error| Error::io(&self.path, "write_at", error))?;
        self.end += bytes.len() as u64;
        Ok(())
    }

    /// Makes everything written so far durable.
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|error| Error::io(&self.path, "sync_data", error))
    }

    /// Sets the file's length: zeros past `end` to preallocate or pad, or a cut of bytes past
    /// it. Never cuts what was written.
    pub fn set_len(&mut self, length: u64) -> Result<()> {
        debug_assert!(length >= self.end, "never cuts written bytes");
        self.file.set_len(length).map_err(|error| Error::io(&self.path, "set_len", error))?;
        self.allocated = length;
        Ok(())
    }
}
