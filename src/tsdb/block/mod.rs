//! Blocks in Prometheus's own format (issue 17): a directory `<ULID>/` with `meta.json`,
//! `index`, `chunks/000001...` and `tombstones`, which `promtool tsdb list` and `promtool tsdb
//! dump` read (tests/engine/tsdb_block.rs). See docs/design/prometheus-block-format.md for the
//! bytes.
//!
//! [`write_block`] writes series as one block, into `<ULID>.tmp-for-creation`, made durable,
//! read back and checked whole, and only then renamed into place, so that a block is visible
//! only whole and right; [`Block`] opens one, whoever wrote it, for queries. Behind the
//! `blocks` feature (it brings `crc32c` and `serde_json`).

mod chunks;
mod cursor;
mod encode;
mod encoded;
mod index;
mod meta;
mod read;
mod reader;
mod ulid;

use std::path::{Path, PathBuf};

use chunks::ChunkWriter;
pub use encoded::{EncodedChunk, SeriesChunks};
use index::ChunkMeta;
pub use meta::{BlockMeta, BlockParent};
pub use reader::{Block, Series};
pub use ulid::Ulid;

use crate::error::{Error, Result};
use crate::vfs::{self, Vfs};

/// An empty tombstones file: magic, version 1, and the CRC-32C of no entries.
const TOMBSTONES_EMPTY: [u8; 9] = [0x01, 0x30, 0xBA, 0x30, 0x01, 0, 0, 0, 0];

/// A tombstones file: magic, version 1, then for each deleted range the series' index
/// reference (uvarint) and the range's min and max time (varints, inclusive), then the
/// CRC-32C of those entries.
fn encode_tombstones(tombstones: &std::collections::BTreeMap<u64, Vec<(i64, i64)>>) -> Vec<u8> {
    let mut out = TOMBSTONES_EMPTY[..5].to_vec();
    for (&series, ranges) in tombstones {
        for &(min_time, max_time) in ranges {
            encode::put_uvarint(&mut out, series);
            encode::put_varint(&mut out, min_time);
            encode::put_varint(&mut out, max_time);
        }
    }
    let checksum = encode::crc32c(&out[5..]);
    encode::put_be32(&mut out, checksum);
    out
}
/// The suffix of a block directory being made; an open removes what a crash left.
pub const TEMP_SUFFIX: &str = ".tmp-for-creation";
/// The suffix a block directory is renamed to before its files are removed, so that no crash
/// leaves a block with some files gone under its own name; an open removes what is left.
pub const DELETION_SUFFIX: &str = ".tmp-for-deletion";
/// The chunk file size Prometheus uses, as the seed says: 512 MiB.
pub const CHUNK_FILE_SIZE_DEFAULT: u64 = 512 << 20;

/// What a new block is: its name, range and history. Its counts come from its series.
#[derive(Clone, Debug)]
pub struct NewBlock {
    pub ulid: Ulid,
    /// The block's half-open range: every sample written must be in it.
    pub min_time: i64,
    pub max_time: i64,
    pub level: u32,
    /// Empty for a block cut from the head: it is its own source.
    pub sources: Vec<Ulid>,
    pub parents: Vec<BlockParent>,
    /// The size chunk files are preallocated to (4 KiB to 4 GiB).
    pub chunk_file_size: u64,
}

/// Writes `series` (sorted by labels, as queries return them; series without samples are left
/// out; every sample in the block's range) as block `new.ulid` in `directory`, in chunks of
/// 120 samples: see [`write_block_chunks`]. Returns its path and meta.
pub fn write_block(vfs: &dyn Vfs, directory: &Path, new: NewBlock, series: &[Series]) -> Result<(PathBuf, BlockMeta)> {
    check_new_block(&new, series)?;
    let chunked: Vec<SeriesChunks> = series.iter().filter_map(SeriesChunks::encode).collect();
    write_block_chunks(vfs, directory, new, &chunked)
}

/// Writes `series` (sorted by labels; each chunk in the block's range, in time order, none
/// overlapping the next; series without chunks are left out) as block `new.ulid` in
/// `directory`, its chunks as they are: built in `<ULID>.tmp-for-creation`, every file
/// synced, the block read back and compared, renamed to `<ULID>`, `directory` synced.
/// Returns its path and meta. A leftover temporary directory of the same name is replaced.
pub fn write_block_chunks(
    vfs: &dyn Vfs,
    directory: &Path,
    new: NewBlock,
    series: &[SeriesChunks],
) -> Result<(PathBuf, BlockMeta)> {
    check_new_chunks(&new, series)?;
    let series: Vec<&SeriesChunks> = series.iter().filter(|series| !series.chunks.is_empty()).collect();
    let name = new.ulid.to_string();
    let temp = directory.join(format!("{name}{TEMP_SUFFIX}"));
    remove_block_directory(vfs, &temp)?;
    let chunks_directory = temp.join("chunks");
    vfs.create_dir_all(&chunks_directory).map_err(|error| Error::io(&chunks_directory, "create_dir_all", error))?;
    let mut writer = ChunkWriter::new(vfs, &chunks_directory, new.chunk_file_size);
    let sources = if new.sources.is_empty() { vec![new.ulid] } else { new.sources.clone() };
    let mut meta = BlockMeta {
        ulid: new.ulid,
        min_time: new.min_time,
        max_time: new.max_time,
        samples: 0,
        series: series.len() as u64,
        chunks: 0,
        level: new.level,
        sources,
        parents: new.parents.clone(),
    };
    let mut indexed = Vec::with_capacity(series.len());
    for selected in &series {
        let mut metas = Vec::with_capacity(selected.chunks.len());
        for chunk in &selected.chunks {
            let reference = writer.append(&chunk.bytes)?;
            metas.push(ChunkMeta { min_time: chunk.min_time, max_time: chunk.max_time, reference });
            meta.samples += chunk.samples();
        }
        meta.chunks += metas.len() as u64;
        indexed.push((selected.labels.clone(), metas));
    }
    writer.finish()?;
    let files: [(&str, &[u8]); 3] =
        [("index", &index::encode(&indexed)), ("tombstones", &TOMBSTONES_EMPTY), (meta::FILE_NAME, &meta.encode())];
    for (name, bytes) in files {
        let path = temp.join(name);
        let file = vfs.open(&path, vfs::OpenMode::CreateNew).map_err(|error| Error::io(&path, "open", error))?;
        vfs::write_synced_and_verified(file.as_ref(), &path, bytes, 0)?;
    }
    for synced in [chunks_directory.as_path(), temp.as_path(), directory] {
        vfs.sync_dir(synced).map_err(|error| Error::io(synced, "sync_dir", error))?;
    }
    verify_written(vfs, &temp, &series, &meta)?;
    let path = directory.join(&name);
    vfs.rename(&temp, &path).map_err(|error| Error::io(&temp, "rename", error))?;
    vfs.sync_dir(directory).map_err(|error| Error::io(directory, "sync_dir", error))?;
    Ok((path, meta))
}

