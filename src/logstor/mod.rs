//! A log-structured key-value store, in the manner of ScyllaDB's logstor.
//!
//! Every write is appended to a log of fixed-size segments carved out of preallocated data
//! files. An in-memory index finds the newest version of each key, and compaction reclaims
//! space from segments that hold mostly dead records. Writes first land in *mixed* segments;
//! the separator rewrites them into per-group segments, so that a group can be compacted or
//! dropped on its own.
//!
//! # Format, in one paragraph
//!
//! Records accumulate in a write buffer that is written to its segment in 4 KiB-aligned
//! blocks. Each buffer starts with a header naming its segment, the segment's generation and
//! the buffer's own offset, and a checksum; each record carries its own checksum and a
//! sequence number. Sealing a segment writes a SEAL buffer after its last one and syncs it;
//! freeing a segment writes FREE markers (with the generation bumped) over its first buffer
//! and its seal, so its old records can never be read again. See `docs/format.md`.
//!
//! # Durability
//!
//! `put` and `delete` are buffered; [`Logstor::sync`] writes every buffer and fsyncs: every
//! write before it survives a crash. Compaction and the separator sync what they copy before
//! freeing the segments it came from. A failed write or sync poisons the store until reopened.
//!
//! # The write gate
//!
//! The index is updated as each record is buffered, before its segment can be sealed, so a
//! sealed segment is fully indexed: every record in it is what the index points to or is
//! superseded by a newer record. The simulator checks it at every seal (`check.rs`, behind the
//! `checks` feature).
//!
//! # Space
//!
//! Data files never shrink, so what bounds the footprint is that freed segments are reused
//! before the store grows. Space is reclaimed by separator and compaction steps, and the write
//! path runs them itself: when a put or delete is about to open a new mixed segment (about
//! once per `segment_size` of records) and fewer than `groups_count + 2 ×
//! compaction_batch_max` segments are free, it first runs a few bounded steps (see
//! [`Logstor::put`] for the I/O that may cost). So a program that never calls a step, or holds
//! the store's lock so that [`Maintenance`] never runs, still reuses its space; `Maintenance`
//! and the explicit steps only reclaim sooner, off the write path.
//!
//! # Recovery
//!
//! Opening scans every segment and syncs every data file, so everything it shows is durable.
//! A segment without a seal was being written when the power failed: everything after its last whole buffer is a torn tail, and recovery seals it there.
//! Damage before a valid seal is damage to synced data, which [`RecoveryMode::Strict`] reports
//! and [`RecoveryMode::Repair`] cuts away through a durable repair plan.
//!
//! Every check that can refuse an open runs before the open writes anything: the directory's
//! file names, `logstor.meta` against the options, the data files, and the scan of every
//! segment. Only then are torn segments sealed, damage cut, a repair plan left on disk
//! finished and leftover temp files removed, so a failed open leaves the directory as it
//! found it (see [`Logstor::open`]).

mod background;
mod cache;
#[cfg(feature = "checks")]
mod check;
pub mod format;
mod index;
mod key;
mod listing;
mod options;
mod read;
mod reclaim;
mod recovery;
mod relocate;
mod scan;
mod segment;
mod verify;
mod write;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use background::Maintenance;
use cache::BlockCache;
use format::Geometry;
use index::{Entry, Index};
use options::check_options;
pub use options::LogstorOptions;
use segment::{place, Segment};
pub use segment::{SegmentKind, SegmentState};
pub use verify::{verify, VerifyReport};
use write::Writer;

use crate::directory::{self, Structure};
use crate::error::{Error, Result};
use crate::health::Health;
pub use crate::repair::{RecoveryMode, Repair};
use crate::vfs::{self, Vfs, VfsFile, VfsLock};

/// What opening found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments_used: u64,
    /// Record versions found: puts and tombstones, every copy of each (the unit of
    /// [`Repair::records_dropped`]). [`RecoveryReport::keys_count`] counts keys.
    pub records_count: u64,
    pub keys_count: u64,
    /// Segments that were being written when the power failed, sealed at their last whole buffer.
    pub torn_segments_sealed: u64,
    /// Free segments whose first buffers were an older use's, left by a freeing cut short (or
    /// whose FREE marker went astray), given the FREE marker that finishes the freeing.
    pub frees_finished: u64,
    pub repair: Option<Repair>,
}

/// What one compaction or separator step did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepReport {
    pub segments_freed: u64,
    pub records_moved: u64,
    pub bytes_moved: u64,
    pub tombstones_dropped: u64,
}

/// Space accounting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    pub segments_total: u64,
    pub segments_free: u64,
    pub segments_used: u64,
    /// Bytes of records the index points to, tombstones included.
    pub live_bytes: u64,
    /// Keys with a value.
    pub keys_count: u64,
    /// Sealed segments holding nothing the index points to (maintenance frees them).
    pub sealed_without_live_data: u64,
}

