//! The XOR chunk: Facebook Gorilla's compression as Prometheus writes it, bit for bit.
//!
//! Layout: a big-endian `u16` sample count, then a bit stream. The first sample is its
//! timestamp as a zigzag varint and its value's 64 bits; the second, the timestamp delta as a
//! varint and the value XORed with the first; every later one, the delta of deltas in a
//! bucket (`0`; `10` + 14 bits; `110` + 17; `1110` + 20; `1111` + 64) and the XORed value. A
//! value equal to the one before is one `0` bit; otherwise `1`, then `0` and the significant
//! bits inside the window of leading and trailing zeros the previous value set, or `1`, five
//! bits of leading zeros (at most 31), six of significant bits (64 written as 0), and those
//! bits. Prometheus's buckets are not symmetric: `n` bits hold `-(2^(n-1) - 1)` to `2^(n-1)`.

use super::bstream::{low_byte, BitReader, BitWriter};
use super::ChunkError;

/// No window of leading and trailing zeros is set yet: the next changed value writes its own.
const NO_WINDOW: u8 = 0xff;
/// At most 31 leading zeros are written (five bits); more are written as 31.
const LEADING_MAX: u8 = 31;

/// The bytes a new chunk reserves.
const CAPACITY: usize = 128;

/// A chunk being appended to, or read.
#[derive(Clone, Debug)]
pub struct XorChunk {
    stream: BitWriter,
    /// The samples appended: the header's count, kept here too so that an append need not
    /// load the chunk's first bytes (a cache miss per sample in a large head; the store that
    /// updates them does not wait).
    count: u16,
    t: i64,
    value_bits: u64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
}

impl Default for XorChunk {
    fn default() -> Self {
        Self::new()
    }
}

impl XorChunk {
    pub fn new() -> Self {
        // Room for about the 120 samples a chunk aims for, as Prometheus allocates, so that
        // appending seldom reallocates.
        let mut bytes = Vec::with_capacity(CAPACITY);
        bytes.extend_from_slice(&[0, 0]);
        Self {
            stream: BitWriter::new(bytes, 0),
            count: 0,
            t: 0,
            value_bits: 0,
            t_delta: 0,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    pub fn num_samples(&self) -> u16 {
        self.count
    }

    /// The chunk's bytes, as a block stores them.
    pub fn bytes(&self) -> &[u8] {
        &self.stream.bytes
    }

    /// The samples, oldest first.
    pub fn iter(&self) -> XorIterator<'_> {
        XorIterator::new(self.bytes()).expect("a chunk always holds its header")
    }

    /// Appends a sample. The head cuts chunks long before the count's limit of 65,535.
    ///
    /// # Panics
    ///
    /// If the chunk already holds 65,535 samples.
    pub fn append(&mut self, t: i64, v: f64) {
        let count = self.num_samples();
        assert!(count < u16::MAX, "an XOR chunk holds at most 65,535 samples");
        let mut t_delta = 0;
        match count {
            0 => {
                self.write_varint(t);
                self.stream.write_bits(v.to_bits(), 64);
            }
            1 => {
                t_delta = t.wrapping_sub(self.t) as u64;
                self.write_uvarint(t_delta);
                self.write_value(v.to_bits());
            }
            _ => {
                t_delta = t.wrapping_sub(self.t) as u64;
                self.write_delta_of_delta(t_delta.wrapping_sub(self.t_delta) as i64);
                self.write_value(v.to_bits());
            }
        }
        self.t = t;
        self.value_bits = v.to_bits();
        self.t_delta = t_delta;
        self.count = count + 1;
        self.stream.bytes[..2].copy_from_slice(&self.count.to_be_bytes());
    }

    fn write_varint(&mut self, value: i64) {
        self.write_uvarint(((value << 1) ^ (value >> 63)) as u64);
    }

    fn write_uvarint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.stream.write_byte(low_byte(value) | 0x80);
            value >>= 7;
        }
        self.stream.write_byte(low_byte(value));
    }

    /// A bucket's control bits and value in one write of 16, 20 or 24 bits. Begun at a byte
    /// boundary, the 16 and 24 leave the empty last byte a whole number of bytes leaves,
    /// where the split writes (2 + 14, 4 + 20) did not; the value written next in the same
    /// append fills that byte, so the chunk's bytes are the same.
    fn write_delta_of_delta(&mut self, dod: i64) {
        let stream = &mut self.stream;
        match dod {
            0 => stream.write_bit(false),
            _ if fits_bucket(dod, 14) => {
                stream.write_bits(0b10 << 14 | (dod as u64 & ((1 << 14) - 1)), 16);
            }
            _ if fits_bucket(dod, 17) => {
                stream.write_bits(0b110 << 17 | (dod as u64 & ((1 << 17) - 1)), 20);
            }
            _ if fits_bucket(dod, 20) => {
                stream.write_bits(0b1110 << 20 | (dod as u64 & ((1 << 20) - 1)), 24);
            }
            _ => {
                stream.write_bits(0b1111, 4);
                stream.write_bits(dod as u64, 64);
            }
        }
    }

    fn write_value(&mut self, bits: u64) {
        let xor = bits ^ self.value_bits;
        if xor == 0 {
            self.stream.write_bit(false);
            return;
        }
        let leading = u8::try_from(xor.leading_zeros()).expect("at most 63").min(LEADING_MAX);
        let trailing = u8::try_from(xor.trailing_zeros()).expect("at most 63");
        if self.leading != NO_WINDOW && leading >= self.leading && trailing >= self.trailing {
            // `1`, `0`, then the bits inside the window.
            self.stream.write_bits(0b10, 2);
            self.stream.write_bits(xor >> self.trailing, 64 - self.leading - self.trailing);
            return;
        }
        (self.leading, self.trailing) = (leading, trailing);
        let significant = 64 - leading - trailing;
        // `1`, `1`, five bits of leading zeros, and six of significant bits: 64 significant
        // bits do not fit in six; 0 never occurs (the XOR is not zero), so it stands for 64.
        let header = 0b11 << 11 | u64::from(leading) << 6 | u64::from(significant % 64);
        self.stream.write_bits(header, 13);
        self.stream.write_bits(xor >> trailing, significant);
    }
}

