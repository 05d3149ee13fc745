//! Recovery at open, in two phases so that an open that fails changes nothing (issue 11).
//!
//! The first phase only reads: [`check_page_size`] compares the page size the segments were
//! written with to the options, and [`survey`] runs every check of synced data that can fail a
//! strict open, on the log as it will be once a repair plan found on disk is carried out. The
//! second phase writes, and only the open's own I/O can fail it: [`finish`] carries out what the
//! survey found (a repair, in [`RecoveryMode::Repair`]) and cuts the last segment's torn tail,
//! after the open has resumed the plan and removed leftovers ([`remove_leftovers`]).

use std::path::Path;

use super::listing::{recycle_file_name, segment_file_name, Listing};
use super::scan::{self, SegmentScanner};
use super::segment::{open_segment, scan_segment, Ending, SegmentFile};
use super::write::{create_segment, ActiveSegment};
use super::{RecoveryReport, TornTail, WalOptions, SEGMENT_HEADER_SIZE};
use crate::error::{CorruptionReason, Error, Result};
use crate::repair::{self, Plan, RecoveryMode, Segments};
use crate::vfs::{self, OpenMode, Vfs, VfsFile};

/// Fails with [`Error::OptionsMismatch`] if the log in `directory` was written with a page size
/// other than `page_size`. The first segment whose header verifies tells: a damaged header
/// says nothing (the survey reports it), and a later segment that disagrees with the first is
/// corruption, not a mistake in the options, since no options open such a log. Reads only the
/// headers, so that a log is never judged by scanning it with the wrong geometry.
pub(super) fn check_page_size(vfs: &dyn Vfs, directory: &Path, segments: &[u64], page_size: u32) -> Result<()> {
    for &number in segments {
        let path = directory.join(segment_file_name(number));
        let file = vfs.open(&path, OpenMode::Read).map_err(|error| Error::io(&path, "open", error))?;
        let length = file.len().map_err(|error| Error::io(&path, "len", error))?;
        match scan::read_segment_header(file.as_ref(), &path, number, length) {
            Ok(header) if header.page_size == page_size => return Ok(()),
            Ok(header) => {
                return Err(Error::OptionsMismatch {
                    file: path,
                    field: "page_size",
                    on_disk: u64::from(header.page_size),
                    given: u64::from(page_size),
                });
            }
            Err(Error::Corruption { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// What the reading phase of recovery found. Everything the open writes follows from it.
pub(super) struct Survey {
    /// The first and last segments of the log once the repair plan found on disk, if any, is
    /// carried out.
    first: u64,
    last: u64,
    /// Whole records in the sealed segments checked, up to the damage if there is any.
    records_count: u64,
    /// Damage to synced data. Only a repairing open gets this far with it.
    damage: Option<Damage>,
}

/// Damage to synced data found by the survey, for [`repair`].
struct Damage {
    segment: u64,
    /// The damaged segment, when its header verified and the damage lies after it.
    damaged: Option<DamagedSegment>,
    offset: u64,
    reason: CorruptionReason,
}

struct DamagedSegment {
    file: Box<dyn VfsFile>,
    path: std::path::PathBuf,
    length: u64,
    truncate_at: u64,
}

/// Checks every segment of the log, reading only: the headers and the records of every sealed
/// segment, and the header of the last one (what follows the last one's records is a torn
/// tail, which [`finish`] cuts: it can never fail the open). `plan` is a repair plan found on
/// disk: the segments it removes are left out, and a last segment it rewrites empty is not
/// read. Damage is [`Error::Corruption`] in [`RecoveryMode::Strict`]; in
/// [`RecoveryMode::Repair`] the survey stops at it and hands it on. `None` when the directory
/// holds no segment.
pub(super) fn survey(
    vfs: &dyn Vfs,
    directory: &Path,
    options: &WalOptions,
    segments: &[u64],
    plan: Option<&Plan>,
) -> Result<Option<Survey>> {
    let kept: Vec<u64> =
        segments.iter().copied().filter(|number| plan.is_none_or(|plan| !plan.remove.contains(number))).collect();
    let (Some(&first), Some(&last)) = (kept.first(), kept.last()) else {
        return Ok(None);
    };
    let mut survey = Survey { first, last, records_count: 0, damage: None };
    let rewritten = plan.is_some_and(|plan| plan.segment == last && plan.truncate_at < SEGMENT_HEADER_SIZE as u64);
    for &number in &kept {
        if number == last && rewritten {
            break;
        }
        let segment = match open_segment(vfs, directory, number, OpenMode::Read, options.page_size) {
            Ok(segment) => segment,
            Err(Error::Corruption { offset, reason, .. }) => {
                // The header is written and synced before the segment's name exists, so a bad
                // header is never a torn write.
                return survey.damaged(directory, options, Damage { segment: number, damaged: None, offset, reason });
            }
            Err(error) => return Err(error),
        };
        if number == last {
            break;
        }
        let scan = scan_segment(&segment, number, options.page_size, Ending::of(true, segment.header))?;
        survey.records_count += scan.records_count;
        if let Some((offset, truncate_at, reason)) = scan.damage {
            let SegmentFile { path, file, length, .. } = segment;
            let damaged = Some(DamagedSegment { file, path, length, truncate_at });
            return survey.damaged(directory, options, Damage { segment: number, damaged, offset, reason });
        }
    }
    Ok(Some(survey))
}

impl Survey {
    /// Fails a strict open with the damage; keeps it for a repairing one.
    fn damaged(mut self, directory: &Path, options: &WalOptions, damage: Damage) -> Result<Option<Self>> {
        if options.recovery_mode == RecoveryMode::Strict {
            return Err(Error::Corruption {
                file: directory.join(segment_file_name(damage.segment)),
                segment: damage.segment,
                offset: damage.offset,
                reason: damage.reason,
            });
        }
        self.damage = Some(damage);
        Ok(Some(self))
    }
}

/// Removes leftover temp files, the segments below [`WalOptions::first_segment`], and the
/// files kept for reuse beyond what [`WalOptions::recycle_segments`] allows now (the option
/// may have changed; the newest go).
/// Returns the files kept for reuse, ascending.
pub(super) fn remove_leftovers(
    vfs: &dyn Vfs,
    directory: &Path,
    listing: &Listing,
    recycle_segments: usize,
    report: &mut RecoveryReport,
) -> Result<Vec<u64>> {
    let mut recycled = listing.recycled.clone();
    let surplus: Vec<String> =
        recycled.split_off(recycled.len().min(recycle_segments)).into_iter().map(recycle_file_name).collect();
    let obsolete: Vec<String> = listing.obsolete.iter().copied().map(segment_file_name).collect();
    let names = listing.temp_files.iter().chain(&surplus).chain(&obsolete).map(String::as_str);
    vfs::remove_all_durably(vfs, directory, names)?;
    report.temp_files_removed += listing.temp_files.len() as u64;
    Ok(recycled)
}

/// The writing phase: repairs the damage the survey found, or cuts the last segment's torn
/// tail, or creates the first segment in an empty log. Returns the first segment and the active
/// one.
pub(super) fn finish(
    vfs: &dyn Vfs,
    directory: &Path,
    options: &WalOptions,
    survey: Option<Survey>,
    report: &mut RecoveryReport,
) -> Result<(u64, ActiveSegment)> {
    let Some(survey) = survey else {
        let first = options.first_segment;
        return Ok((first, create_segment(vfs, directory, first, options)?));
    };
    report.records_count = survey.records_count;
    let active = match survey.damage {
        Some(damage) => repair(vfs, directory, options, survey.last, damage, report)?,
        None => recover_last_segment(vfs, directory, options, survey.last, report)?,
    };
    Ok((survey.first, active))
}

/// Scans the last segment, whose data may end anywhere: anything but zeros after it is a torn
/// tail, cut off with the preallocated space it lies in, so that no stale fragment can follow
/// the records appended next. Zeros alone are preallocation, and stay.
fn recover_last_segment(
    vfs: &dyn Vfs,
    directory: &Path,
    options: &WalOptions,
    number: u64,
    report: &mut RecoveryReport,
) -> Result<ActiveSegment> {
    let segment = open_segment(vfs, directory, number, OpenMode::ReadWrite, options.page_size)?;
    let scan = scan_segment(&segment, number, options.page_size, Ending::Open)?;
    let SegmentFile { path, file, length, header } = segment;
    report.records_count += scan.records_count;
    let end = scan.end;
    let mut allocated = length;
    if scan.torn {
        vfs::truncate_durably(file.as_ref(), &path, end)?;
        report.torn_tail = Some(TornTail { segment: number, offset: end, bytes_dropped: length - end });
        tracing::info!(segment = number, offset = end, bytes = length - end, "truncated torn tail");
        allocated = end;
    }
    Ok(ActiveSegment::recovered(number, path, file, end, allocated, header.seals(), options))
}

/// Repairs the damage in segment `damage.segment`. Counts what will be dropped, writes that
/// plan durably to the `REPAIR` file, then carries it out; an open interrupted part way finds
/// the plan and finishes it, so a repair can never end up dropping synced records without
/// reporting them.
fn repair(
    vfs: &dyn Vfs,
    directory: &Path,
    options: &WalOptions,
    last: u64,
    damage: Damage,
    report: &mut RecoveryReport,
) -> Result<ActiveSegment> {
    let Damage { segment: number, damaged, offset, reason } = damage;
    let page_size = options.page_size;
    let (truncate_at, mut dropped) = match &damaged {
        Some(damaged) if damaged.truncate_at >= SEGMENT_HEADER_SIZE as u64 => {
            let DamagedSegment { file, path, length, truncate_at } = damaged;
            (*truncate_at, count_dropped(file.as_ref(), path, number, page_size, *truncate_at, *length)?)
        }
        // The header is damaged: the segment is rewritten as an empty one, its header alone.
        _ => (0, count_dropped_opening(vfs, directory, number, page_size, SEGMENT_HEADER_SIZE as u64)?),
    };
    drop(damaged);
    for later in number + 1..=last {
        let (records, bytes) = count_dropped_opening(vfs, directory, later, page_size, 0)?;
        dropped.0 += records;
        dropped.1 += bytes;
    }
    let (records_dropped, bytes_dropped) = dropped;
    let plan = Plan {
        segment: number,
        truncate_at,
        remove: (number + 1..=last).rev().collect(),
        offset,
        records_dropped,
        bytes_dropped,
        reason: reason.to_string(),
    };
    repair::write_plan(vfs, directory, &plan)?;
    repair::carry_out(vfs, directory, &WalSegments { page_size }, &plan)?;
    let repaired = plan.into_report(false);
    tracing::warn!(?repaired, "repaired damaged synced data");
    report.repair = Some(repaired);
    let SegmentFile { path, file, length, header } =
        open_segment(vfs, directory, number, OpenMode::ReadWrite, page_size)?;
    Ok(ActiveSegment::recovered(number, path, file, length, length, header.seals(), options))
}

/// What a repair drops from segment `number` when it keeps its first `kept` bytes: the records
/// that verify after them (see [`SegmentScanner::count_records_after_damage`]), wherever they lie
/// and whether or not the segment's header verifies, and the bytes cut off the file. `kept` is
/// the cut of the damaged segment, the header of one rewritten empty, or zero for one removed.
///
/// Regression: a segment rewritten empty counted its new header as dropped, and the records of
/// a later segment whose header was damaged too were not counted (their fragments verify all
/// the same); see also [`SegmentScanner::count_records_after_damage`].
fn count_dropped(
    file: &dyn VfsFile,
    path: &Path,
    number: u64,
    page_size: u32,
    kept: u64,
    length: u64,
) -> Result<(u64, u64)> {
    let start = kept.max(SEGMENT_HEADER_SIZE as u64);
    let records = if start < length {
        SegmentScanner::new(file, path, number, page_size, start, length).count_records_after_damage()?
    } else {
        0
    };
    Ok((records, length.saturating_sub(kept)))
}

/// [`count_dropped`] for a segment it opens.
fn count_dropped_opening(
    vfs: &dyn Vfs,
    directory: &Path,
    number: u64,
    page_size: u32,
    kept: u64,
) -> Result<(u64, u64)> {
    let path = directory.join(segment_file_name(number));
    let file = vfs.open(&path, OpenMode::Read).map_err(|error| Error::io(&path, "open", error))?;
    let length = file.len().map_err(|error| Error::io(&path, "len", error))?;
    count_dropped(file.as_ref(), &path, number, page_size, kept, length)
}

/// The WAL's segment naming, for the shared repair plan.
pub(super) struct WalSegments {
    pub(super) page_size: u32,
}

impl Segments for WalSegments {
    fn file_name(&self, segment: u64) -> String {
        segment_file_name(segment)
    }

    fn cut(&self, vfs: &dyn Vfs, directory: &Path, segment: u64, at: u64) -> Result<()> {
        let empty = super::format::encode_segment_header(segment, self.page_size);
        repair::cut_segment_file(vfs, directory, &segment_file_name(segment), at, SEGMENT_HEADER_SIZE as u64, &empty)
    }
}
