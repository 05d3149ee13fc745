//! The tsdb oracle, after every open: what blocks and head recovered is exactly what a prefix
//! of the changes (commits, deletion pieces, blocks dropped) makes, in order (each change is
//! atomic, and what a crash loses is a suffix), less the ranges of blocks the open set aside
//! for damage the disk did to them: the samples a query returns, every head series' newest
//! sample, the head's newest time. The prefix holds every change a sync covered, unless the
//! disk damaged the WAL. No block is half made or visible beside a block made from it, and
//! none overlaps another (a sample counted twice). Every recovered head series has the ref the
//! appends returned for its labels, and a ref whose series went never comes back. The final
//! phase commits, compacts to quiescence, checkpoints, bounds the disk blocks and head use by
//! what they hold, and reopens on a perfect disk to find everything.

use std::collections::BTreeMap;
use std::path::Path;

use ballast::tsdb::{Durability, Labels, Tsdb, DAMAGED_SUFFIX};
use ballast::Error;

use super::model::{Change, State};
use super::{in_block, segment_of, Workload, DIRECTORY, HEAD_DIRECTORY, WAL_DIRECTORY};
use crate::fail;
use crate::faults::FaultKind;
use crate::harness::{self, Checked, Context, Failure, Opened, Step};

/// Samples per series: `(t, value bits)`, oldest first.
type BySeries = BTreeMap<Labels, Vec<(i64, u64)>>;

impl Workload {
    /// Checks what an open recovered against the model, and adopts it. Reading a chunk back
    /// may fail (an I/O error, or damage the disk did there): then open again, so that
    /// recovery finds the damage (a repairing open, for a block's).
    pub(super) fn check_open(
        &mut self,
        context: &mut Context,
        tsdb: &Tsdb,
        opened: &Opened<'_, ()>,
    ) -> Result<Checked, Failure> {
        self.repair_next = false;
        self.check_blocks(tsdb)?;
        let recovered = match tsdb.select(i64::MIN, i64::MAX, &[]) {
            Ok(recovered) => recovered,
            Err(error) => {
                self.read_failed(context, error)?;
                return Ok(Checked::Reopen);
            }
        };
        let in_head = match tsdb.head().select(i64::MIN, i64::MAX, &[]) {
            Ok(in_head) => in_head,
            Err(error) => {
                self.read_failed(context, error)?;
                return Ok(Checked::Reopen);
            }
        };
        for series in &in_head {
            self.check_ref(series.series, &series.labels)?;
        }
        let by_series: BTreeMap<Labels, Vec<(i64, u64)>> = recovered
            .iter()
            .map(|series| (series.labels.clone(), series.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect()))
            .collect();
        let lost = self.set_aside_ranges(tsdb, opened)?;
        let blocks: Vec<_> = tsdb.blocks().map(|meta| (meta.min_time, meta.max_time)).collect();
        context
            .trace(format_args!("recovered blocks {blocks:?} floor {:?} set aside {lost:?}", tsdb.head().min_time()));
        let owed = self.owed_commits(opened);
        let damaged = !opened.damage.is_empty();
        let (kept, adopted_blocks) = self.kept_commits(tsdb, &by_series, &lost, owed, damaged)?;
        self.adopt(context, tsdb, kept, &by_series, &lost, adopted_blocks);
        if opened.after_crash || !lost.is_empty() {
            self.model.all_synced();
        }
        self.retire_lost_refs(tsdb);
        let live: BTreeMap<_, _> = in_head.iter().map(|series| (series.series, series.labels.clone())).collect();
        self.model.refs.extend(live);
        self.observe(tsdb);
        context.trace(format_args!(
            "check recovered {kept} changes, {} series, {} lost blocks",
            recovered.len(),
            lost.len()
        ));
        Ok(Checked::Sound)
    }

