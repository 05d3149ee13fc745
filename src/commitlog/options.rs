//! What a commitlog is opened with, and the checks an open makes of it.

use super::format::SEGMENT_HEADER_SIZE;
use crate::error::{Error, Result};
use crate::repair::RecoveryMode;

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

/// Options for [`Commitlog::open`](super::Commitlog::open).
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
    pub(super) fn validate(&self) -> Result<()> {
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
