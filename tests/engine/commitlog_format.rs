//! Commitlog bytes: layout snapshots, detection of forks and gaps in hand-made segments, index
//! rebuilds, verify, and a proptest that no single flipped bit is ever returned as data.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::OnceLock;

use ballast::commitlog::format::{self, encode_commit, encode_segment_header};
use ballast::commitlog::{Commitlog, CommitlogOptions};
use ballast::{CorruptionReason, Error};
use proptest::prelude::*;

use crate::os;

fn options() -> CommitlogOptions {
    CommitlogOptions {
        segment_size_max: 400,
        index_interval_bytes: 60,
        write_buffer_size: 128,
        ..CommitlogOptions::default()
    }
}

fn payload(offset: u64) -> Vec<u8> {
    vec![(offset % 251) as u8; (offset % 5 + 1) as usize]
}

/// A synced log of offsets 0..count, two transactions per commit.
fn write_log(directory: &Path, count: u64) {
    let mut log = Commitlog::open(os(), directory, options()).unwrap();
    let mut offset = 0;
    while offset < count {
        let end = (offset + 2).min(count);
        let payloads: Vec<Vec<u8>> = (offset..end).map(payload).collect();
        let transactions: Vec<(u64, &[u8])> = (offset..end).zip(payloads.iter().map(Vec::as_slice)).collect();
        log.commit(&transactions).unwrap();
        offset = end;
    }
    log.close().unwrap();
}

fn read_all(log: &Commitlog) -> ballast::Result<Vec<(u64, Vec<u8>)>> {
    log.transactions_from(0).collect()
}

#[test]
fn byte_layout() {
    let directory = tempfile::tempdir().unwrap();
    let mut log = Commitlog::open(os(), directory.path(), options()).unwrap();
    log.set_epoch(7).unwrap();
    log.commit(&[(0, b"alpha"), (1, b"")]).unwrap();
    log.commit(&[(2, b"beta")]).unwrap();
    log.rotate().unwrap();
    struct Fixed;
    impl ballast::commitlog::SnapshotSource for Fixed {
        fn snapshot(&mut self, _offset: u64) -> Vec<u8> {
            b"state".to_vec()
        }
    }
    log.snapshot_now(&mut Fixed).unwrap();
    log.close().unwrap();
    let read = |name: &str| crate::hexdump(&fs::read(directory.path().join(name)).unwrap(), usize::MAX);
    insta::assert_snapshot!("commitlog_segment", read("00000000000000000000.log"));
    insta::assert_snapshot!("commitlog_index", read("00000000000000000000.idx"));
    insta::assert_snapshot!("commitlog_snapshot", read("00000000000000000002.snap"));
}

/// Writes a segment by hand: `commits` as (first offset, transaction count).
fn hand_segment(directory: &Path, min_offset: u64, commits: &[(u64, u64)]) {
    let mut bytes = encode_segment_header(min_offset).to_vec();
    for &(first, count) in commits {
        let payloads: Vec<Vec<u8>> = (first..first + count).map(payload).collect();
        let position = bytes.len() as u64;
        encode_commit(&mut bytes, min_offset, position, first, 0, payloads.iter().map(Vec::as_slice));
    }
    fs::write(directory.join(format::segment_file_name(min_offset)), bytes).unwrap();
}

#[track_caller]
fn check_strict(directory: &Path, segment: u64, expected: CorruptionReason) {
    match Commitlog::open(os(), directory, options()) {
        Err(Error::Corruption { segment: found, reason, .. }) => {
            assert_eq!(found, segment);
            assert_eq!(reason, expected);
        }
        other => panic!("expected corruption in segment {segment}, got {other:?}"),
    }
}

#[test]
fn a_commit_repeating_offsets_is_a_fork() {
    let directory = tempfile::tempdir().unwrap();
    hand_segment(directory.path(), 0, &[(0, 2), (1, 2), (3, 1)]);
    hand_segment(directory.path(), 4, &[(4, 1)]);
    check_strict(directory.path(), 0, CorruptionReason::Forked { expected: 2, found: 1 });
}

#[test]
fn a_commit_skipping_offsets_is_out_of_order() {
    let directory = tempfile::tempdir().unwrap();
    hand_segment(directory.path(), 0, &[(0, 2), (5, 1)]);
    hand_segment(directory.path(), 6, &[(6, 1)]);
    check_strict(directory.path(), 0, CorruptionReason::OutOfOrder { expected: 2, found: 5 });
}

#[test]
fn segments_that_overlap_or_leave_a_gap_are_detected() {
    let directory = tempfile::tempdir().unwrap();
    hand_segment(directory.path(), 0, &[(0, 4)]);
    hand_segment(directory.path(), 2, &[(2, 3)]);
    check_strict(directory.path(), 2, CorruptionReason::Forked { expected: 4, found: 2 });
    let directory = tempfile::tempdir().unwrap();
    hand_segment(directory.path(), 0, &[(0, 4)]);
    hand_segment(directory.path(), 9, &[(9, 1)]);
    check_strict(directory.path(), 9, CorruptionReason::OutOfOrder { expected: 4, found: 9 });
}

