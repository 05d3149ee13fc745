//! Byte layout of logstor files: the meta file, buffers and records. `docs/format.md` draws the
//! same layout as tables.

use crate::codec::{put_u16, put_u32, put_u64, u16_at, u32_at, u64_at};
use crate::error::CorruptionReason;

/// Every buffer is a whole number of blocks and starts on a block boundary.
pub const BLOCK_SIZE: u64 = 4096;
pub const META_MAGIC: [u8; 8] = *b"BLSTLSM\0";
pub const BUFFER_MAGIC: [u8; 4] = *b"LSTB";
pub const FORMAT_VERSION: u16 = 1;
pub const META_SIZE: usize = 64;
pub const BUFFER_HEADER_SIZE: usize = 64;
pub const RECORD_HEADER_SIZE: usize = 24;
/// A value length that marks a tombstone.
const TOMBSTONE_FLAG: u8 = 1;

/// The store's geometry, fixed when it is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub segment_size: u64,
    pub segments_per_file: u64,
}

impl Geometry {
    pub fn file_size(&self) -> u64 {
        self.segment_size * self.segments_per_file
    }
}

pub fn data_file_name(index: u64) -> String {
    format!("data-{index:05}.ls")
}

pub fn parse_data_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("data-")?.strip_suffix(".ls")?;
    (digits.len() == 5 && digits.bytes().all(|byte| byte.is_ascii_digit())).then(|| digits.parse().ok()).flatten()
}

pub const META_FILE_NAME: &str = "logstor.meta";

/// Where the meta file keeps each field.
const META_VERSION_OFFSET: usize = 8;
const META_SEGMENT_SIZE_OFFSET: usize = 16;
const META_SEGMENTS_PER_FILE_OFFSET: usize = 24;
const META_BLOCK_SIZE_OFFSET: usize = 32;
const META_GROUPS_COUNT_OFFSET: usize = 40;
const META_CHECKSUM_OFFSET: usize = META_SIZE - 4;

/// What `logstor.meta` records: everything about the store that is fixed when it is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    pub geometry: Geometry,
    /// The compaction groups keys are spread over. `None` in a meta file written before the
    /// count was recorded (its bytes were reserved and zero): such a store's records are the
    /// only witness of the groups it holds.
    pub groups_count: Option<u32>,
}

pub fn encode_meta(meta: &Meta) -> Vec<u8> {
    let mut bytes = vec![0u8; META_SIZE];
    bytes[0..8].copy_from_slice(&META_MAGIC);
    bytes[META_VERSION_OFFSET..META_VERSION_OFFSET + 2].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes[META_SEGMENT_SIZE_OFFSET..META_SEGMENT_SIZE_OFFSET + 8]
        .copy_from_slice(&meta.geometry.segment_size.to_le_bytes());
    bytes[META_SEGMENTS_PER_FILE_OFFSET..META_SEGMENTS_PER_FILE_OFFSET + 8]
        .copy_from_slice(&meta.geometry.segments_per_file.to_le_bytes());
    bytes[META_BLOCK_SIZE_OFFSET..META_BLOCK_SIZE_OFFSET + 8].copy_from_slice(&BLOCK_SIZE.to_le_bytes());
    let groups_count = meta.groups_count.expect("a new meta file records the groups count");
    assert!(groups_count > 0, "a store has at least one group");
    bytes[META_GROUPS_COUNT_OFFSET..META_GROUPS_COUNT_OFFSET + 4].copy_from_slice(&groups_count.to_le_bytes());
    let checksum = crate::codec::crc32(&bytes[0..META_CHECKSUM_OFFSET]);
    bytes[META_CHECKSUM_OFFSET..].copy_from_slice(&checksum.to_le_bytes());
    bytes
}

pub fn decode_meta(bytes: &[u8]) -> Result<Meta, CorruptionReason> {
    if bytes.len() != META_SIZE {
        return Err(CorruptionReason::Truncated { length: bytes.len() as u64 });
    }
    if bytes[0..8] != META_MAGIC {
        return Err(CorruptionReason::BadMagic);
    }
    let (stored, computed) =
        (u32_at(bytes, META_CHECKSUM_OFFSET), crate::codec::crc32(&bytes[0..META_CHECKSUM_OFFSET]));
    if stored != computed {
        return Err(CorruptionReason::Checksum { expected: stored, found: computed });
    }
    let version = u16_at(bytes, META_VERSION_OFFSET);
    if version != FORMAT_VERSION {
        return Err(CorruptionReason::UnsupportedVersion { version });
    }
    let geometry = Geometry {
        segment_size: u64_at(bytes, META_SEGMENT_SIZE_OFFSET),
        segments_per_file: u64_at(bytes, META_SEGMENTS_PER_FILE_OFFSET),
    };
    let block_size = u64_at(bytes, META_BLOCK_SIZE_OFFSET);
    if block_size != BLOCK_SIZE {
        return Err(CorruptionReason::HeaderMismatch { field: "block_size", expected: BLOCK_SIZE, found: block_size });
    }
    if !geometry_is_valid(geometry) {
        return Err(CorruptionReason::HeaderMismatch {
            field: "segment_size",
            expected: BLOCK_SIZE,
            found: geometry.segment_size,
        });
    }
    let groups_count = Some(u32_at(bytes, META_GROUPS_COUNT_OFFSET)).filter(|&count| count > 0);
    Ok(Meta { geometry, groups_count })
}

