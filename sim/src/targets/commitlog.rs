//! The commitlog target: a small model datastore (a map from key to value whose transactions
//! are batches of puts and deletes) commits batches with contiguous offsets, flushes, syncs,
//! rotates, snapshots, resets and changes epochs, through crashes at every kind of I/O point.
//!
//! The oracle, after every open: the recovered transactions are contiguous and a prefix of what
//! was committed, byte for byte; every recovered commit is exactly a commit that was made (never
//! part of one) with its epoch; every synced transaction is there unless the disk damaged the
//! segment holding it (damage by rot in a sealed segment must be reported); and restoring from
//! the latest valid snapshot plus replay gives exactly the model's state at the recovered end.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ballast::commitlog::{format, Commitlog, CommitlogOptions, Retention, SnapshotSource};
use ballast::{Error, RecoveryMode};
use rand::Rng;

use crate::fail;
use crate::faults::FaultKind;
use crate::runner::{draw_faults, Canary, Context, Failure};

const DIRECTORY: &str = "/commitlog";
const OPEN_ATTEMPTS_MAX: u32 = 12;

type State = BTreeMap<u8, u32>;

fn apply(state: &mut State, transaction: &[u8]) {
    let mut at = 0;
    while at < transaction.len() {
        match transaction[at] {
            0 => {
                let value = u32::from_le_bytes(transaction[at + 2..at + 6].try_into().expect("4 bytes"));
                state.insert(transaction[at + 1], value);
                at += 6;
            }
            _ => {
                state.remove(&transaction[at + 1]);
                at += 2;
            }
        }
    }
}

fn encode_state(state: &State) -> Vec<u8> {
    state.iter().flat_map(|(key, value)| std::iter::once(*key).chain(value.to_le_bytes())).collect()
}

fn decode_state(bytes: &[u8]) -> Option<State> {
    bytes.len().is_multiple_of(5).then(|| {
        bytes.chunks(5).map(|chunk| (chunk[0], u32::from_le_bytes(chunk[1..5].try_into().expect("4")))).collect()
    })
}

#[derive(Debug, Clone)]
struct ModelCommit {
    first_offset: u64,
    count: u64,
    epoch: u64,
}

#[derive(Debug, Default)]
struct Model {
    /// Every transaction ever committed and still in the history, at index = offset.
    transactions: Vec<Vec<u8>>,
    commits: Vec<ModelCommit>,
    /// Transactions acknowledged durable: offsets below this must survive.
    synced: u64,
    /// Offsets at or above this may vanish without damage: a reset that did not return.
    reset_floor: Option<u64>,
    epoch: u64,
}

impl Model {
    fn state_at(&self, end: u64) -> State {
        let mut state = State::new();
        for transaction in &self.transactions[..usize::try_from(end).expect("fits")] {
            apply(&mut state, transaction);
        }
        state
    }

    fn truncate(&mut self, end: u64) {
        self.transactions.truncate(usize::try_from(end).expect("fits"));
        self.commits.retain(|commit| commit.first_offset + commit.count <= end);
        self.synced = self.synced.min(end);
    }
}

/// The datastore's snapshot source: the model's state at the log's end.
struct ModelSource<'a>(&'a Model);

impl SnapshotSource for ModelSource<'_> {
    fn snapshot(&mut self, offset: u64) -> Vec<u8> {
        encode_state(&self.0.state_at(offset + 1))
    }
}

fn directory() -> PathBuf {
    PathBuf::from(DIRECTORY)
}

fn segment_of(path: &Path) -> Option<u64> {
    if path.parent() != Some(Path::new(DIRECTORY)) {
        return None;
    }
    match format::parse_file_name(path.file_name()?.to_str()?)? {
        format::FileName::Segment(offset) => Some(offset),
        _ => None,
    }
}

fn files(context: &Context) -> (Vec<u64>, Vec<u64>) {
    let mut segments = Vec::new();
    let mut snapshots = Vec::new();
    for name in context.vfs.current_names(&directory()) {
        match format::parse_file_name(&name) {
            Some(format::FileName::Segment(offset)) => segments.push(offset),
            Some(format::FileName::Snapshot(offset)) => snapshots.push(offset),
            _ => {}
        }
    }
    (segments, snapshots)
}

