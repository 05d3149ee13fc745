//! A commitlog: the durable history of a transactional datastore, in the manner of
//! SpacetimeDB's.
//!
//! The datastore decides which transactions go into one commit and supplies their offsets; the
//! commitlog checks they continue the log, stores each commit atomically (torn, it is wholly
//! invalid), and lets the datastore snapshot its state when a segment rotates or every N
//! transactions, so replay never starts from the beginning of time.
//!
//! # Durability
//!
//! [`Commitlog::commit`] buffers the commit in memory. [`Commitlog::flush`] writes buffered
//! commits to the OS in one write call; readers of this handle see flushed commits.
//! [`Commitlog::sync`] flushes and fsyncs: every commit before it survives a crash. Rotation
//! syncs the old segment, writes its offset index, and makes the new segment's name durable
//! before any commit goes into it. A failed write or sync poisons the log until it is reopened.
//!
//! # Recovery
//!
//! As for the WAL: damage in the last segment is a torn tail, truncated silently at the last
//! whole commit; damage in a sealed segment, or a gap or overlap between segments, is
//! corruption, which [`RecoveryMode::Strict`] reports and [`RecoveryMode::Repair`] cuts away
//! through a durable repair plan. Offset index files are checked against their segments on
//! every open and rewritten when missing, damaged or wrong. Snapshots beyond the recovered log
//! are removed.

pub mod format;
mod inspect;
mod recovery;
mod segment;
mod snapshot;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use format::{IndexEntry, SEGMENT_HEADER_SIZE};
use inspect::{inspect, list_directory, read_index, Scope, SegmentScan};
use recovery::recover;
use segment::{CommitScanner, ScanItem};
pub use snapshot::{Snapshot, SnapshotSource};

use crate::directory::{self, Structure};
use crate::error::{CorruptionReason, Error, Result};
use crate::repair;
pub use crate::repair::{RecoveryMode, Repair};
use crate::vfs::{self, OpenMode, Vfs, VfsFile, VfsLock};

/// What happens to old segments once snapshots make them unnecessary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Retention {
    /// Keep every segment. The default.
    #[default]
    KeepAll,
    /// Remove sealed segments whose commits all lie at or below the oldest kept snapshot, so
    /// that restoring from any kept snapshot still has the log it needs.
    RemoveBelowOldestSnapshot,
}

/// Options for [`Commitlog::open`].
///
/// None of them is recorded on disk: each may differ from one open to the next, and an open
/// reads the files as they are whatever the options they were written with.
#[derive(Clone, Debug)]
pub struct CommitlogOptions {
    /// A segment is sealed once the next commit would take it past this size (a commit larger
    /// than this gets a segment of its own). Defaults to 256 MiB.
    ///
    /// Segments written under another size are read as they are; an active segment already
    /// past this size is sealed at the next commit.
    pub segment_size_max: u64,
    /// Bytes between offset index entries. Defaults to 64 KiB.
    ///
    /// Index files written with another interval are as good and are kept (an open checks
    /// that each entry names a commit of its segment, not where the entries fall); segments
    /// sealed from now on are indexed at this one.
    pub index_interval_bytes: u64,
    /// Buffered commits are written to the OS once they reach this size. Defaults to 1 MiB.
    pub write_buffer_size: usize,
    /// A snapshot falls due after this many transactions (and at every rotation). Defaults to
    /// 1,000,000.
    ///
    /// An open counts the transactions since the newest snapshot on disk, so a smaller
    /// interval can make a snapshot due at once.
    pub snapshot_interval_transactions: u64,
    /// Snapshot files kept; older ones are removed. At least 1. Defaults to 2.
    ///
    /// Applied each time a snapshot is taken, not at open: an open with a smaller value than
    /// the snapshots on disk removes none of them, and the next snapshot removes the oldest
    /// beyond this many.
    pub snapshots_kept: usize,
    /// Defaults to [`Retention::KeepAll`]. Applied each time a snapshot is taken, not at open.
    pub retention: Retention,
    /// Defaults to [`RecoveryMode::Strict`]. A repair plan an earlier `Repair` open left on
    /// disk is finished in either mode.
    pub recovery_mode: RecoveryMode,
}

