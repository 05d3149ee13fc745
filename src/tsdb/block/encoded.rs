//! Series as the chunks they are written in: compaction copies chunks as they are (as
//! Prometheus's compactor does) and decodes only those a deletion or a range boundary cuts
//! into, instead of every sample. The first compactions decoded and encoded every sample of
//! the head's oldest range and of every merge, then decoded the block again to check it:
//! about 87 % of a compacting ingest's time (`ballast-bench prometheus`).

use super::Series;
use crate::tsdb::chunkenc::{ChunkError, XorChunk, XorIterator};
use crate::tsdb::Labels;

/// Samples per chunk, as Prometheus cuts them, when a block is written from samples.
const SAMPLES_PER_CHUNK: usize = 120;

/// An XOR chunk's bytes (its sample count first), and the times of its first and last samples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedChunk {
    pub min_time: i64,
    pub max_time: i64,
    pub bytes: Vec<u8>,
}

impl EncodedChunk {
    /// A chunk of `samples` (in time order, at least one).
    pub fn encode(samples: &[(i64, f64)]) -> Self {
        let mut chunk = XorChunk::new();
        for &(t, v) in samples {
            chunk.append(t, v);
        }
        let (first, last) = (samples.first().expect("a sample"), samples.last().expect("a sample"));
        Self { min_time: first.0, max_time: last.0, bytes: chunk.bytes().to_vec() }
    }

    /// The samples its header counts.
    pub fn samples(&self) -> u64 {
        self.bytes.get(..2).map_or(0, |count| u64::from(u16::from_be_bytes([count[0], count[1]])))
    }

    /// The chunk holding only its samples in `min_time..=max_time` that no range of
    /// `deleted` (inclusive ranges) hides: the chunk itself when that is all of them, `None`
    /// when it is none; the error if its bytes do not decode.
    pub fn filtered(self, min_time: i64, max_time: i64, deleted: &[(i64, i64)]) -> Result<Option<Self>, ChunkError> {
        let hidden = |low: i64, high: i64| deleted.iter().any(|&(a, b)| a <= high && b >= low);
        if min_time <= self.min_time && self.max_time <= max_time && !hidden(self.min_time, self.max_time) {
            return Ok(Some(self));
        }
        if self.max_time < min_time || self.min_time > max_time {
            return Ok(None);
        }
        let mut kept = Vec::new();
        for sample in XorIterator::new(&self.bytes)? {
            let (t, v) = sample?;
            if (min_time..=max_time).contains(&t) && !hidden(t, t) {
                kept.push((t, v));
            }
        }
        Ok((!kept.is_empty()).then(|| Self::encode(&kept)))
    }
}

/// A series for a block, as chunks in time order, none overlapping another.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesChunks {
    pub labels: Labels,
    pub chunks: Vec<EncodedChunk>,
}

impl SeriesChunks {
    /// `series` in chunks of 120 samples; `None` if it has none.
    pub fn encode(series: &Series) -> Option<Self> {
        let chunks: Vec<EncodedChunk> = series.samples.chunks(SAMPLES_PER_CHUNK).map(EncodedChunk::encode).collect();
        (!chunks.is_empty()).then(|| Self { labels: series.labels.clone(), chunks })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(chunk: &EncodedChunk) -> Vec<i64> {
        XorIterator::new(&chunk.bytes).unwrap().map(|sample| sample.unwrap().0).collect()
    }

    #[test]
    fn a_chunk_is_copied_whole_unless_a_window_edge_or_a_deletion_cuts_into_it() {
        let samples: Vec<(i64, f64)> = (0..10).map(|i| (i * 10, i as f64)).collect();
        let chunk = EncodedChunk::encode(&samples);
        assert_eq!((chunk.min_time, chunk.max_time, chunk.samples()), (0, 90, 10));
        let whole = chunk.clone().filtered(0, 90, &[(91, 200), (-50, -1)]).unwrap().unwrap();
        assert_eq!(whole, chunk, "untouched: the same bytes");
        let cut = chunk.clone().filtered(15, 1_000, &[(40, 55)]).unwrap().unwrap();
        assert_eq!(times(&cut), [20, 30, 60, 70, 80, 90]);
        assert_eq!((cut.min_time, cut.max_time, cut.samples()), (20, 90, 6));
        assert_eq!(chunk.clone().filtered(0, 90, &[(-5, 95)]), Ok(None), "all hidden");
        assert_eq!(chunk.clone().filtered(100, 200, &[]), Ok(None), "outside the window");
        let damaged = EncodedChunk { bytes: vec![0, 5, 1], ..chunk };
        assert!(damaged.filtered(50, 60, &[]).is_err(), "bytes that do not decode");
    }
}
