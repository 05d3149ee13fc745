//! Which space to reclaim, chosen from the segment accounting alone: pure functions, no I/O.
//!
//! Two steps reclaim space, both carried out by `Logstor::relocate`: the separator rewrites a
//! sealed mixed segment's live records into their groups' segments and frees it; compaction
//! copies the live records of a few sealed group segments into fewer segments and frees them.
//! The write path runs them itself when free segments run short ([`WriteBudget`]), so space
//! is reclaimed even if nothing else ever calls a step; `Maintenance` only runs them sooner.

use super::format::BLOCK_SIZE;
use super::{Segment, SegmentKind, SegmentState};

/// One step to carry out.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Choice {
    Nothing,
    /// Rewrite this sealed mixed segment's live records into their groups and free it.
    Separate(u64),
    /// Copy these sealed group segments' live records into fewer segments and free them.
    Compact(Vec<u64>),
}

/// Up to `batch_max` sealed group segments with the least live data, if copying their live
/// records frees at least one segment. Of the batches of the emptiest 1, 2, .. `batch_max`
/// segments, the one that frees the most segments net, and the smallest of those: a larger
/// batch that frees no more only copies more.
///
/// Copying `count` segments' `live` bytes takes ⌈(live + count blocks) / capacity⌉ segments:
/// a batch touches at most one group per segment, so the step that flushes its groups' buffers
/// leaves at most that many partial blocks. Nothing live takes nothing.
pub(super) fn compaction_batch(segments: &[Segment], capacity: u64, batch_max: usize) -> Option<Vec<u64>> {
    let mut candidates: Vec<(u64, u64)> = segments
        .iter()
        .enumerate()
        .filter(|(_, segment)| matches!(segment.state, SegmentState::Sealed(SegmentKind::Group(_))))
        .map(|(id, segment)| (segment.live_bytes, id as u64))
        .collect();
    candidates.sort_unstable();
    let mut best: Option<(u64, usize)> = None;
    let mut live = 0;
    for (count, &(live_bytes, _)) in candidates.iter().take(batch_max).enumerate() {
        live += live_bytes;
        let count = count as u64 + 1;
        let taken = if live == 0 { 0 } else { (live + count * BLOCK_SIZE).div_ceil(capacity) };
        let freed = count.saturating_sub(taken);
        if freed > best.map_or(0, |(freed, _)| freed) {
            best = Some((freed, usize::try_from(count).expect("below batch_max")));
        }
    }
    best.map(|(_, count)| candidates[..count].iter().map(|&(_, id)| id).collect())
}

/// The sealed mixed segment with the least live data (the lowest id among equals).
fn emptiest_mixed(segments: &[Segment]) -> Option<u64> {
    segments
        .iter()
        .enumerate()
        .filter(|(_, segment)| segment.state == SegmentState::Sealed(SegmentKind::Mixed))
        .min_by_key(|&(id, segment)| (segment.live_bytes, id))
        .map(|(id, _)| id as u64)
}

/// The step the write path runs next. Its first step separates a sealed mixed segment if
/// there is one: writes seal at most one mixed segment between two times they open one, so
/// mixed segments never pile up. Later steps prefer compaction, which always frees space,
/// where separating a mixed segment that is mostly live frees little.
pub(super) fn choose(segments: &[Segment], capacity: u64, batch_max: usize, first_step: bool) -> Choice {
    let mixed = emptiest_mixed(segments);
    if let (true, Some(segment)) = (first_step, mixed) {
        return Choice::Separate(segment);
    }
    if let Some(batch) = compaction_batch(segments, capacity, batch_max) {
        return Choice::Compact(batch);
    }
    mixed.map_or(Choice::Nothing, Choice::Separate)
}

/// How much reclaiming a write may do: when the write path is about to open a mixed segment
/// and fewer than `reserve` segments are free, it runs up to `steps_max` steps (fewer if one
/// finds nothing to do or the reserve is restored).
///
/// `steps_max` keeps up with the writes. Between two openings the writes fill at most one mixed
/// segment. Separating it frees it and copies at most a segment of records into the groups,
/// plus a partial block for each group it touches: 1 + groups × 4 KiB / capacity segments. A
/// compaction step frees at least one segment net (see [`compaction_batch`]). So one separator
/// step and 2 + ⌈groups × 4 KiB / capacity⌉ compaction steps reclaim more than the writes
/// took, and the surplus pays back what piled up (after a reopen, say). With the defaults,
/// 4 steps; with 64 KiB segments and 16 groups, 5.
///
/// `reserve` (groups + 2 × `compaction_batch_max`) covers the segments one step may take
/// before it frees its sources (a separator step may open a segment for every group), so that
/// a store whose reclamation keeps up never grows a data file for the copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct WriteBudget {
    pub reserve: u64,
    pub steps_max: u32,
}

