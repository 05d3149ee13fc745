//! What a logstor is opened with, and the checks an open makes of it before anything else.

use super::format::{self, Geometry, BLOCK_SIZE};
use crate::error::{Error, Result};
use crate::repair::RecoveryMode;

/// Options for [`Logstor::open`](super::Logstor::open).
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

/// Refuses options out of range, before the open touches the directory.
pub(super) fn check_options(options: &LogstorOptions) -> Result<()> {
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