/// The most of [`CommitlogOptions::write_buffer_size`] an open allocates up front.
const WRITE_BUFFER_PREALLOCATED_MAX: usize = 1 << 20;

impl Default for CommitlogOptions {
    fn default() -> Self {
        Self {
            segment_size_max: 256 << 20,
            index_interval_bytes: 64 << 10,
            write_buffer_size: 1 << 20,
            snapshot_interval_transactions: 1_000_000,
            snapshots_kept: 2,
            retention: Retention::KeepAll,
            recovery_mode: RecoveryMode::Strict,
        }
    }
}

impl CommitlogOptions {
    fn validate(&self) -> Result<()> {
        let invalid = |reason: &str| Err(Error::InvalidArgument { reason: reason.to_string() });
        if self.segment_size_max <= SEGMENT_HEADER_SIZE as u64 {
            return invalid("segment_size_max must exceed the 32-byte segment header");
        }
        if self.index_interval_bytes == 0 || self.write_buffer_size == 0 || self.snapshot_interval_transactions == 0 {
            return invalid(
                "index_interval_bytes, write_buffer_size and snapshot_interval_transactions must be positive",
            );
        }
        if self.snapshots_kept == 0 {
            return invalid("snapshots_kept must be at least 1");
        }
        Ok(())
    }
}

/// One commit read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    pub first_offset: u64,
    pub epoch: u64,
    /// The transactions, at offsets `first_offset`, `first_offset + 1`, ...
    pub transactions: Vec<Vec<u8>>,
}

impl Commit {
    pub fn last_offset(&self) -> u64 {
        self.first_offset + self.transactions.len() as u64 - 1
    }
}

/// What opening found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    pub segments_count: u64,
    pub commits_count: u64,
    pub transactions_count: u64,
    pub temp_files_removed: u64,
    /// A torn tail truncated from the last segment.
    pub torn_tail: Option<TornTail>,
    /// A repair of damaged synced data (made or finished by this open).
    pub repair: Option<Repair>,
    /// Offset index files rewritten because they were missing, damaged or wrong.
    pub indexes_rebuilt: u64,
    /// Snapshot files removed because they lie beyond the recovered log.
    pub snapshots_removed: u64,
    /// The log ended below a valid snapshot (only a repair can cause this): every segment was
    /// removed and the log restarted right after that snapshot, which holds their state.
    pub restarted_after_snapshot: Option<u64>,
}

/// A torn tail removed silently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment's first offset.
    pub segment: u64,
    /// The segment's new length.
    pub offset: u64,
    pub bytes_dropped: u64,
}

/// A sealed segment.
#[derive(Clone, Debug)]
struct Sealed {
    min_offset: u64,
    /// One past its last offset.
    next_offset: u64,
    length: u64,
    index: Vec<IndexEntry>,
}

struct Active {
    min_offset: u64,
    path: PathBuf,
    file: Box<dyn VfsFile>,
    /// Bytes written to the OS; readers stop here.
    end: u64,
    index: Vec<IndexEntry>,
}

/// The commitlog on a [`Vfs`]. See the module docs for its promises.
///
/// The caller supplies each transaction's offset, and a commit that does not continue the log
/// is refused whole:
///
/// ```
/// use std::sync::Arc;
///
/// use ballast::commitlog::{Commitlog, CommitlogOptions};
/// use ballast::vfs::OsVfs;
/// use ballast::Error;
///
/// # fn main() -> ballast::Result<()> {
/// # let directory = tempfile::tempdir().expect("a temp dir");
/// let mut log = Commitlog::open(Arc::new(OsVfs::new()), directory.path(), CommitlogOptions::default())?;
/// log.commit(&[(0, &b"create table"[..]), (1, b"insert 1")])?;
/// let gap = log.commit(&[(3, &b"insert 3"[..])]);
/// assert!(matches!(gap, Err(Error::OffsetMismatch { expected: 2, found: 3 })));
/// log.sync()?;
///
/// let transactions: Vec<(u64, Vec<u8>)> = log.transactions_from(1).collect::<Result<_, _>>()?;
/// assert_eq!(transactions, [(1, b"insert 1".to_vec())]);
/// # Ok(())
/// # }
/// ```
pub struct Commitlog {
    vfs: Arc<dyn Vfs>,
    directory: PathBuf,
    options: CommitlogOptions,
    _lock: Box<dyn VfsLock>,
    sealed: Vec<Sealed>,
    active: Active,
    buffer: Vec<u8>,
    /// The offset the next commit must start at.
    next_offset: u64,
    epoch: u64,
    health: repair::Health,
    report: RecoveryReport,
    transactions_since_snapshot: u64,
    rotated_since_snapshot: bool,
    /// Offsets of the snapshot files present, ascending.
    snapshots: Vec<u64>,
}

