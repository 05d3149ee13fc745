//! The WAL oracle: the checks of what every open recovered against the model, the live read,
//! and the fault-free final phase.

use ballast::wal::{self, Position, RecoveryMode, RecoveryReport, Wal};
use ballast::Error;

use super::model::Expected;
use super::{directory, segment_of, Workload};
use crate::fail;
use crate::faults::FaultKind;
use crate::harness::{self, Context, Failure, Opened};

/// Damage the disk did to a segment's bytes.
#[derive(Debug)]
struct Damaged {
    segment: u64,
    at: std::ops::Range<u64>,
    kind: FaultKind,
}

impl Workload {
    fn read_all(wal: &Wal) -> Result<Vec<(Position, Vec<u8>)>, Error> {
        wal.records().collect()
    }

    /// Checks what an open recovered against the model, and adopts it.
    pub(super) fn check_open(
        &mut self,
        context: &mut Context,
        wal: &Wal,
        opened: &Opened<'_, Option<u64>>,
    ) -> Result<(), Failure> {
        let (mode, last_on_disk, after_crash) = (opened.mode, *opened.before, opened.after_crash);
        let damage: Vec<Damaged> = opened
            .damage
            .iter()
            .filter_map(|damage| {
                let segment = segment_of(&damage.path)?;
                Some(Damaged { segment, at: damage.offset..damage.offset + damage.length, kind: damage.kind })
            })
            .collect();
        let report = wal.recovery_report().clone();
        Self::note_report(context, &report, mode)?;
        let recovered = Self::read_back(context, wal)?;
        if report.records_count != recovered.len() as u64 {
            fail!("recovery counted {} records but {} were read back", report.records_count, recovered.len());
        }
        let (first_segment, _) = wal.segments();
        self.drop_truncated(first_segment)?;
        self.check_prefix(&recovered)?;
        let synced = self.synced_prefix()?;
        let owed = self.owed(&damage, synced, last_on_disk, mode)?;
        let model = &self.model.records;
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
        self.model.adopt(&recovered, after_crash);
        context.trace(format_args!("check recovered {recovered_count} records, {synced} were synced, owed {owed}"));
        Ok(())
    }

    /// Counts what recovery did, and holds a strict open to repairing nothing new.
    fn note_report(context: &mut Context, report: &RecoveryReport, mode: RecoveryMode) -> Result<(), Failure> {
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
        Ok(())
    }

    /// Reads the whole recovered log, retrying after I/O errors.
    fn read_back(context: &mut Context, wal: &Wal) -> Result<Vec<(Position, Vec<u8>)>, Failure> {
        match harness::retry_reads(context, "reading the log back", || Self::read_all(wal))? {
            Ok(records) => Ok(records),
            Err(error) => fail!("open succeeded but reading the log back failed: {error}"),
        }
    }

    /// Drops from the model the records of segments below the log's first, which only a
    /// truncation may have removed.
    fn drop_truncated(&mut self, first_segment: u64) -> Result<(), Failure> {
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
        Ok(())
    }

    /// The records read back are a prefix of those appended, byte for byte and in place.
    fn check_prefix(&self, recovered: &[(Position, Vec<u8>)]) -> Result<(), Failure> {
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
        Ok(())
    }

    /// How many records, from the first, were acknowledged as synced.
    fn synced_prefix(&self) -> Result<usize, Failure> {
        let model = &self.model.records;
        let synced = model.iter().take_while(|record| record.synced).count();
        if model[synced..].iter().any(|record| record.synced) {
            fail!("model bug: synced records do not form a prefix");
        }
        Ok(synced)
    }

    /// How many records the open owes: the synced ones, up to the first the disk damaged.
    fn owed(
        &self,
        damage: &[Damaged],
        synced: usize,
        last_on_disk: Option<u64>,
        mode: RecoveryMode,
    ) -> Result<usize, Failure> {
        let model = &self.model.records;
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
        Ok(owed)
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

    /// Reads the whole log through the live handle and compares it with everything appended.
    pub(super) fn check_read_all(&self, context: &mut Context, wal: &Wal) -> Result<(), Failure> {
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
                Err(error) => return harness::live_read_failed(context, error, segment_of),
            }
        }
        if count != self.model.records.len() {
            fail!("live read returned {count} records, {} were appended", self.model.records.len());
        }
        Ok(())
    }

    /// Liveness, on a perfect disk: the log reopens, takes writes, rotates, truncates to one
    /// segment, and reads back exactly what the model holds.
    pub(super) fn final_work(&mut self, context: &mut Context, mut wal: Wal) -> Result<(), Failure> {
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
        let Some(wal) = harness::open_and_check(self, context, false)? else { fail!("power failed on a perfect disk") };
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
