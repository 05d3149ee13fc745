//! The WAL target: a workload of appends, syncs, reads, rotations and truncations, a model of
//! every record appended and which were synced, and the oracle that checks every recovery.
//!
//! The oracle, after every open: the records read back are a prefix of everything appended,
//! byte for byte, in order and at the positions the appends returned; the prefix is at least as
//! long as everything acknowledged as synced, except where the disk itself damaged synced data
//! (then only records before the damage are owed, and damage in a sealed segment must be
//! reported); a repair that drops synced records says so.

use std::path::{Path, PathBuf};

use ballast::wal::{self, Position, RecoveryMode, Wal, WalOptions};
use ballast::Error;
use rand::Rng;

use crate::fail;
use crate::faults::FaultKind;
use crate::runner::{draw_faults, Canary, Context, Failure};

const DIRECTORY: &str = "/wal";
/// Bound on attempts to open after transient failures.
const OPEN_ATTEMPTS_MAX: u32 = 12;

#[derive(Debug)]
struct Expected {
    /// `None` for records of a batch whose append failed: they may or may not be on disk.
    position: Option<Position>,
    data: Vec<u8>,
    synced: bool,
}

/// Damage the disk did to a segment's bytes.
#[derive(Debug)]
struct Damaged {
    segment: u64,
    at: std::ops::Range<u64>,
    kind: FaultKind,
}

#[derive(Debug, Default)]
struct Model {
    records: Vec<Expected>,
    /// Segments below this may have been removed by a truncation that did not return.
    truncate_requested_below: u64,
    /// Sequence number folded into record contents, so that no two records are alike.
    next_sequence: u64,
}

struct Geometry {
    options: WalOptions,
    batch_max: usize,
    large_record_percent: u32,
}

fn directory() -> PathBuf {
    PathBuf::from(DIRECTORY)
}

fn segment_of(path: &Path) -> Option<u64> {
    if path.parent() != Some(Path::new(DIRECTORY)) {
        return None;
    }
    wal::parse_segment_file_name(path.file_name()?.to_str()?)
}

fn segments_on_disk(context: &Context) -> Vec<u64> {
    context.vfs.current_names(&directory()).iter().filter_map(|name| wal::parse_segment_file_name(name)).collect()
}

/// How many files of truncated segments wait to be reused.
fn recycled_on_disk(context: &Context) -> usize {
    context.vfs.current_names(&directory()).iter().filter(|name| wal::parse_recycle_file_name(name).is_some()).count()
}

/// Runs the WAL target. Returns the swarm description, with the failure if one was found.
pub fn run(context: &mut Context) -> Result<String, (String, Failure)> {
    let page_size = [128u32, 256, 512, 1024, 4096][context.rng.gen_range(0..5)];
    let segment_size = u64::from(page_size) * context.rng.gen_range(2..=12);
    let mut geometry = Geometry {
        options: WalOptions {
            segment_size,
            page_size,
            recovery_mode: RecoveryMode::Strict,
            preallocate: 0,
            recycle_segments: 0,
        },
        batch_max: context.rng.gen_range(1..=8),
        large_record_percent: context.rng.gen_range(0..=20),
    };
    let mut faults = draw_faults(&mut context.rng, segment_size);
    // Preallocation off (the file grows with every write), a page at a time, or the whole
    // segment at its first write: each changes which writes grow the file.
    geometry.options.preallocate = [0, u64::from(page_size), segment_size][context.rng.gen_range(0..3)];
    // Truncated segments' files removed, or kept and reused: a reused file holds another
    // segment's valid-looking fragments after the records, for recovery to tell apart.
    geometry.options.recycle_segments = [0, 1, 2, 4][context.rng.gen_range(0..4)];
    if context.canary == Some(Canary::LyingFsync) {
        faults.lying_fsync = true;
        faults.lost_unsynced = true;
        faults.spurious_durability = 0.0;
    }
    let swarm = format!(
        "target=wal seed={} ops={} page_size={page_size} segment_size={segment_size} preallocate={} recycle_segments={} batch_max={} large_records={}% faults: {faults}",
        context.seed, context.ops_budget, geometry.options.preallocate, geometry.options.recycle_segments, geometry.batch_max, geometry.large_record_percent
    );
    context.trace(format_args!("swarm {swarm}"));
    context.vfs.set_config(faults);
    let mut workload = Workload { geometry, model: Model::default() };
    match workload.run(context) {
        Ok(()) => Ok(swarm),
        Err(failure) => Err((swarm, failure)),
    }
}