impl fmt::Debug for Commitlog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Commitlog")
            .field("directory", &self.directory)
            .field("segments", &(self.sealed.len() + 1))
            .field("next_offset", &self.next_offset)
            .field("epoch", &self.epoch)
            .field("poisoned", &self.health.is_poisoned())
            .finish()
    }
}

/// Opens `path` and returns it with its length.
fn open_file(vfs: &dyn Vfs, path: &Path, mode: OpenMode) -> Result<(Box<dyn VfsFile>, u64)> {
    let file = vfs.open(path, mode).map_err(|error| Error::io(path, "open", error))?;
    let length = file.len().map_err(|error| Error::io(path, "len", error))?;
    Ok((file, length))
}

fn io_error<'a>(path: &'a Path, operation: &'static str) -> impl FnOnce(io::Error) -> Error + 'a {
    move |error| Error::io(path, operation, error)
}

impl Commitlog {
    /// Opens the commitlog in `directory`, creating it if needed, and recovers (see the module
    /// docs). Takes the directory's lock: a second open fails with [`Error::Locked`].
    ///
    /// # A failed open changes nothing
    ///
    /// Every check that can fail the open runs before the open writes anything, so an open
    /// that fails leaves the directory as it found it, but for the directory itself and its
    /// `LOCK` file, which the open creates to take the lock. It fails on invalid options or an
    /// empty path ([`Error::InvalidArgument`], before even the lock), on a directory holding
    /// another ballast structure's files ([`Error::ForeignDirectory`], before the lock too), on
    /// a file no commitlog writes ([`Error::BadFileName`]), on a damaged repair plan
    /// ([`Error::Corruption`]), and in [`RecoveryMode::Strict`] on damaged synced data
    /// ([`Error::Corruption`]), judged on the log as a repair plan found on disk will leave
    /// it. Once the writes begin, only an I/O error can fail the open.
    ///
    /// A successful open may write, and its [`RecoveryReport`] says what it did: it removes
    /// leftover temp files, finishes a repair plan an earlier open left (in either mode: that
    /// open's `Repair` mode asked for it), repairs damage in `Repair` mode, restarts the log
    /// after a snapshot it ended below, truncates a torn tail, rewrites missing or wrong index
    /// files, and removes stray index files and snapshots beyond the log.
    ///
    /// No option is recorded on disk, so none can disagree with the files: the commitlog
    /// never fails with [`Error::OptionsMismatch`], and every option may change between opens
    /// (see [`CommitlogOptions`] for what each change does).
    pub fn open(vfs: Arc<dyn Vfs>, directory: impl Into<PathBuf>, options: CommitlogOptions) -> Result<Self> {
        options.validate()?;
        let directory = directory.into();
        directory::check_path(&directory)?;
        directory::refuse_foreign(vfs.as_ref(), &directory, Structure::Commitlog)?;
        let lock = vfs::open_directory_locked(vfs.as_ref(), &directory)?;
        let mut report = RecoveryReport::default();
        let state = recover(vfs.as_ref(), &directory, &options, &mut report)?;
        let latest_snapshot = state.snapshots.last().copied();
        let first_offset = state.sealed.first().map_or(state.active.min_offset, |segment| segment.min_offset);
        let transactions_since_snapshot = state.next_offset - latest_snapshot.map_or(first_offset, |offset| offset + 1);
        tracing::info!(directory = %directory.display(), ?report, "commitlog opened");
        Ok(Self {
            vfs,
            directory,
            _lock: lock,
            sealed: state.sealed,
            active: state.active,
            // Grown as commits fill it: a large write_buffer_size is a bound, not an allocation.
            buffer: Vec::with_capacity(options.write_buffer_size.min(WRITE_BUFFER_PREALLOCATED_MAX)),
            next_offset: state.next_offset,
            epoch: state.epoch,
            health: repair::Health::new(report.repair.is_some()),
            report,
            transactions_since_snapshot,
            rotated_since_snapshot: false,
            snapshots: state.snapshots,
            options,
        })
    }

    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    pub fn is_poisoned(&self) -> bool {
        self.health.is_poisoned()
    }

