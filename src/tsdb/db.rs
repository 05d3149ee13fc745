//! A TSDB: the head and the blocks cut from it, in one directory laid out so that
//! Prometheus's tools read it (docs/format.md, "A TSDB directory"):
//!
//! ```text
//! DIR/LOCK       ballast's lock
//! DIR/<ULID>/    blocks, in Prometheus's format
//! DIR/wal/       empty: `promtool tsdb dump` opens it, and fails without it or on ballast's WAL
//! DIR/head/      ballast's head: its WAL, checkpoints, head chunk files and refs file
//! ```
//!
//! Prometheus's tools list only the directories whose names are ULIDs, so they never look in
//! `head/`, nor in a `<ULID>.tmp-for-creation` or a block set aside as `<ULID>.damaged`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::block::{self, Block, BlockMeta, Series, Ulid, DELETION_SUFFIX, TEMP_SUFFIX};
use super::{Appender, Head, HeadOptions, HeadRecovery, Matcher};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::vfs::{self, Vfs, VfsLock};
use crate::RecoveryMode;

/// The head's directory inside the TSDB's.
pub const HEAD_DIRECTORY: &str = "head";
/// The directory Prometheus's tools open as the WAL: kept empty.
pub const PROMETHEUS_WAL_DIRECTORY: &str = "wal";
/// The suffix a repairing open gives a damaged block's directory: set aside, not deleted.
pub const DAMAGED_SUFFIX: &str = ".damaged";

/// How a TSDB is opened.
#[derive(Clone, Debug)]
pub struct TsdbOptions {
    /// The head's; its `recovery_mode` governs the blocks too.
    pub head: HeadOptions,
    /// The size a block's chunk files are preallocated to (4 KiB to 4 GiB); each is truncated
    /// to its final size when the block is complete. Defaults to 512 MiB, as Prometheus.
    pub block_chunk_file_size: u64,
    /// The ranges blocks are compacted into, in milliseconds, each a multiple of the one
    /// before; the first is the head's chunk range. Defaults to the chunk range times 1, 3, 9,
    /// 27 and 81 (2 h to 162 h), as Prometheus's exponential ranges.
    pub block_ranges: Vec<i64>,
    /// Blocks whose max time is more than this many milliseconds before the newest block's
    /// are removed by [`Tsdb::compact`]. `None` keeps them.
    pub retention_duration: Option<i64>,
    /// Past this many bytes of blocks (counted newest first), older blocks are removed by
    /// [`Tsdb::compact`]; the newest block always stays. `None` keeps them. The head's files
    /// are not counted.
    pub retention_bytes: Option<u64>,
}

impl Default for TsdbOptions {
    fn default() -> Self {
        let head = HeadOptions::default();
        let block_ranges = [1, 3, 9, 27, 81].iter().map(|factor| head.chunk_range * factor).collect();
        Self {
            head,
            block_chunk_file_size: block::CHUNK_FILE_SIZE_DEFAULT,
            block_ranges,
            retention_duration: None,
            retention_bytes: None,
        }
    }
}

impl TsdbOptions {
    /// Options whose head has `chunk_range` and whose block ranges follow it (times 1, 3, 9, 27
    /// and 81); everything else the default.
    pub fn with_chunk_range(chunk_range: i64) -> Self {
        let head = HeadOptions { chunk_range, ..HeadOptions::default() };
        let block_ranges = [1, 3, 9, 27, 81].iter().map(|factor| chunk_range.saturating_mul(*factor)).collect();
        Self { head, block_ranges, ..Self::default() }
    }

    fn check(&self) -> Result<()> {
        let invalid = |reason: &str| Err(Error::InvalidArgument { reason: reason.to_string() });
        if !(4096..=u64::from(u32::MAX)).contains(&self.block_chunk_file_size) {
            return invalid("block_chunk_file_size must be between 4 KiB and 4 GiB");
        }
        if self.block_ranges.first() != Some(&self.head.chunk_range) {
            return invalid("block_ranges must begin with the head's chunk_range");
        }
        if !self.block_ranges.windows(2).all(|pair| pair[1] > pair[0] && pair[1] % pair[0] == 0) {
            return invalid("each of block_ranges must be a larger multiple of the one before");
        }
        if self.retention_duration.is_some_and(|duration| duration <= 0) {
            return invalid("retention_duration must be positive");
        }
        Ok(())
    }
}