struct Workload {
    geometry: Geometry,
    model: Model,
}

/// How a life ended.
enum LifeEnd {
    Crash,
    CleanReopen,
}

impl Workload {
    fn run(&mut self, context: &mut Context) -> Result<(), Failure> {
        let mut after_crash = false;
        while context.ops < context.ops_budget {
            let Some(mut wal) = self.open_and_check(context, after_crash)? else {
                after_crash = true;
                continue;
            };
            let end = self.life(context, &mut wal)?;
            drop(wal);
            after_crash = matches!(end, LifeEnd::Crash);
            if after_crash {
                self.crash(context);
            }
        }
        self.final_phase(context)
    }

    /// Cuts power and rots what is eligible: bytes of sealed segments only, because damage to
    /// synced bytes at the end of the last segment cannot be told from a torn write (the WAL
    /// module docs say so), and the oracle demands detection of everything it rots.
    fn crash(&mut self, context: &mut Context) {
        context.trace(format_args!("op crash"));
        context.crashes += 1;
        context.vfs.crash();
        let segments = segments_on_disk(context);
        let eligible: Vec<(PathBuf, std::ops::Range<u64>)> = match segments.split_last() {
            Some((_, sealed)) => {
                sealed.iter().map(|&segment| (directory().join(wal::segment_file_name(segment)), 0..u64::MAX)).collect()
            }
            None => Vec::new(),
        };
        context.vfs.rot(&eligible);
    }

    /// Opens (strict, then repair if strict reports corruption) and checks the recovered log.
    /// `None` if power failed during recovery; the caller crashes and tries again.
    fn open_and_check(&mut self, context: &mut Context, after_crash: bool) -> Result<Option<Wal>, Failure> {
        context.arm_crash_in_recovery(after_crash, 6);
        let damage: Vec<Damaged> = context
            .vfs
            .damage()
            .into_iter()
            .filter_map(|damage| {
                let segment = segment_of(&damage.path)?;
                Some(Damaged { segment, at: damage.offset..damage.offset + damage.length, kind: damage.kind })
            })
            .collect();
        let last_on_disk = segments_on_disk(context).last().copied();
        let mut mode = RecoveryMode::Strict;
        for _ in 0..OPEN_ATTEMPTS_MAX {
            let options = WalOptions { recovery_mode: mode, ..self.geometry.options.clone() };
            context.trace(format_args!("op open {mode:?}"));
            match Wal::open(context.vfs_handle.clone(), DIRECTORY, options) {
                Ok(wal) => {
                    if context.vfs.is_powered_off() {
                        fail!("open returned Ok although power failed during it");
                    }
                    // A crash point meant for recovery that recovery did not reach is void.
                    context.vfs.disarm_crash();
                    self.check_recovered(context, &wal, mode, &damage, last_on_disk, after_crash)?;
                    return Ok(Some(wal));
                }
                Err(_) if context.vfs.is_powered_off() => {
                    context.note("crash_during_recovery");
                    self.crash(context);
                    return Ok(None);
                }
                Err(error @ Error::Io { .. }) => context.open_failed(&error, 2 * self.geometry.options.segment_size),
                Err(Error::Corruption { segment, offset, reason, .. }) if mode == RecoveryMode::Strict => {
                    if !damage.iter().any(|damaged| damaged.segment == segment) {
                        fail!(
                            "strict open reported corruption in segment {segment} at offset {offset} ({reason}), \
                             but the disk damaged nothing there (damage: {damage:?})"
                        );
                    }
                    context.note("corruption_reported");
                    mode = RecoveryMode::Repair;
                }
                Err(error) => fail!("open ({mode:?}) failed: {error}"),
            }
        }
        fail!("open failed {OPEN_ATTEMPTS_MAX} times in a row")
    }

