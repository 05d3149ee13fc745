//! The logstor target: puts, deletes, syncs, compaction steps, separator steps, group drops and
//! segment reuse, interleaved with crashes at every I/O point.
//!
//! The model keeps each key's version history and how much of it was synced. The oracle, after
//! every open: each key's value is one of its versions no older than its last synced one (never
//! an older one, never a value never written), and a key whose delete was synced stays deleted.
//! Where the disk damaged a data file, or a repair was reported, only "never a value never
//! written" is owed. The closed-segment check runs on every segment sealed since the last
//! operation, including those the write path seals while it reclaims space on its own. A put or
//! delete that fails on damage its reclaiming read must have written nothing and poisoned the
//! store. A clean reopen closes the store half the time and drops it otherwise.
//!
//! The fault-free final phase first (in one seed of ten) writes many segments' worth with no
//! maintenance call and checks that the write path alone kept the footprint within a bound of
//! the live data; then
//! it runs maintenance to quiescence and checks that the space used is bounded by the live
//! data; then it closes the store and requires `verify` to find no torn segment and no problem,
//! and the reopen to seal nothing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ballast::logstor::{self, format, Logstor, LogstorOptions};
use ballast::{Error, RecoveryMode};
use rand::Rng;

use crate::fail;
use crate::runner::{draw_faults, Canary, Context, Failure};

const DIRECTORY: &str = "/logstor";
const OPEN_ATTEMPTS_MAX: u32 = 12;
/// The write-path phase writes this many segments' worth of keys and values, in at most
/// `WRITE_PATH_OPS_MAX` operations (tiny values would take tens of thousands).
const WRITE_PATH_SEGMENTS: u64 = 40;
const WRITE_PATH_OPS_MAX: u32 = 5000;
/// One seed in this many runs the write-path phase.
const WRITE_PATH_SEEDS_ONE_IN: u32 = 10;

#[derive(Debug, Default)]
struct History {
    /// Versions in order, each with the group it was written in; `None` is absent (the start,
    /// or a delete).
    versions: Vec<(Option<Vec<u8>>, u32)>,
    /// Index into `versions` of the last synced one.
    synced: usize,
}

impl History {
    fn latest(&self) -> Option<&Vec<u8>> {
        self.versions.last().and_then(|(value, _)| value.as_ref())
    }

    /// The group of the newest version: where the store keeps the key now.
    fn group(&self) -> u32 {
        self.versions.last().map_or(0, |&(_, group)| group)
    }

    fn push(&mut self, value: Option<Vec<u8>>) {
        let group = self.group();
        self.versions.push((value, group));
    }
}

#[derive(Debug, Default)]
struct Model {
    keys: BTreeMap<Vec<u8>, History>,
    next_value: u64,
}

impl Model {
    fn history(&mut self, key: &[u8], group: u32) -> &mut History {
        self.keys.entry(key.to_vec()).or_insert_with(|| History { versions: vec![(None, group)], synced: 0 })
    }

    fn sync_all(&mut self) {
        for history in self.keys.values_mut() {
            history.synced = history.versions.len() - 1;
        }
    }
}

