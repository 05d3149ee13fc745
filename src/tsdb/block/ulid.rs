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
}
