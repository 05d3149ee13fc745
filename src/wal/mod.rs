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
mod recovery;
mod scan;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use format::SegmentHeader;
pub use format::{
    FragmentType, FORMAT_VERSION, FRAGMENT_HEADER_SIZE, PAGE_SIZE_MAX, PAGE_SIZE_MIN, SEGMENT_HEADER_SIZE,
    SEGMENT_MAGIC,
};
use scan::{ScanItem, SegmentScanner};

use crate::directory::{self, Structure};
use crate::error::{CorruptionReason, Error, Result};
use crate::repair;
pub use crate::repair::{RecoveryMode, Repair};
use crate::vfs::{self, OpenMode, Vfs, VfsFile, VfsLock};

/// Options for [`Wal::open`].
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Size at which a segment is sealed and the next begins. A multiple of `page_size`, at
    /// least two pages. Defaults to 128 MiB.
    ///
    /// Not recorded on disk, so it may change between opens: segments written before keep
    /// their length, and a last segment that already holds more than a smaller new size takes
    /// no more records (the next append seals it and starts a segment of the new size).
    pub segment_size: u64,
    /// Page size: a power of two from 128 B to 64 KiB. Defaults to 32 KiB.
    ///
    /// Recorded in every segment header: opening a log written with another page size fails
    /// with [`Error::OptionsMismatch`] (field `page_size`, naming the segment file) in either
    /// recovery mode, and changes nothing.
    pub page_size: u32,
    /// What opening does with damaged synced data. Not recorded on disk: each open chooses.
    /// Defaults to [`RecoveryMode::Strict`].
    pub recovery_mode: RecoveryMode,
    /// How far ahead of its records the active segment's file is extended with zeros, in bytes.
    /// Syncs that do not change a file's length write no metadata, so most syncs are cheaper
    /// (see [`PREALLOCATE_DEFAULT`]). Zero extends the file with every write. Closing cuts the
    /// zeros off; a sealed segment keeps them, so that a record written into them by mistake is
    /// found as corruption. Not recorded on disk: it may change between opens. Defaults to
    /// 4 MiB.
    pub preallocate: u64,
    /// How many files of segments removed by [`Wal::truncate_before`] are kept (renamed
    /// `<number>.recycle`) for later segments to reuse instead of creating new files. Writing
    /// over blocks a file already holds makes each sync cheaper than writing into new blocks,
    /// whose allocation the sync must also make durable: on this project's machine (ext4) a
    /// sync of 108 KB took 140 us over old blocks and 231 us into new ones (bench/README.md).
    /// The cost is disk space: up to this many segment files stay after a truncation. Bytes a
    /// reused file held before are never read as records: every fragment's checksum binds the
    /// segment number, recovery treats them as a torn tail, and sealing cuts them off. Zero
    /// removes truncated segments at once. Not recorded on disk: an open with fewer than the
    /// directory keeps removes the newest of them, once its checks have passed. Defaults to 1.
    pub recycle_segments: usize,
}

/// The default of [`WalOptions::preallocate`]. On this project's machine (ext4, virtio disk) a
/// 100-byte append and its `fdatasync` took about 130 us when the append grew the file and
/// 85 us when it did not, since growing makes the sync write the inode too (bench/README.md).
pub const PREALLOCATE_DEFAULT: u64 = 4 << 20;

/// The default of [`WalOptions::recycle_segments`].
pub const RECYCLE_SEGMENTS_DEFAULT: usize = 1;

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            segment_size: 128 << 20,
            page_size: 32 << 10,
            recovery_mode: RecoveryMode::Strict,
            preallocate: PREALLOCATE_DEFAULT,
            recycle_segments: RECYCLE_SEGMENTS_DEFAULT,
        }
    }
}

impl WalOptions {
    fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Err(Error::InvalidArgument { reason });
        if !format::page_size_is_valid(self.page_size) {
            return invalid(format!(
                "page_size {} is not a power of two from {PAGE_SIZE_MIN} to {PAGE_SIZE_MAX}",
                self.page_size
            ));
        }
        let page_size = u64::from(self.page_size);
        if !self.segment_size.is_multiple_of(page_size) || self.segment_size < 2 * page_size {
            return invalid(format!(
                "segment_size {} is not a multiple of page_size {page_size} of at least two pages",
                self.segment_size
            ));
        }
        Ok(())
    }
}

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
    health: repair::Health,
    report: RecoveryReport,
    /// Numbers of the truncated segments whose files wait to be reused, ascending.
    recycled: Vec<u64>,
}

