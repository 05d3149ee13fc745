//! Small codecs shared by every format: little-endian fields at fixed positions. Callers
//! check bounds first; these panic on a short slice, which would be a bug of ours.

pub(crate) fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes[at..at + 2].try_into().expect("a caller checks the length"))
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("a caller checks the length"))
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("a caller checks the length"))
}

pub(crate) fn put_u16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_u64(bytes: &mut [u8], at: usize, value: u64) {
    bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

/// A CRC-32 hasher (IEEE, as every format here uses), cloned from one made once.
/// `crc32fast::Hasher::new` detects the CPU's features on every call: about 30 instructions, a
/// seventh of checksumming one 100-byte WAL record (callgrind of the `wal` benchmark).
pub(crate) fn crc32_hasher() -> crc32fast::Hasher {
    static PROTOTYPE: std::sync::OnceLock<crc32fast::Hasher> = std::sync::OnceLock::new();
    PROTOTYPE.get_or_init(crc32fast::Hasher::new).clone()
}

/// The CRC-32 of `bytes`; the same as `crc32fast::hash`, without its feature detection.
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    let mut hasher = crc32_hasher();
    hasher.update(bytes);
    hasher.finalize()
}
