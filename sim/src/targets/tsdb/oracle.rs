//! The tsdb oracle, after every open: what the head recovered is exactly what a prefix of the
//! changes (commits, deletions, truncations) makes, in order (each change is atomic, and what
//! a crash loses is a suffix): the samples a query returns, every series' newest sample, the
//! head's lowest and newest times. The prefix holds every change a sync covered, unless the
//! disk damaged the WAL; every recovered series has the ref the appends returned for its
//! labels, and a ref whose series went never comes back. The final phase commits, checkpoints
//! to quiescence, bounds the disk the head uses by what it holds, and reopens on a perfect
//! disk to find everything.

use std::collections::BTreeMap;
use std::path::Path;

use ballast::tsdb::{Durability, Head, Labels};
use ballast::Error;

use super::model::{Change, State};
use super::{segment_of, Workload, DIRECTORY, WAL_DIRECTORY};
use crate::fail;
use crate::faults::FaultKind;
use crate::harness::{self, Checked, Context, Failure, Opened};

impl Workload {
    /// Checks what an open recovered against the model, and adopts it. Reading a chunk file
    /// back may fail (an I/O error, or damage the disk did there): then open again, so that
    /// recovery finds the damage.
    pub(super) fn check_open(
        &mut self,
        context: &mut Context,
        head: &Head,
        opened: &Opened<'_, ()>,
    ) -> Result<Checked, Failure> {
        let recovered = match head.select(i64::MIN, i64::MAX, &[]) {
            Ok(recovered) => recovered,
            Err(error) => {
                Self::read_failed(context, error)?;
                return Ok(Checked::Reopen);
            }
        };
        let mut by_series: BTreeMap<Labels, Vec<(i64, u64)>> = BTreeMap::new();
        for series in &recovered {
            if self.model.refs.get(&series.series).is_some_and(|labels| *labels != series.labels) {
                fail!(
                    "ref {} names {} after recovery, {} before",
                    series.series,
                    series.labels,
                    self.model.refs[&series.series]
                );
            }
            if let Some(retired) = self.model.retired.get(&series.series) {
                fail!("ref {} of {retired}, lost in a crash, came back for {}", series.series, series.labels);
            }
            let before = self.model.refs.iter().find(|(_, labels)| **labels == series.labels).map(|(&r, _)| r);
            if before.is_some_and(|before| before != series.series) {
                fail!("series {} has ref {} after recovery, {before:?} before", series.labels, series.series);
            }
            by_series.insert(series.labels.clone(), series.samples.iter().map(|&(t, v)| (t, v.to_bits())).collect());
        }
        let owed = self.owed_commits(opened);
        let kept = self.kept_commits(head, &by_series, owed)?;
        self.model.truncate(kept);
        if opened.after_crash {
            self.model.all_synced();
        }
        self.retire_lost_refs(head);
        let live: BTreeMap<_, _> = recovered.iter().map(|series| (series.series, series.labels.clone())).collect();
        self.model.refs.extend(live);
        context.trace(format_args!("check recovered {kept} changes, {} series", recovered.len()));
        Ok(Checked::Sound)
    }

    /// A query failed reading a chunk file back: an I/O error may pass; corruption only in a
    /// file the disk damaged. Anything else fails the seed.
    pub(super) fn read_failed(context: &mut Context, error: Error) -> Result<(), Failure> {
        match error {
            Error::Io { .. } => {
                context.note("read_retried");
                Ok(())
            }
            Error::Corruption { file, offset, .. } if context.vfs.damage().iter().any(|d| d.path == file) => {
                context.note("chunk_damage_detected");
                context.trace(format_args!("read met damage in {} at {offset}", file.display()));
                Ok(())
            }
            error => fail!("a query failed: {error}"),
        }
    }

    /// Refs whose series the head no longer holds (never logged by a durable commit, or left
    /// empty by a truncation) are retired: never to be issued again.
    pub(super) fn retire_lost_refs(&mut self, head: &Head) {
        let lost: Vec<_> = self.model.refs.keys().filter(|&&r| head.labels_of(r).is_none()).copied().collect();
        for series_ref in lost {
            let labels = self.model.refs.remove(&series_ref).expect("listed");
            self.model.retired.insert(series_ref, labels);
        }
    }

    /// How many commits, from the first, the open owes: every synced one, but damage the disk
    /// did to the WAL excuses the commits from the one whose record holds it on (a misdirected
    /// write, whose intended place is unknown, those from the first in its segment on).
    fn owed_commits(&self, opened: &Opened<'_, ()>) -> usize {
        let mut owed = self.model.synced_prefix();
        for damage in opened.damage {
            let Some(segment) = segment_of(&damage.path) else { continue };
            let before = |position: (u64, u64)| match damage.kind {
                FaultKind::MisdirectedWrite => position.0 < segment,
                _ => position < (segment, damage.offset),
            };
            // Commits whose record begins before the damage, less the one that may hold it.
            let starting_before =
                self.model.commits().iter().take_while(|commit| commit.position.is_some_and(before)).count();
            let holding = usize::from(damage.kind != FaultKind::MisdirectedWrite && starting_before > 0);
            owed = owed.min(starting_before - holding);
        }
        owed
    }

