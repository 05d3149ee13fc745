//! Reading a block back, whoever wrote it (ballast or Prometheus): every series the index
//! lists and every sample of its chunks. Every length and offset is checked against the bytes
//! there before it is used, and every CRC-32C is checked: damage is [`Error::Corruption`]
//! naming the file and offset, never a panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::encode::crc32c;
use crate::error::{CorruptionReason, Error, Result};
use crate::tsdb::chunkenc::XorIterator;
use crate::tsdb::{Labels, SeriesSamples};
use crate::vfs::{self, OpenMode, Vfs};

const INDEX_MAGIC: u32 = 0xBAAA_D700;
const CHUNKS_MAGIC: u32 = 0x85BD_40DD;
const TOC_SIZE: usize = 52;

/// Reads fields off bytes, each read bounds-checked; `Err(at)` is the offset where it failed.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn at(bytes: &'a [u8], at: u64) -> Result<Self, u64> {
        let at_usize = usize::try_from(at).map_err(|_| at)?;
        if at_usize > bytes.len() {
            return Err(at);
        }
        Ok(Self { bytes, at: at_usize })
    }

    fn take(&mut self, length: usize) -> Result<&'a [u8], u64> {
        let end = self.at.checked_add(length).filter(|&end| end <= self.bytes.len()).ok_or(self.at as u64)?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn be32(&mut self) -> Result<u32, u64> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn be64(&mut self) -> Result<u64, u64> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn uvarint(&mut self) -> Result<u64, u64> {
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

    fn varint(&mut self) -> Result<i64, u64> {
        let value = self.uvarint()?;
        Ok((value >> 1).cast_signed() ^ -((value & 1).cast_signed()))
    }

    fn string(&mut self) -> Result<&'a str, u64> {
        let at = self.at as u64;
        let length = usize::try_from(self.uvarint()?).map_err(|_| at)?;
        std::str::from_utf8(self.take(length)?).map_err(|_| at)
    }

    /// A section framed as BE32 length, body, BE32 CRC-32C of the body; returns the body.
    fn section(&mut self) -> Result<&'a [u8], u64> {
        let at = self.at as u64;
        let length = usize::try_from(self.be32()?).map_err(|_| at)?;
        let body = self.take(length)?;
        if self.be32()? != crc32c(body) {
            return Err(at);
        }
        Ok(body)
    }
}

fn corrupt(file: &Path, offset: u64) -> Error {
    Error::Corruption {
        file: file.to_path_buf(),
        segment: 0,
        offset,
        reason: CorruptionReason::BadRecord { at: offset },
    }
}

fn read_file(vfs: &dyn Vfs, path: &Path) -> Result<Vec<u8>> {
    let file = vfs.open(path, OpenMode::Read).map_err(|error| Error::io(path, "open", error))?;
    let length = file.len().map_err(|error| Error::io(path, "len", error))?;
    let mut bytes = vec![0u8; usize::try_from(length).map_err(|_| corrupt(path, 0))?];
    vfs::read_exact_retrying(file.as_ref(), path, &mut bytes, 0)?;
    Ok(bytes)
}

/// Every series of the block at `path` with all its samples, sorted by labels.
pub fn read_block(vfs: &dyn Vfs, path: &Path) -> Result<Vec<SeriesSamples>> {
    let index_path = path.join("index");
    let index = read_file(vfs, &index_path)?;
    let bad = |at| corrupt(&index_path, at);
    let (symbols, all) = read_index_tables(&index).map_err(bad)?;
    let mut chunk_files: BTreeMap<u64, (PathBuf, Vec<u8>)> = BTreeMap::new();
    let mut selected = Vec::with_capacity(all.len());
    for series_ref in all {
        let (labels, chunks) = read_series(&index, u64::from(series_ref) * 16, &symbols).map_err(bad)?;
        let mut samples = Vec::new();
        for chunk_ref in chunks {
            read_chunk(vfs, path, &mut chunk_files, chunk_ref, &mut samples)?;
        }
        selected.push(SeriesSamples { series: u64::from(series_ref), labels, samples });
    }
    selected.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(selected)
}

