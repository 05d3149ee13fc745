//! Checkpoints: `checkpoint.N` holds what the head needs of WAL segments up to `N` (its live
//! series, their samples from the head's lowest time on, their tombstones), so that those
//! segments can go and replay reads the checkpoint and the segments after `N`. A checkpoint is
//! made atomically (temp file, sync, read back, rename, directory sync), so no crash leaves half
//! of one, and only the newest is read; older ones go once a newer one exists.
//!
//! Layout, little-endian. A 36-byte header: magic `u32` 0x4B43_5354 ("TSCK"), version `u8` 1,
//! flags `u8` (bit 0: the head had a newest sample time), 2 zero bytes, `segment u64` (N),
//! `min_time i64` (the lowest time the head accepts), `max_time i64` (its newest sample time,
//! zero without flag 0), CRC-32 of the 32 bytes before it. Then records, each `length u32`,
//! CRC-32 of the payload `u32`, the payload (a WAL record of `record.rs`). Then a 16-byte
//! trailer: `u32::MAX`, the number of records `u64`, CRC-32 of those 12 bytes; a checkpoint
//! that ends anywhere else has lost its end.

use std::io;
use std::path::{Path, PathBuf};

use crate::error::{CorruptionReason, Error, Result};
use crate::vfs::{self, OpenMode, Vfs};

const PREFIX: &str = "checkpoint.";
const MAGIC: u32 = 0x4B43_5354;
const VERSION: u8 = 1;
const HEADER_SIZE: usize = 36;
const TRAILER_SIZE: usize = 16;
const TRAILER_MARK: u32 = u32::MAX;
const HAS_MAX_TIME: u8 = 1;

/// File name of the checkpoint of WAL segments up to `segment`.
pub(crate) fn file_name(segment: u64) -> String {
    format!("{PREFIX}{segment:08}")
}

/// Parses a name [`file_name`] would produce.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    crate::wal::parse_segment_file_name(name.strip_prefix(PREFIX)?)
}

/// A checkpoint read back.
#[derive(Debug)]
pub(crate) struct Checkpoint {
    /// The last WAL segment it covers.
    pub segment: u64,
    pub min_time: i64,
    pub max_time: Option<i64>,
    /// Each record's offset in the file and its payload.
    pub records: Vec<(u64, Vec<u8>)>,
}

