//! The tsdb workload: batches of samples appended by labels and by ref (some at t = 0, some
//! out of order or duplicated on purpose, each refusal checked), committed buffered or synced
//! or rolled back; deletions by matchers and time range; head compaction, block compaction,
//! retention and checkpoints; syncs; queries with random matchers compared with the model;
//! clean reopens.

use std::collections::BTreeMap;

use ballast::tsdb::{AppendError, Durability, Labels, MatchKind, Matcher, SeriesRef, Tsdb};
use ballast::Error;
use rand::Rng;

use super::model::{Change, ModelSample};
use super::{in_block, Workload};
use crate::fail;
use crate::harness::{Context, Failure, Step};

/// What an append must do, by the model.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    Accepted,
    /// An identical resend: accepted, adds nothing.
    Resend,
    OutOfOrder,
    Duplicate,
    OutOfBounds,
}

impl Workload {
    /// The labels of series number `index`: a name, a job and an instance.
    pub(super) fn labels_of(index: u64) -> Labels {
        let (name, job, instance) = (format!("m{}", index % 5), format!("j{}", index % 3), format!("i{index}"));
        Labels::new([("__name__", name), ("job", job), ("instance", instance)]).expect("valid labels")
    }

    /// Draws one operation and applies it.
    pub(super) fn operate(&mut self, context: &mut Context, tsdb: &mut Tsdb) -> Result<Step, Failure> {
        match context.rng.gen_range(0..100) {
            0..=44 => self.batch(context, tsdb),
            45..=53 => {
                context.trace(format_args!("op sync"));
                let result = tsdb.sync();
                if result.is_ok() {
                    self.model.all_synced();
                }
                Step::after(result, "sync")
            }
            54..=58 => self.delete(context, tsdb),
            59..=61 => self.compact_head(context, tsdb),
            62 => self.compact_blocks(context, tsdb),
            63 => self.apply_retention(context, tsdb),
            64 => self.checkpoint(context, tsdb),
            65..=91 => self.check_query(context, tsdb),
            _ => {
                context.trace(format_args!("op clean reopen"));
                Ok(Step::Reopen)
            }
        }
    }

    /// Where the change just pushed wrote its record, if the call wrote one: so that damage
    /// before it cannot excuse its loss.
    fn note_position(&mut self, tsdb: &Tsdb, changes_before: usize, position_before: Option<ballast::wal::Position>) {
        let position = tsdb.head().last_commit_position().filter(|&after| Some(after) != position_before);
        if let (Some(position), true) = (position, self.model.commits().len() > changes_before) {
            let change = self.model.last_mut().expect("one was pushed");
            change.position = Some((position.segment, position.offset));
        }
    }

    /// Appends a drawn batch, then commits it (buffered or synced) or rolls it back.
    fn batch(&mut self, context: &mut Context, tsdb: &mut Tsdb) -> Result<Step, Failure> {
        let (changes_before, position_before) = (self.model.commits().len(), tsdb.head().last_commit_position());
        let step = self.append_batch(context, tsdb)?;
        self.note_position(tsdb, changes_before, position_before);
        Ok(step)
    }

