//! One series in the head: its labels and its chunks, cut the way Prometheus cuts them.
//!
//! A chunk is cut when the next sample would cross the end of its chunk range (the head's
//! time is divided into ranges of `chunk_range` milliseconds, and no chunk spans two), when it
//! holds 240 samples, or when its bytes pass 1 KiB. At a quarter of the 120 samples a chunk
//! aims for, the end of the chunk is predicted from the rate so far, so that the rest of the
//! range is shared evenly by chunks of about 120 samples.
//!
//! Readers and the open chunk: a query takes the head by `&self` and a commit by `&mut self`,
//! so no query runs while a commit appends, and an appender's samples reach a chunk only when
//! it commits. A query therefore always reads whole commits, and needs neither the seeds'
//! 4-sample buffer nor a copy of the open chunk. When the head is shared between threads (a
//! later issue), a reader will copy the open chunk's bytes and sample count under the lock, as
//! Prometheus came to do: an XOR chunk only grows at its end, so that copy is a consistent
//! prefix.

use super::chunk_files::{ChunkFiles, MappedChunk};
use super::chunkenc::{XorChunk, XorIterator};
use super::labels::Labels;
use crate::error::{CorruptionReason, Error, Result};

/// The number of samples a chunk aims for.
pub(crate) const SAMPLES_PER_CHUNK: u16 = 120;
/// No chunk grows past this many bytes.
pub(crate) const MAX_BYTES_PER_CHUNK: usize = 1024;
/// The bytes one sample can take at most (a 64-bit delta of deltas and 64 significant value
/// bits, with their control bits); a chunk is cut before a sample that could take it past
/// `MAX_BYTES_PER_CHUNK`, as Prometheus cuts.
const SAMPLE_BYTES_MAX: usize = 19;

/// A chunk and the times of its first and last samples.
#[derive(Clone, Debug)]
pub(crate) struct HeadChunk {
    pub chunk: XorChunk,
    pub min_time: i64,
    pub max_time: i64,
    /// The value bits of its last sample.
    pub last_value_bits: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct MemSeries {
    pub labels: Labels,
    /// Full chunks in the head's chunk files, oldest first: all older than `chunks`.
    pub mapped: Vec<MappedChunk>,
    /// Chunks in memory, oldest first: full ones waiting for a chunk file, then the one
    /// samples are appended to.
    pub chunks: Vec<HeadChunk>,
    /// When the open chunk is cut at the latest.
    next_at: i64,
    /// The newest sample: its time and value bits.
    pub newest: Option<(i64, u64)>,
    /// Whether the series' record is in the WAL (a commit wrote it).
    pub logged: bool,
    /// The appender that last took a sample for this series, and that sample's time and
    /// value bits: the newest an appender checks its next sample against, before it commits.
    /// Appenders are numbered from 1, so a new series' `(0, 0, 0)` matches none.
    pub batch_newest: (u64, i64, u64),
    /// Time ranges deleted, `(min_time, max_time)` inclusive, none overlapping another. Each
    /// ends at the newest sample the series had when deleted, so that it hides no later one.
    pub tombstones: Vec<(i64, i64)>,
}

/// The end of the chunk range that holds `t`.
fn range_end(t: i64, chunk_range: i64) -> i64 {
    (t / chunk_range).saturating_mul(chunk_range).saturating_add(chunk_range)
}

/// Where a chunk that began at `start` and reached `current` after a quarter of its samples
/// should end, so that the rest of its range up to `range_end` splits into chunks of equal
/// rate: `start + (range_end - start) / n`, `n` the whole number of such chunks that fit.
fn predicted_end(start: i64, current: i64, range_end: i64) -> i64 {
    let span = i128::from(range_end) - i128::from(start);
    let per_chunk = (i128::from(current) - i128::from(start) + 1) * 4;
    let n = span / per_chunk.max(1);
    if n <= 1 {
        return range_end;
    }
    i64::try_from(i128::from(start) + span / n).expect("between start and range_end")
}

impl MemSeries {
    pub fn new(labels: Labels) -> Self {
        Self {
            labels,
            mapped: Vec::new(),
            chunks: Vec::new(),
            next_at: i64::MIN,
            newest: None,
            logged: false,
            batch_newest: (0, 0, 0),
            tombstones: Vec::new(),
        }
    }

    /// Takes the chunks a chunk file holds for this series, at open: those the head still
    /// needs (ending at or after `min_time`). The newest sample is the last of them, until
    /// replay appends a later one.
    pub fn attach(&mut self, mapped: Vec<MappedChunk>, min_time: i64) {
        debug_assert!(self.chunks.is_empty() && self.mapped.is_empty(), "attached before any sample");
        self.mapped = mapped.into_iter().filter(|chunk| chunk.max_time >= min_time).collect();
        self.newest = self.mapped.last().map(|chunk| (chunk.max_time, chunk.last_value_bits));
    }

    /// The full chunks waiting for a chunk file, which then holds them (`mapped`).
    pub fn take_full_chunks(&mut self) -> Vec<HeadChunk> {
        let full = self.chunks.len().saturating_sub(1);
        self.chunks.drain(..full).collect()
    }

