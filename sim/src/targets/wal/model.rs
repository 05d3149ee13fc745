//! The WAL model: every record appended, where the append put it, and whether a sync since
//! acknowledged it.

use ballast::wal::Position;

#[derive(Debug)]
pub(super) struct Expected {
    /// `None` for records of a batch whose append failed: they may or may not be on disk.
    pub(super) position: Option<Position>,
    pub(super) data: Vec<u8>,
    pub(super) synced: bool,
}

#[derive(Debug, Default)]
pub(super) struct Model {
    pub(super) records: Vec<Expected>,
    /// Segments below this may have been removed by a truncation that did not return.
    pub(super) truncate_requested_below: u64,
    /// Sequence number folded into record contents, so that no two records are alike.
    pub(super) next_sequence: u64,
}

impl Model {
    /// A sync or a close returned: every record is durable.
    pub(super) fn all_synced(&mut self) {
        for record in &mut self.records {
            record.synced = true;
        }
    }

    /// Takes what an open read back as the truth: the records beyond it are gone, and each kept
    /// one is where it was read; after a crash everything read back is on the durable image.
    pub(super) fn adopt(&mut self, recovered: &[(Position, Vec<u8>)], after_crash: bool) {
        let recovered_count = recovered.len();
        self.records.truncate(recovered_count);
        for (expected, (position, _)) in self.records.iter_mut().zip(recovered) {
            expected.position = Some(*position);
            // After a crash everything read back is on the durable image.
            expected.synced |= after_crash;
        }
    }
}
