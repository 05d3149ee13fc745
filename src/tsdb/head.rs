//! The head: every series and its recent samples in memory, made durable by ballast's WAL
//! (one record per commit or deletion) and its checkpoints, and rebuilt from them at open.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::appender::{Appender, Durability};
use super::checkpoint;
use super::chunk_files::{self, ChunkFiles, EntryMeta, MappedChunk};
use super::head_options::HeadOptions;
use super::labels::Labels;
use super::matcher::Matcher;
use super::postings::MemPostings;
use super::record::Sample;
use super::ref_map::RefMap;
use super::refs;
use super::series::MemSeries;
use super::SeriesRef;
use crate::error::{CorruptionReason, Error, Result};
use crate::health::Health;
use crate::vfs::{self, Vfs, VfsLock};
use crate::wal::{self, Wal, WalOptions};
use crate::RecoveryMode;
/// The WAL's directory inside the head's.
const WAL_DIRECTORY: &str = "wal";

/// A series a query selected, and its samples in the queried window.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesSamples {
    pub series: SeriesRef,
    pub labels: Labels,
    /// `(t, value)`, oldest first.
    pub samples: Vec<(i64, f64)>,
}

/// What a head holds, counted without I/O: for a program that watches its memory and disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadStats {
    /// Series the head holds.
    pub series: u64,
    /// Chunks in memory (about one open chunk per series, and full ones not yet written).
    pub chunks_in_memory: u64,
    /// Samples in those chunks.
    pub samples_in_memory: u64,
    /// Chunks in the head chunk files.
    pub chunks_in_files: u64,
    /// The bytes of their entries in the chunk files (headers, chunks and checksums).
    pub chunk_file_bytes: u64,
}

/// What an open of the head found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeadRecovery {
    /// The WAL's: a torn tail cut, or a repair of damaged synced data (what it dropped).
    pub wal: wal::RecoveryReport,
    /// Damage in the head chunk files that a repairing open cut at, or a torn tail of the last
    /// one: the file, the offset and why. What they held was restored from the WAL and the
    /// checkpoint.
    pub chunk_file_damage: Option<(PathBuf, u64, CorruptionReason)>,
    /// Chunk-file entries read and dropped: those of commits the WAL no longer holds (lost
    /// with its unsynced tail, or cut by its repair), and those after the cut in its file.
    pub chunk_entries_dropped: u64,
    /// Chunk files removed after the cut (not read, so not counted above).
    pub chunk_files_removed: u64,
}

/// The `refs` file's value: `Some(None)` when it is damaged and `mode` repairs (refs then
/// restart far past every series), `None` when there is none.
fn read_refs(vfs: &dyn Vfs, directory: &Path, mode: RecoveryMode) -> Result<Option<Option<SeriesRef>>> {
    match refs::read(vfs, directory) {
        Err(error @ Error::Corruption { .. }) if mode == RecoveryMode::Repair => {
            tracing::warn!(%error, "the refs file is damaged: refs restart far past every series");
            Ok(Some(None))
        }
        read => Ok(read?.map(Some)),
    }
}

impl HeadRecovery {
    /// What the WAL's open and the chunk files' recovery (in `chunks_directory`) did.
    fn of(wal: &Wal, chunks_directory: &Path, recovered: chunk_files::Recovered) -> Self {
        let recovery = Self {
            wal: wal.recovery_report().clone(),
            chunk_file_damage: recovered
                .damage
                .map(|(name, offset, reason)| (chunks_directory.join(name), offset, reason)),
            chunk_entries_dropped: recovered.entries_dropped,
            chunk_files_removed: recovered.files_removed,
        };
        if recovery.chunk_file_damage.is_some() || recovery.chunk_entries_dropped + recovery.chunk_files_removed > 0 {
            let (damage, dropped, removed) =
                (&recovery.chunk_file_damage, recovery.chunk_entries_dropped, recovery.chunk_files_removed);
            tracing::info!(?damage, dropped, removed, "head chunk files cut");
        }
        recovery
    }
}