    /// Appends a drawn batch, then commits it or rolls it back.
    fn append_batch(&mut self, context: &mut Context, tsdb: &mut Tsdb) -> Result<Step, Failure> {
        let (max_time, floor) = (self.model.max_time(), self.model.floor);
        let chunk_range = self.options.head.chunk_range;
        let mut appender = tsdb.appender();
        let mut batch: Vec<ModelSample> = Vec::new();
        let mut newest: BTreeMap<Labels, (i64, u64)> = BTreeMap::new();
        for _ in 0..context.rng.gen_range(1..=8) {
            let index = context.rng.gen_range(0..self.series_count);
            let labels = Self::labels_of(index);
            let before = newest.get(&labels).copied().or_else(|| self.model.newest(&labels));
            let (t, bits) = self.draw_sample(context, before);
            let min_valid = max_time.map(|max| max - chunk_range / 2).max(floor);
            let expected = Self::expect(before, min_valid, t, bits);
            let known_ref = self.model.refs.iter().find(|(_, known)| **known == labels).map(|(&r, _)| r);
            let result = match known_ref.filter(|_| context.rng.gen_bool(0.5)) {
                Some(series_ref) => appender.append_ref(series_ref, t, f64::from_bits(bits)).map(|()| series_ref),
                None => appender.append(&labels, t, f64::from_bits(bits)),
            };
            match (result, &expected) {
                (Ok(series_ref), Expected::Accepted | Expected::Resend) => self.note_ref(series_ref, &labels)?,
                (Err(AppendError::OutOfOrder { .. }), Expected::OutOfOrder)
                | (Err(AppendError::Duplicate { .. }), Expected::Duplicate)
                | (Err(AppendError::OutOfBounds { .. }), Expected::OutOfBounds) => continue,
                (Err(AppendError::Storage(Error::Io { .. })), _) => {
                    // Reserving refs met the failing disk: the head is poisoned.
                    appender.rollback();
                    return Ok(Step::Poisoned);
                }
                (result, expected) => fail!("append at {t} expected {expected:?}, got {result:?}"),
            }
            if expected == Expected::Accepted {
                newest.insert(labels.clone(), (t, bits));
                batch.push((labels, t, bits));
            }
        }
        self.finish_batch(context, appender, batch)
    }

    /// Commits (buffered or synced) or rolls back what `batch` appended.
    fn finish_batch(
        &mut self,
        context: &mut Context,
        appender: ballast::tsdb::Appender<'_>,
        batch: Vec<ModelSample>,
    ) -> Result<Step, Failure> {
        let durability = match context.rng.gen_range(0..10) {
            0..=1 => {
                context.trace(format_args!("op rollback {} samples", batch.len()));
                appender.rollback();
                return Ok(Step::Continue);
            }
            2..=4 => Durability::Synced,
            _ => Durability::Buffered,
        };
        context.trace(format_args!("op commit {} samples {durability:?}", batch.len()));
        let result = appender.commit(durability);
        let written = !batch.is_empty();
        match &result {
            Ok(()) => {
                if written {
                    self.model.push(Change::Commit(batch));
                }
                if durability == Durability::Synced {
                    self.model.all_synced();
                }
            }
            // Written or not: the recovery decides, and the model allows both.
            Err(Error::Io { .. }) if written => self.model.push(Change::Commit(batch)),
            Err(Error::RecordTooLarge { .. }) => {
                context.note("commit_too_large");
                return Ok(Step::Continue);
            }
            Err(_) => {}
        }
        Step::after(result, "commit")
    }

    /// A sample for a series whose newest sample is `before`: usually later by a scrape
    /// interval, now and then at t = 0 for a new series, older or at the same time on purpose.
    fn draw_sample(&self, context: &mut Context, before: Option<(i64, u64)>) -> (i64, u64) {
        let bits = match context.rng.gen_range(0..4) {
            0 => context.rng.gen::<u64>(),
            1 => f64::NAN.to_bits(),
            _ => f64::from(context.rng.gen_range(0u32..1000)).to_bits(),
        };
        let Some((newest, newest_bits)) = before else {
            let t = if context.rng.gen_bool(0.3) { 0 } else { context.rng.gen_range(0..100_000) };
            return (t, bits);
        };
        match context.rng.gen_range(0..20) {
            0 => (newest - context.rng.gen_range(1..5_000), bits),
            1 => (newest, bits ^ 1),
            2 => (newest, newest_bits),
            _ => (newest + context.rng.gen_range(1..30_000), bits),
        }
    }

