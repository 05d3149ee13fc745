//! The integer encodings of Prometheus's block files: big-endian fixed widths, Go's uvarint
//! and zig-zag varint, and the CRC-32C (Castagnoli) every section ends with.

pub(crate) fn put_be32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_be_bytes());
}

pub(crate) fn put_be64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_be_bytes());
}

pub(crate) fn put_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value & 0x7F).to_le_bytes()[0] | 0x80);
        value >>= 7;
    }
    out.push(value.to_le_bytes()[0]);
}

pub(crate) fn put_varint(out: &mut Vec<u8>, value: i64) {
    put_uvarint(out, ((value << 1) ^ (value >> 63)).cast_unsigned());
}

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
    fn varints_encode_as_go_does() {
        let mut out = Vec::new();
        put_uvarint(&mut out, 300);
        assert_eq!(out, [0xAC, 0x02]);
        out.clear();
        put_varint(&mut out, -1);
        put_varint(&mut out, 1);
        put_varint(&mut out, -64);
        assert_eq!(out, [0x01, 0x02, 0x7F]);
        assert_eq!(crc32c(b"123456789"), 0xE306_9283, "the CRC-32C check value");
    }
}
