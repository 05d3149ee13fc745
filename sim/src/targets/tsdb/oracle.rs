//! The tsdb oracle, after every open: what the head recovered is exactly the samples of a
//! prefix of the commits, in order (commits are atomic, and what a crash loses is a suffix);
//! the prefix holds every commit a sync covered, unless the disk damaged the WAL; every
//! recovered series has the ref the appends returned for its labels. The final phase commits,
//! closes and reopens on a perfect disk and finds everything.

use std::collections::BTreeMap;

use ballast::tsdb::{Durability, Head, Labels};

use super::{segment_of, Workload};
use crate::fail;
use crate::faults::FaultKind;
use crate::harness::{self, Context, Failure, Opened};

impl Workload {
    /// Checks what an open recovered against the model, and adopts it.
    pub(super) fn check_open(
        &mut self,
        context: &mut Context,
        head: &Head,
        opened: &Opened<'_, ()>,
    ) -> Result<(), Failure> {
        let recovered = head.select(i64::MIN, i64::MAX, &[]);
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
        let kept = self.kept_commits(&by_series, owed)?;
        self.model.commits.truncate(kept);
        if opened.after_crash {
            self.model.all_synced();
        }
        // Refs of series that did not survive (never logged by a durable commit) are retired.
        let live: BTreeMap<_, _> = recovered.iter().map(|series| (series.series, series.labels.clone())).collect();
        let lost: Vec<_> = self.model.refs.keys().filter(|r| !live.contains_key(r)).copied().collect();
        for series_ref in lost {
            let labels = self.model.refs.remove(&series_ref).expect("listed");
            self.model.retired.insert(series_ref, labels);
        }
        self.model.refs.extend(live);
        context.trace(format_args!("check recovered {kept} commits, {} series", recovered.len()));
        Ok(())
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
                self.model.commits.iter().take_while(|commit| commit.position.is_some_and(before)).count();
            let holding = usize::from(damage.kind != FaultKind::MisdirectedWrite && starting_before > 0);
            owed = owed.min(starting_before - holding);
        }
        owed
    }

    /// How many commits, from the first, `recovered` holds: exactly their samples, in order,
    /// and at least the `owed` ones.
    fn kept_commits(&self, recovered: &BTreeMap<Labels, Vec<(i64, u64)>>, owed: usize) -> Result<usize, Failure> {
        let total: usize = recovered.values().map(Vec::len).sum();
        let mut count = 0;
        let mut kept = 0;
        while count < total && kept < self.model.commits.len() {
            count += self.model.commits[kept].samples.len();
            kept += 1;
        }
        if count != total {
            fail!("recovered {total} samples, which is no prefix of the commits (a commit torn, or samples never committed)");
        }
        let mut expected: BTreeMap<Labels, Vec<(i64, u64)>> = BTreeMap::new();
        for commit in &self.model.commits[..kept] {
            for (labels, t, bits) in &commit.samples {
                expected.entry(labels.clone()).or_default().push((*t, *bits));
            }
        }
        if expected != *recovered {
            fail!("the {total} samples recovered are not those of the first {kept} commits");
        }
        if kept < owed {
            fail!(
                "lost synced data: {kept} commits recovered, {owed} were owed ({} synced)",
                self.model.synced_prefix()
            );
        }
        Ok(kept)
    }

    /// Liveness on a perfect disk: a commit to every series (the last one synced), a close,
    /// and a reopen that finds everything.
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
            let samples = vec![(labels, later, (index as f64).to_bits())];
            let position = head.last_commit_position().map(|position| (position.segment, position.offset));
            self.model.commits.push(super::model::ModelCommit { samples, synced: false, position });
        }
        self.model.all_synced();
        // Counted before the reopen, whose check cuts the model to what it recovered.
        let committed: usize = self.model.commits.iter().map(|commit| commit.samples.len()).sum();
        if let Err(error) = head.close() {
            fail!("close on a perfect disk failed: {error}");
        }
        let Some(head) = harness::open_and_check(self, context, false)? else {
            fail!("power failed on a perfect disk")
        };
        let found: usize = head.select(i64::MIN, i64::MAX, &[]).iter().map(|series| series.samples.len()).sum();
        if found != committed {
            fail!("after a close on a perfect disk {found} samples were found, {committed} committed");
        }
        Ok(())
    }
}
