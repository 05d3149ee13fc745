//! Opening a store: everything that can refuse the open runs first and only reads; the open
//! writes once all of it passed, so an open that fails leaves the directory as it found it.
//!
//! The checks, in order: the directory's file names (a file logstor does not write is refused,
//! never removed), `logstor.meta` against the options, a repair plan left on disk, the data
//! files' lengths, and a scan of every segment, which in [`RecoveryMode::Strict`] refuses
//! damaged synced data. The data files are synced before the scan, so that everything the open
//! shows is durable; a sync changes no byte. Then the writes: a new store's meta file, leftover
//! temp files removed, the repair plan found on disk carried out, damage cut away in
//! [`RecoveryMode::Repair`], and torn segments sealed. Each is safe to redo, so an open that
//! fails part way through them (an I/O error, a crash) is finished by the next.

use std::path::Path;

use super::format::{self, BufferKind, Geometry, Meta, BLOCK_SIZE};
use super::index::{build_index, Entry, Index};
use super::key::IndexKey;
use super::listing::{list, Listing};
use super::scan::{highest_sequence, scan_segment, SegmentScan};
use super::segment::{place, LogstorSegments, Segment, SegmentKind, SegmentState};
use super::{io_error, LogstorOptions, RecoveryReport};
use crate::error::{CorruptionReason, Error, Result};
use crate::repair::{self, Plan, RecoveryMode};
use crate::vfs::{self, OpenMode, Vfs, VfsFile};

/// The state recovery rebuilds.
pub(super) struct Loaded {
    pub geometry: Geometry,
    pub files: Vec<Box<dyn VfsFile>>,
    pub segments: Vec<Segment>,
    pub index: Index,
    pub next_sequence: u64,
}

/// Checks the directory, then recovers the store in it (see the module docs). The directory
/// exists and its lock is held.
pub(super) fn recover(
    vfs: &dyn Vfs,
    directory: &Path,
    options: &LogstorOptions,
    report: &mut RecoveryReport,
) -> Result<Loaded> {
    let checked = check(vfs, directory, options)?;
    // Every check passed: from here on the open writes.
    write(vfs, directory, options, checked, report)
}

/// What the checks found: everything the open's writes start from.
struct Checked {
    listing: Listing,
    /// `None` for a new store.
    meta: Option<Meta>,
    geometry: Geometry,
    files: Vec<Box<dyn VfsFile>>,
    plan: Option<Plan>,
    scanned: Scanned,
}

/// Every check that can refuse the open, reading only.
fn check(vfs: &dyn Vfs, directory: &Path, options: &LogstorOptions) -> Result<Checked> {
    let listing = list(vfs, directory)?;
    let meta = read_meta(vfs, directory, &listing, options)?;
    let wanted = Geometry { segment_size: options.segment_size, segments_per_file: options.segments_per_file };
    let geometry = meta.map_or(wanted, |meta| meta.geometry);
    let files = open_data_files(vfs, directory, listing.data_files_count, geometry)?;
    let segments_total = listing.data_files_count * geometry.segments_per_file;
    let plan = if listing.has_plan { Some(read_plan(vfs, directory, segments_total, geometry)?) } else { None };
    let scanned = scan(directory, &files, geometry, plan.as_ref(), options.recovery_mode)?;
    if let Some(meta) = meta {
        check_groups(directory, meta, &scanned, options)?;
    }
    Ok(Checked { listing, meta, geometry, files, plan, scanned })
}

/// Everything the open writes, in order, then the index built from what the scans found.
fn write(
    vfs: &dyn Vfs,
    directory: &Path,
    options: &LogstorOptions,
    checked: Checked,
    report: &mut RecoveryReport,
) -> Result<Loaded> {
    let Checked { listing, meta, geometry, files, plan, mut scanned } = checked;
    remove_temp_files(vfs, directory, &listing.temp_files)?;
    if meta.is_none() {
        let meta = Meta { geometry, groups_count: Some(options.groups_count) };
        vfs::create_file_atomically(vfs, directory, format::META_FILE_NAME, &format::encode_meta(&meta))?;
    }
    let recovering = Recovering { vfs, directory, files: &files, geometry, mode: options.recovery_mode };
    if let Some(plan) = plan {
        recovering.resume(plan, &mut scanned, report)?;
    }
    for damage in std::mem::take(&mut scanned.damaged) {
        recovering.repair(damage, &mut scanned, report)?;
    }
    for torn in std::mem::take(&mut scanned.torn) {
        recovering.seal(torn)?;
        report.torn_segments_sealed += 1;
    }
    for (segment, generation) in std::mem::take(&mut scanned.unfinished_frees) {
        recovering.finish_freeing(segment, generation)?;
        report.frees_finished += 1;
    }
    report.records_count = scanned.found.len() as u64;
    let index = build_index(scanned.found);
    let mut segments = scanned.segments;
    for entry in index.values() {
        segments[usize::try_from(entry.segment).expect("fits")].live_bytes += u64::from(entry.length);
    }
    Ok(Loaded { geometry, files, segments, index, next_sequence: scanned.next_sequence })
}

