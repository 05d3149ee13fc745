//! Byte layout of WAL segment files. `docs/format.md` draws the same layout as tables.
//!
//! A segment file is a 32-byte header followed by fragments packed into fixed-size pages.
//! A fragment never crosses a page; a record too long for what is left of a page is split into
//! a first, middle and last fragment. Every fragment's checksum covers the segment number and
//! the byte offset it was written for, so a fragment found anywhere else (a misdirected write, a
//! stale page of another segment) fails verification.

use crate::codec::{put_u16, put_u32, put_u64, u16_at, u32_at, u64_at};
use crate::error::CorruptionReason;

/// Magic bytes at the start of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"BLSTWAL\0";
/// The segment format version this build writes. Version 2 ends every sealed segment's data
/// with a seal fragment; version 1, which this build still reads, had none.
pub const FORMAT_VERSION: u16 = 2;
/// The oldest segment format version this build reads.
pub const FORMAT_VERSION_MIN: u16 = 1;
/// Size of the segment header at offset 0.
pub const SEGMENT_HEADER_SIZE: usize = 32;
/// Size of a fragment header.
pub const FRAGMENT_HEADER_SIZE: usize = 8;
/// Smallest and largest page sizes accepted. The largest keeps a fragment length in a `u16`.
pub const PAGE_SIZE_MIN: u32 = 128;
pub const PAGE_SIZE_MAX: u32 = 65536;

const _: () = assert!(SEGMENT_HEADER_SIZE + FRAGMENT_HEADER_SIZE < PAGE_SIZE_MIN as usize);
const _: () = assert!((PAGE_SIZE_MAX as usize) - FRAGMENT_HEADER_SIZE <= u16::MAX as usize);

/// The kind of a fragment, its first byte. Zero is not a fragment: it starts padding, or marks
/// the end of the data written so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FragmentType {
    Full = 1,
    First = 2,
    Middle = 3,
    Last = 4,
    /// The end of a sealed segment's data: written by rotation after the last record, with no
    /// payload. Without it a sealed segment whose last records were written somewhere else
    /// would look like a segment that simply ended earlier (simulator, wal seed 32139).
    Seal = 5,
}

impl FragmentType {
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Full),
            2 => Some(Self::First),
            3 => Some(Self::Middle),
            4 => Some(Self::Last),
            5 => Some(Self::Seal),
            _ => None,
        }
    }
}

/// Where a segment header keeps each field (the table in docs/format.md).
mod segment_at {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 8;
    /// Reserved, zero: 10..12 and 24..28.
    pub const RESERVED: usize = 10;
    pub const PAGE_SIZE: usize = 12;
    pub const SEGMENT: usize = 16;
    pub const RESERVED_AFTER_SEGMENT: usize = 24;
    /// The CRC of the bytes before it.
    pub const CHECKSUM: usize = 28;
}
const _: () = assert!(segment_at::CHECKSUM + 4 == SEGMENT_HEADER_SIZE, "the checksum ends the header");

/// Where a fragment header keeps each field; the payload follows.
mod fragment_at {
    pub const TYPE: usize = 0;
    pub const RESERVED: usize = 1;
    pub const LENGTH: usize = 2;
    /// The CRC of the segment number, the fragment's offset, the bytes before it and the
    /// payload.
    pub const CHECKSUM: usize = 4;
}
const _: () = assert!(fragment_at::CHECKSUM + 4 == FRAGMENT_HEADER_SIZE, "the checksum ends the header");

/// Encodes the header of segment `segment` written with `page_size`.
pub fn encode_segment_header(segment: u64, page_size: u32) -> [u8; SEGMENT_HEADER_SIZE] {
    let mut header = [0u8; SEGMENT_HEADER_SIZE];
    header[segment_at::MAGIC..segment_at::VERSION].copy_from_slice(&SEGMENT_MAGIC);
    put_u16(&mut header, segment_at::VERSION, FORMAT_VERSION);
    put_u32(&mut header, segment_at::PAGE_SIZE, page_size);
    put_u64(&mut header, segment_at::SEGMENT, segment);
    let checksum = crate::codec::crc32(&header[..segment_at::CHECKSUM]);
    put_u32(&mut header, segment_at::CHECKSUM, checksum);
    header
}

