//! Streams of bits, most significant bit first, written the way Prometheus's `bstream` writes
//! them: the stream always ends in a byte that is only partly written (`free` bits of it still
//! unwritten), and writing a whole byte at a byte boundary leaves an empty last byte behind.
//! That trailing byte is part of the chunk's bytes, so it is kept: a chunk must be the same
//! bytes Prometheus would have written.

/// The lowest 8 bits of `value`.
pub(super) fn low_byte(value: u64) -> u8 {
    value.to_le_bytes()[0]
}

/// Appends bits to a byte vector.
#[derive(Clone, Debug, Default)]
pub(super) struct BitWriter {
    pub(super) bytes: Vec<u8>,
    /// How many low bits of the last byte are still unwritten (0 to 8).
    pub(super) free: u8,
}

impl BitWriter {
    pub(super) fn new(bytes: Vec<u8>, free: u8) -> Self {
        debug_assert!(free <= 8 && (free == 0 || !bytes.is_empty()));
        Self { bytes, free }
    }

    pub(super) fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.bytes.push(0);
            self.free = 8;
        }
        if bit {
            *self.bytes.last_mut().expect("a byte was pushed") |= 1 << (self.free - 1);
        }
        self.free -= 1;
    }

    pub(super) fn write_byte(&mut self, byte: u8) {
        if self.free == 0 {
            self.bytes.push(0);
            self.free = 8;
        }
        // The high `free` bits of `byte` complete the last byte; the rest start a new one.
        *self.bytes.last_mut().expect("a byte was pushed") |= byte >> (8 - self.free);
        self.bytes.push(byte.checked_shl(u32::from(self.free)).unwrap_or(0));
    }

    /// Writes the low `count` bits of `value`, highest first, in one step: the bytes and the
    /// state that `count / 8` calls of `write_byte` and then `count % 8` calls of `write_bit`
    /// leave (so a whole number of bytes written at a byte boundary leaves an empty last
    /// byte behind, as `write_byte` does).
    pub(super) fn write_bits(&mut self, value: u64, count: u8) {
        debug_assert!((1..=64).contains(&count));
        if self.free == 0 {
            self.bytes.push(0);
            self.free = 8;
        }
        let value = if count == 64 { value } else { value & ((1 << count) - 1) };
        let last = self.bytes.pop().expect("a byte was pushed");
        // The last byte's written bits, then the new ones: at most 7 + 64 bits.
        let used = 8 - u32::from(self.free);
        let bits = used + u32::from(count);
        let combined = (u128::from(u32::from(last) >> self.free) << count) | u128::from(value);
        let length = if count.is_multiple_of(8) { u32::from(count) / 8 + 1 } else { bits.div_ceil(8) };
        // The bits at the top of 16 bytes: a copy of a fixed nine, cut back to `length`,
        // compiles to a few moves where a copy of `length` bytes calls memmove.
        let aligned = (combined << (128 - bits)).to_be_bytes();
        let kept = self.bytes.len() + length as usize;
        self.bytes.extend_from_slice(&aligned[..9]);
        self.bytes.truncate(kept);
        self.free = u8::try_from(length * 8 - bits).expect("less than 9");
    }
}

/// Reads bits from a byte slice; `None` once the bits run out.
#[derive(Clone, Debug)]
pub(super) struct BitReader<'a> {
    bytes: &'a [u8],
    /// The next bit to read, counted from the start of `bytes`.
    position: usize,
}

