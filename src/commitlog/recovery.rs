//! Recovery: what an open does to bring a commitlog directory to a consistent state and load it.

use std::collections::BTreeSet;
use std::path::Path;

use super::format::{self, SEGMENT_HEADER_SIZE};
use super::inspect::{count_dropped, inspect, list_directory, Cut, Damage, Inspection, Listing, Scope, SegmentScan};
use super::{io_error, open_file, snapshot, Active, CommitlogOptions, RecoveryReport, Sealed, TornTail};
use crate::error::Result;
use crate::repair::{self, RecoveryMode, Segments};
use crate::segment_writer::SegmentWriter;
use crate::vfs::{self, OpenMode, Vfs};

/// The commitlog's segment naming, for the shared repair plan.
struct CommitlogSegments;

impl Segments for CommitlogSegments {
    fn file_name(&self, segment: u64) -> String {
        format::segment_file_name(segment)
    }

    fn cut(&self, vfs: &dyn Vfs, directory: &Path, segment: u64, at: u64) -> Result<()> {
        let empty = format::encode_segment_header(segment);
        let name = format::segment_file_name(segment);
        repair::cut_segment_file(vfs, directory, &name, at, SEGMENT_HEADER_SIZE as u64, &empty)
    }
}

/// The state recovery rebuilds: what a handle needs besides its lock and options.
pub(super) struct State {
    pub(super) sealed: Vec<Sealed>,
    pub(super) active: Active,
    pub(super) next_offset: u64,
    pub(super) epoch: u64,
    pub(super) snapshots: Vec<u64>,
}

/// A repair plan an earlier open made durable.
struct FoundPlan {
    plan: repair::Plan,
    /// False when the segment it cuts is gone: then the log restarted after a snapshot, which
    /// follows a plan carried out in full, and the restarted log's segment may bear the name
    /// of one the plan removes. Carrying it out again would remove the log's only segment.
    carry_out: bool,
}

/// What the read-only look at the directory found.
struct Examination {
    /// The files, with the segments a found plan removes left out.
    listing: Listing,
    plan: Option<FoundPlan>,
    /// The segments as a found plan leaves them.
    inspection: Inspection,
}

/// Reads the directory, a repair plan found there, and every segment as that plan will leave
/// it, changing nothing. Whatever can fail the open fails here, before anything is written: a
/// file no commitlog writes, a damaged plan, and in [`RecoveryMode::Strict`] damaged synced
/// data.
fn examine(vfs: &dyn Vfs, directory: &Path, options: &CommitlogOptions) -> Result<Examination> {
    let mut listing = list_directory(vfs, directory)?;
    let plan = if listing.repair_plan { Some(repair::read_plan(vfs, directory)?) } else { None };
    let plan = plan.map(|plan| FoundPlan { carry_out: listing.segments.contains(&plan.segment), plan });
    let cut = plan.as_ref().filter(|found| found.carry_out).map(|found| {
        let removed: BTreeSet<u64> = found.plan.remove.iter().copied().collect();
        listing.segments.retain(|segment| !removed.contains(segment));
        Cut { segment: found.plan.segment, at: found.plan.truncate_at }
    });
    let inspection = inspect(vfs, directory, &scope(&listing, cut, options))?;
    if options.recovery_mode == RecoveryMode::Strict {
        if let Some(damage) = inspection.damage {
            return Err(damage.into_error(directory));
        }
    }
    Ok(Examination { listing, plan, inspection })
}

fn scope<'a>(listing: &'a Listing, cut: Option<Cut>, options: &CommitlogOptions) -> Scope<'a> {
    Scope {
        segments: &listing.segments,
        indexes: &listing.indexes,
        cut,
        index_interval_bytes: options.index_interval_bytes,
    }
}