/// Reads `logstor.meta` and checks the options against it; `None` for a new store.
///
/// Data files or a repair plan without a meta file are a store whose meta file was lost. Its
/// geometry is unknown, and reading its files with the options' geometry could take its
/// segments for free ones, so it is refused in every mode, as a meta file of no bytes.
fn read_meta(vfs: &dyn Vfs, directory: &Path, listing: &Listing, options: &LogstorOptions) -> Result<Option<Meta>> {
    let path = directory.join(format::META_FILE_NAME);
    if !listing.has_meta {
        if listing.data_files_count == 0 && !listing.has_plan {
            return Ok(None);
        }
        let reason = CorruptionReason::MissingFile;
        return Err(Error::Corruption { file: path, segment: 0, offset: 0, reason });
    }
    let file = vfs.open(&path, OpenMode::Read).map_err(io_error(&path, "open"))?;
    let length = file.len().map_err(io_error(&path, "len"))?;
    if length != format::META_SIZE as u64 {
        let reason = CorruptionReason::Truncated { length };
        return Err(Error::Corruption { file: path, segment: 0, offset: 0, reason });
    }
    let mut bytes = vec![0u8; format::META_SIZE];
    vfs::read_exact_retrying(file.as_ref(), &path, &mut bytes, 0)?;
    let meta = format::decode_meta(&bytes).map_err(|reason| Error::Corruption {
        file: path.clone(),
        segment: 0,
        offset: 0,
        reason,
    })?;
    if let Some((field, on_disk, given)) = options_mismatch(&meta, options) {
        return Err(Error::OptionsMismatch { file: path, field, on_disk, given });
    }
    Ok(Some(meta))
}

/// The first option that disagrees with what the meta file records: its name, the value on
/// disk and the value given.
fn options_mismatch(meta: &Meta, options: &LogstorOptions) -> Option<(&'static str, u64, u64)> {
    let recorded = [
        ("segment_size", Some(meta.geometry.segment_size), options.segment_size),
        ("segments_per_file", Some(meta.geometry.segments_per_file), options.segments_per_file),
        ("groups_count", meta.groups_count.map(u64::from), u64::from(options.groups_count)),
    ];
    recorded.into_iter().find_map(|(field, on_disk, given)| {
        on_disk.filter(|&on_disk| on_disk != given).map(|on_disk| (field, on_disk, given))
    })
}

/// For a meta file that predates the recorded groups count, refuses a count that leaves a
/// record in a group at or above it: `delete` would refuse that key's group. `on_disk` is then
/// the fewest groups that hold every record.
fn check_groups(directory: &Path, meta: Meta, scanned: &Scanned, options: &LogstorOptions) -> Result<()> {
    if meta.groups_count.is_some() {
        return Ok(());
    }
    match scanned.group_max {
        Some(group_max) if group_max >= options.groups_count => Err(Error::OptionsMismatch {
            file: directory.join(format::META_FILE_NAME),
            field: "groups_count",
            on_disk: u64::from(group_max) + 1,
            given: u64::from(options.groups_count),
        }),
        _ => Ok(()),
    }
}

/// Opens every data file, refusing one shorter than the geometry makes it, then syncs each.
fn open_data_files(vfs: &dyn Vfs, directory: &Path, count: u64, geometry: Geometry) -> Result<Vec<Box<dyn VfsFile>>> {
    let mut files = Vec::new();
    for index in 0..count {
        let path = directory.join(format::data_file_name(index));
        let file = vfs.open(&path, OpenMode::ReadWrite).map_err(io_error(&path, "open"))?;
        let length = file.len().map_err(io_error(&path, "len"))?;
        if length < geometry.file_size() {
            // Preallocation is synced before the name exists, so a short file is damage.
            let reason = CorruptionReason::Truncated { length };
            let segment = index * geometry.segments_per_file;
            return Err(Error::Corruption { file: path, segment, offset: length, reason });
        }
        files.push(file);
    }
    // What an earlier handle wrote may still be only in the page cache, even a seal (a failed
    // write can land whole). It is made durable before anything is scanned, so that everything
    // this open shows is durable, and the seals recovery writes follow durable data.
    for (index, file) in (0u64..).zip(&files) {
        let path = directory.join(format::data_file_name(index));
        file.sync_data().map_err(io_error(&path, "sync_data"))?;
    }
    Ok(files)
}