    /// The epoch stamped on the next commit.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The offset the next commit must start at.
    pub fn next_offset(&self) -> u64 {
        self.next_offset
    }

    fn first_offset(&self) -> u64 {
        self.sealed.first().map_or(self.active.min_offset, |segment| segment.min_offset)
    }

    /// The highest committed offset (buffered commits included), or `None` for an empty log.
    pub fn max_committed_offset(&self) -> Option<u64> {
        (self.next_offset > self.first_offset()).then(|| self.next_offset - 1)
    }

    /// The lowest offset still in the log, or `None` for an empty log.
    pub fn min_committed_offset(&self) -> Option<u64> {
        (self.next_offset > self.first_offset()).then(|| self.first_offset())
    }

    /// First offsets of the segments present, ascending.
    pub fn segments(&self) -> Vec<u64> {
        self.sealed.iter().map(|segment| segment.min_offset).chain([self.active.min_offset]).collect()
    }

    fn poison(&mut self, error: Error) -> Error {
        self.health.poison(&self.directory, error)
    }

    fn begin_write(&mut self) -> Result<()> {
        self.health.begin_write(self.vfs.as_ref(), &self.directory)
    }

    /// Sets the epoch stamped on later commits. Epochs never go down: a lower one is
    /// [`Error::EpochRegression`]. The epoch becomes durable with the next synced commit.
    pub fn set_epoch(&mut self, epoch: u64) -> Result<()> {
        if epoch < self.epoch {
            return Err(Error::EpochRegression { current: self.epoch, requested: epoch });
        }
        self.epoch = epoch;
        Ok(())
    }

    /// Buffers one commit holding every `(offset, payload)` given. The offsets must continue
    /// the log contiguously from [`Commitlog::next_offset`]; otherwise
    /// [`Error::OffsetMismatch`] and nothing is buffered. The commit reaches the OS at the next
    /// [`Commitlog::flush`] (or when the buffer fills) and the disk at the next
    /// [`Commitlog::sync`].
    pub fn commit(&mut self, transactions: &[(u64, &[u8])]) -> Result<()> {
        self.health.check()?;
        // Arguments first: a refused commit does no I/O at all.
        if transactions.is_empty() {
            return Err(Error::InvalidArgument { reason: "a commit holds at least one transaction".to_string() });
        }
        for (index, &(offset, _)) in transactions.iter().enumerate() {
            let expected = self.next_offset + index as u64;
            if offset != expected {
                return Err(Error::OffsetMismatch { expected, found: offset });
            }
        }
        let payloads = transactions.iter().map(|&(_, payload)| payload);
        let Some(payload_length) = format::payload_length(payloads.clone()) else {
            let length = transactions.iter().map(|(_, payload)| payload.len() as u64).sum();
            return Err(Error::RecordTooLarge { length, max: u64::from(u32::MAX) });
        };
        if u32::try_from(transactions.len()).is_err() {
            return Err(Error::RecordTooLarge { length: transactions.len() as u64, max: u64::from(u32::MAX) });
        }
        self.begin_write()?;
        let size = format::COMMIT_HEADER_SIZE as u64 + u64::from(payload_length);
        let active_has_commits = self.next_offset > self.active.min_offset;
        if active_has_commits && self.active.end + self.buffer.len() as u64 + size > self.options.segment_size_max {
            self.rotate_inner()?;
        }
        let position = self.active.end + self.buffer.len() as u64;
        let index_due =
            self.active.index.last().is_none_or(|last| position - last.position >= self.options.index_interval_bytes);
        if index_due {
            self.active.index.push(IndexEntry { offset: self.next_offset, position });
        }
        format::encode_commit(
            &mut self.buffer,
            self.active.min_offset,
            position,
            self.next_offset,
            self.epoch,
            payloads,
        );
        self.next_offset += transactions.len() as u64;
        self.transactions_since_snapshot += transactions.len() as u64;
        if self.buffer.len() >= self.options.write_buffer_size {
            self.flush_inner()?;
        }
        Ok(())
    }