    /// Cuts the model to the `kept` changes the open recovered, and takes what it found of
    /// the blocks set aside (`lost`) and, when damage let them run ahead of the WAL, of the
    /// blocks.
    fn adopt(
        &mut self,
        context: &mut Context,
        tsdb: &Tsdb,
        kept: usize,
        recovered: &BTreeMap<Labels, Vec<(i64, u64)>>,
        lost: &[(i64, i64)],
        adopted_blocks: Option<BySeries>,
    ) {
        let as_samples = |samples: BTreeMap<Labels, Vec<(i64, u64)>>| -> Vec<(Labels, i64, u64)> {
            let flat = samples
                .into_iter()
                .flat_map(|(labels, samples)| samples.into_iter().map(move |(t, bits)| (labels.clone(), t, bits)));
            flat.collect()
        };
        self.model.truncate(kept);
        let restored = within(recovered, lost);
        if !restored.is_empty() {
            context.note("set_aside_samples_in_head");
        }
        for &(min, max) in lost {
            self.model.push(Change::SetAside(min, max, as_samples(within(&restored, &[(min, max)]))));
        }
        if let Some(blocks) = adopted_blocks {
            // The blocks hold what a longer prefix made: the model takes them as they are.
            context.note("blocks_ahead_of_damaged_wal");
            self.model.blocks_adopted = true;
            let floor = tsdb.head().min_time().unwrap_or(i64::MIN);
            self.model.push(Change::DropBlock(i64::MIN, floor));
            self.model.push(Change::Commit(as_samples(blocks)));
        }
    }

    /// A recovered head series' ref names the labels it named before, and was not retired.
    fn check_ref(&self, series_ref: ballast::tsdb::SeriesRef, labels: &Labels) -> Result<(), Failure> {
        if self.model.refs.get(&series_ref).is_some_and(|known| known != labels) {
            fail!("ref {series_ref} names {labels} after recovery, {} before", self.model.refs[&series_ref]);
        }
        if let Some(retired) = self.model.retired.get(&series_ref) {
            fail!("ref {series_ref} of {retired}, lost in a crash, came back for {labels}");
        }
        let before = self.model.refs.iter().find(|(_, known)| *known == labels).map(|(&r, _)| r);
        if before.is_some_and(|before| before != series_ref) {
            fail!("series {labels} has ref {series_ref} after recovery, {before:?} before");
        }
        Ok(())
    }

    /// No block half made or half removed, none beside a block made from it, none overlapping
    /// another.
    fn check_blocks(&self, tsdb: &Tsdb) -> Result<(), Failure> {
        let blocks: Vec<_> = tsdb.blocks().collect();
        if let Some(pair) = blocks.windows(2).find(|pair| pair[0].max_time > pair[1].min_time) {
            fail!("blocks {} and {} overlap: samples counted twice", pair[0].ulid, pair[1].ulid);
        }
        let parents: Vec<_> = blocks.iter().flat_map(|meta| meta.parents.iter().map(|parent| parent.ulid)).collect();
        if let Some(both) = blocks.iter().find(|meta| parents.contains(&meta.ulid)) {
            fail!("block {} is visible beside the block made from it", both.ulid);
        }
        Ok(())
    }

    /// The ranges of the blocks set aside since the model last looked (by this open, or by an
    /// attempt of it that failed later): each must hold damage the disk did.
    fn set_aside_ranges(&mut self, tsdb: &Tsdb, opened: &Opened<'_, ()>) -> Result<Vec<(i64, i64)>, Failure> {
        let report = tsdb.recovery_report();
        let now = report.blocks_set_aside.iter().map(|(path, error)| (path.clone(), error.to_string()));
        let before = report.blocks_set_aside_before.iter().filter_map(|path| {
            let name = path.file_name()?.to_str()?.strip_suffix(DAMAGED_SUFFIX)?;
            Some((path.with_file_name(name), "set aside by an earlier attempt".to_string()))
        });
        let mut lost = Vec::new();
        for (path, why) in now.chain(before) {
            let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default().to_string();
            if !self.model.set_aside.insert(name.clone()) {
                continue;
            }
            if !opened.damage.iter().any(|damage| damage.path.starts_with(&path)) {
                fail!("block {} was set aside ({why}), but the disk did not damage it", path.display());
            }
            let Some(&range) = self.model.known_blocks.get(&name) else {
                fail!("block {} was set aside ({why}) before any open showed its range", path.display());
            };
            lost.push(range);
        }
        Ok(lost)
    }

    /// A read failed: an I/O error may pass; corruption only in a file the disk damaged (in a
    /// block's, the next open repairs). Anything else fails the seed.
    pub(super) fn read_failed(&mut self, context: &mut Context, error: Error) -> Result<Step, Failure> {
        match error {
            Error::Io { .. } => {
                context.note("read_retried");
                Ok(Step::Continue)
            }
            Error::Corruption { file, offset, .. } if context.vfs.damage().iter().any(|d| d.path == file) => {
                context.note("chunk_damage_detected");
                context.trace(format_args!("read met damage in {} at {offset}", file.display()));
                if in_block(&file) {
                    self.repair_next = true;
                    return Ok(Step::Reopen);
                }
                Ok(Step::Continue)
            }
            error => fail!("a query failed: {error}"),
        }
    }