/// What an open of a TSDB found and did.
#[derive(Debug, Default)]
pub struct TsdbRecovery {
    /// The head's.
    pub head: HeadRecovery,
    /// Blocks a crash left half made (`<ULID>.tmp-for-creation`) or half removed
    /// (`<ULID>.tmp-for-deletion`), removed.
    pub temporary_blocks_removed: Vec<PathBuf>,
    /// Blocks a compaction had already merged into another (their ULIDs are its parents'), which
    /// a crash kept from being removed: removed.
    pub compacted_blocks_removed: Vec<PathBuf>,
    /// Damaged blocks a repairing open set aside as `<ULID>.damaged`, with what was wrong.
    pub blocks_set_aside: Vec<(PathBuf, Error)>,
    /// Blocks an earlier open set aside (`<ULID>.damaged`, as they are named now), still
    /// waiting for an operator: their samples are not queried.
    pub blocks_set_aside_before: Vec<PathBuf>,
}

/// A TSDB in one directory: a head and its blocks.
#[derive(Debug)]
pub struct Tsdb {
    pub(super) vfs: Arc<dyn Vfs>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) directory: PathBuf,
    pub(super) head: Head,
    /// Sorted by min time, then ULID.
    pub(super) blocks: Vec<Block>,
    pub(super) options: TsdbOptions,
    recovery: TsdbRecovery,
    _lock: Box<dyn VfsLock>,
}

impl Tsdb {
    /// Opens the TSDB in `directory`, creating it if needed: its blocks (each block's meta,
    /// index, tombstones and chunk file headers read and checked; a repairing open reads and
    /// checks every chunk too), then its head, which replays only samples newer than every
    /// block. A damaged block fails a [`RecoveryMode::Strict`] open, naming the file and
    /// offset, before anything changed; a [`RecoveryMode::Repair`] open sets it aside as
    /// `<ULID>.damaged` (its samples are lost to queries; the files stay for an operator). An
    /// open after a crash that interrupted a head compaction finishes it (truncating the
    /// head to the newest block).
    /// Damage inside a chunk, which a strict open does not read, fails the queries that reach
    /// it, naming the file and offset; a repairing open then sets that block aside. Blocks a crash left half made are removed. `clock`
    /// gives block names (ULIDs) their time; nothing else reads it.
    pub fn open(
        vfs: Arc<dyn Vfs>,
        clock: Arc<dyn Clock>,
        directory: impl Into<PathBuf>,
        options: TsdbOptions,
    ) -> Result<Self> {
        let directory = directory.into();
        crate::directory::check_path(&directory)?;
        options.check()?;
        crate::directory::refuse_foreign(vfs.as_ref(), &directory, crate::directory::Structure::Tsdb)?;
        refuse_bare_head(vfs.as_ref(), &directory)?;
        let lock = vfs::open_directory_locked(vfs.as_ref(), &directory)?;
        let found = find_blocks(vfs.as_ref(), &directory, options.head.recovery_mode)?;
        let floor = found.blocks.iter().map(|block| block.meta().max_time).max().unwrap_or(i64::MIN);
        let mut head = Head::open_above(vfs.clone(), directory.join(HEAD_DIRECTORY), options.head.clone(), floor)?;
        let wal = directory.join(PROMETHEUS_WAL_DIRECTORY);
        vfs.create_dir_all(&wal).map_err(|error| Error::io(&wal, "create_dir_all", error))?;
        for temp in &found.temporary {
            block::remove_block_directory(vfs.as_ref(), temp)?;
        }
        for superseded in &found.superseded {
            block::delete_block(vfs.as_ref(), superseded.path())?;
        }
        for (path, error) in &found.damaged {
            let aside = path.with_file_name(format!("{}{DAMAGED_SUFFIX}", path.file_name().unwrap().to_string_lossy()));
            tracing::warn!(block = %path.display(), %error, "a damaged block is set aside");
            vfs.rename(path, &aside).map_err(|error| Error::io(path, "rename", error))?;
        }
        if !found.temporary.is_empty() || !found.damaged.is_empty() {
            vfs.sync_dir(&directory).map_err(|error| Error::io(&directory, "sync_dir", error))?;
        }
        if let Some(floor) = head.truncation_owed.take() {
            // A crash came between a block's rename and the head's truncation: finish the
            // compaction, so that the head's own checkpoint keeps the floor even if a repair
            // later sets the block aside (else the WAL's copy of its samples would replay).
            head.truncate(floor)?;
        }
        let recovery = TsdbRecovery {
            head: head.recovery_report().clone(),
            temporary_blocks_removed: found.temporary,
            compacted_blocks_removed: found.superseded.iter().map(|block| block.path().to_path_buf()).collect(),
            blocks_set_aside: found.damaged,
            blocks_set_aside_before: found.set_aside_before,
        };
        if !recovery.blocks_set_aside_before.is_empty() {
            let count = recovery.blocks_set_aside_before.len();
            tracing::warn!(count, "blocks set aside by an earlier open wait for an operator");
        }
        Ok(Self { vfs, clock, directory, head, blocks: found.blocks, options, recovery, _lock: lock })
    }

