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
mod options;
mod read;
mod recovery;
mod segment;
mod snapshot;
mod verify;
mod write;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use format::IndexEntry;
pub use options::{CommitlogOptions, Retention};
pub use read::{Commits, Transactions};
use recovery::recover;
pub use snapshot::{Snapshot, SnapshotSource};
pub use verify::{verify, VerifyReport};
use write::{Active, WRITE_BUFFER_PREALLOCATED_MAX};

use crate::directory::{self, Structure};
use crate::error::{Error, Result};
use crate::health::Health;
pub use crate::repair::{RecoveryMode, Repair};
use crate::vfs::{self, OpenMode, Vfs, VfsFile, VfsLock};

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
    health: Health,
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
            health: Health::new(report.repair.is_some()),
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
}