    /// Refs whose series the head no longer holds (never logged by a durable commit, or left
    /// empty by a truncation) are retired: never to be issued again.
    pub(super) fn retire_lost_refs(&mut self, tsdb: &Tsdb) {
        let head = tsdb.head();
        let lost: Vec<_> = self.model.refs.keys().filter(|&&r| head.labels_of(r).is_none()).copied().collect();
        for series_ref in lost {
            let labels = self.model.refs.remove(&series_ref).expect("listed");
            self.model.retired.insert(series_ref, labels);
        }
    }

    /// How many commits, from the first, the open owes: every synced one, but damage the disk
    /// did to the WAL excuses the commits from the one whose record holds it on (a misdirected
    /// write, whose intended place is unknown, those from the first in its segment on).
    fn owed_commits(&self, opened: &Opened<'_, ()>) -> usize {
        let mut owed = self.model.synced_prefix();
        for damage in opened.damage {
            let Some(segment) = segment_of(&damage.path) else { continue };
            let before = |position: (u64, u64)| match damage.kind {
                FaultKind::MisdirectedWrite => position.0 < segment,
                _ => position < (segment, damage.offset),
            };
            // Commits whose record begins before the damage, less the one that may hold it.
            let starting_before =
                self.model.commits().iter().take_while(|commit| commit.position.is_some_and(before)).count();
            let holding = usize::from(damage.kind != FaultKind::MisdirectedWrite && starting_before > 0);
            owed = owed.min(starting_before - holding);
        }
        owed
    }

    /// How many changes, from the first, `recovered` holds: exactly what they make (the
    /// samples a query returns, each head series' newest sample, the head's newest time), and
    /// at least the `owed` ones; of prefixes that make the same, the longest. The head's part
    /// (samples at or above its floor) and the blocks' part are matched apart: when the disk
    /// damaged something, the blocks may hold what a prefix longer than the head's made
    /// (durable before the WAL lost it to the damage). Then the blocks' part is returned too,
    /// for the model to adopt as it is.
    fn kept_commits(
        &self,
        tsdb: &Tsdb,
        recovered: &BTreeMap<Labels, Vec<(i64, u64)>>,
        lost: &[(i64, i64)],
        owed: usize,
        damaged: bool,
    ) -> Result<(usize, Option<BySeries>), Failure> {
        let total: usize = recovered.values().map(Vec::len).sum();
        let head = tsdb.head();
        let (newest, floor, max_time) = (head.newest_times(), head.min_time(), head.max_time());
        let split = floor.unwrap_or(i64::MIN);
        let (head_part, block_part) = (filter_times(recovered, |t| t >= split), filter_times(recovered, |t| t < split));
        // The head's newest time counts only samples at or above its floor (and what its
        // checkpoint recorded): when every sample of the prefix is below it (blocks hold them
        // all), the head's is none or below the floor too, and need not be the prefix's.
        let newest_held = |state: &State| {
            let below = |newest: i64| newest < split;
            state.max_time == max_time || (state.max_time.is_some_and(below) && max_time.is_none_or(below))
        };
        let head_same = |state: &State| {
            newest_held(state)
                && region_matches(state, &head_part, lost, |t| t >= split)
                // Even with a block set aside, whose range the floor leaves out (seed 19695).
                && state.newest_times(floor) == newest
        };
        let blocks_same = |state: &State| region_matches(state, &block_part, lost, |t| t < split);
        let mut state = State::default();
        // The longest prefix both parts match; the longest the head's part matches; whether
        // any prefix makes the blocks' part.
        let (mut kept_both, mut kept_head, mut blocks_seen) = (None, None, false);
        let mut consider = |state: &State, index: usize| {
            let (head, blocks) = (head_same(state), blocks_same(state));
            blocks_seen |= blocks;
            if head {
                kept_head = Some(index);
                if blocks {
                    kept_both = Some(index);
                }
            }
        };
        consider(&state, 0);
        for (index, commit) in self.model.commits().iter().enumerate() {
            state.apply(&commit.change);
            consider(&state, index + 1);
        }
        let (kept, adopted_blocks) = match (kept_both, kept_head) {
            (Some(kept), _) => (kept, None),
            (None, Some(kept)) if damaged && blocks_seen => (kept, Some(block_part)),
            _ => {
                let mut owed_state = State::default();
                for commit in &self.model.commits()[..owed] {
                    owed_state.apply(&commit.change);
                }
                for &(min, max) in lost {
                    owed_state.apply(&Change::DropBlock(min, max));
                }
                fail!(
                    "recovered {total} samples, which no prefix of the changes makes (a change torn, or one never \
                     made); against the {owed} owed changes: {}",
                    first_difference(&owed_state.visible(), recovered)
                );
            }
        };
        if kept < owed {
            fail!(
                "lost synced data: {kept} changes recovered, {owed} were owed ({} synced)",
                self.model.synced_prefix()
            );
        }
        Ok((kept, adopted_blocks))
    }

