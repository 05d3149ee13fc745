//! The tsdb workload: batches of samples appended by labels and by ref (some at t = 0, some
//! out of order or duplicated on purpose, each refusal checked), committed buffered or synced
//! or rolled back; deletions by matchers and time range; truncations and checkpoints; syncs;
//! queries with random matchers compared with the model; clean reopens.

use std::collections::BTreeMap;

use ballast::tsdb::{AppendError, Durability, Head, Labels, MatchKind, Matcher, SeriesRef};
use ballast::Error;
use rand::Rng;

use super::model::{Change, ModelSample};
use super::Workload;
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
    pub(super) fn operate(&mut self, context: &mut Context, head: &mut Head) -> Result<Step, Failure> {
        match context.rng.gen_range(0..100) {
            0..=44 => self.batch(context, head),
            45..=54 => {
                context.trace(format_args!("op sync"));
                let result = head.sync();
                if result.is_ok() {
                    self.model.all_synced();
                }
                Step::after(result, "sync")
            }
            55..=59 => self.delete(context, head),
            60..=62 => self.truncate(context, head),
            63..=64 => self.checkpoint(context, head),
            65..=91 => {
                self.check_query(context, head)?;
                Ok(Step::Continue)
            }
            _ => {
                context.trace(format_args!("op clean reopen"));
                Ok(Step::Reopen)
            }
        }
    }

    /// Where the change just pushed wrote its record, if the call wrote one: so that damage
    /// before it cannot excuse its loss.
    fn note_position(&mut self, head: &Head, changes_before: usize, position_before: Option<ballast::wal::Position>) {
        let position = head.last_commit_position().filter(|&after| Some(after) != position_before);
        if let (Some(position), true) = (position, self.model.commits().len() > changes_before) {
            let change = self.model.last_mut().expect("one was pushed");
            change.position = Some((position.segment, position.offset));
        }
    }

    /// Appends a drawn batch, then commits it (buffered or synced) or rolls it back.
    fn batch(&mut self, context: &mut Context, head: &mut Head) -> Result<Step, Failure> {
        let (changes_before, position_before) = (self.model.commits().len(), head.last_commit_position());
        let step = self.append_batch(context, head)?;
        self.note_position(head, changes_before, position_before);
        Ok(step)
    }

    /// Appends a drawn batch, then commits it or rolls it back.
    fn append_batch(&mut self, context: &mut Context, head: &mut Head) -> Result<Step, Failure> {
        let mut appender = head.appender();
        let mut batch: Vec<ModelSample> = Vec::new();
        let mut newest: BTreeMap<Labels, (i64, u64)> = BTreeMap::new();
        let (max_time, floor) = (self.model.max_time(), self.model.state().floor);
        for _ in 0..context.rng.gen_range(1..=8) {
            let index = context.rng.gen_range(0..self.series_count);
            let labels = Self::labels_of(index);
            let before = newest.get(&labels).copied().or_else(|| self.model.newest(&labels));
            let (t, bits) = self.draw_sample(context, before);
            let min_valid = max_time.map(|max| max - self.options.chunk_range / 2).max(floor);
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

    /// The label names and each name's values are those of the series the head holds.
    fn check_label_values(&self, head: &Head) -> Result<(), Failure> {
        let series = &self.model.state().series;
        let mut values: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
        for labels in series.keys() {
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
    fn check_query(&self, context: &mut Context, head: &Head) -> Result<(), Failure> {
        let matchers = Self::draw_matchers(context);
        let (min_time, max_time) = self.draw_window(context);
        context.trace(format_args!("op query {} matchers {min_time}..={max_time}", matchers.len()));
        let selected = match head.select(min_time, max_time, &matchers) {
            Ok(selected) => selected,
            Err(error) => return Self::read_failed(context, error),
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
        self.check_label_values(head)
    }

    /// Deletes a drawn window of the series drawn matchers select; the number of series it
    /// hid samples of, and what it hid, are checked against the model.
    fn delete(&mut self, context: &mut Context, head: &mut Head) -> Result<Step, Failure> {
        let matchers = Self::draw_matchers(context);
        let (min_time, max_time) = self.draw_window(context);
        let durability = if context.rng.gen_bool(0.3) { Durability::Synced } else { Durability::Buffered };
        context.trace(format_args!("op delete {} matchers {min_time}..={max_time} {durability:?}", matchers.len()));
        let state = self.model.state();
        let min_time = min_time.max(state.floor.unwrap_or(i64::MIN));
        let ranges: Vec<(Labels, i64, i64)> = state
            .series
            .iter()
            .filter(|(labels, _)| Self::selects(&matchers, labels))
            .filter_map(|(labels, samples)| {
                let max_time = max_time.min(samples.last()?.0);
                let hides = samples.iter().any(|&(t, _, deleted)| !deleted && (min_time..=max_time).contains(&t));
                hides.then(|| (labels.clone(), min_time, max_time))
            })
            .collect();
        let (changes_before, position_before) = (self.model.commits().len(), head.last_commit_position());
        let result = head.delete(min_time, max_time, &matchers, durability);
        let count = ranges.len() as u64;
        match &result {
            Ok(deleted) if *deleted != count => fail!("delete hid samples of {deleted} series, the model {count}"),
            Ok(_) | Err(Error::Io { .. }) if count > 0 => self.model.push(Change::Delete(ranges)),
            _ => {}
        }
        if result.is_ok() && durability == Durability::Synced {
            self.model.all_synced();
        }
        self.note_position(head, changes_before, position_before);
        Self::after_reading(context, result.map(drop), "delete")
    }

    /// [`Step::after`] for a call that reads chunk files back and poisons the head when that
    /// fails: corruption in a file the disk damaged is such a failure too.
    fn after_reading(context: &mut Context, result: ballast::Result<()>, what: &str) -> Result<Step, Failure> {
        match result {
            Err(Error::Corruption { file, .. }) if context.vfs.damage().iter().any(|d| d.path == file) => {
                context.note("chunk_damage_detected");
                Ok(Step::Poisoned)
            }
            result => Step::after(result, what),
        }
    }

    /// Truncates at a drawn time: up to two chunk ranges before the newest sample, or
    /// anywhere from 0 to it (the workload's samples begin near 0).
    fn truncate(&mut self, context: &mut Context, head: &mut Head) -> Result<Step, Failure> {
        let Some(max_time) = self.model.max_time() else { return Ok(Step::Continue) };
        let min_time = if context.rng.gen_bool(0.5) {
            max_time - context.rng.gen_range(0..=2 * self.options.chunk_range)
        } else {
            context.rng.gen_range(0..=max_time.max(0))
        };
        context.trace(format_args!("op truncate {min_time}"));
        let result = head.truncate(min_time);
        match &result {
            Ok(()) => {
                self.model.push(Change::Truncate(min_time));
                self.model.all_synced();
                self.retire_lost_refs(head);
            }
            Err(Error::Io { .. }) => self.model.push(Change::Truncate(min_time)),
            Err(_) => {}
        }
        Self::after_reading(context, result, "truncate")
    }

    /// A checkpoint: it changes nothing a query sees, and drops series no commit logged.
    fn checkpoint(&mut self, context: &mut Context, head: &mut Head) -> Result<Step, Failure> {
        context.trace(format_args!("op checkpoint"));
        let result = head.checkpoint();
        if result.is_ok() {
            self.model.all_synced();
            self.retire_lost_refs(head);
        }
        Self::after_reading(context, result, "checkpoint")
    }
}
