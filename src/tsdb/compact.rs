//! Head compaction: when the head spans more than one and a half chunk ranges, its oldest
//! range becomes a block, and the head drops it (truncation and a checkpoint).
//!
//! Every crash is safe. Before the block's rename, the head is whole and the next open
//! removes the temporary directory. After it, the next open finds the block and replays only
//! samples newer than its max time (`Head::open_above`), so a crash before the head's
//! truncation counts nothing twice; the truncation itself is atomic (truncation.rs).

use super::block::{self, BlockMeta, EncodedChunk, NewBlock, SeriesChunks};
use super::db::Tsdb;
use super::Head;
use crate::error::{CorruptionReason, Error, Result};

impl Tsdb {
    /// Everything compaction does, in order: blocks cut from the head ([`Tsdb::compact_head`]),
    /// blocks merged ([`Tsdb::compact_blocks`]), blocks past retention removed
    /// ([`Tsdb::apply_retention`]). Returns the blocks made and the blocks removed by retention.
    pub fn compact(&mut self) -> Result<(Vec<BlockMeta>, Vec<BlockMeta>)> {
        let mut made = self.compact_head()?;
        made.extend(self.compact_blocks()?);
        let removed = self.apply_retention()?;
        Ok((made, removed))
    }

    /// Adds a block made by compaction where it sorts.
    pub(super) fn insert_block(&mut self, block: block::Block) {
        let key = (block.meta().min_time, block.meta().ulid);
        let at = self.blocks.partition_point(|b| (b.meta().min_time, b.meta().ulid) < key);
        self.blocks.insert(at, block);
    }

    /// Cuts blocks from the head while it spans more than 1.5 chunk ranges: each holds the
    /// samples from the head's oldest to the end of that sample's chunk range, deletions
    /// applied. Returns the blocks made, oldest first. A failed write poisons the TSDB.
    pub fn compact_head(&mut self) -> Result<Vec<BlockMeta>> {
        self.head.check_health()?;
        let range = self.options.head.chunk_range;
        let mut made = Vec::new();
        let due = |head: &super::Head| match (head.min_sample_time(), head.max_time()) {
            (Some(oldest), Some(newest)) => i128::from(newest) - i128::from(oldest) > i128::from(range / 2 * 3),
            _ => false,
        };
        if due(&self.head) {
            // Every commit a block takes samples from must be durable first: else a crash
            // could keep a commit's older samples in the block and lose its newer ones with the
            // WAL's tail, and a commit would no longer be atomic.
            self.head.sync()?;
        }
        while let (Some(oldest), Some(newest)) = (self.head.min_sample_time(), self.head.max_time()) {
            if i128::from(newest) - i128::from(oldest) <= i128::from(range / 2 * 3) {
                break;
            }
            let end = oldest.div_euclid(range).saturating_add(1).saturating_mul(range);
            // A failed read of the head's chunk files poisons it, as in a truncation.
            let series = match head_chunks(&self.head, oldest, end) {
                Ok(series) => series,
                Err(error) => return Err(self.head.poison(error)),
            };
            if !series.is_empty() {
                made.push(self.write_block_from_head(oldest, end, &series)?);
            }
            self.head.truncate(end)?;
        }
        Ok(made)
    }

    fn write_block_from_head(&mut self, min_time: i64, max_time: i64, series: &[SeriesChunks]) -> Result<BlockMeta> {
        let new = NewBlock {
            ulid: self.new_ulid(min_time, max_time),
            min_time,
            max_time,
            level: 1,
            sources: Vec::new(),
            parents: Vec::new(),
            chunk_file_size: self.options.block_chunk_file_size,
        };
        let written = block::write_block_chunks(self.vfs.as_ref(), &self.directory, new, series)
            .and_then(|(path, _)| block::Block::open(self.vfs.as_ref(), &path));
        match written {
            Ok(block) => {
                let meta = block.meta().clone();
                let at =
                    self.blocks.partition_point(|b| (b.meta().min_time, b.meta().ulid) < (meta.min_time, meta.ulid));
                self.blocks.insert(at, block);
                Ok(meta)
            }
            Err(error) => Err(self.head.poison(error)),
        }
    }
}

/// The head's series with samples in `min_time..end`, as the chunks a block cut from it
/// holds: each chunk in that range copied as it is (the head cuts its chunks at the ends of
/// its chunk ranges, so a range's chunks all lie in it), one a deletion or the head's lowest
/// time cuts into holds what they leave. Sorted by labels.
fn head_chunks(head: &Head, min_time: i64, end: i64) -> Result<Vec<SeriesChunks>> {
    let (min_time, max_time) = (min_time.max(head.min_time), end - 1);
    let overlaps = |low: i64, high: i64| high >= min_time && low <= max_time;
    let mut selected = Vec::new();
    for series_ref in head.postings.select(&[]) {
        let series = &head.series[&series_ref];
        let mut chunks = Vec::new();
        for mapped in series.mapped.iter().filter(|chunk| overlaps(chunk.min_time, chunk.max_time)) {
            let bytes = head.chunk_files.read(mapped.at)?;
            let chunk = EncodedChunk { min_time: mapped.min_time, max_time: mapped.max_time, bytes };
            let bad = |_| Error::Corruption {
                file: head.chunk_files.path_of(mapped.at.file),
                segment: mapped.at.file,
                offset: mapped.at.offset,
                reason: CorruptionReason::BadRecord { at: 0 },
            };
            chunks.extend(chunk.filtered(min_time, max_time, &series.tombstones).map_err(bad)?);
        }
        for open in series.chunks.iter().filter(|chunk| overlaps(chunk.min_time, chunk.max_time)) {
            let bytes = open.chunk.bytes().to_vec();
            let chunk = EncodedChunk { min_time: open.min_time, max_time: open.max_time, bytes };
            let kept = chunk.filtered(min_time, max_time, &series.tombstones);
            chunks.extend(kept.expect("a chunk the head wrote decodes"));
        }
        if !chunks.is_empty() {
            selected.push(SeriesChunks { labels: series.labels.clone(), chunks });
        }
    }
    selected.sort_by(|a, b| a.labels.cmp(&b.labels));
    Ok(selected)
}
