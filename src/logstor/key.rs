//! The index's key type.
//!
//! A profile of the `kv` benchmark (callgrind, see `bench/README.md`) put two thirds of a put's
//! instructions in the index insert, most of them behind `Vec<u8>` keys: an allocation per new
//! key, and a pointer to follow, usually to memory not in cache, for every key a B-tree search
//! compares against. Keys of up to [`INLINE_MAX`] bytes (the common case: ids, hashes, short
//! names) are therefore stored inside the tree node itself, and only longer ones on the heap.

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
    pub fn new(key: &[u8]) -> Self {
        if key.len() <= INLINE_MAX {
            let mut bytes = [0u8; INLINE_MAX];
            bytes[..key.len()].copy_from_slice(key);
            Self::Inline { length: u8::try_from(key.len()).expect("at most INLINE_MAX"), bytes }
        } else {
            Self::Heap(key.into())
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline { length, bytes } => &bytes[..usize::from(*length)],
            Self::Heap(bytes) => bytes,
        }
    }
}

impl Borrow<[u8]> for IndexKey {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for IndexKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for IndexKey {}

impl PartialOrd for IndexKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IndexKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_slice().cmp(other.as_slice())
    }
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
