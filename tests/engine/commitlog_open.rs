//! Opening a commitlog checks before it writes. An open that fails leaves the directory as it
//! found it (its `LOCK` file aside); no option is recorded on disk, so each of them may change
//! between opens without a mismatch, a loss or a corruption report.

use std::fs;
use std::path::Path;

use ballast::commitlog::format::{self, IndexEntry};
use ballast::commitlog::{Commitlog, CommitlogOptions, Retention, SnapshotSource};
use ballast::{Error, RecoveryMode};

use crate::{digest, os};

const MODES: [RecoveryMode; 2] = [RecoveryMode::Strict, RecoveryMode::Repair];
/// The offsets [`write_log`] commits.
const LOG_END: u64 = 200;

fn options(recovery_mode: RecoveryMode) -> CommitlogOptions {
    CommitlogOptions {
        segment_size_max: 1024,
        index_interval_bytes: 100,
        write_buffer_size: 300,
        snapshot_interval_transactions: 25,
        snapshots_kept: 3,
        retention: Retention::KeepAll,
        recovery_mode,
    }
}

fn payload(offset: u64) -> Vec<u8> {
    format!("tx-{offset}-").repeat((offset % 5) as usize + 1).into_bytes()
}

/// A datastore whose state is the number of transactions applied.
struct Applied(u64);

impl SnapshotSource for Applied {
    fn snapshot(&mut self, offset: u64) -> Vec<u8> {
        assert_eq!(offset + 1, self.0, "the source is asked for its state at the log's end");
        self.0.to_le_bytes().to_vec()
    }
}

/// Commits offsets `from..to`, three per commit, taking each snapshot that falls due.
fn commit_range(log: &mut Commitlog, from: u64, to: u64) {
    let mut offset = from;
    while offset < to {
        let end = (offset + 3).min(to);
        let payloads: Vec<Vec<u8>> = (offset..end).map(payload).collect();
        let transactions: Vec<(u64, &[u8])> = (offset..end).zip(payloads.iter().map(Vec::as_slice)).collect();
        log.commit(&transactions).unwrap();
        log.take_snapshot(&mut Applied(end)).unwrap();
        offset = end;
    }
}

/// Offsets `0..LOG_END`, synced and closed: sealed segments with their index files, an active
/// segment, and three snapshots.
fn write_log(directory: &Path) {
    let mut log = Commitlog::open(os(), directory, options(RecoveryMode::Strict)).unwrap();
    commit_range(&mut log, 0, LOG_END);
    log.close().unwrap();
    let count = |extension: &str| {
        fs::read_dir(directory)
            .unwrap()
            .filter(|entry| entry.as_ref().unwrap().path().extension().is_some_and(|found| found == extension))
            .count()
    };
    assert!(count("idx") >= 3, "the test log has sealed segments with index files");
    assert_eq!(count("snap"), 3, "the test log keeps three snapshots");
}

/// Every transaction from the log's first offset, checked against what [`commit_range`] wrote.
#[track_caller]
fn assert_holds(log: &Commitlog, end: u64) {
    let first = log.min_committed_offset().expect("the log is not empty");
    let read: Vec<(u64, Vec<u8>)> = log.transactions_from(0).collect::<ballast::Result<_>>().unwrap();
    assert_eq!(read, (first..end).map(|offset| (offset, payload(offset))).collect::<Vec<_>>());
    if first > 0 {
        let snapshot = log.latest_snapshot().unwrap().expect("retention keeps a snapshot to restore from");
        assert!(snapshot.offset + 1 >= first, "the snapshot at {} reaches the log's start {first}", snapshot.offset);
    }
}

fn segments(directory: &Path) -> Vec<u64> {
    let mut segments: Vec<u64> = fs::read_dir(directory)
        .unwrap()
        .filter_map(|entry| match format::parse_file_name(entry.unwrap().file_name().to_str()?) {
            Some(format::FileName::Segment(offset)) => Some(offset),
            _ => None,
        })
        .collect();
    segments.sort_unstable();
    segments
}