    /// A batch of samples for the head, committed atomically or rolled back. Samples older
    /// than the newest block's max time are out of bounds. Any failed write of the TSDB (a
    /// block's, or the head's) poisons it: every later write is refused with
    /// [`Error::Poisoned`] until it is reopened.
    pub fn appender(&mut self) -> Appender<'_> {
        self.head.appender()
    }

    /// The head, for what a TSDB does not wrap (its stats, label values, deletion in it).
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Deletes the samples in `min_time..=max_time` of the series `matchers` select: in every
    /// block the range reaches (oldest first, each block's tombstones file replaced
    /// atomically and synced), then in the head (one WAL record, durable if `durability`
    /// says so; see [`Head::delete`]). When a block is reached, the head is synced first, so
    /// that what a crash loses is always the newest changes: never an earlier commit while a
    /// later deletion stays. Each part is atomic, the whole is not: a crash part way leaves
    /// the range deleted in the older blocks only, and deleting again finishes it.
    /// Compaction drops deleted samples for good. Returns how many series, per block and
    /// head, it hid samples of. A failure in a block poisons the TSDB, as a failed write in the head does.
    pub fn delete(
        &mut self,
        min_time: i64,
        max_time: i64,
        matchers: &[Matcher],
        durability: super::Durability,
    ) -> Result<u64> {
        self.head.check_health()?;
        let reached: Vec<usize> =
            (0..self.blocks.len()).filter(|&index| self.blocks[index].meta().overlaps(min_time, max_time)).collect();
        if !reached.is_empty() {
            self.head.sync()?;
        }
        let mut deleted = 0;
        for index in reached {
            match self.blocks[index].delete(self.vfs.as_ref(), min_time, max_time, matchers) {
                Ok(count) => deleted += count,
                Err(error) => return Err(self.head.poison(error)),
            }
        }
        Ok(deleted + self.head.delete(min_time, max_time, matchers, durability)?)
    }

    /// The blocks, oldest first.
    pub fn blocks(&self) -> impl Iterator<Item = &BlockMeta> {
        self.blocks.iter().map(Block::meta)
    }

    /// What the open that made this handle found and did.
    pub fn recovery_report(&self) -> &TsdbRecovery {
        &self.recovery
    }

    /// The directory.
    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// The series `matchers` select with samples in `min_time..=max_time`, over the blocks
    /// and the head: sorted by labels, each with its samples in time order, a sample two
    /// overlapping blocks both hold returned once, tombstones applied.
    pub fn select(&self, min_time: i64, max_time: i64, matchers: &[Matcher]) -> Result<Vec<Series>> {
        let mut parts: Vec<Vec<Series>> = Vec::with_capacity(self.blocks.len() + 1);
        for block in self.blocks.iter().filter(|block| block.meta().overlaps(min_time, max_time)) {
            parts.push(block.select(min_time, max_time, matchers)?);
        }
        let head = self.head.select(min_time, max_time, matchers)?;
        parts.push(head.into_iter().map(|series| Series { labels: series.labels, samples: series.samples }).collect());
        Ok(merge(parts))
    }

    /// Checkpoints the head, dropping nothing ([`Head::checkpoint`]): the WAL shrinks to what
    /// the head holds. Compaction checkpoints as it cuts blocks; this is for a head that has
    /// not yet spanned enough to cut one.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.head.checkpoint()
    }

    /// Syncs the head and closes it.
    pub fn close(self) -> Result<()> {
        self.head.close()
    }

    /// Makes the head's commits so far durable.
    pub fn sync(&mut self) -> Result<()> {
        self.head.sync()
    }

    /// A name for a new block spanning `min_time..max_time`: the clock's milliseconds, and
    /// entropy drawn from the range (no randomness of the engine's own), stepped past any
    /// name already in use.
    pub(super) fn new_ulid(&self, min_time: i64, max_time: i64) -> Ulid {
        let millis = u64::try_from(self.clock.wall().as_millis()).unwrap_or(u64::MAX);
        let mut entropy = mix(min_time.cast_unsigned(), max_time.cast_unsigned());
        loop {
            let ulid = Ulid::new(millis, entropy);
            let taken = self.blocks.iter().any(|block| block.meta().ulid == ulid);
            if !taken {
                return ulid;
            }
            entropy = entropy.wrapping_add(1);
        }
    }
}

/// Refuses a directory that holds a bare head (`Head::open`'s files at its top): a TSDB keeps
/// its head in `head/`, so it would not see that head's samples, and its `wal/` would be
/// taken for Prometheus's.
fn refuse_bare_head(vfs: &dyn Vfs, directory: &Path) -> Result<()> {
    let names = match vfs.read_dir(directory) {
        Ok(names) => names,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(Error::io(directory, "read_dir", error)),
    };
    match names.iter().find(|name| super::owns_file_name(name)) {
        Some(name) => Err(Error::ForeignDirectory {
            directory: directory.to_path_buf(),
            holds: format!("a ballast TSDB head opened with Head::open (file {name})"),
            expected: "a ballast TSDB with blocks (its head in head/)",
        }),
        None => Ok(()),
    }
}

