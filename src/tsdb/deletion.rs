//! Deletion by tombstones: a time range of the series some matchers select, hidden from every
//! later query, made durable as one WAL record (atomic, as a commit is).

use super::appender::Durability;
use super::head::Head;
use super::matcher::Matcher;
use super::record::{self, Tombstone};
use crate::error::Result;

impl Head {
    /// Deletes the samples with `min_time <= t <= max_time` of the series `matchers` select,
    /// and returns how many series had such samples. Samples appended later are never hidden,
    /// even inside the range: each series' tombstone ends at its newest sample. The deletion
    /// is one WAL record, wholly kept or wholly lost by a crash, and durable when it returns
    /// if `durability` is [`Durability::Synced`]. An I/O error (or damage met reading a chunk
    /// file) poisons the head and deletes nothing.
    pub fn delete(
        &mut self,
        min_time: i64,
        max_time: i64,
        matchers: &[Matcher],
        durability: Durability,
    ) -> Result<u64> {
        self.check_health()?;
        let min_time = min_time.max(self.min_time);
        let mut tombstones: Vec<Tombstone> = Vec::new();
        for series_ref in self.postings.select(matchers) {
            // Which samples it hides may need chunk files read back: a failure there is the
            // disk failing the head, as a failed write is.
            match self.series[&series_ref].deletion(&self.chunk_files, min_time, max_time) {
                Ok(Some((min_time, max_time))) => tombstones.push(Tombstone { series: series_ref, min_time, max_time }),
                Ok(None) => {}
                Err(error) => return Err(self.poison(error)),
            }
        }
        if tombstones.is_empty() {
            return if durability == Durability::Synced { self.sync().map(|()| 0) } else { Ok(0) };
        }
        self.write_record(&record::encode_tombstones(&tombstones), durability)?;
        for tombstone in &tombstones {
            let series = self.series.get_mut(&tombstone.series).expect("selected");
            series.add_tombstone(tombstone.min_time, tombstone.max_time);
        }
        Ok(tombstones.len() as u64)
    }
}

/// Adds `min_time..=max_time` to `intervals` (inclusive ranges, none overlapping or touching
/// another), merging it with those it overlaps or touches.
pub(crate) fn add_interval(intervals: &mut Vec<(i64, i64)>, min_time: i64, max_time: i64) {
    let (mut min, mut max) = (min_time, max_time);
    intervals.retain(|&(low, high)| {
        let apart = high < min.saturating_sub(1) || low > max.saturating_add(1);
        if !apart {
            (min, max) = (min.min(low), max.max(high));
        }
        apart
    });
    intervals.push((min, max));
    intervals.sort_unstable();
}