/// The head of a TSDB in one directory.
#[derive(Debug)]
pub struct Head {
    pub(super) vfs: Arc<dyn Vfs>,
    pub(super) directory: PathBuf,
    pub(super) health: Health,
    pub(super) wal: Wal,
    pub(super) wal_directory: PathBuf,
    pub(super) options: HeadOptions,
    pub(super) series: RefMap<MemSeries>,
    pub(super) by_labels: BTreeMap<Labels, SeriesRef>,
    pub(super) postings: MemPostings,
    pub(super) next_ref: SeriesRef,
    /// Refs below this may have been handed out (the `refs` file says so).
    pub(super) reserved_until: SeriesRef,
    /// The lowest sample time the head holds and accepts ([`Head::truncate`]).
    pub(super) min_time: i64,
    /// The newest sample time the head has taken, even if truncated or deleted since.
    pub(super) max_time: Option<i64>,
    /// The last WAL segment the newest checkpoint covers.
    pub(super) checkpoint: Option<u64>,
    /// Where the last commit's record went in the WAL.
    pub(super) last_commit: Option<wal::Position>,
    pub(super) chunk_files: ChunkFiles,
    recovery: HeadRecovery,
    /// Series with full chunks waiting for a chunk file.
    pub(super) full_chunks: Vec<SeriesRef>,
    /// The floor `open_above` was given, when the checkpoint's time is below it: the
    /// truncation a crash kept the compaction that cut the blocks from finishing.
    pub(super) truncation_owed: Option<i64>,
    /// Appenders made so far: each numbers its batch with the count ([`Appender`]).
    pub(super) appenders: u64,
    /// The samples buffer of the last committed batch, emptied, for the next to fill.
    pub(super) spare_samples: Vec<Sample>,
    _lock: Box<dyn VfsLock>,
}

/// Past this many bytes of chunk entries waiting, the head writes them to the chunk file (no
/// sync: an open keeps only the entries whose commit the WAL still holds).
const CHUNK_BYTES_BUFFERED_MAX: usize = 1 << 20;

impl Head {
    /// Opens the head in `directory` (creating it if needed), and replays its newest
    /// checkpoint and the WAL after it. A directory holding another ballast structure's files
    /// is refused with [`Error::ForeignDirectory`] before anything is written; a damaged
    /// `refs` file fails a [`RecoveryMode::Strict`] open with [`Error::Corruption`] naming it.
    /// A damaged checkpoint fails an open in either mode, naming the file and offset: the WAL
    /// segments it replaced are gone, so nothing can repair it (Prometheus learnt not to try,
    /// #7530), and no open changes the directory before it has read the checkpoint whole.
    pub fn open(vfs: Arc<dyn Vfs>, directory: impl Into<PathBuf>, options: HeadOptions) -> Result<Self> {
        Self::open_above(vfs, directory.into(), options, i64::MIN)
    }