#[test]
fn missing_damaged_or_wrong_index_files_are_rebuilt() {
    let directory = tempfile::tempdir().unwrap();
    write_log(directory.path(), 60);
    let log = Commitlog::open(os(), directory.path(), options()).unwrap();
    let segments = log.segments();
    drop(log);
    assert!(segments.len() >= 4, "{segments:?}");
    let index = |segment: u64| directory.path().join(format::index_file_name(segment));
    let original = fs::read(index(segments[1])).unwrap();
    fs::remove_file(index(segments[0])).unwrap();
    let mut damaged = original.clone();
    damaged[40] ^= 1;
    fs::write(index(segments[1]), damaged).unwrap();
    // Valid checksum, wrong content: an index that points every entry at the segment start.
    let wrong = format::encode_index(segments[2], 33, &[format::IndexEntry { offset: segments[2] + 1, position: 32 }]);
    fs::write(index(segments[2]), wrong).unwrap();
    let log = Commitlog::open(os(), directory.path(), options()).unwrap();
    assert_eq!(log.recovery_report().indexes_rebuilt, 3);
    assert_eq!(fs::read(index(segments[1])).unwrap(), original, "rebuilt byte for byte");
    assert!(index(segments[0]).exists());
    assert_eq!(read_all(&log).unwrap().len(), 60);
    for from in [segments[2], segments[2] + 1, 59] {
        assert_eq!(log.transactions_from(from).next().unwrap().unwrap().0, from);
    }
}

#[test]
fn verify_reports_without_changing_anything() {
    let directory = tempfile::tempdir().unwrap();
    write_log(directory.path(), 40);
    let log = Commitlog::open(os(), directory.path(), options()).unwrap();
    let segments = log.segments();
    drop(log);
    let index = directory.path().join(format::index_file_name(segments[0]));
    fs::write(&index, b"not an index").unwrap();
    let last = directory.path().join(format::segment_file_name(*segments.last().unwrap()));
    let mut bytes = fs::read(&last).unwrap();
    bytes.extend_from_slice(&[7; 9]);
    fs::write(&last, &bytes).unwrap();
    let report = ballast::commitlog::verify(&ballast::vfs::OsVfs::new(), directory.path()).unwrap();
    assert!(report.problem.is_none(), "{:?}", report.problem);
    assert_eq!(report.transactions_count, 40);
    assert_eq!(report.indexes_damaged, [segments[0]]);
    assert_eq!(report.torn_tail.unwrap().bytes_dropped, 9);
    assert_eq!(fs::read(&index).unwrap(), b"not an index", "verify changes nothing");
    assert_eq!(fs::read(&last).unwrap(), bytes);
}

/// The files of a small synced multi-segment log, made once.
fn base_log() -> &'static BTreeMap<String, Vec<u8>> {
    static BASE: OnceLock<BTreeMap<String, Vec<u8>>> = OnceLock::new();
    BASE.get_or_init(|| {
        let directory = tempfile::tempdir().unwrap();
        write_log(directory.path(), 80);
        fs::read_dir(directory.path())
            .unwrap()
            .map(|entry| entry.unwrap())
            .filter(|entry| entry.file_name() != "LOCK")
            .map(|entry| (entry.file_name().into_string().unwrap(), fs::read(entry.path()).unwrap()))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// One flipped bit anywhere: a strict open reports it (sealed segments), truncates it as a
    /// torn tail (the last segment) or rebuilds around it (index files), and what is read back
    /// is always exactly a prefix of what was written, never a wrong payload.
    #[test]
    fn a_flipped_bit_is_never_returned_as_data(file_pick in any::<prop::sample::Index>(), byte_pick in any::<prop::sample::Index>(), bit in 0..8u8) {
        let base = base_log();
        let names: Vec<&String> = base.keys().collect();
        let name = names[file_pick.index(names.len())];
        let byte = byte_pick.index(base[name].len());
        let directory = tempfile::tempdir().unwrap();
        for (file, bytes) in base {
            let mut bytes = bytes.clone();
            if file == name {
                bytes[byte] ^= 1 << bit;
            }
            fs::write(directory.path().join(file), bytes).unwrap();
        }
        let segments: Vec<&&String> = names.iter().filter(|name| name.ends_with(".log")).collect();
        // Sealed segments are synced whole, and every segment's header is written before its
        // name exists: damage there is corruption. The rest of the last segment is its tail.
        let is_sealed_segment = name.ends_with(".log")
            && (Some(&name) != segments.last().copied() || byte < format::SEGMENT_HEADER_SIZE);
        match Commitlog::open(os(), directory.path(), options()) {
            Err(Error::Corruption { file, .. }) => {
                prop_assert!(is_sealed_segment, "only damage to synced segment bytes fails a strict open, not {} at {}", name, byte);
                prop_assert_eq!(file, directory.path().join(name));
            }
            Ok(log) => {
                prop_assert!(!is_sealed_segment, "a flip in sealed segment {} at byte {} was not reported", name, byte);
                let read = read_all(&log).unwrap();
                let expected: Vec<(u64, Vec<u8>)> = (0..read.len() as u64).map(|offset| (offset, payload(offset))).collect();
                prop_assert_eq!(read, expected, "a prefix of what was written");
            }
            Err(error) => prop_assert!(false, "unexpected error {}", error),
        }
    }
}