/// Reads the repair plan an earlier open left, refusing one that names a segment this store
/// does not have (logstor never removes a data file, so no plan of its own can).
/// Reads the repair plan left on disk and checks that it names a place in this store: a plan
/// is checksummed, but a cut outside the segment (from a crafted or foreign file) must be a
/// typed error, not a seal written into the next segment or an overflow.
fn read_plan(vfs: &dyn Vfs, directory: &Path, segments_total: u64, geometry: Geometry) -> Result<Plan> {
    let plan = repair::read_plan(vfs, directory)?;
    let file = directory.join(repair::PLAN_FILE_NAME);
    if plan.segment >= segments_total {
        let reason =
            CorruptionReason::HeaderMismatch { field: "segment", expected: segments_total, found: plan.segment };
        return Err(Error::Corruption { file, segment: 0, offset: 8, reason });
    }
    // A cut lands before the segment's last block, which is kept for the seal.
    let cut_max = geometry.segment_size - BLOCK_SIZE;
    if plan.truncate_at >= cut_max {
        let reason =
            CorruptionReason::HeaderMismatch { field: "truncate_at", expected: cut_max, found: plan.truncate_at };
        return Err(Error::Corruption { file, segment: plan.segment, offset: 16, reason });
    }
    Ok(plan)
}

fn remove_temp_files(vfs: &dyn Vfs, directory: &Path, names: &[String]) -> Result<()> {
    vfs::remove_all_durably(vfs, directory, names.iter().map(String::as_str)).map(drop)
}

/// A segment that was being written when the power failed, to be sealed at its last whole buffer.
#[derive(Debug)]
struct Torn {
    segment: u64,
    kind: SegmentKind,
    generation: u64,
    end: u64,
}

/// Damage to synced data in a segment, to be cut away in [`RecoveryMode::Repair`].
#[derive(Debug)]
struct Damage {
    segment: u64,
    offset: u64,
    reason: CorruptionReason,
    records_after: u64,
    /// Where the seal lies: the data a cut at `offset` drops ends there.
    sealed_at: u64,
}

/// What the scan found, and what the open must still do about it.
struct Scanned {
    segments: Vec<Segment>,
    /// Every record of the segments taken, in the order they were taken: by segment, but a
    /// segment a repair cut comes after the rest (between two copies of one record, which
    /// relocation leaves until it frees the source, either may be the one the index keeps).
    found: Vec<(IndexKey, Entry)>,
    next_sequence: u64,
    torn: Vec<Torn>,
    /// Free segments whose freeing the open finishes: `(segment, generation)` (see
    /// [`SegmentScan::Free`]).
    unfinished_frees: Vec<(u64, u64)>,
    damaged: Vec<Damage>,
    /// The highest group any record kept names (see [`check_groups`]).
    group_max: Option<u32>,
}

impl Scanned {
    /// Takes a segment that scanned free or used: its state, its records, and if it is torn, a
    /// seal to write.
    fn take(&mut self, segment: u64, bytes: &[u8], scan: SegmentScan) {
        let slot = usize::try_from(segment).expect("fits");
        if matches!(scan, SegmentScan::Free { .. } | SegmentScan::Used { sealed_at: None, .. }) {
            // Records the scan does not take are still on disk: never reissue their sequences.
            self.next_sequence = self.next_sequence.max(highest_sequence(bytes, segment).saturating_add(1));
        }
        let (kind, generation, end, sealed_at, records) = match scan {
            SegmentScan::Free { generation, unfinished } => {
                self.segments[slot] = Segment { state: SegmentState::Free, generation, written: 0, live_bytes: 0 };
                if unfinished {
                    self.unfinished_frees.push((segment, generation));
                }
                return;
            }
            SegmentScan::Used { kind, generation, end, sealed_at, records } => {
                (kind, generation, end, sealed_at, records)
            }
            SegmentScan::Damaged { .. } => panic!("a damaged segment is cut before it is taken"),
        };
        if sealed_at.is_none() {
            self.torn.push(Torn { segment, kind, generation, end });
        }
        for range in &records {
            let record = format::decode_verified_record(&bytes[range.clone()]).expect("verified by the scan");
            // Saturating: a record's checksum does not make its sequence sane.
            self.next_sequence = self.next_sequence.max(record.sequence.saturating_add(1));
            self.group_max = self.group_max.max(Some(record.group));
            let entry = Entry {
                segment,
                offset: range.start as u64,
                length: u32::try_from(record.size()).expect("fits a segment"),
                sequence: record.sequence,
                tombstone: record.value.is_none(),
                group: record.group,
                stale_copies: 0,
            };
            self.found.push((IndexKey::new(record.key), entry));
        }
        self.segments[slot] = Segment { state: SegmentState::Sealed(kind), generation, written: end, live_bytes: 0 };
    }

