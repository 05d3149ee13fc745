//! The commitlog workload: draws one operation a step (commit, flush, sync, rotate, epoch
//! change, reset, snapshot, read, clean reopen), applies it to the log, and records what it did
//! in the model.

use ballast::commitlog::Commitlog;
use ballast::Error;
use rand::Rng;

use super::model::{ModelCommit, ModelSource};
use super::{segment_of, Workload};
use crate::fail;
use crate::harness::{Context, Failure, Step};

impl Workload {
    pub(super) fn draw_transaction(context: &mut Context) -> Vec<u8> {
        let mut transaction = Vec::new();
        for _ in 0..context.rng.gen_range(1..=4) {
            let key = context.rng.gen_range(0..32u8);
            if context.rng.gen_bool(0.8) {
                transaction.push(0);
                transaction.push(key);
                transaction.extend_from_slice(&context.rng.gen::<u32>().to_le_bytes());
            } else {
                transaction.extend_from_slice(&[1, key]);
            }
        }
        transaction
    }

    /// Draws one operation and applies it.
    pub(super) fn operate(&mut self, context: &mut Context, log: &mut Commitlog) -> Result<Step, Failure> {
        let next = self.model.transactions.len() as u64;
        if log.next_offset() != next {
            fail!("the log expects offset {} but {next} transactions were committed", log.next_offset());
        }
        match context.rng.gen_range(0..100) {
            0..=44 => self.commit(context, log, next),
            45..=54 => {
                context.trace(format_args!("op flush"));
                Step::after(log.flush(), "flush")
            }
            55..=69 => {
                context.trace(format_args!("op sync"));
                self.after_durable(log.sync(), next, "sync")
            }
            70..=74 => {
                context.trace(format_args!("op rotate"));
                self.after_durable(log.rotate(), next, "rotate")
            }
            75..=79 => self.set_epoch(context, log),
            80..=84 if next > 0 => self.reset(context, log, next),
            85..=92 => self.snapshot(context, log, next),
            93..=97 => {
                let first = log.min_committed_offset().unwrap_or(next);
                let from = context.rng.gen_range(first..=next);
                context.trace(format_args!("op read from {from}"));
                self.check_read(context, log, from)?;
                Ok(Step::Continue)
            }
            _ => {
                context.trace(format_args!("op clean reopen"));
                Ok(Step::Reopen)
            }
        }
    }

    /// Commits a batch of drawn transactions at `next`; one time in twenty at a wrong offset,
    /// which must be refused.
    fn commit(&mut self, context: &mut Context, log: &mut Commitlog, next: u64) -> Result<Step, Failure> {
        let count = context.rng.gen_range(1..=self.batch_max);
        let transactions: Vec<Vec<u8>> = (0..count).map(|_| Self::draw_transaction(context)).collect();
        let mut batch: Vec<(u64, &[u8])> =
            transactions.iter().enumerate().map(|(index, bytes)| (next + index as u64, bytes.as_slice())).collect();
        if context.rng.gen_bool(0.05) {
            // Gap rejection: a wrong offset is refused and nothing is written.
            let wrong = if context.rng.gen_bool(0.5) { next + 1 } else { next.wrapping_sub(1) };
            batch[0].0 = wrong;
            context.trace(format_args!("op commit with wrong offset {wrong}"));
            return match log.commit(&batch) {
                Err(Error::OffsetMismatch { expected, found }) if expected == next && found == wrong => {
                    context.note("offset_mismatch_refused");
                    Ok(Step::Continue)
                }
                Err(Error::Poisoned) => fail!("the log was poisoned before a commit"),
                other => fail!("a commit at offset {wrong} where {next} was due returned {other:?}"),
            };
        }
        context.trace(format_args!("op commit {count} transactions at {next}"));
        let result = log.commit(&batch);
        if matches!(result, Ok(()) | Err(Error::Io { .. })) {
            // On an I/O error the commit was buffered and may have partly reached disk.
            self.model.commits.push(ModelCommit { first_offset: next, count, epoch: self.model.epoch });
            self.model.transactions.extend(transactions);
        }
        Step::after(result, "commit")
    }