pub fn geometry_is_valid(geometry: Geometry) -> bool {
    geometry.segment_size >= 4 * BLOCK_SIZE
        && geometry.segment_size.is_multiple_of(BLOCK_SIZE)
        && geometry.segment_size <= u64::from(u32::MAX)
        && (1..=1 << 16).contains(&geometry.segments_per_file)
}

/// What a buffer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferKind {
    /// Records.
    Data,
    /// The segment is sealed: every buffer before this one was synced; nothing follows.
    Seal,
    /// The segment is free (at offset 0 only); everything after it is stale.
    Free,
}

impl BufferKind {
    fn byte(self) -> u8 {
        match self {
            Self::Data => 1,
            Self::Seal => 2,
            Self::Free => 3,
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Data),
            2 => Some(Self::Seal),
            3 => Some(Self::Free),
            _ => None,
        }
    }
}

/// A verified buffer header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferHeader {
    pub kind: BufferKind,
    pub segment: u64,
    pub generation: u64,
    /// Where the buffer starts in its segment.
    pub offset: u64,
    pub data_length: u32,
    pub records_count: u32,
    /// The buffer's length in blocks, header and padding included.
    pub blocks: u32,
    /// Whose segment this is: 0 for a mixed segment, `group + 1` for a group's.
    pub owner: u32,
}

impl BufferHeader {
    pub fn length(&self) -> u64 {
        u64::from(self.blocks) * BLOCK_SIZE
    }
}

/// Blocks a buffer holding `data_length` bytes of records takes.
pub fn blocks_for(data_length: usize) -> u32 {
    let blocks = (BUFFER_HEADER_SIZE as u64 + data_length as u64).div_ceil(BLOCK_SIZE);
    u32::try_from(blocks).expect("a buffer fits a segment")
}

/// Where a buffer header keeps each field (the table in docs/format.md).
mod header_at {
    pub const MAGIC: usize = 0;
    pub const VERSION: usize = 4;
    pub const KIND: usize = 6;
    /// One reserved byte, then twelve more from `RESERVED`.
    pub const RESERVED_BYTE: usize = 7;
    pub const SEGMENT: usize = 8;
    pub const GENERATION: usize = 16;
    pub const OFFSET: usize = 24;
    pub const DATA_LENGTH: usize = 32;
    pub const RECORDS_COUNT: usize = 36;
    pub const BLOCKS: usize = 40;
    pub const OWNER: usize = 44;
    pub const RESERVED: usize = 48;
    /// The CRC of the bytes before it and of the records: the header's last field.
    pub const CHECKSUM: usize = 60;
}
const _: () = assert!(header_at::CHECKSUM + 4 == BUFFER_HEADER_SIZE, "the checksum ends the header");
const _: () = assert!(header_at::OWNER + 4 == header_at::RESERVED && header_at::RESERVED + 12 == header_at::CHECKSUM);
const _: () = assert!(BUFFER_HEADER_SIZE as u64 <= BLOCK_SIZE, "a marker is one block");

/// Fills in the header of a buffer whose records are already at `buffer[BUFFER_HEADER_SIZE..]`,
/// and pads it with zeros to whole blocks.
pub fn seal_buffer(
    buffer: &mut Vec<u8>,
    kind: BufferKind,
    owner: u32,
    segment: u64,
    generation: u64,
    offset: u64,
    records_count: u32,
) {
    assert!(buffer.len() >= BUFFER_HEADER_SIZE, "the buffer reserves room for its header");
    let data_length = buffer.len() - BUFFER_HEADER_SIZE;
    let blocks = blocks_for(data_length);
    buffer[header_at::MAGIC..header_at::VERSION].copy_from_slice(&BUFFER_MAGIC);
    put_u16(buffer, header_at::VERSION, FORMAT_VERSION);
    buffer[header_at::KIND] = kind.byte();
    buffer[header_at::RESERVED_BYTE] = 0;
    put_u64(buffer, header_at::SEGMENT, segment);
    put_u64(buffer, header_at::GENERATION, generation);
    put_u64(buffer, header_at::OFFSET, offset);
    put_u32(buffer, header_at::DATA_LENGTH, u32::try_from(data_length).expect("fits a segment"));
    put_u32(buffer, header_at::RECORDS_COUNT, records_count);
    put_u32(buffer, header_at::BLOCKS, blocks);
    put_u32(buffer, header_at::OWNER, owner);
    buffer[header_at::RESERVED..header_at::CHECKSUM].fill(0);
    let mut hasher = crate::codec::crc32_hasher();
    hasher.update(&buffer[..header_at::CHECKSUM]);
    hasher.update(&buffer[BUFFER_HEADER_SIZE..]);
    let checksum = hasher.finalize();
    put_u32(buffer, header_at::CHECKSUM, checksum);
    buffer.resize(usize::try_from(u64::from(blocks) * BLOCK_SIZE).expect("fits"), 0);
}