impl WriteBudget {
    pub fn new(groups_count: u32, batch_max: usize, segment_size: u64) -> Self {
        let capacity = segment_size - BLOCK_SIZE;
        let padding_segments = (u64::from(groups_count) * BLOCK_SIZE).div_ceil(capacity);
        let steps_max = 3 + u32::try_from(padding_segments).expect("groups fit a u32");
        // Saturating: `compaction_batch_max` is any usize of at least 2, and a huge one must
        // mean "keep a huge reserve", not an overflow panic at the first segment opened.
        let batches = u64::try_from(batch_max).unwrap_or(u64::MAX).saturating_mul(2);
        Self { reserve: u64::from(groups_count).saturating_add(batches), steps_max }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPACITY: u64 = 15 * BLOCK_SIZE;

    fn sealed(kind: SegmentKind, live_bytes: u64) -> Segment {
        Segment { state: SegmentState::Sealed(kind), generation: 1, written: CAPACITY, live_bytes }
    }

    fn group(live_blocks: u64) -> Segment {
        sealed(SegmentKind::Group(0), live_blocks * BLOCK_SIZE)
    }

    fn mixed(live_blocks: u64) -> Segment {
        sealed(SegmentKind::Mixed, live_blocks * BLOCK_SIZE)
    }

    fn free() -> Segment {
        Segment { state: SegmentState::Free, generation: 1, written: 0, live_bytes: 0 }
    }

    fn active() -> Segment {
        Segment { state: SegmentState::Active(SegmentKind::Group(0)), generation: 1, written: 0, live_bytes: 0 }
    }

    #[track_caller]
    fn check(segments: &[Segment], first_step: bool, expected: Choice) {
        assert_eq!(choose(segments, CAPACITY, 4, first_step), expected);
    }

    #[test]
    fn choices() {
        check(&[], true, Choice::Nothing);
        check(&[free(), active()], false, Choice::Nothing);
        // Two segments of 6 blocks, with a block of overhead each, fit in one.
        check(&[group(6), free(), group(6)], false, Choice::Compact(vec![0, 2]));
        // Emptiest first; the batch that frees the most, and the smallest of those: taking the
        // full segments too would free no more.
        check(&[group(15), group(2), group(3), group(1)], false, Choice::Compact(vec![3, 1, 2]));
        check(&[group(15), group(15), group(3), group(1)], false, Choice::Compact(vec![3, 2]));
        // Four segments of 5 blocks free two (24 blocks take two segments); two or three, one.
        check(&[group(5), group(5), group(5), group(5)], false, Choice::Compact(vec![0, 1, 2, 3]));
        // Two segments that need a segment and a block between them stay.
        check(&[group(8), group(7)], false, Choice::Nothing);
        // A group segment with nothing live is freed on its own.
        check(&[group(15), sealed(SegmentKind::Group(1), 0)], false, Choice::Compact(vec![1]));
        // The first step separates the emptiest mixed segment, even when compaction could run.
        check(&[mixed(9), group(2), group(2), mixed(4)], true, Choice::Separate(3));
        check(&[mixed(9), group(2), group(2), mixed(4)], false, Choice::Compact(vec![1, 2]));
        // Without compaction work, later steps separate too.
        check(&[mixed(9), group(15)], false, Choice::Separate(0));
        // Active segments are never taken.
        check(&[active(), group(1)], false, Choice::Nothing);
    }

    #[test]
    fn budgets() {
        // Defaults: 1 MiB segments, 16 groups, batches of 4.
        assert_eq!(WriteBudget::new(16, 4, 1 << 20), WriteBudget { reserve: 24, steps_max: 4 });
        // The example's 64 KiB segments: 16 partial blocks are more than one segment's capacity.
        assert_eq!(WriteBudget::new(16, 4, 64 << 10), WriteBudget { reserve: 24, steps_max: 5 });
        assert_eq!(WriteBudget::new(1, 2, 16 << 10), WriteBudget { reserve: 5, steps_max: 4 });
        // Any compaction_batch_max of at least 2 passes the options check; a huge one once
        // overflowed here, a panic at the first segment opened (found in review).
        assert_eq!(WriteBudget::new(16, usize::MAX, 1 << 20).reserve, u64::MAX);
    }
}