pub fn run(context: &mut Context) -> Result<String, (String, Failure)> {
    let options = CommitlogOptions {
        segment_size_max: context.rng.gen_range(256..=4096),
        index_interval_bytes: context.rng.gen_range(64..=1024),
        write_buffer_size: context.rng.gen_range(64..=2048),
        snapshot_interval_transactions: context.rng.gen_range(5..=60),
        snapshots_kept: context.rng.gen_range(1..=3),
        retention: if context.rng.gen_bool(0.5) { Retention::KeepAll } else { Retention::RemoveBelowOldestSnapshot },
        recovery_mode: RecoveryMode::Strict,
    };
    let batch_max = context.rng.gen_range(1..=8u64);
    let mut faults = draw_faults(&mut context.rng, options.segment_size_max);
    if context.canary == Some(Canary::LyingFsync) {
        faults.lying_fsync = true;
        faults.lost_unsynced = true;
        faults.spurious_durability = 0.0;
    }
    let swarm = format!(
        "target=commitlog seed={} ops={} segment_size_max={} index_interval={} write_buffer={} snapshot_interval={} \
         snapshots_kept={} retention={:?} batch_max={batch_max} faults: {faults}",
        context.seed,
        context.ops_budget,
        options.segment_size_max,
        options.index_interval_bytes,
        options.write_buffer_size,
        options.snapshot_interval_transactions,
        options.snapshots_kept,
        options.retention,
    );
    context.trace(format_args!("swarm {swarm}"));
    context.vfs.set_config(faults);
    let mut workload = Workload { options, batch_max, model: Model::default() };
    match workload.run(context) {
        Ok(()) => Ok(swarm),
        Err(failure) => Err((swarm, failure)),
    }
}

struct Workload {
    options: CommitlogOptions,
    batch_max: u64,
    model: Model,
}

enum Step {
    Continue,
    Poisoned,
    Reopen,
}

impl Workload {
    fn run(&mut self, context: &mut Context) -> Result<(), Failure> {
        let mut after_crash = false;
        while context.ops < context.ops_budget {
            let Some(mut log) = self.open_and_check(context, after_crash)? else {
                after_crash = true;
                continue;
            };
            let crash = self.life(context, &mut log)?;
            drop(log);
            after_crash = crash;
            if crash {
                self.crash(context);
            }
        }
        self.final_phase(context)
    }

    /// Cuts power, then rots what the oracle can hold the engine to: sealed segments (damage
    /// there must be reported), index files (rebuilt from their segments), and snapshots that
    /// restoring can do without (with retention on, never the oldest kept one).
    fn crash(&mut self, context: &mut Context) {
        context.trace(format_args!("op crash"));
        context.crashes += 1;
        context.vfs.crash();
        let (segments, snapshots) = files(context);
        let mut eligible: Vec<(PathBuf, std::ops::Range<u64>)> = Vec::new();
        if let Some((_, sealed)) = segments.split_last() {
            for &segment in sealed {
                eligible.push((directory().join(format::segment_file_name(segment)), 0..u64::MAX));
                eligible.push((directory().join(format::index_file_name(segment)), 0..u64::MAX));
            }
        }
        // Once the log no longer starts at 0 (retention, or a restart after a snapshot), the
        // oldest snapshot reaching its start is the only record of what came before: a single
        // copy, which no engine can keep through rot.
        let log_start = segments.first().copied().unwrap_or(0);
        let essential =
            (log_start > 0).then(|| snapshots.iter().copied().find(|&offset| offset + 1 >= log_start)).flatten();
        for &offset in snapshots.iter().filter(|&&offset| Some(offset) != essential) {
            eligible.push((directory().join(format::snapshot_file_name(offset)), 0..u64::MAX));
        }
        context.vfs.rot(&eligible);
    }

