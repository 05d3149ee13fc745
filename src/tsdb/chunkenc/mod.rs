//! Chunk encodings: a chunk holds up to 65,535 samples `(t, v)` of one series, `t` in
//! milliseconds, `v` an `f64` kept bit for bit (every NaN payload included).

mod bstream;
mod xor;

pub use xor::{XorChunk, XorIterator};

/// The encoding byte a chunk is stored with, as Prometheus numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Encoding {
    Xor = 1,
}

impl Encoding {
    pub fn from_byte(byte: u8) -> Option<Self> {
        (byte == Self::Xor as u8).then_some(Self::Xor)
    }
}

/// Why a chunk's bytes do not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// The chunk is shorter than its 2-byte sample count.
    NoHeader,
    /// The stream ended before sample `index` of the count the header gives was whole.
    Truncated { index: u16 },
    /// A varint of sample `index` runs past 64 bits.
    VarintOverflow { index: u16 },
    /// Sample `index` gives a window of leading zeros and significant bits wider than 64.
    BadValueWindow { index: u16 },
}

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoHeader => write!(f, "the chunk is shorter than its sample count"),
            Self::Truncated { index } => write!(f, "the chunk ends inside sample {index}"),
            Self::VarintOverflow { index } => write!(f, "a varint of sample {index} overflows 64 bits"),
            Self::BadValueWindow { index } => write!(f, "sample {index} gives a value window wider than 64 bits"),
        }
    }
}

impl std::error::Error for ChunkError {}