    fn read_all(wal: &Wal) -> Result<Vec<(Position, Vec<u8>)>, Error> {
        wal.records().collect()
    }

    fn check_recovered(
        &mut self,
        context: &mut Context,
        wal: &Wal,
        mode: RecoveryMode,
        damage: &[Damaged],
        last_on_disk: Option<u64>,
        after_crash: bool,
    ) -> Result<(), Failure> {
        let report = wal.recovery_report().clone();
        if report.torn_tail.is_some() {
            context.note("torn_tail_truncated");
        }
        if report.temp_files_removed > 0 {
            context.note("temp_files_removed");
        }
        match (&report.repair, mode) {
            (Some(repair), RecoveryMode::Strict) if !repair.resumed => fail!("strict open repaired: {repair:?}"),
            (Some(repair), _) if repair.resumed => context.note("repair_resumed"),
            (Some(_), _) => context.note("repair"),
            (None, _) => {}
        }
        let mut recovered = None;
        for _ in 0..OPEN_ATTEMPTS_MAX {
            match Self::read_all(wal) {
                Ok(records) => {
                    recovered = Some(records);
                    break;
                }
                Err(Error::Io { .. }) => context.note("read_retried"),
                Err(error) => fail!("open succeeded but reading the log back failed: {error}"),
            }
        }
        let Some(recovered) = recovered else { fail!("reading the log back failed {OPEN_ATTEMPTS_MAX} times") };
        if report.records_count != recovered.len() as u64 {
            fail!("recovery counted {} records but {} were read back", report.records_count, recovered.len());
        }
        let (first_segment, _) = wal.segments();
        while let Some(front) = self.model.records.first() {
            match front.position {
                Some(position) if position.segment < first_segment => {
                    if position.segment >= self.model.truncate_requested_below {
                        fail!(
                            "segment {} vanished (first segment is now {first_segment}) though no truncation removed it",
                            position.segment
                        );
                    }
                    self.model.records.remove(0);
                }
                _ => break,
            }
        }
        let model = &self.model.records;
        if recovered.len() > model.len() {
            fail!("recovered {} records but only {} were appended", recovered.len(), model.len());
        }
        for (index, ((position, data), expected)) in recovered.iter().zip(model).enumerate() {
            if *data != expected.data {
                fail!(
                    "record {index} at {position} differs from what was appended ({} bytes read, {} appended)",
                    data.len(),
                    expected.data.len()
                );
            }
            if expected.position.is_some_and(|expected| expected != *position) {
                fail!("record {index} read back at {position}, appended at {}", expected.position.expect("checked"));
            }
        }
        let synced = model.iter().take_while(|record| record.synced).count();
        if model[synced..].iter().any(|record| record.synced) {
            fail!("model bug: synced records do not form a prefix");
        }
        // Damage the disk did to synced data excuses the loss of records from the damaged one
        // on; damage in a sealed segment must also be reported: by rot or a latent sector
        // anywhere (they go only into sealed segments' bytes), by a misdirected write where it
        // touched a synced record or the seal (elsewhere, in a reused file's old bytes or the
        // padding, it may have changed nothing the format holds to).
        let mut owed = synced;
        for damaged in damage {
            let (segment, offset, kind) = (damaged.segment, damaged.at.start, damaged.kind);
            let before_segment =
                model.iter().filter(|record| record.position.is_some_and(|p| p.segment < segment)).count();
            let at_or_before = model
                .iter()
                .filter(|record| record.position.is_some_and(|p| p.segment == segment && p.offset <= offset))
                .count();
            owed = owed.min(before_segment + at_or_before.saturating_sub(1));
            let sealed = last_on_disk.is_some_and(|last| segment < last);
            let detectable = kind != FaultKind::MisdirectedWrite || self.touches_data(damaged, synced);
            if sealed && mode == RecoveryMode::Strict && detectable {
                fail!("{kind} in sealed segment {segment} at offset {offset} was not reported by a strict open");
            }
        }
        if recovered.len() < owed {
            fail!(
                "lost synced data: recovered {} records, {} were synced (first missing: record {} at {:?})",
                recovered.len(),
                synced,
                recovered.len(),
                model[recovered.len()].position
            );
        }
        if recovered.len() < synced && report.repair.is_none() && mode == RecoveryMode::Repair {
            fail!("repair dropped synced records ({} of {synced} kept) without reporting it", recovered.len());
        }
        let recovered_count = recovered.len();
        self.model.records.truncate(recovered_count);
        for (expected, (position, _)) in self.model.records.iter_mut().zip(&recovered) {
            expected.position = Some(*position);
            // After a crash everything read back is on the durable image.
            expected.synced |= after_crash;
        }
        context.trace(format_args!("check recovered {recovered_count} records, {synced} were synced, owed {owed}"));
        Ok(())
    }