    /// What the head must do with sample `(t, bits)` of a series whose newest is `before`,
    /// when it accepts nothing below `min_valid`.
    fn expect(before: Option<(i64, u64)>, min_valid: Option<i64>, t: i64, bits: u64) -> Expected {
        if min_valid.is_some_and(|min_valid| t < min_valid) {
            return Expected::OutOfBounds;
        }
        match before {
            Some((newest, _)) if t < newest => Expected::OutOfOrder,
            Some((newest, newest_bits)) if t == newest => {
                if bits == newest_bits {
                    Expected::Resend
                } else {
                    Expected::Duplicate
                }
            }
            _ => Expected::Accepted,
        }
    }

    /// The label names and each name's values are those of the series the head holds (those
    /// with samples at or above the floor: below it, blocks hold them).
    fn check_label_values(&self, tsdb: &Tsdb) -> Result<(), Failure> {
        let head = tsdb.head();
        let in_head = self.model.state().newest_times(self.model.floor);
        let mut values: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
        for labels in in_head.keys() {
            for label in labels.iter() {
                values.entry(label.name.clone()).or_default().insert(label.value.clone());
            }
        }
        let names: Vec<String> = values.keys().cloned().collect();
        if head.label_names() != names {
            fail!("label names {:?}, the model's committed series have {names:?}", head.label_names());
        }
        for (name, expected) in &values {
            let found = head.label_values(name);
            if found.iter().ne(expected.iter()) {
                fail!("label {name} takes values {found:?}, the model's committed series {expected:?}");
            }
        }
        Ok(())
    }

    /// A ref names one series, forever.
    fn note_ref(&mut self, series_ref: SeriesRef, labels: &Labels) -> Result<(), Failure> {
        if let Some(retired) = self.model.retired.get(&series_ref) {
            fail!("ref {series_ref}, issued for {retired} before a crash, was issued again for {labels}");
        }
        match self.model.refs.insert(series_ref, labels.clone()) {
            Some(previous) if previous != *labels => {
                fail!("ref {series_ref} named {previous} and now names {labels}: a ref was issued twice")
            }
            _ => Ok(()),
        }
    }

    /// Up to two matchers over the workload's labels (and one no series has).
    fn draw_matchers(context: &mut Context) -> Vec<Matcher> {
        let kinds = [MatchKind::Equal, MatchKind::NotEqual, MatchKind::Regex, MatchKind::NotRegex];
        let mut matchers = Vec::new();
        for _ in 0..context.rng.gen_range(0..=2) {
            let name = ["__name__", "job", "instance", "zone"][context.rng.gen_range(0..4)];
            let value = ["m1", "j0", "i3", "", "m.*", "j[01]", ".*", "i1.*"][context.rng.gen_range(0..8)];
            let kind = kinds[context.rng.gen_range(0..4)];
            matchers.push(Matcher::new(kind, name, value).expect("the drawn patterns compile"));
        }
        matchers
    }

    fn selects(matchers: &[Matcher], labels: &Labels) -> bool {
        matchers.iter().all(|m| m.matches(labels.get(m.name()).unwrap_or("")))
    }

    /// A time window over the samples so far, and a little beyond.
    fn draw_window(&self, context: &mut Context) -> (i64, i64) {
        let newest = self.model.max_time().unwrap_or(0).max(0);
        let min_time = context.rng.gen_range(-10_000..=newest);
        (min_time, min_time + context.rng.gen_range(0..=newest.max(1) - min_time.min(newest) + 30_000))
    }

    /// A query with drawn matchers and window, compared with the model's samples.
    fn check_query(&mut self, context: &mut Context, tsdb: &Tsdb) -> Result<Step, Failure> {
        let matchers = Self::draw_matchers(context);
        let (min_time, max_time) = self.draw_window(context);
        context.trace(format_args!("op query {} matchers {min_time}..={max_time}", matchers.len()));
        let selected = match tsdb.select(min_time, max_time, &matchers) {
            Ok(selected) => selected,
            Err(error) => return self.read_failed(context, error),
        };
        let found: Vec<(Labels, Vec<(i64, u64)>)> = selected
            .into_iter()
            .map(|series| (series.labels, series.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect()))
            .collect();
        let expected: Vec<(Labels, Vec<(i64, u64)>)> = self
            .model
            .samples()
            .into_iter()
            .filter(|(labels, _)| Self::selects(&matchers, labels))
            .map(|(labels, samples)| {
                (labels, samples.into_iter().filter(|(t, _)| (min_time..=max_time).contains(t)).collect::<Vec<_>>())
            })
            .filter(|(_, samples)| !samples.is_empty())
            .collect();
        if found != expected {
            fail!(
                "query of {} matchers over {min_time}..={max_time} returned {} series, the model holds {}",
                matchers.len(),
                found.len(),
                expected.len()
            );
        }
        self.check_label_values(tsdb)?;
        Ok(Step::Continue)
    }