    /// How many changes, from the first, `recovered` holds: exactly what they make (the
    /// samples a query returns, each series' newest sample, the head's lowest and newest
    /// times), and at least the `owed` ones. Of prefixes that make the same, the longest.
    fn kept_commits(
        &self,
        head: &Head,
        recovered: &BTreeMap<Labels, Vec<(i64, u64)>>,
        owed: usize,
    ) -> Result<usize, Failure> {
        let total: usize = recovered.values().map(Vec::len).sum();
        let (newest, floor, max_time) = (head.newest_times(), head.min_time(), head.max_time());
        let same = |state: &State| {
            state.visible_count == total
                && state.max_time == max_time
                && state.floor.filter(|&floor| floor > i64::MIN) == floor
                && state.visible() == *recovered
                && state.newest_times() == newest
        };
        let mut state = State::default();
        let mut kept = same(&state).then_some(0);
        for (index, commit) in self.model.commits().iter().enumerate() {
            state.apply(&commit.change);
            if same(&state) {
                kept = Some(index + 1);
            }
        }
        let Some(kept) = kept else {
            fail!("recovered {total} samples, which no prefix of the changes makes (a change torn, or one never made)");
        };
        if kept < owed {
            fail!(
                "lost synced data: {kept} changes recovered, {owed} were owed ({} synced)",
                self.model.synced_prefix()
            );
        }
        Ok(kept)
    }

    /// Liveness on a perfect disk: a commit to every series (the last one synced), a
    /// checkpoint, after which the head's files hold little more than its data, a close, and
    /// a reopen that finds everything.
    pub(super) fn final_work(&mut self, context: &mut Context, mut head: Head) -> Result<(), Failure> {
        let t = self.model.max_time().map_or(0, |max| max + 1);
        for index in 0..self.series_count {
            let labels = Self::labels_of(index);
            let later = self.model.newest(&labels).map_or(t, |(newest, _)| newest.max(t) + 1);
            let mut appender = head.appender();
            if let Err(error) = appender.append(&labels, later, index as f64) {
                fail!("append on a perfect disk failed: {error}");
            }
            let durability = if index + 1 == self.series_count { Durability::Synced } else { Durability::Buffered };
            if let Err(error) = appender.commit(durability) {
                fail!("commit on a perfect disk failed: {error}");
            }
            self.model.push(Change::Commit(vec![(labels, later, (index as f64).to_bits())]));
            let position = head.last_commit_position().map(|position| (position.segment, position.offset));
            self.model.last_mut().expect("pushed").position = position;
        }
        self.model.all_synced();
        if let Err(error) = head.checkpoint() {
            fail!("checkpoint on a perfect disk failed: {error}");
        }
        self.retire_lost_refs(&head);
        self.check_disk_use(context)?;
        // Counted before the reopen, whose check cuts the model to what it recovered.
        let committed = self.model.state().visible_count;
        if let Err(error) = head.close() {
            fail!("close on a perfect disk failed: {error}");
        }
        let Some(head) = harness::open_and_check(self, context, false)? else {
            fail!("power failed on a perfect disk")
        };
        let found = match head.select(i64::MIN, i64::MAX, &[]) {
            Ok(found) => found.iter().map(|series| series.samples.len()).sum::<usize>(),
            Err(error) => fail!("a query on a perfect disk failed: {error}"),
        };
        if found != committed {
            fail!("after a close on a perfect disk {found} samples were found, {committed} committed");
        }
        Ok(())
    }

    /// After a checkpoint the head's files are its checkpoint, which holds no more than its
    /// series, stored samples and tombstones take, and a WAL of at most two segments (the
    /// one begun, and one file kept for reuse), the `refs` file and the lock.
    fn check_disk_use(&self, context: &Context) -> Result<(), Failure> {
        let state = self.model.state();
        let stored: u64 = state.series.values().map(|samples| samples.len() as u64).sum();
        let labels: u64 = state.series.keys().map(|labels| labels.to_string().len() as u64 + 64).sum();
        let deletions = self.model.commits().iter().filter(|commit| matches!(commit.change, Change::Delete(_))).count();
        let checkpoint_bound = 1024 + labels + 24 * stored + 24 * (deletions as u64) * self.series_count;
        let bound = checkpoint_bound + 2 * self.options.wal_segment_size + 4096;
        let mut used = 0;
        for directory in [Path::new(DIRECTORY), Path::new(WAL_DIRECTORY)] {
            for name in context.vfs.current_names(directory) {
                used += context.vfs.current_length(&directory.join(name)).unwrap_or(0);
            }
        }
        if used > bound {
            fail!("after a checkpoint the head uses {used} bytes, more than {bound} for {stored} samples");
        }
        Ok(())
    }
}
