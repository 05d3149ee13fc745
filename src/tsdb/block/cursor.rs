//! Reading fields off a file's bytes, every read bounds-checked: a length or offset that runs
//! past what the bytes hold is refused (`Err(at)`, the offset where reading failed) before
//! anything is allocated for it.

use std::path::Path;

use super::encode::crc32c;
use crate::error::{CorruptionReason, Error, Result};
use crate::vfs::{self, OpenMode, Vfs};

pub(crate) struct Cursor<'a> {
    pub bytes: &'a [u8],
    pub at: usize,
}

impl<'a> Cursor<'a> {
    pub fn at(bytes: &'a [u8], at: u64) -> Result<Self, u64> {
        let at_usize = usize::try_from(at).map_err(|_| at)?;
        if at_usize > bytes.len() {
            return Err(at);
        }
        Ok(Self { bytes, at: at_usize })
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

    pub fn be32(&mut self) -> Result<u32, u64> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    pub fn be64(&mut self) -> Result<u64, u64> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    pub fn uvarint(&mut self) -> Result<u64, u64> {
        let start = self.at as u64;
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.take(1).map_err(|_| start)?[0];
            value |= u64::from(byte & 0x7F).checked_shl(shift).ok_or(start)?;
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

    pub fn string(&mut self) -> Result<&'a str, u64> {
        let at = self.at as u64;
        let length = usize::try_from(self.uvarint()?).map_err(|_| at)?;
        std::str::from_utf8(self.take(length)?).map_err(|_| at)
    }

    /// A section framed as BE32 length, body, BE32 CRC-32C of the body; returns the body.
    pub fn section(&mut self) -> Result<&'a [u8], u64> {
        let at = self.at as u64;
        let length = usize::try_from(self.be32()?).map_err(|_| at)?;
        let body = self.take(length)?;
        if self.be32()? != crc32c(body) {
            return Err(at);
        }
        Ok(body)
    }
}

/// Damage at byte `offset` of `file`.
pub(crate) fn corrupt(file: &Path, offset: u64) -> Error {
    Error::Corruption {
        file: file.to_path_buf(),
        segment: 0,
        offset,
        reason: CorruptionReason::BadRecord { at: offset },
    }
}

/// The whole of a small file (an index, a tombstones file, a meta.json).
pub(crate) fn read_file(vfs: &dyn Vfs, path: &Path) -> Result<Vec<u8>> {
    let file = vfs.open(path, OpenMode::Read).map_err(|error| Error::io(path, "open", error))?;
    let length = file.len().map_err(|error| Error::io(path, "len", error))?;
    let mut bytes = vec![0u8; usize::try_from(length).map_err(|_| corrupt(path, 0))?];
    vfs::read_exact_retrying(file.as_ref(), path, &mut bytes, 0)?;
    Ok(bytes)
}
