//! The commitlog target: a small model datastore (a map from key to value whose transactions
//! are batches of puts and deletes) commits batches with contiguous offsets, flushes, syncs,
//! rotates, snapshots, resets and changes epochs, through crashes at every kind of I/O point.
//!
//! The oracle, after every open: the recovered transactions are contiguous and a prefix of what
//! was committed, byte for byte; every recovered commit is exactly a commit that was made (never
//! part of one) with its epoch; every synced transaction is there unless the disk damaged the
//! segment holding it (damage by rot in a sealed segment must be reported); and restoring from
//! the latest valid snapshot plus replay gives exactly the model's state at the recovered end.
//!
//! Here: the swarm draw and the life loop; `workload.rs` draws and applies operations,
//! `model.rs` is the model datastore, `oracle.rs` checks every open and the final phase.

mod model;
mod oracle;
mod workload;

use std::path::{Path, PathBuf};

use ballast::commitlog::{format, Commitlog, CommitlogOptions, Retention};
use ballast::RecoveryMode;
use rand::Rng;

use crate::harness::{draw_faults, Canary, Context, Failure};
use model::Model;
use workload::Step;

const DIRECTORY: &str = "/commitlog";
const OPEN_ATTEMPTS_MAX: u32 = 12;

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

/// Runs the commitlog target. Returns the swarm description, with the failure if one was found.
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
}