    /// Whether the series holds no chunk at all.
    pub fn is_empty(&self) -> bool {
        self.mapped.is_empty() && self.chunks.is_empty()
    }

    /// The range a deletion of `min_time..=max_time` hides now: up to the newest sample, and
    /// `None` if no sample a query would return lies in it.
    pub fn deletion(&self, files: &ChunkFiles, min_time: i64, max_time: i64) -> Result<Option<(i64, i64)>> {
        let Some((newest, _)) = self.newest else { return Ok(None) };
        let max_time = max_time.min(newest);
        let hides = min_time <= max_time && !self.samples(files, min_time, max_time)?.is_empty();
        Ok(hides.then_some((min_time, max_time)))
    }

    /// Adds a deletion's range, merged with the ranges it overlaps or touches, so that
    /// queries and checkpoints meet as few ranges as the deletions allow.
    pub fn add_tombstone(&mut self, min_time: i64, max_time: i64) {
        super::deletion::add_interval(&mut self.tombstones, min_time, max_time);
    }

    pub fn is_deleted(&self, t: i64) -> bool {
        self.tombstones.iter().any(|&(min, max)| (min..=max).contains(&t))
    }

    /// Drops the chunks wholly older than `min_time`, and the tombstones that hid only their
    /// samples (a kept chunk may begin before `min_time`: what hides its samples stays).
    pub fn truncate_before(&mut self, min_time: i64) {
        self.mapped.retain(|chunk| chunk.max_time >= min_time);
        self.chunks.retain(|chunk| chunk.max_time >= min_time);
        let oldest_mapped = self.mapped.first().map(|chunk| chunk.min_time);
        let oldest = oldest_mapped.or(self.chunks.first().map(|chunk| chunk.min_time)).unwrap_or(i64::MAX);
        self.tombstones.retain(|&(_, max)| max >= oldest);
    }

    /// Appends a sample newer than every sample of the series, cutting a chunk first if due;
    /// whether it cut one after another (a full chunk now waits for a chunk file).
    pub fn append(&mut self, t: i64, value_bits: u64, chunk_range: i64) -> bool {
        debug_assert!(self.newest.is_none_or(|(newest, _)| t > newest), "appends are in order");
        let cut = self.cut_due(t);
        if cut {
            self.chunks.push(HeadChunk {
                chunk: XorChunk::new(),
                min_time: t,
                max_time: t,
                last_value_bits: value_bits,
            });
            self.next_at = range_end(t, chunk_range);
        }
        let open = self.chunks.last_mut().expect("a chunk was cut");
        let count = open.chunk.num_samples();
        if count == SAMPLES_PER_CHUNK / 4 {
            self.next_at = predicted_end(open.min_time, open.max_time, self.next_at);
        }
        open.chunk.append(t, f64::from_bits(value_bits));
        open.max_time = t;
        open.last_value_bits = value_bits;
        self.newest = Some((t, value_bits));
        cut && self.chunks.len() > 1
    }

    fn cut_due(&self, t: i64) -> bool {
        let Some(open) = self.chunks.last() else { return true };
        let count = open.chunk.num_samples();
        // Predicted at the quarter, and checked before the sample at the quarter is added.
        let next_at = if count == SAMPLES_PER_CHUNK / 4 {
            predicted_end(open.min_time, open.max_time, self.next_at)
        } else {
            self.next_at
        };
        open.chunk.bytes().len() > MAX_BYTES_PER_CHUNK - SAMPLE_BYTES_MAX
            || t >= next_at
            || count >= 2 * SAMPLES_PER_CHUNK
    }

    /// The samples with `min_time <= t <= max_time` no tombstone hides, oldest first, as
    /// `(t, value bits)`. Chunks in chunk files are read back (an I/O error, or damage).
    pub fn samples(&self, files: &ChunkFiles, min_time: i64, max_time: i64) -> Result<Vec<(i64, u64)>> {
        let mut samples = self.stored_samples(files, min_time, max_time)?;
        if !self.tombstones.is_empty() {
            samples.retain(|&(t, _)| !self.is_deleted(t));
        }
        Ok(samples)
    }

