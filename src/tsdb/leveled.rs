//! Block compaction, levelled as Prometheus's: adjacent blocks are merged into blocks of the
//! next range (2 h blocks into 6 h, 6 h into 18 h, ...), and overlapping blocks into one.
//! The result records its parents and their sources; the parents are removed only after the
//! result is durable, and an open removes any block another names as its parent, so that a
//! crash leaves the parents or the result counted, never both and never neither.

use std::collections::{BTreeMap, BTreeSet};

use super::block::{self, BlockMeta, BlockParent, EncodedChunk, NewBlock, Series, SeriesChunks, Ulid};
use super::db::{merge, Tsdb};
use super::Labels;
use crate::error::Result;

impl Tsdb {
    /// Merges blocks while a plan finds some to merge: overlapping blocks first, then the
    /// blocks of one range of the next size that cover it whole or end before the newest
    /// block considered begins. The newest block is left alone, as Prometheus leaves it.
    /// Returns the blocks made.
    pub fn compact_blocks(&mut self) -> Result<Vec<BlockMeta>> {
        self.head.check_health()?;
        let mut made = Vec::new();
        while let Some(plan) = self.plan() {
            made.push(self.merge_blocks(&plan)?);
        }
        Ok(made)
    }

    /// The indices (into `self.blocks`, oldest first) of the next blocks to merge.
    fn plan(&self) -> Option<Vec<usize>> {
        let metas: Vec<&BlockMeta> = self.blocks.iter().map(|block| block.meta()).collect();
        if let Some(overlapping) = overlapping(&metas) {
            return Some(overlapping);
        }
        let (_, older) = metas.split_last()?;
        // As Prometheus's `selectDirs`: a group that does not span its range is merged only
        // if it ends before the newest of the blocks considered begins. (Measured against the
        // newest block of all, left out above, the group holding the newest considered block
        // qualified: every head compaction then merged its block into one ever larger block.)
        let high_time = older.last()?.min_time;
        for &range in &self.options.block_ranges[1..] {
            for group in split_by_range(older, range) {
                let (first, last) = (metas[group[0]], metas[group[group.len() - 1]]);
                let spans_range = last.max_time - first.min_time == range;
                if group.len() > 1 && (spans_range || last.max_time <= high_time) {
                    return Some(group);
                }
            }
        }
        None
    }

    /// Writes the blocks at `indices` as one, then removes them.
    fn merge_blocks(&mut self, indices: &[usize]) -> Result<BlockMeta> {
        let parents: Vec<&BlockMeta> = indices.iter().map(|&index| self.blocks[index].meta()).collect();
        let min_time = parents.iter().map(|meta| meta.min_time).min().expect("two or more");
        let max_time = parents.iter().map(|meta| meta.max_time).max().expect("two or more");
        let sources: BTreeSet<Ulid> = parents.iter().flat_map(|meta| meta.sources.iter().copied()).collect();
        let new = NewBlock {
            ulid: self.new_ulid(min_time, max_time),
            min_time,
            max_time,
            level: parents.iter().map(|meta| meta.level).max().expect("two or more").saturating_add(1),
            sources: sources.into_iter().collect(),
            parents: parents
                .iter()
                .map(|meta| BlockParent { ulid: meta.ulid, min_time: meta.min_time, max_time: meta.max_time })
                .collect(),
            chunk_file_size: self.options.block_chunk_file_size,
        };
        let disjoint = parents.windows(2).all(|pair| pair[0].max_time <= pair[1].min_time);
        // A failed read poisons, as a failed read of the head's chunk files does: until a
        // reopen, which a repair may make of a block found damaged.
        let written = match disjoint {
            true => self
                .merged_chunks(indices)
                .and_then(|series| block::write_block_chunks(self.vfs.as_ref(), &self.directory, new, &series)),
            false => self
                .merged_samples(indices)
                .and_then(|series| block::write_block(self.vfs.as_ref(), &self.directory, new, &series)),
        };
        let written = written.and_then(|(path, _)| block::Block::open(self.vfs.as_ref(), &path));
        let made = match written {
            Ok(made) => made,
            Err(error) => return Err(self.head.poison(error)),
        };
        let meta = made.meta().clone();
        // The result is durable: the parents go (an open would remove them now anyway).
        let mut parents = Vec::with_capacity(indices.len());
        for &index in indices.iter().rev() {
            parents.push(self.blocks.remove(index));
        }
        self.insert_block(made);
        for parent in parents {
            if let Err(error) = block::delete_block(self.vfs.as_ref(), parent.path()) {
                return Err(self.head.poison(error));
            }
        }
        Ok(meta)
    }
}

