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
//! Here: the swarm draw and the [`Target`] the harness's loop drives; `workload.rs` draws and applies operations,
//! `model.rs` is the model datastore, `oracle.rs` checks every open and the final phase.

mod model;
mod oracle;
mod workload;

use std::ops::Range;
use std::path::{Path, PathBuf};

use ballast::commitlog::{format, Commitlog, CommitlogOptions, Retention};
use ballast::{Error, RecoveryMode};
use rand::Rng;

use crate::faults::FaultConfig;
use crate::harness::{self, draw_faults, Checked, Context, Failure, Opened, Step, Target};
use crate::Damage;
use model::Model;

const DIRECTORY: &str = "/commitlog";

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

pub(crate) struct Workload {
    options: CommitlogOptions,
    batch_max: u64,
    model: Model,
}

impl Target for Workload {
    type Handle = Commitlog;
    /// The last segment on disk before the open.
    type BeforeOpen = Option<u64>;

    const NAME: &'static str = "commitlog";
    const NOUN: &'static str = "log";
    const LIFE_CRASH_IO_CALLS: u64 = 10;
    const RECOVERY_CRASH_IO_CALLS: u64 = 8;
    const CLOSES_ON_REOPEN: bool = false;
    const EASES_FAILING_OPENS: bool = false;
    const RETRIES_REPAIR_ON_DAMAGE: bool = false;

    fn draw(context: &mut Context) -> (Self, FaultConfig) {
        let options = CommitlogOptions {
            segment_size_max: context.rng.gen_range(256..=4096),
            index_interval_bytes: context.rng.gen_range(64..=1024),
            write_buffer_size: context.rng.gen_range(64..=2048),
            snapshot_interval_transactions: context.rng.gen_range(5..=60),
            snapshots_kept: context.rng.gen_range(1..=3),
            retention: if context.rng.gen_bool(0.5) {
                Retention::KeepAll
            } else {
                Retention::RemoveBelowOldestSnapshot
            },
            recovery_mode: RecoveryMode::Strict,
        };
        let batch_max = context.rng.gen_range(1..=8u64);
        let faults = draw_faults(&mut context.rng, options.segment_size_max);
        (Workload { options, batch_max, model: Model::default() }, faults)
    }

    fn describe(&self) -> String {
        let options = &self.options;
        format!(
            "segment_size_max={} index_interval={} write_buffer={} snapshot_interval={} snapshots_kept={} \
             retention={:?} batch_max={}",
            options.segment_size_max,
            options.index_interval_bytes,
            options.write_buffer_size,
            options.snapshot_interval_transactions,
            options.snapshots_kept,
            options.retention,
            self.batch_max,
        )
    }

    fn space_to_free(&self) -> u64 {
        2 * self.options.segment_size_max
    }

    fn before_open(&self, context: &Context) -> Option<u64> {
        files(context).0.last().copied()
    }

    fn open(&self, context: &Context, mode: RecoveryMode) -> ballast::Result<Commitlog> {
        let options = CommitlogOptions { recovery_mode: mode, ..self.options.clone() };
        Commitlog::open(context.vfs_handle.clone(), DIRECTORY, options)
    }

    fn explains_corruption(&self, damage: &[Damage], error: &Error) -> bool {
        harness::damage_explains(damage, error, segment_of)
    }

    fn check_recovered(
        &mut self,
        context: &mut Context,
        log: &Commitlog,
        opened: &Opened<'_, Option<u64>>,
    ) -> Result<Checked, Failure> {
        self.check_open(context, log, opened).map(|()| Checked::Sound)
    }

    fn step(&mut self, context: &mut Context, log: &mut Commitlog) -> Result<Step, Failure> {
        self.operate(context, log)
    }

    fn sync(log: &mut Commitlog) -> ballast::Result<()> {
        log.sync()
    }

    fn close(log: Commitlog) -> ballast::Result<()> {
        log.close()
    }

    fn closed(&mut self) {
        self.model.synced = self.model.transactions.len() as u64;
    }

    /// What the oracle can hold the engine to: sealed segments (damage there must be
    /// reported), index files (rebuilt from their segments), and snapshots that restoring can
    /// do without (with retention on, never the oldest kept one).
    fn rot_eligible(&self, context: &Context) -> Vec<(PathBuf, Range<u64>)> {
        let (segments, snapshots) = files(context);
        let mut eligible: Vec<(PathBuf, Range<u64>)> = Vec::new();
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
        eligible
    }

    fn final_phase(&mut self, context: &mut Context, log: Commitlog) -> Result<(), Failure> {
        self.final_work(context, log)
    }
}