/// What a verified segment header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub page_size: u32,
    pub version: u16,
}

impl SegmentHeader {
    /// Whether the segment's data must end with a seal fragment once it is sealed.
    pub fn seals(&self) -> bool {
        self.version >= 2
    }
}

/// Verifies a segment header read from the file of segment `segment`.
pub fn decode_segment_header(bytes: &[u8], segment: u64) -> Result<SegmentHeader, CorruptionReason> {
    if bytes.len() < SEGMENT_HEADER_SIZE {
        return Err(CorruptionReason::Truncated { length: bytes.len() as u64 });
    }
    if bytes[segment_at::MAGIC..segment_at::VERSION] != SEGMENT_MAGIC {
        return Err(CorruptionReason::BadMagic);
    }
    let stored = u32_at(bytes, segment_at::CHECKSUM);
    let computed = crate::codec::crc32(&bytes[..segment_at::CHECKSUM]);
    if stored != computed {
        return Err(CorruptionReason::Checksum { expected: stored, found: computed });
    }
    let version = u16_at(bytes, segment_at::VERSION);
    if !(FORMAT_VERSION_MIN..=FORMAT_VERSION).contains(&version) {
        return Err(CorruptionReason::UnsupportedVersion { version });
    }
    let reserved =
        [segment_at::RESERVED..segment_at::PAGE_SIZE, segment_at::RESERVED_AFTER_SEGMENT..segment_at::CHECKSUM];
    if reserved.into_iter().any(|range| bytes[range].iter().any(|&byte| byte != 0)) {
        return Err(CorruptionReason::NonZeroReserved);
    }
    let page_size = u32_at(bytes, segment_at::PAGE_SIZE);
    if !page_size_is_valid(page_size) {
        return Err(CorruptionReason::HeaderMismatch {
            field: "page_size",
            expected: u64::from(PAGE_SIZE_MIN),
            found: u64::from(page_size),
        });
    }
    let found_segment = u64_at(bytes, segment_at::SEGMENT);
    if found_segment != segment {
        return Err(CorruptionReason::HeaderMismatch { field: "segment", expected: segment, found: found_segment });
    }
    Ok(SegmentHeader { page_size, version })
}

pub fn page_size_is_valid(page_size: u32) -> bool {
    page_size.is_power_of_two() && (PAGE_SIZE_MIN..=PAGE_SIZE_MAX).contains(&page_size)
}

/// The checksum of a fragment: it binds the payload to its type, length, segment and offset.
pub fn fragment_checksum(segment: u64, offset: u64, header_prefix: &[u8], payload: &[u8]) -> u32 {
    debug_assert_eq!(header_prefix.len(), 4);
    // One update for the 20 bytes before the payload: each update of a few bytes costs about
    // as much as hashing 100 bytes (callgrind on the wal benchmark, see bench/README.md).
    let mut prefix = [0u8; 20];
    prefix[0..8].copy_from_slice(&segment.to_le_bytes());
    prefix[8..16].copy_from_slice(&offset.to_le_bytes());
    prefix[16..20].copy_from_slice(header_prefix);
    let mut hasher = crate::codec::crc32_hasher();
    hasher.update(&prefix);
    hasher.update(payload);
    hasher.finalize()
}

/// Appends one fragment (header and payload) to `buffer`, for `segment` at `offset`.
pub fn encode_fragment(buffer: &mut Vec<u8>, segment: u64, offset: u64, fragment_type: FragmentType, payload: &[u8]) {
    let length = u16::try_from(payload.len()).expect("fragment payload fits a page");
    let mut header = [0u8; FRAGMENT_HEADER_SIZE];
    header[fragment_at::TYPE] = fragment_type as u8;
    put_u16(&mut header, fragment_at::LENGTH, length);
    let checksum = fragment_checksum(segment, offset, &header[..fragment_at::CHECKSUM], payload);
    put_u32(&mut header, fragment_at::CHECKSUM, checksum);
    buffer.extend_from_slice(&header);
    buffer.extend_from_slice(payload);
}

/// A verified fragment: its type and where its payload lies within the page slice.
#[derive(Debug, PartialEq, Eq)]
pub struct Fragment {
    pub fragment_type: FragmentType,
    pub payload_length: usize,
}

