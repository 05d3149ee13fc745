//! Snapshots: the datastore's state at an offset, so that restoring needs only the newest valid
//! snapshot and the transactions after it.

use std::path::Path;

use super::{format, open_file, Commitlog, Retention};
use crate::error::{Error, Result};
use crate::vfs::{self, OpenMode, Vfs};

/// The datastore's side of snapshotting.
pub trait SnapshotSource {
    /// The datastore's state with every transaction up to and including `offset` applied, and
    /// none after it, as bytes it can restore from.
    fn snapshot(&mut self, offset: u64) -> Vec<u8>;
}

/// A snapshot read back by [`Commitlog::latest_snapshot`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The last offset the state includes; replay continues at `offset + 1`.
    pub offset: u64,
    pub data: Vec<u8>,
    /// Newer snapshot files that failed verification and were passed over.
    pub skipped_damaged: u64,
}

/// Reads and verifies the snapshot at `offset`; `None` if it is damaged.
pub(super) fn read_snapshot(vfs: &dyn Vfs, directory: &Path, offset: u64) -> Result<Option<Vec<u8>>> {
    let path = directory.join(format::snapshot_file_name(offset));
    let (file, length) = open_file(vfs, &path, OpenMode::Read)?;
    let length = usize::try_from(length).map_err(|_| Error::InvalidArgument { reason: "snapshot too large".into() })?;
    let mut bytes = vec![0u8; length];
    vfs::read_exact_retrying(file.as_ref(), &path, &mut bytes, 0)?;
    match format::decode_snapshot(&bytes, offset) {
        Ok(data) => Ok(Some(data.to_vec())),
        Err(reason) => {
            tracing::warn!(path = %path.display(), %reason, "snapshot failed verification; passing over it");
            Ok(None)
        }
    }
}

impl Commitlog {
    /// True when a snapshot is due: a segment rotated, or `snapshot_interval_transactions`
    /// passed, since the last one.
    pub fn snapshot_due(&self) -> bool {
        self.max_committed_offset().is_some()
            && (self.rotated_since_snapshot
                || self.transactions_since_snapshot >= self.options.snapshot_interval_transactions)
    }

    /// Takes a snapshot if one is due (see [`Commitlog::snapshot_now`]).
    pub fn take_snapshot(&mut self, source: &mut dyn SnapshotSource) -> Result<Option<u64>> {
        if !self.snapshot_due() {
            return Ok(None);
        }
        self.snapshot_now(source)
    }

    /// Syncs the log, asks `source` for its state at the highest committed offset, and writes
    /// it atomically as a snapshot. Then applies retention: every snapshot is read back, damaged
    /// ones are removed, the oldest valid ones beyond `snapshots_kept` are removed, and with
    /// [`Retention::RemoveBelowOldestSnapshot`] so are the sealed segments below the oldest
    /// valid snapshot. Reading the kept snapshots back costs I/O; it is what makes sure a
    /// damaged snapshot is never what the log's history depends on. Returns the snapshot's offset, or `None` for
    /// an empty log.
    pub fn snapshot_now(&mut self, source: &mut dyn SnapshotSource) -> Result<Option<u64>> {
        self.sync()?;
        let Some(offset) = self.max_committed_offset() else { return Ok(None) };
        if !self.snapshots.contains(&offset) {
            let bytes = format::encode_snapshot(offset, &source.snapshot(offset));
            let name = format::snapshot_file_name(offset);
            if let Err(error) = vfs::create_file_atomically(self.vfs.as_ref(), &self.directory, &name, &bytes) {
                return Err(self.poison(error));
            }
            self.snapshots.push(offset);
        }
        self.transactions_since_snapshot = 0;
        self.rotated_since_snapshot = false;
        if let Err(error) = self.apply_retention() {
            return Err(self.poison(error));
        }
        Ok(Some(offset))
    }

    fn apply_retention(&mut self) -> Result<()> {
        let vfs = self.vfs.as_ref();
        let directory = self.directory.clone();
        let remove = |name: String| -> Result<()> {
            let path = directory.join(name);
            vfs.remove_file(&path).map_err(|error| Error::io(&path, "remove_file", error))?;
            vfs.sync_dir(&directory).map_err(|error| Error::io(&directory, "sync_dir", error))
        };
        // Only snapshots that verify now count towards `snapshots_kept`: a damaged one cannot
        // stand in for the valid ones it would push out, nor for segments. Damaged ones go.
        let mut valid = Vec::with_capacity(self.snapshots.len());
        for &offset in &self.snapshots {
            if read_snapshot(vfs, &directory, offset)?.is_some() {
                valid.push(offset);
            } else {
                remove(format::snapshot_file_name(offset))?;
            }
        }
        while valid.len() > self.options.snapshots_kept {
            remove(format::snapshot_file_name(valid.remove(0)))?;
        }
        self.snapshots = valid;
        if self.options.retention == Retention::RemoveBelowOldestSnapshot {
            let Some(&oldest) = self.snapshots.first() else { return Ok(()) };
            // Oldest first, each removal durable, so the segments left stay contiguous.
            while self.sealed.first().is_some_and(|segment| segment.next_offset <= oldest + 1) {
                let segment = self.sealed.remove(0);
                remove(format::segment_file_name(segment.min_offset))?;
                remove(format::index_file_name(segment.min_offset))?;
            }
        }
        Ok(())
    }

    /// The newest snapshot that verifies and lies within the log, passing over damaged ones.
    /// Restore = this snapshot's state + `transactions_from(snapshot.offset + 1)`.
    pub fn latest_snapshot(&self) -> Result<Option<Snapshot>> {
        let mut skipped_damaged = 0;
        for &offset in self.snapshots.iter().rev() {
            if offset >= self.next_offset {
                continue;
            }
            match read_snapshot(self.vfs.as_ref(), &self.directory, offset)? {
                Some(data) => return Ok(Some(Snapshot { offset, data, skipped_damaged })),
                None => skipped_damaged += 1,
            }
        }
        Ok(None)
    }
}