struct ActiveSegment {
    number: u64,
    path: PathBuf,
    file: Box<dyn VfsFile>,
    /// Where the buffered records start: everything before was written to the OS.
    end: u64,
    /// The file's length: `end` plus zeros preallocated for the records to come, or the bytes a
    /// reused file held before.
    allocated: u64,
    /// A reused file's old bytes lie in `end..stale_until`: fragments of another segment, which
    /// fail verification here. Sealing cuts them off. Equal to `end` or below in a new file.
    stale_until: u64,
    /// Whether sealing writes a seal fragment: every segment this build creates does; a
    /// segment of format version 1 recovered as the last one does not.
    seals: bool,
    /// Where this segment's data must end, its seal included: [`WalOptions::segment_size`],
    /// or more for a segment recovered from a log written with a larger one (see
    /// [`ActiveSegment::recovered`]).
    segment_size: u64,
}

impl ActiveSegment {
    /// The last segment found by recovery, its records ending at `end` and its file
    /// `allocated` bytes long (only zeros after `end`).
    ///
    /// The segment size is not on disk, so the log may have been written with a larger one
    /// than `options` give, and this segment may hold more than the new size allows. It then
    /// keeps just the room its seal needs after its records: the next append finds no room,
    /// seals it there, and the segments after it take the new size.
    fn recovered(
        number: u64,
        path: PathBuf,
        file: Box<dyn VfsFile>,
        end: u64,
        allocated: u64,
        seals: bool,
        options: &WalOptions,
    ) -> Self {
        let sealed_end = format::seal_offset(end, u64::from(options.page_size)) + FRAGMENT_HEADER_SIZE as u64;
        let segment_size = options.segment_size.max(sealed_end);
        Self { number, path, file, end, allocated, stale_until: end, seals, segment_size }
    }
}

/// Appended records are written to the OS once this many bytes are buffered.
const WRITE_BUFFER_MAX: usize = 1 << 20;

impl fmt::Debug for Wal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wal")
            .field("directory", &self.directory)
            .field("first_segment", &self.first_segment)
            .field("active_segment", &self.active.number)
            .field("end", &self.active.end)
            .field("poisoned", &self.health.is_poisoned())
            .finish()
    }
}

/// File name of segment `number`: at least eight decimal digits, so names sort by number.
pub fn segment_file_name(number: u64) -> String {
    format!("{number:08}")
}

/// Parses a segment file name; `None` for anything [`segment_file_name`] would not produce.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    if name.len() < 8 || !name.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let number: u64 = name.parse().ok()?;
    (segment_file_name(number) == name).then_some(number)
}

/// Suffix of the files of truncated segments kept for reuse ([`WalOptions::recycle_segments`]).
const RECYCLE_SUFFIX: &str = ".recycle";

/// File name under which the file of truncated segment `number` waits to be reused.
pub fn recycle_file_name(number: u64) -> String {
    format!("{}{RECYCLE_SUFFIX}", segment_file_name(number))
}

/// Parses a name [`recycle_file_name`] would produce.
pub fn parse_recycle_file_name(name: &str) -> Option<u64> {
    parse_segment_file_name(name.strip_suffix(RECYCLE_SUFFIX)?)
}

/// The files found in a WAL directory.
struct Listing {
    segments: Vec<u64>,
    /// Files of truncated segments kept for reuse, ascending.
    recycled: Vec<u64>,
    temp_files: Vec<String>,
    repair_plan: bool,
}

fn list_directory(vfs: &dyn Vfs, directory: &Path) -> Result<Listing> {
    let names = vfs.read_dir(directory).map_err(|error| Error::io(directory, "read_dir", error))?;
    let mut listing =
        Listing { segments: Vec::new(), recycled: Vec::new(), temp_files: Vec::new(), repair_plan: false };
    for name in names {
        if name == vfs::LOCK_FILE_NAME {
            continue;
        }
        if name == repair::PLAN_FILE_NAME {
            listing.repair_plan = true;
            continue;
        }
        if name.ends_with(".tmp") {
            listing.temp_files.push(name);
            continue;
        }
        if let Some(number) = parse_recycle_file_name(&name) {
            listing.recycled.push(number);
            continue;
        }
        match parse_segment_file_name(&name) {
            Some(number) => listing.segments.push(number),
            None => return Err(Error::BadFileName { file: directory.join(name) }),
        }
    }
    listing.segments.sort_unstable();
    listing.recycled.sort_unstable();
    for pair in listing.segments.windows(2) {
        if pair[1] != pair[0] + 1 {
            return Err(Error::SegmentGap { directory: directory.to_path_buf(), missing: pair[0] + 1 });
        }
    }
    Ok(listing)
}

