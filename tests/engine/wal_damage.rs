//! Hand-damaged segments: damage in a sealed (synced) segment is corruption, reported by a
//! strict open with its segment and offset and cut away by a repair that keeps exactly the
//! records before it; damage at the end of the last segment is a torn tail, truncated silently.

use std::fs;
use std::path::{Path, PathBuf};

use ballast::wal::format::{fragment_checksum, FragmentType, FRAGMENT_HEADER_SIZE};
use ballast::wal::{segment_file_name, Position, RecoveryMode};
use ballast::{CorruptionReason, Error};

use crate::{open, read_all, record, write_log};

fn segment_path(directory: &Path, segment: u64) -> PathBuf {
    directory.join(segment_file_name(segment))
}

fn edit(path: &Path, change: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = fs::read(path).unwrap();
    change(&mut bytes);
    fs::write(path, bytes).unwrap();
}

fn at(offset: u64) -> usize {
    usize::try_from(offset).unwrap()
}

/// Writes a log, damages the second record of segment 1 (a sealed middle segment) with
/// `damage`, and checks what strict and repair opens do.
#[track_caller]
fn check(damage: impl FnOnce(&mut Vec<u8>, u64), expected: impl Fn(&CorruptionReason) -> bool) {
    let directory = tempfile::tempdir().unwrap();
    let positions = write_log(directory.path(), 40);
    let target = positions.iter().position(|position| position.segment == 1).unwrap() + 1;
    let position = positions[target];
    assert_eq!(position.segment, 1, "the damaged record is in the middle segment");
    let last_segment = positions.last().unwrap().segment;
    edit(&segment_path(directory.path(), 1), |bytes| damage(bytes, position.offset));

    match open(directory.path(), RecoveryMode::Strict) {
        Err(Error::Corruption { file, segment, offset, reason }) => {
            assert_eq!(file, segment_path(directory.path(), 1));
            assert_eq!(segment, 1);
            assert_eq!(offset, position.offset);
            assert!(expected(&reason), "unexpected reason {reason:?}");
        }
        other => panic!("strict open must report the corruption, got {other:?}"),
    }
    let report = ballast::wal::verify(&ballast::vfs::OsVfs::new(), directory.path()).unwrap();
    assert!(matches!(report.problem, Some(Error::Corruption { segment: 1, offset, .. }) if offset == position.offset));

    let mut wal = open(directory.path(), RecoveryMode::Repair).unwrap();
    let repair = wal.recovery_report().repair.clone().expect("a repair is reported");
    assert_eq!((repair.segment, repair.offset), (1, position.offset));
    assert_eq!(repair.segments_removed, last_segment - 1);
    assert!(repair.bytes_dropped > 0);
    assert!(repair.records_dropped <= (positions.len() - target) as u64);
    let kept = read_all(&wal);
    let expected_kept: Vec<(Position, Vec<u8>)> = (0..target).map(|index| (positions[index], record(index))).collect();
    assert_eq!(kept, expected_kept, "repair keeps exactly the records before the damage");

    // The repaired log takes writes and reopens strictly.
    let next = wal.append(b"after repair").unwrap();
    assert_eq!(next, position, "appending resumes where the damage was cut");
    wal.close().unwrap();
    let wal = open(directory.path(), RecoveryMode::Strict).unwrap();
    assert_eq!(read_all(&wal).len(), target + 1);
    assert!(!directory.path().join("REPAIR").exists(), "the repair plan is removed once carried out");
}

#[test]
fn bad_checksum_in_a_synced_middle_segment() {
    check(|bytes, offset| bytes[at(offset) + 4] ^= 0x01, |reason| matches!(reason, CorruptionReason::Checksum { .. }));
}

#[test]
fn bad_length_in_a_synced_middle_segment() {
    check(
        |bytes, offset| bytes[at(offset) + 2..at(offset) + 4].copy_from_slice(&[0xff, 0xff]),
        |reason| matches!(reason, CorruptionReason::BadLength { length: 65535 }),
    );
}

