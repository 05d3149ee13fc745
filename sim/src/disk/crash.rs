//! Power loss: each pending operation is kept or lost as the fault configuration says, a kept
//! write may land torn at sector granularity, lost directory operations take their entries with
//! them, and whatever no durable name reaches is gone. The steps run in a fixed order and draw
//! from the one RNG in a fixed order, so a seed replays the same crash.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use rand::Rng;

use super::ledger::DamageEntry;
use super::state::{apply_set_len, apply_write, DirOp, Pending, State};
use super::SECTOR_SIZE;
use crate::faults::FaultKind;

impl State {
    /// Power loss: keep what the fault configuration lets survive, forget the rest.
    pub(super) fn crash(&mut self) {
        let survive_write = self.survive_write();
        let lost_writes = self.crash_files(survive_write);
        self.forget_lost_writes(&lost_writes);
        self.crash_directories();
        self.drop_unnamed_inodes();
        self.reboot();
    }

    /// The probability that a pending file operation survives the crash.
    fn survive_write(&self) -> f64 {
        match (self.faults_enabled, self.config.lost_unsynced) {
            (false, _) => 0.0,
            (true, false) => 1.0,
            (true, true) => self.config.spurious_durability,
        }
    }

    /// Settles every file's pending operations into its durable image. Returns the writes lost.
    fn crash_files(&mut self, survive_write: f64) -> BTreeSet<u64> {
        let ids: Vec<u64> = self.inodes.keys().copied().collect();
        let mut lost_writes = BTreeSet::new();
        for id in ids {
            self.crash_file(id, survive_write, &mut lost_writes);
        }
        lost_writes
    }

    /// Keeps or loses each pending operation of inode `id`, in order, and makes the result both
    /// its durable and its current content.
    fn crash_file(&mut self, id: u64, survive_write: f64, lost_writes: &mut BTreeSet<u64>) {
        let pending = std::mem::take(&mut self.inode(id).pending);
        if pending.is_empty() {
            return;
        }
        let mut image = std::mem::take(&mut self.inode(id).durable);
        let mut lost_any = false;
        let mut kept_any = false;
        for op in pending {
            let survives = survive_write >= 1.0 || (survive_write > 0.0 && self.rng.gen_bool(survive_write));
            if survives {
                kept_any = true;
                self.keep_pending(id, &mut image, op);
            } else {
                lost_any = true;
                self.lose_pending(id, &mut image, op, lost_writes);
            }
        }
        if lost_any {
            self.count(FaultKind::LostUnsynced, format_args!("inode {id}"));
        }
        if kept_any && survive_write < 1.0 {
            self.count(FaultKind::SpuriousDurability, format_args!("inode {id}"));
        }
        let inode = self.inode(id);
        inode.current = image.clone();
        inode.durable = image;
    }

    /// A pending operation of inode `id` survived: it reaches `image` (a write perhaps torn),
    /// and heals what it replaced.
    fn keep_pending(&mut self, id: u64, image: &mut Vec<u8>, op: Pending) {
        match op {
            Pending::SetLen { length, id: op_id } => {
                apply_set_len(image, length);
                self.heal(id, length..u64::MAX, op_id);
            }
            Pending::Write { offset, data, id: op_id } => {
                let replaced = self.land_write(id, image, offset, &data);
                self.confine_stray(op_id, &replaced);
                for landed in replaced {
                    self.heal(id, landed, op_id);
                }
            }
        }
    }

    /// A pending operation of inode `id` was lost. A lost write that would have grown the file
    /// may still have grown it (size before data), with zeros or garbage.
    fn lose_pending(&mut self, id: u64, image: &mut Vec<u8>, op: Pending, lost_writes: &mut BTreeSet<u64>) {
        let Pending::Write { offset, data, id: write_id } = op else { return };
        lost_writes.insert(write_id);
        let end = offset + data.len() as u64;
        if end > image.len() as u64 && self.chance(self.config.size_before_data) {
            self.count(FaultKind::SizeBeforeData, format_args!("inode {id} grows to {end}"));
            let old_length = image.len();
            apply_set_len(image, end);
            if self.rng.gen_bool(0.5) {
                self.rng.fill(&mut image[old_length..]);
            }
        }
    }

    /// Damage a lost write caused is gone with it; what remains no write can take back now.
    fn forget_lost_writes(&mut self, lost_writes: &BTreeSet<u64>) {
        self.damage.retain(|entry| entry.write_id.is_none_or(|write_id| !lost_writes.contains(&write_id)));
        for entry in &mut self.damage {
            entry.write_id = None;
        }
    }

    /// Settles every directory's pending entry operations into its durable entries.
    fn crash_directories(&mut self) {
        let paths: Vec<PathBuf> = self.directories.keys().cloned().collect();
        for path in paths {
            self.crash_directory(&path);
        }
    }

