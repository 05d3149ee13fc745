//! Segments: what each holds and where it lives, the data files they are carved from, and how
//! the shared repair plan cuts one.

use std::path::{Path, PathBuf};

use super::format::{self, BufferKind, Geometry, BLOCK_SIZE};
use super::io_error;
use super::scan::{find_seal, highest_generation, next_generation, ANY_GENERATION};
use crate::error::Result;
use crate::repair::Segments;
use crate::vfs::{self, OpenMode, Vfs, VfsFile};

/// What a segment holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SegmentKind {
    /// Records of any group, as written.
    Mixed,
    /// Records of one group, written by the separator or compaction.
    Group(u32),
}

impl SegmentKind {
    pub(super) fn owner(self) -> u32 {
        match self {
            Self::Mixed => 0,
            Self::Group(group) => group + 1,
        }
    }

    pub(super) fn from_owner(owner: u32) -> Self {
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
pub(super) struct Segment {
    pub(super) state: SegmentState,
    /// The generation its buffers carry (free: the one its next use will carry).
    pub(super) generation: u64,
    /// Bytes written to the file (buffers only; the seal follows).
    pub(super) written: u64,
    /// Bytes of records the index points to.
    pub(super) live_bytes: u64,
}

/// Where segment `segment` lives: its data file and its byte offset there.
pub(super) fn place(geometry: Geometry, segment: u64) -> (u64, u64) {
    (segment / geometry.segments_per_file, (segment % geometry.segments_per_file) * geometry.segment_size)
}

/// The logstor's segment naming and cutting, for the shared repair plan.
pub(super) struct LogstorSegments {
    pub(super) geometry: Geometry,
}

/// A segment read whole for a repair: its file's path, the open file, its base offset, its bytes.
pub(super) type SegmentRead = (PathBuf, Box<dyn VfsFile>, u64, Vec<u8>);

impl LogstorSegments {
    pub(super) fn read(&self, vfs: &dyn Vfs, directory: &Path, segment: u64) -> Result<SegmentRead> {
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

/// Creates data file `index`, preallocated, atomically (temp, allocate, sync, rename, sync dir;
/// nothing to read back: see [`vfs::create_atomically_with`]).
pub(super) fn create_data_file(
    vfs: &dyn Vfs,
    directory: &Path,
    index: u64,
    geometry: Geometry,
) -> Result<Box<dyn VfsFile>> {
    vfs::create_atomically_with(vfs, directory, &format::data_file_name(index), |file, temp_path| {
        file.allocate(geometry.file_size()).map_err(io_error(temp_path, "allocate"))?;
        file.sync_data().map_err(io_error(temp_path, "sync_data"))
    })
}