#[test]
fn bad_fragment_type_in_a_synced_middle_segment() {
    check(
        |bytes, offset| bytes[at(offset)] = 9,
        |reason| matches!(reason, CorruptionReason::BadFragmentType { fragment_type: 9 }),
    );
}

#[test]
fn bad_fragment_order_in_a_synced_middle_segment() {
    // A middle fragment where a record must start, with a valid checksum: only the order check
    // can catch it.
    check(
        |bytes, offset| {
            let start = at(offset);
            let length = usize::from(u16::from_le_bytes([bytes[start + 2], bytes[start + 3]]));
            bytes[start] = FragmentType::Middle as u8;
            let payload = bytes[start + FRAGMENT_HEADER_SIZE..start + FRAGMENT_HEADER_SIZE + length].to_vec();
            let checksum = fragment_checksum(1, offset, &bytes[start..start + 4], &payload);
            bytes[start + 4..start + 8].copy_from_slice(&checksum.to_le_bytes());
        },
        |reason| matches!(reason, CorruptionReason::BadFragmentOrder { fragment_type: 3 }),
    );
}

#[test]
fn a_valid_fragment_copied_to_another_offset_is_rejected() {
    // A misdirected write: the bytes of a valid fragment, found where they were not written.
    check(
        |bytes, offset| {
            let start = at(offset);
            let source = start - 40;
            let copy = bytes[source..source + 40].to_vec();
            bytes[start..start + 40].copy_from_slice(&copy);
        },
        |reason| !matches!(reason, CorruptionReason::NonZeroPadding),
    );
}

#[test]
fn damaged_header_of_a_middle_segment_is_corruption_at_offset_zero() {
    let directory = tempfile::tempdir().unwrap();
    let positions = write_log(directory.path(), 40);
    edit(&segment_path(directory.path(), 1), |bytes| bytes[0] ^= 0xff);
    match open(directory.path(), RecoveryMode::Strict) {
        Err(Error::Corruption { segment: 1, offset: 0, reason: CorruptionReason::BadMagic, .. }) => {}
        other => panic!("expected bad magic in segment 1, got {other:?}"),
    }
    let wal = open(directory.path(), RecoveryMode::Repair).unwrap();
    let kept = positions.iter().filter(|position| position.segment == 0).count();
    assert_eq!(read_all(&wal).len(), kept);
    assert_eq!(wal.segments(), (0, 1), "the damaged segment is rewritten empty, later ones removed");
}

#[test]
fn torn_last_record_is_truncated_silently_and_appending_continues() {
    let directory = tempfile::tempdir().unwrap();
    let positions = write_log(directory.path(), 40);
    let last = *positions.last().unwrap();
    let path = segment_path(directory.path(), last.segment);
    let length_before = fs::metadata(&path).unwrap().len();
    edit(&path, |bytes| bytes.truncate(at(last.offset) + 5));

    let mut wal = open(directory.path(), RecoveryMode::Strict).unwrap();
    let torn = wal.recovery_report().torn_tail.clone().expect("a torn tail is reported");
    assert_eq!((torn.segment, torn.offset, torn.bytes_dropped), (last.segment, last.offset, 5));
    assert!(length_before > last.offset + 5);
    assert_eq!(read_all(&wal).len(), 39);
    assert_eq!(wal.append(b"replacement").unwrap(), last, "the next record takes the torn one's place");
    wal.close().unwrap();
    let wal = open(directory.path(), RecoveryMode::Strict).unwrap();
    assert_eq!(read_all(&wal).last().unwrap().1, b"replacement");
}

#[test]
fn garbage_after_the_last_record_is_a_torn_tail() {
    let directory = tempfile::tempdir().unwrap();
    let positions = write_log(directory.path(), 12);
    let last = *positions.last().unwrap();
    let path = segment_path(directory.path(), last.segment);
    edit(&path, |bytes| bytes.extend_from_slice(&[0xab; 300]));
    let wal = open(directory.path(), RecoveryMode::Strict).unwrap();
    assert_eq!(wal.recovery_report().torn_tail.as_ref().unwrap().bytes_dropped, 300);
    assert_eq!(read_all(&wal).len(), 12);
}

