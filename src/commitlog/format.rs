//! Byte layout of commitlog files: segments, commits, offset indexes and snapshots.
//! `docs/format.md` draws the same layout as tables.

use crate::codec::{put_u16, put_u32, put_u64, u16_at, u32_at, u64_at};
use crate::error::CorruptionReason;

pub const SEGMENT_MAGIC: [u8; 8] = *b"BLSTCLG\0";
pub const INDEX_MAGIC: [u8; 8] = *b"BLSTIDX\0";
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"BLSTSNP\0";
pub const COMMIT_MAGIC: [u8; 4] = *b"CMIT";
pub const FORMAT_VERSION: u16 = 1;
/// Checksum algorithm named in segment headers: 1 is CRC-32 (IEEE).
pub const CHECKSUM_CRC32: u8 = 1;
pub const SEGMENT_HEADER_SIZE: usize = 32;
pub const COMMIT_HEADER_SIZE: usize = 32;
pub const INDEX_HEADER_SIZE: usize = 32;
pub const INDEX_ENTRY_SIZE: usize = 16;
pub const SNAPSHOT_HEADER_SIZE: usize = 32;
/// Each transaction in a commit's payload is its length (u32) and its bytes.
pub const TRANSACTION_HEADER_SIZE: usize = 4;

/// Where a segment header keeps each field (the tables in docs/format.md).
mod segment_at {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 8;
    pub const CHECKSUM_ALGORITHM: usize = 10;
    /// Reserved: 11..16 and 24..28.
    pub const RESERVED: usize = 11;
    pub const MIN_OFFSET: usize = 16;
    pub const RESERVED_AFTER_MIN_OFFSET: usize = 24;
    /// The CRC of the bytes before it.
    pub const CHECKSUM: usize = 28;
}
const _: () = assert!(segment_at::CHECKSUM + 4 == SEGMENT_HEADER_SIZE, "the checksum ends the header");

/// Where a commit header keeps each field.
mod commit_at {
    pub const MAGIC: usize = 0;
    pub const TRANSACTIONS_COUNT: usize = 4;
    pub const FIRST_OFFSET: usize = 8;
    pub const EPOCH: usize = 16;
    pub const PAYLOAD_LENGTH: usize = 24;
    /// The CRC of the segment's first offset, the commit's position, the bytes before it and
    /// the payload.
    pub const CHECKSUM: usize = 28;
}
const _: () = assert!(commit_at::CHECKSUM + 4 == COMMIT_HEADER_SIZE, "the checksum ends the header");

/// Where an index file's header keeps each field; its entries follow, then a CRC of it all.
mod index_at {
    pub const ENTRIES_COUNT: usize = 12;
    pub const MIN_OFFSET: usize = 16;
    pub const SEGMENT_LENGTH: usize = 24;
}
const _: () = assert!(index_at::SEGMENT_LENGTH + 8 == INDEX_HEADER_SIZE, "the segment length ends the header");

/// Where a snapshot's header keeps each field; its data follows, then a CRC of it all.
mod snapshot_at {
    pub const VERSION: usize = 8;
    pub const OFFSET: usize = 16;
    pub const DATA_LENGTH: usize = 24;
}
const _: () = assert!(snapshot_at::DATA_LENGTH + 8 == SNAPSHOT_HEADER_SIZE, "the data length ends the header");

fn checksum_error(stored: u32, computed: u32) -> CorruptionReason {
    CorruptionReason::Checksum { expected: stored, found: computed }
}

/// Segment file name: its first transaction offset, 20 digits, so names sort.
pub fn segment_file_name(min_offset: u64) -> String {
    format!("{min_offset:020}.log")
}

pub fn index_file_name(min_offset: u64) -> String {
    format!("{min_offset:020}.idx")
}

pub fn snapshot_file_name(offset: u64) -> String {
    format!("{offset:020}.snap")
}

/// What a commitlog file name says, if it is one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileName {
    Segment(u64),
    Index(u64),
    Snapshot(u64),
}

pub fn parse_file_name(name: &str) -> Option<FileName> {
    let (stem, extension) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let offset: u64 = stem.parse().ok()?;
    match extension {
        "log" => Some(FileName::Segment(offset)),
        "idx" => Some(FileName::Index(offset)),
        "snap" => Some(FileName::Snapshot(offset)),
        _ => None,
    }
}