    /// Whether `damaged` overlaps the bytes of one of the first `synced` records, or the seal
    /// after the last of them in its segment.
    fn touches_data(&self, damaged: &Damaged, synced: usize) -> bool {
        let page_size = u64::from(self.geometry.options.page_size);
        let segment_size = self.geometry.options.segment_size;
        let overlaps = |range: std::ops::Range<u64>| range.start < damaged.at.end && damaged.at.start < range.end;
        let mut last_end = None;
        for record in &self.model.records[..synced] {
            let Some(position) = record.position.filter(|position| position.segment == damaged.segment) else {
                continue;
            };
            let end = wal::format::record_end(position.offset, record.data.len(), page_size, segment_size)
                .expect("an appended record fits its segment");
            if overlaps(position.offset..end) {
                return true;
            }
            last_end = Some(end);
        }
        last_end.is_some_and(|end| {
            let seal = wal::format::seal_offset(end, page_size);
            overlaps(seal..seal + wal::FRAGMENT_HEADER_SIZE as u64)
        })
    }

    fn draw_record(&mut self, context: &mut Context, record_length_max: u64) -> Vec<u8> {
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

    /// One life: operations until a crash point, a poisoned handle, or a clean reopen.
    fn life(&mut self, context: &mut Context, wal: &mut Wal) -> Result<LifeEnd, Failure> {
        let plan = context.plan_life(8);
        for step in 0..plan.length {
            if context.ops >= context.ops_budget {
                return Ok(LifeEnd::Crash);
            }
            context.arm_planned_crash(&plan, step);
            context.ops += 1;
            let recycled_before = recycled_on_disk(context);
            let outcome = self.step(context, wal)?;
            if recycled_on_disk(context) < recycled_before {
                context.note("wal_segment_file_reused");
            }
            if context.vfs.is_powered_off() {
                return Ok(LifeEnd::Crash);
            }
            match outcome {
                Step::Continue => {}
                Step::Poisoned => {
                    context.expect_poisoned(wal.sync(), "log")?;
                    return Ok(if context.rng.gen_bool(0.5) { LifeEnd::Crash } else { LifeEnd::CleanReopen });
                }
                Step::Reopen => return Ok(LifeEnd::CleanReopen),
            }
        }
        Ok(LifeEnd::Crash)
    }

    fn step(&mut self, context: &mut Context, wal: &mut Wal) -> Result<Step, Failure> {
        let choice = context.rng.gen_range(0..100);
        match choice {
            0..=49 => {
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
                            context.trace(format_args!("op flush"));
                            return match wal.flush() {
                                Ok(()) => Ok(Step::Continue),
                                Err(Error::Io { .. }) => Ok(Step::Poisoned),
                                Err(error) => fail!("flush failed: {error}"),
                            };
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
            50..=61 => {
                context.trace(format_args!("op sync"));
                self.after_sync(wal.sync())
            }
            // Flushed but unsynced records on disk are what crashes tear and lose.
            62..=69 => {
                context.trace(format_args!("op flush"));
                match wal.flush() {
                    Ok(()) => Ok(Step::Continue),
                    Err(Error::Io { .. }) => Ok(Step::Poisoned),
                    Err(error) => fail!("flush failed: {error}"),
                }
            }
            70..=79 => {
                context.trace(format_args!("op read all"));
                self.check_read_all(context, wal)?;
                Ok(Step::Continue)
            }
            80..=85 => {
                context.trace(format_args!("op rotate"));
                self.after_sync(wal.rotate())
            }
            86..=93 => {
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
            _ => {
                context.trace(format_args!("op clean reopen"));
                Ok(Step::Reopen)
            }
        }
    }

    fn after_sync(&mut self, result: Result<(), Error>) -> Result<Step, Failure> {
        match result {
            Ok(()) => {
                for record in &mut self.model.records {
                    record.synced = true;
                }
                Ok(Step::Continue)
            }
            Err(Error::Io { .. }) => Ok(Step::Poisoned),
            Err(error) => fail!("sync failed: {error}"),
        }
    }

    /// Reads the whole log through the live handle and compares it with everything appended.
    fn check_read_all(&self, context: &mut Context, wal: &Wal) -> Result<(), Failure> {
        let mut count = 0usize;
        for item in wal.records() {
            match item {
                Ok((position, data)) => {
                    let Some(expected) = self.model.records.get(count) else {
                        fail!(
                            "live read returned record {count} at {position}, beyond the {} appended",
                            self.model.records.len()
                        );
                    };
                    if expected.data != data || expected.position != Some(position) {
                        fail!("live read of record {count} at {position} differs from what was appended");
                    }
                    count += 1;
                }
                Err(Error::Io { .. }) => {
                    context.note("read_retried");
                    return Ok(());
                }
                Err(Error::Corruption { segment, offset, .. }) => {
                    let misdirected = context.vfs.damage().iter().any(|damage| {
                        damage.kind == FaultKind::MisdirectedWrite && segment_of(&damage.path) == Some(segment)
                    });
                    if !misdirected {
                        fail!("live read reported corruption in segment {segment} at {offset} with no damage there");
                    }
                    context.note("misdirected_write_detected");
                    return Ok(());
                }
                Err(error) => fail!("live read failed: {error}"),
            }
        }
        if count != self.model.records.len() {
            fail!("live read returned {count} records, {} were appended", self.model.records.len());
        }
        Ok(())
    }

    /// Liveness, on a perfect disk: the log reopens, takes writes, rotates, truncates to one
    /// segment, and reads back exactly what the model holds.
    fn final_phase(&mut self, context: &mut Context) -> Result<(), Failure> {
        context.vfs.set_faults_enabled(false);
        context.trace(format_args!("phase final"));
        let mut wal = loop {
            if let Some(wal) = self.open_and_check(context, true)? {
                break wal;
            }
        };
        let record_length_max = wal.record_length_max();
        for _ in 0..2 {
            for _ in 0..10 {
                let record = self.draw_record(context, record_length_max);
                match wal.append(&record) {
                    Ok(position) => {
                        self.model.records.push(Expected { position: Some(position), data: record, synced: false })
                    }
                    Err(error) => fail!("append on a perfect disk failed: {error}"),
                }
            }
            if let Err(error) = wal.rotate() {
                fail!("rotate on a perfect disk failed: {error}");
            }
            self.after_sync(Ok(()))?;
        }
        self.check_read_all(context, &wal)?;
        let (_, last) = wal.segments();
        if let Err(error) = wal.truncate_before(last) {
            fail!("truncate_before on a perfect disk failed: {error}");
        }
        self.model.records.retain(|record| record.position.is_none_or(|p| p.segment >= last));
        if let Err(error) = wal.close() {
            fail!("close on a perfect disk failed: {error}");
        }
        let Some(wal) = self.open_and_check(context, false)? else { fail!("power failed on a perfect disk") };
        let names = context.vfs.current_names(&directory());
        let segments = names.iter().filter(|name| wal::parse_segment_file_name(name).is_some()).count();
        let recycled = names.iter().filter(|name| wal::parse_recycle_file_name(name).is_some()).count();
        if segments != 1 || recycled > self.geometry.options.recycle_segments || segments + recycled != names.len() {
            fail!("after truncating to the last segment the directory holds {names:?}");
        }
        if wal.records().count() != self.model.records.len() {
            fail!("final read back does not match the model");
        }
        Ok(())
    }
}

enum Step {
    Continue,
    Poisoned,
    Reopen,
}