    /// Notes the groups of the records that verified in a segment left to be cut, which the
    /// cut keeps, for [`check_groups`] to see before anything is written.
    fn note_groups(&mut self, bytes: &[u8], records: &[std::ops::Range<usize>]) {
        for range in records {
            let record = format::decode_verified_record(&bytes[range.clone()]).expect("verified by the scan");
            self.group_max = self.group_max.max(Some(record.group));
        }
    }
}

/// Scans every segment, reading only. Damage is refused here in strict mode, and left for
/// the open to cut in repair mode; the segment a plan on disk will cut is left to be scanned
/// again once it is cut, unless it is damaged before the plan's cut (new damage, refused in
/// strict mode).
fn scan(
    directory: &Path,
    files: &[Box<dyn VfsFile>],
    geometry: Geometry,
    plan: Option<&Plan>,
    mode: RecoveryMode,
) -> Result<Scanned> {
    let segments_total = files.len() as u64 * geometry.segments_per_file;
    let placeholder = Segment { state: SegmentState::Free, generation: 1, written: 0, live_bytes: 0 };
    let mut scanned = Scanned {
        segments: vec![placeholder; usize::try_from(segments_total).expect("fits")],
        // Every record found. The index is filled from them once their number is known:
        // growing it as records come would rehash a million keys several times (reopening the
        // `kv` benchmark's store took 460 ms that way, 336 ms sized once, before `build_index`
        // grouped the inserts).
        found: Vec::new(),
        next_sequence: 1,
        torn: Vec::new(),
        unfinished_frees: Vec::new(),
        damaged: Vec::new(),
        group_max: None,
    };
    let mut bytes = vec![0u8; usize::try_from(geometry.segment_size).expect("fits")];
    for segment in 0..segments_total {
        let (path, base) = read_segment(directory, files, geometry, segment, &mut bytes)?;
        let scan = scan_segment(&bytes, segment);
        let planned_cut = plan.filter(|plan| plan.segment == segment).map(|plan| plan.truncate_at);
        match scan {
            // Damage at or after the cut of the plan on disk is what the plan was made for;
            // damage before it is new.
            SegmentScan::Damaged { offset, reason, .. }
                if mode == RecoveryMode::Strict && planned_cut.is_none_or(|cut| offset < cut) =>
            {
                return Err(Error::Corruption { file: path, segment, offset: base + offset, reason });
            }
            SegmentScan::Used { records, .. } | SegmentScan::Damaged { records, .. } if planned_cut.is_some() => {
                scanned.note_groups(&bytes, &records);
            }
            SegmentScan::Free { .. } if planned_cut.is_some() => {}
            SegmentScan::Damaged { offset, reason, records_after, sealed_at, records } => {
                scanned.note_groups(&bytes, &records);
                scanned.damaged.push(Damage { segment, offset, reason, records_after, sealed_at });
            }
            scan => scanned.take(segment, &bytes, scan),
        }
    }
    Ok(scanned)
}

/// Reads segment `segment` into `bytes`; returns its file's path and its offset there.
fn read_segment(
    directory: &Path,
    files: &[Box<dyn VfsFile>],
    geometry: Geometry,
    segment: u64,
    bytes: &mut [u8],
) -> Result<(std::path::PathBuf, u64)> {
    let (file_index, base) = place(geometry, segment);
    let path = directory.join(format::data_file_name(file_index));
    let file = &files[usize::try_from(file_index).expect("fits")];
    vfs::read_exact_retrying(file.as_ref(), &path, bytes, base)?;
    Ok((path, base))
}

/// A store whose checks passed, as the open's writes see it.
struct Recovering<'a> {
    vfs: &'a dyn Vfs,
    directory: &'a Path,
    files: &'a [Box<dyn VfsFile>],
    geometry: Geometry,
    mode: RecoveryMode,
}

