//! The closed-segment check: every record of a sealed segment is what the index points to or
//! is superseded by a newer one (the write gate, see the module docs). Hooks for checkers,
//! behind the `checks` feature: the simulator's oracle calls them at every seal.

use super::format;
use super::scan::{scan_segment, SegmentScan};
use super::segment::SegmentState;
use super::Logstor;
use crate::error::Result;
use crate::vfs;

impl Logstor {
    /// Segments sealed since the last call (for checkers: see [`Logstor::check_segment_indexed`]).
    pub fn take_sealed(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.sealed_since_check)
    }

    /// The closed-segment check: reads sealed segment `segment` from disk and requires every
    /// record in it to be what the index points to, or superseded by a newer record of the
    /// same key (or another copy of the write the index points to). A record whose key the index no longer holds would come back after a crash;
    /// that is a violation too. Returns the violations found.
    pub fn check_segment_indexed(&self, segment: u64) -> Result<Vec<String>> {
        let Some(SegmentState::Sealed(_)) = self.segment_state(segment) else { return Ok(Vec::new()) };
        let (file_index, base, path) = self.file_of(segment);
        let mut bytes = vec![0u8; usize::try_from(self.geometry.segment_size).expect("fits")];
        vfs::read_exact_retrying(self.files[file_index].as_ref(), &path, &mut bytes, base)?;
        let mut violations = Vec::new();
        match scan_segment(&bytes, segment) {
            SegmentScan::Used { sealed_at: Some(_), records, .. } => {
                for range in &records {
                    let offset = range.start as u64;
                    let record = format::decode_verified_record(&bytes[range.clone()]).expect("verified by the scan");
                    match self.entry_of(record.key) {
                        Some(entry) if entry.segment == segment && entry.offset == offset => {
                            if entry.sequence != record.sequence {
                                violations.push(format!("segment {segment} offset {offset}: index sequence differs"));
                            }
                        }
                        // Superseded; or a second copy of the same write (sequence numbers are
                        // unique per write), left by a crash part way through a relocation and
                        // counted as a stale copy.
                        Some(entry) if entry.sequence >= record.sequence => {}
                        Some(entry) => violations.push(format!(
                            "segment {segment} offset {offset}: record sequence {} not superseded (index has {} at {}:{})",
                            record.sequence, entry.sequence, entry.segment, entry.offset
                        )),
                        None => violations.push(format!(
                            "segment {segment} offset {offset}: key of sequence {} is not in the index",
                            record.sequence
                        )),
                    }
                }
            }
            other => violations.push(format!("segment {segment} is sealed in memory but reads back as {other:?}")),
        }
        Ok(violations)
    }
}
