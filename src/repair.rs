//! Repair plans, shared by every segmented structure: what a repair will drop, made durable
//! before anything is dropped, so that a repair interrupted part way is finished and reported by
//! the next open instead of passing for a torn tail.

use std::io;
use std::path::Path;

use crate::codec;
use crate::error::{CorruptionReason, Error, Result};
use crate::vfs::{self, OpenMode, Vfs};

/// Name of the plan file in a data directory.
pub const PLAN_FILE_NAME: &str = "REPAIR";
const PLAN_MAGIC: [u8; 8] = *b"BLSTRPR\0";
/// Fixed part of an encoded plan: magic, five u64 fields, the two counts.
const PLAN_FIXED_SIZE: usize = 8 + 5 * 8 + 4 + 4;
/// Bounds, so that a damaged count cannot ask for a huge allocation.
const REASON_LENGTH_MAX: usize = 4096;
const REMOVE_COUNT_MAX: usize = 1 << 20;

/// How opening treats damage to data that was synced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecoveryMode {
    /// Fail the open with [`Error::Corruption`] naming the file and offset. The default.
    #[default]
    Strict,
    /// Cut the damaged data and everything after it, and report what was dropped.
    Repair,
}

/// Synced data dropped by a repair, as reported by the open that made or finished it.
///
/// `records_dropped` and `bytes_dropped` are exactly what a reader finds in the directory
/// before the repair minus what it finds after: the units the format verifies, wherever they
/// lie, after the damage in the damaged segment and in every later segment (a segment whose
/// header is damaged included). `tests/engine/repair_counts.rs` checks each structure against
/// a reader of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repair {
    /// The damaged segment (its number, or for the commitlog its first offset). Logstor cuts
    /// each damaged segment on its own and reports the first, with the counts of all added up.
    pub segment: u64,
    /// Where in it the damage was found (for logstor, the offset in its data file).
    pub offset: u64,
    /// What was wrong there.
    pub reason: String,
    /// True when this open finished, or reported again, a repair an earlier open began.
    pub resumed: bool,
    /// Records that verified and were dropped. A damaged record is not counted: no reader
    /// could read it before the repair either.
    /// - WAL: records whose every fragment verifies where it lies.
    /// - Commitlog: commits (not transactions) that verify where they lie.
    /// - Logstor: record versions (puts and tombstones, every copy) in data buffers that
    ///   verify, as [`crate::logstor::RecoveryReport::records_count`] counts them, not keys. A
    ///   copy a relocation left behind counts though another copy remains, and then nothing is
    ///   lost; a key whose newest version is dropped reads the newest one left (an older value,
    ///   or none, and a dropped tombstone brings the value it deleted back).
    pub records_dropped: u64,
    /// Bytes dropped.
    /// - WAL and commitlog: the bytes cut off the damaged segment's file plus the lengths of the
    ///   segment files removed, so the segment files' total length before the repair minus
    ///   after (a segment rewritten empty keeps its header). The commitlog's index files, which
    ///   are rebuilt from the segments, are not counted.
    /// - Logstor, whose data files never shrink: the segment data cut off, from the damage to
    ///   the segment's seal (the unused space after a seal holds no data).
    pub bytes_dropped: u64,
    /// Segment files removed. Logstor removes none: a cut segment keeps its place.
    pub segments_removed: u64,
}

/// How a structure names the files its segments live in and cuts a damaged one.
pub(crate) trait Segments {
    /// The file segment `segment` lives in: its own file, or the data file that holds it.
    fn file_name(&self, segment: u64) -> String;

    /// Cuts `segment` at `at`, durably, so that nothing from `at` on is read again. Must be
    /// idempotent, and do nothing if the segment no longer exists.
    fn cut(&self, vfs: &dyn Vfs, directory: &Path, segment: u64, at: u64) -> Result<()>;
}

/// The cut of a log whose every segment is a file of its own that starts with a header (the
/// WAL's and the commitlog's): truncates `directory/name` at `at`, or, when `at` is within the
/// `header_size` bytes of its header, replaces it atomically with `empty`, the segment's
/// header alone. A file already gone is left so.
pub(crate) fn cut_segment_file(
    vfs: &dyn Vfs,
    directory: &Path,
    name: &str,
    at: u64,
    header_size: u64,
    empty: &[u8],
) -> Result<()> {
    let path = directory.join(name);
    // A later step of recovery may have removed the damaged segment itself (the commitlog
    // restarting after a snapshot); then there is nothing left to cut, and it must not return.
    let file = match vfs.open(&path, OpenMode::ReadWrite) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(Error::io(&path, "open", error)),
    };
    if at >= header_size {
        let length = file.len().map_err(|error| Error::io(&path, "len", error))?;
        if length > at {
            vfs::truncate_durably(file.as_ref(), &path, at)?;
        }
        return Ok(());
    }
    // The header itself is damaged: replace the segment with an empty one, atomically.
    drop(file);
    vfs::create_file_atomically(vfs, directory, name, empty).map(drop)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub segment: u64,
    /// Where the damaged segment is cut; below the header size, it is rewritten empty.
    pub truncate_at: u64,
    /// Segments to remove, in this order (newest first, so the rest stay a contiguous run).
    pub remove: Vec<u64>,
    pub offset: u64,
    pub records_dropped: u64,
    pub bytes_dropped: u64,
    pub reason: String,
}