/// Flips one byte in the middle of segment `min_offset`, well inside a commit.
fn damage_segment(directory: &Path, min_offset: u64) {
    let path = directory.join(format::segment_file_name(min_offset));
    let mut bytes = fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    fs::write(&path, bytes).unwrap();
}

/// Removes every snapshot, so that a repair cutting the log does not restart it after one.
fn remove_snapshots(directory: &Path) {
    for entry in fs::read_dir(directory).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|extension| extension == "snap") {
            fs::remove_file(path).unwrap();
        }
    }
}

fn copy_directory(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "LOCK" {
            fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

type Change = fn(&mut CommitlogOptions);

/// Every option, changed in each direction that could trip an open: none of them is recorded
/// on disk, so each must open the log as it is, write nothing, and keep working.
const CHANGES: [(&str, Change); 14] = [
    ("segment_size_max below the existing segments", |options| options.segment_size_max = 100),
    ("segment_size_max larger", |options| options.segment_size_max = 1 << 30),
    ("segment_size_max at its maximum", |options| options.segment_size_max = u64::MAX),
    ("index_interval_bytes 1", |options| options.index_interval_bytes = 1),
    ("index_interval_bytes larger than a segment", |options| options.index_interval_bytes = 1 << 20),
    ("index_interval_bytes at its maximum", |options| options.index_interval_bytes = u64::MAX),
    ("write_buffer_size 1", |options| options.write_buffer_size = 1),
    ("write_buffer_size at its maximum", |options| options.write_buffer_size = usize::MAX),
    ("snapshot_interval_transactions 1", |options| options.snapshot_interval_transactions = 1),
    ("snapshot_interval_transactions at its maximum", |options| options.snapshot_interval_transactions = u64::MAX),
    ("snapshots_kept below the snapshots on disk", |options| options.snapshots_kept = 1),
    ("snapshots_kept larger", |options| options.snapshots_kept = 100),
    ("retention RemoveBelowOldestSnapshot", |options| options.retention = Retention::RemoveBelowOldestSnapshot),
    ("nothing but the recovery mode", |_| {}),
];

#[test]
fn changing_any_option_between_opens_writes_nothing_and_loses_nothing() {
    // Issue 11: no commitlog option is on disk, yet two changes were not free. An open with
    // another index_interval_bytes judged every index file written with the old one wrong and
    // rewrote them all (and again at each change); an open with write_buffer_size usize::MAX
    // panicked allocating the buffer up front ("capacity overflow").
    for (name, change) in CHANGES {
        for mode in MODES {
            let directory = tempfile::tempdir().unwrap();
            write_log(directory.path());
            let before = digest(directory.path());
            let mut changed = options(mode);
            change(&mut changed);
            let mut log = Commitlog::open(os(), directory.path(), changed.clone())
                .unwrap_or_else(|error| panic!("{name}, {mode:?}: the open failed: {error}"));
            assert_eq!(digest(directory.path()), before, "{name}, {mode:?}: the open changed the directory");
            let report = log.recovery_report();
            assert_eq!((report.indexes_rebuilt, report.snapshots_removed), (0, 0), "{name}, {mode:?}");
            assert!(report.repair.is_none() && report.torn_tail.is_none(), "{name}, {mode:?}: {report:?}");
            assert_holds(&log, LOG_END);
            // The log goes on with the changed options, and reopens with either.
            commit_range(&mut log, LOG_END, LOG_END + 60);
            log.close().unwrap();
            for reopened in [changed, options(RecoveryMode::Strict)] {
                let log = Commitlog::open(os(), directory.path(), reopened).unwrap();
                assert_eq!(log.recovery_report().indexes_rebuilt, 0, "{name}, {mode:?}");
                assert_holds(&log, LOG_END + 60);
            }
        }
    }
}

#[test]
fn a_smaller_segment_size_max_seals_an_oversized_active_segment_at_the_next_commit() {
    // segment_size_max is not on disk: an active segment already past a smaller limit is
    // neither a mismatch nor written past, but sealed as soon as it would grow.
    let directory = tempfile::tempdir().unwrap();
    write_log(directory.path());
    let before = segments(directory.path());
    let options = CommitlogOptions { segment_size_max: 100, ..options(RecoveryMode::Strict) };
    let mut log = Commitlog::open(os(), directory.path(), options).unwrap();
    log.commit(&[(LOG_END, &payload(LOG_END))]).unwrap();
    log.sync().unwrap();
    let after = log.segments();
    assert_eq!(after[..before.len()], before[..], "the segments written before stay as they are");
    assert_eq!(after.len(), before.len() + 1, "the oversized active segment was sealed, not written past");
    let sealed = *before.last().unwrap();
    assert!(directory.path().join(format::index_file_name(sealed)).exists(), "sealing it wrote its index");
}

#[test]
fn index_files_written_with_another_interval_are_kept_and_used() {
    // An open compared each index file with the entries it would write itself at the current
    // interval, so a changed interval had it rewrite every index file, counted as "rebuilt
    // because missing, damaged or wrong" although `verify` called them fine.
    for interval in [1, 37, 1 << 20] {
        let directory = tempfile::tempdir().unwrap();
        write_log(directory.path());
        let before = digest(directory.path());
        let options = CommitlogOptions { index_interval_bytes: interval, ..options(RecoveryMode::Strict) };
        let log = Commitlog::open(os(), directory.path(), options).unwrap();
        assert_eq!(log.recovery_report().indexes_rebuilt, 0, "interval {interval}");
        assert_eq!(digest(directory.path()), before, "interval {interval}: no index file was rewritten");
        for from in 0..LOG_END {
            let first = log.transactions_from(from).next().unwrap().unwrap();
            assert_eq!(first, (from, payload(from)), "interval {interval}: reading from {from}");
        }
    }
}

#[test]
fn an_index_whose_entries_are_not_commits_of_its_segment_is_still_rebuilt() {
    // Accepting an index written with another interval must not mean accepting any index: each
    // entry must name a commit of its segment, at the position that commit starts.
    let directory = tempfile::tempdir().unwrap();
    write_log(directory.path());
    let sealed = segments(directory.path())[1];
    let path = directory.path().join(format::index_file_name(sealed));
    let segment_length = fs::metadata(directory.path().join(format::segment_file_name(sealed))).unwrap().len();
    let (_, entries) = format::decode_index(&fs::read(&path).unwrap(), sealed).unwrap();
    let commit = entries[1];
    let wrong_cases = [
        ("a position inside a commit", IndexEntry { offset: commit.offset, position: commit.position + 1 }),
        ("the wrong offset for its commit", IndexEntry { offset: commit.offset + 1, position: commit.position }),
        ("a position past the segment", IndexEntry { offset: commit.offset, position: segment_length }),
    ];
    for (name, wrong) in wrong_cases {
        fs::write(&path, format::encode_index(sealed, segment_length, &[entries[0], wrong])).unwrap();
        let log = Commitlog::open(os(), directory.path(), options(RecoveryMode::Strict)).unwrap();
        assert_eq!(log.recovery_report().indexes_rebuilt, 1, "{name}");
        assert_holds(&log, LOG_END);
    }
    let unordered = [entries[1], entries[0]];
    fs::write(&path, format::encode_index(sealed, segment_length, &unordered)).unwrap();
    let log = Commitlog::open(os(), directory.path(), options(RecoveryMode::Strict)).unwrap();
    assert_eq!(log.recovery_report().indexes_rebuilt, 1, "entries out of order");
}

#[test]
fn a_smaller_snapshots_kept_removes_surplus_snapshots_at_the_next_snapshot_not_at_open() {
    // Retention runs when a snapshot is taken: the open itself removes no snapshot for a
    // smaller snapshots_kept, as `CommitlogOptions::snapshots_kept` documents.
    let directory = tempfile::tempdir().unwrap();
    write_log(directory.path());
    let snapshots = |directory: &Path| {
        let names = digest(directory).into_keys();
        names.filter(|name| name.ends_with(".snap")).count()
    };
    let options = CommitlogOptions { snapshots_kept: 1, ..options(RecoveryMode::Strict) };
    let mut log = Commitlog::open(os(), directory.path(), options).unwrap();
    assert_eq!(snapshots(directory.path()), 3, "the open removed no snapshot");
    log.commit(&[(LOG_END, &payload(LOG_END))]).unwrap();
    log.snapshot_now(&mut Applied(LOG_END + 1)).unwrap();
    assert_eq!(snapshots(directory.path()), 1, "the next snapshot applied snapshots_kept");
}

/// How a test directory that an open must refuse is made.
struct Refused {
    name: &'static str,
    make: fn(&Path),
    modes: &'static [RecoveryMode],
    expected: fn(&Error) -> bool,
}

fn add_junk(directory: &Path, name: &str) {
    fs::write(directory.join(name), b"not a ballast file").unwrap();
}

/// Leaves behind what a crash leaves, so that an open has something to clean up before it
/// reaches the damage: a temp file, a sealed segment's missing index, and a torn commit after
/// the last segment's synced ones.
fn leave_work_for_recovery(directory: &Path) {
    let segments = segments(directory);
    fs::write(directory.join(format!("{}.tmp", format::segment_file_name(LOG_END))), b"half a segment").unwrap();
    fs::remove_file(directory.join(format::index_file_name(segments[2]))).unwrap();
    let last = directory.join(format::segment_file_name(*segments.last().unwrap()));
    let mut bytes = fs::read(&last).unwrap();
    bytes.extend_from_slice(b"CMIT and the rest of a commit never written");
    fs::write(&last, bytes).unwrap();
}

/// A repair plan made durable by a repair that crashed before it carried it out: the plan of a
/// repair of the fourth segment's damage, over a log whose second segment is damaged too.
fn leave_a_plan_not_carried_out(directory: &Path) {
    remove_snapshots(directory);
    let segments = segments(directory);
    damage_segment(directory, segments[3]);
    let copy = tempfile::tempdir().unwrap();
    copy_directory(directory, copy.path());
    let repaired = Commitlog::open(os(), copy.path(), options(RecoveryMode::Repair)).unwrap();
    assert_eq!(repaired.recovery_report().repair.as_ref().map(|repair| repair.segment), Some(segments[3]));
    drop(repaired);
    fs::copy(copy.path().join("REPAIR"), directory.join("REPAIR")).unwrap();
    damage_segment(directory, segments[1]);
}

const REFUSED: [Refused; 8] = [
    Refused {
        name: "a WAL's directory",
        make: |directory| drop(crate::write_log(directory, 30)),
        modes: &MODES,
        expected: |error| matches!(error, Error::ForeignDirectory { holds, .. } if holds.contains("a ballast WAL")),
    },
    Refused {
        name: "a logstor store's directory",
        make: |directory| {
            let mut store = ballast::logstor::Logstor::open(os(), directory, crate::logstor_os::options()).unwrap();
            store.put(b"key", b"value").unwrap();
            store.close().unwrap();
        },
        modes: &MODES,
        expected: |error| matches!(error, Error::ForeignDirectory { holds, .. } if holds.contains("a ballast logstor store")),
    },
    Refused {
        name: "a directory of junk",
        make: |directory| add_junk(directory, "notes.txt"),
        modes: &MODES,
        expected: |error| matches!(error, Error::BadFileName { .. }),
    },
    Refused {
        name: "a directory of junk named like a temp file",
        make: |directory| add_junk(directory, "notes.tmp"),
        modes: &MODES,
        expected: |error| matches!(error, Error::BadFileName { file } if file.ends_with("notes.tmp")),
    },
    Refused {
        name: "a commitlog with junk named like a temp file",
        make: |directory| {
            write_log(directory);
            leave_work_for_recovery(directory);
            add_junk(directory, "notes.tmp");
        },
        modes: &MODES,
        expected: |error| matches!(error, Error::BadFileName { file } if file.ends_with("notes.tmp")),
    },
    Refused {
        name: "a commitlog with a damaged sealed segment and work for recovery",
        make: |directory| {
            write_log(directory);
            leave_work_for_recovery(directory);
            damage_segment(directory, segments(directory)[1]);
        },
        modes: &[RecoveryMode::Strict],
        expected: Error::is_corruption,
    },
    Refused {
        name: "a commitlog with a damaged repair plan and work for recovery",
        make: |directory| {
            write_log(directory);
            leave_work_for_recovery(directory);
            add_junk(directory, "REPAIR");
        },
        modes: &MODES,
        expected: |error| matches!(error, Error::Corruption { file, .. } if file.ends_with("REPAIR")),
    },
    Refused {
        name: "a commitlog with a plan not carried out and damage before it",
        make: |directory| {
            write_log(directory);
            leave_a_plan_not_carried_out(directory);
        },
        modes: &[RecoveryMode::Strict],
        expected: |error| matches!(error, Error::Corruption { segment, .. } if *segment > 0),
    },
];

#[test]
fn an_open_that_fails_leaves_the_directory_as_it_found_it() {
    // Issue 11: an open wrote before it had checked. It removed temp files, and carried out a
    // repair plan found on disk, before it read the plan (which could be damaged) or found
    // corruption elsewhere that failed a strict open; it removed any `*.tmp` file, the user's
    // own `notes.tmp` included, and then opened a commitlog over a directory holding nothing
    // else; and it met a WAL's or a logstor store's directory with BadFileName, not with what
    // the directory holds.
    let mut failures = Vec::new();
    for refused in REFUSED {
        for &mode in refused.modes {
            let name = refused.name;
            let directory = tempfile::tempdir().unwrap();
            (refused.make)(directory.path());
            let before = digest(directory.path());
            match Commitlog::open(os(), directory.path(), options(mode)) {
                Err(error) if (refused.expected)(&error) => {}
                other => failures.push(format!("{name}, {mode:?}: expected the open refused, got {other:?}")),
            }
            if digest(directory.path()) != before {
                failures.push(format!("{name}, {mode:?}: the open changed the directory"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_plan_not_carried_out_is_finished_by_the_next_strict_open() {
    // The read-only look that an open now takes before it writes must see the log as the plan
    // leaves it: a strict open finishes the plan and opens what a repair open would have left.
    let directory = tempfile::tempdir().unwrap();
    write_log(directory.path());
    remove_snapshots(directory.path());
    let damaged = segments(directory.path())[3];
    damage_segment(directory.path(), damaged);
    let repaired = tempfile::tempdir().unwrap();
    copy_directory(directory.path(), repaired.path());
    let log = Commitlog::open(os(), repaired.path(), options(RecoveryMode::Repair)).unwrap();
    let kept = log.next_offset();
    drop(log);
    fs::copy(repaired.path().join("REPAIR"), directory.path().join("REPAIR")).unwrap();
    let log = Commitlog::open(os(), directory.path(), options(RecoveryMode::Strict)).unwrap();
    let repair = log.recovery_report().repair.clone().expect("the open reports the repair it finished");
    assert!(repair.resumed && repair.segment == damaged, "{repair:?}");
    assert_eq!(log.next_offset(), kept);
    assert_holds(&log, kept);
    drop(log);
    assert_eq!(digest(directory.path()), digest(repaired.path()), "both opens left the same files");
}

#[test]
fn an_empty_path_is_refused_before_anything_is_written() {
    // Issue 11: an empty path took the lock in the working directory, writing `LOCK` there,
    // and then failed to list "" with an I/O error.
    let lock_in_working_directory = Path::new("LOCK").exists();
    for mode in MODES {
        match Commitlog::open(os(), "", options(mode)) {
            Err(Error::InvalidArgument { reason }) => assert!(reason.contains("empty"), "{reason}"),
            other => panic!("{mode:?}: expected InvalidArgument, got {other:?}"),
        }
    }
    assert_eq!(Path::new("LOCK").exists(), lock_in_working_directory, "no LOCK file in the working directory");
}
