//! The WAL target: a workload of appends, syncs, reads, rotations and truncations, a model of
//! every record appended and which were synced, and the oracle that checks every recovery.
//!
//! The oracle, after every open: the records read back are a prefix of everything appended,
//! byte for byte, in order and at the positions the appends returned; the prefix is at least as
//! long as everything acknowledged as synced, except where the disk itself damaged synced data
//! (then only records before the damage are owed, and damage in a sealed segment must be
//! reported); a repair that drops synced records says so.
//!
//! Here: the swarm draw and the [`Target`] the harness's loop drives; `workload.rs` draws and applies operations,
//! `model.rs` holds what was appended, `oracle.rs` checks every open and the final phase.

mod model;
mod oracle;
mod workload;

use std::ops::Range;
use std::path::{Path, PathBuf};

use ballast::wal::{self, RecoveryMode, Wal, WalOptions};
use ballast::Error;
use rand::Rng;

use crate::faults::FaultConfig;
use crate::harness::{self, draw_faults, Checked, Context, Failure, Opened, Step, Target};
use crate::Damage;
use model::Model;

const DIRECTORY: &str = "/wal";

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
    segments_in(context, &directory())
}

/// The segments of the WAL in `directory`, oldest first.
fn segments_in(context: &Context, directory: &Path) -> Vec<u64> {
    let mut segments: Vec<u64> =
        context.vfs.current_names(directory).iter().filter_map(|name| wal::parse_segment_file_name(name)).collect();
    segments.sort_unstable();
    segments
}

/// Every sealed segment of the WAL in `directory` (all but the last), whole: where rot must be
/// found, because the end of the last segment cannot tell damage from a torn write.
pub(crate) fn sealed_segments(context: &Context, directory: &Path) -> Vec<(PathBuf, Range<u64>)> {
    let segments = segments_in(context, directory);
    let Some((_, sealed)) = segments.split_last() else { return Vec::new() };
    sealed.iter().map(|&segment| (directory.join(wal::segment_file_name(segment)), 0..u64::MAX)).collect()
}

/// How many files of truncated segments wait to be reused.
fn recycled_on_disk(context: &Context) -> usize {
    context.vfs.current_names(&directory()).iter().filter(|name| wal::parse_recycle_file_name(name).is_some()).count()
}

pub(crate) struct Workload {
    geometry: Geometry,
    model: Model,
}

impl Target for Workload {
    type Handle = Wal;
    /// The last segment on disk before the open.
    type BeforeOpen = Option<u64>;

    const NAME: &'static str = "wal";
    const NOUN: &'static str = "log";
    const LIFE_CRASH_IO_CALLS: u64 = 8;
    const RECOVERY_CRASH_IO_CALLS: u64 = 6;
    const CLOSES_ON_REOPEN: bool = false;
    const EASES_FAILING_OPENS: bool = false;
    /// A repair that meets damage again is the bug class of wal seeds 0000 and 0468.
    const RETRIES_REPAIR_ON_DAMAGE: bool = false;

    fn draw(context: &mut Context) -> (Self, FaultConfig) {
        let page_size = [128u32, 256, 512, 1024, 4096][context.rng.gen_range(0..5)];
        let segment_size = u64::from(page_size) * context.rng.gen_range(2..=12);
        let mut geometry = Geometry {
            options: WalOptions {
                segment_size,
                page_size,
                recovery_mode: RecoveryMode::Strict,
                preallocate: 0,
                recycle_segments: 0,
                first_segment: 0,
            },
            batch_max: context.rng.gen_range(1..=8),
            large_record_percent: context.rng.gen_range(0..=20),
        };
        let faults = draw_faults(&mut context.rng, segment_size);
        // Preallocation off (the file grows with every write), a page at a time, or the whole
        // segment at its first write: each changes which writes grow the file.
        geometry.options.preallocate = [0, u64::from(page_size), segment_size][context.rng.gen_range(0..3)];
        // Truncated segments' files removed, or kept and reused: a reused file holds another
        // segment's valid-looking fragments after the records, for recovery to tell apart.
        geometry.options.recycle_segments = [0, 1, 2, 4][context.rng.gen_range(0..4)];
        (Workload { geometry, model: Model::default() }, faults)
    }

    fn describe(&self) -> String {
        let (options, geometry) = (&self.geometry.options, &self.geometry);
        format!(
            "page_size={} segment_size={} preallocate={} recycle_segments={} batch_max={} large_records={}%",
            options.page_size,
            options.segment_size,
            options.preallocate,
            options.recycle_segments,
            geometry.batch_max,
            geometry.large_record_percent
        )
    }

    fn space_to_free(&self) -> u64 {
        2 * self.geometry.options.segment_size
    }

    fn before_open(&self, context: &Context) -> Option<u64> {
        segments_on_disk(context).last().copied()
    }

    fn open(&self, context: &Context, mode: RecoveryMode) -> ballast::Result<Wal> {
        let options = WalOptions { recovery_mode: mode, ..self.geometry.options.clone() };
        Wal::open(context.vfs_handle.clone(), DIRECTORY, options)
    }

    fn explains_corruption(&self, damage: &[Damage], error: &Error) -> bool {
        harness::damage_explains(damage, error, segment_of)
    }

    fn check_recovered(
        &mut self,
        context: &mut Context,
        wal: &Wal,
        opened: &Opened<'_, Option<u64>>,
    ) -> Result<Checked, Failure> {
        self.check_open(context, wal, opened).map(|()| Checked::Sound)
    }

    /// One operation; a truncation that reused a segment's file is noted.
    fn step(&mut self, context: &mut Context, wal: &mut Wal) -> Result<Step, Failure> {
        let recycled_before = recycled_on_disk(context);
        let outcome = self.operate(context, wal)?;
        if recycled_on_disk(context) < recycled_before {
            context.note("wal_segment_file_reused");
        }
        Ok(outcome)
    }

    fn sync(wal: &mut Wal) -> ballast::Result<()> {
        wal.sync()
    }

    fn close(wal: Wal) -> ballast::Result<()> {
        wal.close()
    }

    fn closed(&mut self) {
        self.model.all_synced();
    }

    /// Bytes of sealed segments only, because damage to synced bytes at the end of the last
    /// segment cannot be told from a torn write (the WAL module docs say so), and the oracle
    /// demands detection of everything it rots.
    fn rot_eligible(&self, context: &Context) -> Vec<(PathBuf, Range<u64>)> {
        sealed_segments(context, &directory())
    }

    fn final_phase(&mut self, context: &mut Context, wal: Wal) -> Result<(), Failure> {
        self.final_work(context, wal)
    }
}