    fn open_and_check(&mut self, context: &mut Context, after_crash: bool) -> Result<Option<Commitlog>, Failure> {
        context.arm_crash_in_recovery(after_crash, 8);
        let damage: Vec<(u64, FaultKind)> = context
            .vfs
            .damage()
            .into_iter()
            .filter_map(|damage| Some((segment_of(&damage.path)?, damage.kind)))
            .collect();
        let last_on_disk = files(context).0.last().copied();
        let mut mode = RecoveryMode::Strict;
        for _ in 0..OPEN_ATTEMPTS_MAX {
            let options = CommitlogOptions { recovery_mode: mode, ..self.options.clone() };
            context.trace(format_args!("op open {mode:?}"));
            match Commitlog::open(context.vfs_handle.clone(), DIRECTORY, options) {
                Ok(log) => {
                    if context.vfs.is_powered_off() {
                        fail!("open returned Ok although power failed during it");
                    }
                    context.vfs.disarm_crash();
                    self.check_recovered(context, &log, mode, &damage, last_on_disk, after_crash)?;
                    return Ok(Some(log));
                }
                Err(_) if context.vfs.is_powered_off() => {
                    context.note("crash_during_recovery");
                    self.crash(context);
                    return Ok(None);
                }
                Err(error @ Error::Io { .. }) => context.open_failed(&error, 2 * self.options.segment_size_max),
                Err(Error::Corruption { segment, offset, reason, file }) if mode == RecoveryMode::Strict => {
                    if !damage.iter().any(|&(damaged, _)| damaged == segment) {
                        fail!(
                            "strict open reported corruption in {} at offset {offset} ({reason}), but the disk \
                             damaged nothing there (damage: {damage:?})",
                            file.display()
                        );
                    }
                    context.note("corruption_reported");
                    mode = RecoveryMode::Repair;
                }
                Err(error) => fail!("open ({mode:?}) failed: {error}"),
            }
        }
        fail!("open failed {OPEN_ATTEMPTS_MAX} times in a row")
    }

    fn check_recovered(
        &mut self,
        context: &mut Context,
        log: &Commitlog,
        mode: RecoveryMode,
        damage: &[(u64, FaultKind)],
        last_on_disk: Option<u64>,
        after_crash: bool,
    ) -> Result<(), Failure> {
        let report = log.recovery_report().clone();
        for (happened, path) in [
            (report.torn_tail.is_some(), "torn_tail_truncated"),
            (report.temp_files_removed > 0, "temp_files_removed"),
            (report.indexes_rebuilt > 0, "index_rebuilt"),
            (report.snapshots_removed > 0, "snapshot_removed"),
        ] {
            if happened {
                context.note(path);
            }
        }
        match (&report.repair, mode) {
            (Some(repair), RecoveryMode::Strict) if !repair.resumed => fail!("strict open repaired: {repair:?}"),
            (Some(repair), _) if repair.resumed => context.note("repair_resumed"),
            (Some(_), _) => context.note("repair"),
            (None, _) => {}
        }
        let next = log.next_offset();
        let start = log.min_committed_offset().unwrap_or(next);
        let mut commits = Vec::new();
        for _ in 0..OPEN_ATTEMPTS_MAX {
            match log.commits_from(start).collect::<Result<Vec<_>, _>>() {
                Ok(found) => {
                    commits = found;
                    break;
                }
                Err(Error::Io { .. }) => context.note("read_retried"),
                Err(error) => fail!("open succeeded but reading the log back failed: {error}"),
            }
        }
        let recovered: u64 = commits.iter().map(|commit| commit.transactions.len() as u64).sum();
        if start + recovered != next {
            fail!("read back offsets {start}..{} but the log's next offset is {next}", start + recovered);
        }
        if next > self.model.transactions.len() as u64 {
            fail!("recovered offsets up to {next}, only {} were committed", self.model.transactions.len());
        }
        let mut offset = start;
        for commit in &commits {
            if commit.first_offset != offset {
                fail!("commit at {} where {offset} was expected", commit.first_offset);
            }
            let Some(expected) = self.model.commits.iter().find(|made| made.first_offset == commit.first_offset) else {
                fail!("a commit at {} was never made", commit.first_offset);
            };
            if expected.count != commit.transactions.len() as u64 || expected.epoch != commit.epoch {
                fail!(
                    "commit at {} holds {} transactions at epoch {}, was made with {} at epoch {}",
                    commit.first_offset,
                    commit.transactions.len(),
                    commit.epoch,
                    expected.count,
                    expected.epoch
                );
            }
            for transaction in &commit.transactions {
                if *transaction != self.model.transactions[usize::try_from(offset).expect("fits")] {
                    fail!("transaction {offset} differs from what was committed");
                }
                offset += 1;
            }
        }
        // Owed: every synced transaction, unless the disk damaged its segment or a reset that
        // did not return was removing it.
        let mut owed = self.model.synced;
        if let Some(floor) = self.model.reset_floor {
            owed = owed.min(floor);
        }
        for &(segment, kind) in damage {
            owed = owed.min(segment);
            let sealed = last_on_disk.is_some_and(|last| segment < last);
            if sealed && mode == RecoveryMode::Strict && kind != FaultKind::MisdirectedWrite {
                fail!("{kind} in sealed segment {segment} was not reported by a strict open");
            }
        }
        if next < owed {
            fail!("lost synced data: recovered up to offset {next}, {} were synced (owed {owed})", self.model.synced);
        }
        if next < self.model.synced && report.repair.is_none() && mode == RecoveryMode::Repair {
            fail!("repair dropped synced transactions without reporting it");
        }
        // Restore: the latest valid snapshot plus replay must give the model's state.
        let snapshot = match log.latest_snapshot() {
            Ok(snapshot) => snapshot,
            Err(Error::Io { .. }) => return Ok(()),
            Err(error) => fail!("latest_snapshot failed: {error}"),
        };
        if snapshot.as_ref().is_some_and(|snapshot| snapshot.skipped_damaged > 0) {
            context.note("damaged_snapshot_skipped");
        }
        let (mut state, replay_from) = match &snapshot {
            Some(snapshot) => {
                let Some(state) = decode_state(&snapshot.data) else {
                    fail!("snapshot at {} does not decode", snapshot.offset)
                };
                if state != self.model.state_at(snapshot.offset + 1) {
                    fail!("snapshot at {} does not hold the state at that offset", snapshot.offset);
                }
                (state, snapshot.offset + 1)
            }
            None => (State::new(), 0),
        };
        if replay_from < start {
            fail!("cannot restore: the latest valid snapshot ends at {replay_from}, the log starts at {start}");
        }
        for commit in &commits {
            for (index, transaction) in commit.transactions.iter().enumerate() {
                if commit.first_offset + index as u64 >= replay_from {
                    apply(&mut state, transaction);
                }
            }
        }
        self.model.truncate(next);
        if state != self.model.state_at(next) {
            fail!("snapshot plus replay does not give the state at offset {next}");
        }
        if after_crash {
            self.model.synced = next;
        }
        self.model.reset_floor = None;
        // An epoch becomes durable with the next commit; after a reopen the log's is the truth.
        self.model.epoch = log.epoch();
        context.trace(format_args!("check recovered {start}..{next}, owed {owed}"));
        Ok(())
    }

