//! The commitlog oracle: the checks of what every open recovered against the model (offsets, commits, what was owed, restore from snapshot plus replay), the
//! live read, and the fault-free final phase.

use ballast::commitlog::{Commit, Commitlog, RecoveryReport};
use ballast::{Error, RecoveryMode};

use super::model::{apply, decode_state, ModelCommit, ModelSource, State};
use super::{segment_of, Workload};
use crate::fail;
use crate::faults::FaultKind;
use crate::harness::{self, Context, Failure, Opened};

impl Workload {
    /// Checks what an open recovered against the model, and adopts it.
    pub(super) fn check_open(
        &mut self,
        context: &mut Context,
        log: &Commitlog,
        opened: &Opened<'_, Option<u64>>,
    ) -> Result<(), Failure> {
        let (mode, last_on_disk, after_crash) = (opened.mode, *opened.before, opened.after_crash);
        let damage: Vec<(u64, FaultKind)> =
            opened.damage.iter().filter_map(|damage| Some((segment_of(&damage.path)?, damage.kind))).collect();
        let report = log.recovery_report().clone();
        Self::note_report(context, &report, mode)?;
        let next = log.next_offset();
        let start = log.min_committed_offset().unwrap_or(next);
        let commits = Self::read_back(context, log, start)?;
        let recovered: u64 = commits.iter().map(|commit| commit.transactions.len() as u64).sum();
        if start + recovered != next {
            fail!("read back offsets {start}..{} but the log's next offset is {next}", start + recovered);
        }
        if next > self.model.transactions.len() as u64 {
            fail!("recovered offsets up to {next}, only {} were committed", self.model.transactions.len());
        }
        self.check_commits(&commits, start)?;
        let owed = self.owed(&damage, last_on_disk, mode)?;
        if next < owed {
            fail!("lost synced data: recovered up to offset {next}, {} were synced (owed {owed})", self.model.synced);
        }
        if next < self.model.synced && report.repair.is_none() && mode == RecoveryMode::Repair {
            fail!("repair dropped synced transactions without reporting it");
        }
        // Restore: the latest valid snapshot plus replay must give the model's state.
        let Some(state) = self.restore(context, log, &commits, start)? else {
            return Ok(());
        };
        self.model.truncate(next);
        if state != self.model.state_at(next) {
            fail!("snapshot plus replay does not give the state at offset {next}");
        }
        if after_crash {
            self.model.synced = next;
        }
        self.model.reset_floor = None;
        // An epoch becomes durable with the next commit; after a reopen the log's is the truth.
        self.model.epoch = log.epoch();
        context.trace(format_args!("check recovered {start}..{next}, owed {owed}"));
        Ok(())
    }

    /// Counts what recovery did, and holds a strict open to repairing nothing new.
    fn note_report(context: &mut Context, report: &RecoveryReport, mode: RecoveryMode) -> Result<(), Failure> {
        for (happened, path) in [
            (report.torn_tail.is_some(), "torn_tail_truncated"),
            (report.temp_files_removed > 0, "temp_files_removed"),
            (report.indexes_rebuilt > 0, "index_rebuilt"),
            (report.snapshots_removed > 0, "snapshot_removed"),
        ] {
            if happened {
                context.note(path);
            }
        }
        match (&report.repair, mode) {
            (Some(repair), RecoveryMode::Strict) if !repair.resumed => fail!("strict open repaired: {repair:?}"),
            (Some(repair), _) if repair.resumed => context.note("repair_resumed"),
            (Some(_), _) => context.note("repair"),
            (None, _) => {}
        }
        Ok(())
    }

    /// Reads the recovered commits from `start`, retrying after I/O errors.
    fn read_back(context: &mut Context, log: &Commitlog, start: u64) -> Result<Vec<Commit>, Failure> {
        match harness::retry_reads(context, "reading the log back", || log.commits_from(start).collect())? {
            Ok(commits) => Ok(commits),
            Err(error) => fail!("open succeeded but reading the log back failed: {error}"),
        }
    }

    /// Every recovered commit is contiguous, and exactly a commit that was made, with its epoch
    /// and its transactions byte for byte.
    fn check_commits(&self, commits: &[Commit], start: u64) -> Result<(), Failure> {
        let mut offset = start;
        for commit in commits {
            if commit.first_offset != offset {
                fail!("commit at {} where {offset} was expected", commit.first_offset);
            }
            let Some(expected) = self.model.commits.iter().find(|made| made.first_offset == commit.first_offset) else {
                fail!("a commit at {} was never made", commit.first_offset);
            };
            if expected.count != commit.transactions.len() as u64 || expected.epoch != commit.epoch {
                fail!(
                    "commit at {} holds {} transactions at epoch {}, was made with {} at epoch {}",
                    commit.first_offset,
                    commit.transactions.len(),
                    commit.epoch,
                    expected.count,
                    expected.epoch
                );
            }
            for transaction in &commit.transactions {
                if *transaction != self.model.transactions[usize::try_from(offset).expect("fits")] {
                    fail!("transaction {offset} differs from what was committed");
                }
                offset += 1;
            }
        }
        Ok(())
    }