    /// Writes buffered commits to the OS in one call. They are visible to readers after it, but
    /// not durable until [`Commitlog::sync`].
    pub fn flush(&mut self) -> Result<()> {
        self.begin_write()?;
        self.flush_inner()
    }

    fn flush_inner(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        if let Err(error) = self.active.file.write_at(&self.buffer, self.active.end) {
            let error = Error::io(&self.active.path, "write_at", error);
            return Err(self.poison(error));
        }
        self.active.end += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    /// Flushes and fsyncs: every commit before the call survives a crash once it returns.
    pub fn sync(&mut self) -> Result<()> {
        self.begin_write()?;
        self.flush_inner()?;
        if let Err(error) = self.active.file.sync_data() {
            let error = Error::io(&self.active.path, "sync_data", error);
            return Err(self.poison(error));
        }
        Ok(())
    }

    /// Seals the active segment (if it holds a commit) and starts the next. Everything
    /// committed before is durable when it returns, and a snapshot falls due.
    pub fn rotate(&mut self) -> Result<()> {
        self.begin_write()?;
        if self.next_offset > self.active.min_offset {
            self.rotate_inner()?;
        }
        Ok(())
    }

    fn rotate_inner(&mut self) -> Result<()> {
        self.sync()?;
        let index = format::encode_index(self.active.min_offset, self.active.end, &self.active.index);
        let index_name = format::index_file_name(self.active.min_offset);
        let next_name = format::segment_file_name(self.next_offset);
        let header = format::encode_segment_header(self.next_offset);
        let created = vfs::create_file_atomically(self.vfs.as_ref(), &self.directory, &index_name, &index)
            .and_then(|_| vfs::create_file_atomically(self.vfs.as_ref(), &self.directory, &next_name, &header));
        let file = match created {
            Ok(file) => file,
            Err(error) => return Err(self.poison(error)),
        };
        let next = Active {
            min_offset: self.next_offset,
            path: self.directory.join(next_name),
            file,
            end: SEGMENT_HEADER_SIZE as u64,
            index: Vec::new(),
        };
        let old = std::mem::replace(&mut self.active, next);
        self.sealed.push(Sealed {
            min_offset: old.min_offset,
            next_offset: self.next_offset,
            length: old.end,
            index: old.index,
        });
        self.rotated_since_snapshot = true;
        Ok(())
    }

    /// Durably removes every commit after `offset`: a commit holding `offset` and later offsets
    /// goes whole. Snapshots beyond the new end go too. Returns the new next offset. Refused
    /// with [`Error::InvalidArgument`] when retention has removed the log's start and no
    /// snapshot at or below `offset` would remain to restore from.
    pub fn reset_to(&mut self, offset: u64) -> Result<u64> {
        self.begin_write()?;
        if offset.saturating_add(1) >= self.next_offset {
            return Ok(self.next_offset);
        }
        if offset.saturating_add(1) < self.first_offset() {
            return Err(Error::InvalidArgument {
                reason: format!("cannot reset to {offset}: the log starts at {}", self.first_offset()),
            });
        }
        // Retention removed the log's start: restoring then needs a snapshot at or below the
        // reset point, since every snapshot beyond it goes.
        if self.first_offset() > 0 && !self.snapshots.iter().any(|&snapshot| snapshot <= offset) {
            return Err(Error::InvalidArgument {
                reason: format!(
                    "cannot reset to {offset}: the log before {} was removed and no snapshot at or below {offset} \
                     would be left to restore from",
                    self.first_offset()
                ),
            });
        }
        let result = self.reset_inner(offset);
        match result {
            Ok(next) => Ok(next),
            Err(error) => Err(self.poison(error)),
        }
    }

    fn reset_inner(&mut self, offset: u64) -> Result<u64> {
        self.flush_inner()?;
        let vfs = self.vfs.as_ref();
        let directory = self.directory.clone();
        let segments = self.segments();
        let keep = segments.iter().rposition(|&min_offset| min_offset <= offset).unwrap_or(0);
        // Newest first, each removal durable, so a crash part way leaves a prefix of the log.
        for &min_offset in segments[keep + 1..].iter().rev() {
            for name in [format::segment_file_name(min_offset), format::index_file_name(min_offset)] {
                let path = directory.join(name);
                match vfs.remove_file(&path) {
                    Ok(()) => vfs.sync_dir(&directory).map_err(io_error(&directory, "sync_dir"))?,
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                    Err(error) => return Err(Error::io(&path, "remove_file", error)),
                }
            }
        }
        let min_offset = segments[keep];
        let path = directory.join(format::segment_file_name(min_offset));
        let (file, length) = open_file(vfs, &path, OpenMode::ReadWrite)?;
        let mut scanner = CommitScanner::new(min_offset, length, SEGMENT_HEADER_SIZE as u64, min_offset);
        let mut index = Vec::new();
        let (cut, next_offset) = loop {
            match scanner.next_item(file.as_ref(), &path)? {
                ScanItem::Commit { position, header } if header.last_offset() > offset => {
                    break (position, header.first_offset);
                }
                ScanItem::Commit { position, header } => {
                    if index
                        .last()
                        .is_none_or(|last: &IndexEntry| position - last.position >= self.options.index_interval_bytes)
                    {
                        index.push(IndexEntry { offset: header.first_offset, position });
                    }
                }
                ScanItem::End { position } if position == length => break (position, scanner.next_offset()),
                // Zeros before the end of the file: commits went missing there (a misdirected
                // write), so cutting here would drop commits the caller asked to keep.
                ScanItem::End { position } => {
                    let reason = CorruptionReason::NonZeroPadding;
                    return Err(Error::Corruption { file: path, segment: min_offset, offset: position, reason });
                }
                ScanItem::Damage { position, reason } => {
                    return Err(Error::Corruption { file: path, segment: min_offset, offset: position, reason });
                }
            }
        };
        vfs::truncate_durably(file.as_ref(), &path, cut)?;
        if keep < self.sealed.len() {
            // The kept segment becomes the active one, which has no index file.
            let index_path = directory.join(format::index_file_name(min_offset));
            vfs.remove_file(&index_path).map_err(io_error(&index_path, "remove_file"))?;
            vfs.sync_dir(&directory).map_err(io_error(&directory, "sync_dir"))?;
        }
        let beyond: Vec<u64> = self.snapshots.iter().copied().filter(|&snapshot| snapshot >= next_offset).collect();
        for snapshot in beyond {
            let snapshot_path = directory.join(format::snapshot_file_name(snapshot));
            vfs.remove_file(&snapshot_path).map_err(io_error(&snapshot_path, "remove_file"))?;
            vfs.sync_dir(&directory).map_err(io_error(&directory, "sync_dir"))?;
            self.snapshots.retain(|&kept| kept != snapshot);
        }
        self.sealed.truncate(keep);
        self.active = Active { min_offset, path, file, end: cut, index };
        self.next_offset = next_offset;
        self.transactions_since_snapshot = 0;
        Ok(next_offset)
    }

    /// Syncs and closes the log.
    pub fn close(mut self) -> Result<()> {
        self.sync()
    }

    /// Where to start reading for `offset`: the segment holding it, and the last index entry
    /// at or before it below `limit`.
    fn seek(&self, offset: u64) -> (usize, IndexEntry) {
        let segments = self.segments();
        let segment = segments.iter().rposition(|&min_offset| min_offset <= offset).unwrap_or(0);
        let (index, limit) = match self.sealed.get(segment) {
            Some(sealed) => (&sealed.index, sealed.length),
            None => (&self.active.index, self.active.end),
        };
        let start = IndexEntry { offset: segments[segment], position: SEGMENT_HEADER_SIZE as u64 };
        let entry = index
            .iter()
            .take_while(|entry| entry.offset <= offset && entry.position < limit)
            .last()
            .copied()
            .unwrap_or(start);
        (segment, entry)
    }

    /// Iterates over the flushed commits holding `offset` and after (from the log's start if
    /// `offset` is below it), verifying each.
    pub fn commits_from(&self, offset: u64) -> Commits<'_> {
        let (segment, entry) = self.seek(offset);
        Commits {
            log: self,
            from: offset,
            segment,
            start: entry,
            scanner: None,
            file: None,
            done: false,
            trusted_index: true,
        }
    }

