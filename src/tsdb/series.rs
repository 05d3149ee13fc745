//! One series in the head: its labels and its chunks, cut the way Prometheus cuts them.
//!
//! A chunk is cut when the next sample would cross the end of its chunk range (the head's
//! time is divided into ranges of `chunk_range` milliseconds, and no chunk spans two), when it
//! holds 240 samples, or when its bytes pass 1 KiB. At a quarter of the 120 samples a chunk
//! aims for, the end of the chunk is predicted from the rate so far, so that the rest of the
//! range is shared evenly by chunks of about 120 samples.

use super::chunkenc::XorChunk;
use super::labels::Labels;

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
}

#[derive(Clone, Debug)]
pub(crate) struct MemSeries {
    pub labels: Labels,
    /// Chunks cut, oldest first; the last is the one samples are appended to.
    pub chunks: Vec<HeadChunk>,
    /// When the open chunk is cut at the latest.
    next_at: i64,
    /// The newest sample: its time and value bits.
    pub newest: Option<(i64, u64)>,
    /// Whether the series' record is in the WAL (a commit wrote it).
    pub logged: bool,
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
        Self { labels, chunks: Vec::new(), next_at: i64::MIN, newest: None, logged: false }
    }

    /// Appends a sample newer than every sample of the series, cutting a chunk first if due.
    pub fn append(&mut self, t: i64, value_bits: u64, chunk_range: i64) {
        debug_assert!(self.newest.is_none_or(|(newest, _)| t > newest), "appends are in order");
        if self.cut_due(t) {
            self.chunks.push(HeadChunk { chunk: XorChunk::new(), min_time: t, max_time: t });
            self.next_at = range_end(t, chunk_range);
        }
        let open = self.chunks.last_mut().expect("a chunk was cut");
        let count = open.chunk.num_samples();
        if count == SAMPLES_PER_CHUNK / 4 {
            self.next_at = predicted_end(open.min_time, open.max_time, self.next_at);
        }
        open.chunk.append(t, f64::from_bits(value_bits));
        open.max_time = t;
        self.newest = Some((t, value_bits));
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

    /// The samples with `min_time <= t <= max_time`, oldest first, as `(t, value bits)`.
    pub fn samples(&self, min_time: i64, max_time: i64) -> Vec<(i64, u64)> {
        let mut samples = Vec::new();
        for head_chunk in &self.chunks {
            if head_chunk.max_time < min_time || head_chunk.min_time > max_time {
                continue;
            }
            for sample in head_chunk.chunk.iter() {
                let (t, v) = sample.expect("a chunk the head wrote decodes");
                if (min_time..=max_time).contains(&t) {
                    samples.push((t, v.to_bits()));
                }
            }
        }
        samples
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
        let window = series.samples(1000, 1990);
        assert_eq!(window.first(), Some(&(1000, 100)));
        assert_eq!(window.last(), Some(&(1990, 199)));
        assert_eq!(window.len(), 100);
    }
}
