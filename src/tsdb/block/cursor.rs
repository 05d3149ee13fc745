//! Reading the fields of Prometheus's block files off their bytes, with the bounds-checked
//! [`Cursor`] of `tsdb::bytes`: big-endian integers, strings and CRC-32C-framed sections.

use std::path::Path;

use super::encode::crc32c;
use crate::error::{CorruptionReason, Error, Result};
use crate::vfs::{self, OpenMode, Vfs};

pub(crate) use crate::tsdb::bytes::Cursor;

impl<'a> Cursor<'a> {
    pub fn at(bytes: &'a [u8], at: u64) -> Result<Self, u64> {
        let at_usize = usize::try_from(at).map_err(|_| at)?;
        if at_usize > bytes.len() {
            return Err(at);
        }
        Ok(Self { bytes, at: at_usize })
    }

    pub fn be32(&mut self) -> Result<u32, u64> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    pub fn be64(&mut self) -> Result<u64, u64> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
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
