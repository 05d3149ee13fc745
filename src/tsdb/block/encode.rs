//! The integer encodings of Prometheus's block files: big-endian fixed widths, Go's uvarint
//! and zig-zag varint (`tsdb::bytes`), and the CRC-32C (Castagnoli) every section ends with.

pub(crate) fn put_be32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_be_bytes());
}

pub(crate) fn put_be64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_be_bytes());
}

pub(crate) use crate::tsdb::bytes::{put_uvarint, put_varint};

pub(crate) fn put_string(out: &mut Vec<u8>, value: &str) {
    put_uvarint(out, value.len() as u64);
    out.extend_from_slice(value.as_bytes());
}

pub(crate) fn crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// Appends `body` framed as most index sections are: its length (BE32), the body, and the
/// CRC-32C of the body.
pub(crate) fn put_section(out: &mut Vec<u8>, body: &[u8]) {
    put_be32(out, u32::try_from(body.len()).expect("a section under 4 GiB"));
    out.extend_from_slice(body);
    put_be32(out, crc32c(body));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_is_castagnoli() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283, "the CRC-32C check value");
    }
}