    /// Iterates over the flushed transactions at `offset` and after, as `(offset, payload)`.
    pub fn transactions_from(&self, offset: u64) -> Transactions<'_> {
        Transactions { commits: self.commits_from(offset), from: offset, current: None }
    }
}

/// Iterator over commits, from [`Commitlog::commits_from`]. After an error it yields nothing.
pub struct Commits<'a> {
    log: &'a Commitlog,
    from: u64,
    segment: usize,
    start: IndexEntry,
    scanner: Option<CommitScanner>,
    file: Option<Box<dyn VfsFile>>,
    done: bool,
    /// Cleared once an index entry led somewhere wrong; the segment is then read from its start.
    trusted_index: bool,
}

impl fmt::Debug for Commits<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Commits").field("from", &self.from).field("segment", &self.segment).finish()
    }
}

impl Commits<'_> {
    fn next_commit(&mut self) -> Result<Option<Commit>> {
        let log = self.log;
        let segments = log.segments();
        // Bounded: each iteration yields, fails, or moves to a later segment or position.
        loop {
            if self.segment >= segments.len() {
                return Ok(None);
            }
            let min_offset = segments[self.segment];
            let is_active = self.segment == log.sealed.len();
            let path = log.directory.join(format::segment_file_name(min_offset));
            if self.scanner.is_none() {
                let limit = if is_active {
                    self.file = None;
                    log.active.end
                } else {
                    let (file, _) = open_file(log.vfs.as_ref(), &path, OpenMode::Read)?;
                    self.file = Some(file);
                    log.sealed[self.segment].length
                };
                self.scanner = Some(CommitScanner::new(min_offset, limit, self.start.position, self.start.offset));
            }
            let file: &dyn VfsFile = match &self.file {
                Some(file) => file.as_ref(),
                None => log.active.file.as_ref(),
            };
            let scanner = self.scanner.as_mut().expect("created above");
            match scanner.next_item(file, &path)? {
                ScanItem::Commit { header, .. } => {
                    if header.last_offset() < self.from {
                        continue;
                    }
                    let bytes = scanner.commit_bytes();
                    let transactions = format::transactions(bytes).map(<[u8]>::to_vec).collect();
                    return Ok(Some(Commit { first_offset: header.first_offset, epoch: header.epoch, transactions }));
                }
                ScanItem::End { position } if position == scanner.limit() => {
                    let next_offset = scanner.next_offset();
                    if let Some(&next_segment) = segments.get(self.segment + 1) {
                        if next_segment != next_offset {
                            let reason = CorruptionReason::OutOfOrder { expected: next_offset, found: next_segment };
                            let file = log.directory.join(format::segment_file_name(next_segment));
                            return Err(Error::Corruption { file, segment: next_segment, offset: 0, reason });
                        }
                    }
                    self.segment += 1;
                    self.start = IndexEntry { offset: next_offset, position: SEGMENT_HEADER_SIZE as u64 };
                    self.scanner = None;
                }
                ScanItem::End { position } => {
                    let reason = CorruptionReason::NonZeroPadding;
                    return Err(Error::Corruption { file: path, segment: min_offset, offset: position, reason });
                }
                ScanItem::Damage { position, reason } => {
                    let from_index =
                        position == self.start.position && self.start.position != SEGMENT_HEADER_SIZE as u64;
                    if from_index && self.trusted_index {
                        // The index led to the wrong place: never trust it blindly; read the
                        // segment from its start instead.
                        tracing::warn!(path = %path.display(), position, %reason, "offset index entry is wrong");
                        self.trusted_index = false;
                        self.start = IndexEntry { offset: min_offset, position: SEGMENT_HEADER_SIZE as u64 };
                        self.scanner = None;
                        continue;
                    }
                    return Err(Error::Corruption { file: path, segment: min_offset, offset: position, reason });
                }
            }
        }
    }
}

