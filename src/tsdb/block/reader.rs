//! An open block: its meta, its index in memory (series, chunk metas, postings), its
//! tombstones, and its chunk files opened and read a chunk at a time by queries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::cursor::{corrupt, read_file};
use super::encoded::{EncodedChunk, SeriesChunks};
use super::index::ChunkMeta;
use super::meta::{self, BlockMeta};
use super::read::{read_index, read_tombstones, ChunkReader, IndexedSeries};
use crate::error::Result;
use crate::tsdb::chunkenc::XorIterator;
use crate::tsdb::{Labels, Matcher, MemPostings};
use crate::vfs::Vfs;

/// A series a query over blocks selected, and its samples in the queried window.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Labels,
    /// `(t, value)`, oldest first, no two at one time.
    pub samples: Vec<(i64, f64)>,
}

/// A block, opened: it reads its `meta.json`, `index` and `tombstones` whole, and opens its
/// chunk files; queries read chunks from them.
#[derive(Debug)]
pub struct Block {
    path: PathBuf,
    meta: BlockMeta,
    series: Vec<IndexedSeries>,
    /// Over positions in `series`.
    postings: MemPostings,
    tombstones: BTreeMap<u64, Vec<(i64, i64)>>,
    chunks: ChunkReader,
    size_bytes: u64,
}

impl Block {
    /// Opens the block at `path`, checking every checksum of its index and tombstones, and
    /// that its `meta.json` names the directory it is in.
    pub fn open(vfs: &dyn Vfs, path: &Path) -> Result<Self> {
        let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default();
        Self::open_named(vfs, path, name)
    }

    /// [`Block::open`] of a block whose `meta.json` must name `ulid`, wherever it is (a block
    /// being made is read back from its temporary directory).
    pub(crate) fn open_named(vfs: &dyn Vfs, path: &Path, ulid: &str) -> Result<Self> {
        let meta_path = path.join(meta::FILE_NAME);
        let meta_bytes = read_file(vfs, &meta_path)?;
        let meta = BlockMeta::decode(&meta_path, &meta_bytes)?;
        if meta.ulid.to_string() != ulid {
            // Damage to the ULID in meta.json, or a block renamed by hand: either way the
            // meta does not describe this directory.
            return Err(corrupt(&meta_path, 0));
        }
        let index_path = path.join("index");
        let index = read_file(vfs, &index_path)?;
        let series = read_index(&index).map_err(|at| corrupt(&index_path, at))?;
        // A chunk outside the block's range: the index or the meta is wrong (Prometheus's
        // compactor refuses such a block too).
        for entry in &series {
            let outside = |chunk: &ChunkMeta| chunk.min_time < meta.min_time || chunk.max_time > meta.max_time;
            if entry.chunks.iter().any(outside) {
                return Err(corrupt(&index_path, entry.reference * 16));
            }
        }
        let tombstones_path = path.join("tombstones");
        let (tombstones, tombstones_bytes) = match vfs.open(&tombstones_path, crate::vfs::OpenMode::Read) {
            // Prometheus reads a block without a tombstones file as one without tombstones.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => (BTreeMap::new(), 0),
            _ => {
                let bytes = read_file(vfs, &tombstones_path)?;
                (read_tombstones(&bytes).map_err(|at| corrupt(&tombstones_path, at))?, bytes.len())
            }
        };
        let chunks = ChunkReader::open(vfs, path)?;
        let size_bytes = (meta_bytes.len() + index.len() + tombstones_bytes) as u64 + chunks.size_bytes();
        let mut postings = MemPostings::default();
        for (position, series) in series.iter().enumerate() {
            postings.add(position as u64, &series.labels);
        }
        Ok(Self { path: path.to_path_buf(), meta, series, postings, tombstones, chunks, size_bytes })
    }

    /// What its `meta.json` says.
    pub fn meta(&self) -> &BlockMeta {
        &self.meta
    }

    /// The bytes of its files.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// Its directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The series `matchers` select that have samples in `min_time..=max_time` (tombstones
    /// applied), sorted by labels, each with those samples.
    pub fn select(&self, min_time: i64, max_time: i64, matchers: &[Matcher]) -> Result<Vec<Series>> {
        let mut selected = Vec::new();
        if !self.meta.overlaps(min_time, max_time) {
            return Ok(selected);
        }
        for position in self.postings.select(matchers) {
            let series = &self.series[usize::try_from(position).expect("a position in memory")];
            let samples = self.samples(series, min_time, max_time)?;
            if !samples.is_empty() {
                selected.push(Series { labels: series.labels.clone(), samples });
            }
        }
        // The index lists series sorted by labels; a block another tool wrote might not.
        selected.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(selected)
    }