pub fn encode_segment_header(min_offset: u64) -> [u8; SEGMENT_HEADER_SIZE] {
    let mut header = [0u8; SEGMENT_HEADER_SIZE];
    header[segment_at::MAGIC..segment_at::VERSION].copy_from_slice(&SEGMENT_MAGIC);
    put_u16(&mut header, segment_at::VERSION, FORMAT_VERSION);
    header[segment_at::CHECKSUM_ALGORITHM] = CHECKSUM_CRC32;
    put_u64(&mut header, segment_at::MIN_OFFSET, min_offset);
    let checksum = crate::codec::crc32(&header[..segment_at::CHECKSUM]);
    put_u32(&mut header, segment_at::CHECKSUM, checksum);
    header
}

/// Verifies the header of the segment whose name says it starts at `min_offset`.
pub fn decode_segment_header(bytes: &[u8], min_offset: u64) -> Result<(), CorruptionReason> {
    if bytes.len() < SEGMENT_HEADER_SIZE {
        return Err(CorruptionReason::Truncated { length: bytes.len() as u64 });
    }
    if bytes[segment_at::MAGIC..segment_at::VERSION] != SEGMENT_MAGIC {
        return Err(CorruptionReason::BadMagic);
    }
    let checksummed = &bytes[..segment_at::CHECKSUM];
    let (stored, computed) = (u32_at(bytes, segment_at::CHECKSUM), crate::codec::crc32(checksummed));
    if stored != computed {
        return Err(checksum_error(stored, computed));
    }
    let version = u16_at(bytes, segment_at::VERSION);
    if version != FORMAT_VERSION {
        return Err(CorruptionReason::UnsupportedVersion { version });
    }
    if bytes[segment_at::CHECKSUM_ALGORITHM] != CHECKSUM_CRC32 {
        return Err(CorruptionReason::HeaderMismatch {
            field: "checksum_algorithm",
            expected: u64::from(CHECKSUM_CRC32),
            found: u64::from(bytes[segment_at::CHECKSUM_ALGORITHM]),
        });
    }
    let mut reserved = bytes[segment_at::RESERVED..segment_at::MIN_OFFSET]
        .iter()
        .chain(&bytes[segment_at::RESERVED_AFTER_MIN_OFFSET..segment_at::CHECKSUM]);
    if reserved.any(|&byte| byte != 0) {
        return Err(CorruptionReason::NonZeroReserved);
    }
    let found = u64_at(bytes, segment_at::MIN_OFFSET);
    if found != min_offset {
        return Err(CorruptionReason::HeaderMismatch { field: "min_offset", expected: min_offset, found });
    }
    Ok(())
}

/// The fixed fields of a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitHeader {
    pub transactions_count: u32,
    pub first_offset: u64,
    pub epoch: u64,
    pub payload_length: u32,
}

impl CommitHeader {
    pub fn last_offset(&self) -> u64 {
        self.first_offset + u64::from(self.transactions_count) - 1
    }

    pub fn size(&self) -> u64 {
        COMMIT_HEADER_SIZE as u64 + u64::from(self.payload_length)
    }
}

/// The payload length of a commit holding `transactions`, or `None` if it exceeds `u32`.
pub fn payload_length<'a>(transactions: impl Iterator<Item = &'a [u8]>) -> Option<u32> {
    let mut total = 0u64;
    for transaction in transactions {
        total += (TRANSACTION_HEADER_SIZE + transaction.len()) as u64;
    }
    u32::try_from(total).ok()
}

/// Appends one commit to `buffer`, to be written at `position` of the segment starting at
/// `segment_min_offset`. The checksum binds it to that place.
pub fn encode_commit<'a>(
    buffer: &mut Vec<u8>,
    segment_min_offset: u64,
    position: u64,
    first_offset: u64,
    epoch: u64,
    transactions: impl ExactSizeIterator<Item = &'a [u8]> + Clone,
) {
    let count = u32::try_from(transactions.len()).expect("transaction count was checked");
    let payload_length = payload_length(transactions.clone()).expect("payload length was checked");
    let start = buffer.len();
    buffer.extend_from_slice(&COMMIT_MAGIC);
    buffer.extend_from_slice(&count.to_le_bytes());
    buffer.extend_from_slice(&first_offset.to_le_bytes());
    buffer.extend_from_slice(&epoch.to_le_bytes());
    buffer.extend_from_slice(&payload_length.to_le_bytes());
    buffer.extend_from_slice(&[0; 4]);
    for transaction in transactions {
        let length = u32::try_from(transaction.len()).expect("checked with the payload length");
        buffer.extend_from_slice(&length.to_le_bytes());
        buffer.extend_from_slice(transaction);
    }
    let checksum = commit_checksum(segment_min_offset, position, &buffer[start..]);
    put_u32(&mut buffer[start..], commit_at::CHECKSUM, checksum);
}

