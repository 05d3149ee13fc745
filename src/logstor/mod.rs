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
//! superseded by a newer record. [`Logstor::check_segment_indexed`] checks it.
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
pub mod format;
mod key;
mod listing;
mod reclaim;
mod recovery;
mod scan;

#[allow(clippy::disallowed_types, reason = "the index's HashMap has a fixed hasher; see `Index`")]
use std::collections::HashMap;
use std::collections::{hash_map, BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use background::Maintenance;
use cache::BlockCache;
use format::{BufferKind, Geometry, Record, BLOCK_SIZE, BUFFER_HEADER_SIZE};
use key::IndexKey;
use scan::{find_seal, highest_generation, next_generation, scan_segment, SegmentScan, ANY_GENERATION};

use crate::directory::{self, Structure};
use crate::error::{CorruptionReason, Error, Result};
use crate::repair::{self, Segments};
pub use crate::repair::{RecoveryMode, Repair};
use crate::vfs::{self, OpenMode, Vfs, VfsFile, VfsLock};

/// Options for [`Logstor::open`].
///
/// `segment_size`, `segments_per_file` and `groups_count` are fixed when the store is created
/// and recorded in `logstor.meta`: an open given another value fails with
/// [`Error::OptionsMismatch`] naming the field, in every recovery mode, and changes nothing.
/// The others are not on disk and may change from one open to the next.
#[derive(Clone, Debug)]
pub struct LogstorOptions {
    /// Segment size: a multiple of 4 KiB, at least 16 KiB. Fixed when the store is created.
    /// Defaults to 1 MiB.
    pub segment_size: u64,
    /// Segments per data file, 1 to 65536. Fixed when the store is created. Defaults to 16.
    ///
    /// Data files are created whole (preallocated, so that writes into them can never fail for
    /// space) and never shrink, so the store's footprint grows in steps of one file: at most one
    /// file's worth more than the segments in use. With 64-segment files the `kv` benchmark's
    /// 116 MB of live records took 201 MB on disk; with 16, 151 MB (bench/README.md). The cost
    /// is one open file per `segment_size × segments_per_file` bytes of store.
    pub segments_per_file: u64,
    /// Data files the store may grow to; past that, writes fail with `StorageFull` (and
    /// poison the store). It bounds growth only: a store that already holds more data files
    /// opens whole and keeps writing into their free segments. Defaults to 4096 (64 GiB with
    /// the default geometry).
    pub files_max: u64,
    /// A write buffer is written out once it holds this many bytes; at least 4 KiB. Every
    /// buffer records its own length, so it may change between opens. Defaults to 64 KiB.
    pub write_buffer_size: usize,
    /// Compaction groups keys are spread over by default, and the bound of `put_in_group`'s
    /// group. Every record carries its group, and the count decides which group a key's next
    /// write goes to, so it is fixed when the store is created. Defaults to 16.
    ///
    /// A store created before the count was recorded (its meta file holds zero there) is
    /// checked against its records instead: an open refuses a count at or below the highest
    /// group a record names, with `on_disk` the fewest groups that hold them all.
    pub groups_count: u32,
    /// Segments one compaction step may take. At least 2. Defaults to 4.
    pub compaction_batch_max: usize,
    /// Defaults to [`RecoveryMode::Strict`].
    pub recovery_mode: RecoveryMode,
    /// Bytes of 4 KiB data blocks kept in memory for gets and scans (0 turns the cache off).
    /// Defaults to 256 MiB, taken as blocks are read, so a small store uses little. Reads of
    /// records that cross a block boundary go to the file.
    ///
    /// A miss reads a whole block, about 30 times the bytes of a 100-byte record: with gets
    /// spread evenly over far more data than the cache holds, that costs more than the hits
    /// save. On the `kv` benchmark (1 M random gets over 168 MB), 1 M gets took 1.6-2.0 s with
    /// no cache, 2.1-2.3 s with 64 MiB and 1.1-1.4 s with 256 MiB (bench/README.md). Size it to
    /// the data that is read, or turn it off.
    pub read_cache_size: usize,
}

impl Default for LogstorOptions {
    fn default() -> Self {
        Self {
            segment_size: 1 << 20,
            segments_per_file: 16,
            files_max: 4096,
            write_buffer_size: 64 << 10,
            groups_count: 16,
            compaction_batch_max: 4,
            recovery_mode: RecoveryMode::Strict,
            read_cache_size: 256 << 20,
        }
    }
}

/// What a segment holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SegmentKind {
    /// Records of any group, as written.
    Mixed,
    /// Records of one group, written by the separator or compaction.
    Group(u32),
}

impl SegmentKind {
    fn owner(self) -> u32 {
        match self {
            Self::Mixed => 0,
            Self::Group(group) => group + 1,
        }
    }

