//! What a WAL is opened with, and the checks an open makes of it.

use super::format::{self, PAGE_SIZE_MAX, PAGE_SIZE_MIN};
use crate::error::{Error, Result};
use crate::repair::RecoveryMode;

/// Options for [`Wal::open`](super::Wal::open).
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
    /// How many files of segments removed by [`Wal::truncate_before`](super::Wal::truncate_before) are kept (renamed
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
    /// The lowest segment number the log holds. Segments below it are obsolete: an open
    /// neither reads nor verifies them (damage there can fail no open and start no repair),
    /// and removes them once its checks have passed; an empty log begins at it. For a user
    /// that has moved what those segments held elsewhere, as the TSDB head's checkpoint
    /// does. A segment missing at or above it is [`Error::SegmentGap`]. Not recorded on
    /// disk. Defaults to 0.
    pub first_segment: u64,
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
            first_segment: 0,
        }
    }
}

impl WalOptions {
    pub(super) fn validate(&self) -> Result<()> {
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
