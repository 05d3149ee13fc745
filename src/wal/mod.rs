//! A segmented write-ahead log, in the manner of the Prometheus TSDB WAL.
//!
//! Records are opaque byte strings appended to numbered segment files. Each segment is a header
//! followed by fixed-size pages; a record is split into checksummed fragments that never cross a
//! page, and never crosses a segment itself. See `docs/format.md` for the bytes.
//!
//! # Durability
//!
//! [`Wal::append`] buffers the records in memory (they reach the OS in one write call when the
//! buffer fills, at a sync, or at rotation): they are visible to readers of this handle at once
//! but promise nothing across a crash. [`Wal::sync`] makes every record appended
//! before it durable. Rotation seals the old segment with a sync and makes the new segment's
//! directory entry durable before any record goes into it.
//!
//! # Recovery
//!
//! Opening verifies every segment. Damage in the last segment is a torn tail: it is what a crash
//! leaves of writes that were not synced, so it is truncated silently at the last whole record
//! and appending continues there. Zeros after the last record are not damage: the active
//! segment is preallocated with them ([`WalOptions::preallocate`]). Damage in any earlier
//! segment is corruption of synced data:
//! [`RecoveryMode::Strict`] fails the open with the segment and offset, and
//! [`RecoveryMode::Repair`] truncates there, removes every later segment, and reports what it
//! dropped. A repair first writes its plan durably (the `REPAIR` file), so an open interrupted
//! part way is finished by the next one; the plan stays until the first write after the open
//! that reported it, so a crash can never leave a repair that nobody was told about.
//!
//! Opening checks before it writes: every check that can fail the open (the directory, the
//! page size the segments were written with, damage that fails a strict open) runs first and
//! only reads, so that an open that fails leaves the directory as it found it ([`Wal::open`]).
//! Of the options, only the page size is on disk; the others may change between opens.
//!
//! # Reused files
//!
//! [`Wal::truncate_before`] may keep the files of the segments it removes, renamed
//! `<number>.recycle`, and a later rotation then writes its new segment over one of them
//! ([`WalOptions::recycle_segments`]): syncs over blocks a file already has are cheaper than
//! syncs into new ones. Such a file holds the old segment's fragments after the new records.
//! They never read back as records, because every fragment's checksum binds the segment number
//! it was written for; recovery drops them from the last segment as it drops a torn tail (and
//! reports them as one), and sealing cuts them off before the zero padding, so that a sealed
//! segment looks the same whether its file was new or reused. Sealing ends the data with a
//! seal fragment first, so that a sealed segment whose last records went astray is corruption
//! rather than a segment that ended earlier.
//!
//! One limit is inherent to the format and stated here so nobody relies on more: damage to
//! synced records at the end of the last segment cannot be told apart from a torn write, and is
//! truncated as one. Everything in a sealed segment is protected.
//!
//! # Failures
//!
//! A failed write or sync poisons the handle: every later mutating call returns
//! [`Error::Poisoned`] until the log is reopened, and reopening verifies the tail from disk.

pub mod format;
pub(crate) mod listing;
mod options;
mod read;
mod recovery;
mod scan;
mod segment;
mod verify;
mod write;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use format::{
    FragmentType, FORMAT_VERSION, FRAGMENT_HEADER_SIZE, PAGE_SIZE_MAX, PAGE_SIZE_MIN, SEGMENT_HEADER_SIZE,
    SEGMENT_MAGIC,
};
use listing::list_directory;
pub use listing::{parse_recycle_file_name, parse_segment_file_name, recycle_file_name, segment_file_name};
pub use options::{WalOptions, PREALLOCATE_DEFAULT, RECYCLE_SEGMENTS_DEFAULT};
pub use read::Records;
pub use verify::{verify, VerifyReport};
use write::ActiveSegment;

use crate::directory::{self, Structure};
use crate::error::{Error, Result};
use crate::health::Health;
use crate::repair;
pub use crate::repair::{RecoveryMode, Repair};
use crate::vfs::{self, Vfs, VfsLock};

/// Where a record starts: its segment number and the byte offset of its first fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

impl Position {
    /// The start of segment `segment`.
    pub fn segment_start(segment: u64) -> Self {
        Self { segment, offset: SEGMENT_HEADER_SIZE as u64 }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.segment, self.offset)
    }
}

/// What opening found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments present after recovery.
    pub segments_count: u64,
    /// Records present after recovery.
    pub records_count: u64,
    /// Leftover temporary files removed.
    pub temp_files_removed: u64,
    /// A torn tail truncated from the last segment, if there was one.
    pub torn_tail: Option<TornTail>,
    /// A repair of damaged synced data, only in [`RecoveryMode::Repair`].
    pub repair: Option<Repair>,
}

/// A torn tail removed silently: what a crash left of unsynced writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    pub segment: u64,
    /// The new end of the segment.
    pub offset: u64,
    pub bytes_dropped: u64,
}