    /// [`Head::open`] of the head of a TSDB whose blocks hold every sample older than `floor`:
    /// replay skips those samples and appends below `floor` are refused (Prometheus's
    /// `minValidTime`), so that a crash between writing a block and truncating the head counts
    /// no sample twice.
    pub(crate) fn open_above(vfs: Arc<dyn Vfs>, directory: PathBuf, options: HeadOptions, floor: i64) -> Result<Self> {
        options.check()?;
        crate::directory::check_path(&directory)?;
        crate::directory::refuse_foreign(vfs.as_ref(), &directory, crate::directory::Structure::Tsdb)?;
        let lock = vfs::open_directory_locked(vfs.as_ref(), &directory)?;
        let reserved = read_refs(vfs.as_ref(), &directory, options.recovery_mode)?;
        let newest = checkpoint::list(vfs.as_ref(), &directory)?.0.last().copied();
        let checkpoint = newest.map(|segment| checkpoint::read(vfs.as_ref(), &directory, segment)).transpose()?;
        let checkpoint_floor = checkpoint.as_ref().map_or(i64::MIN, |checkpoint| checkpoint.min_time);
        let chunks_scan =
            chunk_files::scan(vfs.as_ref(), &directory.join(chunk_files::DIRECTORY), options.recovery_mode)?;
        if newest.is_some() {
            // The checkpoint's name durable before the WAL open removes the segments it
            // covers: a checkpoint made by a head whose directory sync then failed is
            // otherwise only pending (the open reads it, and a power loss takes it back).
            vfs.sync_dir(&directory).map_err(|error| Error::io(&directory, "sync_dir", error))?;
        }
        let wal_directory = directory.join(WAL_DIRECTORY);
        let wal_options = WalOptions {
            segment_size: options.wal_segment_size,
            page_size: options.wal_page_size,
            recovery_mode: options.recovery_mode,
            first_segment: newest.map_or(0, |segment| segment + 1),
            ..WalOptions::default()
        };
        let wal = Wal::open(vfs.clone(), &wal_directory, wal_options)?;
        // Only the chunks of commits the WAL kept stay.
        let (chunk_files, mapped, recovered) =
            ChunkFiles::recover(vfs.clone(), &directory, options.chunk_file_size, chunks_scan, wal.end())?;
        let recovery = HeadRecovery::of(&wal, &directory.join(chunk_files::DIRECTORY), recovered);
        let mut head = Self {
            vfs,
            directory,
            health: Health::new(false),
            wal,
            wal_directory,
            options,
            series: RefMap::default(),
            by_labels: BTreeMap::new(),
            postings: MemPostings::default(),
            next_ref: 1,
            reserved_until: 1,
            min_time: floor,
            max_time: None,
            checkpoint: None,
            last_commit: None,
            chunk_files,
            recovery,
            full_chunks: Vec::new(),
            truncation_owed: (floor > checkpoint_floor).then_some(floor),
            appenders: 0,
            spare_samples: Vec::new(),
            _lock: lock,
        };
        let refs_damaged = reserved == Some(None);
        head.replay(checkpoint, mapped, reserved)?;
        if floor > i64::MIN {
            // Series whose every sample a block holds now: as a truncation leaves them.
            head.drop_before(head.min_time);
        }
        if refs_damaged {
            // The repair is finished by recording where refs now restart.
            refs::write(head.vfs.as_ref(), &head.directory, head.next_ref)?;
        }
        head.remove_leftovers(newest.unwrap_or(0))?;
        Ok(head)
    }

    /// Every check of an open has passed: a refs file a crash left half made, and checkpoints
    /// older than the newest (`newest`) or half made, go. Durably: a removal a crash can lose
    /// would let the next refs file's rename bring the leftover back as `refs` (tsdb seeds
    /// 21481, 25111, 32188).
    fn remove_leftovers(&self, newest: u64) -> Result<()> {
        vfs::remove_durably(self.vfs.as_ref(), &self.directory, &format!("{}.tmp", refs::FILE_NAME))?;
        checkpoint::remove_older(self.vfs.as_ref(), &self.directory, newest)
    }

    pub(super) fn insert_series(&mut self, series_ref: SeriesRef, labels: Labels) {
        self.by_labels.insert(labels.clone(), series_ref);
        self.series.insert(series_ref, MemSeries::new(labels));
    }

    /// The series' record is in the WAL: it joins the postings, which queries read.
    pub(super) fn log_series(&mut self, series_ref: SeriesRef) {
        let series = self.series.get_mut(&series_ref).expect("the series exists");
        if !series.logged {
            series.logged = true;
            self.postings.add(series_ref, &series.labels);
        }
    }