/// Whether `dod` fits Prometheus's bucket of `bits` bits.
fn fits_bucket(dod: i64, bits: u32) -> bool {
    let half = 1i64 << (bits - 1);
    -(half - 1) <= dod && dod <= half
}

/// The samples of a chunk's bytes, oldest first; it stops after the first error. Any bytes
/// are safe to decode: the work is bounded by the sample count, and nothing is allocated.
#[derive(Clone, Debug)]
pub struct XorIterator<'a> {
    reader: BitReader<'a>,
    total: u16,
    read: u16,
    t: i64,
    value_bits: u64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
    failed: bool,
}

impl<'a> XorIterator<'a> {
    /// Decodes `bytes`, a chunk's bytes; fails only if they cannot hold the sample count.
    pub fn new(bytes: &'a [u8]) -> Result<Self, ChunkError> {
        let [high, low, ..] = *bytes else { return Err(ChunkError::NoHeader) };
        Ok(Self {
            reader: BitReader::new(&bytes[2..]),
            total: u16::from_be_bytes([high, low]),
            read: 0,
            t: 0,
            value_bits: 0,
            t_delta: 0,
            leading: 0,
            trailing: 0,
            failed: false,
        })
    }

    /// The number of samples the chunk's header gives.
    pub fn total(&self) -> u16 {
        self.total
    }

    fn next_sample(&mut self) -> Result<(i64, f64), ChunkError> {
        let index = self.read;
        let truncated = ChunkError::Truncated { index };
        match index {
            0 => {
                self.t = self.read_varint()?;
                self.value_bits = self.reader.read_bits(64).ok_or(truncated)?;
            }
            1 => {
                self.t_delta = self.read_uvarint()?;
                self.t = self.t.wrapping_add(self.t_delta as i64);
                self.read_value()?;
            }
            _ => {
                let dod = self.read_delta_of_delta()?;
                self.t_delta = self.t_delta.wrapping_add(dod as u64);
                self.t = self.t.wrapping_add(self.t_delta as i64);
                self.read_value()?;
            }
        }
        self.read += 1;
        Ok((self.t, f64::from_bits(self.value_bits)))
    }

    fn read_varint(&mut self) -> Result<i64, ChunkError> {
        let zigzag = self.read_uvarint()?;
        Ok((zigzag >> 1) as i64 ^ -((zigzag & 1) as i64))
    }

    fn read_uvarint(&mut self) -> Result<u64, ChunkError> {
        let index = self.read;
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let byte = self.reader.read_byte().ok_or(ChunkError::Truncated { index })?;
            if byte < 0x80 {
                if shift == 63 && byte > 1 {
                    break;
                }
                return Ok(value | u64::from(byte) << shift);
            }
            value |= u64::from(byte & 0x7f) << shift;
        }
        Err(ChunkError::VarintOverflow { index })
    }

    fn read_delta_of_delta(&mut self) -> Result<i64, ChunkError> {
        let truncated = ChunkError::Truncated { index: self.read };
        let mut ones = 0;
        while ones < 4 && self.reader.read_bit().ok_or(truncated)? {
            ones += 1;
        }
        let bits = match ones {
            0 => return Ok(0),
            1 => 14,
            2 => 17,
            3 => 20,
            _ => return Ok(self.reader.read_bits(64).ok_or(truncated)? as i64),
        };
        let raw = self.reader.read_bits(bits).ok_or(truncated)?;
        // Negative deltas come back as large unsigned numbers.
        Ok(if raw > 1 << (bits - 1) { raw as i64 - (1i64 << bits) } else { raw as i64 })
    }

    fn read_value(&mut self) -> Result<(), ChunkError> {
        let index = self.read;
        let truncated = ChunkError::Truncated { index };
        if !self.reader.read_bit().ok_or(truncated)? {
            return Ok(());
        }
        if self.reader.read_bit().ok_or(truncated)? {
            let leading = low_byte(self.reader.read_bits(5).ok_or(truncated)?);
            let significant = match low_byte(self.reader.read_bits(6).ok_or(truncated)?) {
                0 => 64,
                significant => significant,
            };
            if leading + significant > 64 {
                return Err(ChunkError::BadValueWindow { index });
            }
            (self.leading, self.trailing) = (leading, 64 - leading - significant);
        }
        let significant = 64 - self.leading - self.trailing;
        let xor = self.reader.read_bits(significant).ok_or(truncated)?;
        self.value_bits ^= xor << self.trailing;
        Ok(())
    }
}

impl Iterator for XorIterator<'_> {
    type Item = Result<(i64, f64), ChunkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.read == self.total {
            return None;
        }
        let sample = self.next_sample();
        self.failed = sample.is_err();
        Some(sample)
    }
}