/// The store on a [`Vfs`]. See the module docs for its promises.
///
/// Writes are buffered until [`Logstor::sync`]; a reopen rebuilds the index from the segments:
///
/// ```
/// use std::sync::Arc;
///
/// use ballast::logstor::{Logstor, LogstorOptions};
/// use ballast::vfs::OsVfs;
///
/// # fn main() -> ballast::Result<()> {
/// # let directory = tempfile::tempdir().expect("a temp dir");
/// let vfs = Arc::new(OsVfs::new());
/// let mut store = Logstor::open(vfs.clone(), directory.path(), LogstorOptions::default())?;
/// store.put(b"user:1", b"ada")?;
/// store.put(b"user:2", b"grace")?;
/// store.delete(b"user:1")?;
/// store.sync()?;
/// drop(store);
///
/// let store = Logstor::open(vfs, directory.path(), LogstorOptions::default())?;
/// assert_eq!(store.get(b"user:2")?, Some(b"grace".to_vec()));
/// assert_eq!(store.get(b"user:1")?, None, "a deleted key stays deleted");
/// # Ok(())
/// # }
/// ```
pub struct Logstor {
    vfs: Arc<dyn Vfs>,
    directory: PathBuf,
    options: LogstorOptions,
    geometry: Geometry,
    _lock: Box<dyn VfsLock>,
    files: Vec<Box<dyn VfsFile>>,
    segments: Vec<Segment>,
    free: BTreeSet<u64>,
    index: Index,
    keys_count: u64,
    writers: BTreeMap<SegmentKind, Writer>,
    next_sequence: u64,
    dirty_files: BTreeSet<u64>,
    /// Segments sealed since the checker last took them (see `check.rs`).
    #[cfg(feature = "checks")]
    sealed_since_check: Vec<u64>,
    health: Health,
    report: RecoveryReport,
    /// Behind a lock so that gets keep taking `&self`; the store itself spawns no threads.
    cache: Mutex<BlockCache>,
}

impl fmt::Debug for Logstor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logstor")
            .field("directory", &self.directory)
            .field("segments", &self.segments.len())
            .field("keys", &self.keys_count)
            .field("poisoned", &self.health.is_poisoned())
            .finish()
    }
}

fn io_error<'a>(path: &'a Path, operation: &'static str) -> impl FnOnce(io::Error) -> Error + 'a {
    move |error| Error::io(path, operation, error)
}

impl Logstor {
    /// Opens the store in `directory`, creating it if needed, and recovers (see the module
    /// docs). Takes the directory's lock: a second open fails with [`Error::Locked`].
    ///
    /// Everything that can refuse the open is checked before it writes anything, so an open
    /// that fails leaves the directory as it found it, but for the directory itself, created if
    /// it was missing, and its `LOCK` file. It fails with [`Error::InvalidArgument`] for an
    /// empty path or options out of range; [`Error::ForeignDirectory`] for a directory holding
    /// another ballast structure's files; [`Error::BadFileName`] for a file logstor does not
    /// write; [`Error::OptionsMismatch`], in every recovery mode, for a `segment_size`,
    /// `segments_per_file` or `groups_count` other than `logstor.meta` records; and
    /// [`Error::Corruption`] for damage a [`RecoveryMode::Strict`] open refuses, or for data
    /// files whose meta file is gone. Only then does it write: a new store's meta file,
    /// leftover temp files removed, a repair an earlier open planned finished, damage cut away
    /// in [`RecoveryMode::Repair`], torn segments sealed. An I/O error or a crash among those
    /// writes may leave some of them done; each is safe to redo, and the next open does.
    pub fn open(vfs: Arc<dyn Vfs>, directory: impl Into<PathBuf>, options: LogstorOptions) -> Result<Self> {
        let directory = directory.into();
        directory::check_path(&directory)?;
        check_options(&options)?;
        directory::refuse_foreign(vfs.as_ref(), &directory, Structure::Logstor)?;
        let lock = vfs::open_directory_locked(vfs.as_ref(), &directory)?;
        let mut report = RecoveryReport::default();
        let loaded = recovery::recover(vfs.as_ref(), &directory, &options, &mut report)?;
        let geometry = loaded.geometry;
        let free = loaded
            .segments
            .iter()
            .enumerate()
            .filter(|(_, segment)| segment.state == SegmentState::Free)
            .map(|(id, _)| id as u64)
            .collect();
        let keys_count = loaded.index.values().filter(|entry| !entry.tombstone).count() as u64;
        report.keys_count = keys_count;
        report.segments_used =
            loaded.segments.iter().filter(|segment| segment.state != SegmentState::Free).count() as u64;
        tracing::info!(directory = %directory.display(), ?report, "logstor opened");
        let cache = Mutex::new(BlockCache::new(options.read_cache_size, geometry.segment_size));
        Ok(Self {
            vfs,
            directory,
            options,
            geometry,
            _lock: lock,
            files: loaded.files,
            segments: loaded.segments,
            free,
            index: loaded.index,
            keys_count,
            writers: BTreeMap::new(),
            next_sequence: loaded.next_sequence,
            dirty_files: BTreeSet::new(),
            #[cfg(feature = "checks")]
            sealed_since_check: Vec::new(),
            health: Health::new(report.repair.is_some()),
            report,
            cache,
        })
    }

    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    pub fn is_poisoned(&self) -> bool {
        self.health.is_poisoned()
    }

    /// The group a key belongs to by default.
    pub fn group_of(&self, key: &[u8]) -> u32 {
        crate::codec::crc32(key) % self.options.groups_count
    }

    fn poison(&mut self, error: Error) -> Error {
        self.health.poison(&self.directory, error)
    }

    /// [`Self::entry_of`], for changing the entry in place.
    fn entry_mut_of(&mut self, key: &[u8]) -> Option<&mut Entry> {
        self.index.get_mut(key)
    }

    fn segment_mut(&mut self, segment: u64) -> &mut Segment {
        &mut self.segments[usize::try_from(segment).expect("fits")]
    }

    fn file_of(&self, segment: u64) -> (usize, u64, PathBuf) {
        let (file_index, base) = place(self.geometry, segment);
        (usize::try_from(file_index).expect("fits"), base, self.directory.join(format::data_file_name(file_index)))
    }
}