pub fn run(context: &mut Context) -> Result<String, (String, Failure)> {
    let segment_size = 4096 * context.rng.gen_range(4..=12u64);
    let mut options = LogstorOptions {
        segment_size,
        segments_per_file: context.rng.gen_range(2..=8),
        files_max: 64,
        write_buffer_size: 4096 * context.rng.gen_range(1..=3usize),
        groups_count: context.rng.gen_range(1..=4),
        compaction_batch_max: context.rng.gen_range(2..=4),
        recovery_mode: RecoveryMode::Strict,
        read_cache_size: 0,
    };
    let keys_count = context.rng.gen_range(4..=80u64);
    let value_length_max = context.rng.gen_range(8..=usize::try_from(segment_size / 4).expect("fits"));
    let mut faults = draw_faults(&mut context.rng, segment_size * options.segments_per_file);
    if context.canary == Some(Canary::LyingFsync) {
        faults.lying_fsync = true;
        faults.lost_unsynced = true;
        faults.spurious_durability = 0.0;
    }
    // Off, or small enough that eviction is constant.
    options.read_cache_size = [0, 4096, 4 * 4096, 64 * 4096][context.rng.gen_range(0..4)];
    let swarm = format!(
        "target=logstor seed={} ops={} segment_size={segment_size} segments_per_file={} write_buffer={} groups={} \
         compaction_batch_max={} read_cache={} keys={keys_count} value_length_max={value_length_max} faults: {faults}",
        context.seed,
        context.ops_budget,
        options.segments_per_file,
        options.write_buffer_size,
        options.groups_count,
        options.compaction_batch_max,
        options.read_cache_size,
    );
    context.trace(format_args!("swarm {swarm}"));
    context.vfs.set_config(faults);
    let mut workload = Workload { options, keys_count, value_length_max, model: Model::default() };
    match workload.run(context) {
        Ok(()) => Ok(swarm),
        Err(failure) => Err((swarm, failure)),
    }
}

struct Workload {
    options: LogstorOptions,
    keys_count: u64,
    value_length_max: usize,
    model: Model,
}

enum Step {
    Continue,
    Poisoned,
    Reopen,
}

/// How a life of the store ended.
enum End {
    /// Power failed, or the life chose to cut it.
    Crash,
    /// Dropped without `close`: like a process that exits, everything synced stays.
    Drop,
    /// Closed with `close`.
    Close,
}

fn directory() -> PathBuf {
    PathBuf::from(DIRECTORY)
}

impl Workload {
    fn run(&mut self, context: &mut Context) -> Result<(), Failure> {
        let mut after_crash = false;
        let mut failed_opens = 0;
        while context.ops < context.ops_budget {
            let Some(mut store) = self.open_and_check(context, after_crash)? else {
                failed_opens += 1;
                if failed_opens > OPEN_ATTEMPTS_MAX {
                    fail!("the store could not be reopened {OPEN_ATTEMPTS_MAX} times in a row");
                }
                after_crash = true;
                continue;
            };
            failed_opens = 0;
            let crash = match self.life(context, &mut store)? {
                End::Crash => true,
                End::Drop => false,
                End::Close => self.close(context, store)?,
            };
            after_crash = crash;
            if crash {
                self.crash(context);
            }
        }
        self.final_phase(context)
    }

    /// Cuts power, then rots data files anywhere: damage the format cannot see (in free or
    /// stale space) changes nothing, and damage it can see must never be returned as data.
    fn crash(&mut self, context: &mut Context) {
        context.trace(format_args!("op crash"));
        context.crashes += 1;
        context.vfs.crash();
        let eligible: Vec<(PathBuf, std::ops::Range<u64>)> = context
            .vfs
            .current_names(&directory())
            .into_iter()
            .filter(|name| format::parse_data_file_name(name).is_some())
            .map(|name| (directory().join(name), 0..u64::MAX))
            .collect();
        context.vfs.rot(&eligible);
    }

