//! Writing a block's chunk files, as the seed describes Prometheus writing them: each file is
//! preallocated to the configured size and written into; when the next chunk would not fit, the
//! next file begins; on completion each file is truncated to its final size and synced.
//!
//! Preallocated by extending its length (`set_len`), not by writing zeros as the WAL's
//! segments are (`VfsFile::allocate`): a block's files are written once, from start to end,
//! and synced once, so no sync of theirs gains from blocks allocated ahead; writing 512 MiB of
//! zeros for every block was 18 % of a compacting ingest's time (`ballast-bench prometheus`).
//! Prometheus asks the filesystem to reserve the space (`fallocate`), which writes nothing.
//! A file so extended is sparse on most filesystems, so a full disk fails a later write of
//! the block (an I/O error, which fails the block and poisons the TSDB until it is reopened)
//! rather than the preallocation.

use std::path::{Path, PathBuf};

use super::encode::{crc32c, put_be32, put_uvarint};
use super::read::CHUNKS_MAGIC;
use crate::error::{Error, Result};
use crate::vfs::{self, OpenMode, Vfs, VfsFile};

const ENCODING_XOR: u8 = 1;
/// Bytes gathered before they are written: a chunk file is written in large writes.
const WRITE_BUFFER: usize = 1 << 20;
/// Magic and format version, padded.
const HEADER: usize = 8;

/// The chunk files of a block being made.
pub(crate) struct ChunkWriter<'a> {
    vfs: &'a dyn Vfs,
    directory: PathBuf,
    file_size: u64,
    /// Finished files, to be truncated and synced at the end.
    done: Vec<(PathBuf, Box<dyn VfsFile>, u64)>,
    current: Option<(PathBuf, Box<dyn VfsFile>)>,
    /// Where the buffer's first byte goes in the current file.
    written: u64,
    buffer: Vec<u8>,
}

impl<'a> ChunkWriter<'a> {
    /// Chunk files in `directory` (which must exist), each at most `file_size` bytes (at most
    /// 4 GiB: a chunk reference holds a 32-bit offset).
    pub fn new(vfs: &'a dyn Vfs, directory: &Path, file_size: u64) -> Self {
        Self {
            vfs,
            directory: directory.to_path_buf(),
            file_size,
            done: Vec::new(),
            current: None,
            written: 0,
            buffer: Vec::new(),
        }
    }

    /// Adds an XOR chunk and returns its reference: the file's index in the high 32 bits, the
    /// offset in the low.
    pub fn append(&mut self, chunk: &[u8]) -> Result<u64> {
        let mut entry = Vec::with_capacity(chunk.len() + 15);
        put_uvarint(&mut entry, chunk.len() as u64);
        let body_at = entry.len();
        entry.push(ENCODING_XOR);
        entry.extend_from_slice(chunk);
        let checksum = crc32c(&entry[body_at..]);
        put_be32(&mut entry, checksum);
        let length = self.written + self.buffer.len() as u64;
        if self.current.is_none() || length + entry.len() as u64 > self.file_size {
            self.begin_file()?;
        }
        let offset = self.written + self.buffer.len() as u64;
        self.buffer.extend_from_slice(&entry);
        if self.buffer.len() >= WRITE_BUFFER {
            self.flush()?;
        }
        let file_index = self.done.len() as u64;
        Ok((file_index << 32) | offset)
    }

    fn begin_file(&mut self) -> Result<()> {
        if let Some((path, file)) = self.current.take() {
            self.flush_to(&path, file.as_ref())?;
            let length = self.written;
            self.done.push((path, file, length));
        }
        let path = self.directory.join(format!("{:06}", self.done.len() + 1));
        let file = self.vfs.open(&path, OpenMode::CreateNew).map_err(|error| Error::io(&path, "open", error))?;
        file.set_len(self.file_size).map_err(|error| Error::io(&path, "set_len", error))?;
        self.written = 0;
        self.buffer.clear();
        put_be32(&mut self.buffer, CHUNKS_MAGIC);
        self.buffer.extend_from_slice(&[1, 0, 0, 0]);
        debug_assert_eq!(self.buffer.len(), HEADER);
        self.current = Some((path, file));
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if let Some((path, file)) = self.current.take() {
            let flushed = self.flush_to(&path, file.as_ref());
            self.current = Some((path, file));
            flushed?;
        }
        Ok(())
    }

    fn flush_to(&mut self, path: &Path, file: &dyn VfsFile) -> Result<()> {
        file.write_at(&self.buffer, self.written).map_err(|error| Error::io(path, "write", error))?;
        self.written += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    /// Writes what is left, truncates every file to its final size and syncs it. A block
    /// without chunks still gets one file holding only its header, as Prometheus writes it.
    pub fn finish(mut self) -> Result<()> {
        if self.current.is_none() {
            self.begin_file()?;
        }
        let (path, file) = self.current.take().expect("a current file");
        self.flush_to(&path, file.as_ref())?;
        self.done.push((path, file, self.written));
        for (path, file, length) in &self.done {
            vfs::truncate_durably(file.as_ref(), path, *length)?;
        }
        Ok(())
    }
}
