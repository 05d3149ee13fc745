//! The WAL's bytes on disk, pinned by snapshots so that a format change is a reviewed diff.

use std::fmt::Write as _;

use ballast::wal::format::{decode_segment_header, encode_segment_header, record_end, record_length_max};
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
    assert_eq!(decode_segment_header(&header, 42), Ok(4096));
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
    assert_eq!(record_length_max(128, 512), 448);
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