/// A segment file opened and its header verified.
struct SegmentFile {
    path: PathBuf,
    file: Box<dyn VfsFile>,
    length: u64,
    header: SegmentHeader,
}

/// Opens segment `number` and verifies its header and page size. Recovery has checked that
/// the log was written with `page_size` (`recovery::check_page_size`), so a header with another
/// one is corruption here.
fn open_segment(vfs: &dyn Vfs, directory: &Path, number: u64, mode: OpenMode, page_size: u32) -> Result<SegmentFile> {
    let path = directory.join(segment_file_name(number));
    let file = vfs.open(&path, mode).map_err(|error| Error::io(&path, "open", error))?;
    let length = file.len().map_err(|error| Error::io(&path, "len", error))?;
    let header = scan::read_segment_header(file.as_ref(), &path, number, length)?;
    let found = header.page_size;
    if found != page_size {
        return Err(Error::Corruption {
            file: path,
            segment: number,
            offset: 0,
            reason: CorruptionReason::HeaderMismatch {
                field: "page_size",
                expected: u64::from(page_size),
                found: u64::from(found),
            },
        });
    }
    Ok(SegmentFile { path, file, length, header })
}

/// How a segment's data must end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// The last segment: its data may end anywhere, and what follows is a torn tail.
    Open,
    /// A sealed segment: its data ends with a seal fragment, then zeros.
    Sealed,
    /// A sealed segment of format version 1, which wrote no seal: its data ends at zeros.
    SealedUnmarked,
}

impl Ending {
    fn of(sealed: bool, header: SegmentHeader) -> Self {
        match (sealed, header.seals()) {
            (false, _) => Self::Open,
            (true, true) => Self::Sealed,
            (true, false) => Self::SealedUnmarked,
        }
    }
}

/// The outcome of scanning one whole segment during recovery or verification.
struct SegmentScan {
    records_count: u64,
    /// End of the valid data.
    end: u64,
    /// In the last segment: whether anything but zeros (preallocated space) follows the data.
    /// Such bytes are a torn tail.
    torn: bool,
    /// The first damage, if any: (offset of the damaged fragment, truncation point, reason).
    damage: Option<(u64, u64, CorruptionReason)>,
}

fn scan_segment(segment: &SegmentFile, number: u64, page_size: u32, ending: Ending) -> Result<SegmentScan> {
    let SegmentFile { path, file, length, .. } = segment;
    let mut scanner = SegmentScanner::new(file.as_ref(), path, number, page_size, SEGMENT_HEADER_SIZE as u64, *length);
    let mut records_count = 0u64;
    loop {
        match scanner.next_item()? {
            ScanItem::Record { .. } => records_count += 1,
            item @ (ScanItem::End { offset } | ScanItem::Seal { offset }) if ending != Ending::Open => {
                let damage = check_sealed(&mut scanner, &item, ending, *length, page_size)?;
                let damage = damage.map(|(at, reason)| (at, offset, reason));
                return Ok(SegmentScan { records_count, end: offset, torn: false, damage });
            }
            ScanItem::End { offset } | ScanItem::Seal { offset } => {
                // The last segment: anything after its data, a seal included, is the torn tail
                // and the caller truncates it. (A seal is last only when a crash came between
                // the seal's sync and the next segment's creation; the records stay, and
                // appending continues in this segment.)
                let torn = scanner.first_nonzero_after(offset)?.is_some();
                return Ok(SegmentScan { records_count, end: offset, torn, damage: None });
            }
            ScanItem::Damage { offset, record_offset, reason } => {
                return Ok(SegmentScan {
                    records_count,
                    end: record_offset,
                    torn: true,
                    damage: Some((offset, record_offset, reason)),
                });
            }
        }
    }
}