impl Iterator for Commits<'_> {
    type Item = Result<Commit>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.next_commit().transpose();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

/// Iterator over transactions, from [`Commitlog::transactions_from`].
pub struct Transactions<'a> {
    commits: Commits<'a>,
    from: u64,
    current: Option<(u64, std::vec::IntoIter<Vec<u8>>)>,
}

impl fmt::Debug for Transactions<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transactions").field("from", &self.from).finish()
    }
}

impl Iterator for Transactions<'_> {
    type Item = Result<(u64, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((offset, transactions)) = &mut self.current {
                if let Some(transaction) = transactions.next() {
                    let this = *offset;
                    *offset += 1;
                    if this >= self.from {
                        return Some(Ok((this, transaction)));
                    }
                    continue;
                }
            }
            match self.commits.next()? {
                Ok(commit) => self.current = Some((commit.first_offset, commit.transactions.into_iter())),
                Err(error) => return Some(Err(error)),
            }
        }
    }
}

/// What [`verify`] found.
#[derive(Debug)]
pub struct VerifyReport {
    pub segments_count: u64,
    pub commits_count: u64,
    pub transactions_count: u64,
    /// Where the last segment's whole commits end, if bytes follow (recovery truncates them).
    pub torn_tail: Option<TornTail>,
    /// Sealed segments whose index file is missing, damaged or wrong.
    pub indexes_damaged: Vec<u64>,
    /// Snapshot files that fail verification.
    pub snapshots_damaged: Vec<u64>,
    /// The first problem that would fail a strict open.
    pub problem: Option<Error>,
}

