//! The head: every series and its recent samples in memory, made durable by ballast's WAL
//! (one record per commit), and rebuilt from it at open.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::labels::Labels;
use super::matcher::Matcher;
use super::postings::MemPostings;
use super::record::{self, Record, Sample};
use super::refs;
use super::series::MemSeries;
use super::SeriesRef;
use crate::error::{CorruptionReason, Error, Result};
use crate::health::Health;
use crate::vfs::{self, Vfs, VfsLock};
use crate::wal::{self, Wal, WalOptions};
use crate::RecoveryMode;

/// How far past its series a repair open starts the counter when the `refs` file is damaged:
/// how far refs went is lost with it, and refs are plentiful.
const REFS_SKIPPED_AFTER_DAMAGE: u64 = 1 << 32;
/// The WAL's directory inside the head's.
const WAL_DIRECTORY: &str = "wal";

/// How the head is opened.
#[derive(Clone, Debug)]
pub struct HeadOptions {
    /// The width of a chunk range in milliseconds: no chunk spans two. Defaults to two hours.
    pub chunk_range: i64,
    /// The WAL's segment size. Defaults to 128 MiB.
    pub wal_segment_size: u64,
    /// The WAL's page size (see [`WalOptions::page_size`]). Defaults to 32 KiB.
    pub wal_page_size: u32,
    /// What opening does with damaged synced data in the WAL.
    pub recovery_mode: RecoveryMode,
    /// How many refs the head reserves at a time: it records the end of each reservation in
    /// the `refs` file (a small atomic write) before handing out the first ref of it, so that
    /// no crash can make it hand a ref out twice. At least 1; defaults to 1,024.
    pub refs_reserved_at_once: u64,
}

impl Default for HeadOptions {
    fn default() -> Self {
        let wal = WalOptions::default();
        Self {
            chunk_range: 2 * 3_600_000,
            wal_segment_size: wal.segment_size,
            wal_page_size: wal.page_size,
            recovery_mode: RecoveryMode::Strict,
            refs_reserved_at_once: 1024,
        }
    }
}

/// When a commit returns, how durable it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// In the WAL's buffer: a crash may lose it (whole) until a later sync.
    Buffered,
    /// On disk: no crash loses it.
    Synced,
}

/// Why a sample is refused. The appender's other samples are unaffected.
#[derive(Debug)]
pub enum AppendError {
    /// `t` is older than the series' newest sample.
    OutOfOrder { series: SeriesRef, t: i64, newest: i64 },
    /// `t` is older than the head accepts: half a chunk range before its newest sample.
    OutOfBounds { t: i64, min_valid: i64 },
    /// The series already has a sample at `t`, with another value.
    Duplicate { series: SeriesRef, t: i64 },
    /// No series has this ref.
    UnknownRef { series: SeriesRef },
    /// Reserving refs for a new series failed: the head is poisoned.
    Storage(Error),
}

impl std::fmt::Display for AppendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OutOfOrder { series, t, newest } => {
                write!(f, "sample at {t} is older than the newest of series {series}, at {newest}")
            }
            Self::OutOfBounds { t, min_valid } => {
                write!(f, "sample at {t} is older than the head accepts ({min_valid})")
            }
            Self::Duplicate { series, t } => write!(f, "series {series} already has another value at {t}"),
            Self::UnknownRef { series } => write!(f, "no series has ref {series}"),
            Self::Storage(error) => write!(f, "reserving series refs failed: {error}"),
        }
    }
}

impl std::error::Error for AppendError {}

/// A series a query selected, and its samples in the queried window.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesSamples {
    pub series: SeriesRef,
    pub labels: Labels,
    /// `(t, value)`, oldest first.
    pub samples: Vec<(i64, f64)>,
}

/// The head of a TSDB in one directory.
#[derive(Debug)]
pub struct Head {
    vfs: Arc<dyn Vfs>,
    directory: PathBuf,
    health: Health,
    wal: Wal,
    wal_directory: PathBuf,
    options: HeadOptions,
    series: BTreeMap<SeriesRef, MemSeries>,
    by_labels: BTreeMap<Labels, SeriesRef>,
    postings: MemPostings,
    next_ref: SeriesRef,
    /// Refs below this may have been handed out (the `refs` file says so).
    reserved_until: SeriesRef,
    /// The newest sample time in the head.
    max_time: Option<i64>,
    /// Where the last commit's record went in the WAL.
    last_commit: Option<wal::Position>,
    _lock: Box<dyn VfsLock>,
}