/// Checks how a sealed segment's data ends, at `item` (an end or a seal): a segment that seals
/// must end at its seal, and zeros must follow. The seal is what tells a segment sealed after
/// its last record from one whose last records were written somewhere else and left zeros at
/// their place: that looks like a clean end, and a reused file's cut or a later write can erase
/// the stray copy (simulator, wal seeds 32139, 45464, 101032).
fn check_sealed(
    scanner: &mut SegmentScanner<'_>,
    item: &ScanItem,
    ending: Ending,
    length: u64,
    page_size: u32,
) -> Result<Option<(u64, CorruptionReason)>> {
    match (item, ending) {
        (ScanItem::Seal { offset }, _) => {
            check_sealed_end(scanner, offset + FRAGMENT_HEADER_SIZE as u64, length, page_size)
        }
        (ScanItem::End { offset }, Ending::Sealed) => Ok(Some((*offset, CorruptionReason::Unsealed))),
        (ScanItem::End { offset }, _) => check_sealed_end(scanner, *offset, length, page_size),
        _ => unreachable!("called with an end or a seal"),
    }
}

/// Checks how a sealed segment ends. Sealing pads the last page with zeros and nothing writes
/// the segment again, so after the data ends at `end` there must be zeros to the end of the file
/// (the padding, then any preallocated space), and the file must reach at least the next page
/// boundary. Anything else means synced bytes went missing: a record written elsewhere than
/// meant leaves zeros at its place and non-zero bytes later, and a file cut short lost its end.
fn check_sealed_end(
    scanner: &mut SegmentScanner<'_>,
    end: u64,
    length: u64,
    page_size: u32,
) -> Result<Option<(u64, CorruptionReason)>> {
    if let Some(nonzero) = scanner.first_nonzero_after(end)? {
        return Ok(Some((nonzero, CorruptionReason::NonZeroPadding)));
    }
    if length < end.next_multiple_of(u64::from(page_size)) {
        return Ok(Some((end, CorruptionReason::Truncated { length })));
    }
    Ok(None)
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
        let listing = list_directory(vfs.as_ref(), &directory)?;
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
            health: repair::Health::new(report.repair.is_some()),
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
        Position { segment: self.active.number, offset: self.active.end + self.buffer.len() as u64 }
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

    /// Appends one record. See [`Wal::append_batch`].
    pub fn append(&mut self, record: &[u8]) -> Result<Position> {
        self.begin_write()?;
        self.check_length(record)?;
        self.append_one(record)
    }

    /// Appends `records` in order and returns where each starts. Records are buffered in memory
    /// and reach the OS in one write call when the buffer fills (1 MiB), at [`Wal::sync`], or at
    /// rotation; readers of this handle see them at once. Nothing is durable until
    /// [`Wal::sync`].
    ///
    /// Fails with [`Error::RecordTooLarge`], buffering nothing, if any record exceeds
    /// [`Wal::record_length_max`]. Any I/O failure poisons the log; a prefix of what was
    /// appended may then survive a crash.
    pub fn append_batch(&mut self, records: &[&[u8]]) -> Result<Vec<Position>> {
        self.begin_write()?;
        for record in records {
            self.check_length(record)?;
        }
        records.iter().map(|record| self.append_one(record)).collect()
    }

    fn check_length(&self, record: &[u8]) -> Result<()> {
        let record_length_max = self.record_length_max();
        if record.len() as u64 > record_length_max {
            return Err(Error::RecordTooLarge { length: record.len() as u64, max: record_length_max });
        }
        Ok(())
    }

    fn append_one(&mut self, record: &[u8]) -> Result<Position> {
        let page_size = u64::from(self.options.page_size);
        let at = self.active.end + self.buffer.len() as u64;
        if !format::record_fits(at, record.len(), page_size, self.active.segment_size) {
            self.rotate_inner()?;
        }
        let position = encode_record(&mut self.buffer, self.active.number, self.active.end, record, page_size);
        if self.buffer.len() >= WRITE_BUFFER_MAX {
            self.flush_buffer()?;
        }
        Ok(position)
    }

    /// Writes the buffered records to the OS in one call.
    fn flush_buffer(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let buffer = std::mem::take(&mut self.buffer);
        let result = self.write_buffer(&buffer, self.active.end);
        self.buffer = buffer;
        self.buffer.clear();
        result
    }

    fn write_buffer(&mut self, buffer: &[u8], offset: u64) -> Result<()> {
        assert_eq!(offset, self.active.end, "writes are sequential");
        if buffer.is_empty() {
            return Ok(());
        }
        let end = offset + buffer.len() as u64;
        // Recovery tells preallocated zeros from records because a fragment's type is never 0.
        if end > self.active.allocated && self.options.preallocate > 0 {
            let allocated = end.next_multiple_of(self.options.preallocate).min(self.active.segment_size);
            self.set_active_len(allocated)?;
        }
        if let Err(error) = self.active.file.write_at(buffer, offset) {
            let error = Error::io(&self.active.path, "write_at", error);
            return Err(self.poison(error));
        }
        self.active.end += buffer.len() as u64;
        assert!(self.active.end <= self.active.segment_size, "a segment never grows past its size");
        Ok(())
    }

    /// Sets the active segment file's length (zeros past the records), poisoning on failure.
    fn set_active_len(&mut self, length: u64) -> Result<()> {
        debug_assert!(length >= self.active.end, "never cuts written records");
        if let Err(error) = self.active.file.set_len(length) {
            let error = Error::io(&self.active.path, "set_len", error);
            return Err(self.poison(error));
        }
        self.active.allocated = length;
        Ok(())
    }

    /// Writes the buffered records to the OS in one call, without syncing: they survive the
    /// process dying but not the machine losing power.
    pub fn flush(&mut self) -> Result<()> {
        self.begin_write()?;
        self.flush_buffer()
    }

    /// Makes every record appended so far durable.
    pub fn sync(&mut self) -> Result<()> {
        self.begin_write()?;
        self.flush_buffer()?;
        if let Err(error) = self.active.file.sync_data() {
            let error = Error::io(&self.active.path, "sync_data", error);
            return Err(self.poison(error));
        }
        Ok(())
    }

    /// Seals the active segment (pads its last page, syncs it) and starts the next one. Every
    /// record appended before the call is durable when it returns.
    pub fn rotate(&mut self) -> Result<()> {
        self.begin_write()?;
        self.rotate_inner()
    }

    fn rotate_inner(&mut self) -> Result<()> {
        if self.active.seals {
            self.buffer_seal();
        }
        self.flush_buffer()?;
        // The last page is padded with zeros by extending the file, never by writing zeros: a
        // padding write that went astray could zero the last records and look like a clean
        // end (simulator, wal seed 126). Preallocated zeros past the padding stay, so that a
        // record write that went astray into them is found as non-zero bytes after the end.
        // A reused file's old bytes after the records are cut off first, for the same reason.
        let end = self.active.end;
        if self.active.stale_until > end {
            self.set_active_len(end)?;
            self.active.stale_until = end;
        }
        let padded_end = end.next_multiple_of(u64::from(self.options.page_size));
        if self.active.allocated < padded_end {
            self.set_active_len(padded_end)?;
        }
        self.sync()?;
        let next = self.active.number + 1;
        let started = match self.recycled.first().copied() {
            Some(old) => {
                self.recycled.remove(0);
                reuse_segment_file(self.vfs.as_ref(), &self.directory, old, next, &self.options)
            }
            None => create_segment(self.vfs.as_ref(), &self.directory, next, &self.options),
        };
        match started {
            Ok(active) => {
                self.active = active;
                Ok(())
            }
            Err(error) => Err(self.poison(error)),
        }
    }

    /// Buffers the seal fragment after the buffered records (zeros first if it must go on the
    /// next page); it reaches the file in the same write as the last records.
    fn buffer_seal(&mut self) {
        let page_size = u64::from(self.options.page_size);
        let at = self.active.end + self.buffer.len() as u64;
        let seal_at = format::seal_offset(at, page_size);
        self.buffer.resize(self.buffer.len() + usize::try_from(seal_at - at).expect("within a page"), 0);
        format::encode_fragment(&mut self.buffer, self.active.number, seal_at, FragmentType::Seal, &[]);
    }

    /// Removes every segment numbered below `segment`, durably, oldest first. `segment` may be
    /// the active segment; it may not be beyond it. Up to [`WalOptions::recycle_segments`] of the
    /// removed segments' files are kept under another name for later segments to reuse.
    pub fn truncate_before(&mut self, segment: u64) -> Result<()> {
        self.begin_write()?;
        if segment > self.active.number {
            return Err(Error::InvalidArgument {
                reason: format!("cannot truncate before segment {segment}: the last is {}", self.active.number),
            });
        }
        // Oldest first, each removal durable before the next, so a crash part way leaves the
        // remaining segments contiguous.
        while self.first_segment < segment {
            let number = self.first_segment;
            let path = self.directory.join(segment_file_name(number));
            let recycle = self.recycled.len() < self.options.recycle_segments && !self.recycled.contains(&number);
            let removed = if recycle {
                let to = self.directory.join(recycle_file_name(number));
                self.vfs.rename(&path, &to).map_err(|error| Error::io(&path, "rename", error))
            } else {
                self.vfs.remove_file(&path).map_err(|error| Error::io(&path, "remove_file", error))
            };
            let result = removed.and_then(|()| {
                self.vfs.sync_dir(&self.directory).map_err(|error| Error::io(&self.directory, "sync_dir", error))
            });
            if let Err(error) = result {
                return Err(self.poison(error));
            }
            if recycle {
                self.recycled.push(number);
            }
            self.first_segment += 1;
        }
        Ok(())
    }

    /// Syncs and closes the log. The active segment's preallocated zeros are cut off, so a
    /// closed log's files hold only what was written.
    pub fn close(mut self) -> Result<()> {
        self.begin_write()?;
        self.flush_buffer()?;
        if self.active.allocated > self.active.end {
            let end = self.active.end;
            self.set_active_len(end)?;
        }
        self.sync()
    }

    /// Iterates over the records from `from` (a record start, or [`Position::segment_start`]) to
    /// the end of what this handle has written, verifying each.
    pub fn records_from(&self, from: Position) -> Result<Records<'_>> {
        if from.segment < self.first_segment || from.segment > self.active.number {
            return Err(Error::InvalidArgument {
                reason: format!(
                    "segment {} is outside the log's segments {}..={}",
                    from.segment, self.first_segment, self.active.number
                ),
            });
        }
        Ok(Records {
            wal: self,
            segment: from.segment,
            offset: from.offset.max(SEGMENT_HEADER_SIZE as u64),
            state: None,
            chunk: (Vec::new(), 0),
            done: false,
        })
    }

    /// Iterates over every record in the log.
    pub fn records(&self) -> Records<'_> {
        self.records_from(Position::segment_start(self.first_segment)).expect("the first segment is in range")
    }
}