/// Checks segments, index files and snapshots in `directory` the way a strict open would,
/// changing nothing and taking no lock.
pub fn verify(vfs: &dyn Vfs, directory: &Path) -> Result<VerifyReport> {
    let mut report = VerifyReport {
        segments_count: 0,
        commits_count: 0,
        transactions_count: 0,
        torn_tail: None,
        indexes_damaged: Vec::new(),
        snapshots_damaged: Vec::new(),
        problem: None,
    };
    let listing = match list_directory(vfs, directory) {
        Ok(listing) => listing,
        Err(error @ Error::BadFileName { .. }) => {
            report.problem = Some(error);
            return Ok(report);
        }
        Err(error) => return Err(error),
    };
    report.segments_count = listing.segments.len() as u64;
    // Index files are checked below, entry by entry, the damaged segment's too.
    let scope = Scope {
        segments: &listing.segments,
        indexes: &[],
        cut: None,
        index_interval_bytes: CommitlogOptions::default().index_interval_bytes,
    };
    let inspection = inspect(vfs, directory, &scope)?;
    if let Some(damage) = inspection.damage {
        report.problem = Some(damage.into_error(directory));
    }
    report.commits_count = inspection.scans.iter().map(|scan| scan.commits_count).sum();
    report.transactions_count = inspection.scans.iter().map(|scan| scan.transactions_count).sum();
    if let (Some(end), Some(last)) = (inspection.torn_at, inspection.scans.last()) {
        report.torn_tail = Some(TornTail { segment: last.min_offset, offset: end, bytes_dropped: last.length - end });
    }
    let sealed_count =
        if report.problem.is_some() { inspection.scans.len() } else { inspection.scans.len().saturating_sub(1) };
    for scan in &inspection.scans[..sealed_count] {
        let path = directory.join(format::index_file_name(scan.min_offset));
        // An index is checked for what it says, not for where its entries fall: any interval
        // is valid, as long as every entry names a real commit boundary.
        let valid = listing.indexes.contains(&scan.min_offset)
            && read_index(vfs, &path, scan.min_offset)?.is_some_and(|(length, entries)| {
                length == scan.length && entries.iter().all(|entry| index_entry_is_real(vfs, directory, scan, entry))
            });
        if !valid {
            report.indexes_damaged.push(scan.min_offset);
        }
    }
    for &offset in &listing.snapshots {
        if snapshot::read_snapshot(vfs, directory, offset)?.is_none() {
            report.snapshots_damaged.push(offset);
        }
    }
    Ok(report)
}

fn index_entry_is_real(vfs: &dyn Vfs, directory: &Path, scan: &SegmentScan, entry: &IndexEntry) -> bool {
    let path = directory.join(format::segment_file_name(scan.min_offset));
    let Ok((file, length)) = open_file(vfs, &path, OpenMode::Read) else { return false };
    if entry.position < SEGMENT_HEADER_SIZE as u64 || entry.position >= length {
        return false;
    }
    let mut scanner = CommitScanner::new(scan.min_offset, length, entry.position, entry.offset);
    matches!(scanner.next_item(file.as_ref(), &path), Ok(ScanItem::Commit { .. }))
}
