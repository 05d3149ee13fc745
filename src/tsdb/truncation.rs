//! Truncation and checkpoints: the head drops what is older than a time (what the blocks of
//! issue 17 will hold), writes `checkpoint.N` with everything it still holds of WAL
//! segments up to `N`, and removes those segments. See `checkpoint.rs` for the file.
//!
//! The order makes every crash safe: the WAL is sealed first (every commit so far durable,
//! later ones in segment `N + 1`), the checkpoint is made atomically, then older checkpoints
//! and the covered segments go. A crash before the checkpoint's rename leaves the old state
//! whole; one after it leaves segments the next open ignores and removes
//! ([`WalOptions::first_segment`](crate::wal::WalOptions::first_segment)).

use super::checkpoint;
use super::head::Head;
use super::record::{self, Sample, Tombstone};
use super::SeriesRef;
use crate::error::Result;

/// A checkpoint record holds the series, samples and tombstones of about this many bytes.
const RECORD_BYTES: usize = 64 << 10;

impl Head {
    /// Drops every sample older than `min_time` (never lowering what an earlier truncation
    /// set), and the series left without samples (their refs are never issued again); then
    /// checkpoints. From then on appends older than `min_time` are out of bounds. Durable when
    /// it returns: a crash keeps either the head before the call or the head after it. An I/O
    /// error poisons the head, which may then show either until it is reopened.
    pub fn truncate(&mut self, min_time: i64) -> Result<()> {
        self.check_health()?;
        let (_, covered) = self.wal.segments();
        if let Err(error) = self.wal.rotate() {
            return Err(self.poison(error));
        }
        self.drop_before(min_time.max(self.min_time));
        let written = self
            .checkpoint_records()
            .and_then(|records| {
                let bytes = checkpoint::encode(covered, self.min_time, self.max_time, &records);
                checkpoint::write(self.vfs.as_ref(), &self.directory, covered, &bytes)
            })
            .and_then(|()| checkpoint::remove_older(self.vfs.as_ref(), &self.directory, covered))
            .and_then(|()| self.wal.truncate_before(covered + 1))
            .and_then(|()| self.chunk_files.remove_before(self.min_time));
        if let Err(error) = written {
            return Err(self.poison(error));
        }
        self.checkpoint = Some(covered);
        Ok(())
    }

    /// Checkpoints what the head holds and removes the WAL segments it covers, dropping
    /// nothing: [`Head::truncate`] to the time the head already starts at.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.truncate(self.min_time)
    }

    /// The last WAL segment the newest checkpoint covers, if there is one: for checkers.
    #[cfg(feature = "checks")]
    pub fn checkpoint_segment(&self) -> Option<u64> {
        self.checkpoint
    }

    pub(super) fn drop_before(&mut self, min_time: i64) {
        self.min_time = min_time;
        let (by_labels, postings) = (&mut self.by_labels, &mut self.postings);
        self.series.retain(|series_ref, series| {
            series.truncate_before(min_time);
            if !series.is_empty() {
                return true;
            }
            by_labels.remove(&series.labels);
            if series.logged {
                postings.remove(series_ref, &series.labels);
            }
            false
        });
    }

    /// The head's series, samples and tombstones as WAL records, each of about
    /// [`RECORD_BYTES`]: a series' record comes before its samples and tombstones.
    fn checkpoint_records(&self) -> Result<Vec<Vec<u8>>> {
        let mut records = Vec::new();
        let mut batch = Batch::default();
        for (series_ref, series) in self.series.iter().filter(|(_, series)| series.logged) {
            batch.series.push((series_ref, &series.labels));
            batch.bytes += 64;
            for (t, value_bits) in series.stored_samples(&self.chunk_files, self.min_time, i64::MAX)? {
                batch.samples.push(Sample { series: series_ref, t, value_bits });
                batch.bytes += 12;
            }
            for &(min_time, max_time) in &series.tombstones {
                batch.tombstones.push(Tombstone { series: series_ref, min_time, max_time });
            }
            if batch.bytes >= RECORD_BYTES {
                batch.flush(&mut records);
            }
        }
        batch.flush(&mut records);
        Ok(records)
    }
}

/// A checkpoint record being gathered.
#[derive(Default)]
struct Batch<'a> {
    series: Vec<(SeriesRef, &'a super::labels::Labels)>,
    samples: Vec<Sample>,
    tombstones: Vec<Tombstone>,
    bytes: usize,
}

impl Batch<'_> {
    fn flush(&mut self, records: &mut Vec<Vec<u8>>) {
        if !self.series.is_empty() {
            records.push(record::encode_commit(&self.series, &self.samples));
        }
        if !self.tombstones.is_empty() {
            records.push(record::encode_tombstones(&self.tombstones));
        }
        *self = Batch::default();
    }
}