impl Plan {
    pub fn into_report(self, resumed: bool) -> Repair {
        Repair {
            segment: self.segment,
            offset: self.offset,
            reason: self.reason,
            resumed,
            records_dropped: self.records_dropped,
            bytes_dropped: self.bytes_dropped,
            segments_removed: self.remove.len() as u64,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let reason = &self.reason.as_bytes()[..self.reason.len().min(REASON_LENGTH_MAX)];
        assert!(self.remove.len() <= REMOVE_COUNT_MAX, "a repair removes at most {REMOVE_COUNT_MAX} segments");
        let mut bytes = Vec::with_capacity(PLAN_FIXED_SIZE + 8 * self.remove.len() + reason.len() + 4);
        bytes.extend_from_slice(&PLAN_MAGIC);
        for field in [self.segment, self.truncate_at, self.offset, self.records_dropped, self.bytes_dropped] {
            bytes.extend_from_slice(&field.to_le_bytes());
        }
        bytes.extend_from_slice(&u32::try_from(self.remove.len()).expect("bounded").to_le_bytes());
        bytes.extend_from_slice(&u32::try_from(reason.len()).expect("bounded").to_le_bytes());
        for segment in &self.remove {
            bytes.extend_from_slice(&segment.to_le_bytes());
        }
        bytes.extend_from_slice(reason);
        let checksum = crate::codec::crc32(&bytes);
        bytes.extend_from_slice(&checksum.to_le_bytes());
        bytes
    }

    fn decode(bytes: &[u8]) -> Result<Self, (u64, CorruptionReason)> {
        if bytes.len() < PLAN_FIXED_SIZE + 4 {
            return Err((0, CorruptionReason::Truncated { length: bytes.len() as u64 }));
        }
        if bytes[0..8] != PLAN_MAGIC {
            return Err((0, CorruptionReason::BadMagic));
        }
        let (body, stored) = bytes.split_at(bytes.len() - 4);
        let stored = codec::u32_at(stored, 0);
        let computed = crate::codec::crc32(body);
        if stored != computed {
            return Err((0, CorruptionReason::Checksum { expected: stored, found: computed }));
        }
        let u64_at = |at: usize| codec::u64_at(body, at);
        let u32_at = |at: usize| codec::u32_at(body, at) as usize;
        let remove_count = u32_at(48);
        let reason_length = u32_at(52);
        if remove_count > REMOVE_COUNT_MAX
            || reason_length > REASON_LENGTH_MAX
            || PLAN_FIXED_SIZE + 8 * remove_count + reason_length != body.len()
        {
            return Err((48, CorruptionReason::BadLength { length: body.len() as u64 }));
        }
        let remove = (0..remove_count).map(|index| u64_at(PLAN_FIXED_SIZE + 8 * index)).collect();
        let reason_start = PLAN_FIXED_SIZE + 8 * remove_count;
        Ok(Self {
            segment: u64_at(8),
            truncate_at: u64_at(16),
            remove,
            offset: u64_at(24),
            records_dropped: u64_at(32),
            bytes_dropped: u64_at(40),
            reason: String::from_utf8_lossy(&body[reason_start..]).into_owned(),
        })
    }
}

/// Writes the plan atomically and verified (see [`vfs::create_file_atomically`]).
pub(crate) fn write_plan(vfs: &dyn Vfs, directory: &Path, plan: &Plan) -> Result<()> {
    vfs::create_file_atomically(vfs, directory, PLAN_FILE_NAME, &plan.encode()).map(drop)
}

/// Reads and verifies the plan file.
pub(crate) fn read_plan(vfs: &dyn Vfs, directory: &Path) -> Result<Plan> {
    let path = directory.join(PLAN_FILE_NAME);
    let file = vfs.open(&path, OpenMode::Read).map_err(|error| Error::io(&path, "open", error))?;
    let length = file.len().map_err(|error| Error::io(&path, "len", error))?;
    let size_max = (PLAN_FIXED_SIZE + 8 * REMOVE_COUNT_MAX + REASON_LENGTH_MAX + 4) as u64;
    if length > size_max {
        return Err(Error::Corruption {
            file: path,
            segment: 0,
            offset: 0,
            reason: CorruptionReason::BadLength { length },
        });
    }
    let mut bytes = vec![0u8; usize::try_from(length).expect("bounded above")];
    vfs::read_exact_retrying(file.as_ref(), &path, &mut bytes, 0)?;
    Plan::decode(&bytes).map_err(|(offset, reason)| Error::Corruption { file: path, segment: 0, offset, reason })
}

/// Carries out a plan, leaving the plan file in place (see [`remove_plan`]). Idempotent: every
/// step may already have been done by an earlier, interrupted attempt.
pub(crate) fn carry_out(vfs: &dyn Vfs, directory: &Path, segments: &dyn Segments, plan: &Plan) -> Result<()> {
    for &segment in &plan.remove {
        vfs::remove_durably(vfs, directory, &segments.file_name(segment))?;
    }
    segments.cut(vfs, directory, plan.segment, plan.truncate_at)?;
    Ok(())
}

/// Removes the plan once the repair it describes has been reported to a caller who went on to
/// write. Until then every open finds it, finishes nothing new, and reports the repair again:
/// a crash between carrying out a repair and its report reaching anyone cannot hide it.
pub(crate) fn remove_plan(vfs: &dyn Vfs, directory: &Path) -> Result<()> {
    let plan_path = directory.join(PLAN_FILE_NAME);
    vfs.remove_file(&plan_path).map_err(|error| Error::io(&plan_path, "remove_file", error))?;
    vfs.sync_dir(directory).map_err(|error| Error::io(directory, "sync_dir", error))
}