/// 80 bits mixed from `a` and `b` (SplitMix64's finalizer on each).
fn mix(a: u64, b: u64) -> u128 {
    let finalize = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (u128::from(finalize(a)) << 64 | u128::from(finalize(b ^ 0x9E37_79B9_7F4A_7C15))) & ((1 << 80) - 1)
}

/// What an open found among the TSDB directory's subdirectories.
struct FoundBlocks {
    blocks: Vec<Block>,
    /// Directories named `<ULID>.damaged`.
    set_aside_before: Vec<PathBuf>,
    /// Blocks another block names as its parents: already in it.
    superseded: Vec<Block>,
    temporary: Vec<PathBuf>,
    damaged: Vec<(PathBuf, Error)>,
}

/// Opens every block in `directory`, and lists the temporary ones; a damaged block is an
/// error in `Strict` mode and listed in `Repair` mode. Changes nothing.
fn find_blocks(vfs: &dyn Vfs, directory: &Path, mode: RecoveryMode) -> Result<FoundBlocks> {
    let names = vfs.subdirectories(directory).map_err(|error| Error::io(directory, "subdirectories", error))?;
    let mut found = FoundBlocks {
        blocks: Vec::new(),
        set_aside_before: Vec::new(),
        superseded: Vec::new(),
        temporary: Vec::new(),
        damaged: Vec::new(),
    };
    for name in names {
        let path = directory.join(&name);
        let temporary = [TEMP_SUFFIX, DELETION_SUFFIX]
            .iter()
            .any(|suffix| name.strip_suffix(suffix).is_some_and(|ulid| Ulid::parse(ulid).is_some()));
        if temporary {
            found.temporary.push(path);
            continue;
        }
        if name.strip_suffix(DAMAGED_SUFFIX).is_some_and(|ulid| Ulid::parse(ulid).is_some()) {
            found.set_aside_before.push(path);
            continue;
        }
        if Ulid::parse(&name).is_none() {
            continue;
        }
        let opened = Block::open(vfs, &path).and_then(|block| match mode {
            RecoveryMode::Repair => block.verify_chunks().map(|()| block),
            RecoveryMode::Strict => Ok(block),
        });
        match opened {
            Ok(block) => found.blocks.push(block),
            Err(error @ (Error::Corruption { .. } | Error::BadFileName { .. })) if mode == RecoveryMode::Repair => {
                found.damaged.push((path, error));
            }
            Err(error) => return Err(error),
        }
    }
    let parents: std::collections::BTreeSet<Ulid> =
        found.blocks.iter().flat_map(|block| block.meta().parents.iter().map(|parent| parent.ulid)).collect();
    let (superseded, blocks) = found.blocks.into_iter().partition(|block| parents.contains(&block.meta().ulid));
    found.superseded = superseded;
    found.blocks = blocks;
    found.blocks.sort_by_key(|block| (block.meta().min_time, block.meta().ulid));
    Ok(found)
}

/// Merges per-source query results (each sorted by labels) into one: series by labels, each
/// series' samples in time order, one sample per time (the first source's, oldest block first).
pub(super) fn merge(parts: Vec<Vec<Series>>) -> Vec<Series> {
    let mut merged: std::collections::BTreeMap<super::Labels, Vec<(i64, f64)>> = std::collections::BTreeMap::new();
    for part in parts {
        for series in part {
            merged.entry(series.labels).or_default().extend(series.samples);
        }
    }
    merged
        .into_iter()
        .map(|(labels, mut samples)| {
            // Stable: of two samples at one time, the one from the earlier source stays.
            samples.sort_by_key(|&(t, _)| t);
            samples.dedup_by_key(|&mut (t, _)| t);
            Series { labels, samples }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_one_sample_per_time_in_order() {
        let labels = |v: &str| super::super::Labels::new([("a", v)]).unwrap();
        let a = vec![Series { labels: labels("x"), samples: vec![(1, 1.0), (5, 5.0)] }];
        let b = vec![
            Series { labels: labels("w"), samples: vec![(2, 2.0)] },
            Series { labels: labels("x"), samples: vec![(3, 3.0), (5, 50.0)] },
        ];
        let merged = merge(vec![a, b]);
        assert_eq!(merged[0], Series { labels: labels("w"), samples: vec![(2, 2.0)] });
        assert_eq!(merged[1], Series { labels: labels("x"), samples: vec![(1, 1.0), (3, 3.0), (5, 5.0)] });
    }
}