    fn open_and_check(&mut self, context: &mut Context, after_crash: bool) -> Result<Option<Logstor>, Failure> {
        context.arm_crash_in_recovery(after_crash, 8);
        let damaged = !context.vfs.damage().is_empty();
        let mut mode = RecoveryMode::Strict;
        for attempt in 0..OPEN_ATTEMPTS_MAX {
            if attempt >= OPEN_ATTEMPTS_MAX / 2 {
                context.ease_io_errors();
            }
            let options = LogstorOptions { recovery_mode: mode, ..self.options.clone() };
            context.trace(format_args!("op open {mode:?}"));
            match Logstor::open(context.vfs_handle.clone(), DIRECTORY, options) {
                Ok(store) => {
                    if context.vfs.is_powered_off() {
                        fail!("open returned Ok although power failed during it");
                    }
                    context.vfs.disarm_crash();
                    if !self.check_recovered(context, &store, damaged, after_crash)? {
                        // Damage met while reading back: open again, to report or repair it.
                        return Ok(None);
                    }
                    return Ok(Some(store));
                }
                Err(_) if context.vfs.is_powered_off() => {
                    context.note("crash_during_recovery");
                    self.crash(context);
                    return Ok(None);
                }
                Err(error @ Error::Io { .. }) => context.open_failed(&error, 2 * self.options.segment_size),
                Err(Error::Corruption { file, offset, reason, .. }) if mode == RecoveryMode::Strict => {
                    if !context.vfs.damage().iter().any(|damage| damage.path == file) {
                        fail!(
                            "strict open reported corruption in {} at {offset} ({reason}) with no damage there",
                            file.display()
                        );
                    }
                    context.note("corruption_reported");
                    mode = RecoveryMode::Repair;
                }
                Err(Error::Corruption { file, .. })
                    if context.vfs.damage().iter().any(|damage| damage.path == file) =>
                {
                    // The repair's own writes met the failing disk; open again.
                    context.note("repair_retried");
                }
                Err(error) => fail!("open ({mode:?}) failed: {error}"),
            }
        }
        fail!("open failed {OPEN_ATTEMPTS_MAX} times in a row")
    }

    /// Checks the recovered store against the model; `false` when reading it back met damage
    /// the disk caused, so the open must be repeated.
    fn check_recovered(
        &mut self,
        context: &mut Context,
        store: &Logstor,
        damaged: bool,
        after_crash: bool,
    ) -> Result<bool, Failure> {
        let report = store.recovery_report().clone();
        if report.torn_segments_sealed > 0 {
            context.note("torn_segment_sealed");
        }
        if report.frees_finished > 0 {
            context.note("free_finished");
        }
        if let Some(repair) = &report.repair {
            context.note(if repair.resumed { "repair_resumed" } else { "repair" });
        }
        // Damage done during the open counts too: recovery's own writes can be misdirected.
        let lenient = damaged || report.repair.is_some() || !context.vfs.damage().is_empty();
        let mut recovered = BTreeMap::new();
        for _ in 0..OPEN_ATTEMPTS_MAX {
            match store.scan().collect::<Result<BTreeMap<_, _>, _>>() {
                Ok(found) => {
                    recovered = found;
                    break;
                }
                Err(Error::Io { .. }) => context.note("read_retried"),
                Err(Error::Corruption { .. }) if !context.vfs.damage().is_empty() => {
                    // A write the disk misdirected (recovery's own, even) damaged what the index
                    // points to; nothing is returned as data, and the next open reports it.
                    context.note("scan_met_damage");
                    return Ok(false);
                }
                Err(error) => fail!("open succeeded but scanning failed: {error}"),
            }
        }
        for key in recovered.keys() {
            if !self.model.keys.contains_key(key) {
                fail!("recovered key {:?} that was never written", String::from_utf8_lossy(key));
            }
        }
        for (key, history) in &mut self.model.keys {
            let found = recovered.get(key);
            // The newest version this state can be, searching from the last synced one; with
            // damage, any version at all.
            let floor = if lenient { 0 } else { history.synced };
            let Some(index) =
                (floor..history.versions.len()).rev().find(|&index| history.versions[index].0.as_ref() == found)
            else {
                let what = found.map_or("absent".to_string(), |value| format!("{} bytes", value.len()));
                if history.versions.iter().any(|(version, _)| version.as_ref() == found) {
                    fail!(
                        "lost synced data: key {:?} recovered an old version ({what}) below its last synced one",
                        String::from_utf8_lossy(key)
                    );
                }
                fail!("key {:?} recovered a value that was never written ({what})", String::from_utf8_lossy(key));
            };
            history.versions.truncate(index + 1);
            history.synced = if after_crash { index } else { history.synced.min(index) };
        }
        context.trace(format_args!("check recovered {} keys (lenient {lenient})", recovered.len()));
        Ok(true)
    }