    /// Deletes a drawn window of the series drawn matchers select: one change per block the
    /// window reaches (oldest first), then one for the head, each what that part hides, in the
    /// order the TSDB applies them.
    fn delete(&mut self, context: &mut Context, tsdb: &mut Tsdb) -> Result<Step, Failure> {
        let matchers = Self::draw_matchers(context);
        let (min_time, max_time) = self.draw_window(context);
        let durability = if context.rng.gen_bool(0.3) { Durability::Synced } else { Durability::Buffered };
        context.trace(format_args!("op delete {} matchers {min_time}..={max_time} {durability:?}", matchers.len()));
        let floor = self.model.floor.unwrap_or(i64::MIN);
        let blocks: Vec<(i64, i64)> = tsdb
            .blocks()
            .filter(|meta| meta.overlaps(min_time, max_time))
            .map(|meta| (min_time.max(meta.min_time), max_time.min(meta.max_time - 1)))
            .collect();
        let mut pieces: Vec<Vec<(Labels, i64, i64)>> =
            blocks.iter().map(|&(low, high)| self.hidden(&matchers, low, high, false)).collect();
        pieces.push(self.hidden(&matchers, min_time.max(floor), max_time, true));
        let hides = pieces.iter().any(|piece| !piece.is_empty());
        // Pushed before the call: a crash part way keeps a prefix of them.
        let position_before = tsdb.head().last_commit_position();
        let head_piece = pieces.pop().expect("the head's piece");
        for piece in pieces.into_iter().filter(|piece| !piece.is_empty()) {
            self.model.push(Change::Delete(piece));
        }
        let block_changes = self.model.commits().len();
        let head_hides = !head_piece.is_empty();
        if head_hides {
            self.model.push(Change::Delete(head_piece));
        }
        let result = tsdb.delete(min_time, max_time, &matchers, durability);
        match &result {
            Ok(0) if hides => fail!("delete hid nothing, the model says it hides samples"),
            Ok(_) => {
                // The head was synced before the blocks; their pieces are durable.
                if !blocks.is_empty() {
                    self.model.synced_up_to(block_changes);
                }
                if durability == Durability::Synced {
                    self.model.all_synced();
                }
            }
            _ => {}
        }
        if head_hides {
            self.note_position(tsdb, block_changes, position_before);
        }
        self.after_reading(context, result.map(drop), "delete")
    }

    /// What deleting `low..=high` of the series `matchers` select hides: per series, the
    /// range, if it hides a sample not yet hidden. In the head (`head`), a series' range ends
    /// at its newest sample.
    fn hidden(&self, matchers: &[Matcher], low: i64, high: i64, head: bool) -> Vec<(Labels, i64, i64)> {
        let state = self.model.state();
        let selected = state.series.iter().filter(|(labels, _)| Self::selects(matchers, labels));
        selected
            .filter_map(|(labels, samples)| {
                let high = if head { high.min(samples.last()?.0) } else { high };
                let hides = samples.iter().any(|&(t, _, deleted)| !deleted && (low..=high).contains(&t));
                hides.then(|| (labels.clone(), low, high))
            })
            .collect()
    }

