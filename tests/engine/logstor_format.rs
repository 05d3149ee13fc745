//! logstor bytes: record and buffer round trips, layout snapshots, and recovery scans that stop
//! where they must (a stale generation, a damaged later buffer header).

use std::fs;
use std::path::Path;

use ballast::logstor::format::{
    self, decode_buffer_header, decode_record, encode_record, seal_buffer, verify_buffer, BufferKind, Record,
    BLOCK_SIZE, BUFFER_HEADER_SIZE,
};
use ballast::logstor::{Logstor, LogstorOptions};
use ballast::{CorruptionReason, Error, RecoveryMode};
use proptest::prelude::*;

use crate::logstor_os::{open, options};
use crate::os;

proptest! {
    #[test]
    fn records_round_trip(key in prop::collection::vec(any::<u8>(), 0..300), value in prop::option::of(prop::collection::vec(any::<u8>(), 0..3000)), group in any::<u32>(), sequence in any::<u64>()) {
        let record = Record { key: &key, value: value.as_deref(), group, sequence };
        let mut bytes = Vec::new();
        encode_record(&mut bytes, &record);
        prop_assert_eq!(bytes.len(), record.size());
        prop_assert_eq!(decode_record(&bytes).unwrap(), record);
    }

    #[test]
    fn a_record_decoder_survives_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_record(&bytes);
        let _ = decode_buffer_header(&bytes, 0, 0, 1 << 20);
    }

    #[test]
    fn a_flipped_bit_in_a_buffer_is_caught(flip in 0..(BLOCK_SIZE as usize * 8)) {
        let mut buffer = vec![0u8; BUFFER_HEADER_SIZE];
        encode_record(&mut buffer, &Record { key: b"key", value: Some(b"value"), group: 1, sequence: 9 });
        seal_buffer(&mut buffer, BufferKind::Data, 2, 7, 3, 4096, 1);
        buffer[flip / 8] ^= 1 << (flip % 8);
        let verified = decode_buffer_header(&buffer, 7, 4096, BLOCK_SIZE)
            .ok()
            .filter(|header| verify_buffer(&buffer, header).is_ok());
        prop_assert!(verified.is_none(), "bit {} flipped and the buffer still verifies", flip);
    }
}

#[test]
fn byte_layout() {
    let mut buffer = vec![0u8; BUFFER_HEADER_SIZE];
    encode_record(&mut buffer, &Record { key: b"apple", value: Some(b"red"), group: 1, sequence: 42 });
    encode_record(&mut buffer, &Record { key: b"pear", value: None, group: 1, sequence: 43 });
    seal_buffer(&mut buffer, BufferKind::Data, 2, 5, 3, 8192, 2);
    assert_eq!(buffer.len(), BLOCK_SIZE as usize, "a buffer is whole blocks");
    insta::assert_snapshot!("logstor_data_buffer", crate::hexdump(&buffer, 9));
    insta::assert_snapshot!("logstor_seal", crate::hexdump(&format::marker(BufferKind::Seal, 2, 5, 3, 12288), 9));
    let geometry = format::Geometry { segment_size: 1 << 20, segments_per_file: 64 };
    let meta = format::Meta { geometry, groups_count: Some(16) };
    insta::assert_snapshot!("logstor_meta", crate::hexdump(&format::encode_meta(&meta), 9));
}

/// The bytes of data file 0.
fn data_file(directory: &Path) -> std::path::PathBuf {
    directory.join(format::data_file_name(0))
}

#[test]
fn a_stale_buffer_of_a_lower_generation_ends_the_scan() {
    // A segment reused after being freed: buffers left from its earlier use carry a lower
    // generation and must never be read as part of the new one.
    let directory = tempfile::tempdir().unwrap();
    let segment_size = options().segment_size;
    let mut store = open(directory.path());
    store.put(b"old", b"first use").unwrap();
    store.sync().unwrap();
    store.close().unwrap();
    // Hand-make a stale buffer of generation 0 right after segment 0's first buffer.
    let path = data_file(directory.path());
    let mut bytes = fs::read(&path).unwrap();
    let mut stale = vec![0u8; BUFFER_HEADER_SIZE];
    encode_record(&mut stale, &Record { key: b"ghost", value: Some(b"from before"), group: 0, sequence: 1 });
    seal_buffer(&mut stale, BufferKind::Data, 0, 0, 0, BLOCK_SIZE, 1);
    // Overwrite the seal with it: the scan must stop there (no seal: a torn tail), not read it.
    bytes[BLOCK_SIZE as usize..2 * BLOCK_SIZE as usize].copy_from_slice(&stale);
    assert!(bytes.len() as u64 >= segment_size);
    fs::write(&path, bytes).unwrap();
    let store = open(directory.path());
    assert_eq!(store.get(b"old").unwrap(), Some(b"first use".to_vec()));
    assert!(!store.contains(b"ghost"), "a lower generation is stale");
    assert_eq!(store.recovery_report().torn_segments_sealed, 1);
}