    fn life(&mut self, context: &mut Context, store: &mut Logstor) -> Result<End, Failure> {
        let plan = context.plan_life(12);
        for step in 0..plan.length {
            if context.ops >= context.ops_budget {
                return Ok(End::Crash);
            }
            context.arm_planned_crash(&plan, step);
            context.ops += 1;
            let outcome = self.step(context, store)?;
            if context.vfs.is_powered_off() {
                return Ok(End::Crash);
            }
            self.check_sealed(context, store)?;
            match outcome {
                Step::Continue => {}
                Step::Poisoned => {
                    context.expect_poisoned(store.sync(), "store")?;
                    return Ok(if context.rng.gen_bool(0.5) { End::Crash } else { End::Drop });
                }
                Step::Reopen => return Ok(if context.rng.gen_bool(0.5) { End::Close } else { End::Drop }),
            }
        }
        Ok(End::Crash)
    }

    /// Closes the store; whether the reopen comes after a crash. A close that returns makes
    /// every write durable; one that fails leaves the store as a failed sync does.
    fn close(&mut self, context: &mut Context, store: Logstor) -> Result<bool, Failure> {
        context.trace(format_args!("op close"));
        let result = store.close();
        if context.vfs.is_powered_off() {
            return Ok(true);
        }
        match result {
            Ok(()) => {
                self.model.sync_all();
                context.note("closed");
                Ok(false)
            }
            Err(Error::Io { .. }) => Ok(context.rng.gen_bool(0.5)),
            Err(error) => fail!("close failed: {error}"),
        }
    }

    /// Whether the disk damaged segment `segment` (it may then read back as anything).
    fn segment_damaged(&self, context: &Context, segment: u64) -> bool {
        let per_file = self.options.segments_per_file;
        let file = directory().join(format::data_file_name(segment / per_file));
        let start = (segment % per_file) * self.options.segment_size;
        context.vfs.damage().iter().any(|damage| {
            damage.path == file
                && damage.offset < start + self.options.segment_size
                && damage.offset + damage.length > start
        })
    }

    /// The closed-segment check, at every seal.
    fn check_sealed(&self, context: &mut Context, store: &mut Logstor) -> Result<(), Failure> {
        let sealed = store.take_sealed();
        if store.is_poisoned() {
            // A step failed part way; the handle's view is no longer the disk's. Reopening
            // re-verifies everything.
            return Ok(());
        }
        for segment in sealed {
            if self.segment_damaged(context, segment) {
                context.note("seal_check_skipped_damaged");
                continue;
            }
            match store.check_segment_indexed(segment) {
                Ok(violations) if violations.is_empty() => context.note("sealed_segment_checked"),
                Ok(violations) => fail!("sealed segment {segment} is not fully indexed: {}", violations.join("; ")),
                Err(Error::Io { .. }) => {}
                Err(error) if !context.vfs.damage().is_empty() => {
                    context.trace(format_args!("seal check skipped: {error}"))
                }
                Err(error) => fail!("reading sealed segment {segment} failed: {error}"),
            }
        }
        Ok(())
    }

    fn draw_key(&self, context: &mut Context) -> Vec<u8> {
        format!("k{:04}", context.rng.gen_range(0..self.keys_count)).into_bytes()
    }

    fn draw_value(&mut self, context: &mut Context) -> Vec<u8> {
        let length = context.rng.gen_range(8..=self.value_length_max);
        let mut value = vec![0u8; length];
        context.rng.fill(&mut value[..]);
        value[..8].copy_from_slice(&self.model.next_value.to_le_bytes());
        self.model.next_value += 1;
        value
    }