    /// [`Step::after`] for a call that reads chunks back (the head's chunk files poison the
    /// head when that fails); corruption in a file the disk damaged is such a failure too.
    /// Damage in a block's chunk, which only a repairing open reads, makes the next open a
    /// repairing one.
    fn after_reading(
        &mut self,
        context: &mut Context,
        result: ballast::Result<()>,
        what: &str,
    ) -> Result<Step, Failure> {
        match result {
            Err(Error::Corruption { file, .. }) if context.vfs.damage().iter().any(|d| d.path == file) => {
                context.note("chunk_damage_detected");
                // The failed read poisoned the TSDB; a block's damage needs a repairing open.
                self.repair_next |= in_block(&file);
                Ok(Step::Poisoned)
            }
            result => Step::after(result, what),
        }
    }

    /// Cuts blocks from the head: nothing a query sees changes.
    fn compact_head(&mut self, context: &mut Context, tsdb: &mut Tsdb) -> Result<Step, Failure> {
        context.trace(format_args!("op compact head"));
        let floor = tsdb.head().min_time();
        let result = tsdb.compact_head();
        if let Ok(made) = &result {
            context.trace(format_args!("compact head made {} blocks", made.len()));
            // A truncation (it raises the floor) dropped the series left empty, and those no
            // commit logged; without one, a rolled-back series keeps its ref.
            if tsdb.head().min_time() != floor {
                self.retire_lost_refs(tsdb);
            }
        }
        self.after_reading(context, result.map(drop), "compact head")
    }

    /// Merges blocks: nothing a query sees changes.
    fn compact_blocks(&mut self, context: &mut Context, tsdb: &mut Tsdb) -> Result<Step, Failure> {
        context.trace(format_args!("op compact blocks"));
        let result = tsdb.compact_blocks();
        if let Ok(made) = &result {
            context.trace(format_args!("compact blocks made {} blocks", made.len()));
        }
        self.after_reading(context, result.map(drop), "compact blocks")
    }

    /// Removes the blocks past retention: one change per block, oldest first, drawn from the
    /// blocks the TSDB shows before the call.
    fn apply_retention(&mut self, context: &mut Context, tsdb: &mut Tsdb) -> Result<Step, Failure> {
        let Some(duration) = self.options.retention_duration else { return self.compact_head(context, tsdb) };
        context.trace(format_args!("op retention"));
        let metas: Vec<_> = tsdb.blocks().cloned().collect();
        let newest = metas.iter().map(|meta| (meta.max_time, meta.ulid)).max();
        let doomed: Vec<(i64, i64)> = metas
            .iter()
            .filter(|meta| newest.is_some_and(|(max, ulid)| meta.ulid != ulid && max - meta.max_time > duration))
            .map(|meta| (meta.min_time, meta.max_time))
            .collect();
        for &(min, max) in &doomed {
            self.model.push(Change::DropBlock(min, max));
        }
        let result = tsdb.apply_retention();
        if let Ok(removed) = &result {
            let removed: Vec<(i64, i64)> = removed.iter().map(|meta| (meta.min_time, meta.max_time)).collect();
            if removed != doomed {
                fail!("retention removed {removed:?}, the model expected {doomed:?}");
            }
            // With a block to remove, the head was synced first, and each removal is durable.
            if !removed.is_empty() {
                self.model.all_synced();
            }
        }
        Step::after(result.map(drop), "retention")
    }

    /// A checkpoint: it changes nothing a query sees, and drops series no commit logged.
    fn checkpoint(&mut self, context: &mut Context, tsdb: &mut Tsdb) -> Result<Step, Failure> {
        context.trace(format_args!("op checkpoint"));
        let result = tsdb.checkpoint();
        if result.is_ok() {
            self.model.all_synced();
            self.retire_lost_refs(tsdb);
        }
        self.after_reading(context, result, "checkpoint")
    }

    /// What the TSDB shows after a step: its floor and its blocks.
    pub(super) fn observe(&mut self, tsdb: &Tsdb) {
        self.model.floor = tsdb.head().min_time();
        for meta in tsdb.blocks() {
            self.model.known_blocks.insert(meta.ulid.to_string(), (meta.min_time, meta.max_time));
        }
    }
}
