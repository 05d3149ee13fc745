//! The tsdb target: a `ballast::tsdb::Tsdb` (the head and its Prometheus blocks) under batches
//! of samples appended by labels and by ref, commits buffered and synced, rollbacks, deletions
//! (in blocks and head), head compaction into blocks, block compaction, retention by time,
//! checkpoints, syncs, queries and clean reopens, with crashes at every I/O point and rot in
//! sealed WAL segments, sealed head chunk files and every file of the blocks.
//!
//! The model keeps every change (commit, deletion piece, block dropped) in order and which a
//! sync covered, and every ref handed out. The oracle, after every open: blocks and head
//! together hold exactly what a prefix of the changes makes (each is atomic, a crash loses a
//! suffix), no sample twice, every synced change among them unless the disk damaged the WAL
//! or a block (a block a repair sets aside loses its range, and only it); no block is visible
//! beside a block made from it, none half made; a ref names the same labels before and after
//! recovery, and a ref whose series went is never issued again. Every append's acceptance or
//! refusal (out of order, duplicate, out of bounds, an identical resend) is checked against
//! the model, and every query against the model's samples.
//!
//! Here: the swarm draw and the [`Target`] the harness's loop drives; `workload.rs` draws and
//! applies operations, `model.rs` holds the commits and refs, `oracle.rs` checks every open
//! and the final phase.

mod model;
mod oracle;
mod workload;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ballast::tsdb::{AppendError, Durability, HeadOptions, Tsdb, TsdbOptions};
use ballast::{wal, Error, RecoveryMode};
use rand::Rng;

use crate::faults::FaultConfig;
use crate::harness::{draw_faults, Checked, Context, Failure, Opened, Step, Target};
use crate::Damage;
use model::Model;

const DIRECTORY: &str = "/tsdb";
const HEAD_DIRECTORY: &str = "/tsdb/head";
const WAL_DIRECTORY: &str = "/tsdb/head/wal";
const CHUNKS_DIRECTORY: &str = "/tsdb/head/chunks_head";
/// Every file a block holds but its chunk files.
const BLOCK_FILES: [&str; 3] = ["index", "tombstones", "meta.json"];

fn segment_of(path: &Path) -> Option<u64> {
    if path.parent() != Some(Path::new(WAL_DIRECTORY)) {
        return None;
    }
    wal::parse_segment_file_name(path.file_name()?.to_str()?)
}

pub(crate) struct Workload {
    options: TsdbOptions,
    series_count: u64,
    model: Model,
    /// A query met damage in a block's chunk, which only a repairing open reads: the next
    /// open repairs.
    repair_next: bool,
}

impl Target for Workload {
    type Handle = Tsdb;
    type BeforeOpen = ();

    const NAME: &'static str = "tsdb";
    const NOUN: &'static str = "tsdb";
    const LIFE_CRASH_IO_CALLS: u64 = 8;
    const RECOVERY_CRASH_IO_CALLS: u64 = 6;
    const CLOSES_ON_REOPEN: bool = true;
    const EASES_FAILING_OPENS: bool = false;
    const RETRIES_REPAIR_ON_DAMAGE: bool = false;

    fn draw(context: &mut Context) -> (Self, FaultConfig) {
        let wal_page_size = [512u32, 1024, 4096][context.rng.gen_range(0..3)];
        let chunk_range = [60_000, 600_000, 7_200_000][context.rng.gen_range(0..3)];
        let head = HeadOptions {
            chunk_range,
            wal_segment_size: u64::from(wal_page_size) * context.rng.gen_range(2..=8),
            wal_page_size,
            recovery_mode: RecoveryMode::Strict,
            // Small, so that chunks fill several files and files are sealed and removed.
            chunk_file_size: [4096, 8192, 32768][context.rng.gen_range(0..3)],
            // Small, so that lives renew their reservation and crashes fall inside one.
            refs_reserved_at_once: context.rng.gen_range(1..=64),
        };
        let series_count = context.rng.gen_range(1..=40);
        let faults = draw_faults(&mut context.rng, head.wal_segment_size);
        let options = TsdbOptions {
            head,
            // Small, so that blocks span several chunk files.
            block_chunk_file_size: [4096, 16384][context.rng.gen_range(0..2)],
            block_ranges: vec![chunk_range, 3 * chunk_range, 9 * chunk_range],
            retention_duration: context.rng.gen_bool(0.5).then(|| chunk_range * context.rng.gen_range(2..=20)),
            retention_bytes: None,
        };
        (Workload { options, series_count, model: Model::default(), repair_next: false }, faults)
    }

