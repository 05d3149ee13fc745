//! Blocks in Prometheus's own format (issue 17, begun): a directory `<ULID>/` with
//! `meta.json`, `index`, `chunks/000001` and `tombstones`, which `promtool tsdb list` and
//! `promtool tsdb dump` read (tests/engine/tsdb_block.rs). See
//! docs/design/prometheus-block-format.md for the bytes.
//!
//! What is here: [`write_block`], which writes the samples of some series as one block, into
//! `<ULID>.tmp-for-creation` made durable and then renamed, so that a block is visible only
//! whole; and [`read_block`], which reads every series and sample of a block back, whoever
//! wrote it. Not yet: head compaction into blocks, queries over blocks, block compaction,
//! retention, the simulator's checks. Behind the `blocks` feature (it brings `crc32c`).

mod encode;
mod index;
mod read;
mod ulid;

use std::path::{Path, PathBuf};

use encode::{crc32c, put_be32, put_uvarint};
use index::ChunkMeta;
pub use read::read_block;
pub use ulid::Ulid;

use super::chunkenc::XorChunk;
use super::SeriesSamples;
use crate::error::{Error, Result};
use crate::vfs::{self, Vfs};

const CHUNKS_MAGIC: u32 = 0x85BD_40DD;
const CHUNK_ENCODING_XOR: u8 = 1;
/// Samples per chunk, as Prometheus cuts them.
const SAMPLES_PER_CHUNK: usize = 120;
/// An empty tombstones file: magic, version 1, and the CRC-32C of no entries.
const TOMBSTONES_EMPTY: [u8; 9] = [0x01, 0x30, 0xBA, 0x30, 0x01, 0, 0, 0, 0];

/// What a block holds, as its `meta.json` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockStats {
    pub min_time: i64,
    /// One past the newest sample (the block's range is half-open, as Prometheus's).
    pub max_time: i64,
    pub samples: u64,
    pub series: u64,
    pub chunks: u64,
}

/// Writes `series` (sorted by labels, as `Head::select` returns them; series without samples
/// are left out) as the block `ulid` in `directory`: built in `<ULID>.tmp-for-creation`,
/// every file synced, renamed to `<ULID>`, `directory` synced. Returns its path and stats.
/// Refuses an empty block (Prometheus's readers divide by its time span).
pub fn write_block(
    vfs: &dyn Vfs,
    directory: &Path,
    ulid: Ulid,
    series: &[SeriesSamples],
) -> Result<(PathBuf, BlockStats)> {
    let series: Vec<&SeriesSamples> = series.iter().filter(|series| !series.samples.is_empty()).collect();
    let min_time = series.iter().map(|series| series.samples[0].0).min();
    let max_time = series.iter().map(|series| series.samples[series.samples.len() - 1].0).max();
    let (Some(min_time), Some(max_time)) = (min_time, max_time) else {
        return Err(Error::InvalidArgument { reason: "a block must hold at least one sample".to_string() });
    };
    let mut chunks_file = Vec::new();
    put_be32(&mut chunks_file, CHUNKS_MAGIC);
    chunks_file.extend_from_slice(&[1, 0, 0, 0]);
    let mut indexed = Vec::with_capacity(series.len());
    let mut stats = BlockStats { min_time, max_time: max_time + 1, samples: 0, series: 0, chunks: 0 };
    for selected in &series {
        let mut metas = Vec::new();
        for samples in selected.samples.chunks(SAMPLES_PER_CHUNK) {
            let mut chunk = XorChunk::new();
            for &(t, v) in samples {
                chunk.append(t, v);
            }
            let reference = chunks_file.len() as u64;
            put_uvarint(&mut chunks_file, chunk.bytes().len() as u64);
            let start = chunks_file.len();
            chunks_file.push(CHUNK_ENCODING_XOR);
            chunks_file.extend_from_slice(chunk.bytes());
            let checksum = crc32c(&chunks_file[start..]);
            put_be32(&mut chunks_file, checksum);
            metas.push(ChunkMeta { min_time: samples[0].0, max_time: samples[samples.len() - 1].0, reference });
            stats.samples += samples.len() as u64;
        }
        stats.chunks += metas.len() as u64;
        indexed.push((selected.labels.clone(), metas));
    }
    stats.series = indexed.len() as u64;
    if u32::try_from(chunks_file.len()).is_err() {
        return Err(Error::InvalidArgument { reason: "a block's chunks must fit one 4 GiB chunk file".to_string() });
    }
    let index = index::encode(&indexed);
    let name = ulid.to_string();
    let temp = directory.join(format!("{name}.tmp-for-creation"));
    let meta = meta_json(&name, &stats);
    let files: [(&str, &[u8]); 4] = [
        ("chunks/000001", &chunks_file),
        ("index", &index),
        ("tombstones", &TOMBSTONES_EMPTY),
        ("meta.json", meta.as_bytes()),
    ];
    write_directory(vfs, &temp, &files)?;
    let path = directory.join(&name);
    vfs.rename(&temp, &path).map_err(|error| Error::io(&temp, "rename", error))?;
    vfs.sync_dir(directory).map_err(|error| Error::io(directory, "sync_dir", error))?;
    Ok((path, stats))
}

/// Creates `temp` (removing what a crash left there) holding `files`, each synced, and the
/// directories synced.
fn write_directory(vfs: &dyn Vfs, temp: &Path, files: &[(&str, &[u8])]) -> Result<()> {
    let chunks = temp.join("chunks");
    vfs.create_dir_all(&chunks).map_err(|error| Error::io(&chunks, "create_dir_all", error))?;
    for (name, bytes) in files {
        let path = temp.join(name);
        vfs::remove_if_present(vfs, &path)?;
        let file = vfs.open(&path, vfs::OpenMode::CreateNew).map_err(|error| Error::io(&path, "open", error))?;
        vfs::write_synced_and_verified(file.as_ref(), &path, bytes, 0)?;
    }
    for directory in [chunks.as_path(), temp, temp.parent().expect("inside the data directory")] {
        vfs.sync_dir(directory).map_err(|error| Error::io(directory, "sync_dir", error))?;
    }
    Ok(())
}

/// `meta.json` for a block written from the head: compaction level 1, its own source.
fn meta_json(ulid: &str, stats: &BlockStats) -> String {
    format!(
        "{{\n\t\"ulid\": \"{ulid}\",\n\t\"minTime\": {},\n\t\"maxTime\": {},\n\t\"stats\": {{\n\t\t\"numSamples\": {},\n\t\t\"numSeries\": {},\n\t\t\"numChunks\": {}\n\t}},\n\t\"compaction\": {{\n\t\t\"level\": 1,\n\t\t\"sources\": [\n\t\t\t\"{ulid}\"\n\t\t]\n\t}},\n\t\"version\": 1\n}}\n",
        stats.min_time, stats.max_time, stats.samples, stats.series, stats.chunks
    )
}