    /// The offset below which the open owes every transaction.
    fn owed(&self, damage: &[(u64, FaultKind)], last_on_disk: Option<u64>, mode: RecoveryMode) -> Result<u64, Failure> {
        // Owed: every synced transaction, unless the disk damaged its segment or a reset that
        // did not return was removing it.
        let mut owed = self.model.synced;
        if let Some(floor) = self.model.reset_floor {
            owed = owed.min(floor);
        }
        for &(segment, kind) in damage {
            owed = owed.min(segment);
            let sealed = last_on_disk.is_some_and(|last| segment < last);
            if sealed && mode == RecoveryMode::Strict && kind != FaultKind::MisdirectedWrite {
                fail!("{kind} in sealed segment {segment} was not reported by a strict open");
            }
        }
        Ok(owed)
    }

    /// The state restored from the latest valid snapshot plus replay of `commits`; `None` if
    /// reading the snapshot failed with an I/O error (then nothing more is checked).
    fn restore(
        &self,
        context: &mut Context,
        log: &Commitlog,
        commits: &[Commit],
        start: u64,
    ) -> Result<Option<State>, Failure> {
        let snapshot = match log.latest_snapshot() {
            Ok(snapshot) => snapshot,
            Err(Error::Io { .. }) => return Ok(None),
            Err(error) => fail!("latest_snapshot failed: {error}"),
        };
        if snapshot.as_ref().is_some_and(|snapshot| snapshot.skipped_damaged > 0) {
            context.note("damaged_snapshot_skipped");
        }
        let (mut state, replay_from) = match &snapshot {
            Some(snapshot) => {
                let Some(state) = decode_state(&snapshot.data) else {
                    fail!("snapshot at {} does not decode", snapshot.offset)
                };
                if state != self.model.state_at(snapshot.offset + 1) {
                    fail!("snapshot at {} does not hold the state at that offset", snapshot.offset);
                }
                (state, snapshot.offset + 1)
            }
            None => (State::new(), 0),
        };
        if replay_from < start {
            fail!("cannot restore: the latest valid snapshot ends at {replay_from}, the log starts at {start}");
        }
        for commit in commits {
            for (index, transaction) in commit.transactions.iter().enumerate() {
                if commit.first_offset + index as u64 >= replay_from {
                    apply(&mut state, transaction);
                }
            }
        }
        Ok(Some(state))
    }

    /// Reads from `from` through the live handle: a prefix of what was committed (reads see
    /// flushed commits, and the buffer flushes on its own).
    pub(super) fn check_read(&self, context: &mut Context, log: &Commitlog, from: u64) -> Result<(), Failure> {
        let mut expected = from;
        for item in log.transactions_from(from) {
            match item {
                Ok((offset, transaction)) => {
                    if offset != expected {
                        fail!("live read returned offset {offset} where {expected} was due");
                    }
                    let Some(committed) = self.model.transactions.get(usize::try_from(offset).expect("fits")) else {
                        fail!("live read returned offset {offset}, beyond what was committed");
                    };
                    if *committed != transaction {
                        fail!("live read of offset {offset} differs from what was committed");
                    }
                    expected += 1;
                }
                Err(error) => return harness::live_read_failed(context, error, segment_of),
            }
        }
        Ok(())
    }

    /// Liveness on a perfect disk: reopen, commit, rotate, snapshot, restore.
    pub(super) fn final_work(&mut self, context: &mut Context, mut log: Commitlog) -> Result<(), Failure> {
        for _ in 0..20 {
            let next = self.model.transactions.len() as u64;
            let transaction = Self::draw_transaction(context);
            if let Err(error) = log.commit(&[(next, &transaction)]) {
                fail!("commit on a perfect disk failed: {error}");
            }
            self.model.commits.push(ModelCommit { first_offset: next, count: 1, epoch: self.model.epoch });
            self.model.transactions.push(transaction);
        }
        if let Err(error) = log.rotate().and_then(|()| log.snapshot_now(&mut ModelSource(&self.model)).map(drop)) {
            fail!("rotate and snapshot on a perfect disk failed: {error}");
        }
        self.model.synced = self.model.transactions.len() as u64;
        if let Err(error) = log.close() {
            fail!("close on a perfect disk failed: {error}");
        }
        if harness::open_and_check(self, context, false)?.is_none() {
            fail!("power failed on a perfect disk");
        }
        Ok(())
    }
}
