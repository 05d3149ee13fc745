//! Recovery: what an open does to bring a commitlog directory to a consistent state and load it.

use std::io;
use std::path::Path;

use super::format::{self, SEGMENT_HEADER_SIZE};
use super::inspect::{count_dropped, inspect, list_directory, read_index, Listing, SegmentScan};
use super::{io_error, open_file, snapshot, Active, CommitlogOptions, RecoveryReport, Sealed, TornTail};
use crate::error::{Error, Result};
use crate::repair::{self, RecoveryMode, Segments};
use crate::vfs::{self, OpenMode, Vfs};

/// The commitlog's segment naming, for the shared repair plan.
struct CommitlogSegments;

impl Segments for CommitlogSegments {
    fn file_name(&self, segment: u64) -> String {
        format::segment_file_name(segment)
    }

    fn empty(&self, segment: u64) -> Vec<u8> {
        format::encode_segment_header(segment).to_vec()
    }

    fn header_size(&self) -> u64 {
        SEGMENT_HEADER_SIZE as u64
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

/// Brings the directory to a consistent state and loads it: removes temp files, finishes a
/// pending repair, verifies every segment, truncates a torn tail or repairs (as the mode
/// allows), checks index files, and removes snapshots beyond the log.
pub(super) fn recover(
    vfs: &dyn Vfs,
    directory: &Path,
    options: &CommitlogOptions,
    report: &mut RecoveryReport,
) -> Result<State> {
    let mut listing = list_directory(vfs, directory)?;
    for name in &listing.temp_files {
        let path = directory.join(name);
        vfs.remove_file(&path).map_err(io_error(&path, "remove_file"))?;
        report.temp_files_removed += 1;
    }
    if !listing.temp_files.is_empty() {
        vfs.sync_dir(directory).map_err(io_error(directory, "sync_dir"))?;
    }
    if listing.repair_plan {
        let plan = repair::read_plan(vfs, directory)?;
        // The damaged segment goes only when the log restarts after a snapshot, which follows a
        // plan carried out in full. The restarted log's segment may bear the name of one the
        // plan removed: carrying the plan out again would remove the log's only segment.
        if listing.segments.contains(&plan.segment) {
            repair::carry_out(vfs, directory, &CommitlogSegments, &plan)?;
        }
        report.repair = Some(plan.into_report(true));
        listing = list_directory(vfs, directory)?;
    }
    // A repair can cut the log below a snapshot that is still valid. The snapshot holds every
    // transaction up to its offset, so rather than losing it, the log restarts just after it.
    let newest_valid = |listing: &Listing| -> Result<Option<u64>> {
        for &offset in listing.snapshots.iter().rev() {
            if snapshot::read_snapshot(vfs, directory, offset)?.is_some() {
                return Ok(Some(offset));
            }
        }
        Ok(None)
    };
    if listing.segments.is_empty() {
        let start = newest_valid(&listing)?.map_or(0, |offset| offset + 1);
        let name = format::segment_file_name(start);
        vfs::create_file_atomically(vfs, directory, &name, &format::encode_segment_header(start))?;
        listing.segments.push(start);
    }
    let mut inspection = inspect(vfs, directory, &listing.segments, options.index_interval_bytes)?;
    if let Some(damage) = inspection.damage.take() {
        let file = directory.join(format::segment_file_name(damage.segment));
        if options.recovery_mode == RecoveryMode::Strict {
            return Err(Error::Corruption {
                file,
                segment: damage.segment,
                offset: damage.offset,
                reason: damage.reason,
            });
        }
        let later: Vec<u64> =
            listing.segments.iter().copied().filter(|&segment| segment > damage.cut_segment).rev().collect();
        let (records_dropped, bytes_dropped) =
            count_dropped(vfs, directory, damage.cut_segment, damage.cut_at, &later)?;
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
        listing = list_directory(vfs, directory)?;
        inspection = inspect(vfs, directory, &listing.segments, options.index_interval_bytes)?;
        if let Some(damage) = inspection.damage {
            let file = directory.join(format::segment_file_name(damage.segment));
            return Err(Error::Corruption {
                file,
                segment: damage.segment,
                offset: damage.offset,
                reason: damage.reason,
            });
        }
    }
    let log_end = inspection.scans.last().expect("at least one segment").next_offset;
    if let Some(snapshot) = newest_valid(&listing)?.filter(|&offset| offset >= log_end) {
        // Newest first, each removal durable; a crash part way is finished by the next open.
        for &min_offset in listing.segments.iter().rev() {
            for name in [format::segment_file_name(min_offset), format::index_file_name(min_offset)] {
                let path = directory.join(name);
                match vfs.remove_file(&path) {
                    Ok(()) => vfs.sync_dir(directory).map_err(io_error(directory, "sync_dir"))?,
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                    Err(error) => return Err(Error::io(&path, "remove_file", error)),
                }
            }
        }
        let start = snapshot + 1;
        vfs::create_file_atomically(
            vfs,
            directory,
            &format::segment_file_name(start),
            &format::encode_segment_header(start),
        )?;
        tracing::warn!(snapshot, "the log ended below a valid snapshot; restarted the log after it");
        report.restarted_after_snapshot = Some(snapshot);
        listing = list_directory(vfs, directory)?;
        inspection = inspect(vfs, directory, &listing.segments, options.index_interval_bytes)?;
    }
    let last = inspection.scans.pop().expect("at least one segment");
    let last_path = directory.join(format::segment_file_name(last.min_offset));
    let (file, length) = open_file(vfs, &last_path, OpenMode::ReadWrite)?;
    if let Some(end) = inspection.torn_at.filter(|&end| end < length) {
        vfs::truncate_durably(file.as_ref(), &last_path, end)?;
        report.torn_tail = Some(TornTail { segment: last.min_offset, offset: end, bytes_dropped: length - end });
        tracing::info!(segment = last.min_offset, offset = end, bytes = length - end, "truncated torn tail");
    }
    // Index files: only sealed segments have one, and it must say what the segment says.
    let mut sealed = Vec::with_capacity(inspection.scans.len());
    for scan in &inspection.scans {
        let name = format::index_file_name(scan.min_offset);
        let trusted = listing.indexes.contains(&scan.min_offset)
            && read_index(vfs, &directory.join(&name), scan.min_offset)?
                .is_some_and(|(length, entries)| length == scan.length && entries == scan.index);
        if !trusted {
            let bytes = format::encode_index(scan.min_offset, scan.length, &scan.index);
            vfs::create_file_atomically(vfs, directory, &name, &bytes)?;
            report.indexes_rebuilt += 1;
        }
        sealed.push(Sealed {
            min_offset: scan.min_offset,
            next_offset: scan.next_offset,
            length: scan.length,
            index: scan.index.clone(),
        });
    }
    let mut removed_any = false;
    for &stray in listing.indexes.iter().filter(|&&offset| !sealed.iter().any(|segment| segment.min_offset == offset)) {
        let path = directory.join(format::index_file_name(stray));
        vfs.remove_file(&path).map_err(io_error(&path, "remove_file"))?;
        removed_any = true;
    }
    let next_offset = last.next_offset;
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
    report.segments_count = sealed.len() as u64 + 1;
    report.commits_count = sealed_counts(&inspection.scans, |scan| scan.commits_count) + last.commits_count;
    report.transactions_count =
        sealed_counts(&inspection.scans, |scan| scan.transactions_count) + last.transactions_count;
    let epoch = inspection.scans.iter().map(|scan| scan.epoch).chain([last.epoch]).max().unwrap_or(0);
    let end = last.end.min(length);
    let active = Active { min_offset: last.min_offset, path: last_path, file, end, index: last.index };
    Ok(State { sealed, active, next_offset, epoch, snapshots })
}

fn sealed_counts(scans: &[SegmentScan], count: impl Fn(&SegmentScan) -> u64) -> u64 {
    scans.iter().map(count).sum()
}