/// A whole marker buffer (seal or free): a header and no records.
pub fn marker(kind: BufferKind, owner: u32, segment: u64, generation: u64, offset: u64) -> Vec<u8> {
    let mut buffer = vec![0u8; BUFFER_HEADER_SIZE];
    seal_buffer(&mut buffer, kind, owner, segment, generation, offset, 0);
    buffer
}

/// Parses a buffer header found at `offset` of segment `segment`, before its data is read.
pub fn decode_buffer_header(
    bytes: &[u8],
    segment: u64,
    offset: u64,
    room: u64,
) -> Result<BufferHeader, CorruptionReason> {
    if bytes.len() < BUFFER_HEADER_SIZE {
        return Err(CorruptionReason::Truncated { length: bytes.len() as u64 });
    }
    if bytes[header_at::MAGIC..header_at::VERSION] != BUFFER_MAGIC {
        return Err(CorruptionReason::BadMagic);
    }
    let version = u16_at(bytes, header_at::VERSION);
    if version != FORMAT_VERSION {
        return Err(CorruptionReason::UnsupportedVersion { version });
    }
    let Some(kind) = BufferKind::from_byte(bytes[header_at::KIND]) else {
        return Err(CorruptionReason::BadFragmentType { fragment_type: bytes[header_at::KIND] });
    };
    let header = BufferHeader {
        kind,
        segment: u64_at(bytes, header_at::SEGMENT),
        generation: u64_at(bytes, header_at::GENERATION),
        offset: u64_at(bytes, header_at::OFFSET),
        data_length: u32_at(bytes, header_at::DATA_LENGTH),
        records_count: u32_at(bytes, header_at::RECORDS_COUNT),
        blocks: u32_at(bytes, header_at::BLOCKS),
        owner: u32_at(bytes, header_at::OWNER),
    };
    let reserved = &bytes[header_at::RESERVED..header_at::CHECKSUM];
    if reserved.iter().any(|&byte| byte != 0) || bytes[header_at::RESERVED_BYTE] != 0 {
        return Err(CorruptionReason::NonZeroReserved);
    }
    if header.segment != segment {
        return Err(CorruptionReason::HeaderMismatch { field: "segment", expected: segment, found: header.segment });
    }
    if header.offset != offset {
        return Err(CorruptionReason::HeaderMismatch { field: "offset", expected: offset, found: header.offset });
    }
    if header.blocks == 0 || header.blocks != blocks_for(header.data_length as usize) || header.length() > room {
        return Err(CorruptionReason::BadLength { length: u64::from(header.data_length) });
    }
    Ok(header)
}

/// Verifies a whole buffer (the header already parsed): checksum, zero padding, and that its
/// records parse and verify, exactly filling its data.
pub fn verify_buffer(buffer: &[u8], header: &BufferHeader) -> Result<(), (usize, CorruptionReason)> {
    let data_end = BUFFER_HEADER_SIZE + header.data_length as usize;
    let mut hasher = crate::codec::crc32_hasher();
    hasher.update(&buffer[..header_at::CHECKSUM]);
    hasher.update(&buffer[BUFFER_HEADER_SIZE..data_end]);
    let (stored, computed) = (u32_at(buffer, header_at::CHECKSUM), hasher.finalize());
    if stored != computed {
        return Err((0, CorruptionReason::Checksum { expected: stored, found: computed }));
    }
    if let Some(index) = buffer[data_end..].iter().position(|&byte| byte != 0) {
        return Err((data_end + index, CorruptionReason::NonZeroPadding));
    }
    let mut at = BUFFER_HEADER_SIZE;
    for _ in 0..header.records_count {
        match decode_record(&buffer[at..data_end]) {
            Ok(record) => at += record.size(),
            Err(reason) => return Err((at, reason)),
        }
    }
    if at != data_end {
        return Err((at, CorruptionReason::BadLength { length: u64::from(header.data_length) }));
    }
    Ok(())
}