    /// Replays the pending entry operations of directory `path` on its durable entries, each
    /// one lost or not as the configuration says.
    fn crash_directory(&mut self, path: &Path) {
        let pending = std::mem::take(&mut self.directories.get_mut(path).expect("listed").pending);
        let mut entries = self.directories[path].durable.clone();
        for op in pending {
            if self.chance(self.config.dir_entry_lost) {
                self.count(FaultKind::DirEntryLost, format_args!("{} {op:?}", path.display()));
                continue;
            }
            replay(&mut entries, op);
        }
        let directory = self.directories.get_mut(path).expect("listed");
        directory.current = entries.clone();
        directory.durable = entries;
    }

    /// Files no durable name reaches are gone, no handle survives, and damage past the end of
    /// what remains is no damage.
    fn drop_unnamed_inodes(&mut self) {
        let named: BTreeSet<u64> =
            self.directories.values().flat_map(|directory| directory.durable.values().copied()).collect();
        self.inodes.retain(|id, _| named.contains(id));
        for inode in self.inodes.values_mut() {
            inode.handles = 0;
        }
        let inodes = &self.inodes;
        self.damage
            .retain(|entry| inodes.get(&entry.inode).is_some_and(|inode| entry.offset < inode.durable.len() as u64));
    }

    /// Power comes back: locks are released, a scheduled crash point is spent, and handles from
    /// the boot before go stale.
    fn reboot(&mut self) {
        self.locks.clear();
        self.powered_off = false;
        self.crash_at_io = None;
        self.boot += 1;
        self.trace.event(format_args!("crash boot {}", self.boot));
    }

    /// Lands a write that survived a crash, torn at sector granularity if the dice say so.
    /// Returns the ranges it replaced: a dropped sector keeps its old bytes, and their damage.
    fn land_write(&mut self, id: u64, image: &mut Vec<u8>, offset: u64, data: &[u8]) -> Vec<Range<u64>> {
        let end = offset + data.len() as u64;
        if data.len() as u64 <= 1 || !self.chance(self.config.torn_write) {
            apply_write(image, offset, data);
            let whole = offset..end;
            return vec![whole];
        }
        if (image.len() as u64) < end {
            apply_set_len(image, end);
        }
        let mut sector_start = offset;
        let mut torn_any = false;
        let mut replaced = Vec::new();
        while sector_start < end {
            let sector_end = ((sector_start / SECTOR_SIZE + 1) * SECTOR_SIZE).min(end);
            let slice = usize::try_from(sector_start - offset).expect("fits")
                ..usize::try_from(sector_end - offset).expect("fits");
            let target = usize::try_from(sector_start).expect("fits")..usize::try_from(sector_end).expect("fits");
            match self.rng.gen_range(0..3) {
                0 => {
                    image[target].copy_from_slice(&data[slice]);
                    replaced.push(sector_start..sector_end);
                }
                1 => torn_any = true,
                _ => {
                    // Garbage replaced the old bytes too; only a dropped sector keeps them.
                    torn_any = true;
                    self.rng.fill(&mut image[target]);
                    replaced.push(sector_start..sector_end);
                }
            }
            sector_start = sector_end;
        }
        if torn_any {
            self.count(FaultKind::TornWrite, format_args!("inode {id} offset {offset} length {}", data.len()));
        }
        replaced
    }

    /// Write `write_id` reached the disk only in `replaced` (a torn write drops sectors): if it
    /// was misdirected, the bytes it was meant to clobber where it landed are damaged only there
    /// (wal seed 10403: a stray copy over a header, torn, left the header whole).
    ///
    /// Where it was meant to land is no damage after the crash: that write was never synced, and
    /// its absence is what a lost unsynced write leaves (wal seed 8706: recovery kept the records
    /// before it, appended and sealed, and the zeros at its place were the seal's padding).
    fn confine_stray(&mut self, write_id: u64, replaced: &[Range<u64>]) {
        let mut kept = Vec::with_capacity(self.damage.len());
        for entry in self.damage.drain(..) {
            if entry.write_id != Some(write_id) {
                kept.push(entry);
                continue;
            }
            if !entry.stray {
                continue;
            }
            let end = entry.offset + entry.length;
            for range in replaced {
                let (start, stop) = (range.start.max(entry.offset), range.end.min(end));
                if start < stop {
                    kept.push(DamageEntry { offset: start, length: stop - start, ..entry.clone() });
                }
            }
        }
        self.damage = kept;
    }
}

/// Replays one directory operation on `entries`. Operations replay in order; one whose source
/// was lost does nothing.
fn replay(entries: &mut BTreeMap<String, u64>, op: DirOp) {
    match op {
        DirOp::Link { name, inode } => {
            entries.insert(name, inode);
        }
        DirOp::Unlink { name } => {
            entries.remove(&name);
        }
        DirOp::Rename { from, to } => {
            if let Some(inode) = entries.remove(&from) {
                entries.insert(to, inode);
            }
        }
    }
}