    /// Deletes the samples in `min_time..=max_time` of the series `matchers` select: the
    /// block's tombstones file is replaced atomically with one holding the new ranges too
    /// (merged with those there). Returns how many series it hid samples of.
    pub(crate) fn delete(&mut self, vfs: &dyn Vfs, min_time: i64, max_time: i64, matchers: &[Matcher]) -> Result<u64> {
        let (min_time, max_time) = (min_time.max(self.meta.min_time), max_time.min(self.meta.max_time - 1));
        let mut tombstones = self.tombstones.clone();
        let mut deleted = 0;
        for position in self.postings.select(matchers) {
            let series = &self.series[usize::try_from(position).expect("a position in memory")];
            if series.chunks.iter().any(|chunk| chunk.max_time >= min_time && chunk.min_time <= max_time) {
                crate::tsdb::deletion::add_interval(
                    tombstones.entry(series.reference).or_default(),
                    min_time,
                    max_time,
                );
                deleted += 1;
            }
        }
        if deleted > 0 {
            let bytes = super::encode_tombstones(&tombstones);
            crate::vfs::create_file_atomically(vfs, &self.path, "tombstones", &bytes)?;
            self.tombstones = tombstones;
        }
        Ok(deleted)
    }

    /// Reads every chunk the index lists and checks its checksum and encoding: damage in the
    /// chunk files, which an open does not read (queries meet it), is found here.
    pub fn verify_chunks(&self) -> Result<()> {
        for series in &self.series {
            self.samples(series, i64::MIN, i64::MAX)?;
        }
        Ok(())
    }

    /// Every series of the block with all its samples (tombstones applied), sorted by labels.
    pub fn all_series(&self) -> Result<Vec<Series>> {
        self.select(i64::MIN, i64::MAX, &[])
    }

    /// Every series with its chunks as they are stored, tombstones not applied, in index
    /// order: for checking a block just written against what was written.
    pub(crate) fn stored_chunks(&self) -> Result<Vec<SeriesChunks>> {
        self.series.iter().map(|series| self.chunks_of(series, None)).collect()
    }

    /// Every series with its chunks, tombstones applied (a chunk they cut into holds what
    /// they leave; one they hide whole is left out), sorted by labels, series left without
    /// chunks left out: what a compaction copies.
    pub(crate) fn live_chunks(&self) -> Result<Vec<SeriesChunks>> {
        let mut live = Vec::with_capacity(self.series.len());
        for series in &self.series {
            let deleted = self.tombstones.get(&series.reference).map_or(&[][..], Vec::as_slice);
            let chunks = self.chunks_of(series, Some(deleted))?;
            if !chunks.chunks.is_empty() {
                live.push(chunks);
            }
        }
        live.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(live)
    }

    /// `series`' chunks, read and checked; with `deleted`, filtered by those ranges.
    fn chunks_of(&self, series: &IndexedSeries, deleted: Option<&[(i64, i64)]>) -> Result<SeriesChunks> {
        let index_path = self.path.join("index");
        let mut chunks = Vec::with_capacity(series.chunks.len());
        for &ChunkMeta { min_time, max_time, reference } in &series.chunks {
            let (bytes, file, offset) = self.chunks.read(&index_path, reference)?;
            let chunk = EncodedChunk { min_time, max_time, bytes };
            let Some(deleted) = deleted else {
                chunks.push(chunk);
                continue;
            };
            let (file, offset) = (file.to_path_buf(), offset);
            match chunk.filtered(i64::MIN, i64::MAX, deleted) {
                Ok(Some(kept)) => chunks.push(kept),
                Ok(None) => {}
                Err(_) => return Err(corrupt(&file, offset)),
            }
        }
        Ok(SeriesChunks { labels: series.labels.clone(), chunks })
    }

    fn samples(&self, series: &IndexedSeries, min_time: i64, max_time: i64) -> Result<Vec<(i64, f64)>> {
        let deleted = self.tombstones.get(&series.reference).map_or(&[][..], Vec::as_slice);
        let in_window = |t: i64| t >= min_time && t <= max_time && !deleted.iter().any(|&(a, b)| t >= a && t <= b);
        let index_path = self.path.join("index");
        let mut samples: Vec<(i64, f64)> = Vec::new();
        let wanted = series.chunks.iter().filter(|chunk| chunk.max_time >= min_time && chunk.min_time <= max_time);
        for &ChunkMeta { reference, .. } in wanted {
            let (bytes, file, offset) = self.chunks.read(&index_path, reference)?;
            // Bytes whose checksum verifies but that do not decode as an XOR chunk.
            let bad = || corrupt(file, offset);
            for sample in XorIterator::new(&bytes).map_err(|_| bad())? {
                let (t, value) = sample.map_err(|_| bad())?;
                if in_window(t) {
                    samples.push((t, value));
                }
            }
        }
        // Chunks of one series in a block do not overlap when Prometheus or ballast wrote
        // them; sorting keeps a query's promise for any other writer.
        samples.sort_by_key(|&(t, _)| t);
        samples.dedup_by_key(|&mut (t, _)| t);
        Ok(samples)
    }
}