impl Head {
    /// Opens the head in `directory` (creating it if needed), and replays its WAL. A directory
    /// holding another ballast structure's files is refused with [`Error::ForeignDirectory`]
    /// before anything is written; a damaged `refs` file fails a [`RecoveryMode::Strict`] open
    /// with [`Error::Corruption`] naming it.
    pub fn open(vfs: Arc<dyn Vfs>, directory: impl Into<PathBuf>, options: HeadOptions) -> Result<Self> {
        if options.chunk_range <= 0 {
            return Err(Error::InvalidArgument { reason: "chunk_range must be positive".to_string() });
        }
        if options.refs_reserved_at_once == 0 {
            return Err(Error::InvalidArgument { reason: "refs_reserved_at_once must be at least 1".to_string() });
        }
        let directory = directory.into();
        crate::directory::check_path(&directory)?;
        crate::directory::refuse_foreign(vfs.as_ref(), &directory, crate::directory::Structure::Tsdb)?;
        let lock = vfs::open_directory_locked(vfs.as_ref(), &directory)?;
        let reserved = match refs::read(vfs.as_ref(), &directory) {
            Err(error @ Error::Corruption { .. }) if options.recovery_mode == RecoveryMode::Repair => {
                tracing::warn!(%error, "the refs file is damaged: refs restart far past every series");
                Some(None)
            }
            read => read?.map(Some),
        };
        let wal_directory = directory.join(WAL_DIRECTORY);
        let wal_options = WalOptions {
            segment_size: options.wal_segment_size,
            page_size: options.wal_page_size,
            recovery_mode: options.recovery_mode,
            ..WalOptions::default()
        };
        let wal = Wal::open(vfs.clone(), &wal_directory, wal_options)?;
        let mut head = Self {
            vfs,
            directory,
            health: Health::new(false),
            wal,
            wal_directory,
            options,
            series: BTreeMap::new(),
            by_labels: BTreeMap::new(),
            postings: MemPostings::default(),
            next_ref: 1,
            reserved_until: 1,
            max_time: None,
            last_commit: None,
            _lock: lock,
        };
        let refs_damaged = reserved == Some(None);
        head.replay(reserved)?;
        if refs_damaged {
            // The repair is finished by recording where refs now restart.
            refs::write(head.vfs.as_ref(), &head.directory, head.next_ref)?;
        }
        // Every check has passed; a refs file a crash left half made goes.
        let temp = format!("{}.tmp", refs::FILE_NAME);
        vfs::remove_if_present(head.vfs.as_ref(), &head.directory.join(temp))?;
        Ok(head)
    }

    /// Rebuilds the series and their samples from every WAL record, and the ref counter from
    /// them and the `reserved` value of the refs file (`Some(None)`: the file was damaged).
    fn replay(&mut self, reserved: Option<Option<SeriesRef>>) -> Result<()> {
        let mut records = Vec::new();
        for item in self.wal.records() {
            records.push(item?);
        }
        for (position, bytes) in records {
            let file = self.wal_directory.join(wal::segment_file_name(position.segment));
            let corrupt = |at| Error::Corruption {
                file: file.clone(),
                segment: position.segment,
                offset: position.offset,
                reason: CorruptionReason::BadRecord { at },
            };
            match record::decode(&bytes).map_err(corrupt)? {
                Record::Commit { series, samples } => {
                    for (series_ref, labels) in series {
                        self.replay_series(series_ref, labels).map_err(|()| corrupt(0))?;
                    }
                    for sample in samples {
                        self.replay_sample(sample).map_err(|()| corrupt(0))?;
                    }
                }
            }
        }
        let after_series = self.series.keys().next_back().map_or(1, |&last| last.saturating_add(1));
        self.next_ref = match reserved {
            None => after_series,
            Some(Some(until)) => until.max(after_series),
            Some(None) => after_series.saturating_add(REFS_SKIPPED_AFTER_DAMAGE),
        };
        // The next ref issued records a new value first.
        self.reserved_until = self.next_ref;
        Ok(())
    }

