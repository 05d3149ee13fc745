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

/// Options that keep one truncated segment's file for reuse, with the small test geometry.
fn recycling_options() -> WalOptions {
    WalOptions { recycle_segments: 1, ..small_options(RecoveryMode::Strict) }
}

fn names_in(directory: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(directory)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != ballast::vfs::LOCK_FILE_NAME)
        .collect();
    names.sort();
    names
}

/// Appends 100-byte records tagged with `tag` until the log's active segment is `segment`.
fn append_until_segment(wal: &mut Wal, segment: u64, tag: u8, appended: &mut Vec<(Position, Vec<u8>)>) {
    while wal.end().segment < segment {
        let data = vec![tag; 100];
        let position = wal.append(&data).unwrap();
        appended.push((position, data));
    }
}

#[test]
fn a_truncated_segment_file_is_reused_and_its_old_records_never_read_back() {
    let directory = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(os(), directory.path(), recycling_options()).unwrap();
    let mut appended = Vec::new();
    append_until_segment(&mut wal, 1, 0xAA, &mut appended);
    wal.truncate_before(1).unwrap();
    appended.retain(|(position, _)| position.segment >= 1);
    assert_eq!(names_in(directory.path()), ["00000000.recycle", "00000001"]);
    // Rotating into segment 2 takes the kept file: no new file, no file left over.
    append_until_segment(&mut wal, 2, 0xBB, &mut appended);
    assert_eq!(names_in(directory.path()), ["00000001", "00000002"]);
    let reused_length = std::fs::metadata(directory.path().join("00000002")).unwrap().len();
    assert!(reused_length > 600, "the reused file keeps segment 0's bytes ({reused_length})");
    // A short record in segment 2: the bytes after it are segment 0's old fragments.
    let position = wal.append(b"new").unwrap();
    appended.push((position, b"new".to_vec()));
    wal.sync().unwrap();
    assert_eq!(read_all(&wal), appended);
    // Drop without closing, as a crash would leave it: the old bytes are cut off as a tail.
    drop(wal);
    let wal = Wal::open(os(), directory.path(), recycling_options()).unwrap();
    assert_eq!(read_all(&wal), appended);
    let torn = wal.recovery_report().torn_tail.clone().expect("the old bytes after the records are dropped");
    assert_eq!((torn.segment, torn.offset), (2, position.offset + 8 + 3));
    assert_eq!(torn.bytes_dropped, reused_length - torn.offset);
    assert_eq!(ballast::wal::verify(os().as_ref(), directory.path()).unwrap().problem.map(|e| e.to_string()), None);
}

#[test]
fn a_reused_segment_sealed_short_of_its_old_length_verifies_clean() {
    let directory = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(os(), directory.path(), recycling_options()).unwrap();
    let mut appended = Vec::new();
    append_until_segment(&mut wal, 1, 1, &mut appended);
    wal.truncate_before(1).unwrap();
    append_until_segment(&mut wal, 2, 2, &mut appended);
    // Seal segment 2 with one record in it: the rest of the old file must not survive as data
    // after the seal's padding (a strict open would call it corruption of a sealed segment).
    let position = wal.append(b"only").unwrap();
    assert_eq!(position.segment, 2);
    wal.rotate().unwrap();
    let last = wal.append(b"in segment 3").unwrap();
    wal.close().unwrap();
    let length = std::fs::metadata(directory.path().join("00000002")).unwrap().len();
    assert_eq!(length, 256, "sealed at the end of its first page");
    let wal = Wal::open(os(), directory.path(), recycling_options()).unwrap();
    let records = read_all(&wal);
    assert_eq!(records.last().unwrap(), &(last, b"in segment 3".to_vec()));
    assert!(records.contains(&(position, b"only".to_vec())));
    assert_eq!(wal.recovery_report().torn_tail, None);
    let report = ballast::wal::verify(os().as_ref(), directory.path()).unwrap();
    assert!(report.problem.is_none(), "{:?}", report.problem);
}

#[test]
fn kept_files_beyond_the_option_are_removed_at_open_and_none_kept_with_zero() {
    let directory = tempfile::tempdir().unwrap();
    let options = WalOptions { recycle_segments: 3, ..small_options(RecoveryMode::Strict) };
    let mut wal = Wal::open(os(), directory.path(), options.clone()).unwrap();
    let mut appended = Vec::new();
    append_until_segment(&mut wal, 4, 3, &mut appended);
    wal.truncate_before(4).unwrap();
    wal.close().unwrap();
    // Three files kept, the fourth removed.
    assert_eq!(names_in(directory.path()), ["00000000.recycle", "00000001.recycle", "00000002.recycle", "00000004"]);
    let wal = Wal::open(os(), directory.path(), WalOptions { recycle_segments: 1, ..options.clone() }).unwrap();
    assert_eq!(names_in(directory.path()), ["00000000.recycle", "00000004"]);
    drop(wal);
    let mut wal = Wal::open(os(), directory.path(), WalOptions { recycle_segments: 0, ..options }).unwrap();
    assert_eq!(names_in(directory.path()), ["00000004"]);
    append_until_segment(&mut wal, 6, 4, &mut appended);
    wal.truncate_before(6).unwrap();
    assert_eq!(names_in(directory.path()), ["00000006"]);
}