pub(crate) fn encode(segment: u64, min_time: i64, max_time: Option<i64>, records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_SIZE + TRAILER_SIZE + records.iter().map(|r| r.len() + 8).sum::<usize>());
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.push(VERSION);
    out.push(if max_time.is_some() { HAS_MAX_TIME } else { 0 });
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&segment.to_le_bytes());
    out.extend_from_slice(&min_time.to_le_bytes());
    out.extend_from_slice(&max_time.unwrap_or(0).to_le_bytes());
    let checksum = crc32fast::hash(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    for record in records {
        out.extend_from_slice(&u32::try_from(record.len()).expect("records under 4 GiB").to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(record).to_le_bytes());
        out.extend_from_slice(record);
    }
    let mut trailer = TRAILER_MARK.to_le_bytes().to_vec();
    trailer.extend_from_slice(&(records.len() as u64).to_le_bytes());
    let checksum = crc32fast::hash(&trailer);
    out.extend_from_slice(&trailer);
    out.extend_from_slice(&checksum.to_le_bytes());
    out
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Decodes a checkpoint of WAL segments up to `segment`; `Err((offset, reason))` names the
/// first damage. Every length is checked against the bytes there before it is used.
pub(crate) fn decode(bytes: &[u8], segment: u64) -> std::result::Result<Checkpoint, (u64, CorruptionReason)> {
    let header = bytes.get(..HEADER_SIZE).ok_or((0, CorruptionReason::Truncated { length: bytes.len() as u64 }))?;
    if u32_at(header, 0) != MAGIC {
        return Err((0, CorruptionReason::BadMagic));
    }
    let (expected, found) = (u32_at(header, 32), crc32fast::hash(&header[..32]));
    if expected != found {
        return Err((0, CorruptionReason::Checksum { expected, found }));
    }
    if header[4] != VERSION {
        return Err((4, CorruptionReason::UnsupportedVersion { version: u16::from(header[4]) }));
    }
    if header[5] & !HAS_MAX_TIME != 0 || header[6..8] != [0, 0] {
        return Err((5, CorruptionReason::NonZeroReserved));
    }
    if u64_at(header, 8) != segment {
        return Err((8, CorruptionReason::BadRecord { at: 8 }));
    }
    let min_time = u64_at(header, 16) as i64;
    let max_time = (header[5] & HAS_MAX_TIME != 0).then(|| u64_at(header, 24) as i64);
    let mut checkpoint = Checkpoint { segment, min_time, max_time, records: Vec::new() };
    let mut at = HEADER_SIZE;
    loop {
        let truncated = (at as u64, CorruptionReason::Truncated { length: bytes.len() as u64 });
        let frame = bytes.get(at..at + 8).ok_or(truncated.clone())?;
        let length = u32_at(frame, 0);
        if length == TRAILER_MARK {
            return finish(bytes, at, checkpoint);
        }
        let start = at + 8;
        let payload = usize::try_from(length).ok().and_then(|length| bytes.get(start..start.checked_add(length)?));
        let payload = payload.ok_or(truncated)?;
        let (expected, found) = (u32_at(frame, 4), crc32fast::hash(payload));
        if expected != found {
            return Err((at as u64, CorruptionReason::Checksum { expected, found }));
        }
        checkpoint.records.push((at as u64, payload.to_vec()));
        at = start + payload.len();
    }
}

/// Checks the trailer at `at`: it must count the records read and end the file.
fn finish(bytes: &[u8], at: usize, checkpoint: Checkpoint) -> std::result::Result<Checkpoint, (u64, CorruptionReason)> {
    let trailer = bytes
        .get(at..at + TRAILER_SIZE)
        .ok_or((at as u64, CorruptionReason::Truncated { length: bytes.len() as u64 }))?;
    let (expected, found) = (u32_at(trailer, 12), crc32fast::hash(&trailer[..12]));
    if expected != found {
        return Err((at as u64, CorruptionReason::Checksum { expected, found }));
    }
    if u64_at(trailer, 4) != checkpoint.records.len() as u64 || bytes.len() != at + TRAILER_SIZE {
        return Err((at as u64, CorruptionReason::BadRecord { at: 0 }));
    }
    Ok(checkpoint)
}

/// The checkpoints in `directory`, by segment, ascending; and the names of temp files a crash
/// left of checkpoints being made.
pub(crate) fn list(vfs: &dyn Vfs, directory: &Path) -> Result<(Vec<u64>, Vec<String>)> {
    let names = match vfs.read_dir(directory) {
        Ok(names) => names,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(error) => return Err(Error::io(directory, "read_dir", error)),
    };
    let mut segments: Vec<u64> = names.iter().filter_map(|name| parse_file_name(name)).collect();
    segments.sort_unstable();
    let temp = names.into_iter().filter(|name| name.strip_suffix(".tmp").and_then(parse_file_name).is_some()).collect();
    Ok((segments, temp))
}

/// Reads and verifies `checkpoint.<segment>`; damage is [`Error::Corruption`] naming the file
/// and the offset.
pub(crate) fn read(vfs: &dyn Vfs, directory: &Path, segment: u64) -> Result<Checkpoint> {
    let path = directory.join(file_name(segment));
    let file = vfs.open(&path, OpenMode::Read).map_err(|error| Error::io(&path, "open", error))?;
    let length = file.len().map_err(|error| Error::io(&path, "len", error))?;
    let length =
        usize::try_from(length).map_err(|_| corruption(&path, segment, 0, CorruptionReason::Truncated { length }))?;
    let mut bytes = vec![0u8; length];
    vfs::read_exact_retrying(file.as_ref(), &path, &mut bytes, 0)?;
    decode(&bytes, segment).map_err(|(offset, reason)| corruption(&path, segment, offset, reason))
}

fn corruption(path: &Path, segment: u64, offset: u64, reason: CorruptionReason) -> Error {
    Error::Corruption { file: PathBuf::from(path), segment, offset, reason }
}

/// Makes `checkpoint.<segment>` atomically.
pub(crate) fn write(vfs: &dyn Vfs, directory: &Path, segment: u64, bytes: &[u8]) -> Result<()> {
    vfs::create_file_atomically(vfs, directory, &file_name(segment), bytes).map(drop)
}

/// Removes the checkpoints older than `segment`, and temp files of checkpoints, durably.
pub(crate) fn remove_older(vfs: &dyn Vfs, directory: &Path, segment: u64) -> Result<()> {
    let (segments, temp) = list(vfs, directory)?;
    let older: Vec<String> = segments.into_iter().filter(|&other| other < segment).map(file_name).collect();
    vfs::remove_all_durably(vfs, directory, temp.iter().chain(&older).map(String::as_str)).map(drop)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_checkpoint_round_trips_and_names_its_damage() {
        let records = vec![b"one".to_vec(), Vec::new(), b"three".to_vec()];
        let bytes = encode(7, -20, Some(99), &records);
        let checkpoint = decode(&bytes, 7).expect("decodes");
        assert_eq!((checkpoint.min_time, checkpoint.max_time), (-20, Some(99)));
        assert_eq!(checkpoint.records.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>(), records);
        assert_eq!(checkpoint.records[1].0, (HEADER_SIZE + 8 + 3) as u64);
        assert_eq!(decode(&encode(7, 0, None, &[]), 7).expect("empty").max_time, None);
        let mut damaged = bytes.clone();
        // Record 2 ("three") has its frame at 55 and its payload at 63.
        damaged[HEADER_SIZE + 8 + 3 + 8 + 8 + 1] ^= 1;
        assert!(
            matches!(decode(&damaged, 7), Err((at, CorruptionReason::Checksum { .. })) if at == (HEADER_SIZE + 8 + 3 + 8) as u64)
        );
        assert!(matches!(decode(&bytes[..bytes.len() - 1], 7), Err((_, CorruptionReason::Truncated { .. }))));
        assert!(matches!(decode(&bytes, 8), Err((8, _))), "another segment's name");
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer, 7).is_err(), "bytes after the trailer");
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(file_name(3), "checkpoint.00000003");
        assert_eq!(parse_file_name("checkpoint.00000003"), Some(3));
        assert_eq!(parse_file_name("checkpoint.3"), None);
        assert_eq!(parse_file_name("checkpoint.00000003.tmp"), None);
    }

    proptest! {
        /// Any bytes decode or are refused without a panic, and no length field allocates
        /// more than the bytes hold.
        #[test]
        fn any_bytes_decode_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), cut in 0usize..200) {
            let _ = decode(&bytes, 0);
            let valid = encode(0, 1, Some(2), std::slice::from_ref(&bytes));
            let _ = decode(&valid[..cut.min(valid.len())], 0);
        }
    }
}
