//! The commitlog on the real filesystem: commits, offsets, epochs, reset, snapshots, recovery.

use std::fs;
use std::path::Path;

use ballast::commitlog::{Commitlog, CommitlogOptions, Retention, SnapshotSource};
use ballast::{Error, RecoveryMode};

use crate::os;

fn options() -> CommitlogOptions {
    CommitlogOptions {
        segment_size_max: 1024,
        index_interval_bytes: 100,
        write_buffer_size: 300,
        snapshot_interval_transactions: 25,
        ..CommitlogOptions::default()
    }
}

fn open(directory: &Path) -> ballast::Result<Commitlog> {
    Commitlog::open(os(), directory, options())
}

fn payload(offset: u64) -> Vec<u8> {
    format!("tx-{offset}-").repeat((offset % 7) as usize + 1).into_bytes()
}

/// Commits offsets `from..to` in commits of `per_commit` transactions.
fn commit_range(log: &mut Commitlog, from: u64, to: u64, per_commit: u64) {
    let mut offset = from;
    while offset < to {
        let end = (offset + per_commit).min(to);
        let payloads: Vec<Vec<u8>> = (offset..end).map(payload).collect();
        let transactions: Vec<(u64, &[u8])> = (offset..end).zip(payloads.iter().map(Vec::as_slice)).collect();
        log.commit(&transactions).unwrap();
        offset = end;
    }
}

fn all_transactions(log: &Commitlog, from: u64) -> Vec<(u64, Vec<u8>)> {
    log.transactions_from(from).collect::<ballast::Result<Vec<_>>>().unwrap()
}

#[test]
fn transactions_round_trip_across_segments_and_reopen() {
    let directory = tempfile::tempdir().unwrap();
    let mut log = open(directory.path()).unwrap();
    commit_range(&mut log, 0, 200, 3);
    log.close().unwrap();
    let log = open(directory.path()).unwrap();
    assert!(log.segments().len() > 3, "the log rotated: {:?}", log.segments());
    assert_eq!(log.max_committed_offset(), Some(199));
    assert_eq!(log.min_committed_offset(), Some(0));
    let read = all_transactions(&log, 0);
    assert_eq!(read, (0..200).map(|offset| (offset, payload(offset))).collect::<Vec<_>>());
    assert_eq!(log.recovery_report().transactions_count, 200);
}

#[test]
fn reading_from_an_offset_seeks_into_the_middle() {
    let directory = tempfile::tempdir().unwrap();
    let mut log = open(directory.path()).unwrap();
    commit_range(&mut log, 0, 300, 4);
    log.flush().unwrap();
    for from in [0, 1, 57, 150, 298, 299] {
        let read = all_transactions(&log, from);
        assert_eq!(read.first().map(|(offset, _)| *offset), Some(from), "from {from}");
        assert_eq!(read.len() as u64, 300 - from);
    }
    let commits: Vec<_> = log.commits_from(150).map(Result::unwrap).collect();
    assert!(commits[0].first_offset <= 150 && commits[0].last_offset() >= 150);
}

#[test]
fn offsets_must_continue_the_log() {
    let directory = tempfile::tempdir().unwrap();
    let mut log = open(directory.path()).unwrap();
    commit_range(&mut log, 0, 10, 2);
    for (transactions, expected, found) in [
        (vec![(11u64, &b"x"[..])], 10, 11),
        (vec![(9, &b"x"[..])], 10, 9),
        (vec![(10, &b"x"[..]), (12, &b"y"[..])], 11, 12),
    ] {
        match log.commit(&transactions) {
            Err(Error::OffsetMismatch { expected: e, found: f }) => assert_eq!((e, f), (expected, found)),
            other => panic!("expected OffsetMismatch, got {other:?}"),
        }
    }
    assert!(matches!(log.commit(&[]), Err(Error::InvalidArgument { .. })));
    assert_eq!(log.next_offset(), 10, "a refused commit writes nothing");
    log.commit(&[(10, b"fine")]).unwrap();
}

#[test]
fn epochs_are_monotone_and_stored_in_commits() {
    let directory = tempfile::tempdir().unwrap();
    let mut log = open(directory.path()).unwrap();
    commit_range(&mut log, 0, 5, 5);
    log.set_epoch(3).unwrap();
    commit_range(&mut log, 5, 10, 5);
    assert!(matches!(log.set_epoch(2), Err(Error::EpochRegression { current: 3, requested: 2 })));
    log.close().unwrap();
    let log = open(directory.path()).unwrap();
    assert_eq!(log.epoch(), 3);
    let epochs: Vec<u64> = log.commits_from(0).map(|commit| commit.unwrap().epoch).collect();
    assert_eq!(epochs, [0, 3]);
}

