//! The tsdb model: every change made (commits, deletions, blocks dropped), in order, with
//! whether a sync has covered it, and every ref the head ever handed out with the labels it
//! named; and the state those changes make, kept up to date as changes come. Compaction moves
//! samples from the head into blocks and between blocks, which changes nothing a query sees:
//! it makes no change here.

use std::collections::BTreeMap;

use ballast::tsdb::{Labels, SeriesRef};

/// One committed sample: its series' labels, its time and its value bits.
pub(super) type ModelSample = (Labels, i64, u64);

/// What the head was asked to make durable, in the order it was.
#[derive(Debug)]
pub(super) enum Change {
    Commit(Vec<ModelSample>),
    /// Per series, the range a deletion hid: in one block, or in the head (ending at the
    /// series' newest sample).
    Delete(Vec<(Labels, i64, i64)>),
    /// A block went, `min_time..max_time`: retention removed it, or a repair set it aside.
    /// Its samples went, and the series left without any. (Samples of a block set aside that
    /// the head still held, its compaction cut short by a crash, come back as a commit.)
    DropBlock(i64, i64),
    /// A repair set aside the block `min_time..max_time`; of its visible samples only those
    /// the head still held come back (`restored`: its compaction was cut short by a crash).
    /// Its deleted samples stay as they were: the head holds them if it holds the range.
    SetAside(i64, i64, Vec<ModelSample>),
}

#[derive(Debug)]
pub(super) struct ModelCommit {
    pub(super) change: Change,
    /// A sync covered it: no crash may lose it.
    pub(super) synced: bool,
    /// Where its record begins in the WAL, `(segment, offset)`, if its write returned.
    pub(super) position: Option<(u64, u64)>,
}

/// A stored sample: time, value bits, and whether a deletion hides it.
type Stored = (i64, u64, bool);

/// What a sequence of changes leaves in the head.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct State {
    /// Every series the TSDB holds, with its samples, oldest first, the deleted among them.
    pub(super) series: BTreeMap<Labels, Vec<Stored>>,
    /// How many samples a query of everything returns.
    pub(super) visible_count: usize,
    /// The newest sample time the head has taken, truncated or deleted since or not.
    pub(super) max_time: Option<i64>,
}

impl State {
    pub(super) fn apply(&mut self, change: &Change) {
        match change {
            Change::Commit(samples) => {
                for (labels, t, bits) in samples {
                    let stored = self.series.entry(labels.clone()).or_default();
                    // In time order: a commit appends, but samples a repair found again in the
                    // head for a block it set aside go where they were.
                    let at = stored.partition_point(|&(before, _, _)| before < *t);
                    stored.insert(at, (*t, *bits, false));
                    self.visible_count += 1;
                    self.max_time = Some(self.max_time.map_or(*t, |max| max.max(*t)));
                }
            }
            Change::Delete(ranges) => {
                for (labels, min, max) in ranges {
                    for stored in self.series.get_mut(labels).into_iter().flatten() {
                        if !stored.2 && (*min..=*max).contains(&stored.0) {
                            stored.2 = true;
                            self.visible_count -= 1;
                        }
                    }
                }
            }
            Change::SetAside(min, max, restored) => {
                for (labels, samples) in &mut self.series {
                    samples.retain(|&(t, bits, deleted)| {
                        !(*min..*max).contains(&t) || deleted || restored.contains(&(labels.clone(), t, bits))
                    });
                }
                self.series.retain(|_, samples| !samples.is_empty());
                self.visible_count = self.series.values().flatten().filter(|stored| !stored.2).count();
            }
            Change::DropBlock(min, max) => {
                for samples in self.series.values_mut() {
                    samples.retain(|&(t, _, _)| !(*min..*max).contains(&t));
                }
                self.series.retain(|_, samples| !samples.is_empty());
                self.visible_count = self.series.values().flatten().filter(|stored| !stored.2).count();
            }
        }
    }