#[test]
fn a_damaged_later_buffer_header_in_a_sealed_segment_is_corruption() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = open(directory.path());
    // Three buffers of segment 0, five records to a buffer; no more, so that no put opens a
    // second mixed segment, which would first separate segment 0 (and free it).
    for index in 0..12u32 {
        store.put(&index.to_le_bytes(), &vec![index as u8; 700]).unwrap();
    }
    store.seal_mixed().unwrap();
    store.close().unwrap();
    let path = data_file(directory.path());
    let mut bytes = fs::read(&path).unwrap();
    // Segment 0's second buffer starts one write buffer in; damage its magic.
    let second = options().write_buffer_size;
    assert_eq!(&bytes[second..second + 4], b"LSTB");
    bytes[second] ^= 0xff;
    fs::write(&path, bytes).unwrap();
    match Logstor::open(os(), directory.path(), options()) {
        Err(Error::Corruption { file, offset, reason: CorruptionReason::BadMagic, .. }) => {
            assert_eq!(file, path);
            assert_eq!(offset, second as u64);
        }
        other => panic!("expected corruption at the second buffer, got {other:?}"),
    }
    let repaired =
        Logstor::open(os(), directory.path(), LogstorOptions { recovery_mode: RecoveryMode::Repair, ..options() })
            .unwrap();
    let repair = repaired.recovery_report().repair.clone().expect("a repair is reported");
    assert_eq!(repair.offset, second as u64);
    assert!(repair.records_dropped > 0);
    let kept = repaired.len();
    assert_eq!(kept, 5, "the records of the first buffer are kept");
    drop(repaired);
    let reopened = open(directory.path());
    assert_eq!(reopened.len(), kept, "the repaired store reopens strictly");
}

#[test]
fn verify_reports_without_changing_anything() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = open(directory.path());
    for index in 0..30u32 {
        store.put(&index.to_le_bytes(), &vec![1; 300]).unwrap();
    }
    store.sync().unwrap();
    drop(store);
    let before = fs::read(data_file(directory.path())).unwrap();
    let report = ballast::logstor::verify(&ballast::vfs::OsVfs::new(), directory.path()).unwrap();
    assert!(report.problem.is_none());
    assert_eq!(report.records_count, 30);
    assert_eq!(report.torn_segments, 1, "the open mixed segment was never sealed");
    assert_eq!(fs::read(data_file(directory.path())).unwrap(), before);
}

#[test]
fn maintenance_runs_on_a_background_thread() {
    use std::sync::{Arc, Mutex};
    let directory = tempfile::tempdir().unwrap();
    let store = Arc::new(Mutex::new(open(directory.path())));
    let maintenance = ballast::logstor::Maintenance::spawn(Arc::clone(&store), std::time::Duration::from_millis(1));
    for version in 0..5u32 {
        for index in 0..100u32 {
            let mut store = store.lock().unwrap();
            store.put(&index.to_le_bytes(), &version.to_le_bytes().repeat(50)).unwrap();
            if index % 25 == 0 {
                store.seal_mixed().unwrap();
            }
        }
    }
    maintenance.stop().unwrap();
    let store = store.lock().unwrap();
    for index in 0..100u32 {
        assert_eq!(store.get(&index.to_le_bytes()).unwrap(), Some(4u32.to_le_bytes().repeat(50)));
    }
}

/// Regression (issue 11, found by the repair-count proptest): one flipped bit in the generation
/// field of a sealed segment's first buffer. The scan took that generation before verifying the
/// buffer, looked for a seal of it, found none, and took the synced segment for one torn while
/// it was written: a strict open succeeded, sealed the segment empty, and the store had lost
/// every key without an error.
#[test]
fn a_damaged_generation_in_a_first_buffer_is_corruption_not_a_torn_segment() {
    let directory = tempfile::tempdir().unwrap();
    let mut store = Logstor::open(os(), directory.path(), LogstorOptions::default()).unwrap();
    for key in 0..10u8 {
        store.put(&[key], b"synced").unwrap();
    }
    store.close().unwrap();
    let path = directory.path().join("data-00000.ls");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[16] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let strict = Logstor::open(os(), directory.path(), LogstorOptions::default());
    assert!(matches!(strict, Err(ballast::Error::Corruption { .. })), "{:?}", strict.map(|store| store.len()));
}