    /// A batch of samples, committed atomically or rolled back.
    pub fn appender(&mut self) -> Appender<'_> {
        Appender::new(self)
    }

    /// Writes `bytes` as one WAL record, synced if asked, and returns where it went; an I/O
    /// error poisons the head.
    pub(super) fn write_record(&mut self, bytes: &[u8], durability: Durability) -> Result<wal::Position> {
        let position = match self.wal.append(bytes) {
            Ok(position) => position,
            Err(error) => return Err(self.poison(error)),
        };
        self.last_commit = Some(position);
        if durability == Durability::Synced {
            self.sync()?;
        }
        Ok(position)
    }

    /// Adds a sample newer than every sample of its series.
    pub(super) fn apply_sample(&mut self, sample: Sample) {
        let series = self.series.get_mut(&sample.series).expect("the series exists");
        if series.append(sample.t, sample.value_bits, self.options.chunk_range) {
            self.full_chunks.push(sample.series);
        }
        self.max_time = Some(self.max_time.map_or(sample.t, |max| max.max(sample.t)));
    }

    /// Hands the full chunks cut since the last call to the chunk files, recording `position`,
    /// the WAL position of the record whose samples completed them (an open keeps an entry
    /// only if the WAL still holds that record). An I/O error poisons the head; the chunks
    /// stay in memory.
    pub(super) fn write_full_chunks(&mut self, position: wal::Position) -> Result<()> {
        for series_ref in std::mem::take(&mut self.full_chunks) {
            let series = self.series.get_mut(&series_ref).expect("the series exists");
            let mut full = series.take_full_chunks().into_iter();
            while let Some(chunk) = full.next() {
                let meta = EntryMeta {
                    series: series_ref,
                    min_time: chunk.min_time,
                    max_time: chunk.max_time,
                    last_value_bits: chunk.last_value_bits,
                    position,
                    chunk_length: u32::try_from(chunk.chunk.bytes().len()).expect("a chunk is small"),
                };
                match self.chunk_files.append(&meta, chunk.chunk.bytes()) {
                    Ok(at) => series.mapped.push(MappedChunk {
                        at,
                        min_time: chunk.min_time,
                        max_time: chunk.max_time,
                        last_value_bits: chunk.last_value_bits,
                    }),
                    Err(error) => {
                        series.chunks.splice(0..0, std::iter::once(chunk).chain(full));
                        return Err(self.poison(error));
                    }
                }
            }
        }
        // Not a WAL sync: at open that would retire the WAL's repair plan before the open
        // returns (a repair a crash could then leave unreported).
        if self.chunk_files.buffered() > CHUNK_BYTES_BUFFERED_MAX {
            if let Err(error) = self.chunk_files.flush() {
                return Err(self.poison(error));
            }
        }
        Ok(())
    }

    /// The labels of series `series`, if it exists.
    pub fn labels_of(&self, series: SeriesRef) -> Option<&Labels> {
        self.series.get(&series).filter(|series| series.logged).map(|series| &series.labels)
    }

    /// The series `matchers` select that have samples in `min_time..=max_time`, sorted by
    /// labels, each with those samples (but the deleted, and those below the time the head was
    /// truncated to). Chunks in chunk files are read back: an I/O error or damage there fails
    /// the query (and poisons nothing; the next query tries again).
    pub fn select(&self, min_time: i64, max_time: i64, matchers: &[Matcher]) -> Result<Vec<SeriesSamples>> {
        let min_time = min_time.max(self.min_time);
        let mut selected = Vec::new();
        for series_ref in self.postings.select(matchers) {
            let series = &self.series[&series_ref];
            let samples = series.samples(&self.chunk_files, min_time, max_time)?;
            if !samples.is_empty() {
                let samples = samples.into_iter().map(|(t, bits)| (t, f64::from_bits(bits))).collect();
                selected.push(SeriesSamples { series: series_ref, labels: series.labels.clone(), samples });
            }
        }
        selected.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(selected)
    }

    /// Where the last commit this handle wrote begins in the WAL: for checkers, which hold a
    /// recovery to every commit before damage the disk did.
    #[cfg(feature = "checks")]
    pub fn last_commit_position(&self) -> Option<wal::Position> {
        self.last_commit
    }

    /// The lowest sample time the head holds and accepts, once a truncation has set one.
    pub fn min_time(&self) -> Option<i64> {
        (self.min_time > i64::MIN).then_some(self.min_time)
    }

    /// The newest sample time of every series the head holds, deleted or not: for checkers,
    /// which must know what the head will refuse as out of order.
    #[cfg(feature = "checks")]
    pub fn newest_times(&self) -> BTreeMap<Labels, i64> {
        let logged = self.series.values().filter(|series| series.logged);
        logged.filter_map(|series| Some((series.labels.clone(), series.newest?.0))).collect()
    }

    /// What the open that made this handle found and did: what recovery dropped, and why.
    pub fn recovery_report(&self) -> &HeadRecovery {
        &self.recovery
    }

    /// What the head holds: series, chunks in memory and in chunk files.
    pub fn stats(&self) -> HeadStats {
        let mut stats = HeadStats { series: self.series.len() as u64, ..HeadStats::default() };
        for series in self.series.values() {
            stats.chunks_in_memory += series.chunks.len() as u64;
            stats.samples_in_memory +=
                series.chunks.iter().map(|chunk| u64::from(chunk.chunk.num_samples())).sum::<u64>();
            stats.chunks_in_files += series.mapped.len() as u64;
            stats.chunk_file_bytes += series.mapped.iter().map(|chunk| chunk.at.length).sum::<u64>();
        }
        stats
    }

    /// The time of the oldest sample the head holds (deleted or not), if it holds any.
    pub fn min_sample_time(&self) -> Option<i64> {
        let oldest = |series: &MemSeries| {
            let mapped = series.mapped.first().map(|chunk| chunk.min_time);
            mapped.or(series.chunks.first().map(|chunk| chunk.min_time))
        };
        // A chunk a truncation cut into still starts below the time the head starts at.
        self.series.values().filter_map(oldest).min().map(|oldest| oldest.max(self.min_time))
    }

    /// The newest sample time the head has taken (truncated or deleted since or not), if any.
    pub fn max_time(&self) -> Option<i64> {
        self.max_time
    }

    /// Label names in use, sorted.
    pub fn label_names(&self) -> Vec<String> {
        self.postings.label_names().map(str::to_string).collect()
    }

    /// The values label `name` takes, sorted.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        self.postings.label_values(name).map(str::to_string).collect()
    }

    /// Makes every commit so far durable.
    pub fn sync(&mut self) -> Result<()> {
        self.check_health()?;
        // The chunk entries need no sync: the WAL and the checkpoint hold all they hold.
        let synced = self.wal.sync().and_then(|()| self.chunk_files.flush());
        synced.map_err(|error| self.poison(error))
    }

    /// Syncs and closes the WAL. A poisoned head refuses with [`Error::Poisoned`].
    pub fn close(mut self) -> Result<()> {
        self.check_health()?;
        self.wal.close()?;
        self.chunk_files.sync()
    }

    /// Refuses when an earlier write or sync of the head, or of its WAL, failed.
    pub(super) fn check_health(&self) -> Result<()> {
        self.health.check()?;
        if self.wal.is_poisoned() {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    /// Marks the head poisoned by `error` (but for a record too large, which wrote nothing).
    pub(super) fn poison(&mut self, error: Error) -> Error {
        match error {
            error @ Error::RecordTooLarge { .. } => error,
            error => self.health.poison(&self.directory, error),
        }
    }

    /// The directory of the head's WAL.
    pub fn wal_directory(&self) -> &Path {
        &self.wal_directory
    }

    /// A new ref, reserving a block durably first when the reserved ones are used up.
    pub(super) fn issue_ref(&mut self) -> Result<SeriesRef> {
        self.check_health()?;
        let exhausted = || Error::InvalidArgument { reason: "every series ref has been issued".to_string() };
        let after = self.next_ref.checked_add(1).ok_or_else(exhausted)?;
        if self.next_ref >= self.reserved_until {
            let until = self.next_ref.saturating_add(self.options.refs_reserved_at_once);
            if let Err(error) = refs::write(self.vfs.as_ref(), &self.directory, until) {
                return Err(self.poison(error));
            }
            self.reserved_until = until;
        }
        let issued = self.next_ref;
        self.next_ref = after;
        Ok(issued)
    }

    /// The lowest sample time the head accepts: half a chunk range before its newest, and
    /// not below the time it was truncated to.
    pub(super) fn min_valid_time(&self) -> Option<i64> {
        let near_newest = self.max_time.map(|max| max.saturating_sub(self.options.chunk_range / 2));
        match near_newest {
            Some(near_newest) => Some(near_newest.max(self.min_time)),
            None => (self.min_time > i64::MIN).then_some(self.min_time),
        }
    }
}