/// Encodes `record` into `buffer`, whose first byte will land at `buffer_offset` of `segment`.
/// Returns the record's position.
fn encode_record(buffer: &mut Vec<u8>, segment: u64, buffer_offset: u64, record: &[u8], page_size: u64) -> Position {
    let header_size = FRAGMENT_HEADER_SIZE as u64;
    let mut remaining = record;
    let mut first_offset = None;
    loop {
        let at = buffer_offset + buffer.len() as u64;
        let page_end = (at / page_size + 1) * page_size;
        let room = page_end - at;
        if room <= header_size {
            buffer.resize(buffer.len() + usize::try_from(room).expect("room fits usize"), 0);
            continue;
        }
        let take = remaining.len().min(usize::try_from(room - header_size).expect("room fits usize"));
        let (payload, rest) = remaining.split_at(take);
        let fragment_type = match (first_offset.is_none(), rest.is_empty()) {
            (true, true) => FragmentType::Full,
            (true, false) => FragmentType::First,
            (false, false) => FragmentType::Middle,
            (false, true) => FragmentType::Last,
        };
        format::encode_fragment(buffer, segment, at, fragment_type, payload);
        first_offset.get_or_insert(at);
        remaining = rest;
        if remaining.is_empty() {
            return Position { segment, offset: first_offset.expect("set above") };
        }
    }
}