fn commit_checksum(segment_min_offset: u64, position: u64, commit: &[u8]) -> u32 {
    let mut hasher = crate::codec::crc32_hasher();
    hasher.update(&segment_min_offset.to_le_bytes());
    hasher.update(&position.to_le_bytes());
    hasher.update(&commit[..commit_at::CHECKSUM]);
    hasher.update(&commit[COMMIT_HEADER_SIZE..]);
    hasher.finalize()
}

/// Parses a commit header; the caller then reads the payload and calls [`verify_commit`].
/// `available` is how many bytes the file holds from this header on.
pub fn decode_commit_header(bytes: &[u8], available: u64) -> Result<CommitHeader, CorruptionReason> {
    if bytes.len() < COMMIT_HEADER_SIZE {
        return Err(CorruptionReason::Truncated { length: bytes.len() as u64 });
    }
    if bytes[commit_at::MAGIC..commit_at::TRANSACTIONS_COUNT] != COMMIT_MAGIC {
        return Err(CorruptionReason::BadMagic);
    }
    let header = CommitHeader {
        transactions_count: u32_at(bytes, commit_at::TRANSACTIONS_COUNT),
        first_offset: u64_at(bytes, commit_at::FIRST_OFFSET),
        epoch: u64_at(bytes, commit_at::EPOCH),
        payload_length: u32_at(bytes, commit_at::PAYLOAD_LENGTH),
    };
    if header.transactions_count == 0
        || u64::from(header.payload_length) < u64::from(header.transactions_count) * TRANSACTION_HEADER_SIZE as u64
    {
        return Err(CorruptionReason::BadLength { length: u64::from(header.payload_length) });
    }
    if header.first_offset.checked_add(u64::from(header.transactions_count)).is_none() {
        return Err(CorruptionReason::BadLength { length: u64::from(header.transactions_count) });
    }
    if header.size() > available {
        return Err(CorruptionReason::BadLength { length: u64::from(header.payload_length) });
    }
    Ok(header)
}

/// Verifies a whole commit (header and payload) found at `position` of the segment starting at
/// `segment_min_offset`, and that its payload splits into exactly its transactions.
pub fn verify_commit(commit: &[u8], segment_min_offset: u64, position: u64) -> Result<(), CorruptionReason> {
    let (stored, computed) =
        (u32_at(commit, commit_at::CHECKSUM), commit_checksum(segment_min_offset, position, commit));
    if stored != computed {
        return Err(checksum_error(stored, computed));
    }
    let count = u32_at(commit, commit_at::TRANSACTIONS_COUNT);
    let mut at = COMMIT_HEADER_SIZE;
    for _ in 0..count {
        if at + TRANSACTION_HEADER_SIZE > commit.len() {
            return Err(CorruptionReason::BadLength { length: at as u64 });
        }
        let length = u32_at(commit, at) as usize;
        at += TRANSACTION_HEADER_SIZE;
        if length > commit.len() - at {
            return Err(CorruptionReason::BadLength { length: length as u64 });
        }
        at += length;
    }
    if at != commit.len() {
        return Err(CorruptionReason::BadLength { length: commit.len() as u64 });
    }
    Ok(())
}

/// The transactions of a verified commit, in order.
pub fn transactions(commit: &[u8]) -> impl Iterator<Item = &[u8]> {
    let count = u32_at(commit, commit_at::TRANSACTIONS_COUNT);
    let mut at = COMMIT_HEADER_SIZE;
    (0..count).map(move |_| {
        let length = u32_at(commit, at) as usize;
        let transaction = &commit[at + TRANSACTION_HEADER_SIZE..at + TRANSACTION_HEADER_SIZE + length];
        at += TRANSACTION_HEADER_SIZE + length;
        transaction
    })
}

/// One entry of a sparse offset index: the commit starting at `offset` is at byte `position`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IndexEntry {
    pub offset: u64,
    pub position: u64,
}