/// Brings the directory to a consistent state and loads it. [`examine`] first checks
/// everything that can fail, changing nothing; only then does recovery write: it removes temp
/// files, finishes a repair plan found on disk, repairs damage (in [`RecoveryMode::Repair`]),
/// restarts the log after a snapshot it ended below, truncates a torn tail, rewrites missing or
/// wrong index files, and removes stray index files and snapshots beyond the log.
pub(super) fn recover(
    vfs: &dyn Vfs,
    directory: &Path,
    options: &CommitlogOptions,
    report: &mut RecoveryReport,
) -> Result<State> {
    let Examination { mut listing, plan, mut inspection } = examine(vfs, directory, options)?;
    // Every check that can fail the open has passed (only I/O can fail from here on); the
    // writes begin.
    remove_temp_files(vfs, directory, &listing.temp_files, report)?;
    if let Some(found) = plan {
        if found.carry_out {
            repair::carry_out(vfs, directory, &CommitlogSegments, &found.plan)?;
        }
        report.repair = Some(found.plan.into_report(true));
    }
    if listing.segments.is_empty() {
        let start = newest_valid_snapshot(vfs, directory, &listing)?.map_or(0, |offset| offset + 1);
        create_empty_segment(vfs, directory, start)?;
        listing.segments.push(start);
        inspection = inspect(vfs, directory, &scope(&listing, None, options))?;
    }
    if let Some(damage) = inspection.damage.take() {
        // Examine refused damage in strict mode; a segment created since can hold it only if
        // the disk failed right under it.
        if options.recovery_mode == RecoveryMode::Strict {
            return Err(damage.into_error(directory));
        }
        (listing, inspection) = repair_damage(vfs, directory, options, &listing, damage, report)?;
    }
    let log_end = inspection.scans.last().expect("at least one segment").next_offset;
    // A repair can cut the log below a snapshot that is still valid. The snapshot holds every
    // transaction up to its offset, so rather than losing it, the log restarts just after it.
    if let Some(snapshot) = newest_valid_snapshot(vfs, directory, &listing)?.filter(|&offset| offset >= log_end) {
        restart_after_snapshot(vfs, directory, &listing, snapshot)?;
        report.restarted_after_snapshot = Some(snapshot);
        listing = list_directory(vfs, directory)?;
        inspection = inspect(vfs, directory, &scope(&listing, None, options))?;
        if let Some(damage) = inspection.damage.take() {
            return Err(damage.into_error(directory));
        }
    }
    load(vfs, directory, &listing, inspection, report)
}

fn remove_temp_files(vfs: &dyn Vfs, directory: &Path, names: &[String], report: &mut RecoveryReport) -> Result<()> {
    report.temp_files_removed += vfs::remove_all_durably(vfs, directory, names.iter().map(String::as_str))?;
    Ok(())
}

fn newest_valid_snapshot(vfs: &dyn Vfs, directory: &Path, listing: &Listing) -> Result<Option<u64>> {
    for &offset in listing.snapshots.iter().rev() {
        if snapshot::read_snapshot(vfs, directory, offset)?.is_some() {
            return Ok(Some(offset));
        }
    }
    Ok(None)
}

fn create_empty_segment(vfs: &dyn Vfs, directory: &Path, min_offset: u64) -> Result<()> {
    let name = format::segment_file_name(min_offset);
    vfs::create_file_atomically(vfs, directory, &name, &format::encode_segment_header(min_offset)).map(drop)
}

/// Cuts `damage` and everything after it through a durable repair plan, and returns the
/// directory as the repair left it.
fn repair_damage(
    vfs: &dyn Vfs,
    directory: &Path,
    options: &CommitlogOptions,
    listing: &Listing,
    damage: Damage,
    report: &mut RecoveryReport,
) -> Result<(Listing, Inspection)> {
    let later: Vec<u64> =
        listing.segments.iter().copied().filter(|&segment| segment > damage.cut_segment).rev().collect();
    let (records_dropped, bytes_dropped) = count_dropped(vfs, directory, damage.cut_segment, damage.cut_at, &later)?;
    let plan = repair::Plan {
        segment: damage.cut_segment,
        truncate_at: damage.cut_at,
        remove: later,
        offset: damage.offset,
        records_dropped,
        bytes_dropped,
        reason: damage.reason.to_string(),
    };
    repair::write_plan(vfs, directory, &plan)?;
    repair::carry_out(vfs, directory, &CommitlogSegments, &plan)?;
    let repaired = plan.into_report(false);
    tracing::warn!(?repaired, "repaired damaged synced data");
    report.repair = Some(repaired);
    let listing = list_directory(vfs, directory)?;
    let mut inspection = inspect(vfs, directory, &scope(&listing, None, options))?;
    if let Some(damage) = inspection.damage.take() {
        return Err(damage.into_error(directory));
    }
    Ok((listing, inspection))
}