/// Creates segment `number` atomically, its header verified (see [`vfs::create_file_atomically`]).
fn create_segment(vfs: &dyn Vfs, directory: &Path, number: u64, options: &WalOptions) -> Result<ActiveSegment> {
    let name = segment_file_name(number);
    let header = format::encode_segment_header(number, options.page_size);
    let file = vfs::create_file_atomically(vfs, directory, &name, &header)?;
    let end = SEGMENT_HEADER_SIZE as u64;
    Ok(ActiveSegment {
        number,
        path: directory.join(name),
        file,
        end,
        allocated: end,
        stale_until: end,
        seals: true,
        segment_size: options.segment_size,
    })
}

/// Makes the kept file of truncated segment `old` the new segment `number`. Its header is
/// rewritten, synced and read back under the old name; only then does it take the segment's
/// name, durably, so a crash leaves either a file kept for reuse or a segment with a valid
/// header. The rest of the file still holds the old segment's fragments, which fail
/// verification as this segment's (their checksums bind segment `old`): until records overwrite
/// them they are what recovery finds after the records, and truncates as a torn tail.
///
/// The file may be longer than [`WalOptions::segment_size`] (it was written with a larger
/// one): the records stop at the segment size all the same, and sealing cuts off the rest.
fn reuse_segment_file(
    vfs: &dyn Vfs,
    directory: &Path,
    old: u64,
    number: u64,
    options: &WalOptions,
) -> Result<ActiveSegment> {
    let from = directory.join(recycle_file_name(old));
    let path = directory.join(segment_file_name(number));
    let header = format::encode_segment_header(number, options.page_size);
    let file = vfs.open(&from, OpenMode::ReadWrite).map_err(|error| Error::io(&from, "open", error))?;
    let length = file.len().map_err(|error| Error::io(&from, "len", error))?;
    vfs::write_synced_and_verified(file.as_ref(), &from, &header, 0)?;
    vfs.rename(&from, &path).map_err(|error| Error::io(&from, "rename", error))?;
    vfs.sync_dir(directory).map_err(|error| Error::io(directory, "sync_dir", error))?;
    tracing::debug!(old, segment = number, bytes = length, "reused the file of a truncated segment");
    let end = SEGMENT_HEADER_SIZE as u64;
    Ok(ActiveSegment {
        number,
        path,
        file,
        end,
        allocated: length.max(end),
        stale_until: length,
        seals: true,
        segment_size: options.segment_size,
    })
}

