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
//!
//! Here: the swarm draw and the life loop; `workload.rs` draws and applies operations,
//! `model.rs` holds each key's versions, `oracle.rs` checks every open and every seal, and
//! `final_phase.rs` runs the fault-free final phase.

mod final_phase;
mod model;
mod oracle;
mod workload;

use std::path::PathBuf;

use ballast::logstor::{format, Logstor, LogstorOptions};
use ballast::{Error, RecoveryMode};
use rand::Rng;

use crate::fail;
use crate::harness::{draw_faults, Canary, Context, Failure};
use model::Model;
use workload::Step;

const DIRECTORY: &str = "/logstor";
const OPEN_ATTEMPTS_MAX: u32 = 12;

/// Runs the logstor target. Returns the swarm description, with the failure if one was found.
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
}