    /// A series record at replay. The same series twice (a commit after a rollback, say) is
    /// one series, its samples kept; one ref for two label sets, or two refs for one, is
    /// damage the checksums could not see.
    fn replay_series(&mut self, series_ref: SeriesRef, labels: Labels) -> std::result::Result<(), ()> {
        if let Some(existing) = self.series.get(&series_ref) {
            return if existing.labels == labels { Ok(()) } else { Err(()) };
        }
        if self.by_labels.contains_key(&labels) {
            return Err(());
        }
        self.insert_series(series_ref, labels);
        self.log_series(series_ref);
        Ok(())
    }

    fn replay_sample(&mut self, sample: Sample) -> std::result::Result<(), ()> {
        let series = self.series.get_mut(&sample.series).ok_or(())?;
        match series.newest {
            Some((newest, _)) if sample.t <= newest => Ok(()),
            _ => {
                series.append(sample.t, sample.value_bits, self.options.chunk_range);
                self.max_time = Some(self.max_time.map_or(sample.t, |max| max.max(sample.t)));
                Ok(())
            }
        }
    }

    fn insert_series(&mut self, series_ref: SeriesRef, labels: Labels) {
        self.by_labels.insert(labels.clone(), series_ref);
        self.series.insert(series_ref, MemSeries::new(labels));
    }

    /// The series' record is in the WAL: it joins the postings, which queries read.
    fn log_series(&mut self, series_ref: SeriesRef) {
        let series = self.series.get_mut(&series_ref).expect("the series exists");
        if !series.logged {
            series.logged = true;
            self.postings.add(series_ref, &series.labels);
        }
    }

