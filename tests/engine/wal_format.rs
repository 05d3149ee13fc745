//! The WAL's bytes on disk, pinned by snapshots so that a format change is a reviewed diff.

use std::fmt::Write as _;

use ballast::wal::format::{
    decode_segment_header, encode_fragment, encode_segment_header, record_end, record_fits, record_length_max,
    seal_offset, FragmentType, SegmentHeader,
};
use ballast::wal::{parse_segment_file_name, segment_file_name, RecoveryMode, Wal, WalOptions};

use crate::os;

fn hexdump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (line, chunk) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|byte| format!("{byte:02x}")).collect();
        let ascii: String =
            chunk.iter().map(|&byte| if byte.is_ascii_graphic() { byte as char } else { '.' }).collect();
        writeln!(out, "{:06x}  {:<47}  {ascii}", line * 16, hex.join(" ")).unwrap();
    }
    out
}

#[test]
fn segment_layout() {
    let directory = tempfile::tempdir().unwrap();
    let options = WalOptions {
        segment_size: 512,
        page_size: 128,
        recovery_mode: RecoveryMode::Strict,
        preallocate: 0,
        recycle_segments: 0,
        first_segment: 0,
    };
    let mut wal = Wal::open(os(), directory.path(), options).unwrap();
    wal.append(b"").unwrap();
    wal.append(b"hello").unwrap();
    // Spans three pages as first, middle and last fragments; the seal then pads the last page.
    let long: Vec<u8> = (0..200u8).collect();
    wal.append(&long).unwrap();
    wal.rotate().unwrap();
    wal.close().unwrap();
    let bytes = std::fs::read(directory.path().join("00000000")).unwrap();
    insta::assert_snapshot!("segment_0", hexdump(&bytes));
    let next = std::fs::read(directory.path().join("00000001")).unwrap();
    insta::assert_snapshot!("segment_1_header", hexdump(&next));
}

#[test]
fn segment_header_round_trip_and_rejections() {
    let header = encode_segment_header(42, 4096);
    assert_eq!(decode_segment_header(&header, 42), Ok(SegmentHeader { page_size: 4096, version: 2 }));
    assert!(decode_segment_header(&header, 43).is_err(), "a header names its own segment");
    assert!(decode_segment_header(&header[..31], 42).is_err());
    for index in 0..header.len() {
        let mut damaged = header;
        damaged[index] ^= 0x10;
        assert!(decode_segment_header(&damaged, 42).is_err(), "a flip at byte {index} is caught");
    }
}

#[track_caller]
fn check_record_end(offset: u64, length: usize, expected: Option<u64>) {
    assert_eq!(record_end(offset, length, 128, 512), expected, "record of {length} at {offset}");
}

#[test]
fn record_placement() {
    check_record_end(32, 0, Some(40));
    check_record_end(32, 88, Some(128));
    check_record_end(32, 89, Some(128 + 8 + 1));
    // Eight bytes left in a page cannot hold a fragment: the record starts on the next page.
    check_record_end(120, 1, Some(128 + 9));
    check_record_end(119, 0, Some(127));
    check_record_end(32, 448, Some(512));
    check_record_end(32, 449, None);
    check_record_end(500, 4, Some(512));
    check_record_end(505, 0, None);
    // A record fits when the seal still fits after it: more than a fragment header's bytes
    // must be left before the segment's end.
    assert!(record_fits(32, 439, 128, 512), "ends at 503, the seal at 503..511");
    assert!(!record_fits(32, 440, 128, 512), "ends at 504, no room left for the seal");
    assert!(!record_fits(500, 2, 128, 512), "ends at 510, where the seal cannot follow");
    assert_eq!(record_length_max(128, 512), 439);
    assert_eq!(seal_offset(503, 128), 503);
    assert_eq!(seal_offset(504, 128), 512, "eight bytes hold no fragment: the seal goes on the next page");
}

#[test]
fn segment_names() {
    assert_eq!(segment_file_name(0), "00000000");
    assert_eq!(segment_file_name(123_456_789), "123456789");
    for (name, expected) in [("00000000", Some(0)), ("00000042", Some(42)), ("123456789", Some(123_456_789))] {
        assert_eq!(parse_segment_file_name(name), expected, "{name}");
    }
    for name in ["0000042", "000000042", "0000004x", "-0000001", "00000001.tmp", "", "LOCK"] {
        assert_eq!(parse_segment_file_name(name), None, "{name}");
    }
}

/// A segment header of format version 1, which wrote no seal fragments.
fn version_1_header(segment: u64, page_size: u32) -> Vec<u8> {
    let mut header = encode_segment_header(segment, page_size).to_vec();
    header[8..10].copy_from_slice(&1u16.to_le_bytes());
    let checksum = crc32fast::hash(&header[0..28]);
    header[28..32].copy_from_slice(&checksum.to_le_bytes());
    header
}

#[test]
fn a_log_of_format_version_1_without_seals_still_opens_and_grows() {
    // Version 1 sealed a segment by zero padding alone. Its segments must read as before:
    // a sealed one that ends at zeros is whole, not "unsealed".
    let directory = tempfile::tempdir().unwrap();
    let page_size = 128u32;
    let mut sealed = version_1_header(0, page_size);
    encode_fragment(&mut sealed, 0, 32, FragmentType::Full, b"old sealed");
    sealed.resize(usize::try_from(page_size).unwrap(), 0);
    std::fs::write(directory.path().join("00000000"), &sealed).unwrap();
    let mut last = version_1_header(1, page_size);
    encode_fragment(&mut last, 1, 32, FragmentType::Full, b"old last");
    std::fs::write(directory.path().join("00000001"), &last).unwrap();
    let options = WalOptions {
        segment_size: 512,
        page_size,
        recovery_mode: RecoveryMode::Strict,
        preallocate: 0,
        recycle_segments: 0,
        first_segment: 0,
    };
    let read = |wal: &Wal| -> Vec<Vec<u8>> { wal.records().map(|item| item.unwrap().1).collect() };
    let mut wal = Wal::open(os(), directory.path(), options.clone()).unwrap();
    assert_eq!(read(&wal), [b"old sealed".to_vec(), b"old last".to_vec()]);
    wal.append(b"new").unwrap();
    wal.rotate().unwrap();
    wal.append(b"newer").unwrap();
    wal.close().unwrap();
    let wal = Wal::open(os(), directory.path(), options).unwrap();
    let expected: Vec<Vec<u8>> = [&b"old sealed"[..], b"old last", b"new", b"newer"].map(<[u8]>::to_vec).to_vec();
    assert_eq!(read(&wal), expected);
}