impl Recovering<'_> {
    /// Finishes the repair an earlier open planned, and reports it again: until a caller
    /// writes, every open does (see [`repair::remove_plan`]). Damage found before the plan's
    /// cut is new, and repaired in turn in repair mode.
    fn resume(&self, plan: Plan, scanned: &mut Scanned, report: &mut RecoveryReport) -> Result<()> {
        repair::carry_out(self.vfs, self.directory, &LogstorSegments { geometry: self.geometry }, &plan)?;
        let segment = plan.segment;
        report.repair = Some(plan.into_report(true));
        match self.take_again(segment, scanned)? {
            Some(damage) if self.mode == RecoveryMode::Repair => self.repair(damage, scanned, report),
            Some(damage) => Err(self.corruption(damage)),
            None => Ok(()),
        }
    }

    /// Cuts damaged synced data away through a durable repair plan, and takes what is left.
    fn repair(&self, damage: Damage, scanned: &mut Scanned, report: &mut RecoveryReport) -> Result<()> {
        assert_eq!(self.mode, RecoveryMode::Repair, "a strict open refuses damage before it writes");
        let Damage { segment, offset, reason, records_after, sealed_at } = damage;
        let base = place(self.geometry, segment).1;
        let plan = Plan {
            segment,
            truncate_at: offset,
            remove: Vec::new(),
            offset: base + offset,
            records_dropped: records_after,
            bytes_dropped: sealed_at - offset,
            reason: reason.to_string(),
        };
        repair::write_plan(self.vfs, self.directory, &plan)?;
        repair::carry_out(self.vfs, self.directory, &LogstorSegments { geometry: self.geometry }, &plan)?;
        let repaired = plan.into_report(false);
        tracing::warn!(?repaired, "repaired damaged synced data");
        // Several damaged segments: report the first, with everything dropped added up.
        match &mut report.repair {
            Some(first) => {
                first.records_dropped += repaired.records_dropped;
                first.bytes_dropped += repaired.bytes_dropped;
            }
            None => report.repair = Some(repaired),
        }
        match self.take_again(segment, scanned)? {
            Some(damage) => Err(self.corruption(damage)),
            None => Ok(()),
        }
    }

    /// Scans a segment a repair cut and takes it, or returns the damage it still holds.
    fn take_again(&self, segment: u64, scanned: &mut Scanned) -> Result<Option<Damage>> {
        let mut bytes = vec![0u8; usize::try_from(self.geometry.segment_size).expect("fits")];
        read_segment(self.directory, self.files, self.geometry, segment, &mut bytes)?;
        match scan_segment(&bytes, segment) {
            SegmentScan::Damaged { offset, reason, records_after, sealed_at, .. } => {
                Ok(Some(Damage { segment, offset, reason, records_after, sealed_at }))
            }
            scan => {
                scanned.take(segment, &bytes, scan);
                Ok(None)
            }
        }
    }

    fn corruption(&self, damage: Damage) -> Error {
        let (file_index, base) = place(self.geometry, damage.segment);
        Error::Corruption {
            file: self.directory.join(format::data_file_name(file_index)),
            segment: damage.segment,
            offset: base + damage.offset,
            reason: damage.reason,
        }
    }

    /// Writes the FREE marker at offset 0 that a freeing cut short (or gone astray) left
    /// unwritten, durably, with the generation the segment's next use will carry, and reads it
    /// back: a copy gone astray may have damaged the very evidence that told this open the
    /// segment was freed, so it is written again until it is in place.
    ///
    /// Regression (logstor seed 35298 of `ballast-sim`): this marker went astray within its
    /// segment and wiped the header of the FREE marker over the seal; the next open found
    /// nothing saying the segment was freed, sealed it as torn and served a value a reported
    /// repair had dropped.
    fn finish_freeing(&self, segment: u64, generation: u64) -> Result<()> {
        let (file_index, base) = place(self.geometry, segment);
        let path = self.directory.join(format::data_file_name(file_index));
        let file = &self.files[usize::try_from(file_index).expect("fits")];
        let marker = format::marker(BufferKind::Free, 0, segment, generation, 0);
        vfs::write_verified_rewriting(file.as_ref(), &path, &marker, base)
    }

    /// Seals a torn segment at its last whole buffer, durably, so that what lies after is never
    /// read and nothing is appended after garbage.
    fn seal(&self, torn: Torn) -> Result<()> {
        let Torn { segment, kind, generation, end } = torn;
        let (file_index, base) = place(self.geometry, segment);
        let path = self.directory.join(format::data_file_name(file_index));
        let file = &self.files[usize::try_from(file_index).expect("fits")];
        let seal = format::marker(BufferKind::Seal, kind.owner(), segment, generation, end);
        file.write_at(&seal, base + end).map_err(io_error(&path, "write_at"))?;
        file.sync_data().map_err(io_error(&path, "sync_data"))
    }
}