    fn life(&mut self, context: &mut Context, log: &mut Commitlog) -> Result<bool, Failure> {
        let plan = context.plan_life(10);
        for step in 0..plan.length {
            if context.ops >= context.ops_budget {
                return Ok(true);
            }
            context.arm_planned_crash(&plan, step);
            context.ops += 1;
            let outcome = self.step(context, log)?;
            if context.vfs.is_powered_off() {
                return Ok(true);
            }
            match outcome {
                Step::Continue => {}
                Step::Poisoned => {
                    context.expect_poisoned(log.sync(), "log")?;
                    return Ok(context.rng.gen_bool(0.5));
                }
                Step::Reopen => return Ok(false),
            }
        }
        Ok(true)
    }

    fn draw_transaction(context: &mut Context) -> Vec<u8> {
        let mut transaction = Vec::new();
        for _ in 0..context.rng.gen_range(1..=4) {
            let key = context.rng.gen_range(0..32u8);
            if context.rng.gen_bool(0.8) {
                transaction.push(0);
                transaction.push(key);
                transaction.extend_from_slice(&context.rng.gen::<u32>().to_le_bytes());
            } else {
                transaction.extend_from_slice(&[1, key]);
            }
        }
        transaction
    }

    fn on_error(result: Result<(), Error>, what: &str) -> Result<Step, Failure> {
        match result {
            Ok(()) => Ok(Step::Continue),
            Err(Error::Io { .. }) => Ok(Step::Poisoned),
            Err(error) => fail!("{what} failed: {error}"),
        }
    }

