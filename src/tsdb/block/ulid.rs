//! Block names: ULIDs, 48 bits of milliseconds and 80 of entropy in Crockford's base32. The
//! engine reads neither a clock nor randomness of its own: the caller gives both.

use std::fmt;

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A block's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ulid(u128);

impl Ulid {
    /// The ULID of `millis` (from the caller's clock; its low 48 bits) and `entropy` (its low
    /// 80 bits).
    pub fn new(millis: u64, entropy: u128) -> Self {
        let time = u128::from(millis & ((1 << 48) - 1));
        Self((time << 80) | (entropy & ((1 << 80) - 1)))
    }

    /// The ULID `text` spells (26 Crockford base32 characters, either case), if it is one.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != 26 {
            return None;
        }
        let mut value = 0u128;
        for (index, byte) in text.bytes().enumerate() {
            let digit = ALPHABET.iter().position(|&letter| letter == byte.to_ascii_uppercase())?;
            // The first character holds only the top 3 of the 128 bits.
            if index == 0 && digit > 7 {
                return None;
            }
            value = (value << 5) | u128::from(u8::try_from(digit).expect("below 32"));
        }
        Some(Self(value))
    }

    /// Its milliseconds.
    pub fn millis(self) -> u64 {
        u64::try_from(self.0 >> 80).expect("48 bits")
    }
}

impl fmt::Display for Ulid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = [0u8; 26];
        for (index, byte) in text.iter_mut().enumerate() {
            let shift = 125 - 5 * index;
            *byte = ALPHABET[usize::from(((self.0 >> shift) & 31).to_le_bytes()[0])];
        }
        f.write_str(std::str::from_utf8(&text).expect("ASCII"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ulid_is_26_crockford_characters_time_first() {
        assert_eq!(Ulid::new(0, 0).to_string(), "00000000000000000000000000");
        assert_eq!(Ulid::new(1, 0).to_string(), "00000000010000000000000000");
        // The ULID spec's largest: 7ZZZZZZZZZZZZZZZZZZZZZZZZZ.
        assert_eq!(Ulid::new(u64::MAX, u128::MAX).to_string(), "7ZZZZZZZZZZZZZZZZZZZZZZZZZ");
        assert!(Ulid::new(2, 0).to_string() > Ulid::new(1, u128::MAX).to_string(), "sorts by time");
    }

    #[test]
    fn a_ulid_parses_back_and_nothing_else_does() {
        for ulid in [Ulid::new(0, 0), Ulid::new(1_700_000_000_000, 0xDEAD_BEEF), Ulid::new(u64::MAX, u128::MAX)] {
            assert_eq!(Ulid::parse(&ulid.to_string()), Some(ulid));
            assert_eq!(Ulid::parse(&ulid.to_string().to_lowercase()), Some(ulid));
        }
        assert_eq!(Ulid::parse("01GSZ7Y1D3PR5BNZ6VQK7TKJXW").map(Ulid::millis), Some(1_677_159_499_171));
        for bad in ["", "wal", "8ZZZZZZZZZZZZZZZZZZZZZZZZZ", "01GSZ7Y1D3PR5BNZ6VQK7TKJXU", "01GSZ7Y1D3PR5BNZ6VQK7TKJX"]
        {
            assert_eq!(Ulid::parse(bad), None, "{bad}");
        }
    }
}