pub fn encode_index(segment_min_offset: u64, segment_length: u64, entries: &[IndexEntry]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(INDEX_HEADER_SIZE + entries.len() * INDEX_ENTRY_SIZE + 4);
    bytes.extend_from_slice(&INDEX_MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&[0; 2]);
    bytes.extend_from_slice(&u32::try_from(entries.len()).expect("index entries fit u32").to_le_bytes());
    bytes.extend_from_slice(&segment_min_offset.to_le_bytes());
    bytes.extend_from_slice(&segment_length.to_le_bytes());
    for entry in entries {
        bytes.extend_from_slice(&entry.offset.to_le_bytes());
        bytes.extend_from_slice(&entry.position.to_le_bytes());
    }
    let checksum = crate::codec::crc32(&bytes);
    bytes.extend_from_slice(&checksum.to_le_bytes());
    bytes
}

/// Verifies an index file and returns the segment length it covers and its entries.
pub fn decode_index(bytes: &[u8], segment_min_offset: u64) -> Result<(u64, Vec<IndexEntry>), CorruptionReason> {
    if bytes.len() < INDEX_HEADER_SIZE + 4 {
        return Err(CorruptionReason::Truncated { length: bytes.len() as u64 });
    }
    if bytes[0..8] != INDEX_MAGIC {
        return Err(CorruptionReason::BadMagic);
    }
    let (body, stored) = bytes.split_at(bytes.len() - 4);
    let (stored, computed) = (u32_at(stored, 0), crate::codec::crc32(body));
    if stored != computed {
        return Err(checksum_error(stored, computed));
    }
    let count = u32_at(body, index_at::ENTRIES_COUNT) as usize;
    if INDEX_HEADER_SIZE + count * INDEX_ENTRY_SIZE != body.len() {
        return Err(CorruptionReason::BadLength { length: count as u64 });
    }
    let found = u64_at(body, index_at::MIN_OFFSET);
    if found != segment_min_offset {
        return Err(CorruptionReason::HeaderMismatch { field: "min_offset", expected: segment_min_offset, found });
    }
    let entries = (0..count)
        .map(|index| {
            let at = INDEX_HEADER_SIZE + index * INDEX_ENTRY_SIZE;
            IndexEntry { offset: u64_at(body, at), position: u64_at(body, at + 8) }
        })
        .collect();
    Ok((u64_at(body, index_at::SEGMENT_LENGTH), entries))
}

pub fn encode_snapshot(offset: u64, data: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(SNAPSHOT_HEADER_SIZE + data.len() + 4);
    bytes.extend_from_slice(&SNAPSHOT_MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&[0; 6]);
    bytes.extend_from_slice(&offset.to_le_bytes());
    bytes.extend_from_slice(&(data.len() as u64).to_le_bytes());
    bytes.extend_from_slice(data);
    let checksum = crate::codec::crc32(&bytes);
    bytes.extend_from_slice(&checksum.to_le_bytes());
    bytes
}

/// Verifies a snapshot file named for `offset` and returns its data.
pub fn decode_snapshot(bytes: &[u8], offset: u64) -> Result<&[u8], CorruptionReason> {
    if bytes.len() < SNAPSHOT_HEADER_SIZE + 4 {
        return Err(CorruptionReason::Truncated { length: bytes.len() as u64 });
    }
    if bytes[0..8] != SNAPSHOT_MAGIC {
        return Err(CorruptionReason::BadMagic);
    }
    let (body, stored) = bytes.split_at(bytes.len() - 4);
    let (stored, computed) = (u32_at(stored, 0), crate::codec::crc32(body));
    if stored != computed {
        return Err(checksum_error(stored, computed));
    }
    let version = u16_at(body, snapshot_at::VERSION);
    if version != FORMAT_VERSION {
        return Err(CorruptionReason::UnsupportedVersion { version });
    }
    let found = u64_at(body, snapshot_at::OFFSET);
    if found != offset {
        return Err(CorruptionReason::HeaderMismatch { field: "offset", expected: offset, found });
    }
    let length = u64_at(body, snapshot_at::DATA_LENGTH);
    if SNAPSHOT_HEADER_SIZE as u64 + length != body.len() as u64 {
        return Err(CorruptionReason::BadLength { length });
    }
    Ok(&body[SNAPSHOT_HEADER_SIZE..])
}