    fn step(&mut self, context: &mut Context, log: &mut Commitlog) -> Result<Step, Failure> {
        let next = self.model.transactions.len() as u64;
        if log.next_offset() != next {
            fail!("the log expects offset {} but {next} transactions were committed", log.next_offset());
        }
        match context.rng.gen_range(0..100) {
            0..=44 => {
                let count = context.rng.gen_range(1..=self.batch_max);
                let transactions: Vec<Vec<u8>> = (0..count).map(|_| Self::draw_transaction(context)).collect();
                let mut batch: Vec<(u64, &[u8])> = transactions
                    .iter()
                    .enumerate()
                    .map(|(index, bytes)| (next + index as u64, bytes.as_slice()))
                    .collect();
                if context.rng.gen_bool(0.05) {
                    // Gap rejection: a wrong offset is refused and nothing is written.
                    let wrong = if context.rng.gen_bool(0.5) { next + 1 } else { next.wrapping_sub(1) };
                    batch[0].0 = wrong;
                    context.trace(format_args!("op commit with wrong offset {wrong}"));
                    return match log.commit(&batch) {
                        Err(Error::OffsetMismatch { expected, found }) if expected == next && found == wrong => {
                            context.note("offset_mismatch_refused");
                            Ok(Step::Continue)
                        }
                        Err(Error::Poisoned) => fail!("the log was poisoned before a commit"),
                        other => fail!("a commit at offset {wrong} where {next} was due returned {other:?}"),
                    };
                }
                context.trace(format_args!("op commit {count} transactions at {next}"));
                let result = log.commit(&batch);
                if matches!(result, Ok(()) | Err(Error::Io { .. })) {
                    // On an I/O error the commit was buffered and may have partly reached disk.
                    self.model.commits.push(ModelCommit { first_offset: next, count, epoch: self.model.epoch });
                    self.model.transactions.extend(transactions);
                }
                Self::on_error(result, "commit")
            }
            45..=54 => {
                context.trace(format_args!("op flush"));
                Self::on_error(log.flush(), "flush")
            }
            55..=69 => {
                context.trace(format_args!("op sync"));
                let result = log.sync();
                if result.is_ok() {
                    self.model.synced = next;
                }
                Self::on_error(result, "sync")
            }
            70..=74 => {
                context.trace(format_args!("op rotate"));
                let result = log.rotate();
                if result.is_ok() {
                    self.model.synced = next;
                }
                Self::on_error(result, "rotate")
            }
            75..=79 => {
                let raise = context.rng.gen_range(0..3);
                if self.model.epoch > 0 && context.rng.gen_bool(0.2) {
                    let lower = self.model.epoch - 1;
                    return match log.set_epoch(lower) {
                        Err(Error::EpochRegression { .. }) => Ok(Step::Continue),
                        other => fail!("set_epoch({lower}) below {} returned {other:?}", self.model.epoch),
                    };
                }
                context.trace(format_args!("op set epoch +{raise}"));
                match log.set_epoch(self.model.epoch + raise) {
                    Ok(()) => {
                        self.model.epoch += raise;
                        Ok(Step::Continue)
                    }
                    Err(error) => fail!("set_epoch failed: {error}"),
                }
            }
            80..=84 if next > 0 => {
                let first = log.min_committed_offset().unwrap_or(next);
                let offset = context.rng.gen_range(first.saturating_sub(1)..next);
                context.trace(format_args!("op reset to {offset}"));
                // The new end: the first commit reaching past `offset` goes whole.
                let end = self
                    .model
                    .commits
                    .iter()
                    .find(|commit| commit.first_offset + commit.count - 1 > offset)
                    .map_or(next, |commit| commit.first_offset);
                self.model.reset_floor = Some(end);
                match log.reset_to(offset) {
                    Ok(new_next) => {
                        if new_next != end {
                            fail!("reset_to({offset}) left next offset {new_next}, expected {end}");
                        }
                        // A reset removes durably; it promises nothing about what it keeps.
                        self.model.truncate(end);
                        self.model.reset_floor = None;
                        Ok(Step::Continue)
                    }
                    Err(Error::Io { .. }) => Ok(Step::Poisoned),
                    Err(Error::Corruption { segment, .. })
                        if context.vfs.damage().iter().any(|damage| segment_of(&damage.path) == Some(segment)) =>
                    {
                        // The reset read the kept segment and met damage the disk caused.
                        context.note("corruption_reported");
                        Ok(Step::Poisoned)
                    }
                    Err(Error::InvalidArgument { .. }) if first > 0 => {
                        // Retention removed the start and no snapshot would remain below.
                        self.model.reset_floor = None;
                        context.note("reset_refused");
                        Ok(Step::Continue)
                    }
                    Err(error) => fail!("reset_to failed: {error}"),
                }
            }
            85..=92 => {
                let due = log.snapshot_due();
                context.trace(format_args!("op snapshot (due {due})"));
                let result = if due || context.rng.gen_bool(0.3) {
                    log.snapshot_now(&mut ModelSource(&self.model))
                } else {
                    log.take_snapshot(&mut ModelSource(&self.model))
                };
                match result {
                    Ok(Some(offset)) => {
                        if offset + 1 != next {
                            fail!("a snapshot was taken at {offset}, the log ends at {next}");
                        }
                        self.model.synced = next;
                        Ok(Step::Continue)
                    }
                    Ok(None) => Ok(Step::Continue),
                    Err(Error::Io { .. }) => Ok(Step::Poisoned),
                    Err(error) => fail!("snapshot failed: {error}"),
                }
            }
            93..=97 => {
                let first = log.min_committed_offset().unwrap_or(next);
                let from = context.rng.gen_range(first..=next);
                context.trace(format_args!("op read from {from}"));
                self.check_read(context, log, from)?;
                Ok(Step::Continue)
            }
            _ => {
                context.trace(format_args!("op clean reopen"));
                Ok(Step::Reopen)
            }
        }
    }