    fn from_owner(owner: u32) -> Self {
        match owner {
            0 => Self::Mixed,
            owner => Self::Group(owner - 1),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentState {
    Free,
    /// Being written.
    Active(SegmentKind),
    /// Closed: written whole, synced, fully indexed.
    Sealed(SegmentKind),
}

#[derive(Clone, Debug)]
struct Segment {
    state: SegmentState,
    /// The generation its buffers carry (free: the one its next use will carry).
    generation: u64,
    /// Bytes written to the file (buffers only; the seal follows).
    written: u64,
    /// Bytes of records the index points to.
    live_bytes: u64,
}

/// Where the newest record of a key is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    segment: u64,
    offset: u64,
    length: u32,
    sequence: u64,
    tombstone: bool,
    group: u32,
    /// Older records of this key still on disk in segments that are not free. A tombstone may
    /// be dropped only when this is zero: otherwise a crash could bring an older version back.
    stale_copies: u32,
}

/// The in-memory index: every key's newest record. A hash map, where it was a B-tree: a put or
/// get is one probe instead of a walk of five or six nodes, mostly cache misses (perf of the
/// `kv` benchmark had 46% of its samples in the B-tree search; puts went from 0.73 to 1.0 M/s
/// and gets from 0.74 to 1.0 M/s). The hasher is std's SipHash with fixed keys, so the same
/// operations give the same map and iteration order in every run. The costs: memory, a slot of
/// 64 bytes per key at up to 7/8 load (by the table's sizing rule 1 M keys take 2 M slots,
/// 134 MB; by our count of its nodes the tree took 65-100 MB; neither measured), `scan` sorts the keys it visits, and a reopen fills a table rather than
/// building a tree from a sorted run (see [`build_index`] for how it keeps that cheap).
#[allow(clippy::disallowed_types, reason = "a fixed hasher, not RandomState: the order is the same every run")]
type Index = HashMap<IndexKey, Entry, std::hash::BuildHasherDefault<std::hash::DefaultHasher>>;

/// A segment being written.
#[derive(Debug)]
struct Writer {
    segment: u64,
    /// Header space followed by the records not yet written.
    buffer: Vec<u8>,
    records_count: u32,
    /// Where `buffer` will land in the segment.
    buffer_offset: u64,
}

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
    sealed_since_check: Vec<u64>,
    health: repair::Health,
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

/// Where segment `segment` lives: its data file and its byte offset there.
fn place(geometry: Geometry, segment: u64) -> (u64, u64) {
    (segment / geometry.segments_per_file, (segment % geometry.segments_per_file) * geometry.segment_size)
}

/// The logstor's segment naming and cutting, for the shared repair plan.
struct LogstorSegments {
    geometry: Geometry,
}

/// A segment read whole for a repair: its file's path, the open file, its base offset, its bytes.
type SegmentRead = (PathBuf, Box<dyn VfsFile>, u64, Vec<u8>);

impl LogstorSegments {
    fn read(&self, vfs: &dyn Vfs, directory: &Path, segment: u64) -> Result<SegmentRead> {
        let (file_index, base) = place(self.geometry, segment);
        let path = directory.join(format::data_file_name(file_index));
        let file = vfs.open(&path, OpenMode::ReadWrite).map_err(io_error(&path, "open"))?;
        let mut bytes = vec![0u8; usize::try_from(self.geometry.segment_size).expect("fits")];
        vfs::read_exact_retrying(file.as_ref(), &path, &mut bytes, base)?;
        Ok((path, file, base, bytes))
    }
}

impl Segments for LogstorSegments {
    fn file_name(&self, segment: u64) -> String {
        format::data_file_name(place(self.geometry, segment).0)
    }

    fn empty(&self, segment: u64) -> Vec<u8> {
        format::marker(BufferKind::Free, 0, segment, 1, 0)
    }

    fn header_size(&self) -> u64 {
        BLOCK_SIZE
    }

    /// Cuts by writing markers: a SEAL at `at` (or a FREE marker at 0, for a damaged first
    /// buffer), and a FREE marker over the old seal further on, so no stale seal is left.
    fn cut(&self, vfs: &dyn Vfs, directory: &Path, segment: u64, at: u64) -> Result<()> {
        let (path, file, base, bytes) = self.read(vfs, directory, segment)?;
        let old_seal = find_seal(&bytes, segment, ANY_GENERATION, at + 1).map(|seal| seal.offset);
        let at = at / BLOCK_SIZE * BLOCK_SIZE;
        let first = format::decode_buffer_header(&bytes, segment, 0, bytes.len() as u64).ok();
        let owner = first.as_ref().map_or(0, |header| header.owner);
        // A cut after the first buffer seals the buffers before it, which all carry the first
        // one's generation; a cut at 0 frees the segment, above every generation in it.
        let (kind, generation) = match (at, first) {
            (0, _) => (BufferKind::Free, next_generation(&bytes, segment)),
            (_, Some(first)) => (BufferKind::Seal, first.generation),
            (_, None) => (BufferKind::Seal, highest_generation(&bytes, segment)),
        };
        // The old seal goes first, durably (see `free_segment`); the plan, still on disk, makes
        // a crash in between finish the cut on the next open.
        if let Some(old_seal) = old_seal.filter(|&old_seal| old_seal > at) {
            let void = format::marker(BufferKind::Free, owner, segment, generation, old_seal);
            file.write_at(&void, base + old_seal).map_err(io_error(&path, "write_at"))?;
            file.sync_data().map_err(io_error(&path, "sync_data"))?;
        }
        let first = format::marker(kind, owner, segment, generation, at);
        file.write_at(&first, base + at).map_err(io_error(&path, "write_at"))?;
        file.sync_data().map_err(io_error(&path, "sync_data"))
    }
}

/// Creates data file `index`, preallocated, atomically (temp, allocate, sync, rename, sync dir).
fn create_data_file(vfs: &dyn Vfs, directory: &Path, index: u64, geometry: Geometry) -> Result<Box<dyn VfsFile>> {
    let name = format::data_file_name(index);
    let temp_path = directory.join(format!("{name}.tmp"));
    let path = directory.join(&name);
    match vfs.remove_file(&temp_path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(Error::io(&temp_path, "remove_file", error)),
    }
    let file = vfs.open(&temp_path, OpenMode::CreateNew).map_err(io_error(&temp_path, "open"))?;
    file.allocate(geometry.file_size()).map_err(io_error(&temp_path, "allocate"))?;
    file.sync_data().map_err(io_error(&temp_path, "sync_data"))?;
    vfs.rename(&temp_path, &path).map_err(io_error(&temp_path, "rename"))?;
    vfs.sync_dir(directory).map_err(io_error(directory, "sync_dir"))?;
    Ok(file)
}

/// Builds the index from every record `found` at open, in scan order (see [`index_found`]).
///
/// The records go in grouped by where their keys land in the table, so that the table is
/// written a small region at a time instead of at a random place for every key: perf of
/// reopening the `kv` benchmark's 1 M-key store put most of the open in cache misses of the
/// inserts. The grouping is stable, so records of one key keep their scan order. It assumes the
/// table places a key at its hash modulo the power-of-two slot count, as std's does; if that
/// changed, only the speed would suffer.
fn build_index(found: Vec<(IndexKey, Entry)>) -> Index {
    let mut index = Index::with_capacity_and_hasher(found.len(), Default::default());
    // The slot count std's table takes for this capacity (7/8 load, a power of two).
    let slots = (found.len() * 8 / 7 + 1).next_power_of_two() as u64;
    let slot_bits = slots.trailing_zeros();
    let group_bits = slot_bits.min(INDEX_BUILD_GROUP_BITS);
    let hasher = index.hasher().clone();
    let mut groups: Vec<Vec<(IndexKey, Entry)>> = (0..1usize << group_bits).map(|_| Vec::new()).collect();
    for (key, entry) in found {
        let slot = std::hash::BuildHasher::hash_one(&hasher, &key) & (slots - 1);
        let group = usize::try_from(slot >> (slot_bits - group_bits)).expect("below the group count");
        groups[group].push((key, entry));
    }
    for group in groups {
        for (key, entry) in group {
            index_found(&mut index, key, entry);
        }
    }
    index
}

/// [`build_index`] fills the table in 2^this groups of neighbouring slots: 2048 groups keep
/// the groups' growing ends in cache while the records are grouped, and a group of a 1 M-key
/// table spans about 64 KiB of it.
const INDEX_BUILD_GROUP_BITS: u32 = 11;

/// Adds a record found at open, in scan order, to the index, which keeps for each key its
/// newest record (the highest sequence; between copies of one record, which relocation leaves
/// until it frees the source, the first in scan order) and counts the others as stale copies.
fn index_found(index: &mut Index, key: IndexKey, entry: Entry) {
    match index.entry(key) {
        hash_map::Entry::Vacant(vacant) => {
            vacant.insert(entry);
        }
        hash_map::Entry::Occupied(mut occupied) => {
            let kept = occupied.get_mut();
            if kept.sequence < entry.sequence {
                *kept = Entry { stale_copies: kept.stale_copies + 1, ..entry };
            } else {
                kept.stale_copies += 1;
            }
        }
    }
}

/// Refuses options out of range, before the open touches the directory.
fn check_options(options: &LogstorOptions) -> Result<()> {
    if options.compaction_batch_max < 2 || options.groups_count == 0 || options.files_max == 0 {
        return Err(Error::InvalidArgument {
            reason: "compaction_batch_max must be at least 2; groups_count and files_max positive".into(),
        });
    }
    let geometry = Geometry { segment_size: options.segment_size, segments_per_file: options.segments_per_file };
    if !format::geometry_is_valid(geometry) {
        return Err(Error::InvalidArgument {
            reason: "segment_size must be a multiple of 4 KiB of at least 16 KiB; segments_per_file 1 to 65536".into(),
        });
    }
    if (options.write_buffer_size as u64) < BLOCK_SIZE {
        return Err(Error::InvalidArgument { reason: "write_buffer_size must be at least 4 KiB".into() });
    }
    Ok(())
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
            sealed_since_check: Vec::new(),
            health: repair::Health::new(report.repair.is_some()),
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

    fn begin_write(&mut self) -> Result<()> {
        self.health.begin_write(self.vfs.as_ref(), &self.directory)
    }

    /// The largest record (key, value and header) a segment holds.
    pub fn record_size_max(&self) -> usize {
        let room = self.geometry.segment_size - BLOCK_SIZE;
        usize::try_from(room).expect("fits") - BUFFER_HEADER_SIZE
    }

    /// Stores `value` under `key` in the key's default group. Buffered until [`Logstor::sync`].
    ///
    /// Most puts only copy the record into a buffer; every `write_buffer_size` bytes one writes
    /// a buffer, and one in a segment seals it (two syncs). A put that opens a new mixed segment
    /// while fewer than `groups_count + 2 × compaction_batch_max` segments are free first
    /// reclaims space (see the module docs): at most 3 + ⌈`groups_count` × 4 KiB / (segment
    /// capacity)⌉ steps, 4 with the defaults, each a separator step (one segment read, its live
    /// records copied) or a compaction step (up to `compaction_batch_max` segments read, fewer
    /// segments' worth of live records copied), each ending in a sync of what it wrote and a
    /// FREE marker, synced, for each segment it frees. So one put reads at most
    /// steps × `compaction_batch_max` segments (16 MiB with the defaults) and writes about as
    /// much, once per segment of writes at most, and only when free segments run short.
    ///
    /// An error from that reclaiming (an I/O error, or [`Error::Corruption`] in a segment it
    /// read) fails the put, which then wrote nothing, and poisons the store: reopen it, and
    /// recovery reports or repairs what was found.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let group = self.group_of(key);
        self.put_in_group(group, key, value)
    }

    /// Stores `value` under `key` in compaction group `group`.
    pub fn put_in_group(&mut self, group: u32, key: &[u8], value: &[u8]) -> Result<()> {
        self.write(group, key, Some(value))
    }

    /// Deletes `key` (a tombstone, buffered until [`Logstor::sync`]). Deleting a key that is
    /// not there writes nothing. A delete may reclaim space first, as [`Logstor::put`] says.
    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        match self.entry_of(key) {
            Some(entry) if !entry.tombstone => {
                let group = entry.group;
                self.write(group, key, None)
            }
            _ => Ok(()),
        }
    }

