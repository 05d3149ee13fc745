//! The logstor workload: draws one operation a step (put, delete, get, sync, compaction step,
//! separator step, mixed seal, group drop, scan, clean reopen), applies it to the store, and
//! records what it did in the model.

use std::collections::BTreeMap;

use ballast::logstor::Logstor;
use ballast::Error;
use rand::Rng;

use super::model::History;
use super::Workload;
use crate::fail;
use crate::harness::{Context, Failure, Step};

impl Workload {
    pub(super) fn draw_key(&self, context: &mut Context) -> Vec<u8> {
        format!("k{:04}", context.rng.gen_range(0..self.keys_count)).into_bytes()
    }

    pub(super) fn draw_value(&mut self, context: &mut Context) -> Vec<u8> {
        let length = context.rng.gen_range(8..=self.value_length_max);
        let mut value = vec![0u8; length];
        context.rng.fill(&mut value[..]);
        value[..8].copy_from_slice(&self.model.next_value.to_le_bytes());
        self.model.next_value += 1;
        value
    }

    /// A put or delete may reclaim space first, and reading a segment for that may meet damage
    /// the disk did: the write then wrote nothing, and the store is poisoned.
    fn on_write_error(
        context: &mut Context,
        store: &Logstor,
        result: Result<(), Error>,
        what: &str,
    ) -> Result<Step, Failure> {
        match result {
            Err(Error::Corruption { file, offset, reason, .. }) => {
                if !context.vfs.damage().iter().any(|damage| damage.path == file) {
                    fail!(
                        "{what} reported corruption in {} at {offset} ({reason}) with no damage there",
                        file.display()
                    );
                }
                if !store.is_poisoned() {
                    fail!("{what} reported corruption its reclaiming met but did not poison the store");
                }
                context.note("write_reclaim_met_damage");
                Ok(Step::Poisoned)
            }
            result => Step::after(result, what),
        }
    }

    /// Draws one operation and applies it.
    pub(super) fn operate(&mut self, context: &mut Context, store: &mut Logstor) -> Result<Step, Failure> {
        match context.rng.gen_range(0..100) {
            0..=39 => self.put(context, store),
            40..=51 => self.delete(context, store),
            52..=61 => self.get(context, store),
            62..=71 => {
                context.trace(format_args!("op sync"));
                let result = store.sync();
                if result.is_ok() {
                    self.model.sync_all();
                }
                Step::after(result, "sync")
            }
            72..=79 => Self::compact_step(context, store),
            80..=88 => Self::separator_step(context, store),
            89..=92 => {
                context.trace(format_args!("op seal mixed"));
                Step::after(store.seal_mixed(), "seal_mixed")
            }
            93..=94 => self.drop_group(context, store),
            95..=97 => self.scan(context, store),
            _ => {
                context.trace(format_args!("op clean reopen"));
                Ok(Step::Reopen)
            }
        }
    }

    /// Puts a drawn value under a drawn key, now and then in a drawn group.
    fn put(&mut self, context: &mut Context, store: &mut Logstor) -> Result<Step, Failure> {
        let key = self.draw_key(context);
        let value = self.draw_value(context);
        let chosen = context.rng.gen_bool(0.15).then(|| context.rng.gen_range(0..self.options.groups_count));
        let group = chosen.unwrap_or_else(|| store.group_of(&key));
        context.trace(format_args!("op put {} in group {group}", String::from_utf8_lossy(&key)));
        let result = store.put_in_group(group, &key, &value);
        // A put that failed on corruption wrote nothing: its version must never appear.
        if matches!(result, Ok(()) | Err(Error::Io { .. })) {
            self.model.history(&key, group).versions.push((Some(value), group));
        }
        Self::on_write_error(context, store, result, "put")
    }

    fn delete(&mut self, context: &mut Context, store: &mut Logstor) -> Result<Step, Failure> {
        let key = self.draw_key(context);
        context.trace(format_args!("op delete {}", String::from_utf8_lossy(&key)));
        let present = self.model.keys.get(&key).is_some_and(|history| history.latest().is_some());
        let result = store.delete(&key);
        if present && matches!(result, Ok(()) | Err(Error::Io { .. })) {
            self.model.keys.get_mut(&key).expect("present").push(None);
        }
        Self::on_write_error(context, store, result, "delete")
    }

