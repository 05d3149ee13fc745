//! Fields on and off the bytes of the TSDB's files and records: Go's uvarint and zig-zag
//! varint (Prometheus's blocks and ballast's own records use both), and a cursor whose every
//! read is bounds-checked, so that a length or offset that runs past what the bytes hold is
//! refused (`Err(at)`, the offset where reading failed) before anything is allocated for it.

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

pub(crate) struct Cursor<'a> {
    pub bytes: &'a [u8],
    pub at: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, at: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.at == self.bytes.len()
    }

    pub fn take(&mut self, length: usize) -> Result<&'a [u8], u64> {
        let end = self.at.checked_add(length).filter(|&end| end <= self.bytes.len()).ok_or(self.at as u64)?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], u64> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    /// Go's `Uvarint`: at most ten bytes, the tenth at most 1 (no bit past the 64th).
    pub fn uvarint(&mut self) -> Result<u64, u64> {
        let start = self.at as u64;
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1).map_err(|_| start)?[0];
            if shift == 63 && byte > 1 {
                return Err(start);
            }
            value |= u64::from(byte & 0x7F) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(start)
    }

    pub fn varint(&mut self) -> Result<i64, u64> {
        let value = self.uvarint()?;
        Ok((value >> 1).cast_signed() ^ -((value & 1).cast_signed()))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

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
    }

    #[test]
    fn a_varint_longer_than_64_bits_or_cut_short_is_refused_at_its_start() {
        let mut cursor = Cursor::new(&[0x01, 0xFF, 0xFF]);
        assert_eq!(cursor.uvarint(), Ok(1));
        assert_eq!(cursor.uvarint(), Err(1));
        assert_eq!(Cursor::new(&[0xFF; 11]).uvarint(), Err(0));
        // Ten bytes hold 64 bits only if the tenth is 0 or 1, as Go's `Uvarint` decides.
        let mut max = [0xFF; 10];
        max[9] = 0x01;
        assert_eq!(Cursor::new(&max).uvarint(), Ok(u64::MAX));
        max[9] = 0x02;
        assert_eq!(Cursor::new(&max).uvarint(), Err(0));
    }

    proptest! {
        #[test]
        fn varints_round_trip(values in prop::collection::vec(any::<i64>(), 0..50)) {
            let mut out = Vec::new();
            for &value in &values {
                put_varint(&mut out, value);
                put_uvarint(&mut out, value.cast_unsigned());
            }
            let mut cursor = Cursor::new(&out);
            for &value in &values {
                prop_assert_eq!(cursor.varint(), Ok(value));
                prop_assert_eq!(cursor.uvarint(), Ok(value.cast_unsigned()));
            }
            prop_assert!(cursor.is_empty());
        }
    }
}