impl<'a> BitReader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, position: 0 }
    }

    pub(super) fn read_bit(&mut self) -> Option<bool> {
        let byte = *self.bytes.get(self.position / 8)?;
        let bit = byte >> (7 - self.position % 8) & 1;
        self.position += 1;
        Some(bit == 1)
    }

    /// Reads `count` bits (1 to 64) as the low bits of a `u64`, highest first: from the (at
    /// most nine) bytes that hold them at once, not a bit at a time.
    pub(super) fn read_bits(&mut self, count: u8) -> Option<u64> {
        debug_assert!((1..=64).contains(&count));
        let end = self.position + usize::from(count);
        if end > self.bytes.len() * 8 {
            return None;
        }
        let window = self.bytes[self.position / 8..end.div_ceil(8)]
            .iter()
            .fold(0u128, |window, &byte| window << 8 | u128::from(byte));
        let after = end.next_multiple_of(8) - end;
        let bits = (window >> after) & ((1u128 << count) - 1);
        self.position = end;
        Some(u64::try_from(bits).expect("at most 64 bits"))
    }

    pub(super) fn read_byte(&mut self) -> Option<u8> {
        self.read_bits(8).map(low_byte)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// `write_bits` as it first was, a byte then a bit at a time: the reference the one-step
    /// version must match byte for byte.
    fn write_bits_slowly(writer: &mut BitWriter, value: u64, count: u8) {
        let mut value = value << (64 - u32::from(count));
        let mut count = count;
        while count >= 8 {
            writer.write_byte(low_byte(value >> 56));
            value <<= 8;
            count -= 8;
        }
        while count > 0 {
            writer.write_bit(value >> 63 == 1);
            value <<= 1;
            count -= 1;
        }
    }

    /// `read_bits` as it first was, a bit at a time.
    fn read_bits_slowly(reader: &mut BitReader<'_>, count: u8) -> Option<u64> {
        if reader.position + usize::from(count) > reader.bytes.len() * 8 {
            return None;
        }
        Some((0..count).fold(0u64, |value, _| value << 1 | u64::from(reader.read_bit().expect("checked above"))))
    }

    proptest! {
        /// Any run of reads, of any widths, from any bytes, reads what reading bit by bit
        /// does, and stops where it does.
        #[test]
        fn read_bits_matches_reading_bit_by_bit(
            bytes in prop::collection::vec(any::<u8>(), 0..40),
            counts in prop::collection::vec(1u8..=64, 0..20),
        ) {
            let (mut fast, mut slow) = (BitReader::new(&bytes), BitReader::new(&bytes));
            for count in counts {
                prop_assert_eq!(fast.read_bits(count), read_bits_slowly(&mut slow, count));
                prop_assert_eq!(fast.position, slow.position);
            }
        }

        /// Any mix of bits, bytes and runs of bits leaves the same bytes and the same free
        /// bits as writing every run slowly: so chunks stay Prometheus's bytes.
        #[test]
        fn write_bits_matches_writing_bit_by_bit(
            writes in prop::collection::vec((any::<u64>(), 0u8..=64), 0..60),
        ) {
            let (mut fast, mut slow) = (BitWriter::new(vec![0, 0], 0), BitWriter::new(vec![0, 0], 0));
            for (value, count) in writes {
                match count {
                    0 => {
                        fast.write_bit(value & 1 == 1);
                        slow.write_bit(value & 1 == 1);
                    }
                    count => {
                        fast.write_bits(value, count);
                        write_bits_slowly(&mut slow, value, count);
                    }
                }
                prop_assert_eq!(&fast.bytes, &slow.bytes);
                prop_assert_eq!(fast.free, slow.free);
            }
        }
    }

    #[test]
    fn bits_read_back_as_written_across_byte_boundaries() {
        let mut writer = BitWriter::default();
        writer.write_bit(true);
        writer.write_bits(0b101, 3);
        writer.write_byte(0xA5);
        writer.write_bits(u64::MAX, 64);
        writer.write_bits(0x1234, 14);
        let mut reader = BitReader::new(&writer.bytes);
        assert_eq!(reader.read_bit(), Some(true));
        assert_eq!(reader.read_bits(3), Some(0b101));
        assert_eq!(reader.read_byte(), Some(0xA5));
        assert_eq!(reader.read_bits(64), Some(u64::MAX));
        assert_eq!(reader.read_bits(14), Some(0x1234));
    }

    #[test]
    fn a_byte_written_at_a_boundary_leaves_an_empty_last_byte_as_prometheus_does() {
        let mut writer = BitWriter::new(vec![0, 0], 0);
        writer.write_byte(0xFF);
        assert_eq!(writer.bytes, [0, 0, 0xFF, 0]);
        assert_eq!(writer.free, 8);
        writer.write_bit(true);
        assert_eq!(writer.bytes, [0, 0, 0xFF, 0x80]);
    }

    #[test]
    fn reading_past_the_end_is_none_not_a_panic() {
        let mut reader = BitReader::new(&[0xFF]);
        assert_eq!(reader.read_bits(9), None);
        assert_eq!(reader.read_bits(8), Some(0xFF));
        assert_eq!(reader.read_bit(), None);
        assert_eq!(BitReader::new(&[]).read_bits(64), None);
    }
}