/// Where a record header keeps each field (the table in docs/format.md).
mod record_at {
    /// The CRC of everything after it: the header's other fields, the key and the value.
    pub const CHECKSUM: usize = 0;
    pub const KEY_LENGTH: usize = 4;
    pub const FLAGS: usize = 6;
    pub const RESERVED: usize = 7;
    pub const GROUP: usize = 8;
    pub const VALUE_LENGTH: usize = 12;
    pub const SEQUENCE: usize = 16;
}
const _: () = assert!(record_at::SEQUENCE + 8 == RECORD_HEADER_SIZE, "the sequence ends the record header");

/// A record, borrowed from the bytes it was decoded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    pub key: &'a [u8],
    /// `None` for a tombstone.
    pub value: Option<&'a [u8]>,
    pub group: u32,
    pub sequence: u64,
}

impl Record<'_> {
    pub fn size(&self) -> usize {
        RECORD_HEADER_SIZE + self.key.len() + self.value.map_or(0, <[u8]>::len)
    }
}

pub fn record_size(key: &[u8], value: Option<&[u8]>) -> usize {
    RECORD_HEADER_SIZE + key.len() + value.map_or(0, <[u8]>::len)
}

pub fn encode_record(buffer: &mut Vec<u8>, record: &Record<'_>) {
    let start = buffer.len();
    buffer.resize(start + RECORD_HEADER_SIZE, 0);
    let header = &mut buffer[start..];
    put_u16(header, record_at::KEY_LENGTH, u16::try_from(record.key.len()).expect("key length was checked"));
    header[record_at::FLAGS] = if record.value.is_none() { TOMBSTONE_FLAG } else { 0 };
    put_u32(header, record_at::GROUP, record.group);
    let value_length = record.value.map_or(0, <[u8]>::len);
    put_u32(header, record_at::VALUE_LENGTH, u32::try_from(value_length).expect("value length was checked"));
    put_u64(header, record_at::SEQUENCE, record.sequence);
    buffer.extend_from_slice(record.key);
    if let Some(value) = record.value {
        buffer.extend_from_slice(value);
    }
    let checksum = crate::codec::crc32(&buffer[start + record_at::KEY_LENGTH..]);
    put_u32(&mut buffer[start..], record_at::CHECKSUM, checksum);
}

/// Decodes and verifies the record at the start of `bytes`.
pub fn decode_record(bytes: &[u8]) -> Result<Record<'_>, CorruptionReason> {
    decode_record_checking(bytes, true)
}

/// Decodes a record inside a buffer that [`verify_buffer`] accepted, which checked every
/// record's checksum already: the same bounds checks as [`decode_record`], without hashing the
/// record again. Opening decodes each of a million records this way (see bench/README.md).
pub fn decode_verified_record(bytes: &[u8]) -> Result<Record<'_>, CorruptionReason> {
    decode_record_checking(bytes, false)
}

fn decode_record_checking(bytes: &[u8], check_checksum: bool) -> Result<Record<'_>, CorruptionReason> {
    if bytes.len() < RECORD_HEADER_SIZE {
        return Err(CorruptionReason::Truncated { length: bytes.len() as u64 });
    }
    let key_length = usize::from(u16_at(bytes, record_at::KEY_LENGTH));
    let flags = bytes[record_at::FLAGS];
    if flags & !TOMBSTONE_FLAG != 0 || bytes[record_at::RESERVED] != 0 {
        return Err(CorruptionReason::NonZeroReserved);
    }
    let value_length = u32_at(bytes, record_at::VALUE_LENGTH) as usize;
    let tombstone = flags & TOMBSTONE_FLAG != 0;
    if tombstone && value_length != 0 {
        return Err(CorruptionReason::BadLength { length: value_length as u64 });
    }
    let size = RECORD_HEADER_SIZE + key_length + value_length;
    if size > bytes.len() {
        return Err(CorruptionReason::BadLength { length: size as u64 });
    }
    if check_checksum {
        let checksummed = &bytes[record_at::KEY_LENGTH..size];
        let (stored, computed) = (u32_at(bytes, record_at::CHECKSUM), crate::codec::crc32(checksummed));
        if stored != computed {
            return Err(CorruptionReason::Checksum { expected: stored, found: computed });
        }
    }
    let key = &bytes[RECORD_HEADER_SIZE..RECORD_HEADER_SIZE + key_length];
    let value = (!tombstone).then(|| &bytes[RECORD_HEADER_SIZE + key_length..size]);
    Ok(Record { key, value, group: u32_at(bytes, record_at::GROUP), sequence: u64_at(bytes, record_at::SEQUENCE) })
}