    /// The samples with `min_time <= t <= max_time`, deleted or not, oldest first.
    pub fn stored_samples(&self, files: &ChunkFiles, min_time: i64, max_time: i64) -> Result<Vec<(i64, u64)>> {
        let overlaps = |low: i64, high: i64| high >= min_time && low <= max_time;
        let mut samples = Vec::new();
        for mapped in self.mapped.iter().filter(|chunk| overlaps(chunk.min_time, chunk.max_time)) {
            let bytes = files.read(mapped.at)?;
            let bad = |_| Error::Corruption {
                file: files.path_of(mapped.at.file),
                segment: mapped.at.file,
                offset: mapped.at.offset,
                reason: CorruptionReason::BadRecord { at: 0 },
            };
            for sample in XorIterator::new(&bytes).map_err(bad)? {
                let (t, v) = sample.map_err(bad)?;
                if (min_time..=max_time).contains(&t) {
                    samples.push((t, v.to_bits()));
                }
            }
        }
        for head_chunk in self.chunks.iter().filter(|chunk| overlaps(chunk.min_time, chunk.max_time)) {
            for sample in head_chunk.chunk.iter() {
                let (t, v) = sample.expect("a chunk the head wrote decodes");
                if (min_time..=max_time).contains(&t) {
                    samples.push((t, v.to_bits()));
                }
            }
        }
        Ok(samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series() -> MemSeries {
        MemSeries::new(Labels::new([("a", "b")]).expect("valid"))
    }

    const HOUR: i64 = 3_600_000;

    #[test]
    fn a_steady_scrape_cuts_chunks_of_about_120_samples_inside_each_range() {
        let mut series = series();
        // 15 s scrapes for 4 hours: 960 samples, two 2-hour ranges.
        for i in 0..960 {
            series.append(i * 15_000, (i as f64).to_bits(), 2 * HOUR);
        }
        let counts: Vec<u16> = series.chunks.iter().map(|chunk| chunk.chunk.num_samples()).collect();
        assert_eq!(counts.iter().map(|&count| u64::from(count)).sum::<u64>(), 960);
        assert!(counts.iter().all(|&count| (100..=140).contains(&count)), "{counts:?}");
        for chunk in &series.chunks {
            assert_eq!(chunk.min_time / (2 * HOUR), chunk.max_time / (2 * HOUR), "never across a range boundary");
        }
    }

    #[test]
    fn a_dense_series_cuts_at_240_samples_and_large_values_at_1_kib() {
        let mut dense = series();
        for i in 0..1000 {
            dense.append(i, 1.0f64.to_bits(), 2 * HOUR);
        }
        assert!(dense.chunks.iter().all(|chunk| chunk.chunk.num_samples() <= 240));
        let mut noisy = series();
        for i in 0..200 {
            noisy.append(i * 1000, (i as f64 * 1.000_123_456_7).sin().to_bits(), 2 * HOUR);
        }
        assert!(noisy.chunks.iter().all(|chunk| chunk.chunk.bytes().len() <= MAX_BYTES_PER_CHUNK));
        assert!(noisy.chunks.len() > 1);
    }

    #[test]
    fn samples_read_back_in_a_window() {
        let mut series = series();
        for i in 0..500 {
            series.append(i * 10, i as u64, 2 * HOUR);
        }
        let window = series.samples(&ChunkFiles::none(), 1000, 1990).unwrap();
        assert_eq!(window.first(), Some(&(1000, 100)));
        assert_eq!(window.last(), Some(&(1990, 199)));
        assert_eq!(window.len(), 100);
    }

    #[test]
    fn tombstones_merge_when_they_overlap_or_touch() {
        let mut series = series();
        series.add_tombstone(10, 20);
        series.add_tombstone(30, 40);
        series.add_tombstone(21, 25);
        assert_eq!(series.tombstones, vec![(10, 25), (30, 40)]);
        series.add_tombstone(0, 35);
        assert_eq!(series.tombstones, vec![(0, 40)]);
        series.add_tombstone(i64::MIN, i64::MIN);
        series.add_tombstone(i64::MAX, i64::MAX);
        assert_eq!(series.tombstones.len(), 3);
        assert!(series.is_deleted(i64::MIN) && series.is_deleted(40) && !series.is_deleted(41));
    }

    #[test]
    fn a_deletion_hides_what_it_covers_up_to_the_newest_sample_and_truncation_drops_whole_chunks() {
        let mut series = series();
        for i in 0..300 {
            series.append(i * 10, i as u64, 2 * HOUR);
        }
        assert_eq!(series.deletion(&ChunkFiles::none(), 5000, 10_000).unwrap(), None, "no sample there");
        let (min, max) = series.deletion(&ChunkFiles::none(), 100, i64::MAX).unwrap().expect("hides samples");
        assert_eq!((min, max), (100, 2990), "ends at the newest sample");
        series.add_tombstone(min, max);
        series.append(3000, 300, 2 * HOUR);
        assert_eq!(
            series.samples(&ChunkFiles::none(), 0, i64::MAX).unwrap(),
            vec![(0, 0), (10, 1), (20, 2), (30, 3), (40, 4), (50, 5), (60, 6), (70, 7), (80, 8), (90, 9), (3000, 300)]
        );
        assert_eq!(series.stored_samples(&ChunkFiles::none(), 0, i64::MAX).unwrap().len(), 301);
        let first_chunk_end = series.chunks[0].max_time;
        series.truncate_before(first_chunk_end + 1);
        assert!(series.chunks.iter().all(|chunk| chunk.max_time > first_chunk_end));
        assert_eq!(series.tombstones, vec![(100, 2990)]);
        series.truncate_before(2991);
        assert_eq!(
            series.samples(&ChunkFiles::none(), 0, i64::MAX).unwrap(),
            vec![(3000, 300)],
            "what the kept chunk holds stays hidden"
        );
        series.append(8_000_000, 1, 2 * HOUR);
        series.truncate_before(3001);
        assert!(series.tombstones.is_empty(), "{:?}", series.tombstones);
    }
}