    /// A batch of samples, committed atomically or rolled back.
    pub fn appender(&mut self) -> Appender<'_> {
        Appender { head: self, samples: Vec::new(), newest: BTreeMap::new() }
    }

    /// The labels of series `series`, if it exists.
    pub fn labels_of(&self, series: SeriesRef) -> Option<&Labels> {
        self.series.get(&series).filter(|series| series.logged).map(|series| &series.labels)
    }

    /// The series `matchers` select that have samples in `min_time..=max_time`, sorted by
    /// labels, each with those samples.
    pub fn select(&self, min_time: i64, max_time: i64, matchers: &[Matcher]) -> Vec<SeriesSamples> {
        let mut selected: Vec<SeriesSamples> = self
            .postings
            .select(matchers)
            .into_iter()
            .filter_map(|series_ref| {
                let series = &self.series[&series_ref];
                let samples: Vec<(i64, f64)> =
                    series.samples(min_time, max_time).into_iter().map(|(t, bits)| (t, f64::from_bits(bits))).collect();
                (!samples.is_empty()).then(|| SeriesSamples {
                    series: series_ref,
                    labels: series.labels.clone(),
                    samples,
                })
            })
            .collect();
        selected.sort_by(|a, b| a.labels.cmp(&b.labels));
        selected
    }

    /// Where the last commit this handle wrote begins in the WAL: for checkers, which hold a
    /// recovery to every commit before damage the disk did.
    #[cfg(feature = "checks")]
    pub fn last_commit_position(&self) -> Option<wal::Position> {
        self.last_commit
    }

    /// The time of the newest sample in the head, if it holds any.
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
        let synced = self.wal.sync();
        synced.map_err(|error| self.poison(error))
    }

    /// Syncs and closes the WAL. A poisoned head refuses with [`Error::Poisoned`].
    pub fn close(self) -> Result<()> {
        self.check_health()?;
        self.wal.close()
    }

    /// Refuses when an earlier write or sync of the head, or of its WAL, failed.
    fn check_health(&self) -> Result<()> {
        self.health.check()?;
        if self.wal.is_poisoned() {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    /// Marks the head poisoned by `error` (but for a record too large, which wrote nothing).
    fn poison(&mut self, error: Error) -> Error {
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
    fn issue_ref(&mut self) -> Result<SeriesRef> {
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

    /// The lowest sample time the head accepts: half a chunk range before its newest.
    fn min_valid_time(&self) -> Option<i64> {
        self.max_time.map(|max| max.saturating_sub(self.options.chunk_range / 2))
    }
}

/// A batch of samples for the head: nothing is visible or durable before `commit`, and a
/// commit is wholly kept or wholly lost by a crash.
#[derive(Debug)]
pub struct Appender<'a> {
    head: &'a mut Head,
    samples: Vec<Sample>,
    /// The newest sample of each series in this batch.
    newest: BTreeMap<SeriesRef, (i64, u64)>,
}

impl Appender<'_> {
    /// Adds a sample to the series named by `labels` (created if new); returns its ref, with
    /// which later samples can skip the lookup of the labels.
    pub fn append(&mut self, labels: &Labels, t: i64, v: f64) -> std::result::Result<SeriesRef, AppendError> {
        let series_ref = match self.head.by_labels.get(labels) {
            Some(&series_ref) => series_ref,
            None => {
                let series_ref = self.head.issue_ref().map_err(AppendError::Storage)?;
                self.head.insert_series(series_ref, labels.clone());
                series_ref
            }
        };
        self.append_ref(series_ref, t, v)?;
        Ok(series_ref)
    }

    /// Adds a sample to series `series`.
    pub fn append_ref(&mut self, series: SeriesRef, t: i64, v: f64) -> std::result::Result<(), AppendError> {
        let Some(stored) = self.head.series.get(&series) else { return Err(AppendError::UnknownRef { series }) };
        if let Some(min_valid) = self.head.min_valid_time().filter(|&min_valid| t < min_valid) {
            return Err(AppendError::OutOfBounds { t, min_valid });
        }
        let value_bits = v.to_bits();
        if let Some((newest, newest_bits)) = self.newest.get(&series).copied().or(stored.newest) {
            if t < newest {
                return Err(AppendError::OutOfOrder { series, t, newest });
            }
            if t == newest {
                // An identical resend is accepted and changes nothing.
                return if value_bits == newest_bits { Ok(()) } else { Err(AppendError::Duplicate { series, t }) };
            }
        }
        self.newest.insert(series, (t, value_bits));
        self.samples.push(Sample { series, t, value_bits });
        Ok(())
    }

    /// Writes the batch to the WAL as one record (with the records of the series it creates),
    /// syncs it if asked, and only then applies it to the head. A synced commit makes every
    /// commit before it durable too, even when it holds no sample itself. An I/O error poisons
    /// the head and applies nothing. A batch too large for one WAL record (see
    /// [`Wal::record_length_max`]) is refused with [`Error::RecordTooLarge`], applies nothing
    /// and leaves the head usable: commit it in smaller batches.
    pub fn commit(self, durability: Durability) -> Result<()> {
        let head = self.head;
        head.check_health()?;
        if self.samples.is_empty() {
            return if durability == Durability::Synced { head.sync() } else { Ok(()) };
        }
        let mut created: Vec<SeriesRef> = Vec::new();
        for sample in &self.samples {
            if !head.series[&sample.series].logged && !created.contains(&sample.series) {
                created.push(sample.series);
            }
        }
        let new_series: Vec<(SeriesRef, &Labels)> =
            created.iter().map(|series_ref| (*series_ref, &head.series[series_ref].labels)).collect();
        let bytes = record::encode_commit(&new_series, &self.samples);
        match head.wal.append(&bytes) {
            Ok(position) => head.last_commit = Some(position),
            Err(error) => return Err(head.poison(error)),
        }
        if durability == Durability::Synced {
            head.sync()?;
        }
        for series_ref in created {
            head.log_series(series_ref);
        }
        for sample in self.samples {
            let series = head.series.get_mut(&sample.series).expect("checked at append");
            series.append(sample.t, sample.value_bits, head.options.chunk_range);
            head.max_time = Some(head.max_time.map_or(sample.t, |max| max.max(sample.t)));
        }
        Ok(())
    }

    /// Drops the batch. Series it created keep their refs (they are never issued again) but
    /// hold no samples and are not selected.
    pub fn rollback(self) {}
}
