//! The bytes of a head chunk file: a 16-byte header, then entries, then zeros (the file is
//! preallocated). Little-endian.
//!
//! Header: magic `u32` 0x4B48_5354 ("TSHK"), version `u8` 1, 3 zero bytes, the file's
//! number `u64`. Entry, 57 bytes and the chunk: series ref `u64` (never 0, so zeros end the
//! data), min time `i64`, max time `i64`, the value bits of the last sample `u64`, the WAL
//! position of the commit whose samples completed the chunk (segment `u64`, offset `u64`),
//! encoding `u8` (1: XOR), chunk length `u32`, the chunk, and a CRC-32 of the file number,
//! the entry's offset (each `u64`) and the entry's bytes before the CRC, so that an entry
//! written into another file or at another offset never verifies.

use crate::error::CorruptionReason;
use crate::wal::Position;

pub(crate) const MAGIC: u32 = 0x4B48_5354;
pub(crate) const VERSION: u8 = 1;
/// The header's length, as a length and as an offset.
const HEADER_LEN: usize = 16;
pub(crate) const HEADER_SIZE: u64 = HEADER_LEN as u64;
/// The bytes of an entry before its chunk.
pub(crate) const ENTRY_HEADER_SIZE: usize = 53;
const CHECKSUM_SIZE: usize = 4;
pub(crate) const ENCODING_XOR: u8 = 1;

pub(crate) fn encode_header(number: u64) -> [u8; HEADER_LEN] {
    let mut bytes = [0u8; HEADER_LEN];
    bytes[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    bytes[4] = VERSION;
    bytes[8..16].copy_from_slice(&number.to_le_bytes());
    bytes
}

/// Checks a header read back from file `number`.
pub(crate) fn check_header(bytes: &[u8], number: u64) -> Result<(), CorruptionReason> {
    if bytes.len() < HEADER_LEN {
        return Err(CorruptionReason::Truncated { length: bytes.len() as u64 });
    }
    if bytes[0..4] != MAGIC.to_le_bytes() {
        return Err(CorruptionReason::BadMagic);
    }
    if bytes[4] != VERSION {
        return Err(CorruptionReason::UnsupportedVersion { version: u16::from(bytes[4]) });
    }
    if bytes[5..8] != [0, 0, 0] || bytes[8..16] != number.to_le_bytes() {
        return Err(CorruptionReason::NonZeroReserved);
    }
    Ok(())
}

/// What an entry says of its chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EntryMeta {
    pub series: u64,
    pub min_time: i64,
    pub max_time: i64,
    pub last_value_bits: u64,
    pub position: Position,
    pub chunk_length: u32,
}

impl EntryMeta {
    /// The entry's length on disk.
    pub fn length(&self) -> u64 {
        (ENTRY_HEADER_SIZE + CHECKSUM_SIZE) as u64 + u64::from(self.chunk_length)
    }
}

fn checksum(number: u64, offset: u64, bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&number.to_le_bytes());
    hasher.update(&offset.to_le_bytes());
    hasher.update(bytes);
    hasher.finalize()
}

/// Appends the entry for `chunk`, to go at `offset` of file `number`, to `out`.
pub(crate) fn encode_entry(out: &mut Vec<u8>, number: u64, offset: u64, meta: &EntryMeta, chunk: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&meta.series.to_le_bytes());
    out.extend_from_slice(&meta.min_time.to_le_bytes());
    out.extend_from_slice(&meta.max_time.to_le_bytes());
    out.extend_from_slice(&meta.last_value_bits.to_le_bytes());
    out.extend_from_slice(&meta.position.segment.to_le_bytes());
    out.extend_from_slice(&meta.position.offset.to_le_bytes());
    out.push(ENCODING_XOR);
    out.extend_from_slice(&u32::try_from(chunk.len()).expect("a chunk is small").to_le_bytes());
    out.extend_from_slice(chunk);
    let sum = checksum(number, offset, &out[start..]);
    out.extend_from_slice(&sum.to_le_bytes());
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// Decodes the header of the entry at the start of `bytes` (at least [`ENTRY_HEADER_SIZE`]
/// of them). `None` when its series ref is zero: the data ended.
pub(crate) fn decode_entry_header(bytes: &[u8]) -> Result<Option<EntryMeta>, CorruptionReason> {
    if bytes.len() < ENTRY_HEADER_SIZE {
        return Err(CorruptionReason::Truncated { length: bytes.len() as u64 });
    }
    let series = u64_at(bytes, 0);
    if series == 0 {
        return Ok(None);
    }
    if bytes[48] != ENCODING_XOR {
        return Err(CorruptionReason::BadRecord { at: 48 });
    }
    let meta = EntryMeta {
        series,
        min_time: u64_at(bytes, 8) as i64,
        max_time: u64_at(bytes, 16) as i64,
        last_value_bits: u64_at(bytes, 24),
        position: Position { segment: u64_at(bytes, 32), offset: u64_at(bytes, 40) },
        chunk_length: u32::from_le_bytes(bytes[49..53].try_into().expect("4 bytes")),
    };
    if meta.min_time > meta.max_time {
        return Err(CorruptionReason::BadRecord { at: 8 });
    }
    Ok(Some(meta))
}

/// Verifies a whole entry (`bytes` of [`EntryMeta::length`]) read at `offset` of file
/// `number`; returns its chunk's bytes.
pub(crate) fn verify_entry(bytes: &[u8], number: u64, offset: u64) -> Result<&[u8], CorruptionReason> {
    let body = bytes.len().checked_sub(CHECKSUM_SIZE).ok_or(CorruptionReason::Truncated { length: 0 })?;
    let expected = u32::from_le_bytes(bytes[body..].try_into().expect("4 bytes"));
    let found = checksum(number, offset, &bytes[..body]);
    if expected != found {
        return Err(CorruptionReason::Checksum { expected, found });
    }
    Ok(&bytes[ENTRY_HEADER_SIZE..body])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(chunk_length: u32) -> EntryMeta {
        EntryMeta {
            series: 9,
            min_time: -5,
            max_time: 70,
            last_value_bits: f64::NAN.to_bits(),
            position: Position { segment: 3, offset: 96 },
            chunk_length,
        }
    }

    #[test]
    fn an_entry_round_trips_and_binds_its_file_and_offset() {
        let mut bytes = Vec::new();
        encode_entry(&mut bytes, 4, 16, &meta(3), b"abc");
        assert_eq!(bytes.len() as u64, meta(3).length());
        assert_eq!(decode_entry_header(&bytes), Ok(Some(meta(3))));
        assert_eq!(verify_entry(&bytes, 4, 16), Ok(&b"abc"[..]));
        assert!(matches!(verify_entry(&bytes, 5, 16), Err(CorruptionReason::Checksum { .. })), "another file");
        assert!(matches!(verify_entry(&bytes, 4, 32), Err(CorruptionReason::Checksum { .. })), "another offset");
        bytes[54] ^= 1;
        assert!(matches!(verify_entry(&bytes, 4, 16), Err(CorruptionReason::Checksum { .. })));
        assert_eq!(decode_entry_header(&[0; ENTRY_HEADER_SIZE]), Ok(None), "zeros end the data");
    }

    #[test]
    fn a_header_names_its_file() {
        assert_eq!(check_header(&encode_header(7), 7), Ok(()));
        assert!(check_header(&encode_header(7), 8).is_err());
        assert_eq!(check_header(&[0; 16], 7), Err(CorruptionReason::BadMagic));
    }
}
