//! The WAL on the real filesystem: round trips, reopen, rotation, truncation, poisoning.

use ballast::wal::{Position, RecoveryMode, Wal, WalOptions};
use ballast::Error;

use crate::{open, os, read_all, record, small_options, write_log};

#[test]
fn records_round_trip_across_pages_and_segments() {
    let directory = tempfile::tempdir().unwrap();
    let positions = write_log(directory.path(), 40);
    let wal = open(directory.path(), RecoveryMode::Strict).unwrap();
    let records = read_all(&wal);
    assert_eq!(records.len(), 40);
    for (index, (position, data)) in records.iter().enumerate() {
        assert_eq!(*position, positions[index]);
        assert_eq!(*data, record(index), "record {index}");
    }
    assert_eq!(wal.recovery_report().records_count, 40);
    assert_eq!(wal.recovery_report().torn_tail, None);
}

#[test]
fn appending_continues_after_reopen() {
    let directory = tempfile::tempdir().unwrap();
    let positions = write_log(directory.path(), 20);
    let mut wal = open(directory.path(), RecoveryMode::Strict).unwrap();
    let next = wal.append(b"after reopen").unwrap();
    assert!(next > *positions.last().unwrap());
    wal.sync().unwrap();
    let records = read_all(&wal);
    assert_eq!(records.len(), 21);
    assert_eq!(records[20].1, b"after reopen");
}

#[test]
fn records_from_a_position_skip_what_comes_before() {
    let directory = tempfile::tempdir().unwrap();
    let positions = write_log(directory.path(), 30);
    let wal = open(directory.path(), RecoveryMode::Strict).unwrap();
    let from = positions[17];
    let records: Vec<_> = wal.records_from(from).unwrap().map(Result::unwrap).collect();
    assert_eq!(records.len(), 13);
    assert_eq!(records[0], (from, record(17)));
}

#[test]
fn batch_append_returns_increasing_positions() {
    let directory = tempfile::tempdir().unwrap();
    let mut wal = open(directory.path(), RecoveryMode::Strict).unwrap();
    let records: Vec<Vec<u8>> = (0..12).map(record).collect();
    let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
    let positions = wal.append_batch(&slices).unwrap();
    assert!(positions.windows(2).all(|pair| pair[0] < pair[1]));
    assert_eq!(read_all(&wal).into_iter().map(|(_, data)| data).collect::<Vec<_>>(), records);
}

#[test]
fn truncate_before_removes_old_segments_durably() {
    let directory = tempfile::tempdir().unwrap();
    let positions = write_log(directory.path(), 40);
    let mut wal = open(directory.path(), RecoveryMode::Strict).unwrap();
    let (_, last) = wal.segments();
    wal.truncate_before(last).unwrap();
    assert_eq!(wal.segments(), (last, last));
    drop(wal);
    let wal = open(directory.path(), RecoveryMode::Strict).unwrap();
    let kept: Vec<Position> = positions.iter().copied().filter(|position| position.segment >= last).collect();
    assert_eq!(read_all(&wal).into_iter().map(|(position, _)| position).collect::<Vec<_>>(), kept);
}

#[test]
fn truncate_before_beyond_the_last_segment_is_rejected() {
    let directory = tempfile::tempdir().unwrap();
    let mut wal = open(directory.path(), RecoveryMode::Strict).unwrap();
    assert!(matches!(wal.truncate_before(5), Err(Error::InvalidArgument { .. })));
}

#[test]
fn a_record_larger_than_a_segment_is_refused_and_nothing_is_written() {
    let directory = tempfile::tempdir().unwrap();
    let mut wal = open(directory.path(), RecoveryMode::Strict).unwrap();
    let max = wal.record_length_max();
    let too_large = vec![7u8; usize::try_from(max).unwrap() + 1];
    match wal.append_batch(&[b"fits", &too_large]) {
        Err(Error::RecordTooLarge { length, max: reported }) => {
            assert_eq!(length, max + 1);
            assert_eq!(reported, max);
        }
        other => panic!("expected RecordTooLarge, got {other:?}"),
    }
    assert!(read_all(&wal).is_empty(), "a refused batch writes nothing");
    let largest = vec![9u8; usize::try_from(max).unwrap()];
    wal.append(&largest).unwrap();
    assert_eq!(read_all(&wal)[0].1, largest);
}

#[test]
fn invalid_geometry_is_an_invalid_argument() {
    let directory = tempfile::tempdir().unwrap();
    for (segment_size, page_size) in [(1024, 100), (1000, 256), (256, 256), (1 << 20, 1 << 17)] {
        let options = WalOptions { segment_size, page_size, ..WalOptions::default() };
        assert!(
            matches!(Wal::open(os(), directory.path(), options), Err(Error::InvalidArgument { .. })),
            "segment_size {segment_size} page_size {page_size}"
        );
    }
}

#[test]
fn a_directory_is_created_when_missing() {
    let directory = tempfile::tempdir().unwrap();
    let nested = directory.path().join("a").join("wal");
    let mut wal = Wal::open(os(), &nested, small_options(RecoveryMode::Strict)).unwrap();
    wal.append(b"x").unwrap();
    wal.close().unwrap();
    assert!(nested.join("00000000").exists());
}

#[test]
fn buffered_appends_are_read_back_through_the_handle_and_flush_hands_them_to_the_os() {
    let directory = tempfile::tempdir().unwrap();
    let mut wal = open(directory.path(), RecoveryMode::Strict).unwrap();
    wal.append(b"buffered").unwrap();
    assert_eq!(read_all(&wal)[0].1, b"buffered", "a reader of the handle sees buffered records");
    let segment = directory.path().join("00000000");
    let header_only = std::fs::metadata(&segment).unwrap().len();
    wal.flush().unwrap();
    assert!(std::fs::metadata(&segment).unwrap().len() > header_only, "flush writes to the OS");
    // Dropped without a sync: what was flushed is in the OS and a new open finds it.
    drop(wal);
    let wal = open(directory.path(), RecoveryMode::Strict).unwrap();
    assert_eq!(read_all(&wal).len(), 1);
}

/// The active segment is extended in 4 MiB steps ahead of its records (so most syncs do not
/// change the file's length); a sealed segment keeps its zeros, and closing cuts the active one
/// to its last record.
#[test]
fn the_active_segment_is_preallocated_and_cut_when_closed() {
    let directory = tempfile::tempdir().unwrap();
    let options = WalOptions { segment_size: 16 << 20, page_size: 4096, ..WalOptions::default() };
    let length = |segment: u64| std::fs::metadata(directory.path().join(format!("{segment:08}"))).unwrap().len();
    let mut wal = Wal::open(os(), directory.path(), options.clone()).unwrap();
    wal.append(&[7u8; 100]).unwrap();
    wal.sync().unwrap();
    assert_eq!(length(0), 4 << 20, "the first write preallocates one step");
    for _ in 0..50 {
        wal.append(&[8u8; 100_000]).unwrap();
    }
    wal.sync().unwrap();
    assert_eq!(length(0), 8 << 20, "writing past the step extends by another");
    let end_of_zero = wal.end().offset;
    wal.rotate().unwrap();
    assert!(end_of_zero < 8 << 20);
    assert_eq!(length(0), 8 << 20, "a sealed segment keeps its preallocated zeros");
    wal.append(b"in segment one").unwrap();
    let end = wal.end();
    wal.close().unwrap();
    assert_eq!(length(1), end.offset, "close leaves only what was written");
    let wal = Wal::open(os(), directory.path(), options).unwrap();
    assert_eq!(wal.recovery_report().torn_tail, None);
    assert_eq!(wal.records().count(), 52);
}