    /// Liveness on a perfect disk: a commit to every series (the last one synced), compaction
    /// to quiescence and a checkpoint, after which blocks and head hold little more than their
    /// data, a close, and a reopen that finds everything.
    pub(super) fn final_work(&mut self, context: &mut Context, mut tsdb: Tsdb) -> Result<(), Failure> {
        let t = self.model.max_time().map_or(0, |max| max + 1);
        for index in 0..self.series_count {
            let labels = Self::labels_of(index);
            let later = self.model.newest(&labels).map_or(t, |(newest, _)| newest.max(t) + 1);
            let mut appender = tsdb.appender();
            if let Err(error) = appender.append(&labels, later, index as f64) {
                fail!("append on a perfect disk failed: {error}");
            }
            let durability = if index + 1 == self.series_count { Durability::Synced } else { Durability::Buffered };
            if let Err(error) = appender.commit(durability) {
                fail!("commit on a perfect disk failed: {error}");
            }
            self.model.push(Change::Commit(vec![(labels, later, (index as f64).to_bits())]));
            let position = tsdb.head().last_commit_position().map(|position| (position.segment, position.offset));
            self.model.last_mut().expect("pushed").position = position;
        }
        self.model.all_synced();
        self.compact_to_quiescence(context, &mut tsdb)?;
        if let Err(error) = tsdb.checkpoint() {
            fail!("checkpoint on a perfect disk failed: {error}");
        }
        self.retire_lost_refs(&tsdb);
        self.observe(&tsdb);
        self.check_disk_use(context, &tsdb)?;
        // Counted before the reopen, whose check cuts the model to what it recovered.
        let committed = self.model.state().visible_count;
        if let Err(error) = tsdb.close() {
            fail!("close on a perfect disk failed: {error}");
        }
        let Some(tsdb) = harness::open_and_check(self, context, false)? else {
            fail!("power failed on a perfect disk")
        };
        let found = match tsdb.select(i64::MIN, i64::MAX, &[]) {
            Ok(found) => found.iter().map(|series| series.samples.len()).sum::<usize>(),
            Err(error) => fail!("a query on a perfect disk failed: {error}"),
        };
        if found != committed {
            fail!("after a close on a perfect disk {found} samples were found, {committed} committed");
        }
        Ok(())
    }

    /// Compacts until compaction makes and removes nothing; what retention removes leaves the
    /// model too.
    fn compact_to_quiescence(&mut self, context: &mut Context, tsdb: &mut Tsdb) -> Result<(), Failure> {
        for _ in 0..1000 {
            let (made, removed) = match tsdb.compact() {
                Ok(done) => done,
                Err(error) => fail!("compaction on a perfect disk failed: {error}"),
            };
            for meta in &removed {
                self.model.push(Change::DropBlock(meta.min_time, meta.max_time));
            }
            self.model.all_synced();
            context.trace(format_args!("final compaction made {} removed {}", made.len(), removed.len()));
            if made.is_empty() && removed.is_empty() {
                return Ok(());
            }
        }
        fail!("compaction did not come to rest in 1000 rounds")
    }