    fn describe(&self) -> String {
        let head = &self.options.head;
        format!(
            "chunk_range={} chunk_file_size={} wal_page_size={} wal_segment_size={} refs_reserved_at_once={} series={} block_chunk_file_size={} retention={:?}",
            head.chunk_range,
            head.chunk_file_size,
            head.wal_page_size,
            head.wal_segment_size,
            head.refs_reserved_at_once,
            self.series_count,
            self.options.block_chunk_file_size,
            self.options.retention_duration,
        )
    }

    /// Two WAL segments, a head chunk file and a block's chunk file preallocated.
    fn space_to_free(&self) -> u64 {
        2 * self.options.head.wal_segment_size + self.options.head.chunk_file_size + self.options.block_chunk_file_size
    }

    fn before_open(&self, _context: &Context) {}

    fn open(&self, context: &Context, mode: RecoveryMode) -> ballast::Result<Tsdb> {
        let mode = if self.repair_next { RecoveryMode::Repair } else { mode };
        let mut options = self.options.clone();
        options.head.recovery_mode = mode;
        Tsdb::open(context.vfs_handle.clone(), Arc::new(context.vfs.clock()), DIRECTORY, options)
    }

    /// Corruption the open reports must be in a file the disk damaged.
    fn explains_corruption(&self, damage: &[Damage], error: &Error) -> bool {
        let Error::Corruption { file, .. } = error else { return false };
        damage.iter().any(|damage| damage.path == *file)
    }

    fn check_recovered(
        &mut self,
        context: &mut Context,
        tsdb: &Tsdb,
        opened: &Opened<'_, ()>,
    ) -> Result<Checked, Failure> {
        self.check_open(context, tsdb, opened)
    }

    fn step(&mut self, context: &mut Context, tsdb: &mut Tsdb) -> Result<Step, Failure> {
        let step = self.operate(context, tsdb);
        self.observe(tsdb);
        step
    }

    /// After a failed write the harness demands `Poisoned` from this: so from a commit, from
    /// an append that needs a new ref, and from a sync, each in turn.
    fn sync(tsdb: &mut Tsdb) -> ballast::Result<()> {
        let commit = tsdb.appender().commit(Durability::Buffered);
        let append = match tsdb.appender().append(&Workload::labels_of(u64::MAX), i64::MAX, 0.0) {
            Err(AppendError::Storage(error)) => Err(error),
            // Accepted, or refused for another reason: not refused as poisoned.
            Ok(_) | Err(_) => Ok(()),
        };
        // The first that is not refused as poisoned is what the harness sees.
        [commit, append]
            .into_iter()
            .find(|result| !matches!(result, Err(Error::Poisoned)))
            .unwrap_or_else(|| tsdb.sync())
    }

    fn close(tsdb: Tsdb) -> ballast::Result<()> {
        tsdb.close()
    }

    fn closed(&mut self) {
        self.model.all_synced();
    }

    /// Sealed WAL segments, as for the wal target, sealed head chunk files (all but the
    /// newest, past their header: damage to the header of a file made atomically is damage
    /// all the same, but rot there is what the header-less case already covers), and every
    /// byte of every file of the blocks the model has seen (a block a crashed compaction made
    /// is eligible once an open has shown it).
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
        for name in context.vfs.subdirectory_names(Path::new(DIRECTORY)) {
            if self.model.known_blocks.contains_key(&name) {
                eligible.extend(block_files(context, &Path::new(DIRECTORY).join(name)));
            }
        }
        eligible
    }

    fn final_phase(&mut self, context: &mut Context, tsdb: Tsdb) -> Result<(), Failure> {
        self.final_work(context, tsdb)
    }
}

/// Every file of the block at `block`, whole, as rot may strike it.
fn block_files(context: &Context, block: &Path) -> Vec<(PathBuf, Range<u64>)> {
    let chunks = block.join("chunks");
    let names = BLOCK_FILES.iter().map(|name| block.join(name));
    let chunk_files = context.vfs.durable_names(&chunks).into_iter().map(|name| chunks.join(name));
    names
        .chain(chunk_files)
        .filter_map(|path| {
            let length = context.vfs.durable_contents(&path)?.len() as u64;
            (length > 0).then_some((path, 0..length))
        })
        .collect()
}

/// Whether `path` is a file of a block (not of the head).
fn in_block(path: &Path) -> bool {
    path.starts_with(DIRECTORY) && !path.starts_with(HEAD_DIRECTORY)
}