#[test]
fn reset_to_removes_everything_after_durably() {
    let directory = tempfile::tempdir().unwrap();
    let mut log = open(directory.path()).unwrap();
    commit_range(&mut log, 0, 120, 3);
    // 61 sits inside the commit [60, 62]: the whole commit goes.
    assert_eq!(log.reset_to(61).unwrap(), 60);
    assert_eq!(log.max_committed_offset(), Some(59));
    commit_range(&mut log, 60, 70, 2);
    log.close().unwrap();
    let log = open(directory.path()).unwrap();
    assert_eq!(all_transactions(&log, 0), (0..70).map(|offset| (offset, payload(offset))).collect::<Vec<_>>());
}

struct Counter(u64);

impl SnapshotSource for Counter {
    fn snapshot(&mut self, offset: u64) -> Vec<u8> {
        assert_eq!(offset + 1, self.0, "the source is asked for its state at the log's end");
        self.0.to_le_bytes().to_vec()
    }
}

#[test]
fn snapshots_fall_due_on_rotation_and_skip_damaged_ones() {
    let directory = tempfile::tempdir().unwrap();
    let mut log = open(directory.path()).unwrap();
    let mut source = Counter(0);
    let mut taken = Vec::new();
    for offset in 0..100u64 {
        log.commit(&[(offset, &payload(offset))]).unwrap();
        source.0 = offset + 1;
        if let Some(at) = log.take_snapshot(&mut source).unwrap() {
            taken.push(at);
        }
    }
    assert!(taken.len() >= 3, "snapshots taken at {taken:?}");
    let latest = log.latest_snapshot().unwrap().unwrap();
    assert_eq!(latest.offset, *taken.last().unwrap());
    assert_eq!(latest.data, (latest.offset + 1).to_le_bytes());
    drop(log);
    // Damage the newest snapshot: the one before it is used.
    let newest = directory.path().join(format!("{:020}.snap", latest.offset));
    let mut bytes = fs::read(&newest).unwrap();
    bytes[20] ^= 1;
    fs::write(&newest, bytes).unwrap();
    let log = open(directory.path()).unwrap();
    let fallback = log.latest_snapshot().unwrap().unwrap();
    assert_eq!(fallback.offset, taken[taken.len() - 2]);
    assert_eq!(fallback.skipped_damaged, 1);
}

#[test]
fn retention_removes_segments_below_the_oldest_kept_snapshot() {
    let directory = tempfile::tempdir().unwrap();
    let options = CommitlogOptions { retention: Retention::RemoveBelowOldestSnapshot, snapshots_kept: 1, ..options() };
    let mut log = Commitlog::open(os(), directory.path(), options).unwrap();
    commit_range(&mut log, 0, 200, 2);
    let mut source = Counter(200);
    let at = log.snapshot_now(&mut source).unwrap().unwrap();
    assert_eq!(at, 199);
    let first = log.min_committed_offset().unwrap();
    assert!(first > 0, "segments below the snapshot were removed");
    let restored_from = log.latest_snapshot().unwrap().unwrap().offset + 1;
    assert_eq!(all_transactions(&log, restored_from).len(), 0);
    assert!(all_transactions(&log, first).len() as u64 == 200 - first);
}

#[test]
fn torn_trailing_commit_is_truncated_and_appending_resumes() {
    let directory = tempfile::tempdir().unwrap();
    let mut log = open(directory.path()).unwrap();
    commit_range(&mut log, 0, 50, 5);
    log.close().unwrap();
    let last = *open(directory.path()).unwrap().segments().last().unwrap();
    let path = directory.path().join(format!("{last:020}.log"));
    let length = fs::metadata(&path).unwrap().len();
    let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(length - 3).unwrap();
    drop(file);
    let mut log = open(directory.path()).unwrap();
    assert!(log.recovery_report().torn_tail.is_some());
    assert_eq!(log.max_committed_offset(), Some(44));
    commit_range(&mut log, 45, 60, 5);
    log.close().unwrap();
    assert_eq!(all_transactions(&open(directory.path()).unwrap(), 0).len(), 60);
}

#[test]
fn a_damaged_first_commit_of_the_last_segment_does_not_wedge_the_log() {
    let directory = tempfile::tempdir().unwrap();
    let mut log = open(directory.path()).unwrap();
    commit_range(&mut log, 0, 80, 4);
    log.close().unwrap();
    let segments = open(directory.path()).unwrap().segments();
    let last = *segments.last().unwrap();
    let path = directory.path().join(format!("{last:020}.log"));
    let mut bytes = fs::read(&path).unwrap();
    bytes[40] ^= 0xff;
    fs::write(&path, bytes).unwrap();
    let mut log = open(directory.path()).unwrap();
    assert_eq!(log.next_offset(), last, "the log resumes at the last segment's first offset");
    log.commit(&[(last, b"again")]).unwrap();
    log.sync().unwrap();
}