    fn on_error(result: Result<(), Error>, what: &str) -> Result<Step, Failure> {
        match result {
            Ok(()) => Ok(Step::Continue),
            Err(Error::Io { .. }) => Ok(Step::Poisoned),
            Err(error) => fail!("{what} failed: {error}"),
        }
    }

    /// A put or delete may reclaim space first, and reading a segment for that may meet damage
    /// the disk did: the write then wrote nothing, and the store is poisoned.
    fn on_write_error(
        context: &mut Context,
        store: &Logstor,
        result: Result<(), Error>,
        what: &str,
    ) -> Result<Step, Failure> {
        match result {
            Err(Error::Corruption { file, offset, reason, .. }) => {
                if !context.vfs.damage().iter().any(|damage| damage.path == file) {
                    fail!(
                        "{what} reported corruption in {} at {offset} ({reason}) with no damage there",
                        file.display()
                    );
                }
                if !store.is_poisoned() {
                    fail!("{what} reported corruption its reclaiming met but did not poison the store");
                }
                context.note("write_reclaim_met_damage");
                Ok(Step::Poisoned)
            }
            result => Self::on_error(result, what),
        }
    }

    fn step(&mut self, context: &mut Context, store: &mut Logstor) -> Result<Step, Failure> {
        match context.rng.gen_range(0..100) {
            0..=39 => {
                let key = self.draw_key(context);
                let value = self.draw_value(context);
                let chosen = context.rng.gen_bool(0.15).then(|| context.rng.gen_range(0..self.options.groups_count));
                let group = chosen.unwrap_or_else(|| store.group_of(&key));
                context.trace(format_args!("op put {} in group {group}", String::from_utf8_lossy(&key)));
                let result = store.put_in_group(group, &key, &value);
                // A put that failed on corruption wrote nothing: its version must never appear.
                if matches!(result, Ok(()) | Err(Error::Io { .. })) {
                    self.model.history(&key, group).versions.push((Some(value), group));
                }
                Self::on_write_error(context, store, result, "put")
            }
            40..=51 => {
                let key = self.draw_key(context);
                context.trace(format_args!("op delete {}", String::from_utf8_lossy(&key)));
                let present = self.model.keys.get(&key).is_some_and(|history| history.latest().is_some());
                let result = store.delete(&key);
                if present && matches!(result, Ok(()) | Err(Error::Io { .. })) {
                    self.model.keys.get_mut(&key).expect("present").push(None);
                }
                Self::on_write_error(context, store, result, "delete")
            }
            52..=61 => {
                let key = self.draw_key(context);
                let expected = self.model.keys.get(&key).and_then(History::latest).cloned();
                match store.get(&key) {
                    Ok(found) if found == expected => Ok(Step::Continue),
                    Ok(found) => fail!(
                        "get({}) returned {:?} bytes, the last write was {:?} bytes",
                        String::from_utf8_lossy(&key),
                        found.map(|value| value.len()),
                        expected.map(|value| value.len())
                    ),
                    Err(Error::Io { .. }) => Ok(Step::Continue),
                    Err(Error::Corruption { .. }) if !context.vfs.damage().is_empty() => {
                        context.note("misdirected_write_detected");
                        Ok(Step::Continue)
                    }
                    Err(error) => fail!("get failed: {error}"),
                }
            }
            62..=71 => {
                context.trace(format_args!("op sync"));
                let result = store.sync();
                if result.is_ok() {
                    self.model.sync_all();
                }
                Self::on_error(result, "sync")
            }
            72..=79 => {
                context.trace(format_args!("op compact step"));
                match store.compact_step() {
                    Ok(report) => {
                        if report.segments_freed > 0 {
                            context.note("compaction_freed");
                        }
                        if report.tombstones_dropped > 0 {
                            context.note("tombstone_dropped");
                        }
                        Ok(Step::Continue)
                    }
                    Err(error) => Self::maintenance_error(context, store, error),
                }
            }
            80..=88 => {
                context.trace(format_args!("op separator step"));
                match store.separator_step() {
                    Ok(report) => {
                        if report.segments_freed > 0 {
                            context.note("separator_freed");
                        }
                        Ok(Step::Continue)
                    }
                    Err(error) => Self::maintenance_error(context, store, error),
                }
            }
            89..=92 => {
                context.trace(format_args!("op seal mixed"));
                Self::on_error(store.seal_mixed(), "seal_mixed")
            }
            93..=94 => {
                let group = context.rng.gen_range(0..self.options.groups_count);
                context.trace(format_args!("op drop group {group}"));
                let dropped: Vec<Vec<u8>> = self
                    .model
                    .keys
                    .iter()
                    .filter(|(_, history)| history.group() == group && history.latest().is_some())
                    .map(|(key, _)| key.clone())
                    .collect();
                match store.drop_group(group) {
                    Ok(_) => {
                        for key in dropped {
                            self.model.keys.get_mut(&key).expect("listed").push(None);
                        }
                        self.model.sync_all();
                        context.note("group_dropped");
                        Ok(Step::Continue)
                    }
                    Err(error) => {
                        // Some tombstones may have been written: each dropped key may be either.
                        for key in dropped {
                            self.model.keys.get_mut(&key).expect("listed").push(None);
                        }
                        Self::maintenance_error(context, store, error)
                    }
                }
            }
            95..=97 => {
                context.trace(format_args!("op scan"));
                let expected: BTreeMap<Vec<u8>, Vec<u8>> = self
                    .model
                    .keys
                    .iter()
                    .filter_map(|(key, history)| history.latest().map(|value| (key.clone(), value.clone())))
                    .collect();
                match store.scan().collect::<Result<BTreeMap<_, _>, _>>() {
                    Ok(found) if found == expected => Ok(Step::Continue),
                    Ok(found) => {
                        let differing: Vec<String> = found
                            .keys()
                            .chain(expected.keys())
                            .filter(|key| found.get(*key) != expected.get(*key))
                            .map(|key| String::from_utf8_lossy(key).into_owned())
                            .collect();
                        fail!(
                            "scan returned {} keys, the model holds {}; differing: {differing:?}",
                            found.len(),
                            expected.len()
                        )
                    }
                    Err(Error::Io { .. }) => Ok(Step::Continue),
                    Err(Error::Corruption { .. }) if !context.vfs.damage().is_empty() => Ok(Step::Continue),
                    Err(error) => fail!("scan failed: {error}"),
                }
            }
            _ => {
                context.trace(format_args!("op clean reopen"));
                Ok(Step::Reopen)
            }
        }
    }

    fn maintenance_error(context: &mut Context, store: &Logstor, error: Error) -> Result<Step, Failure> {
        match error {
            // A read that failed before the step changed anything leaves the store usable.
            Error::Io { .. } if !store.is_poisoned() => Ok(Step::Continue),
            Error::Io { .. } => Ok(Step::Poisoned),
            // Damage found while reading, before the step changed anything: reopen, and let
            // recovery report or repair it.
            Error::Corruption { .. } if !context.vfs.damage().is_empty() => {
                context.note("corruption_reported");
                Ok(if store.is_poisoned() { Step::Poisoned } else { Step::Reopen })
            }
            error => fail!("maintenance failed: {error}"),
        }
    }

    /// Liveness on a perfect disk: reopen, write, run maintenance to quiescence, check every
    /// sealed segment and that the space used is bounded by the live data.
    fn final_phase(&mut self, context: &mut Context) -> Result<(), Failure> {
        context.vfs.set_faults_enabled(false);
        context.trace(format_args!("phase final"));
        let mut store = loop {
            if let Some(store) = self.open_and_check(context, true)? {
                break store;
            }
        };
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
        let Some(store) = self.open_and_check(context, false)? else { fail!("power failed on a perfect disk") };
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
