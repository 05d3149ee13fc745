//! Head chunk files (`chunks_head/00000001`, ...): full chunks leave memory for them, so that
//! memory holds about one open chunk per series. Entries are appended to the newest file
//! (preallocated with zeros, sealed with a sync when the next begins) and read back through
//! the Vfs. See `format.rs` for the bytes.
//!
//! The files hold nothing the WAL and the checkpoint do not also hold: they spare memory and
//! replay, and any damage to them loses nothing. Each entry records the WAL position of the
//! commit whose samples completed its chunk, and an open keeps only the entries whose commit
//! the recovered WAL still holds: a crash that loses unsynced commits, or a repair that cuts
//! the WAL, takes their chunks too, so the files never hold a sample the WAL lost (which would
//! break a commit's atomicity). Entries are written in commit order, so what goes is a suffix:
//! the open removes the later files, newest first, then cuts the file it stops in, before
//! anything new is written.

mod format;
mod scan;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub(crate) use format::EntryMeta;
use format::HEADER_SIZE;
pub(crate) use scan::{scan, Scan};

use super::SeriesRef;
use crate::error::{Error, Result};
use crate::vfs::{self, OpenMode, Vfs, VfsFile};
use crate::wal::Position;

/// The chunk files' directory inside the head's.
pub(crate) const DIRECTORY: &str = "chunks_head";

pub(crate) fn file_name(number: u64) -> String {
    crate::wal::segment_file_name(number)
}

pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    crate::wal::parse_segment_file_name(name)
}

/// Creates `directory` if it is missing, durably (its entry in the parent synced).
fn create_directory_durably(vfs: &dyn Vfs, directory: &Path) -> Result<()> {
    match vfs.read_dir(directory) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            vfs.create_dir_all(directory).map_err(|error| Error::io(directory, "create_dir_all", error))?;
            let parent = directory.parent().expect("inside the head's directory");
            vfs.sync_dir(parent).map_err(|error| Error::io(parent, "sync_dir", error))
        }
        Err(error) => Err(Error::io(directory, "read_dir", error)),
    }
}

/// Where an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkRef {
    pub file: u64,
    pub offset: u64,
    pub length: u64,
}

/// A chunk in a chunk file, as a series holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MappedChunk {
    pub at: ChunkRef,
    pub min_time: i64,
    pub max_time: i64,
    pub last_value_bits: u64,
}

/// What an open did to the chunk files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// The damage or torn tail it cut at: file name, offset, why.
    pub damage: Option<(String, u64, crate::error::CorruptionReason)>,
    /// Entries it read and dropped: those of commits the WAL no longer holds, and those
    /// after the cut in the file it cut.
    pub entries_dropped: u64,
    /// Files it removed, after the cut (unread: their entries are not counted above).
    pub files_removed: u64,
}

/// The file entries are appended to.
#[derive(Debug)]
struct Active {
    number: u64,
    file: Box<dyn VfsFile>,
    /// Where the entries on disk end; `buffer` goes there.
    end: u64,
}

/// The head's chunk files.
#[derive(Debug)]
pub(crate) struct ChunkFiles {
    vfs: Arc<dyn Vfs>,
    directory: PathBuf,
    file_size: u64,
    active: Option<Active>,
    /// Entries appended and not yet written to the active file.
    buffer: Vec<u8>,
    /// Every file and the newest max time of its entries (`i64::MIN` when it has none).
    files: BTreeMap<u64, i64>,
    /// Sealed files opened for reading (queries read through `&self`).
    readers: Mutex<BTreeMap<u64, Arc<dyn VfsFile>>>,
}