impl Tsdb {
    /// The series of blocks that do not overlap (oldest first), each series' chunks copied as
    /// they are but for those the blocks' tombstones cut into.
    fn merged_chunks(&self, indices: &[usize]) -> Result<Vec<SeriesChunks>> {
        let mut by_labels: BTreeMap<Labels, Vec<EncodedChunk>> = BTreeMap::new();
        for &index in indices {
            for series in self.blocks[index].live_chunks()? {
                by_labels.entry(series.labels).or_default().extend(series.chunks);
            }
        }
        Ok(by_labels.into_iter().map(|(labels, chunks)| SeriesChunks { labels, chunks }).collect())
    }

    /// The series of blocks that overlap, merged sample by sample (one sample per time).
    fn merged_samples(&self, indices: &[usize]) -> Result<Vec<Series>> {
        let mut read = Vec::with_capacity(indices.len());
        for &index in indices {
            read.push(self.blocks[index].all_series()?);
        }
        Ok(merge(read))
    }
}

/// The first run of blocks (by min time) that overlap one another, if two do.
fn overlapping(metas: &[&BlockMeta]) -> Option<Vec<usize>> {
    let mut group: Vec<usize> = Vec::new();
    let mut group_end = i64::MIN;
    for (index, meta) in metas.iter().enumerate() {
        if !group.is_empty() && meta.min_time < group_end {
            group.push(index);
            group_end = group_end.max(meta.max_time);
            continue;
        }
        if group.len() > 1 {
            return Some(group);
        }
        group = vec![index];
        group_end = meta.max_time;
    }
    (group.len() > 1).then_some(group)
}

/// The blocks of `metas` (oldest first, none overlapping) grouped by the aligned range of
/// width `range` that holds them whole; a block wider than its range's start allows is in no
/// group.
fn split_by_range(metas: &[&BlockMeta], range: i64) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut current: Option<(i64, Vec<usize>)> = None;
    for (index, meta) in metas.iter().enumerate() {
        let start = meta.min_time.div_euclid(range) * range;
        if meta.max_time > start.saturating_add(range) {
            continue;
        }
        match &mut current {
            Some((at, group)) if *at == start => group.push(index),
            _ => {
                if let Some((_, group)) = current.take() {
                    groups.push(group);
                }
                current = Some((start, vec![index]));
            }
        }
    }
    groups.extend(current.map(|(_, group)| group));
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(min_time: i64, max_time: i64) -> BlockMeta {
        let ulid = Ulid::new(0, u128::try_from(min_time).unwrap());
        BlockMeta {
            ulid,
            min_time,
            max_time,
            samples: 1,
            series: 1,
            chunks: 1,
            level: 1,
            sources: vec![ulid],
            parents: Vec::new(),
        }
    }

    #[test]
    fn blocks_group_by_the_aligned_range_that_holds_them() {
        let metas = [meta(0, 20), meta(20, 40), meta(40, 60), meta(60, 80), meta(50, 70)];
        let refs: Vec<&BlockMeta> = metas[..4].iter().collect();
        assert_eq!(split_by_range(&refs, 60), vec![vec![0, 1, 2], vec![3]]);
        let wide = [meta(0, 20), meta(40, 70)];
        assert_eq!(split_by_range(&wide.iter().collect::<Vec<_>>(), 60), vec![vec![0]], "40..70 crosses 60");
        let mut sorted: Vec<&BlockMeta> = metas.iter().collect();
        sorted.sort_by_key(|meta| meta.min_time);
        assert_eq!(overlapping(&sorted), Some(vec![2, 3, 4]), "50..70 overlaps 40..60 and 60..80");
        assert_eq!(overlapping(&refs), None);
    }
}
