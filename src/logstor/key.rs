//! The index's key type.
//!
//! A profile of the `kv` benchmark (callgrind, see `bench/README.md`) put two thirds of a put's
//! instructions in the index insert, most of them behind `Vec<u8>` keys: an allocation per new
//! key, and a pointer to follow, usually to memory not in cache, for every key a search
//! compares against. Keys of up to [`INLINE_MAX`] bytes (the common case: ids, hashes, short
//! names) are therefore stored inside the index's own memory, and only longer ones on the heap.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;

/// Keys up to this long are stored inline. It keeps `IndexKey` at 24 bytes, the size of a `Vec`.
pub const INLINE_MAX: usize = 22;

/// An index key. Compares, hashes and borrows exactly as the byte string it holds, so lookups
/// take a `&[u8]`.
#[derive(Clone)]
pub enum IndexKey {
    Inline { length: u8, bytes: [u8; INLINE_MAX] },
    Heap(Box<[u8]>),
}

const _: () = assert!(std::mem::size_of::<IndexKey>() == 24);
const _: () = assert!(INLINE_MAX <= u8::MAX as usize);

impl IndexKey {
    #[inline]
    pub fn new(key: &[u8]) -> Self {
        if key.len() <= INLINE_MAX {
            let mut bytes = [0u8; INLINE_MAX];
            bytes[..key.len()].copy_from_slice(key);
            Self::Inline { length: u8::try_from(key.len()).expect("at most INLINE_MAX"), bytes }
        } else {
            Self::Heap(key.into())
        }
    }

    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline { length, bytes } => &bytes[..usize::from(*length)],
            Self::Heap(bytes) => bytes,
        }
    }
}

impl Borrow<[u8]> for IndexKey {
    #[inline]
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for IndexKey {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for IndexKey {}

impl PartialOrd for IndexKey {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IndexKey {
    /// Byte order. Two inline keys compare as three big-endian words and then their lengths,
    /// without a call to `memcmp`: the padding is zeros, so where the words first differ, a byte
    /// of padding can only face a non-zero byte of a longer key that the shorter one prefixes.
    /// Sorting keys for [`crate::logstor::Logstor::scan`] makes about log2(n) of these per key.
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Inline { length, bytes }, Self::Inline { length: other_length, bytes: other_bytes }) => {
                words(bytes).cmp(&words(other_bytes)).then(length.cmp(other_length))
            }
            _ => self.as_slice().cmp(other.as_slice()),
        }
    }
}

/// An inline key's bytes as big-endian words, the last one zero-padded.
#[inline]
fn words(bytes: &[u8; INLINE_MAX]) -> (u64, u64, u64) {
    let word = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let mut last = [0u8; 8];
    last[..INLINE_MAX - 16].copy_from_slice(&bytes[16..]);
    (word(0), word(8), u64::from_be_bytes(last))
}

impl std::hash::Hash for IndexKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Inline and heap keys order exactly as their bytes do, across the inline boundary.
        #[test]
        fn orders_as_bytes(a in proptest::collection::vec(any::<u8>(), 0..40),
                           b in proptest::collection::vec(any::<u8>(), 0..40)) {
            let (ka, kb) = (IndexKey::new(&a), IndexKey::new(&b));
            prop_assert_eq!(ka.as_slice(), &a[..]);
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
            prop_assert_eq!(ka == kb, a == b);
        }
    }

    proptest! {
        /// The same over an alphabet of 0, 1 and 255, so that keys differing only by trailing
        /// zeros (which the inline padding looks like) and equal leading words are common.
        #[test]
        fn orders_as_bytes_with_zero_padding_lookalikes(
            a in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(255u8)], 0..26),
            b in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(255u8)], 0..26),
        ) {
            let (ka, kb) = (IndexKey::new(&a), IndexKey::new(&b));
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
            prop_assert_eq!(kb.cmp(&ka), b.cmp(&a));
        }
    }

    #[test]
    fn a_trailing_zero_makes_a_longer_greater_key() {
        let (short, long) = (IndexKey::new(b"a"), IndexKey::new(b"a\0"));
        assert_eq!(short.cmp(&long), std::cmp::Ordering::Less);
        assert_eq!(IndexKey::new(&[0; 22]).cmp(&IndexKey::new(&[0; 21])), std::cmp::Ordering::Greater);
        assert_eq!(IndexKey::new(&[0; 22]).cmp(&IndexKey::new(&[0; 23])), std::cmp::Ordering::Less);
    }

    #[test]
    fn boundary_lengths_round_trip() {
        for length in [0, 1, INLINE_MAX - 1, INLINE_MAX, INLINE_MAX + 1, 300] {
            let key: Vec<u8> = (0..=u8::MAX).cycle().take(length).collect();
            let stored = IndexKey::new(&key);
            assert_eq!(stored.as_slice(), &key[..]);
            assert_eq!(matches!(stored, IndexKey::Inline { .. }), length <= INLINE_MAX);
        }
    }
}
