//! The `refs` file: how far the head's ref counter may have been used. Before the head hands
//! out a ref at or past the value recorded, it records a value further on, in a new file made
//! atomically and read back (`vfs::create_file_atomically`), so that no crash, and no write the
//! disk put elsewhere, lets a ref be issued twice. (The value first lived in a WAL record: a
//! misdirected write of that record looked like the WAL's torn tail, and a ref was issued
//! again; tsdb seed 385 of `ballast-sim`.)
//!
//! Layout, 20 bytes: magic `u32` 0x5446_4552, version `u8` 1, 3 zero bytes, `until u64`, and
//! a CRC-32 of the 16 bytes before it; little-endian.

use std::io;
use std::path::Path;

use super::SeriesRef;
use crate::error::{CorruptionReason, Error, Result};
use crate::vfs::{self, OpenMode, Vfs};

pub(crate) const FILE_NAME: &str = "refs";
const MAGIC: u32 = 0x5446_4552;
const VERSION: u8 = 1;
const SIZE: usize = 20;

fn encode(until: SeriesRef) -> [u8; SIZE] {
    let mut bytes = [0u8; SIZE];
    bytes[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    bytes[4] = VERSION;
    bytes[8..16].copy_from_slice(&until.to_le_bytes());
    let checksum = crc32fast::hash(&bytes[..16]);
    bytes[16..20].copy_from_slice(&checksum.to_le_bytes());
    bytes
}

fn decode(bytes: &[u8]) -> std::result::Result<SeriesRef, CorruptionReason> {
    if bytes.len() != SIZE {
        return Err(CorruptionReason::Truncated { length: bytes.len() as u64 });
    }
    if bytes[0..4] != MAGIC.to_le_bytes() {
        return Err(CorruptionReason::BadMagic);
    }
    let expected = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
    let found = crc32fast::hash(&bytes[..16]);
    if expected != found {
        return Err(CorruptionReason::Checksum { expected, found });
    }
    if bytes[4] != VERSION {
        return Err(CorruptionReason::UnsupportedVersion { version: u16::from(bytes[4]) });
    }
    if bytes[5..8] != [0, 0, 0] {
        return Err(CorruptionReason::NonZeroReserved);
    }
    Ok(u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")))
}

/// The value recorded in `directory`, `None` if there is no refs file yet.
pub(crate) fn read(vfs: &dyn Vfs, directory: &Path) -> Result<Option<SeriesRef>> {
    let path = directory.join(FILE_NAME);
    let file = match vfs.open(&path, OpenMode::Read) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(Error::io(&path, "open", error)),
    };
    let length = file.len().map_err(|error| Error::io(&path, "len", error))?;
    let mut bytes = vec![0u8; usize::try_from(length.min(SIZE as u64 + 1)).expect("small")];
    vfs::read_exact_retrying(file.as_ref(), &path, &mut bytes, 0)?;
    decode(&bytes).map(Some).map_err(|reason| Error::Corruption { file: path, segment: 0, offset: 0, reason })
}

/// Records `until` durably: a new file, read back, renamed over the old one.
pub(crate) fn write(vfs: &dyn Vfs, directory: &Path, until: SeriesRef) -> Result<()> {
    vfs::create_file_atomically(vfs, directory, FILE_NAME, &encode(until)).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_round_trips_and_damage_is_named() {
        assert_eq!(decode(&encode(4096)), Ok(4096));
        let mut bytes = encode(4096);
        bytes[9] ^= 1;
        assert!(matches!(decode(&bytes), Err(CorruptionReason::Checksum { .. })));
        assert_eq!(decode(&bytes[..7]), Err(CorruptionReason::Truncated { length: 7 }));
        assert_eq!(decode(&[0; SIZE]), Err(CorruptionReason::BadMagic));
    }
}