    /// The samples a query of everything returns, per series that has any.
    pub(super) fn visible(&self) -> BTreeMap<Labels, Vec<(i64, u64)>> {
        self.series
            .iter()
            .map(|(labels, samples)| {
                (labels.clone(), samples.iter().filter(|s| !s.2).map(|&(t, bits, _)| (t, bits)).collect::<Vec<_>>())
            })
            .filter(|(_, samples)| !samples.is_empty())
            .collect()
    }

    /// The newest sample, deleted or not, of every series the head holds: those with samples
    /// at or above `floor`, the time below which blocks hold everything.
    pub(super) fn newest_times(&self, floor: Option<i64>) -> BTreeMap<Labels, i64> {
        let floor = floor.unwrap_or(i64::MIN);
        let newest = self.series.iter().filter_map(|(labels, samples)| Some((labels.clone(), samples.last()?.0)));
        newest.filter(|&(_, newest)| newest >= floor).collect()
    }
}

#[derive(Debug, Default)]
pub(super) struct Model {
    /// Every change, oldest first. The last may be one whose write failed: on disk or not.
    commits: Vec<ModelCommit>,
    /// What the changes make.
    state: State,
    /// Every ref appends returned whose series the head still holds, and its labels.
    pub(super) refs: BTreeMap<SeriesRef, Labels>,
    /// Refs whose series went (a crash took them before a commit logged them, or a
    /// compaction moved all their samples to blocks): never to be issued again.
    pub(super) retired: BTreeMap<SeriesRef, Labels>,
    /// The time below which blocks hold everything and the head accepts nothing, as the TSDB
    /// last showed it (compaction raises it; a repair that sets a block aside may lower it).
    pub(super) floor: Option<i64>,
    /// Every block the TSDB showed, by name, with its range: the blocks rot may strike.
    pub(super) known_blocks: BTreeMap<String, (i64, i64)>,
    /// The model took the blocks' samples as an open found them (damage let them run ahead
    /// of the WAL): it no longer knows the deleted samples they hold.
    pub(super) blocks_adopted: bool,
    /// The blocks set aside whose loss the model has taken.
    pub(super) set_aside: std::collections::BTreeSet<String>,
}

impl Model {
    pub(super) fn commits(&self) -> &[ModelCommit] {
        &self.commits
    }

    pub(super) fn state(&self) -> &State {
        &self.state
    }

    pub(super) fn push(&mut self, change: Change) {
        self.state.apply(&change);
        self.commits.push(ModelCommit { change, synced: false, position: None });
    }

    pub(super) fn last_mut(&mut self) -> Option<&mut ModelCommit> {
        self.commits.last_mut()
    }

    /// Keeps the first `kept` changes: what a recovery found.
    pub(super) fn truncate(&mut self, kept: usize) {
        if kept < self.commits.len() {
            self.commits.truncate(kept);
            self.state = State::default();
            for commit in &self.commits {
                self.state.apply(&commit.change);
            }
        }
    }

    /// Changes up to `count` from the first are durable.
    pub(super) fn synced_up_to(&mut self, count: usize) {
        for commit in self.commits.iter_mut().take(count) {
            commit.synced = true;
        }
    }

    /// A sync returned: every change so far is durable.
    pub(super) fn all_synced(&mut self) {
        for commit in &mut self.commits {
            commit.synced = true;
        }
    }

    /// The samples a query of everything returns, per series.
    pub(super) fn samples(&self) -> BTreeMap<Labels, Vec<(i64, u64)>> {
        self.state.visible()
    }

    /// The newest sample, deleted or not, of the series `labels`, if the head holds it.
    pub(super) fn newest(&self, labels: &Labels) -> Option<(i64, u64)> {
        self.state.series.get(labels)?.last().map(|&(t, bits, _)| (t, bits))
    }

    /// The newest sample time the head has taken, truncated or deleted since or not.
    pub(super) fn max_time(&self) -> Option<i64> {
        self.state.max_time
    }

    /// How many changes, from the first, a recovery must keep: up to the last synced one.
    pub(super) fn synced_prefix(&self) -> usize {
        self.commits.iter().rposition(|commit| commit.synced).map_or(0, |index| index + 1)
    }
}