/// The symbols and the all-series postings list, found through the TOC.
fn read_index_tables(index: &[u8]) -> Result<(Vec<&str>, Vec<u32>), u64> {
    let mut header = Cursor::at(index, 0)?;
    if header.be32()? != INDEX_MAGIC || !matches!(header.take(1)?[0], 1..=3) {
        return Err(0);
    }
    let toc_at = index.len().checked_sub(TOC_SIZE).ok_or(0u64)?;
    let mut toc = Cursor::at(index, toc_at as u64)?;
    let offsets: Vec<u64> = (0..6).map(|_| toc.be64()).collect::<Result<_, _>>()?;
    if toc.be32()? != crc32c(&index[toc_at..toc_at + 48]) {
        return Err(toc_at as u64);
    }
    let mut symbols_body = Cursor { bytes: Cursor::at(index, offsets[0])?.section()?, at: 0 };
    let count = symbols_body.be32()?;
    let symbols: Vec<&str> = (0..count).map(|_| symbols_body.string()).collect::<Result<_, _>>()?;
    let mut table = Cursor { bytes: Cursor::at(index, offsets[5])?.section()?, at: 0 };
    let mut all_at = None;
    for _ in 0..table.be32()? {
        let strings = table.uvarint()?;
        let (name, value) = (table.string()?, table.string()?);
        let offset = table.uvarint()?;
        if strings == 2 && name.is_empty() && value.is_empty() {
            all_at = Some(offset);
            break;
        }
    }
    let all_at = all_at.ok_or(offsets[5])?;
    let mut postings = Cursor { bytes: Cursor::at(index, all_at)?.section()?, at: 0 };
    let all = (0..postings.be32()?).map(|_| postings.be32()).collect::<Result<_, _>>()?;
    Ok((symbols, all))
}

/// A series entry at `at`: its labels and its chunks' references.
fn read_series(index: &[u8], at: u64, symbols: &[&str]) -> Result<(Labels, Vec<u64>), u64> {
    let mut entry = Cursor::at(index, at)?;
    let length = usize::try_from(entry.uvarint()?).map_err(|_| at)?;
    let body = entry.take(length)?;
    if entry.be32()? != crc32c(body) {
        return Err(at);
    }
    let mut body = Cursor { bytes: body, at: 0 };
    let symbol = |reference: u64| usize::try_from(reference).ok().and_then(|r| symbols.get(r).copied()).ok_or(at);
    let mut pairs = Vec::new();
    for _ in 0..body.uvarint()? {
        pairs.push((symbol(body.uvarint()?)?, symbol(body.uvarint()?)?));
    }
    let labels = Labels::new(pairs).map_err(|_| at)?;
    let mut chunks = Vec::new();
    let mut reference = 0u64;
    for index in 0..body.uvarint()? {
        // Times are not needed to read the samples: the chunks hold them.
        if index == 0 {
            body.varint()?;
            body.uvarint()?;
            reference = body.uvarint()?;
        } else {
            body.uvarint()?;
            body.uvarint()?;
            reference = reference.checked_add_signed(body.varint()?).ok_or(at)?;
        }
        chunks.push(reference);
    }
    Ok((labels, chunks))
}

/// Appends the samples of the chunk at `reference` (file index in the high 32 bits, offset in
/// the low) to `samples`, loading the chunk file the first time.
fn read_chunk(
    vfs: &dyn Vfs,
    block: &Path,
    files: &mut BTreeMap<u64, (PathBuf, Vec<u8>)>,
    reference: u64,
    samples: &mut Vec<(i64, f64)>,
) -> Result<()> {
    let (file, offset) = (reference >> 32, reference & 0xFFFF_FFFF);
    if let std::collections::btree_map::Entry::Vacant(vacant) = files.entry(file) {
        let path = block.join("chunks").join(format!("{:06}", file + 1));
        let bytes = read_file(vfs, &path)?;
        if bytes.len() < 8 || bytes[0..4] != CHUNKS_MAGIC.to_be_bytes() || bytes[4] != 1 {
            return Err(corrupt(&path, 0));
        }
        vacant.insert((path, bytes));
    }
    let (path, bytes) = &files[&file];
    let mut cursor = Cursor::at(bytes, offset).map_err(|at| corrupt(path, at))?;
    let parsed = (|| {
        let length = usize::try_from(cursor.uvarint()?).map_err(|_| offset)?;
        let start = cursor.at;
        let encoding = cursor.take(1)?[0];
        let data = cursor.take(length)?;
        if cursor.be32()? != crc32c(&bytes[start..start + 1 + length]) || encoding != 1 {
            return Err(offset);
        }
        Ok(data)
    })();
    let data = parsed.map_err(|at| corrupt(path, at))?;
    for sample in XorIterator::new(data).map_err(|_| corrupt(path, offset))? {
        samples.push(sample.map_err(|_| corrupt(path, offset))?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any index bytes are read or refused without a panic, and no length field
        /// allocates more than the bytes hold.
        #[test]
        fn any_index_bytes_are_refused_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            if let Ok((symbols, all)) = read_index_tables(&bytes) {
                for series_ref in all {
                    let _ = read_series(&bytes, u64::from(series_ref) * 16, &symbols);
                }
            }
        }
    }
}
