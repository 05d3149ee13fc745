//! Reading a block's files, whoever wrote them (ballast or Prometheus): the index (every
//! series with its chunk metas), the tombstones, and chunks on demand. Every length and offset
//! is checked against the bytes there before it is used, and every CRC-32C is checked: damage
//! is [`Error::Corruption`] naming the file and offset, never a panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::cursor::{corrupt, Cursor};
use super::encode::crc32c;
use super::index::{ChunkMeta, MAGIC as INDEX_MAGIC};
use crate::error::{Error, Result};
use crate::tsdb::Labels;
use crate::vfs::{self, OpenMode, Vfs, VfsFile};

pub(crate) const CHUNKS_MAGIC: u32 = 0x85BD_40DD;
pub(crate) const TOMBSTONES_MAGIC: u32 = 0x0130_BA30;
const TOC_SIZE: usize = 52;
/// A chunk's length field and encoding byte take at most this many bytes.
const CHUNK_HEADER_MAX: u64 = 11;

/// A series as the index lists it.
#[derive(Clone, Debug)]
pub(crate) struct IndexedSeries {
    /// Its reference in the index (its offset over 16), which tombstones name.
    pub reference: u64,
    pub labels: Labels,
    pub chunks: Vec<ChunkMeta>,
}

/// Every series of an index, in the order its all-series postings list gives (sorted by
/// labels, as Prometheus writes them).
pub(crate) fn read_index(index: &[u8]) -> Result<Vec<IndexedSeries>, u64> {
    let (symbols, all) = read_index_tables(index)?;
    let mut series = Vec::with_capacity(all.len().min(index.len() / 16));
    for reference in all {
        let reference = u64::from(reference);
        let (labels, chunks) = read_series(index, reference * 16, &symbols)?;
        series.push(IndexedSeries { reference, labels, chunks });
    }
    Ok(series)
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

/// A series entry at `at`: its labels and its chunks.
fn read_series(index: &[u8], at: u64, symbols: &[&str]) -> Result<(Labels, Vec<ChunkMeta>), u64> {
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
    let mut chunks: Vec<ChunkMeta> = Vec::new();
    for _ in 0..body.uvarint()? {
        let chunk = match chunks.last() {
            None => {
                let min_time = body.varint()?;
                let max_time = min_time.checked_add_unsigned(body.uvarint()?).ok_or(at)?;
                ChunkMeta { min_time, max_time, reference: body.uvarint()? }
            }
            Some(previous) => {
                let min_time = previous.max_time.checked_add_unsigned(body.uvarint()?).ok_or(at)?;
                let max_time = min_time.checked_add_unsigned(body.uvarint()?).ok_or(at)?;
                ChunkMeta {
                    min_time,
                    max_time,
                    reference: previous.reference.checked_add_signed(body.varint()?).ok_or(at)?,
                }
            }
        };
        chunks.push(chunk);
    }
    Ok((labels, chunks))
}

/// The tombstones file: the deleted ranges `(min_time, max_time)`, inclusive, of each series
/// by its index reference.
pub(crate) fn read_tombstones(bytes: &[u8]) -> Result<BTreeMap<u64, Vec<(i64, i64)>>, u64> {
    let mut cursor = Cursor::at(bytes, 0)?;
    if cursor.be32()? != TOMBSTONES_MAGIC || cursor.take(1)?[0] != 1 {
        return Err(0);
    }
    let body_end = bytes.len().checked_sub(4).filter(|&end| end >= 5).ok_or(0u64)?;
    let mut trailer = Cursor::at(bytes, body_end as u64)?;
    if trailer.be32()? != crc32c(&bytes[5..body_end]) {
        return Err(body_end as u64);
    }
    let mut body = Cursor { bytes: &bytes[..body_end], at: 5 };
    let mut tombstones: BTreeMap<u64, Vec<(i64, i64)>> = BTreeMap::new();
    while !body.is_empty() {
        let series = body.uvarint()?;
        let (min_time, max_time) = (body.varint()?, body.varint()?);
        tombstones.entry(series).or_default().push((min_time, max_time));
    }
    Ok(tombstones)
}

/// A block's chunk files, opened, and read a chunk at a time.
#[derive(Debug)]
pub(crate) struct ChunkReader {
    files: Vec<(PathBuf, Box<dyn VfsFile>, u64)>,
}

impl ChunkReader {
    /// Opens `chunks/000001...` of the block at `block`, which must be numbered from 1 without
    /// a gap, each beginning with the chunks magic and format 1.
    pub fn open(vfs: &dyn Vfs, block: &Path) -> Result<Self> {
        let directory = block.join("chunks");
        let names = vfs.read_dir(&directory).map_err(|error| Error::io(&directory, "read_dir", error))?;
        let mut files = Vec::with_capacity(names.len());
        for (index, name) in names.iter().enumerate() {
            let path = directory.join(name);
            if *name != format!("{:06}", index + 1) {
                return Err(Error::BadFileName { file: path });
            }
            let file = vfs.open(&path, OpenMode::Read).map_err(|error| Error::io(&path, "open", error))?;
            let length = file.len().map_err(|error| Error::io(&path, "len", error))?;
            let mut header = [0u8; 8];
            if length < 8 {
                return Err(corrupt(&path, 0));
            }
            vfs::read_exact_retrying(file.as_ref(), &path, &mut header, 0)?;
            if header[0..4] != CHUNKS_MAGIC.to_be_bytes() || header[4] != 1 {
                return Err(corrupt(&path, 0));
            }
            files.push((path, file, length));
        }
        Ok(Self { files })
    }

    /// The bytes of the chunk files.
    pub fn size_bytes(&self) -> u64 {
        self.files.iter().map(|(_, _, length)| length).sum()
    }

    /// The XOR chunk bytes at `reference` (file index in the high 32 bits, offset in the low),
    /// its checksum verified. A reference to a file or offset that is not there is damage in
    /// `index`, the file that holds the reference. Returns the bytes, and the chunk file and
    /// offset they came from (for an error about them).
    pub fn read(&self, index: &Path, reference: u64) -> Result<(Vec<u8>, &Path, u64)> {
        let (file, offset) = (reference >> 32, reference & 0xFFFF_FFFF);
        let entry = usize::try_from(file).ok().and_then(|file| self.files.get(file));
        let Some((path, file, length)) = entry.filter(|(_, _, length)| offset >= 8 && offset < *length) else {
            return Err(corrupt(index, 0));
        };
        let mut header = vec![0u8; usize::try_from(CHUNK_HEADER_MAX.min(length - offset)).expect("small")];
        vfs::read_exact_retrying(file.as_ref(), path, &mut header, offset)?;
        let mut cursor = Cursor::at(&header, 0).expect("at 0");
        let data_length = cursor.uvarint().map_err(|_| corrupt(path, offset))?;
        let data_at = offset + cursor.at as u64 + 1;
        let end = data_at.checked_add(data_length).and_then(|end| end.checked_add(4));
        if end.is_none_or(|end| end > *length) {
            return Err(corrupt(path, offset));
        }
        let mut entry = vec![0u8; usize::try_from(data_length + 5).map_err(|_| corrupt(path, offset))?];
        vfs::read_exact_retrying(file.as_ref(), path, &mut entry, data_at - 1)?;
        let (body, checksum) = entry.split_at(entry.len() - 4);
        if body[0] != 1 || crc32c(body) != u32::from_be_bytes(checksum.try_into().expect("4 bytes")) {
            return Err(corrupt(path, offset));
        }
        entry.truncate(entry.len() - 4);
        entry.remove(0);
        Ok((entry, path, offset))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any index or tombstones bytes are read or refused without a panic, and no length
        /// field allocates more than the bytes hold.
        #[test]
        fn any_index_bytes_are_refused_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = read_index(&bytes);
            let _ = read_tombstones(&bytes);
        }
    }

    #[test]
    fn an_empty_tombstones_file_holds_none() {
        assert!(read_tombstones(&super::super::TOMBSTONES_EMPTY).unwrap().is_empty());
        assert_eq!(read_tombstones(&[0x01, 0x30, 0xBA, 0x30, 0x01, 0, 0, 0, 1]), Err(5));
    }
}