/// A segmented write-ahead log on a [`Vfs`]. See the module docs for its promises.
///
/// What a sync made durable is what a reopen reads back, in order:
///
/// ```
/// use std::sync::Arc;
///
/// use ballast::vfs::OsVfs;
/// use ballast::wal::{Wal, WalOptions};
///
/// # fn main() -> ballast::Result<()> {
/// # let directory = tempfile::tempdir().expect("a temp dir");
/// let vfs = Arc::new(OsVfs::new());
/// let mut wal = Wal::open(vfs.clone(), directory.path(), WalOptions::default())?;
/// let first = wal.append(b"first")?;
/// wal.append_batch(&[b"second", b"third"])?;
/// wal.sync()?;
/// drop(wal);
///
/// let wal = Wal::open(vfs, directory.path(), WalOptions::default())?;
/// let records: Vec<Vec<u8>> = wal.records().map(|item| item.map(|(_, record)| record)).collect::<Result<_, _>>()?;
/// assert_eq!(records, [&b"first"[..], b"second", b"third"]);
/// assert_eq!(wal.records().next().transpose()?.map(|(position, _)| position), Some(first));
/// # Ok(())
/// # }
/// ```
pub struct Wal {
    vfs: Arc<dyn Vfs>,
    directory: PathBuf,
    options: WalOptions,
    _lock: Box<dyn VfsLock>,
    first_segment: u64,
    active: ActiveSegment,
    buffer: Vec<u8>,
    health: Health,
    report: RecoveryReport,
    /// Numbers of the truncated segments whose files wait to be reused, ascending.
    recycled: Vec<u64>,
}

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wal")
            .field("directory", &self.directory)
            .field("first_segment", &self.first_segment)
            .field("active_segment", &self.active.number)
            .field("end", &self.active.writer.end)
            .field("poisoned", &self.health.is_poisoned())
            .finish()
    }
}

impl Wal {
    /// Opens the log in `directory`, creating it if needed, and recovers (see the module docs).
    ///
    /// Takes the directory's lock: a second open of the same directory, from this process or
    /// another, fails with [`Error::Locked`] until this handle is dropped.
    ///
    /// An open that fails leaves the directory as it found it, but for the directory itself
    /// and its `LOCK` file, which the open creates before it reads anything. Every check that
    /// can fail runs before the open writes: an empty path is [`Error::InvalidArgument`]; a
    /// directory holding another ballast structure's files is [`Error::ForeignDirectory`], and
    /// one holding a file no WAL writes is [`Error::BadFileName`]; segments written with
    /// another page size are [`Error::OptionsMismatch`] (field `page_size`) in either recovery
    /// mode; damage to synced data fails a [`RecoveryMode::Strict`] open with
    /// [`Error::Corruption`]. Only then does the open finish a repair an earlier open began,
    /// remove leftover temp files and the files kept for reuse beyond
    /// [`WalOptions::recycle_segments`], repair damage ([`RecoveryMode::Repair`]), and cut a
    /// torn tail.
    pub fn open(vfs: Arc<dyn Vfs>, directory: impl Into<PathBuf>, options: WalOptions) -> Result<Self> {
        options.validate()?;
        let directory = directory.into();
        directory::check_path(&directory)?;
        directory::refuse_foreign(vfs.as_ref(), &directory, Structure::Wal)?;
        let lock = vfs::open_directory_locked(vfs.as_ref(), &directory)?;
        // Read only, up to the survey: whatever fails the open fails it here.
        let listing = list_directory(vfs.as_ref(), &directory, options.first_segment)?;
        let plan = listing.repair_plan.then(|| repair::read_plan(vfs.as_ref(), &directory)).transpose()?;
        recovery::check_page_size(vfs.as_ref(), &directory, &listing.segments, options.page_size)?;
        let survey = recovery::survey(vfs.as_ref(), &directory, &options, &listing.segments, plan.as_ref())?;
        let mut report = RecoveryReport::default();
        if let Some(plan) = plan {
            // An earlier open began a repair and did not finish it: finish it and report it.
            let segments = recovery::WalSegments { page_size: options.page_size };
            repair::carry_out(vfs.as_ref(), &directory, &segments, &plan)?;
            report.repair = Some(plan.into_report(true));
        }
        let recycled =
            recovery::remove_leftovers(vfs.as_ref(), &directory, &listing, options.recycle_segments, &mut report)?;
        let (first_segment, active) = recovery::finish(vfs.as_ref(), &directory, &options, survey, &mut report)?;
        report.segments_count = active.number - first_segment + 1;
        tracing::info!(
            directory = %directory.display(),
            segments = report.segments_count,
            records = report.records_count,
            torn_tail = ?report.torn_tail,
            repair = ?report.repair,
            "wal opened"
        );
        Ok(Self {
            vfs,
            directory,
            options,
            _lock: lock,
            first_segment,
            active,
            buffer: Vec::new(),
            health: Health::new(report.repair.is_some()),
            report,
            recycled,
        })
    }

    /// What recovery found and did when this handle was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The first and last segment numbers present.
    pub fn segments(&self) -> (u64, u64) {
        (self.first_segment, self.active.number)
    }

    /// Where the next record will be written (if it fits in the active segment).
    pub fn end(&self) -> Position {
        Position { segment: self.active.number, offset: self.active.writer.end + self.buffer.len() as u64 }
    }

    /// The largest record this log's geometry holds.
    pub fn record_length_max(&self) -> u64 {
        format::record_length_max(u64::from(self.options.page_size), self.options.segment_size)
    }

    pub fn is_poisoned(&self) -> bool {
        self.health.is_poisoned()
    }

    fn begin_write(&mut self) -> Result<()> {
        self.health.begin_write(self.vfs.as_ref(), &self.directory)
    }

    fn poison(&mut self, error: Error) -> Error {
        self.health.poison(&self.directory, error)
    }
}