/// Verifies the fragment at the start of `bytes`, which must run to the end of the page (or of
/// the readable data, if that comes first). `offset` is where `bytes` starts in segment
/// `segment`. The caller has already seen that the type byte is not zero.
pub fn decode_fragment(bytes: &[u8], segment: u64, offset: u64) -> Result<Fragment, CorruptionReason> {
    if bytes.len() < FRAGMENT_HEADER_SIZE {
        return Err(CorruptionReason::Truncated { length: bytes.len() as u64 });
    }
    let Some(fragment_type) = FragmentType::from_byte(bytes[fragment_at::TYPE]) else {
        return Err(CorruptionReason::BadFragmentType { fragment_type: bytes[fragment_at::TYPE] });
    };
    if bytes[fragment_at::RESERVED] != 0 {
        return Err(CorruptionReason::NonZeroReserved);
    }
    let payload_length = usize::from(u16_at(bytes, fragment_at::LENGTH));
    if FRAGMENT_HEADER_SIZE + payload_length > bytes.len() {
        return Err(CorruptionReason::BadLength { length: payload_length as u64 });
    }
    let stored = u32_at(bytes, fragment_at::CHECKSUM);
    let payload = &bytes[FRAGMENT_HEADER_SIZE..FRAGMENT_HEADER_SIZE + payload_length];
    let computed = fragment_checksum(segment, offset, &bytes[..fragment_at::CHECKSUM], payload);
    if stored != computed {
        return Err(CorruptionReason::Checksum { expected: stored, found: computed });
    }
    Ok(Fragment { fragment_type, payload_length })
}

/// Where a record of `length` bytes would end if written at `offset` of a segment with the
/// given geometry, or `None` if it does not fit before `segment_size`.
pub fn record_end(offset: u64, length: usize, page_size: u64, segment_size: u64) -> Option<u64> {
    let mut position = offset;
    let mut remaining = length as u64;
    let mut first = true;
    // Each iteration either consumes payload or moves to the next page, and positions are
    // bounded by segment_size, so this terminates.
    loop {
        let page_end = (position / page_size + 1) * page_size;
        let room = page_end - position;
        if room <= FRAGMENT_HEADER_SIZE as u64 {
            position = page_end;
            if position >= segment_size {
                return None;
            }
            continue;
        }
        let take = remaining.min(room - FRAGMENT_HEADER_SIZE as u64);
        position += FRAGMENT_HEADER_SIZE as u64 + take;
        remaining -= take;
        if position > segment_size {
            return None;
        }
        if remaining == 0 && (take > 0 || first) {
            return Some(position);
        }
        first = false;
    }
}

/// Whether a record of `length` bytes written at `offset` leaves room for the seal after it.
/// The seal goes where the record ends, or at the next page if no fragment fits there, so it
/// fits exactly when fewer than a fragment header's bytes lie between the end and
/// `segment_size`.
pub fn record_fits(offset: u64, length: usize, page_size: u64, segment_size: u64) -> bool {
    record_end(offset, length, page_size, segment_size)
        .is_some_and(|end| end + (FRAGMENT_HEADER_SIZE as u64) < segment_size)
}

/// Where the seal of a segment whose records end at `end` is written.
pub fn seal_offset(end: u64, page_size: u64) -> u64 {
    let page_end = (end / page_size + 1) * page_size;
    if page_end - end <= FRAGMENT_HEADER_SIZE as u64 {
        page_end
    } else {
        end
    }
}

/// The largest record a segment of this geometry holds, with room for the seal after it.
pub fn record_length_max(page_size: u64, segment_size: u64) -> u64 {
    let pages = segment_size / page_size;
    let fragment_headers = pages * FRAGMENT_HEADER_SIZE as u64;
    // The record's last fragment must end more than a fragment header before the segment end.
    let capacity = segment_size - SEGMENT_HEADER_SIZE as u64 - fragment_headers - FRAGMENT_HEADER_SIZE as u64 - 1;
    debug_assert!(record_fits(
        SEGMENT_HEADER_SIZE as u64,
        usize::try_from(capacity).unwrap_or(usize::MAX),
        page_size,
        segment_size
    ));
    capacity
}