fn check_new_block(new: &NewBlock, series: &[Series]) -> Result<()> {
    let invalid = |reason: &str| Err(Error::InvalidArgument { reason: reason.to_string() });
    if !series.windows(2).all(|pair| pair[0].labels < pair[1].labels) {
        return invalid("a block's series must be sorted by labels, each once");
    }
    let outside = |&(t, _): &(i64, f64)| t < new.min_time || t >= new.max_time;
    if series.iter().any(|series| series.samples.iter().any(outside)) {
        return invalid("a block's samples must lie in its range");
    }
    if !series.iter().all(|series| series.samples.windows(2).all(|pair| pair[0].0 < pair[1].0)) {
        return invalid("a series' samples must be in time order, one per time");
    }
    Ok(())
}

fn check_new_chunks(new: &NewBlock, series: &[SeriesChunks]) -> Result<()> {
    let invalid = |reason: &str| Err(Error::InvalidArgument { reason: reason.to_string() });
    if new.min_time >= new.max_time {
        return invalid("a block's min_time must be below its max_time");
    }
    if !(4096..=u64::from(u32::MAX)).contains(&new.chunk_file_size) {
        return invalid("a block's chunk_file_size must be between 4 KiB and 4 GiB");
    }
    if !series.windows(2).all(|pair| pair[0].labels < pair[1].labels) {
        return invalid("a block's series must be sorted by labels, each once");
    }
    let inside = |chunk: &EncodedChunk| {
        new.min_time <= chunk.min_time && chunk.min_time <= chunk.max_time && chunk.max_time < new.max_time
    };
    if !series.iter().flat_map(|series| &series.chunks).all(inside) {
        return invalid("a block's chunks must lie in its range");
    }
    if !series.iter().all(|series| series.chunks.windows(2).all(|pair| pair[0].max_time < pair[1].min_time)) {
        return invalid("a series' chunks must be in time order, none overlapping the next");
    }
    Ok(())
}

/// Reads the block at `temp` back through [`Block`] and compares it with what was written,
/// chunk bytes with chunk bytes: a write the disk lost or put elsewhere fails the block before
/// it can replace its sources.
fn verify_written(vfs: &dyn Vfs, temp: &Path, series: &[&SeriesChunks], meta: &BlockMeta) -> Result<()> {
    let mismatch =
        || Error::io(temp, "verify", std::io::Error::other("the block read back differs from what was written"));
    let written = Block::open_named(vfs, temp, &meta.ulid.to_string())?;
    if written.meta() != meta {
        return Err(mismatch());
    }
    let read = written.stored_chunks()?;
    if read.len() != series.len() || !read.iter().zip(series).all(|(a, b)| a == *b) {
        return Err(mismatch());
    }
    Ok(())
}

/// Deletes the block at `path`: renamed to `<ULID>.tmp-for-deletion` durably, then removed.
pub(crate) fn delete_block(vfs: &dyn Vfs, path: &Path) -> Result<()> {
    let name = path.file_name().and_then(|name| name.to_str()).expect("a block's name");
    let doomed = path.with_file_name(format!("{name}{DELETION_SUFFIX}"));
    let directory = path.parent().expect("inside the data directory");
    vfs.rename(path, &doomed).map_err(|error| Error::io(path, "rename", error))?;
    vfs.sync_dir(directory).map_err(|error| Error::io(directory, "sync_dir", error))?;
    remove_block_directory(vfs, &doomed)
}

/// Removes a block directory and everything in it (its files, then `chunks/`, then itself),
/// durably; nothing to do if it is not there.
pub(crate) fn remove_block_directory(vfs: &dyn Vfs, path: &Path) -> Result<()> {
    let chunks = path.join("chunks");
    for directory in [chunks.as_path(), path] {
        let names = match vfs.read_dir(directory) {
            Ok(names) => names,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(Error::io(directory, "read_dir", error)),
        };
        vfs::remove_all_durably(vfs, directory, names.iter().map(String::as_str))?;
        let parent = directory.parent().expect("inside the data directory");
        vfs.remove_dir(directory).map_err(|error| Error::io(directory, "remove_dir", error))?;
        vfs.sync_dir(parent).map_err(|error| Error::io(parent, "sync_dir", error))?;
    }
    Ok(())
}
