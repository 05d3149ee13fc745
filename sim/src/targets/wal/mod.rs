//! The WAL target: a workload of appends, syncs, reads, rotations and truncations, a model of
//! every record appended and which were synced, and the oracle that checks every recovery.
//!
//! The oracle, after every open: the records read back are a prefix of everything appended,
//! byte for byte, in order and at the positions the appends returned; the prefix is at least as
//! long as everything acknowledged as synced, except where the disk itself damaged synced data
//! (then only records before the damage are owed, and damage in a sealed segment must be
//! reported); a repair that drops synced records says so.
//!
//! Here: the swarm draw and the life loop; `workload.rs` draws and applies operations,
//! `model.rs` holds what was appended, `oracle.rs` checks every open and the final phase.

mod model;
mod oracle;
mod workload;

use std::path::{Path, PathBuf};

use ballast::wal::{self, RecoveryMode, Wal, WalOptions};
use rand::Rng;

use crate::harness::{draw_faults, Canary, Context, Failure};
use model::Model;
use workload::Step;

const DIRECTORY: &str = "/wal";
/// Bound on attempts to open after transient failures.
const OPEN_ATTEMPTS_MAX: u32 = 12;

struct Geometry {
    options: WalOptions,
    batch_max: usize,
    large_record_percent: u32,
}

fn directory() -> PathBuf {
    PathBuf::from(DIRECTORY)
}

fn segment_of(path: &Path) -> Option<u64> {
    if path.parent() != Some(Path::new(DIRECTORY)) {
        return None;
    }
    wal::parse_segment_file_name(path.file_name()?.to_str()?)
}

fn segments_on_disk(context: &Context) -> Vec<u64> {
    context.vfs.current_names(&directory()).iter().filter_map(|name| wal::parse_segment_file_name(name)).collect()
}

/// How many files of truncated segments wait to be reused.
fn recycled_on_disk(context: &Context) -> usize {
    context.vfs.current_names(&directory()).iter().filter(|name| wal::parse_recycle_file_name(name).is_some()).count()
}

/// Runs the WAL target. Returns the swarm description, with the failure if one was found.
pub fn run(context: &mut Context) -> Result<String, (String, Failure)> {
    let page_size = [128u32, 256, 512, 1024, 4096][context.rng.gen_range(0..5)];
    let segment_size = u64::from(page_size) * context.rng.gen_range(2..=12);
    let mut geometry = Geometry {
        options: WalOptions {
            segment_size,
            page_size,
            recovery_mode: RecoveryMode::Strict,
            preallocate: 0,
            recycle_segments: 0,
        },
        batch_max: context.rng.gen_range(1..=8),
        large_record_percent: context.rng.gen_range(0..=20),
    };
    let mut faults = draw_faults(&mut context.rng, segment_size);
    // Preallocation off (the file grows with every write), a page at a time, or the whole
    // segment at its first write: each changes which writes grow the file.
    geometry.options.preallocate = [0, u64::from(page_size), segment_size][context.rng.gen_range(0..3)];
    // Truncated segments' files removed, or kept and reused: a reused file holds another
    // segment's valid-looking fragments after the records, for recovery to tell apart.
    geometry.options.recycle_segments = [0, 1, 2, 4][context.rng.gen_range(0..4)];
    if context.canary == Some(Canary::LyingFsync) {
        faults.lying_fsync = true;
        faults.lost_unsynced = true;
        faults.spurious_durability = 0.0;
    }
    let swarm = format!(
        "target=wal seed={} ops={} page_size={page_size} segment_size={segment_size} preallocate={} recycle_segments={} batch_max={} large_records={}% faults: {faults}",
        context.seed, context.ops_budget, geometry.options.preallocate, geometry.options.recycle_segments, geometry.batch_max, geometry.large_record_percent
    );
    context.trace(format_args!("swarm {swarm}"));
    context.vfs.set_config(faults);
    let mut workload = Workload { geometry, model: Model::default() };
    match workload.run(context) {
        Ok(()) => Ok(swarm),
        Err(failure) => Err((swarm, failure)),
    }
}

struct Workload {
    geometry: Geometry,
    model: Model,
}

/// How a life ended.
enum LifeEnd {
    Crash,
    CleanReopen,
}

impl Workload {
    fn run(&mut self, context: &mut Context) -> Result<(), Failure> {
        let mut after_crash = false;
        while context.ops < context.ops_budget {
            let Some(mut wal) = self.open_and_check(context, after_crash)? else {
                after_crash = true;
                continue;
            };
            let end = self.life(context, &mut wal)?;
            drop(wal);
            after_crash = matches!(end, LifeEnd::Crash);
            if after_crash {
                self.crash(context);
            }
        }
        self.final_phase(context)
    }

    /// Cuts power and rots what is eligible: bytes of sealed segments only, because damage to
    /// synced bytes at the end of the last segment cannot be told from a torn write (the WAL
    /// module docs say so), and the oracle demands detection of everything it rots.
    fn crash(&mut self, context: &mut Context) {
        context.trace(format_args!("op crash"));
        context.crashes += 1;
        context.vfs.crash();
        let segments = segments_on_disk(context);
        let eligible: Vec<(PathBuf, std::ops::Range<u64>)> = match segments.split_last() {
            Some((_, sealed)) => {
                sealed.iter().map(|&segment| (directory().join(wal::segment_file_name(segment)), 0..u64::MAX)).collect()
            }
            None => Vec::new(),
        };
        context.vfs.rot(&eligible);
    }

    /// One life: operations until a crash point, a poisoned handle, or a clean reopen.
    fn life(&mut self, context: &mut Context, wal: &mut Wal) -> Result<LifeEnd, Failure> {
        let plan = context.plan_life(8);
        for step in 0..plan.length {
            if context.ops >= context.ops_budget {
                return Ok(LifeEnd::Crash);
            }
            context.arm_planned_crash(&plan, step);
            context.ops += 1;
            let recycled_before = recycled_on_disk(context);
            let outcome = self.step(context, wal)?;
            if recycled_on_disk(context) < recycled_before {
                context.note("wal_segment_file_reused");
            }
            if context.vfs.is_powered_off() {
                return Ok(LifeEnd::Crash);
            }
            match outcome {
                Step::Continue => {}
                Step::Poisoned => {
                    context.expect_poisoned(wal.sync(), "log")?;
                    return Ok(if context.rng.gen_bool(0.5) { LifeEnd::Crash } else { LifeEnd::CleanReopen });
                }
                Step::Reopen => return Ok(LifeEnd::CleanReopen),
            }
        }
        Ok(LifeEnd::Crash)
    }
}