    /// Reads from `from` through the live handle: a prefix of what was committed (reads see
    /// flushed commits, and the buffer flushes on its own).
    fn check_read(&self, context: &mut Context, log: &Commitlog, from: u64) -> Result<(), Failure> {
        let mut expected = from;
        for item in log.transactions_from(from) {
            match item {
                Ok((offset, transaction)) => {
                    if offset != expected {
                        fail!("live read returned offset {offset} where {expected} was due");
                    }
                    let Some(committed) = self.model.transactions.get(usize::try_from(offset).expect("fits")) else {
                        fail!("live read returned offset {offset}, beyond what was committed");
                    };
                    if *committed != transaction {
                        fail!("live read of offset {offset} differs from what was committed");
                    }
                    expected += 1;
                }
                Err(Error::Io { .. }) => {
                    context.note("read_retried");
                    return Ok(());
                }
                Err(Error::Corruption { segment, offset, .. }) => {
                    let misdirected = context.vfs.damage().iter().any(|damage| {
                        damage.kind == FaultKind::MisdirectedWrite && segment_of(&damage.path) == Some(segment)
                    });
                    if !misdirected {
                        fail!("live read reported corruption in segment {segment} at {offset} with no damage there");
                    }
                    context.note("misdirected_write_detected");
                    return Ok(());
                }
                Err(error) => fail!("live read failed: {error}"),
            }
        }
        Ok(())
    }

    /// Liveness on a perfect disk: reopen, commit, rotate, snapshot, restore.
    fn final_phase(&mut self, context: &mut Context) -> Result<(), Failure> {
        context.vfs.set_faults_enabled(false);
        context.trace(format_args!("phase final"));
        let mut log = loop {
            if let Some(log) = self.open_and_check(context, true)? {
                break log;
            }
        };
        for _ in 0..20 {
            let next = self.model.transactions.len() as u64;
            let transaction = Self::draw_transaction(context);
            if let Err(error) = log.commit(&[(next, &transaction)]) {
                fail!("commit on a perfect disk failed: {error}");
            }
            self.model.commits.push(ModelCommit { first_offset: next, count: 1, epoch: self.model.epoch });
            self.model.transactions.push(transaction);
        }
        if let Err(error) = log.rotate().and_then(|()| log.snapshot_now(&mut ModelSource(&self.model)).map(drop)) {
            fail!("rotate and snapshot on a perfect disk failed: {error}");
        }
        self.model.synced = self.model.transactions.len() as u64;
        if let Err(error) = log.close() {
            fail!("close on a perfect disk failed: {error}");
        }
        if self.open_and_check(context, false)?.is_none() {
            fail!("power failed on a perfect disk");
        }
        Ok(())
    }
}