    fn write(&mut self, group: u32, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        self.health.check()?;
        if group >= self.options.groups_count {
            return Err(Error::InvalidArgument {
                reason: format!("group {group} is not below {}", self.options.groups_count),
            });
        }
        let size = format::record_size(key, value);
        if key.len() > usize::from(u16::MAX)
            || size > self.record_size_max()
            || value.is_some_and(|value| value.len() > u32::MAX as usize)
        {
            return Err(Error::RecordTooLarge { length: size as u64, max: self.record_size_max() as u64 });
        }
        self.begin_write()?;
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let record = Record { key, value, group, sequence };
        let (segment, offset) = self.append(SegmentKind::Mixed, &record)?;
        let length = u32::try_from(size).expect("fits a segment");
        let entry = Entry { segment, offset, length, sequence, tombstone: value.is_none(), group, stale_copies: 0 };
        self.point(key, entry);
        Ok(())
    }

    /// Points the index at a newer record of `key`; the older one becomes a stale copy.
    fn point(&mut self, key: &[u8], mut entry: Entry) {
        // One probe of the map, and no allocation for an inline key.
        let old = match self.index.entry(IndexKey::new(key)) {
            hash_map::Entry::Vacant(vacant) => {
                vacant.insert(entry);
                None
            }
            hash_map::Entry::Occupied(mut occupied) => {
                let old = *occupied.get();
                assert!(old.sequence < entry.sequence, "records only supersede older ones");
                entry.stale_copies = old.stale_copies + 1;
                occupied.insert(entry);
                Some(old)
            }
        };
        if let Some(old) = old {
            self.segment_mut(old.segment).live_bytes -= u64::from(old.length);
            self.keys_count -= u64::from(!old.tombstone);
        }
        self.segment_mut(entry.segment).live_bytes += u64::from(entry.length);
        self.keys_count += u64::from(!entry.tombstone);
    }

