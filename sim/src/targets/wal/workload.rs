//! The WAL workload: draws one operation a step (append, sync, flush, read, rotate, truncate,
//! clean reopen), applies it to the log, and records what it did in the model.

use ballast::wal::Wal;
use ballast::Error;
use rand::Rng;

use super::model::Expected;
use super::Workload;
use crate::fail;
use crate::harness::{Context, Failure, Step};

impl Workload {
    pub(super) fn draw_record(&mut self, context: &mut Context, record_length_max: u64) -> Vec<u8> {
        let page_size = u64::from(self.geometry.options.page_size);
        let length = if context.rng.gen_range(0..100) < self.geometry.large_record_percent {
            context.rng.gen_range(page_size..=record_length_max.max(page_size))
        } else if context.rng.gen_bool(0.7) {
            context.rng.gen_range(0..=48)
        } else {
            context.rng.gen_range(0..=page_size * 3 / 2)
        };
        let length = usize::try_from(length.min(record_length_max)).expect("fits");
        let mut data = vec![0u8; length];
        context.rng.fill(&mut data[..]);
        let sequence = self.model.next_sequence.to_le_bytes();
        self.model.next_sequence += 1;
        let prefix = length.min(8);
        data[..prefix].copy_from_slice(&sequence[..prefix]);
        data
    }

    /// Draws one operation and applies it.
    pub(super) fn operate(&mut self, context: &mut Context, wal: &mut Wal) -> Result<Step, Failure> {
        let choice = context.rng.gen_range(0..100);
        match choice {
            0..=49 => self.append(context, wal),
            50..=61 => {
                context.trace(format_args!("op sync"));
                self.after_sync(wal.sync())
            }
            // Flushed but unsynced records on disk are what crashes tear and lose.
            62..=69 => Self::flush(context, wal),
            70..=79 => {
                context.trace(format_args!("op read all"));
                self.check_read_all(context, wal)?;
                Ok(Step::Continue)
            }
            80..=85 => {
                context.trace(format_args!("op rotate"));
                self.after_sync(wal.rotate())
            }
            86..=93 => self.truncate(context, wal),
            _ => {
                context.trace(format_args!("op clean reopen"));
                Ok(Step::Reopen)
            }
        }
    }

    /// Appends a batch of drawn records, and half the time flushes them at once.
    fn append(&mut self, context: &mut Context, wal: &mut Wal) -> Result<Step, Failure> {
        let count = context.rng.gen_range(1..=self.geometry.batch_max);
        let record_length_max = wal.record_length_max();
        let records: Vec<Vec<u8>> = (0..count).map(|_| self.draw_record(context, record_length_max)).collect();
        let slices: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        context.trace(format_args!("op append {count} records"));
        match wal.append_batch(&slices) {
            Ok(positions) => {
                let mut previous = self.model.records.iter().rev().find_map(|record| record.position);
                for (position, data) in positions.into_iter().zip(records) {
                    if previous.is_some_and(|previous| position <= previous) {
                        fail!("append returned position {position}, not after {}", previous.expect("checked"));
                    }
                    previous = Some(position);
                    self.model.records.push(Expected { position: Some(position), data, synced: false });
                }
                // Half the appends go to the OS at once, so crashes find unsynced
                // records on disk to tear, lose, or keep.
                if context.rng.gen_bool(0.5) {
                    return Self::flush(context, wal);
                }
                Ok(Step::Continue)
            }
            Err(Error::Io { .. }) => {
                for data in records {
                    self.model.records.push(Expected { position: None, data, synced: false });
                }
                Ok(Step::Poisoned)
            }
            Err(error) => fail!("append failed: {error}"),
        }
    }

    fn flush(context: &mut Context, wal: &mut Wal) -> Result<Step, Failure> {
        context.trace(format_args!("op flush"));
        match wal.flush() {
            Ok(()) => Ok(Step::Continue),
            Err(Error::Io { .. }) => Ok(Step::Poisoned),
            Err(error) => fail!("flush failed: {error}"),
        }
    }

    /// Truncates before a drawn segment of the log's.
    fn truncate(&mut self, context: &mut Context, wal: &mut Wal) -> Result<Step, Failure> {
        let (first, last) = wal.segments();
        let below = context.rng.gen_range(first..=last);
        context.trace(format_args!("op truncate before {below}"));
        self.model.truncate_requested_below = self.model.truncate_requested_below.max(below);
        match wal.truncate_before(below) {
            Ok(()) => {
                if wal.segments().0 != below {
                    fail!("after truncate_before({below}) the first segment is {}", wal.segments().0);
                }
                self.model.records.retain(|record| record.position.is_none_or(|p| p.segment >= below));
                Ok(Step::Continue)
            }
            Err(Error::Io { .. }) => Ok(Step::Poisoned),
            Err(error) => fail!("truncate_before failed: {error}"),
        }
    }

    pub(super) fn after_sync(&mut self, result: Result<(), Error>) -> Result<Step, Failure> {
        match result {
            Ok(()) => {
                self.model.all_synced();
                Ok(Step::Continue)
            }
            Err(Error::Io { .. }) => Ok(Step::Poisoned),
            Err(error) => fail!("sync failed: {error}"),
        }
    }
}