#[test]
fn zeros_after_the_last_record_are_preallocated_space() {
    // The active segment is preallocated with zeros, and a crash can leave zeros too (the size
    // reached the disk before the data). Neither is a torn tail: the zeros stay, appending
    // overwrites them, and nothing of them is ever read as a record.
    let directory = tempfile::tempdir().unwrap();
    let positions = write_log(directory.path(), 12);
    let last = *positions.last().unwrap();
    let path = segment_path(directory.path(), last.segment);
    let closed_length = fs::metadata(&path).unwrap().len();
    edit(&path, |bytes| bytes.extend_from_slice(&[0; 700]));
    let mut wal = open(directory.path(), RecoveryMode::Strict).unwrap();
    assert_eq!(wal.recovery_report().torn_tail, None);
    assert_eq!(read_all(&wal).len(), 12);
    let next = wal.append(b"after the zeros").unwrap();
    assert_eq!(next.offset, closed_length, "appending continues right after the last record");
    let end = wal.end();
    wal.close().unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), end.offset, "close cuts the preallocation");
    let wal = open(directory.path(), RecoveryMode::Strict).unwrap();
    let records = read_all(&wal);
    assert_eq!(records.len(), 13);
    assert_eq!(records.last().unwrap().1, b"after the zeros");
}

#[test]
fn garbage_beyond_preallocated_zeros_is_a_torn_tail() {
    // A torn write can land past zeros: the whole region after the data is cut, so the stale
    // bytes can never follow records appended later.
    let directory = tempfile::tempdir().unwrap();
    let positions = write_log(directory.path(), 12);
    let last = *positions.last().unwrap();
    let path = segment_path(directory.path(), last.segment);
    let closed_length = fs::metadata(&path).unwrap().len();
    edit(&path, |bytes| {
        bytes.extend_from_slice(&[0; 70_000]);
        bytes.extend_from_slice(&[0x5a; 10]);
    });
    let wal = open(directory.path(), RecoveryMode::Strict).unwrap();
    let torn = wal.recovery_report().torn_tail.clone().expect("a torn tail is reported");
    assert_eq!((torn.offset, torn.bytes_dropped), (closed_length, 70_010));
    assert_eq!(fs::metadata(&path).unwrap().len(), closed_length);
    assert_eq!(read_all(&wal).len(), 12);
}

#[test]
fn a_sealed_segment_cut_short_is_corruption() {
    // Regression (simulator, wal seed 126 when found): a misdirected padding write left zeros
    // over the last synced records of a segment before it was sealed. The zeros looked like a
    // clean end, and recovery returned a log with a hole. A sealed segment must end exactly at
    // its padded page boundary.
    let directory = tempfile::tempdir().unwrap();
    let positions = write_log(directory.path(), 40);
    let last_in_zero = positions.iter().rev().find(|position| position.segment == 0).unwrap();
    edit(&segment_path(directory.path(), 0), |bytes| {
        let start = at(last_in_zero.offset);
        bytes[start..].fill(0);
        bytes.truncate(start + 10);
    });
    match open(directory.path(), RecoveryMode::Strict) {
        Err(Error::Corruption { segment: 0, offset, .. }) => assert_eq!(offset, last_in_zero.offset),
        other => panic!("expected corruption in segment 0, got {other:?}"),
    }
}

#[test]
fn verify_reports_counts_and_a_torn_tail_and_changes_nothing() {
    let directory = tempfile::tempdir().unwrap();
    let positions = write_log(directory.path(), 30);
    let last = *positions.last().unwrap();
    let path = segment_path(directory.path(), last.segment);
    edit(&path, |bytes| bytes.truncate(at(last.offset) + 3));
    let before = fs::read(&path).unwrap();
    let report = ballast::wal::verify(&ballast::vfs::OsVfs::new(), directory.path()).unwrap();
    assert_eq!(report.records_count, 29);
    assert_eq!(report.segments_count, last.segment + 1);
    assert!(report.problem.is_none());
    assert_eq!(report.torn_tail.unwrap().offset, last.offset);
    assert_eq!(fs::read(&path).unwrap(), before, "verify changes nothing");
}
