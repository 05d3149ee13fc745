//! The logstor final phase, on a perfect disk: in one seed of ten the write-path phase (many
//! segments' worth with no maintenance call, the footprint bounded by the live data), then
//! maintenance to quiescence, every sealed segment checked, the space used bounded, a close,
//! `verify`, and a reopen that seals nothing.

use ballast::logstor::{self, Logstor};
use rand::Rng;

use super::{directory, Workload};
use crate::fail;
use crate::harness::{self, Context, Failure};

/// The write-path phase writes this many segments' worth of keys and values, in at most
/// `WRITE_PATH_OPS_MAX` operations (tiny values would take tens of thousands).
const WRITE_PATH_SEGMENTS: u64 = 40;
const WRITE_PATH_OPS_MAX: u32 = 5000;
/// One seed in this many runs the write-path phase.
const WRITE_PATH_SEEDS_ONE_IN: u32 = 10;

impl Workload {
    /// Liveness on a perfect disk: reopen, write, run maintenance to quiescence, check every
    /// sealed segment and that the space used is bounded by the live data.
    pub(super) fn final_work(&mut self, context: &mut Context, mut store: Logstor) -> Result<(), Failure> {
        // Four fifths of a seed's time went to this phase when every seed ran it; one seed in
        // ten still runs it a hundred thousand times in a sweep of a million.
        if context.rng.gen_ratio(1, WRITE_PATH_SEEDS_ONE_IN) {
            self.write_path_phase(context, &mut store)?;
        }
        for _ in 0..20 {
            let key = self.draw_key(context);
            let value = self.draw_value(context);
            let group = store.group_of(&key);
            if let Err(error) = store.put(&key, &value) {
                fail!("put on a perfect disk failed: {error}");
            }
            self.model.history(&key, group).versions.push((Some(value), group));
        }
        if let Err(error) = store.sync().and_then(|()| store.maintain_to_quiescence()) {
            fail!("maintenance on a perfect disk failed: {error}");
        }
        self.model.sync_all();
        for segment in 0..store.stats().segments_total {
            match store.check_segment_indexed(segment) {
                Ok(violations) if violations.is_empty() => {}
                Ok(violations) => {
                    fail!("after quiescence segment {segment} is not fully indexed: {}", violations.join("; "))
                }
                Err(error) => fail!("reading segment {segment} failed on a perfect disk: {error}"),
            }
        }
        let stats = store.stats();
        if stats.sealed_without_live_data > 0 {
            fail!("after quiescence {} sealed segments hold no live data (leaked)", stats.sealed_without_live_data);
        }
        let capacity = self.options.segment_size - 4096;
        let bound = 3 * stats.live_bytes + u64::from(self.options.groups_count + 3) * self.options.segment_size;
        if stats.segments_used * capacity > bound {
            fail!("after quiescence {} segments are used for {} live bytes", stats.segments_used, stats.live_bytes);
        }
        if let Err(error) = store.close() {
            fail!("close on a perfect disk failed: {error}");
        }
        match logstor::verify(context.vfs_handle.as_ref(), &directory()) {
            Ok(report) if report.problem.is_none() && report.torn_segments == 0 => {}
            Ok(report) => fail!("verify after a close on a perfect disk: {report:?}"),
            Err(error) => fail!("verify failed on a perfect disk: {error}"),
        }
        let Some(store) = harness::open_and_check(self, context, false)? else {
            fail!("power failed on a perfect disk")
        };
        let sealed = store.recovery_report().torn_segments_sealed;
        if sealed > 0 {
            fail!("the open after a close sealed {sealed} torn segments");
        }
        Ok(())
    }

    /// The write path alone keeps the footprint bounded: on a perfect disk, many segments'
    /// worth of puts, deletes, syncs and mixed seals with no maintenance call, after which the
    /// data files must be no more than they were or within the bound of the live data below.
    fn write_path_phase(&mut self, context: &mut Context, store: &mut Logstor) -> Result<(), Failure> {
        context.trace(format_args!("phase write path"));
        let segments_at_start = store.stats().segments_total;
        let mut live_bytes_max = store.stats().live_bytes;
        let bytes_to_write = WRITE_PATH_SEGMENTS * self.options.segment_size;
        let mut bytes_written = 0;
        for _ in 0..WRITE_PATH_OPS_MAX {
            if bytes_written >= bytes_to_write {
                break;
            }
            let key = self.draw_key(context);
            let result = match context.rng.gen_range(0..100) {
                0..=89 => {
                    let value = self.draw_value(context);
                    bytes_written += (key.len() + value.len()) as u64;
                    let group = store.group_of(&key);
                    let result = store.put(&key, &value);
                    self.model.history(&key, group).versions.push((Some(value), group));
                    result
                }
                90..=97 => {
                    let present = self.model.keys.get(&key).is_some_and(|history| history.latest().is_some());
                    if present {
                        self.model.keys.get_mut(&key).expect("present").push(None);
                    }
                    store.delete(&key)
                }
                98 => store.sync(),
                _ => store.seal_mixed(),
            };
            if let Err(error) = result {
                fail!("a write on a perfect disk failed: {error}");
            }
            self.check_sealed(context, store)?;
            live_bytes_max = live_bytes_max.max(store.stats().live_bytes);
        }
        if let Err(error) = store.sync() {
            fail!("sync on a perfect disk failed: {error}");
        }
        self.model.sync_all();
        let stats = store.stats();
        let bound = self.write_path_bound(live_bytes_max);
        context.trace(format_args!(
            "write path: {} segments at the start, {} now, bound {bound} for {live_bytes_max} live bytes",
            segments_at_start, stats.segments_total
        ));
        if stats.segments_total > segments_at_start.max(bound) {
            fail!(
                "with no maintenance the store grew from {segments_at_start} to {} segments for at most \
                 {live_bytes_max} live bytes (bound {bound})",
                stats.segments_total
            );
        }
        Ok(())
    }

    /// Segments the store may span when only its write path reclaims. The store grows only when
    /// no segment is free, and the write path keeps a reserve free while it has work, so when it
    /// grows: the sealed group segments number less than 2 × live / (capacity − 2 blocks) + 1
    /// (no two of them fit in one, or compaction would merge them); every group and the mixed
    /// writer have a segment open; as many may wait, sealed part full, from a reopen; and a
    /// step in progress may hold the reserve. A growth adds a data file.
    fn write_path_bound(&self, live_bytes: u64) -> u64 {
        let options = &self.options;
        let capacity = options.segment_size - 4096;
        let groups = u64::from(options.groups_count);
        let sealed_max = 2 * live_bytes / (capacity - 2 * 4096) + 1;
        let reserve = groups + 2 * options.compaction_batch_max as u64;
        sealed_max + 2 * (groups + 1) + reserve + options.segments_per_file
    }
}