impl ChunkFiles {
    /// Opens what `scan` found: keeps the entries before the cut it found and before the
    /// first entry whose commit is not before `wal_end`, removes and cuts the rest durably,
    /// and returns the chunks kept, by series.
    pub(crate) fn recover(
        vfs: Arc<dyn Vfs>,
        head_directory: &Path,
        file_size: u64,
        scan: Scan,
        wal_end: Position,
    ) -> Result<(Self, BTreeMap<SeriesRef, Vec<MappedChunk>>, Recovered)> {
        let directory = head_directory.join(DIRECTORY);
        let mut cut = scan.cut.as_ref().map(|damage| (damage.number, damage.offset));
        let mut mapped: BTreeMap<SeriesRef, Vec<MappedChunk>> = BTreeMap::new();
        let mut files: BTreeMap<u64, i64> = scan.numbers.iter().map(|&number| (number, i64::MIN)).collect();
        let mut recovered = Recovered {
            damage: scan.cut.as_ref().map(|damage| (file_name(damage.number), damage.offset, damage.reason.clone())),
            entries_dropped: 0,
            files_removed: 0,
        };
        for file in &scan.files {
            for &(offset, meta) in &file.entries {
                if cut.is_some_and(|cut| (file.number, offset) >= cut) {
                    recovered.entries_dropped += 1;
                    continue;
                }
                if meta.position >= wal_end {
                    cut = Some((file.number, offset));
                    recovered.entries_dropped += 1;
                    continue;
                }
                let at = ChunkRef { file: file.number, offset, length: meta.length() };
                let chunk = MappedChunk {
                    at,
                    min_time: meta.min_time,
                    max_time: meta.max_time,
                    last_value_bits: meta.last_value_bits,
                };
                mapped.entry(meta.series).or_default().push(chunk);
                let newest = files.get_mut(&file.number).expect("inserted");
                *newest = (*newest).max(meta.max_time);
            }
        }
        create_directory_durably(vfs.as_ref(), &directory)?;
        vfs::remove_all_durably(vfs.as_ref(), &directory, scan.temp_files.iter().map(String::as_str))?;
        let mut chunk_files =
            Self { vfs, directory, file_size, active: None, buffer: Vec::new(), files, readers: Mutex::default() };
        let ends: BTreeMap<u64, u64> = scan.files.iter().map(|file| (file.number, file.end)).collect();
        let files_before = chunk_files.files.len();
        let end = match cut {
            Some((number, offset)) => chunk_files.cut_at(number, offset, &ends)?,
            None => scan.files.last().map(|file| (file.number, file.end)),
        };
        recovered.files_removed = (files_before - chunk_files.files.len()) as u64;
        if let Some((number, end)) = end {
            chunk_files.activate(number, end)?;
        }
        Ok((chunk_files, mapped, recovered))
    }

    /// Removes every file after `number`, newest first (or `number` too, when the cut is at
    /// its header). Returns the last file left and where its entries are to end: `offset`, or
    /// the end the scan found (`ends`).
    fn cut_at(&mut self, number: u64, offset: u64, ends: &BTreeMap<u64, u64>) -> Result<Option<(u64, u64)>> {
        let later: Vec<u64> = self.files.range(number + 1..).map(|(&later, _)| later).rev().collect();
        for later in later {
            self.remove_file(later)?;
        }
        if offset < HEADER_SIZE {
            self.remove_file(number)?;
            return Ok(self.files.keys().next_back().map(|&last| (last, ends[&last])));
        }
        // `activate` cuts it there.
        Ok(Some((number, offset)))
    }

    fn remove_file(&mut self, number: u64) -> Result<()> {
        self.readers.get_mut().expect("not poisoned").remove(&number);
        self.files.remove(&number);
        let name = file_name(number);
        vfs::remove_all_durably(self.vfs.as_ref(), &self.directory, [name.as_str()]).map(drop)
    }

    /// Makes `number` the file entries go to, its entries ending at `end`: whatever follows
    /// them is cut off, durably (a stale entry there would verify again once new entries end
    /// exactly where it begins), and the file is preallocated again with zeros.
    fn activate(&mut self, number: u64, end: u64) -> Result<()> {
        let path = self.directory.join(file_name(number));
        let file = self.vfs.open(&path, OpenMode::ReadWrite).map_err(|error| Error::io(&path, "open", error))?;
        if file.len().map_err(|error| Error::io(&path, "len", error))? > end {
            vfs::truncate_durably(file.as_ref(), &path, end)?;
        }
        file.set_len(self.file_size.max(end)).map_err(|error| Error::io(&path, "set_len", error))?;
        self.readers.get_mut().expect("not poisoned").remove(&number);
        self.active = Some(Active { number, file, end });
        Ok(())
    }

    /// Appends the entry of `chunk`, returning where it will be. It reaches the file at the
    /// next [`ChunkFiles::flush`].
    pub(crate) fn append(&mut self, meta: &EntryMeta, chunk: &[u8]) -> Result<ChunkRef> {
        let length = meta.length();
        let fits = |active: &Active| active.end + self.buffer.len() as u64 + length <= self.file_size;
        if !self.active.as_ref().is_some_and(fits) {
            self.start_file()?;
        }
        let active = self.active.as_ref().expect("started");
        let offset = active.end + self.buffer.len() as u64;
        format::encode_entry(&mut self.buffer, active.number, offset, meta, chunk);
        let newest = self.files.entry(active.number).or_insert(i64::MIN);
        *newest = (*newest).max(meta.max_time);
        Ok(ChunkRef { file: active.number, offset, length })
    }