    /// After a sync or a rotation: on success everything below `next` is durable.
    fn after_durable(&mut self, result: Result<(), Error>, next: u64, what: &str) -> Result<Step, Failure> {
        if result.is_ok() {
            self.model.synced = next;
        }
        Step::after(result, what)
    }

    /// Raises the epoch by a drawn amount, or now and then tries to lower it, which must be
    /// refused.
    fn set_epoch(&mut self, context: &mut Context, log: &mut Commitlog) -> Result<Step, Failure> {
        let raise = context.rng.gen_range(0..3);
        if self.model.epoch > 0 && context.rng.gen_bool(0.2) {
            let lower = self.model.epoch - 1;
            return match log.set_epoch(lower) {
                Err(Error::EpochRegression { .. }) => Ok(Step::Continue),
                other => fail!("set_epoch({lower}) below {} returned {other:?}", self.model.epoch),
            };
        }
        context.trace(format_args!("op set epoch +{raise}"));
        match log.set_epoch(self.model.epoch + raise) {
            Ok(()) => {
                self.model.epoch += raise;
                Ok(Step::Continue)
            }
            Err(error) => fail!("set_epoch failed: {error}"),
        }
    }

    /// Resets the log to a drawn offset below `next`.
    fn reset(&mut self, context: &mut Context, log: &mut Commitlog, next: u64) -> Result<Step, Failure> {
        let first = log.min_committed_offset().unwrap_or(next);
        let offset = context.rng.gen_range(first.saturating_sub(1)..next);
        context.trace(format_args!("op reset to {offset}"));
        // The new end: the first commit reaching past `offset` goes whole.
        let end = self
            .model
            .commits
            .iter()
            .find(|commit| commit.first_offset + commit.count - 1 > offset)
            .map_or(next, |commit| commit.first_offset);
        self.model.reset_floor = Some(end);
        match log.reset_to(offset) {
            Ok(new_next) => {
                if new_next != end {
                    fail!("reset_to({offset}) left next offset {new_next}, expected {end}");
                }
                // A reset removes durably; it promises nothing about what it keeps.
                self.model.truncate(end);
                self.model.reset_floor = None;
                Ok(Step::Continue)
            }
            Err(Error::Io { .. }) => Ok(Step::Poisoned),
            Err(Error::Corruption { segment, .. })
                if context.vfs.damage().iter().any(|damage| segment_of(&damage.path) == Some(segment)) =>
            {
                // The reset read the kept segment and met damage the disk caused.
                context.note("corruption_reported");
                Ok(Step::Poisoned)
            }
            Err(Error::InvalidArgument { .. }) if first > 0 => {
                // Retention removed the start and no snapshot would remain below.
                self.model.reset_floor = None;
                context.note("reset_refused");
                Ok(Step::Continue)
            }
            Err(error) => fail!("reset_to failed: {error}"),
        }
    }

    /// Takes a snapshot of the model's state: when due, or now and then regardless.
    fn snapshot(&mut self, context: &mut Context, log: &mut Commitlog, next: u64) -> Result<Step, Failure> {
        let due = log.snapshot_due();
        context.trace(format_args!("op snapshot (due {due})"));
        let result = if due || context.rng.gen_bool(0.3) {
            log.snapshot_now(&mut ModelSource(&self.model))
        } else {
            log.take_snapshot(&mut ModelSource(&self.model))
        };
        match result {
            Ok(Some(offset)) => {
                if offset + 1 != next {
                    fail!("a snapshot was taken at {offset}, the log ends at {next}");
                }
                self.model.synced = next;
                Ok(Step::Continue)
            }
            Ok(None) => Ok(Step::Continue),
            Err(Error::Io { .. }) => Ok(Step::Poisoned),
            Err(error) => fail!("snapshot failed: {error}"),
        }
    }
}