    /// Gets a drawn key: the last value written to it, or an error the disk explains.
    fn get(&self, context: &mut Context, store: &mut Logstor) -> Result<Step, Failure> {
        let key = self.draw_key(context);
        let expected = self.model.keys.get(&key).and_then(History::latest).cloned();
        match store.get(&key) {
            Ok(found) if found == expected => Ok(Step::Continue),
            Ok(found) => fail!(
                "get({}) returned {:?} bytes, the last write was {:?} bytes",
                String::from_utf8_lossy(&key),
                found.map(|value| value.len()),
                expected.map(|value| value.len())
            ),
            Err(Error::Io { .. }) => Ok(Step::Continue),
            Err(Error::Corruption { .. }) if !context.vfs.damage().is_empty() => {
                context.note("misdirected_write_detected");
                Ok(Step::Continue)
            }
            Err(error) => fail!("get failed: {error}"),
        }
    }

    fn compact_step(context: &mut Context, store: &mut Logstor) -> Result<Step, Failure> {
        context.trace(format_args!("op compact step"));
        match store.compact_step() {
            Ok(report) => {
                if report.segments_freed > 0 {
                    context.note("compaction_freed");
                }
                if report.tombstones_dropped > 0 {
                    context.note("tombstone_dropped");
                }
                Ok(Step::Continue)
            }
            Err(error) => Self::maintenance_error(context, store, error),
        }
    }

    fn separator_step(context: &mut Context, store: &mut Logstor) -> Result<Step, Failure> {
        context.trace(format_args!("op separator step"));
        match store.separator_step() {
            Ok(report) => {
                if report.segments_freed > 0 {
                    context.note("separator_freed");
                }
                Ok(Step::Continue)
            }
            Err(error) => Self::maintenance_error(context, store, error),
        }
    }

    /// Drops a drawn group: every live key in it reads as deleted.
    fn drop_group(&mut self, context: &mut Context, store: &mut Logstor) -> Result<Step, Failure> {
        let group = context.rng.gen_range(0..self.options.groups_count);
        context.trace(format_args!("op drop group {group}"));
        let dropped: Vec<Vec<u8>> = self
            .model
            .keys
            .iter()
            .filter(|(_, history)| history.group() == group && history.latest().is_some())
            .map(|(key, _)| key.clone())
            .collect();
        match store.drop_group(group) {
            Ok(_) => {
                for key in dropped {
                    self.model.keys.get_mut(&key).expect("listed").push(None);
                }
                self.model.sync_all();
                context.note("group_dropped");
                Ok(Step::Continue)
            }
            Err(error) => {
                // Some tombstones may have been written: each dropped key may be either.
                for key in dropped {
                    self.model.keys.get_mut(&key).expect("listed").push(None);
                }
                Self::maintenance_error(context, store, error)
            }
        }
    }

    /// Scans the whole store and compares it with the latest version of every key.
    fn scan(&self, context: &mut Context, store: &mut Logstor) -> Result<Step, Failure> {
        context.trace(format_args!("op scan"));
        let expected: BTreeMap<Vec<u8>, Vec<u8>> = self
            .model
            .keys
            .iter()
            .filter_map(|(key, history)| history.latest().map(|value| (key.clone(), value.clone())))
            .collect();
        match store.scan().collect::<Result<BTreeMap<_, _>, _>>() {
            Ok(found) if found == expected => Ok(Step::Continue),
            Ok(found) => {
                let differing: Vec<String> = found
                    .keys()
                    .chain(expected.keys())
                    .filter(|key| found.get(*key) != expected.get(*key))
                    .map(|key| String::from_utf8_lossy(key).into_owned())
                    .collect();
                fail!(
                    "scan returned {} keys, the model holds {}; differing: {differing:?}",
                    found.len(),
                    expected.len()
                )
            }
            Err(Error::Io { .. }) => Ok(Step::Continue),
            Err(Error::Corruption { .. }) if !context.vfs.damage().is_empty() => Ok(Step::Continue),
            Err(error) => fail!("scan failed: {error}"),
        }
    }

    fn maintenance_error(context: &mut Context, store: &Logstor, error: Error) -> Result<Step, Failure> {
        match error {
            // A read that failed before the step changed anything leaves the store usable.
            Error::Io { .. } if !store.is_poisoned() => Ok(Step::Continue),
            Error::Io { .. } => Ok(Step::Poisoned),
            // Damage found while reading, before the step changed anything: reopen, and let
            // recovery report or repair it.
            Error::Corruption { .. } if !context.vfs.damage().is_empty() => {
                context.note("corruption_reported");
                Ok(if store.is_poisoned() { Step::Poisoned } else { Step::Reopen })
            }
            error => fail!("maintenance failed: {error}"),
        }
    }
}