#[test]
fn a_header_only_last_segment_is_fine() {
    let directory = tempfile::tempdir().unwrap();
    let mut log = open(directory.path()).unwrap();
    commit_range(&mut log, 0, 10, 2);
    log.rotate().unwrap();
    log.close().unwrap();
    let log = open(directory.path()).unwrap();
    assert_eq!(log.next_offset(), 10);
    assert!(log.recovery_report().torn_tail.is_none());
}

#[test]
fn damage_in_a_sealed_segment_is_strict_corruption_and_repair_keeps_the_prefix() {
    let directory = tempfile::tempdir().unwrap();
    let mut log = open(directory.path()).unwrap();
    commit_range(&mut log, 0, 200, 2);
    log.close().unwrap();
    let segments = open(directory.path()).unwrap().segments();
    let damaged = segments[1];
    let path = directory.path().join(format!("{damaged:020}.log"));
    let mut bytes = fs::read(&path).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    fs::write(&path, bytes).unwrap();
    match open(directory.path()) {
        Err(Error::Corruption { segment, file, .. }) => {
            assert_eq!(segment, damaged);
            assert_eq!(file, path);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    let options = CommitlogOptions { recovery_mode: RecoveryMode::Repair, ..options() };
    let log = Commitlog::open(os(), directory.path(), options).unwrap();
    let repair = log.recovery_report().repair.clone().unwrap();
    assert_eq!(repair.segment, damaged);
    let kept = log.max_committed_offset().unwrap();
    assert!(kept >= damaged && kept < 199);
    assert_eq!(all_transactions(&log, 0), (0..=kept).map(|offset| (offset, payload(offset))).collect::<Vec<_>>());
}

#[test]
fn a_resumed_repair_leaves_the_log_restarted_after_a_snapshot_in_place() {
    // Sim commitlog seeds 67969 and 95073: a repair cut the log below its snapshot (here
    // segment 0's header is damaged, so segment 0 is cut to nothing and segment 10 removed),
    // and the log restarted after the snapshot in a new segment 10, the same name as the one
    // the plan removed. The plan stays until the next write, so a reopen resumed it and removed
    // the restarted log's only segment. A crash left just the snapshot; it rotted, and the next
    // open restarted the log at offset 0 and deleted the snapshot as lying beyond it: synced
    // history dropped without a word. A resumed plan now finishes nothing the restart redid.
    let directory = tempfile::tempdir().unwrap();
    let mut log = open(directory.path()).unwrap();
    commit_range(&mut log, 0, 10, 2);
    log.rotate().unwrap();
    assert_eq!(log.snapshot_now(&mut Counter(10)).unwrap(), Some(9));
    commit_range(&mut log, 10, 12, 1);
    log.close().unwrap();
    let damage = |name: &str, at: usize| {
        let path = directory.path().join(name);
        let mut bytes = fs::read(&path).unwrap();
        bytes[at] ^= 1;
        fs::write(&path, bytes).unwrap();
    };
    damage(&format!("{:020}.log", 0), 0);
    let options = CommitlogOptions { recovery_mode: RecoveryMode::Repair, ..options() };
    let log = Commitlog::open(os(), directory.path(), options).unwrap();
    assert_eq!(log.recovery_report().restarted_after_snapshot, Some(9));
    assert_eq!(log.segments(), [10]);
    drop(log);
    // No write since: the plan is still there. The snapshot is now the only record of 0..=9,
    // so its damage is not recoverable; but the log must still know it starts at 10.
    damage(&format!("{:020}.snap", 9), 20);
    let log = open(directory.path()).unwrap();
    assert!(log.recovery_report().repair.as_ref().is_some_and(|repair| repair.resumed));
    assert_eq!(log.segments(), [10], "the reopen kept the restarted log");
    assert_eq!(log.next_offset(), 10, "the log was not rewound to offset 0");
    assert_eq!(log.recovery_report().snapshots_removed, 0);
}

#[test]
fn few_huge_transactions_still_snapshot_because_rotation_does() {
    // The Maincloud story (SpacetimeDB seed): a database writing a few very large transactions
    // never reached the every-N-transactions snapshot and piled up segments. Rotation makes a
    // snapshot due no matter how few transactions there are.
    let directory = tempfile::tempdir().unwrap();
    let options = CommitlogOptions { snapshot_interval_transactions: 1_000_000, ..options() };
    let mut log = Commitlog::open(os(), directory.path(), options).unwrap();
    let mut source = Counter(0);
    let mut snapshots = Vec::new();
    for offset in 0..6u64 {
        log.commit(&[(offset, &vec![offset as u8; 900])]).unwrap();
        source.0 = offset + 1;
        snapshots.extend(log.take_snapshot(&mut source).unwrap());
    }
    assert!(log.segments().len() >= 5, "each huge transaction rotated: {:?}", log.segments());
    assert!(snapshots.len() >= 4, "a snapshot fell due at each rotation: {snapshots:?}");
}