/// The active segment as readers see it: the file, then the records still in the write buffer.
#[derive(Debug)]
struct BufferedTail<'a> {
    file: &'a dyn VfsFile,
    tail: &'a [u8],
    tail_offset: u64,
}

impl VfsFile for BufferedTail<'_> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if offset < self.tail_offset {
            // Never read across into the buffered part: the file may hold stale bytes there.
            let room = usize::try_from(self.tail_offset - offset).unwrap_or(usize::MAX).min(buf.len());
            return self.file.read_at(&mut buf[..room], offset);
        }
        let start = usize::try_from(offset - self.tail_offset).unwrap_or(usize::MAX);
        let Some(tail) = self.tail.get(start..) else { return Ok(0) };
        let count = tail.len().min(buf.len());
        buf[..count].copy_from_slice(&tail[..count]);
        Ok(count)
    }

    fn write_at(&self, _buf: &[u8], _offset: u64) -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "a reader's view is read-only"))
    }

    fn sync_data(&self) -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "a reader's view is read-only"))
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.tail_offset + self.tail.len() as u64)
    }

    fn set_len(&self, _len: u64) -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "a reader's view is read-only"))
    }

    fn allocate(&self, _len: u64) -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "a reader's view is read-only"))
    }
}

/// Iterator over records, returned by [`Wal::records_from`]. Yields `(position, record)`; after
/// an error it yields nothing more.
pub struct Records<'a> {
    wal: &'a Wal,
    segment: u64,
    offset: u64,
    state: Option<OpenedSegment>,
    /// The bytes of the current segment read so far, reused from record to record.
    chunk: (Vec<u8>, u64),
    done: bool,
}

impl fmt::Debug for Records<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Records").field("segment", &self.segment).field("offset", &self.offset).finish()
    }
}

struct OpenedSegment {
    path: PathBuf,
    // None for the active segment, which is read through the writer's handle.
    file: Option<Box<dyn VfsFile>>,
    limit: u64,
    ending: Ending,
}