    /// The index entry of `key`.
    fn entry_of(&self, key: &[u8]) -> Option<&Entry> {
        self.index.get(key)
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

    /// Appends a record to the writer of `kind`, opening, flushing and sealing segments as
    /// needed. Returns where the record will be.
    fn append(&mut self, kind: SegmentKind, record: &Record<'_>) -> Result<(u64, u64)> {
        let size = record.size();
        // A segment keeps its last block for the seal.
        let capacity = self.geometry.segment_size - BLOCK_SIZE;
        // Flush first, then check the room left: the flush moves the write position.
        if let Some(writer) = self.writers.get(&kind) {
            let data_length = writer.buffer.len() - BUFFER_HEADER_SIZE;
            if writer.records_count > 0 && BUFFER_HEADER_SIZE + data_length + size > self.options.write_buffer_size {
                self.flush_writer(kind)?;
            }
        }
        if let Some(writer) = self.writers.get(&kind) {
            let data_length = writer.buffer.len() - BUFFER_HEADER_SIZE;
            let grown = u64::from(format::blocks_for(data_length + size)) * BLOCK_SIZE;
            if writer.buffer_offset + grown > capacity {
                self.seal(kind)?;
            }
        }
        if !self.writers.contains_key(&kind) {
            // Only the write path opens mixed segments; the steps' own copies go to groups, so
            // a step never reclaims from inside another.
            if kind == SegmentKind::Mixed {
                self.reclaim_before_opening()?;
            }
            let segment = self.allocate(kind)?;
            self.writers.insert(
                kind,
                Writer { segment, buffer: vec![0u8; BUFFER_HEADER_SIZE], records_count: 0, buffer_offset: 0 },
            );
        }
        let writer = self.writers.get_mut(&kind).expect("inserted above");
        let offset = writer.buffer_offset + writer.buffer.len() as u64;
        let blocks = u64::from(format::blocks_for(writer.buffer.len() - BUFFER_HEADER_SIZE + size));
        assert!(writer.buffer_offset + blocks * BLOCK_SIZE <= capacity, "a buffer never reaches the seal's block");
        format::encode_record(&mut writer.buffer, record);
        writer.records_count += 1;
        Ok((writer.segment, offset))
    }

    /// Runs the write path's bounded reclaiming (see [`Logstor::put`]): while fewer than the
    /// reserve of segments are free, up to the budget's steps, each carried out by
    /// [`Self::relocate`], which makes everything durable before it frees a segment. Any error
    /// poisons the store: the write that asked for it fails, having written nothing.
    fn reclaim_before_opening(&mut self) -> Result<()> {
        let budget = reclaim::WriteBudget::new(
            self.options.groups_count,
            self.options.compaction_batch_max,
            self.geometry.segment_size,
        );
        let capacity = self.geometry.segment_size - BLOCK_SIZE;
        // A step may open a segment for every group its records go to and for its copies. A
        // store that cannot grow takes those from its free segments, and running short there
        // poisons it: a put that a free segment would have taken failed with StorageFull, and
        // again after every reopen (found in review). Such a store reclaims only while a step
        // cannot run short; otherwise the put goes ahead as it would without reclaiming.
        let step_need = u64::from(self.options.groups_count)
            .saturating_add(u64::try_from(self.options.compaction_batch_max).unwrap_or(u64::MAX));
        for step in 0..budget.steps_max {
            if self.free.len() as u64 >= budget.reserve {
                return Ok(());
            }
            let can_grow = (self.files.len() as u64) < self.options.files_max;
            if !can_grow && (self.free.len() as u64) < step_need {
                return Ok(());
            }
            let sources = match reclaim::choose(&self.segments, capacity, self.options.compaction_batch_max, step == 0)
            {
                reclaim::Choice::Nothing => return Ok(()),
                reclaim::Choice::Separate(segment) => vec![segment],
                reclaim::Choice::Compact(batch) => batch,
            };
            match self.relocate(&sources) {
                Ok(report) => tracing::debug!(step, ?sources, ?report, "the write path reclaimed space"),
                Err(error) if self.health.is_poisoned() => return Err(error),
                Err(error) => return Err(self.poison(error)),
            }
        }
        Ok(())
    }

    /// Takes a free segment for `kind`, growing the store by a data file if none is free.
    fn allocate(&mut self, kind: SegmentKind) -> Result<u64> {
        if self.free.is_empty() {
            let index = self.files.len() as u64;
            if index >= self.options.files_max {
                // Callers may be part way through a step; refuse further writes until reopen.
                let error = io::Error::new(io::ErrorKind::StorageFull, "the store reached files_max data files");
                return Err(self.poison(Error::io(&self.directory, "allocate_segment", error)));
            }
            let file = match create_data_file(self.vfs.as_ref(), &self.directory, index, self.geometry) {
                Ok(file) => file,
                Err(error) => return Err(self.poison(error)),
            };
            assert!(self.files.len() as u64 == index, "data files are numbered densely");
            self.files.push(file);
            for segment in index * self.geometry.segments_per_file..(index + 1) * self.geometry.segments_per_file {
                self.segments.push(Segment { state: SegmentState::Free, generation: 1, written: 0, live_bytes: 0 });
                self.free.insert(segment);
            }
        }
        let segment = self.free.pop_first().expect("a free segment exists");
        let state = self.segment_mut(segment);
        assert_eq!(state.state, SegmentState::Free, "the free list holds free segments");
        *state = Segment { state: SegmentState::Active(kind), generation: state.generation, written: 0, live_bytes: 0 };
        Ok(segment)
    }

    /// Writes the writer's buffered records as one buffer.
    fn flush_writer(&mut self, kind: SegmentKind) -> Result<()> {
        let Some(writer) = self.writers.get_mut(&kind) else { return Ok(()) };
        if writer.records_count == 0 {
            return Ok(());
        }
        let segment = writer.segment;
        let generation = self.segments[usize::try_from(segment).expect("fits")].generation;
        let mut buffer = std::mem::replace(&mut writer.buffer, vec![0u8; BUFFER_HEADER_SIZE]);
        let records_count = std::mem::take(&mut writer.records_count);
        let buffer_offset = writer.buffer_offset;
        format::seal_buffer(
            &mut buffer,
            BufferKind::Data,
            kind.owner(),
            segment,
            generation,
            buffer_offset,
            records_count,
        );
        writer.buffer_offset += buffer.len() as u64;
        let (file_index, base, path) = self.file_of(segment);
        if let Err(error) = self.files[file_index].write_at(&buffer, base + buffer_offset) {
            return Err(self.poison(Error::io(&path, "write_at", error)));
        }
        self.dirty_files.insert(file_index as u64);
        self.segment_mut(segment).written = buffer_offset + buffer.len() as u64;
        Ok(())
    }

    /// Closes the writer of `kind`: writes its buffer, then the seal, and syncs. Every record in
    /// the segment is in the index already (the write gate), so the sealed segment is fully
    /// indexed.
    fn seal(&mut self, kind: SegmentKind) -> Result<()> {
        self.flush_writer(kind)?;
        let Some(writer) = self.writers.remove(&kind) else { return Ok(()) };
        let segment = writer.segment;
        let generation = self.segments[usize::try_from(segment).expect("fits")].generation;
        let seal = format::marker(BufferKind::Seal, kind.owner(), segment, generation, writer.buffer_offset);
        let (file_index, base, path) = self.file_of(segment);
        let file = &self.files[file_index];
        // A seal claims that everything before it is durable, so the data is synced before the
        // seal is written: writes between two syncs may reach the disk in any order, and a seal
        // that landed before its data would make a torn tail look like damaged synced data.
        let result = file
            .sync_data()
            .and_then(|()| file.write_at(&seal, base + writer.buffer_offset))
            .and_then(|()| file.sync_data())
            .map_err(io_error(&path, "seal"));
        if let Err(error) = result {
            return Err(self.poison(error));
        }
        self.segment_mut(segment).state = SegmentState::Sealed(kind);
        self.sealed_since_check.push(segment);
        Ok(())
    }

    /// Writes every buffer and fsyncs: every write before the call survives a crash.
    pub fn sync(&mut self) -> Result<()> {
        self.begin_write()?;
        let kinds: Vec<SegmentKind> = self.writers.keys().copied().collect();
        for kind in kinds {
            self.flush_writer(kind)?;
        }
        self.sync_dirty()
    }

    fn sync_dirty(&mut self) -> Result<()> {
        for file_index in std::mem::take(&mut self.dirty_files) {
            let path = self.directory.join(format::data_file_name(file_index));
            if let Err(error) = self.files[usize::try_from(file_index).expect("fits")].sync_data() {
                return Err(self.poison(Error::io(&path, "sync_data", error)));
            }
        }
        Ok(())
    }

    /// Makes every write durable, seals every segment the store was writing, and closes it:
    /// [`verify`] then finds no torn segment, and the next open seals nothing. (A store dropped
    /// without `close` keeps only what was synced, and its open segments read as torn until
    /// the next open seals them.)
    pub fn close(mut self) -> Result<()> {
        self.begin_write()?;
        self.seal_all()
    }

    /// Seals every writer: their buffers written and synced first, one sync per data file, then
    /// every seal, then one more sync per file. (Sealing them one by one would sync a file
    /// twice for each of its writers.)
    fn seal_all(&mut self) -> Result<()> {
        let kinds: Vec<SegmentKind> = self.writers.keys().copied().collect();
        for &kind in &kinds {
            self.flush_writer(kind)?;
        }
        // A seal claims that everything before it is durable (see `seal`).
        self.sync_dirty()?;
        for kind in kinds {
            let writer = self.writers.remove(&kind).expect("listed above");
            let segment = writer.segment;
            let generation = self.segments[usize::try_from(segment).expect("fits")].generation;
            let seal = format::marker(BufferKind::Seal, kind.owner(), segment, generation, writer.buffer_offset);
            let (file_index, base, path) = self.file_of(segment);
            if let Err(error) = self.files[file_index].write_at(&seal, base + writer.buffer_offset) {
                return Err(self.poison(Error::io(&path, "seal", error)));
            }
            self.dirty_files.insert(file_index as u64);
            self.segment_mut(segment).state = SegmentState::Sealed(kind);
            self.sealed_since_check.push(segment);
        }
        self.sync_dirty()
    }

    /// The value of `key`: one index lookup and one positional read, verified by checksum.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some(entry) = self.entry_of(key) else { return Ok(None) };
        if entry.tombstone {
            return Ok(None);
        }
        let mut bytes = self.read_record(entry)?;
        let record = self.verify_record(&bytes, entry, key)?;
        let Some(value) = record.value else { return Ok(None) };
        // The value follows the header and the key: move it to the front of the buffer it was
        // read into rather than copying it into a second allocation.
        let (start, length) = (format::RECORD_HEADER_SIZE + key.len(), value.len());
        bytes.copy_within(start..start + length, 0);
        bytes.truncate(length);
        Ok(Some(bytes))
    }