    /// Seals the active file (its entries written and synced, its zeros cut off) and begins
    /// the next, made atomically with its header.
    fn start_file(&mut self) -> Result<()> {
        self.flush()?;
        if let Some(active) = self.active.take() {
            let path = self.directory.join(file_name(active.number));
            active.file.set_len(active.end).map_err(|error| Error::io(&path, "set_len", error))?;
            active.file.sync_data().map_err(|error| Error::io(&path, "sync_data", error))?;
        }
        let number = self.files.keys().next_back().map_or(1, |&last| last + 1);
        let header = format::encode_header(number);
        drop(vfs::create_file_atomically(self.vfs.as_ref(), &self.directory, &file_name(number), &header)?);
        self.files.insert(number, i64::MIN);
        self.activate(number, HEADER_SIZE)
    }

    /// Writes the appended entries to the active file (without a sync: the WAL holds them).
    pub(crate) fn flush(&mut self) -> Result<()> {
        let Some(active) = self.active.as_mut().filter(|_| !self.buffer.is_empty()) else { return Ok(()) };
        active
            .file
            .write_at(&self.buffer, active.end)
            .map_err(|error| Error::io(self.directory.join(file_name(active.number)), "write_at", error))?;
        active.end += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    /// The path of chunk file `number`.
    pub(crate) fn path_of(&self, number: u64) -> PathBuf {
        self.directory.join(file_name(number))
    }

    /// No chunk files: for tests of what holds none.
    #[cfg(test)]
    pub(crate) fn none() -> Self {
        let vfs: Arc<dyn Vfs> = Arc::new(crate::vfs::OsVfs::new());
        let directory = PathBuf::from("/nonexistent/chunks_head");
        Self {
            vfs,
            directory,
            file_size: 0,
            active: None,
            buffer: Vec::new(),
            files: BTreeMap::new(),
            readers: Mutex::default(),
        }
    }

    /// How many bytes of entries wait for [`ChunkFiles::flush`].
    pub(crate) fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// The chunk's bytes, read back and verified.
    pub(crate) fn read(&self, at: ChunkRef) -> Result<Vec<u8>> {
        let length = usize::try_from(at.length).expect("an entry is small");
        let mut bytes = vec![0u8; length];
        let path = self.directory.join(file_name(at.file));
        match &self.active {
            Some(active) if active.number == at.file && at.offset >= active.end => {
                let start = usize::try_from(at.offset - active.end).expect("in the buffer");
                bytes.copy_from_slice(&self.buffer[start..start + length]);
            }
            Some(active) if active.number == at.file => {
                vfs::read_exact_retrying(active.file.as_ref(), &path, &mut bytes, at.offset)?;
            }
            _ => {
                let reader = self.reader(at.file, &path)?;
                vfs::read_exact_retrying(reader.as_ref(), &path, &mut bytes, at.offset)?;
            }
        }
        let chunk = format::verify_entry(&bytes, at.file, at.offset).map_err(|reason| Error::Corruption {
            file: path,
            segment: at.file,
            offset: at.offset,
            reason,
        })?;
        Ok(chunk.to_vec())
    }

    /// Sealed file `number`, opened once for reading.
    fn reader(&self, number: u64, path: &Path) -> Result<Arc<dyn VfsFile>> {
        let mut readers = self.readers.lock().expect("no reader panics holding the lock");
        if let Some(reader) = readers.get(&number) {
            return Ok(reader.clone());
        }
        let file: Arc<dyn VfsFile> =
            Arc::from(self.vfs.open(path, OpenMode::Read).map_err(|error| Error::io(path, "open", error))?);
        readers.insert(number, file.clone());
        Ok(file)
    }

    /// Removes the oldest files while every chunk they hold ends before `min_time` (never the
    /// active one): from the oldest only, so that the numbering keeps no hole.
    pub(crate) fn remove_before(&mut self, min_time: i64) -> Result<()> {
        let active = self.active.as_ref().map(|active| active.number);
        while let Some((&oldest, &newest)) = self.files.iter().next() {
            if Some(oldest) == active || newest >= min_time {
                break;
            }
            self.remove_file(oldest)?;
        }
        Ok(())
    }

    /// Writes what is buffered and syncs the active file.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.flush()?;
        if let Some(active) = &self.active {
            let path = self.directory.join(file_name(active.number));
            active.file.sync_data().map_err(|error| Error::io(&path, "sync_data", error))?;
        }
        Ok(())
    }
}