/// Replaces every segment with an empty one starting right after `snapshot`.
fn restart_after_snapshot(vfs: &dyn Vfs, directory: &Path, listing: &Listing, snapshot: u64) -> Result<()> {
    // Newest first, each removal durable; a crash part way is finished by the next open.
    for &min_offset in listing.segments.iter().rev() {
        for name in [format::segment_file_name(min_offset), format::index_file_name(min_offset)] {
            vfs::remove_durably(vfs, directory, &name)?;
        }
    }
    create_empty_segment(vfs, directory, snapshot + 1)?;
    tracing::warn!(snapshot, "the log ended below a valid snapshot; restarted the log after it");
    Ok(())
}

/// Loads a directory whose segments `inspection` found free of damage: truncates a torn tail,
/// rewrites index files that are missing or wrong, and removes stray index files and
/// snapshots beyond the log.
fn load(
    vfs: &dyn Vfs,
    directory: &Path,
    listing: &Listing,
    mut inspection: Inspection,
    report: &mut RecoveryReport,
) -> Result<State> {
    assert!(inspection.damage.is_none(), "damage was refused or repaired before loading");
    let last = inspection.scans.pop().expect("at least one segment");
    let last_path = directory.join(format::segment_file_name(last.min_offset));
    let (file, length) = open_file(vfs, &last_path, OpenMode::ReadWrite)?;
    if let Some(end) = inspection.torn_at.filter(|&end| end < length) {
        vfs::truncate_durably(file.as_ref(), &last_path, end)?;
        report.torn_tail = Some(TornTail { segment: last.min_offset, offset: end, bytes_dropped: length - end });
        tracing::info!(segment = last.min_offset, offset = end, bytes = length - end, "truncated torn tail");
    }
    // Index files: only sealed segments have one, and it must name commits of the segment.
    let mut sealed = Vec::with_capacity(inspection.scans.len());
    for scan in &inspection.scans {
        let index = match &scan.index_file {
            Some(entries) => entries.clone(),
            None => {
                let bytes = format::encode_index(scan.min_offset, scan.length, &scan.index);
                vfs::create_file_atomically(vfs, directory, &format::index_file_name(scan.min_offset), &bytes)?;
                report.indexes_rebuilt += 1;
                scan.index.clone()
            }
        };
        let (min_offset, next_offset, length) = (scan.min_offset, scan.next_offset, scan.length);
        sealed.push(Sealed { min_offset, next_offset, length, index });
    }
    let next_offset = last.next_offset;
    let snapshots = remove_strays(vfs, directory, listing, &sealed, next_offset, report)?;
    report.segments_count = sealed.len() as u64 + 1;
    report.commits_count = sealed_counts(&inspection.scans, |scan| scan.commits_count) + last.commits_count;
    report.transactions_count =
        sealed_counts(&inspection.scans, |scan| scan.transactions_count) + last.transactions_count;
    let epoch = inspection.scans.iter().map(|scan| scan.epoch).chain([last.epoch]).max().unwrap_or(0);
    let end = last.end.min(length);
    let writer = SegmentWriter::new(last_path, file, end, end);
    let active = Active { min_offset: last.min_offset, writer, index: last.index };
    Ok(State { sealed, active, next_offset, epoch, snapshots })
}

/// Removes index files of no sealed segment and snapshots at or beyond `next_offset`; returns
/// the snapshots kept.
fn remove_strays(
    vfs: &dyn Vfs,
    directory: &Path,
    listing: &Listing,
    sealed: &[Sealed],
    next_offset: u64,
    report: &mut RecoveryReport,
) -> Result<Vec<u64>> {
    let mut removed_any = false;
    for &stray in listing.indexes.iter().filter(|&&offset| !sealed.iter().any(|segment| segment.min_offset == offset)) {
        let path = directory.join(format::index_file_name(stray));
        vfs.remove_file(&path).map_err(io_error(&path, "remove_file"))?;
        removed_any = true;
    }
    let mut snapshots = Vec::new();
    for &offset in &listing.snapshots {
        if offset >= next_offset {
            let path = directory.join(format::snapshot_file_name(offset));
            vfs.remove_file(&path).map_err(io_error(&path, "remove_file"))?;
            report.snapshots_removed += 1;
            removed_any = true;
        } else {
            snapshots.push(offset);
        }
    }
    if removed_any {
        vfs.sync_dir(directory).map_err(io_error(directory, "sync_dir"))?;
    }
    Ok(snapshots)
}

fn sealed_counts(scans: &[SegmentScan], count: impl Fn(&SegmentScan) -> u64) -> u64 {
    scans.iter().map(count).sum()
}