    fn read_record(&self, entry: &Entry) -> Result<Vec<u8>> {
        let length = entry.length as usize;
        if let Some(writer) = self.writers.values().find(|writer| writer.segment == entry.segment) {
            if entry.offset >= writer.buffer_offset {
                let start = usize::try_from(entry.offset - writer.buffer_offset).expect("fits");
                return Ok(writer.buffer[start..start + length].to_vec());
            }
        }
        let (file_index, base) = place(self.geometry, entry.segment);
        let file_index = usize::try_from(file_index).expect("fits");
        let path = || self.directory.join(format::data_file_name(file_index as u64));
        let file = self.files[file_index].as_ref();
        // A record inside one block below the written end: through the cache.
        let block = entry.offset / BLOCK_SIZE;
        let block_end = (block + 1) * BLOCK_SIZE;
        let segment = &self.segments[usize::try_from(entry.segment).expect("fits")];
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.is_enabled() && entry.offset + length as u64 <= block_end && block_end <= segment.written {
            let start = usize::try_from(entry.offset - block * BLOCK_SIZE).expect("within a block");
            let block = u32::try_from(block).expect("a segment's blocks fit a u32");
            if let Some(bytes) = cache.get(entry.segment, segment.generation, block) {
                return Ok(bytes[start..start + length].to_vec());
            }
            let read =
                |slot: &mut [u8]| vfs::read_exact_retrying_named(file, path, slot, base + block_end - BLOCK_SIZE);
            // A block that fails to read is not the record: that may still read, below.
            if let Some(Ok(bytes)) = cache.fill(entry.segment, segment.generation, block, read) {
                return Ok(bytes[start..start + length].to_vec());
            }
        }
        drop(cache);
        let mut bytes = vec![0u8; length];
        vfs::read_exact_retrying_named(file, path, &mut bytes, base + entry.offset)?;
        Ok(bytes)
    }

