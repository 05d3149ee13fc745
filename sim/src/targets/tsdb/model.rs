//! The tsdb model: every commit made, in order, with whether a sync has covered it, and every
//! ref the head ever handed out with the labels it named.

use std::collections::BTreeMap;

use ballast::tsdb::{Labels, SeriesRef};

/// One committed sample: its series' labels, its time and its value bits.
pub(super) type ModelSample = (Labels, i64, u64);

#[derive(Debug)]
pub(super) struct ModelCommit {
    pub(super) samples: Vec<ModelSample>,
    /// A sync covered it: no crash may lose it.
    pub(super) synced: bool,
    /// Where its record begins in the WAL, `(segment, offset)`, if its write returned.
    pub(super) position: Option<(u64, u64)>,
}

#[derive(Debug, Default)]
pub(super) struct Model {
    /// Every commit, oldest first. The last may be one whose write failed: on disk or not.
    pub(super) commits: Vec<ModelCommit>,
    /// Every ref appends returned whose series the head still holds, and its labels.
    pub(super) refs: BTreeMap<SeriesRef, Labels>,
    /// Refs whose series a crash took before a commit logged them: never to be issued again.
    pub(super) retired: BTreeMap<SeriesRef, Labels>,
}

impl Model {
    /// A sync returned: every commit so far is durable.
    pub(super) fn all_synced(&mut self) {
        for commit in &mut self.commits {
            commit.synced = true;
        }
    }

    /// Every committed sample, per series, oldest first (commits are applied in order).
    pub(super) fn samples(&self) -> BTreeMap<Labels, Vec<(i64, u64)>> {
        let mut by_series: BTreeMap<Labels, Vec<(i64, u64)>> = BTreeMap::new();
        for commit in &self.commits {
            for (labels, t, bits) in &commit.samples {
                by_series.entry(labels.clone()).or_default().push((*t, *bits));
            }
        }
        by_series
    }

    /// The newest committed sample of the series `labels`.
    pub(super) fn newest(&self, labels: &Labels) -> Option<(i64, u64)> {
        self.commits
            .iter()
            .rev()
            .flat_map(|commit| commit.samples.iter().rev())
            .find_map(|(sample_labels, t, bits)| (sample_labels == labels).then_some((*t, *bits)))
    }

    /// The newest committed sample time of all.
    pub(super) fn max_time(&self) -> Option<i64> {
        self.commits.iter().flat_map(|commit| commit.samples.iter().map(|(_, t, _)| *t)).max()
    }

    /// How many commits, from the first, a recovery must keep: up to the last synced one.
    pub(super) fn synced_prefix(&self) -> usize {
        self.commits.iter().rposition(|commit| commit.synced).map_or(0, |index| index + 1)
    }
}
