//! What `Wal::open` does with options that differ from the ones the log was written with, and
//! with directories it must refuse: an option recorded on disk that differs is
//! `Error::OptionsMismatch`, an option that is not on disk may change between opens without
//! losing a record, and an open that fails leaves the directory as it found it (the `LOCK`
//! file aside).

use std::fs;
use std::path::Path;

use ballast::commitlog::{Commitlog, CommitlogOptions};
use ballast::logstor::Logstor;
use ballast::wal::format::encode_segment_header;
use ballast::wal::{self, recycle_file_name, segment_file_name, RecoveryMode, Wal, WalOptions};
use ballast::{CorruptionReason, Error};

use crate::{digest, open, os, read_all, record, small_options, write_log};

const MODES: [RecoveryMode; 2] = [RecoveryMode::Strict, RecoveryMode::Repair];

/// Flips a bit of the second record of `segment` (offset 40, its fragment header's checksum):
/// damage in a sealed segment is corruption.
fn damage_record(directory: &Path, segment: u64) {
    let path = directory.join(segment_file_name(segment));
    let mut bytes = fs::read(&path).unwrap();
    bytes[45] ^= 0x10;
    fs::write(&path, bytes).unwrap();
}

/// Copies every file of `from` but `LOCK` into `to`.
fn copy_directory(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "LOCK" {
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// A log with one leftover of each kind an open cleans up: a temp file, and a file kept for
/// reuse that the small options (`recycle_segments: 0`) do not allow. Returns its records.
fn log_with_leftovers(directory: &Path) -> usize {
    write_log(directory, 40);
    let options = WalOptions { recycle_segments: 1, ..small_options(RecoveryMode::Strict) };
    let mut wal = Wal::open(os(), directory, options).unwrap();
    wal.truncate_before(1).unwrap();
    let kept = read_all(&wal).len();
    wal.close().unwrap();
    assert!(directory.join(recycle_file_name(0)).exists());
    fs::write(directory.join("00000099.tmp"), b"half a segment").unwrap();
    kept
}

/// A log whose segment 2 is damaged, with the plan of its repair on disk and not yet carried
/// out: what a crash leaves right after a repairing open made its plan durable. Returns the
/// records the repair keeps.
fn log_with_interrupted_repair(directory: &Path) -> usize {
    write_log(directory, 40);
    damage_record(directory, 2);
    let repaired = tempfile::tempdir().unwrap();
    copy_directory(directory, repaired.path());
    let wal = open(repaired.path(), RecoveryMode::Repair).unwrap();
    assert!(wal.recovery_report().repair.is_some());
    let kept = read_all(&wal).len();
    drop(wal);
    fs::copy(repaired.path().join("REPAIR"), directory.join("REPAIR")).unwrap();
    kept
}

#[track_caller]
fn assert_page_size_mismatch(result: ballast::Result<Wal>, directory: &Path, segment: u64, given: u32) {
    match result {
        Err(Error::OptionsMismatch { file, field: "page_size", on_disk: 256, given: found }) => {
            assert_eq!(file, directory.join(segment_file_name(segment)));
            assert_eq!(found, u64::from(given));
        }
        other => panic!("expected a page_size mismatch, got {other:?}"),
    }
}

/// Issue 11: a log written with 256-byte pages and opened with 512 was `Corruption` in a
/// strict open, and a repairing open "repaired" it by deleting every segment (2,000 records
/// became 0). The page size is in every segment header: a different one is a mistake in the
/// options, reported as such in both modes before anything is written, even where the open
/// would otherwise have cleaned up leftovers or resumed a repair.
#[test]
fn a_different_page_size_is_an_options_mismatch_in_both_modes_and_changes_nothing() {
    let leftovers = tempfile::tempdir().unwrap();
    let leftovers_kept = log_with_leftovers(leftovers.path());
    let interrupted = tempfile::tempdir().unwrap();
    let interrupted_kept = log_with_interrupted_repair(interrupted.path());
    for (directory, first_segment) in [(leftovers.path(), 1), (interrupted.path(), 0)] {
        let before = digest(directory);
        for recovery_mode in MODES {
            for page_size in [128, 512] {
                let options = WalOptions { page_size, ..small_options(recovery_mode) };
                let result = Wal::open(os(), directory, options);
                assert_page_size_mismatch(result, directory, first_segment, page_size);
                assert_eq!(digest(directory), before, "{recovery_mode:?} page_size {page_size} changed the directory");
            }
        }
    }
    // With the right options, both logs open and keep what they held.
    let wal = open(leftovers.path(), RecoveryMode::Strict).unwrap();
    assert_eq!(read_all(&wal).len(), leftovers_kept);
    let wal = open(interrupted.path(), RecoveryMode::Strict).unwrap();
    assert!(wal.recovery_report().repair.as_ref().is_some_and(|repair| repair.resumed));
    assert_eq!(read_all(&wal).len(), interrupted_kept);
}

/// The page size on disk is read from the first segment whose header verifies, so a damaged
/// first header does not turn a mistake in the options into a repair with the wrong geometry.
#[test]
fn the_mismatch_is_found_past_a_damaged_first_header() {
    let directory = tempfile::tempdir().unwrap();
    write_log(directory.path(), 40);
    let first = directory.path().join(segment_file_name(0));
    let mut bytes = fs::read(&first).unwrap();
    bytes[20] ^= 1;
    fs::write(&first, bytes).unwrap();
    let before = digest(directory.path());
    for recovery_mode in MODES {
        let options = WalOptions { page_size: 512, ..small_options(recovery_mode) };
        assert_page_size_mismatch(Wal::open(os(), directory.path(), options), directory.path(), 1, 512);
        assert_eq!(digest(directory.path()), before);
    }
}

/// A segment whose header verifies but records another page size than the log's first
/// segment is not a mistake in the options (no options open such a log): it is corruption.
#[test]
fn a_segment_with_another_page_size_than_the_first_is_corruption() {
    let directory = tempfile::tempdir().unwrap();
    write_log(directory.path(), 40);
    let path = directory.path().join(segment_file_name(2));
    let mut bytes = fs::read(&path).unwrap();
    bytes[..32].copy_from_slice(&encode_segment_header(2, 512));
    fs::write(&path, bytes).unwrap();
    let before = digest(directory.path());
    match open(directory.path(), RecoveryMode::Strict) {
        Err(Error::Corruption {
            segment: 2,
            offset: 0,
            reason: CorruptionReason::HeaderMismatch { field: "page_size", expected: 256, found: 512 },
            ..
        }) => {}
        other => panic!("expected corruption of segment 2's header, got {other:?}"),
    }
    assert_eq!(digest(directory.path()), before);
    let wal = open(directory.path(), RecoveryMode::Repair).unwrap();
    let repair = wal.recovery_report().repair.clone().expect("a repair");
    assert_eq!((repair.segment, repair.offset), (2, 0));
    assert_eq!(wal.segments(), (0, 2));
}

/// Issue 11: a strict open that found corruption had already removed leftover temp files and
/// surplus files kept for reuse: the open failed, and the directory had changed. Every check
/// that can fail now runs first, reading only.
#[test]
fn a_strict_open_that_finds_corruption_changes_nothing() {
    let directory = tempfile::tempdir().unwrap();
    log_with_leftovers(directory.path());
    damage_record(directory.path(), 2);
    let before = digest(directory.path());
    match open(directory.path(), RecoveryMode::Strict) {
        Err(Error::Corruption { segment: 2, .. }) => {}
        other => panic!("expected corruption in segment 2, got {other:?}"),
    }
    assert_eq!(digest(directory.path()), before);
}

/// Issue 11: a strict open of a directory holding an unfinished repair plan carried the plan
/// out (removing segments) before it checked the segments the plan keeps, so an open that then
/// failed on corruption there had dropped records. Now the plan is carried out only once the
/// open knows it will succeed.
#[test]
fn a_strict_open_that_finds_corruption_does_not_resume_a_repair_first() {
    let directory = tempfile::tempdir().unwrap();
    let kept = log_with_interrupted_repair(directory.path());
    let pristine = digest(directory.path());
    damage_record(directory.path(), 0);
    let before = digest(directory.path());
    match open(directory.path(), RecoveryMode::Strict) {
        Err(Error::Corruption { segment: 0, offset: 40, .. }) => {}
        other => panic!("expected corruption in segment 0, got {other:?}"),
    }
    assert_eq!(digest(directory.path()), before);
    // Undone, the damage was the only obstacle: the plan is resumed and reported.
    damage_record(directory.path(), 0);
    assert_eq!(digest(directory.path()), pristine);
    let wal = open(directory.path(), RecoveryMode::Strict).unwrap();
    assert!(wal.recovery_report().repair.as_ref().is_some_and(|repair| repair.resumed));
    assert_eq!(read_all(&wal).len(), kept);
}

/// Issue 11: opening another structure's directory as a WAL must say what the directory holds
/// and leave it alone; so must a directory holding a file no ballast structure writes.
#[test]
fn a_wal_open_refuses_other_structures_directories_and_junk() {
    let commitlog = tempfile::tempdir().unwrap();
    let options = CommitlogOptions { segment_size_max: 1024, ..CommitlogOptions::default() };
    let mut log = Commitlog::open(os(), commitlog.path(), options).unwrap();
    log.commit(&[(0, b"a transaction")]).unwrap();
    log.close().unwrap();
    let logstor = tempfile::tempdir().unwrap();
    let mut store = Logstor::open(os(), logstor.path(), crate::logstor_os::options()).unwrap();
    store.put(b"key", b"value").unwrap();
    store.close().unwrap();
    let junk = tempfile::tempdir().unwrap();
    fs::write(junk.path().join("notes.txt"), b"not a log").unwrap();
    for recovery_mode in MODES {
        for (directory, holds) in
            [(commitlog.path(), Some("commitlog")), (logstor.path(), Some("logstor")), (junk.path(), None)]
        {
            let before = digest(directory);
            let result = open(directory, recovery_mode);
            match (&result, holds) {
                (Err(Error::ForeignDirectory { holds: found, expected: "a ballast WAL", .. }), Some(holds)) => {
                    assert!(found.contains(holds), "{found:?} names {holds}");
                }
                (Err(Error::BadFileName { file }), None) => assert_eq!(*file, junk.path().join("notes.txt")),
                _ => panic!("{recovery_mode:?} open of {directory:?} gave {result:?}"),
            }
            assert_eq!(digest(directory), before, "{recovery_mode:?} open of {directory:?} changed it");
        }
    }
}

/// Regression (issue 12, found when the three structures' listings became one): the WAL took
/// any `*.tmp` name for a temp file of its own, so an open deleted a user's `notes.tmp` left in
/// its directory, where the commitlog and logstor refused it. A temp file is the WAL's only if
/// it is named after a file the WAL creates atomically (a segment or the repair plan).
#[test]
fn a_wal_open_leaves_a_temp_file_it_did_not_create_alone() {
    let directory = tempfile::tempdir().unwrap();
    let mut wal = open(directory.path(), RecoveryMode::Strict).unwrap();
    wal.append(b"a record").unwrap();
    wal.close().unwrap();
    fs::write(directory.path().join("notes.tmp"), b"the user's").unwrap();
    for recovery_mode in MODES {
        let before = digest(directory.path());
        match open(directory.path(), recovery_mode) {
            Err(Error::BadFileName { file }) => assert_eq!(file, directory.path().join("notes.tmp")),
            other => panic!("{recovery_mode:?} open gave {other:?}"),
        }
        assert_eq!(digest(directory.path()), before, "{recovery_mode:?} open changed the directory");
    }
}

/// Issue 11: an empty path put `LOCK` and a segment in the process's working directory.
#[test]
fn an_empty_path_is_an_invalid_argument() {
    let working_directory = std::env::current_dir().unwrap();
    for recovery_mode in MODES {
        let result = Wal::open(os(), "", small_options(recovery_mode));
        assert!(matches!(result, Err(Error::InvalidArgument { .. })), "{result:?}");
    }
    for name in ["LOCK", "00000000"] {
        assert!(!working_directory.join(name).exists(), "{name} appeared in the working directory");
    }
}

/// Writes records of [`record`] from `from` until the log ends past `offset` in its only
/// segment. Returns the next index.
fn fill_past(wal: &mut Wal, from: usize, offset: u64) -> usize {
    let mut index = from;
    while wal.end().offset <= offset {
        let position = wal.append(&record(index)).unwrap();
        assert_eq!(position.segment, 0, "the records stay in the first segment");
        index += 1;
    }
    index
}

/// How a log written with a large segment size was left before the reopen with a small one.
#[derive(Clone, Copy, Debug)]
enum Left {
    Closed,
    /// Dropped after a sync: the active segment keeps its preallocated zeros.
    Crashed,
}

/// Issue 11: the segment size is not on disk. A log written with 4 KiB segments and reopened
/// with 1 KiB ones has a last segment longer than the new size: the first append after the
/// reopen had to seal it, and sealing cut the file to the new size (dropping synced records,
/// in a release build) before a write past it tripped the assertion that a segment never grows
/// past its size. The recovered segment now keeps the size its records need and is sealed at
/// the next append; the segments after it take the new size.
#[test]
fn a_smaller_segment_size_on_reopen_seals_the_longer_segment_and_continues() {
    for left in [Left::Closed, Left::Crashed] {
        let directory = tempfile::tempdir().unwrap();
        let large = WalOptions { segment_size: 4096, preallocate: 4096, ..small_options(RecoveryMode::Strict) };
        let mut wal = Wal::open(os(), directory.path(), large).unwrap();
        let written = fill_past(&mut wal, 0, 2500);
        match left {
            Left::Closed => wal.close().unwrap(),
            Left::Crashed => {
                wal.sync().unwrap();
                drop(wal);
            }
        }
        let small = small_options(RecoveryMode::Strict);
        let mut wal = Wal::open(os(), directory.path(), small.clone()).unwrap();
        let more = 30;
        for index in written..written + more {
            wal.append(&record(index)).unwrap();
        }
        wal.sync().unwrap();
        drop(wal);
        let wal = Wal::open(os(), directory.path(), small).unwrap();
        let records: Vec<Vec<u8>> = read_all(&wal).into_iter().map(|(_, data)| data).collect();
        assert_eq!(records, (0..written + more).map(record).collect::<Vec<_>>(), "{left:?}");
        let (_, last) = wal.segments();
        assert!(last >= 3, "{left:?}: the new records went into new segments");
        let first_length = fs::metadata(directory.path().join(segment_file_name(0))).unwrap().len();
        assert!(first_length > 2500, "{left:?}: segment 0 keeps its {first_length} bytes");
        for segment in 1..=last {
            let length = fs::metadata(directory.path().join(segment_file_name(segment))).unwrap().len();
            assert!(length <= 1024, "{left:?}: segment {segment} of {length} bytes has the new size");
        }
        drop(wal);
        let report = wal::verify(os().as_ref(), directory.path()).unwrap();
        assert!(report.problem.is_none(), "{left:?}: {:?}", report.problem);
    }
}

/// The other direction, and a last segment shorter than the new size but whose file is longer
/// (preallocated zeros), and a file kept for reuse longer than the new size: each log keeps
/// every record.
#[test]
fn segment_size_may_change_between_opens() {
    for (first, second, fill_to) in [(1024, 4096, 700), (4096, 1024, 500)] {
        let directory = tempfile::tempdir().unwrap();
        let options = |segment_size| WalOptions {
            segment_size,
            preallocate: segment_size,
            recycle_segments: 1,
            ..small_options(RecoveryMode::Strict)
        };
        let mut wal = Wal::open(os(), directory.path(), options(first)).unwrap();
        // Segment 0 becomes a file kept for reuse, of the first size.
        let mut index = 0;
        while wal.end().offset < first / 2 {
            wal.append(&record(index)).unwrap();
            index += 1;
        }
        wal.rotate().unwrap();
        let (_, active) = wal.segments();
        wal.truncate_before(active).unwrap();
        let kept_from = index - read_all(&wal).len();
        while wal.end().offset <= fill_to {
            wal.append(&record(index)).unwrap();
            index += 1;
        }
        wal.sync().unwrap();
        drop(wal);
        let mut wal = Wal::open(os(), directory.path(), options(second)).unwrap();
        for _ in 0..40 {
            wal.append(&record(index)).unwrap();
            index += 1;
        }
        wal.sync().unwrap();
        drop(wal);
        let wal = Wal::open(os(), directory.path(), options(second)).unwrap();
        let records: Vec<Vec<u8>> = read_all(&wal).into_iter().map(|(_, data)| data).collect();
        assert_eq!(records, (kept_from..index).map(record).collect::<Vec<_>>(), "{first} then {second}");
        assert!(!directory.path().join(recycle_file_name(0)).exists(), "the kept file was reused");
    }
}

/// `preallocate` is not on disk: a log written with one and reopened with another, after a
/// close or a crash (zeros still after its records), keeps every record.
#[test]
fn preallocate_may_change_between_opens() {
    for (first, second) in [(4096, 0), (0, 4096), (512, 3072)] {
        for crash in [false, true] {
            let directory = tempfile::tempdir().unwrap();
            let options =
                |preallocate| WalOptions { segment_size: 4096, preallocate, ..small_options(RecoveryMode::Strict) };
            let mut index = 0;
            for preallocate in [first, second, first] {
                let mut wal = Wal::open(os(), directory.path(), options(preallocate)).unwrap();
                for _ in 0..25 {
                    wal.append(&record(index)).unwrap();
                    index += 1;
                }
                if crash {
                    wal.sync().unwrap();
                } else {
                    wal.close().unwrap();
                }
            }
            let wal = Wal::open(os(), directory.path(), options(second)).unwrap();
            let records: Vec<Vec<u8>> = read_all(&wal).into_iter().map(|(_, data)| data).collect();
            assert_eq!(records, (0..index).map(record).collect::<Vec<_>>(), "{first} then {second}, crash {crash}");
            assert_eq!(wal.recovery_report().torn_tail, None);
        }
    }
}

/// `recycle_segments` is not on disk: an open with fewer removes the files kept beyond the new
/// count (the newest of them) and only those; an open with more keeps them all for reuse.
#[test]
fn recycle_segments_may_change_between_opens() {
    let directory = tempfile::tempdir().unwrap();
    let positions = write_log(directory.path(), 40);
    let options = |recycle_segments| WalOptions { recycle_segments, ..small_options(RecoveryMode::Strict) };
    let recycled = || {
        let mut names: Vec<String> = fs::read_dir(directory.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".recycle"))
            .collect();
        names.sort();
        names
    };
    let mut wal = Wal::open(os(), directory.path(), options(3)).unwrap();
    wal.truncate_before(3).unwrap();
    drop(wal);
    assert_eq!(recycled(), [recycle_file_name(0), recycle_file_name(1), recycle_file_name(2)]);
    let kept: Vec<_> = positions.iter().copied().filter(|position| position.segment >= 3).collect();
    let wal = Wal::open(os(), directory.path(), options(1)).unwrap();
    assert_eq!(recycled(), [recycle_file_name(0)]);
    assert_eq!(read_all(&wal).into_iter().map(|(position, _)| position).collect::<Vec<_>>(), kept);
    drop(wal);
    let mut wal = Wal::open(os(), directory.path(), options(4)).unwrap();
    assert_eq!(recycled(), [recycle_file_name(0)]);
    let (_, last) = wal.segments();
    wal.truncate_before(last).unwrap();
    while wal.segments().1 == last {
        wal.append(&record(3)).unwrap();
    }
    wal.sync().unwrap();
    assert!(!recycled().contains(&recycle_file_name(0)), "the oldest kept file was reused");
    drop(wal);
    assert!(wal::verify(os().as_ref(), directory.path()).unwrap().problem.is_none());
}

/// A user that moved the records of the first segments elsewhere (the TSDB head's checkpoint)
/// opens with `first_segment`: damage below it fails no open in either mode and starts no
/// repair (a repair there would have removed every later segment, Prometheus's #7530 in
/// another guise); the open removes those segments, reads the rest whole, and a log that
/// holds nothing from `first_segment` on begins there.
#[test]
fn segments_below_first_segment_are_neither_read_nor_repaired_and_are_removed() {
    let directory = tempfile::tempdir().unwrap();
    let positions = write_log(directory.path(), 40);
    damage_record(directory.path(), 1);
    let kept: Vec<_> = positions.iter().copied().filter(|position| position.segment >= 3).collect();
    for mode in MODES {
        let copy = tempfile::tempdir().unwrap();
        copy_directory(directory.path(), copy.path());
        let options = WalOptions { first_segment: 3, ..small_options(mode) };
        let wal = Wal::open(os(), copy.path(), options).unwrap();
        assert_eq!(wal.recovery_report().repair, None, "{mode:?}");
        assert_eq!(wal.segments().0, 3);
        assert_eq!(read_all(&wal).into_iter().map(|(position, _)| position).collect::<Vec<_>>(), kept);
        drop(wal);
        for segment in 0..3 {
            assert!(!copy.path().join(segment_file_name(segment)).exists(), "segment {segment} removed");
        }
    }
    // Strict without the option: the damage is found.
    assert!(matches!(open(directory.path(), RecoveryMode::Strict), Err(Error::Corruption { segment: 1, .. })));

    let empty = tempfile::tempdir().unwrap();
    let mut wal =
        Wal::open(os(), empty.path(), WalOptions { first_segment: 7, ..small_options(RecoveryMode::Strict) }).unwrap();
    assert_eq!(wal.append(b"first").unwrap().segment, 7);
    drop(wal);

    // A missing segment at first_segment is a gap, not a log that begins later.
    let gap = tempfile::tempdir().unwrap();
    copy_directory(directory.path(), gap.path());
    fs::remove_file(gap.path().join(segment_file_name(3))).unwrap();
    let before = digest(gap.path());
    let options = WalOptions { first_segment: 3, ..small_options(RecoveryMode::Repair) };
    assert!(matches!(Wal::open(os(), gap.path(), options), Err(Error::SegmentGap { missing: 3, .. })));
    assert_eq!(digest(gap.path()), before, "a failed open changes nothing");
}