    fn verify_record<'b>(&self, bytes: &'b [u8], entry: &Entry, key: &[u8]) -> Result<Record<'b>> {
        // The path is built only if there is an error to report: this is every get's path.
        let corruption = |reason| {
            let (file_index, base) = place(self.geometry, entry.segment);
            Error::Corruption {
                file: self.directory.join(format::data_file_name(file_index)),
                segment: entry.segment,
                offset: base + entry.offset,
                reason,
            }
        };
        let record = format::decode_record(bytes).map_err(corruption)?;
        if record.key != key || record.sequence != entry.sequence {
            return Err(corruption(CorruptionReason::HeaderMismatch {
                field: "sequence",
                expected: entry.sequence,
                found: record.sequence,
            }));
        }
        Ok(record)
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.entry_of(key).is_some_and(|entry| !entry.tombstone)
    }

    /// Keys with a value.
    pub fn len(&self) -> u64 {
        self.keys_count
    }

    pub fn is_empty(&self) -> bool {
        self.keys_count == 0
    }

    /// Every key with a value, in key order, with its value (each read and verified).
    pub fn scan(&self) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + '_ {
        let mut live: Vec<(&IndexKey, &Entry)> = self.index.iter().filter(|(_, entry)| !entry.tombstone).collect();
        live.sort_unstable_by_key(|(key, _)| *key);
        live.into_iter().map(move |(key, entry)| {
            let bytes = self.read_record(entry)?;
            let record = self.verify_record(&bytes, entry, key.as_slice())?;
            Ok((key.as_slice().to_vec(), record.value.expect("not a tombstone").to_vec()))
        })
    }

    pub fn stats(&self) -> Stats {
        let free = self.free.len() as u64;
        Stats {
            segments_total: self.segments.len() as u64,
            segments_free: free,
            segments_used: self.segments.len() as u64 - free,
            live_bytes: self.segments.iter().map(|segment| segment.live_bytes).sum(),
            keys_count: self.keys_count,
            sealed_without_live_data: self
                .segments
                .iter()
                .filter(|segment| matches!(segment.state, SegmentState::Sealed(_)) && segment.live_bytes == 0)
                .count() as u64,
        }
    }

    pub fn segment_state(&self, segment: u64) -> Option<SegmentState> {
        self.segments.get(usize::try_from(segment).ok()?).map(|segment| segment.state)
    }

    /// Segments sealed since the last call (for checkers: see [`Logstor::check_segment_indexed`]).
    pub fn take_sealed(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.sealed_since_check)
    }

    /// The closed-segment check: reads sealed segment `segment` from disk and requires every
    /// record in it to be what the index points to, or superseded by a newer record of the
    /// same key (or another copy of the write the index points to). A record whose key the index no longer holds would come back after a crash;
    /// that is a violation too. Returns the violations found.
    pub fn check_segment_indexed(&self, segment: u64) -> Result<Vec<String>> {
        let Some(SegmentState::Sealed(_)) = self.segment_state(segment) else { return Ok(Vec::new()) };
        let (file_index, base, path) = self.file_of(segment);
        let mut bytes = vec![0u8; usize::try_from(self.geometry.segment_size).expect("fits")];
        vfs::read_exact_retrying(self.files[file_index].as_ref(), &path, &mut bytes, base)?;
        let mut violations = Vec::new();
        match scan_segment(&bytes, segment) {
            SegmentScan::Used { sealed_at: Some(_), records, .. } => {
                for range in &records {
                    let offset = range.start as u64;
                    let record = format::decode_verified_record(&bytes[range.clone()]).expect("verified by the scan");
                    match self.entry_of(record.key) {
                        Some(entry) if entry.segment == segment && entry.offset == offset => {
                            if entry.sequence != record.sequence {
                                violations.push(format!("segment {segment} offset {offset}: index sequence differs"));
                            }
                        }
                        // Superseded; or a second copy of the same write (sequence numbers are
                        // unique per write), left by a crash part way through a relocation and
                        // counted as a stale copy.
                        Some(entry) if entry.sequence >= record.sequence => {}
                        Some(entry) => violations.push(format!(
                            "segment {segment} offset {offset}: record sequence {} not superseded (index has {} at {}:{})",
                            record.sequence, entry.sequence, entry.segment, entry.offset
                        )),
                        None => violations.push(format!(
                            "segment {segment} offset {offset}: key of sequence {} is not in the index",
                            record.sequence
                        )),
                    }
                }
            }
            other => violations.push(format!("segment {segment} is sealed in memory but reads back as {other:?}")),
        }
        Ok(violations)
    }

    /// One bounded compaction step: takes up to `compaction_batch_max` sealed group segments
    /// with the least live data, only if copying their live records frees at least one
    /// segment (of such batches, the one freeing the most, and the smallest of those), copies
    /// those records (and the tombstones still needed) to their groups' open segments, syncs,
    /// moves the index, and frees the old segments.
    pub fn compact_step(&mut self) -> Result<StepReport> {
        self.begin_write()?;
        let capacity = self.geometry.segment_size - BLOCK_SIZE;
        match reclaim::compaction_batch(&self.segments, capacity, self.options.compaction_batch_max) {
            Some(batch) => self.relocate(&batch),
            None => Ok(StepReport::default()),
        }
    }

    /// One bounded separator step: rewrites the oldest sealed mixed segment's live records into
    /// their groups' segments and frees it.
    pub fn separator_step(&mut self) -> Result<StepReport> {
        self.begin_write()?;
        let oldest = self
            .segments
            .iter()
            .position(|segment| segment.state == SegmentState::Sealed(SegmentKind::Mixed))
            .map(|id| id as u64);
        match oldest {
            Some(segment) => self.relocate(&[segment]),
            None => Ok(StepReport::default()),
        }
    }

    /// Work for maintenance: sealed mixed segments, or group segments compaction would take.
    pub fn maintenance_pending(&self) -> bool {
        self.segments.iter().any(|segment| segment.state == SegmentState::Sealed(SegmentKind::Mixed))
    }

    /// Seals the open mixed segment, so the separator can take everything written so far.
    pub fn seal_mixed(&mut self) -> Result<()> {
        self.begin_write()?;
        self.seal(SegmentKind::Mixed)
    }

    /// Copies the live records of `sources` (sealed segments) to their groups' segments, then
    /// frees the sources. The copies are synced before any source is freed, so at every
    /// instant each live record is safely somewhere.
    fn relocate(&mut self, sources: &[u64]) -> Result<StepReport> {
        let mut report = StepReport::default();
        // Each source's bytes and where its records lie in them.
        let mut found: Vec<(u64, Vec<u8>, Vec<std::ops::Range<usize>>)> = Vec::new();
        for &segment in sources {
            let (file_index, base, path) = self.file_of(segment);
            let mut bytes = vec![0u8; usize::try_from(self.geometry.segment_size).expect("fits")];
            vfs::read_exact_retrying(self.files[file_index].as_ref(), &path, &mut bytes, base)?;
            match scan_segment(&bytes, segment) {
                SegmentScan::Used { sealed_at: Some(_), records, .. } => found.push((segment, bytes, records)),
                SegmentScan::Damaged { offset, reason, .. } => {
                    return Err(Error::Corruption { file: path, segment, offset: base + offset, reason });
                }
                other => {
                    let reason = CorruptionReason::Truncated { length: 0 };
                    tracing::error!(segment, ?other, "a sealed segment does not read back sealed");
                    return Err(Error::Corruption { file: path, segment, offset: base, reason });
                }
            }
        }
        // Copy what is live, moving the index to each copy as it is appended (the write gate:
        // a group segment that fills up and seals mid-step is fully indexed). The old copy
        // becomes a stale copy until its segment is freed. Tombstones that no older version
        // outlives are dropped instead, once the step's writes are durable.
        let mut dropped: Vec<(Vec<u8>, (u64, u64))> = Vec::new();
        let records = found.iter().flat_map(|(segment, bytes, ranges)| {
            ranges.iter().map(move |range| (*segment, range.start as u64, &bytes[range.clone()]))
        });
        for (segment, offset, record_bytes) in records.clone() {
            let record = format::decode_record(record_bytes).expect("verified by the scan");
            let Some(entry) = self.entry_of(record.key).copied() else { continue };
            if entry.segment != segment || entry.offset != offset {
                continue;
            }
            // A tombstone goes only once no other record of its key is left anywhere on disk,
            // not even in the segments this step frees: they are freed one at a time, and an
            // interruption after the tombstone's segment but before an older version's would
            // bring the deleted key back. Such a tombstone is copied now and dropped later.
            if entry.tombstone && entry.stale_copies == 0 {
                dropped.push((record.key.to_vec(), (segment, offset)));
                continue;
            }
            let (new_segment, new_offset) = self.append(SegmentKind::Group(record.group), &record)?;
            report.records_moved += 1;
            report.bytes_moved += record.size() as u64;
            let moved =
                Entry { segment: new_segment, offset: new_offset, stale_copies: entry.stale_copies + 1, ..entry };
            self.segment_mut(entry.segment).live_bytes -= u64::from(entry.length);
            self.segment_mut(new_segment).live_bytes += u64::from(entry.length);
            *self.entry_mut_of(record.key).expect("appending moves no index entry") = moved;
        }
        // Everything written so far becomes durable before any source is freed: the copies
        // made here, and also the newer records that superseded the stale ones about to go.
        // Freeing a segment whose stale record is the only durable version of its key, while
        // the newer one is still buffered, would lose synced data at the next crash.
        let kinds: Vec<SegmentKind> = self.writers.keys().copied().collect();
        for kind in kinds {
            self.flush_writer(kind)?;
        }
        self.sync_dirty()?;
        let dropped_locations: BTreeSet<(u64, u64)> = dropped.iter().map(|(_, location)| *location).collect();
        for (key, (old_segment, old_offset)) in dropped {
            let entry = self.index.get(key.as_slice()).copied().expect("a dropped key is indexed");
            assert_eq!((entry.segment, entry.offset), (old_segment, old_offset), "nothing moved a dropped tombstone");
            self.index.remove(key.as_slice());
            self.segment_mut(old_segment).live_bytes -= u64::from(entry.length);
            report.tombstones_dropped += 1;
        }
        // Free the sources; their records stop counting as copies.
        for (segment, offset, record_bytes) in records {
            if dropped_locations.contains(&(segment, offset)) {
                continue;
            }
            let record = format::decode_record(record_bytes).expect("verified by the scan");
            if let Some(entry) = self.entry_mut_of(record.key) {
                assert!(entry.stale_copies > 0, "a record on disk that the index does not point to is a counted copy");
                entry.stale_copies -= 1;
            }
        }
        for &segment in sources {
            self.free_segment(segment)?;
            report.segments_freed += 1;
        }
        Ok(report)
    }

    /// Frees a sealed segment durably: FREE markers, with the generation bumped, over its first
    /// buffer and its seal, then a sync.
    fn free_segment(&mut self, segment: u64) -> Result<()> {
        let state = self.segments[usize::try_from(segment).expect("fits")].clone();
        let SegmentState::Sealed(kind) = state.state else { panic!("only sealed segments are freed") };
        assert_eq!(state.live_bytes, 0, "a freed segment holds nothing the index points to");
        let generation = state.generation.saturating_add(1);
        let (file_index, base, path) = self.file_of(segment);
        let file = &self.files[file_index];
        // The seal goes first, durably. Were the FREE marker at offset 0 written first and torn
        // by a crash, the old seal after it would pass the torn unsynced write off as damage to
        // synced data. With the seal gone, a crash in between leaves a FREE marker of the new
        // generation where the buffers end, which recovery takes for the freeing it is.
        let void_seal = || {
            if state.written > 0 {
                let marker = format::marker(BufferKind::Free, kind.owner(), segment, generation, state.written);
                file.write_at(&marker, base + state.written)?;
                file.sync_data()?;
            }
            Ok(())
        };
        let result = void_seal()
            .and_then(|()| file.write_at(&format::marker(BufferKind::Free, kind.owner(), segment, generation, 0), base))
            .and_then(|()| file.sync_data())
            .map_err(io_error(&path, "free_segment"));
        if let Err(error) = result {
            return Err(self.poison(error));
        }
        *self.segment_mut(segment) = Segment { state: SegmentState::Free, generation, written: 0, live_bytes: 0 };
        self.free.insert(segment);
        Ok(())
    }

    /// Drops every key of `group`: a tombstone for each (synced), then every segment of the
    /// group is freed. The tombstones go once no older version of their keys is left on disk.
    pub fn drop_group(&mut self, group: u32) -> Result<StepReport> {
        self.begin_write()?;
        let keys: Vec<Vec<u8>> = self
            .index
            .iter()
            .filter(|(_, entry)| entry.group == group && !entry.tombstone)
            .map(|(key, _)| key.as_slice().to_vec())
            .collect();
        // In key order, as the index gave them when it was a B-tree, not the hash map's order.
        let mut keys = keys;
        keys.sort_unstable();
        for key in &keys {
            self.write(group, key, None)?;
        }
        self.seal(SegmentKind::Group(group))?;
        self.sync()?;
        let segments: Vec<u64> = self
            .segments
            .iter()
            .enumerate()
            .filter(|(_, segment)| segment.state == SegmentState::Sealed(SegmentKind::Group(group)))
            .map(|(id, _)| id as u64)
            .collect();
        let mut report = StepReport::default();
        if !segments.is_empty() {
            report = self.relocate(&segments)?;
        }
        Ok(report)
    }

    /// Runs the separator and compaction until neither has work (bounded by the segment count).
    pub fn maintain_to_quiescence(&mut self) -> Result<()> {
        self.seal_mixed()?;
        for _ in 0..=self.segments.len() * 2 {
            let separated = self.separator_step()?;
            let compacted = self.compact_step()?;
            if separated.segments_freed == 0 && compacted.segments_freed == 0 {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// What [`verify`] found.
#[derive(Debug)]
pub struct VerifyReport {
    pub segments_used: u64,
    pub records_count: u64,
    /// Segments torn while being written (recovery seals them): a store that was closed with
    /// [`Logstor::close`] has none; one dropped without it, or cut off by a crash, has the
    /// segments it was writing.
    pub torn_segments: u64,
    /// The first problem that would fail a strict open.
    pub problem: Option<Error>,
}

/// Scans every segment the way a strict open would, changing nothing and taking no lock.
pub fn verify(vfs: &dyn Vfs, directory: &Path) -> Result<VerifyReport> {
    let meta_path = directory.join(format::META_FILE_NAME);
    let file = vfs.open(&meta_path, OpenMode::Read).map_err(io_error(&meta_path, "open"))?;
    let mut bytes = vec![0u8; format::META_SIZE];
    let mut report = VerifyReport { segments_used: 0, records_count: 0, torn_segments: 0, problem: None };
    if let Err(error) = vfs::read_exact_retrying(file.as_ref(), &meta_path, &mut bytes, 0) {
        report.problem = Some(error);
        return Ok(report);
    }
    let geometry = match format::decode_meta(&bytes) {
        Ok(meta) => meta.geometry,
        Err(reason) => {
            report.problem = Some(Error::Corruption { file: meta_path, segment: 0, offset: 0, reason });
            return Ok(report);
        }
    };
    let mut index = 0;
    let mut segment_bytes = vec![0u8; usize::try_from(geometry.segment_size).expect("fits")];
    loop {
        let path = directory.join(format::data_file_name(index));
        let file = match vfs.open(&path, OpenMode::Read) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(report),
            Err(error) => return Err(Error::io(&path, "open", error)),
        };
        for local in 0..geometry.segments_per_file {
            let segment = index * geometry.segments_per_file + local;
            let base = local * geometry.segment_size;
            if let Err(error) = vfs::read_exact_retrying(file.as_ref(), &path, &mut segment_bytes, base) {
                report.problem = Some(error);
                return Ok(report);
            }
            match scan_segment(&segment_bytes, segment) {
                SegmentScan::Free { .. } => {}
                SegmentScan::Used { sealed_at, records, .. } => {
                    report.segments_used += 1;
                    report.records_count += records.len() as u64;
                    report.torn_segments += u64::from(sealed_at.is_none());
                }
                SegmentScan::Damaged { offset, reason, .. } => {
                    report.problem = Some(Error::Corruption { file: path, segment, offset: base + offset, reason });
                    return Ok(report);
                }
            }
        }
        index += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The index by another route, as open built it before the hash map: sort by key, newest
    /// sequence first, then scan order, and keep the first of each key.
    fn build_index_by_sorting(mut found: Vec<(IndexKey, Entry)>) -> BTreeMap<IndexKey, Entry> {
        found.sort_by(|(key, entry), (other_key, other)| {
            key.cmp(other_key)
                .then(other.sequence.cmp(&entry.sequence))
                .then((entry.segment, entry.offset).cmp(&(other.segment, other.offset)))
        });
        // `dedup_by` hands (later, kept): the kept one is the first of its key, the newest.
        found.dedup_by(|(key, _), (kept_key, kept)| {
            let duplicate = key == kept_key;
            kept.stale_copies += u32::from(duplicate);
            duplicate
        });
        found.into_iter().collect()
    }

    proptest! {
        /// Inserting in scan order, grouped by table slot, gives exactly the index sorting gives: the newest record of
        /// each key, the first in scan order between copies of one record (same sequence), and
        /// the others counted as stale copies.
        #[test]
        fn build_index_matches_sorting_by_key_and_sequence(
            records in proptest::collection::vec((0u8..6, 0u64..5, any::<bool>(), 0u32..3), 0..60),
        ) {
            // Scan order: by segment, then offset; a few keys, so duplicates are common.
            let found: Vec<(IndexKey, Entry)> = records
                .iter()
                .enumerate()
                .map(|(position, &(key, sequence, tombstone, group))| {
                    let entry = Entry {
                        segment: position as u64 / 8,
                        offset: (position as u64 % 8) * 100,
                        length: 100,
                        sequence,
                        tombstone,
                        group,
                        stale_copies: 0,
                    };
                    (IndexKey::new(&vec![key; usize::from(key) * 5]), entry)
                })
                .collect();
            let built: BTreeMap<IndexKey, Entry> = build_index(found.clone()).into_iter().collect();
            prop_assert_eq!(built, build_index_by_sorting(found));
        }
    }
}