impl Records<'_> {
    fn next_record(&mut self) -> Result<Option<(Position, Vec<u8>)>> {
        let wal = self.wal;
        // Bounded by the number of segments: each iteration either returns or moves to the next.
        loop {
            if self.segment > wal.active.number {
                return Ok(None);
            }
            let is_active = self.segment == wal.active.number;
            if self.state.is_none() {
                self.state = Some(if is_active {
                    OpenedSegment {
                        path: wal.active.path.clone(),
                        file: None,
                        limit: wal.active.end + wal.buffer.len() as u64,
                        ending: Ending::Open,
                    }
                } else {
                    let SegmentFile { path, file, length, header } = open_segment(
                        wal.vfs.as_ref(),
                        &wal.directory,
                        self.segment,
                        OpenMode::Read,
                        wal.options.page_size,
                    )?;
                    OpenedSegment { path, file: Some(file), limit: length, ending: Ending::of(true, header) }
                });
            }
            let state = self.state.as_ref().expect("opened above");
            let overlay =
                BufferedTail { file: wal.active.file.as_ref(), tail: &wal.buffer, tail_offset: wal.active.end };
            let file: &dyn VfsFile = match &state.file {
                Some(file) => file.as_ref(),
                None => &overlay,
            };
            let chunk = std::mem::take(&mut self.chunk);
            let mut scanner = SegmentScanner::resume(
                file,
                &state.path,
                self.segment,
                wal.options.page_size,
                self.offset,
                state.limit,
                chunk,
            );
            let item = scanner.next_item();
            let position = scanner.position();
            let end_check = match &item {
                Ok(item @ (ScanItem::End { .. } | ScanItem::Seal { .. })) if !is_active => {
                    Some(check_sealed(&mut scanner, item, state.ending, state.limit, wal.options.page_size))
                }
                _ => None,
            };
            self.chunk = scanner.into_chunk();
            match item? {
                ScanItem::Record { offset, data } => {
                    self.offset = position;
                    return Ok(Some((Position { segment: self.segment, offset }, data)));
                }
                ScanItem::End { offset } if is_active && offset < state.limit => {
                    return Err(Error::Corruption {
                        file: state.path.clone(),
                        segment: self.segment,
                        offset,
                        reason: CorruptionReason::Truncated { length: offset },
                    });
                }
                ScanItem::Seal { .. } if is_active => {
                    // Only a poisoned handle whose rotation failed after the seal reads one here.
                    return Ok(None);
                }
                ScanItem::End { .. } | ScanItem::Seal { .. } => {
                    // A sealed segment's data ends only at its seal, where zero padding runs to
                    // its end; zeros before it mean records are missing, not that none are left.
                    if let Some(check) = end_check {
                        if let Some((at, reason)) = check? {
                            return Err(Error::Corruption {
                                file: state.path.clone(),
                                segment: self.segment,
                                offset: at,
                                reason,
                            });
                        }
                    }
                    self.segment += 1;
                    self.offset = SEGMENT_HEADER_SIZE as u64;
                    self.state = None;
                    self.chunk = (Vec::new(), 0);
                }
                ScanItem::Damage { offset, reason, .. } => {
                    return Err(Error::Corruption { file: state.path.clone(), segment: self.segment, offset, reason });
                }
            }
        }
    }
}

impl Iterator for Records<'_> {
    type Item = Result<(Position, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_record() {
            Ok(Some(item)) => Some(Ok(item)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

/// What [`verify`] found.
#[derive(Debug)]
pub struct VerifyReport {
    pub segments_count: u64,
    pub records_count: u64,
    /// Bytes after the last whole record of the last segment that recovery would truncate.
    pub torn_tail: Option<TornTail>,
    /// The first problem that would fail a strict open.
    pub problem: Option<Error>,
}

/// Checks every segment in `directory` the way a strict open would, changing nothing and taking
/// no lock. Reports the record count, a torn tail, and the first problem. The page size is read
/// from the first segment's header; a segment written with another one is a problem.
pub fn verify(vfs: &dyn Vfs, directory: &Path) -> Result<VerifyReport> {
    let mut report = VerifyReport { segments_count: 0, records_count: 0, torn_tail: None, problem: None };
    let listing = match list_directory(vfs, directory) {
        Ok(listing) => listing,
        Err(error @ (Error::BadFileName { .. } | Error::SegmentGap { .. })) => {
            report.problem = Some(error);
            return Ok(report);
        }
        Err(error) => return Err(error),
    };
    report.segments_count = listing.segments.len() as u64;
    let last = listing.segments.last().copied();
    let Some(&first) = listing.segments.first() else { return Ok(report) };
    let page_size = {
        let path = directory.join(segment_file_name(first));
        let file = vfs.open(&path, OpenMode::Read).map_err(|error| Error::io(&path, "open", error))?;
        let length = file.len().map_err(|error| Error::io(&path, "len", error))?;
        match scan::read_segment_header(file.as_ref(), &path, first, length) {
            Ok(header) => header.page_size,
            Err(error @ Error::Corruption { .. }) => {
                report.problem = Some(error);
                return Ok(report);
            }
            Err(error) => return Err(error),
        }
    };
    for &number in &listing.segments {
        let sealed = Some(number) != last;
        let segment = match open_segment(vfs, directory, number, OpenMode::Read, page_size) {
            Ok(opened) => opened,
            Err(error @ Error::Corruption { .. }) => {
                report.problem = Some(error);
                return Ok(report);
            }
            Err(error) => return Err(error),
        };
        let scan = scan_segment(&segment, number, page_size, Ending::of(sealed, segment.header))?;
        let SegmentFile { path, length, .. } = segment;
        report.records_count += scan.records_count;
        match scan.damage {
            Some((offset, _, reason)) if sealed => {
                report.problem = Some(Error::Corruption { file: path, segment: number, offset, reason });
                return Ok(report);
            }
            _ if scan.torn => {
                report.torn_tail =
                    Some(TornTail { segment: number, offset: scan.end, bytes_dropped: length - scan.end });
            }
            _ => {}
        }
    }
    Ok(report)
}
