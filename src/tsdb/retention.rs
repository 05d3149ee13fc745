//! Retention: blocks older than a duration before the newest block, or past a total size
//! counted newest first, are removed whole (renamed for deletion first, so that no crash
//! leaves a block with some of its files gone). The head is never touched.

use super::block::{self, BlockMeta};
use super::db::Tsdb;
use crate::error::Result;

impl Tsdb {
    /// Removes the blocks past `retention_duration` or `retention_bytes`, oldest first;
    /// returns their metas. The newest block always stays. The head is synced first, so that
    /// what a crash loses is always the newest changes. A failure to remove one poisons
    /// the TSDB; the next open finishes the removal.
    pub fn apply_retention(&mut self) -> Result<Vec<BlockMeta>> {
        self.head.check_health()?;
        let Some(newest_max) = self.blocks.iter().map(|block| block.meta().max_time).max() else {
            return Ok(Vec::new());
        };
        // Newest first, as the sizes are counted.
        let mut order: Vec<usize> = (0..self.blocks.len()).collect();
        order.sort_by_key(|&index| {
            std::cmp::Reverse((self.blocks[index].meta().max_time, self.blocks[index].meta().ulid))
        });
        let mut doomed = Vec::new();
        let mut bytes = 0u64;
        for (rank, &index) in order.iter().enumerate() {
            let block = &self.blocks[index];
            bytes = bytes.saturating_add(block.size_bytes());
            let too_old = self.options.retention_duration.is_some_and(|duration| {
                i128::from(newest_max) - i128::from(block.meta().max_time) > i128::from(duration)
            });
            let too_big = self.options.retention_bytes.is_some_and(|limit| bytes > limit);
            if rank > 0 && (too_old || too_big) {
                doomed.push(index);
            }
        }
        if doomed.is_empty() {
            return Ok(Vec::new());
        }
        self.head.sync()?;
        // Oldest first: blocks are sorted by min time, and do not overlap once compacted.
        doomed.sort_unstable();
        let mut removed = Vec::with_capacity(doomed.len());
        for (count, index) in doomed.into_iter().enumerate() {
            let block = self.blocks.remove(index - count);
            if let Err(error) = block::delete_block(self.vfs.as_ref(), block.path()) {
                return Err(self.head.poison(error));
            }
            removed.push(block.meta().clone());
        }
        Ok(removed)
    }
}
