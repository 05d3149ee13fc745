//! The appender: a batch of samples, checked as they come and committed as one WAL record.

use super::head::Head;
use super::labels::Labels;
use super::record::{self, Sample};
use super::SeriesRef;
use crate::error::{Error, Result};

/// The most samples a batch's buffer keeps room for after its commit, for the next batch.
const SPARE_SAMPLES_MAX: usize = 1 << 16;

/// When a commit returns, how durable it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// In the WAL's buffer: a crash may lose it (whole) until a later sync.
    Buffered,
    /// On disk: no crash loses it.
    Synced,
}

/// Why a sample is refused. The appender's other samples are unaffected.
#[derive(Debug)]
pub enum AppendError {
    /// `t` is older than the series' newest sample.
    OutOfOrder { series: SeriesRef, t: i64, newest: i64 },
    /// `t` is older than the head accepts: half a chunk range before its newest sample, or
    /// below the time it was truncated to ([`Head::truncate`]).
    OutOfBounds { t: i64, min_valid: i64 },
    /// The series already has a sample at `t`, with another value.
    Duplicate { series: SeriesRef, t: i64 },
    /// No series has this ref.
    UnknownRef { series: SeriesRef },
    /// Reserving refs for a new series failed: the head is poisoned.
    Storage(Error),
}

impl std::fmt::Display for AppendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OutOfOrder { series, t, newest } => {
                write!(f, "sample at {t} is older than the newest of series {series}, at {newest}")
            }
            Self::OutOfBounds { t, min_valid } => {
                write!(f, "sample at {t} is older than the head accepts ({min_valid})")
            }
            Self::Duplicate { series, t } => write!(f, "series {series} already has another value at {t}"),
            Self::UnknownRef { series } => write!(f, "no series has ref {series}"),
            Self::Storage(error) => write!(f, "reserving series refs failed: {error}"),
        }
    }
}

impl std::error::Error for AppendError {}

/// A batch of samples for the head: nothing is visible or durable before `commit`, and a
/// commit is wholly kept or wholly lost by a crash.
#[derive(Debug)]
pub struct Appender<'a> {
    head: &'a mut Head,
    /// This appender's number, which marks the series it has taken samples for (their
    /// `batch_newest`): a series looked up once per sample, not kept in a map of its own.
    batch: u64,
    /// The lowest time the head accepts, as of this batch's start.
    min_valid: Option<i64>,
    samples: Vec<Sample>,
    /// The series whose record this batch writes: those it took samples for that no commit
    /// has logged yet.
    created: Vec<SeriesRef>,
}

impl<'a> Appender<'a> {
    pub(super) fn new(head: &'a mut Head) -> Self {
        head.appenders += 1;
        let (batch, min_valid) = (head.appenders, head.min_valid_time());
        let samples = std::mem::take(&mut head.spare_samples);
        Self { head, batch, min_valid, samples, created: Vec::new() }
    }

    /// Adds a sample to the series named by `labels` (created if new); returns its ref, with
    /// which later samples can skip the lookup of the labels.
    pub fn append(&mut self, labels: &Labels, t: i64, v: f64) -> std::result::Result<SeriesRef, AppendError> {
        let series_ref = match self.head.by_labels.get(labels) {
            Some(&series_ref) => series_ref,
            None => {
                let series_ref = self.head.issue_ref().map_err(AppendError::Storage)?;
                self.head.insert_series(series_ref, labels.clone());
                series_ref
            }
        };
        self.append_ref(series_ref, t, v)?;
        Ok(series_ref)
    }

    /// Adds a sample to series `series`.
    pub fn append_ref(&mut self, series: SeriesRef, t: i64, v: f64) -> std::result::Result<(), AppendError> {
        let Some(stored) = self.head.series.get_mut(&series) else { return Err(AppendError::UnknownRef { series }) };
        if let Some(min_valid) = self.min_valid.filter(|&min_valid| t < min_valid) {
            return Err(AppendError::OutOfBounds { t, min_valid });
        }
        let value_bits = v.to_bits();
        let (batch, batch_t, batch_bits) = stored.batch_newest;
        let in_batch = batch == self.batch;
        let newest = if in_batch { Some((batch_t, batch_bits)) } else { stored.newest };
        if let Some((newest, newest_bits)) = newest {
            if t < newest {
                return Err(AppendError::OutOfOrder { series, t, newest });
            }
            if t == newest {
                // An identical resend is accepted and changes nothing.
                return if value_bits == newest_bits { Ok(()) } else { Err(AppendError::Duplicate { series, t }) };
            }
        }
        if !in_batch && !stored.logged {
            self.created.push(series);
        }
        stored.batch_newest = (self.batch, t, value_bits);
        self.samples.push(Sample { series, t, value_bits });
        Ok(())
    }

    /// Writes the batch to the WAL as one record (with the records of the series it creates),
    /// syncs it if asked, and only then applies it to the head. A synced commit makes every
    /// commit before it durable too, even when it holds no sample itself. An I/O error poisons
    /// the head; one writing or syncing the record applies nothing, but one writing the chunks
    /// the commit filled to a chunk file comes after the commit was written (and synced, if
    /// asked) and applied: a reopen then decides, as after any failure. A batch too large for one WAL record (see
    /// [`Wal::record_length_max`](crate::wal::Wal::record_length_max)) is refused with [`Error::RecordTooLarge`], applies nothing
    /// and leaves the head usable: commit it in smaller batches.
    pub fn commit(self, durability: Durability) -> Result<()> {
        let head = self.head;
        head.check_health()?;
        if self.samples.is_empty() {
            return if durability == Durability::Synced { head.sync() } else { Ok(()) };
        }
        let created = self.created;
        let new_series: Vec<(SeriesRef, &Labels)> =
            created.iter().map(|series_ref| (*series_ref, &head.series[series_ref].labels)).collect();
        let bytes = record::encode_commit(&new_series, &self.samples);
        let position = head.write_record(&bytes, durability)?;
        for series_ref in created {
            head.log_series(series_ref);
        }
        let mut samples = self.samples;
        for &sample in &samples {
            head.apply_sample(sample);
        }
        // The next batch takes this one's room, as large batches follow one another; but a
        // rare huge batch (a backfill) does not keep its room for good.
        samples.clear();
        if samples.capacity() <= SPARE_SAMPLES_MAX {
            head.spare_samples = samples;
        }
        head.write_full_chunks(position)?;
        Ok(())
    }

    /// Drops the batch. Series it created keep their refs (they are never issued again) but
    /// hold no samples and are not selected.
    pub fn rollback(self) {}
}
