//! The tsdb target: the head of `ballast::tsdb` under batches of samples appended by labels
//! and by ref, commits buffered and synced, rollbacks, deletions, truncations, checkpoints,
//! syncs, queries and clean reopens, with crashes at every I/O point and rot in sealed WAL
//! segments.
//!
//! The model keeps every change (commit, deletion, truncation) in order and which a sync
//! covered, and every ref handed out. The oracle, after every open: the head holds exactly
//! what a prefix of the changes makes (each is atomic, a crash loses a suffix), every synced
//! change among them unless the disk damaged the WAL; a ref names the same labels before and
//! after recovery, and a ref whose series went (lost in a crash, or emptied by a truncation)
//! is never issued again. Every append's acceptance or refusal (out of order, duplicate,
//! out of bounds, an identical resend) is checked against the model, and every query against
//! the model's samples.
//!
//! Here: the swarm draw and the [`Target`] the harness's loop drives; `workload.rs` draws and
//! applies operations, `model.rs` holds the commits and refs, `oracle.rs` checks every open
//! and the final phase.

mod model;
mod oracle;
mod workload;

use std::ops::Range;
use std::path::{Path, PathBuf};

use ballast::tsdb::{AppendError, Durability, Head, HeadOptions};
use ballast::{wal, Error, RecoveryMode};
use rand::Rng;

use crate::faults::FaultConfig;
use crate::harness::{draw_faults, Checked, Context, Failure, Opened, Step, Target};
use crate::Damage;
use model::Model;

const DIRECTORY: &str = "/tsdb";
const WAL_DIRECTORY: &str = "/tsdb/wal";
const CHUNKS_DIRECTORY: &str = "/tsdb/chunks_head";

fn segment_of(path: &Path) -> Option<u64> {
    if path.parent() != Some(Path::new(WAL_DIRECTORY)) {
        return None;
    }
    wal::parse_segment_file_name(path.file_name()?.to_str()?)
}

pub(crate) struct Workload {
    options: HeadOptions,
    series_count: u64,
    model: Model,
}

impl Target for Workload {
    type Handle = Head;
    type BeforeOpen = ();

    const NAME: &'static str = "tsdb";
    const NOUN: &'static str = "head";
    const LIFE_CRASH_IO_CALLS: u64 = 8;
    const RECOVERY_CRASH_IO_CALLS: u64 = 6;
    const CLOSES_ON_REOPEN: bool = true;
    const EASES_FAILING_OPENS: bool = false;
    const RETRIES_REPAIR_ON_DAMAGE: bool = false;

    fn draw(context: &mut Context) -> (Self, FaultConfig) {
        let wal_page_size = [512u32, 1024, 4096][context.rng.gen_range(0..3)];
        let options = HeadOptions {
            chunk_range: [60_000, 600_000, 7_200_000][context.rng.gen_range(0..3)],
            wal_segment_size: u64::from(wal_page_size) * context.rng.gen_range(2..=8),
            wal_page_size,
            recovery_mode: RecoveryMode::Strict,
            // Small, so that chunks fill several files and files are sealed and removed.
            chunk_file_size: [4096, 8192, 32768][context.rng.gen_range(0..3)],
            // Small, so that lives renew their reservation and crashes fall inside one.
            refs_reserved_at_once: context.rng.gen_range(1..=64),
        };
        let series_count = context.rng.gen_range(1..=40);
        let faults = draw_faults(&mut context.rng, options.wal_segment_size);
        (Workload { options, series_count, model: Model::default() }, faults)
    }

    fn describe(&self) -> String {
        format!(
            "chunk_range={} chunk_file_size={} wal_page_size={} wal_segment_size={} refs_reserved_at_once={} series={}",
            self.options.chunk_range,
            self.options.chunk_file_size,
            self.options.wal_page_size,
            self.options.wal_segment_size,
            self.options.refs_reserved_at_once,
            self.series_count
        )
    }

    /// Two WAL segments, and a chunk file preallocated.
    fn space_to_free(&self) -> u64 {
        2 * self.options.wal_segment_size + self.options.chunk_file_size
    }

    fn before_open(&self, _context: &Context) {}

    fn open(&self, context: &Context, mode: RecoveryMode) -> ballast::Result<Head> {
        let options = HeadOptions { recovery_mode: mode, ..self.options.clone() };
        Head::open(context.vfs_handle.clone(), DIRECTORY, options)
    }

    /// Corruption the open reports must be in a file the disk damaged.
    fn explains_corruption(&self, damage: &[Damage], error: &Error) -> bool {
        let Error::Corruption { file, .. } = error else { return false };
        damage.iter().any(|damage| damage.path == *file)
    }

    fn check_recovered(
        &mut self,
        context: &mut Context,
        head: &Head,
        opened: &Opened<'_, ()>,
    ) -> Result<Checked, Failure> {
        self.check_open(context, head, opened)
    }

    fn step(&mut self, context: &mut Context, head: &mut Head) -> Result<Step, Failure> {
        self.operate(context, head)
    }

    /// After a failed write the harness demands `Poisoned` from this: so from a commit, from
    /// an append that needs a new ref, and from a sync, each in turn.
    fn sync(head: &mut Head) -> ballast::Result<()> {
        let commit = head.appender().commit(Durability::Buffered);
        let append = match head.appender().append(&Workload::labels_of(u64::MAX), i64::MAX, 0.0) {
            Err(AppendError::Storage(error)) => Err(error),
            // Accepted, or refused for another reason: not refused as poisoned.
            Ok(_) | Err(_) => Ok(()),
        };
        // The first that is not refused as poisoned is what the harness sees.
        [commit, append]
            .into_iter()
            .find(|result| !matches!(result, Err(Error::Poisoned)))
            .unwrap_or_else(|| head.sync())
    }

    fn close(head: Head) -> ballast::Result<()> {
        head.close()
    }

    fn closed(&mut self) {
        self.model.all_synced();
    }

    /// Sealed WAL segments, as for the wal target, and sealed head chunk files (all but the
    /// newest, past their header: damage to the header of a file made atomically is damage
    /// all the same, but rot there is what the header-less case already covers).
    fn rot_eligible(&self, context: &Context) -> Vec<(PathBuf, Range<u64>)> {
        let mut eligible = super::wal::sealed_segments(context, Path::new(WAL_DIRECTORY));
        let directory = Path::new(CHUNKS_DIRECTORY);
        let mut numbers: Vec<u64> =
            context.vfs.durable_names(directory).iter().filter_map(|name| wal::parse_segment_file_name(name)).collect();
        numbers.sort_unstable();
        numbers.pop();
        for number in numbers {
            let path = directory.join(wal::segment_file_name(number));
            if let Some(length) = context.vfs.durable_contents(&path).map(|bytes| bytes.len() as u64) {
                if length > 16 {
                    eligible.push((path, 16..length));
                }
            }
        }
        eligible
    }

    fn final_phase(&mut self, context: &mut Context, head: Head) -> Result<(), Failure> {
        self.final_work(context, head)
    }
}