    /// After compaction and a checkpoint: the blocks together hold no more samples than the
    /// model has below the floor (none counted twice), each block's files no more than its
    /// series, chunks and samples take, and the head's files its checkpoint, which holds no
    /// more than its series, stored samples and tombstones take, and a WAL of at most two
    /// segments (the one begun, and one file kept for reuse), the `refs` file and the lock.
    fn check_disk_use(&self, context: &Context, tsdb: &Tsdb) -> Result<(), Failure> {
        let state = self.model.state();
        let floor = self.model.floor.unwrap_or(i64::MIN);
        let below: u64 = state.series.values().flatten().filter(|stored| stored.0 < floor).count() as u64;
        let in_blocks: u64 = tsdb.blocks().map(|meta| meta.samples).sum();
        if in_blocks > below && !self.model.blocks_adopted {
            fail!("the blocks hold {in_blocks} samples, the model {below} below the floor {floor}: some counted twice");
        }
        let label_max = state.series.keys().map(|labels| labels.to_string().len() as u64).max().unwrap_or(0);
        for meta in tsdb.blocks() {
            let bound = 2048 + meta.series * (2 * label_max + 64) + meta.chunks * 48 + meta.samples * 20;
            let block = Path::new(DIRECTORY).join(meta.ulid.to_string());
            let used = files_bytes(context, &block) + files_bytes(context, &block.join("chunks"));
            if used > bound {
                fail!("block {} uses {used} bytes, more than {bound} for {} samples", meta.ulid, meta.samples);
            }
        }
        let stored: u64 = state.series.values().flatten().filter(|stored| stored.0 >= floor).count() as u64;
        let labels: u64 = state.series.keys().map(|labels| labels.to_string().len() as u64 + 64).sum();
        let deletions = self.model.commits().iter().filter(|commit| matches!(commit.change, Change::Delete(_))).count();
        let checkpoint_bound = 1024 + labels + 24 * stored + 24 * (deletions as u64) * self.series_count;
        let bound = checkpoint_bound + 2 * self.options.head.wal_segment_size + 4096;
        let used = files_bytes(context, Path::new(HEAD_DIRECTORY)) + files_bytes(context, Path::new(WAL_DIRECTORY));
        if used > bound {
            fail!("after a checkpoint the head uses {used} bytes, more than {bound} for {stored} samples");
        }
        Ok(())
    }
}

/// The bytes of the files directly in `directory`.
fn files_bytes(context: &Context, directory: &Path) -> u64 {
    let names = context.vfs.current_names(directory);
    names.iter().map(|name| context.vfs.current_length(&directory.join(name)).unwrap_or(0)).sum()
}

/// The first series whose samples differ between `expected` and `found`, for a failure.
fn first_difference(expected: &BTreeMap<Labels, Vec<(i64, u64)>>, found: &BTreeMap<Labels, Vec<(i64, u64)>>) -> String {
    let labels = expected.keys().chain(found.keys()).collect::<std::collections::BTreeSet<_>>();
    for labels in labels {
        let (want, got) = (expected.get(labels), found.get(labels));
        if want != got {
            let times =
                |samples: Option<&Vec<(i64, u64)>>| samples.map(|s| s.iter().map(|(t, _)| *t).collect::<Vec<_>>());
            return format!("{labels}: expected times {:?}, found {:?}", times(want), times(got));
        }
    }
    "none (the newest times differ)".to_string()
}

/// The samples of `samples` inside the ranges `lost` (half-open), per series that has any.
fn within(samples: &BTreeMap<Labels, Vec<(i64, u64)>>, lost: &[(i64, i64)]) -> BTreeMap<Labels, Vec<(i64, u64)>> {
    filter_times(samples, |t| lost.iter().any(|&(min, max)| (min..max).contains(&t)))
}

/// The samples of `samples` outside the ranges `lost`, per series that has any.
fn without(samples: &BTreeMap<Labels, Vec<(i64, u64)>>, lost: &[(i64, i64)]) -> BTreeMap<Labels, Vec<(i64, u64)>> {
    filter_times(samples, |t| !lost.iter().any(|&(min, max)| (min..max).contains(&t)))
}

fn filter_times(
    samples: &BTreeMap<Labels, Vec<(i64, u64)>>,
    keep: impl Fn(i64) -> bool,
) -> BTreeMap<Labels, Vec<(i64, u64)>> {
    samples
        .iter()
        .map(|(labels, samples)| {
            (labels.clone(), samples.iter().copied().filter(|&(t, _)| keep(t)).collect::<Vec<_>>())
        })
        .filter(|(_, samples)| !samples.is_empty())
        .collect()
}

/// Whether the part of `state` where `in_region` holds is `found`: exactly, outside the
/// ranges `lost`; inside them, `found` holds only samples `state` holds.
fn region_matches(
    state: &State,
    found: &BTreeMap<Labels, Vec<(i64, u64)>>,
    lost: &[(i64, i64)],
    in_region: impl Fn(i64) -> bool + Copy,
) -> bool {
    let visible = filter_times(&state.visible(), in_region);
    let inside_held = within(found, lost).iter().all(|(labels, samples)| {
        let held = visible.get(labels);
        held.is_some_and(|held| samples.iter().all(|sample| held.contains(sample)))
    });
    inside_held && without(&visible, lost) == without(found, lost)
}
