//! Replay at open: the newest checkpoint's records, then the WAL's records after the segments
//! it covers, applied in order; then the ref counter.

use std::path::Path;

use std::collections::BTreeMap;

use super::checkpoint::{self, Checkpoint};
use super::chunk_files::MappedChunk;
use super::head::Head;
use super::labels::Labels;
use super::record::{self, Record, Sample, Tombstone};
use super::SeriesRef;
use crate::error::{CorruptionReason, Error, Result};
use crate::wal;

/// How far past its series a repair open starts the counter when the `refs` file is damaged:
/// how far refs went is lost with it, and refs are plentiful.
const REFS_SKIPPED_AFTER_DAMAGE: u64 = 1 << 32;

/// A record that verified but makes no sense to the head: damage its checksum could not see.
fn bad_record(file: &Path, segment: u64, offset: u64, at: u64) -> Error {
    Error::Corruption { file: file.to_path_buf(), segment, offset, reason: CorruptionReason::BadRecord { at } }
}

impl Head {
    /// Rebuilds the series, samples and tombstones from `checkpoint` and the WAL records after
    /// it, each series starting from the chunks the chunk files kept for it (`mapped`; replay
    /// skips the samples they hold), and the ref counter from them and the `reserved` value of
    /// the refs file (`Some(None)`: the file was damaged). Chunks replay fills go to the chunk
    /// files as they fill.
    pub(super) fn replay(
        &mut self,
        checkpoint: Option<Checkpoint>,
        mut mapped: BTreeMap<SeriesRef, Vec<MappedChunk>>,
        reserved: Option<Option<SeriesRef>>,
    ) -> Result<()> {
        if let Some(checkpoint) = checkpoint {
            // The blocks' floor (`Head::open_above`) may be above the checkpoint's.
            self.min_time = self.min_time.max(checkpoint.min_time);
            self.max_time = checkpoint.max_time;
            let file = self.directory.join(checkpoint::file_name(checkpoint.segment));
            // The checkpoint's samples came from segments up to its own: a position there.
            let position = wal::Position { segment: checkpoint.segment, offset: 0 };
            for (offset, bytes) in checkpoint.records {
                let replayed = self.replay_record(&bytes, &mut mapped);
                replayed.map_err(|at| bad_record(&file, checkpoint.segment, offset, at))?;
                self.write_full_chunks(position)?;
            }
            self.checkpoint = Some(checkpoint.segment);
        }
        let mut records = Vec::new();
        for item in self.wal.records() {
            records.push(item?);
        }
        for (position, bytes) in records {
            let file = self.wal_directory.join(wal::segment_file_name(position.segment));
            let replayed = self.replay_record(&bytes, &mut mapped);
            replayed.map_err(|at| bad_record(&file, position.segment, position.offset, at))?;
            self.write_full_chunks(position)?;
        }
        let after_series = self.series.last_ref().map_or(1, |last| last.saturating_add(1));
        self.next_ref = match reserved {
            None => after_series,
            Some(Some(until)) => until.max(after_series),
            Some(None) => after_series.saturating_add(REFS_SKIPPED_AFTER_DAMAGE),
        };
        // The next ref issued records a new value first.
        self.reserved_until = self.next_ref;
        Ok(())
    }

    /// Applies one record; `Err(at)` names the byte where it stops making sense.
    fn replay_record(
        &mut self,
        bytes: &[u8],
        mapped: &mut BTreeMap<SeriesRef, Vec<MappedChunk>>,
    ) -> std::result::Result<(), u64> {
        match record::decode(bytes)? {
            Record::Commit { series, samples } => {
                for (series_ref, labels) in series {
                    self.replay_series(series_ref, labels, mapped).map_err(|()| 0u64)?;
                }
                for sample in samples {
                    self.replay_sample(sample).map_err(|()| 0u64)?;
                }
            }
            Record::Tombstones(tombstones) => {
                for tombstone in tombstones {
                    self.replay_tombstone(tombstone).map_err(|()| 0u64)?;
                }
            }
        }
        Ok(())
    }

    /// A series record at replay. The same series twice (in the checkpoint and in a segment
    /// it covered, or a commit after a rollback) is one series, its samples kept; one ref for
    /// two label sets, or two refs for one, is damage the checksums could not see.
    fn replay_series(
        &mut self,
        series_ref: SeriesRef,
        labels: Labels,
        mapped: &mut BTreeMap<SeriesRef, Vec<MappedChunk>>,
    ) -> std::result::Result<(), ()> {
        if let Some(existing) = self.series.get(&series_ref) {
            return if existing.labels == labels { Ok(()) } else { Err(()) };
        }
        if self.by_labels.contains_key(&labels) {
            return Err(());
        }
        self.insert_series(series_ref, labels);
        self.log_series(series_ref);
        if let Some(chunks) = mapped.remove(&series_ref) {
            let min_time = self.min_time;
            self.series.get_mut(&series_ref).expect("inserted").attach(chunks, min_time);
        }
        Ok(())
    }

    /// A sample at replay: one the head already holds (the checkpoint and the WAL overlap
    /// after a crash between them) or one below its lowest time is skipped.
    fn replay_sample(&mut self, sample: Sample) -> std::result::Result<(), ()> {
        let series = self.series.get(&sample.series).ok_or(())?;
        let held = series.newest.is_some_and(|(newest, _)| sample.t <= newest);
        if !held && sample.t >= self.min_time {
            self.apply_sample(sample);
        }
        Ok(())
    }

    fn replay_tombstone(&mut self, tombstone: Tombstone) -> std::result::Result<(), ()> {
        let series = self.series.get_mut(&tombstone.series).ok_or(())?;
        series.add_tombstone(tombstone.min_time, tombstone.max_time);
        Ok(())
    }
}
