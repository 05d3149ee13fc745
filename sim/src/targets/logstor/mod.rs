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
//! Here: the swarm draw and the [`Target`] the harness's loop drives; `workload.rs` draws and applies operations,
//! `model.rs` holds each key's versions, `oracle.rs` checks every open and every seal, and
//! `final_phase.rs` runs the fault-free final phase.

mod final_phase;
mod model;
mod oracle;
mod workload;

use std::ops::Range;
use std::path::PathBuf;

use ballast::logstor::{format, Logstor, LogstorOptions};
use ballast::{Error, RecoveryMode};
use rand::Rng;

use crate::faults::FaultConfig;
use crate::harness::{draw_faults, Checked, Context, Failure, Opened, Step, Target};
use crate::Damage;
use model::Model;

const DIRECTORY: &str = "/logstor";

pub(crate) struct Workload {
    options: LogstorOptions,
    keys_count: u64,
    value_length_max: usize,
    model: Model,
}

fn directory() -> PathBuf {
    PathBuf::from(DIRECTORY)
}

impl Target for Workload {
    type Handle = Logstor;
    type BeforeOpen = ();

    const NAME: &'static str = "logstor";
    const NOUN: &'static str = "store";
    const LIFE_CRASH_IO_CALLS: u64 = 12;
    const RECOVERY_CRASH_IO_CALLS: u64 = 8;
    const CLOSES_ON_REOPEN: bool = true;
    /// An open syncs every data file and seals what was torn: 20 syncs and more (seed 3040).
    const EASES_FAILING_OPENS: bool = true;
    const RETRIES_REPAIR_ON_DAMAGE: bool = true;

    fn draw(context: &mut Context) -> (Self, FaultConfig) {
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
        let faults = draw_faults(&mut context.rng, segment_size * options.segments_per_file);
        // Off, or small enough that eviction is constant.
        options.read_cache_size = [0, 4096, 4 * 4096, 64 * 4096][context.rng.gen_range(0..4)];
        (Workload { options, keys_count, value_length_max, model: Model::default() }, faults)
    }

    fn describe(&self) -> String {
        let options = &self.options;
        format!(
            "segment_size={} segments_per_file={} write_buffer={} groups={} compaction_batch_max={} \
             read_cache={} keys={} value_length_max={}",
            options.segment_size,
            options.segments_per_file,
            options.write_buffer_size,
            options.groups_count,
            options.compaction_batch_max,
            options.read_cache_size,
            self.keys_count,
            self.value_length_max,
        )
    }

    fn space_to_free(&self) -> u64 {
        2 * self.options.segment_size
    }

    fn before_open(&self, _context: &Context) {}

    fn open(&self, context: &Context, mode: RecoveryMode) -> ballast::Result<Logstor> {
        let options = LogstorOptions { recovery_mode: mode, ..self.options.clone() };
        Logstor::open(context.vfs_handle.clone(), DIRECTORY, options)
    }

    fn explains_corruption(&self, damage: &[Damage], error: &Error) -> bool {
        let Error::Corruption { file, .. } = error else { return false };
        damage.iter().any(|damage| damage.path == *file)
    }

    fn check_recovered(
        &mut self,
        context: &mut Context,
        store: &Logstor,
        opened: &Opened<'_, ()>,
    ) -> Result<Checked, Failure> {
        let sound = self.check_open(context, store, !opened.damage.is_empty(), opened.after_crash)?;
        Ok(if sound { Checked::Sound } else { Checked::Reopen })
    }

    fn step(&mut self, context: &mut Context, store: &mut Logstor) -> Result<Step, Failure> {
        self.operate(context, store)
    }

    /// The closed-segment check, on every segment sealed since the last.
    fn after_step(&mut self, context: &mut Context, store: &mut Logstor) -> Result<(), Failure> {
        self.check_sealed(context, store)
    }

    fn sync(store: &mut Logstor) -> ballast::Result<()> {
        store.sync()
    }

    fn close(store: Logstor) -> ballast::Result<()> {
        store.close()
    }

    fn closed(&mut self) {
        self.model.sync_all();
    }

    /// Data files anywhere: damage the format cannot see (in free or stale space) changes
    /// nothing, and damage it can see must never be returned as data.
    fn rot_eligible(&self, context: &Context) -> Vec<(PathBuf, Range<u64>)> {
        context
            .vfs
            .current_names(&directory())
            .into_iter()
            .filter(|name| format::parse_data_file_name(name).is_some())
            .map(|name| (directory().join(name), 0..u64::MAX))
            .collect()
    }

    fn final_phase(&mut self, context: &mut Context, store: Logstor) -> Result<(), Failure> {
        self.final_work(context, store)
    }
}
