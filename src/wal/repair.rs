//! The repair plan: what a repair will drop, made durable before anything is dropped.

use std::path::Path;

use super::format::{self, SEGMENT_HEADER_SIZE};
use super::{segment_file_name, Repair};
use crate::error::{CorruptionReason, Error, Result};
use crate::vfs::{self, OpenMode, Vfs};

/// Name of the plan file in a WAL directory.
pub const PLAN_FILE_NAME: &str = "REPAIR";
const PLAN_MAGIC: [u8; 8] = *b"BLSTRPR\0";
/// Fixed part of an encoded plan: magic, six u64 fields, the reason's length.
const PLAN_FIXED_SIZE: usize = 8 + 6 * 8 + 4;
/// Bound on the reason text, so a damaged length cannot ask for a huge allocation.
const REASON_LENGTH_MAX: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub segment: u64,
    /// Where the damaged segment is cut; 0 means its header is damaged and it is rewritten empty.
    pub truncate_at: u64,
    pub last_segment: u64,
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
            segments_removed: self.last_segment - self.segment,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let reason = &self.reason.as_bytes()[..self.reason.len().min(REASON_LENGTH_MAX)];
        let mut bytes = Vec::with_capacity(PLAN_FIXED_SIZE + reason.len() + 4);
        bytes.extend_from_slice(&PLAN_MAGIC);
        for field in
            [self.segment, self.truncate_at, self.last_segment, self.offset, self.records_dropped, self.bytes_dropped]
        {
            bytes.extend_from_slice(&field.to_le_bytes());
        }
        bytes.extend_from_slice(&u32::try_from(reason.len()).expect("bounded").to_le_bytes());
        bytes.extend_from_slice(reason);
        let checksum = crc32fast::hash(&bytes);
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
        let stored = u32::from_le_bytes(stored.try_into().expect("4 bytes"));
        let computed = crc32fast::hash(body);
        if stored != computed {
            return Err((0, CorruptionReason::Checksum { expected: stored, found: computed }));
        }
        let field = |index: usize| u64::from_le_bytes(body[8 + index * 8..16 + index * 8].try_into().expect("8 bytes"));
        let reason_length = u32::from_le_bytes(body[56..60].try_into().expect("4 bytes")) as usize;
        if reason_length > REASON_LENGTH_MAX || PLAN_FIXED_SIZE + reason_length != body.len() {
            return Err((56, CorruptionReason::BadLength { length: reason_length as u64 }));
        }
        let plan = Self {
            segment: field(0),
            truncate_at: field(1),
            last_segment: field(2),
            offset: field(3),
            records_dropped: field(4),
            bytes_dropped: field(5),
            reason: String::from_utf8_lossy(&body[PLAN_FIXED_SIZE..]).into_owned(),
        };
        if plan.last_segment < plan.segment {
            return Err((
                24,
                CorruptionReason::HeaderMismatch {
                    field: "last_segment",
                    expected: plan.segment,
                    found: plan.last_segment,
                },
            ));
        }
        Ok(plan)
    }
}

/// Writes the plan atomically and verified (see [`vfs::create_file_atomically`]).
pub fn write_plan(vfs: &dyn Vfs, directory: &Path, plan: &Plan) -> Result<()> {
    vfs::create_file_atomically(vfs, directory, PLAN_FILE_NAME, &plan.encode()).map(drop)
}

/// Reads and verifies the plan file.
pub fn read_plan(vfs: &dyn Vfs, directory: &Path) -> Result<Plan> {
    let path = directory.join(PLAN_FILE_NAME);
    let file = vfs.open(&path, OpenMode::Read).map_err(|error| Error::io(&path, "open", error))?;
    let length = file.len().map_err(|error| Error::io(&path, "len", error))?;
    let size_max = (PLAN_FIXED_SIZE + REASON_LENGTH_MAX + 4) as u64;
    if length > size_max {
        return Err(Error::Corruption {
            file: path,
            segment: 0,
            offset: 0,
            reason: CorruptionReason::BadLength { length },
        });
    }
    let mut bytes = vec![0u8; usize::try_from(length).expect("bounded above")];
    super::scan::read_exact_retrying(file.as_ref(), &path, &mut bytes, 0)?;
    Plan::decode(&bytes).map_err(|(offset, reason)| Error::Corruption { file: path, segment: 0, offset, reason })
}

/// Carries out a plan, leaving the plan file in place (see [`remove_plan`]). Idempotent: every
/// step may already have been done by an earlier, interrupted attempt.
pub fn carry_out(vfs: &dyn Vfs, directory: &Path, page_size: u32, plan: &Plan) -> Result<()> {
    // Newest first, each removal durable before the next, so that the segments left are always
    // a contiguous run.
    for later in (plan.segment + 1..=plan.last_segment).rev() {
        let path = directory.join(segment_file_name(later));
        match vfs.remove_file(&path) {
            Ok(()) => vfs.sync_dir(directory).map_err(|error| Error::io(directory, "sync_dir", error))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(Error::io(&path, "remove_file", error)),
        }
    }
    let path = directory.join(segment_file_name(plan.segment));
    if plan.truncate_at >= SEGMENT_HEADER_SIZE as u64 {
        let file = vfs.open(&path, OpenMode::ReadWrite).map_err(|error| Error::io(&path, "open", error))?;
        let length = file.len().map_err(|error| Error::io(&path, "len", error))?;
        if length > plan.truncate_at {
            super::truncate_file(file.as_ref(), &path, plan.truncate_at)?;
        }
    } else {
        // The header itself is damaged: replace the segment with an empty one, atomically.
        let header = format::encode_segment_header(plan.segment, page_size);
        vfs::create_file_atomically(vfs, directory, &segment_file_name(plan.segment), &header)?;
    }
    Ok(())
}

/// Removes the plan once the repair it describes has been reported to a caller who went on to
/// write. Until then every open finds it, finishes nothing new, and reports the repair again:
/// a crash between carrying out a repair and its report reaching anyone cannot hide it.
pub fn remove_plan(vfs: &dyn Vfs, directory: &Path) -> Result<()> {
    let plan_path = directory.join(PLAN_FILE_NAME);
    vfs.remove_file(&plan_path).map_err(|error| Error::io(&plan_path, "remove_file", error))?;
    vfs.sync_dir(directory).map_err(|error| Error::io(directory, "sync_dir", error))
}
