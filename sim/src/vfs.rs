//! The simulated disk: a [`Vfs`] that keeps, per file, a durable image and the operations
//! pending since the last sync, and per directory, the durable entries and the entry operations
//! pending since the last `sync_dir`. Reads see the newest state, as a page cache would. A crash
//! keeps any subset of what was pending (as the seed's fault configuration allows), tears what
//! it keeps, and forgets the rest. Every decision comes from one seeded RNG, so a seed replays
//! byte for byte.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ballast::vfs::{OpenMode, Vfs, VfsFile, VfsLock};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::clock::SimClock;
use crate::faults::{FaultConfig, FaultCounts, FaultKind};
use crate::trace::Trace;

/// Sector size: the unit in which torn writes tear and latent errors strike.
pub const SECTOR_SIZE: u64 = 512;
/// Bound on the files one simulation may hold, to catch a leaking engine early.
const FILES_MAX: usize = 100_000;

/// A [`Vfs`] in memory with injected faults. Clones share one disk.
#[derive(Clone)]
pub struct SimVfs {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for SimVfs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimVfs").finish_non_exhaustive()
    }
}

/// Damage to durable data the disk knows it caused (classes 9, 10, 11), still present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub path: PathBuf,
    /// Where the damaged bytes start, and how many there are.
    pub offset: u64,
    pub length: u64,
    pub kind: FaultKind,
}

#[derive(Debug)]
enum Pending {
    Write { offset: u64, data: Vec<u8>, id: u64 },
    SetLen { length: u64, id: u64 },
}

impl Pending {
    /// The bytes this operation replaces, and its sequence number.
    fn replaced(&self) -> (Range<u64>, u64) {
        match self {
            Self::Write { offset, data, id } => (*offset..offset + data.len() as u64, *id),
            Self::SetLen { length, id } => (*length..u64::MAX, *id),
        }
    }
}

/// The smallest range of `image` from `at` whose bytes differ from `data` (past the image's end
/// a file reads as zeros), or `None` if `data` is what `image` already holds there.
fn differing(image: &[u8], at: u64, data: &[u8]) -> Option<Range<u64>> {
    let start = usize::try_from(at).expect("fits");
    let held = |index: usize| image.get(start + index).copied().unwrap_or(0);
    let first = (0..data.len()).find(|&index| held(index) != data[index])?;
    let last = (0..data.len()).rev().find(|&index| held(index) != data[index]).expect("first differs");
    Some(at + first as u64..at + last as u64 + 1)
}

/// Whether `range` covers sector `sector` whole.
fn covers_sector(range: &Range<u64>, sector: u64) -> bool {
    range.start <= sector * SECTOR_SIZE && (sector + 1) * SECTOR_SIZE <= range.end
}

#[derive(Debug, Default)]
struct Inode {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<Pending>,
    /// Sector index -> the wrong bytes it reads back as, until an overwrite reaches the durable
    /// image (a pending one only hides it: reads come from the page cache).
    latent: BTreeMap<u64, Vec<u8>>,
    handles: u32,
}

#[derive(Debug)]
enum DirOp {
    Link { name: String, inode: u64 },
    Unlink { name: String },
    Rename { from: String, to: String },
}

#[derive(Debug, Default)]
struct Directory {
    durable: BTreeMap<String, u64>,
    current: BTreeMap<String, u64>,
    pending: Vec<DirOp>,
}

#[derive(Clone, Debug)]
struct DamageEntry {
    inode: u64,
    offset: u64,
    length: u64,
    kind: FaultKind,
    /// The pending write that caused it, while that write may still be lost.
    write_id: Option<u64>,
    /// Only operations issued after this sequence number can replace the damaged bytes.
    sequence: u64,
    /// The bytes a misdirected write put where it landed: a crash that tears that write keeps
    /// only the parts of it that reached the disk.
    stray: bool,
}

struct State {
    rng: ChaCha8Rng,
    config: FaultConfig,
    faults_enabled: bool,
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    next_write_id: u64,
    directories: BTreeMap<PathBuf, Directory>,
    locks: BTreeMap<PathBuf, u64>,
    next_lock_token: u64,
    clock: SimClock,
    counts: FaultCounts,
    io_calls: u64,
    crash_at_io: Option<u64>,
    powered_off: bool,
    /// Incremented at every crash; handles from an earlier boot fail.
    boot: u64,
    damage: Vec<DamageEntry>,
    /// Writes that landed somewhere other than meant: they damage what they cover, so they
    /// never heal damage there.
    stray_writes: BTreeSet<u64>,
    trace: Trace,
}

fn power_loss() -> io::Error {
    io::Error::other("simulated power loss")
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("simulated EIO on {what}"))
}

fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok((parent, name.to_string()))
}

fn apply_write(bytes: &mut Vec<u8>, offset: u64, data: &[u8]) {
    // As on Linux, writing nothing changes nothing, even past the end of the file.
    if data.is_empty() {
        return;
    }
    let start = usize::try_from(offset).expect("simulated files fit in memory");
    let end = start + data.len();
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    bytes[start..end].copy_from_slice(data);
}

fn apply_set_len(bytes: &mut Vec<u8>, length: u64) {
    bytes.resize(usize::try_from(length).expect("simulated files fit in memory"), 0);
}

impl State {
    fn chance(&mut self, probability: f64) -> bool {
        self.faults_enabled && probability > 0.0 && self.rng.gen_bool(probability.min(1.0))
    }

    fn count(&mut self, kind: FaultKind, detail: impl fmt::Display) {
        self.counts.add(kind);
        self.trace.event(format_args!("fault {kind} {detail}"));
    }

    /// The bookkeeping every call does first: power, the crash point, latency.
    fn begin(&mut self, operation: fmt::Arguments<'_>) -> io::Result<()> {
        if self.powered_off {
            return Err(power_loss());
        }
        self.io_calls += 1;
        if self.faults_enabled && self.config.latency {
            let nanos = if self.rng.gen_bool(0.001) {
                self.counts.add(FaultKind::Latency);
                self.rng.gen_range(10_000_000..200_000_000)
            } else {
                self.rng.gen_range(5_000..200_000)
            };
            self.clock.advance(Duration::from_nanos(nanos));
        } else {
            self.clock.advance(Duration::from_micros(10));
        }
        self.trace.event(format_args!("io {} {operation}", self.io_calls));
        if self.crash_at_io == Some(self.io_calls) {
            self.powered_off = true;
            let io_calls = self.io_calls;
            self.count(FaultKind::CrashInsideOp, format_args!("at io {io_calls}"));
            return Err(power_loss());
        }
        Ok(())
    }

    fn inode(&mut self, id: u64) -> &mut Inode {
        self.inodes.get_mut(&id).expect("a handle's inode outlives the handle")
    }

    fn directory(&mut self, path: &Path) -> io::Result<&mut Directory> {
        self.directories.get_mut(path).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such directory"))
    }

    fn lookup(&self, path: &Path) -> io::Result<u64> {
        let (parent, name) = split(path)?;
        let directory = self
            .directories
            .get(&parent)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such directory"))?;
        directory.current.get(&name).copied().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))
    }

    /// Bytes held by files still reachable now (named, or open).
    fn used_bytes(&self) -> u64 {
        let named: BTreeSet<u64> =
            self.directories.values().flat_map(|directory| directory.current.values().copied()).collect();
        self.inodes
            .iter()
            .filter(|(id, inode)| named.contains(id) || inode.handles > 0)
            .map(|(_, inode)| inode.current.len() as u64)
            .sum()
    }

    fn path_of(&self, inode: u64) -> Option<PathBuf> {
        self.directories.iter().find_map(|(directory_path, directory)| {
            directory.current.iter().find(|(_, &id)| id == inode).map(|(name, _)| directory_path.join(name))
        })
    }

    fn read(&mut self, id: u64, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if self.chance(self.config.read_error) {
            self.count(FaultKind::ReadError, format_args!("inode {id} offset {offset}"));
            return Err(eio("read_at"));
        }
        let short = self.faults_enabled && self.rng.gen_bool(0.02);
        let inode = self.inodes.get(&id).expect("open inode exists");
        let length = inode.current.len() as u64;
        if offset >= length || buf.is_empty() {
            return Ok(0);
        }
        let mut count = usize::try_from((length - offset).min(buf.len() as u64)).expect("fits");
        if short && count > 1 {
            count = self.rng.gen_range(1..count);
        }
        let inode = self.inodes.get(&id).expect("open inode exists");
        let start = usize::try_from(offset).expect("fits");
        buf[..count].copy_from_slice(&inode.current[start..start + count]);
        // Latent sector errors overlay their wrong bytes on what is read, except where a pending
        // operation replaced the sector: that is read from the page cache.
        let first_sector = offset / SECTOR_SIZE;
        let last_sector = (offset + count as u64 - 1) / SECTOR_SIZE;
        let from_disk = |sector: &u64| !inode.pending.iter().any(|op| covers_sector(&op.replaced().0, *sector));
        for (&sector, wrong) in inode.latent.range(first_sector..=last_sector).filter(|(sector, _)| from_disk(sector)) {
            for (index, &byte) in wrong.iter().enumerate() {
                let at = sector * SECTOR_SIZE + index as u64;
                if at >= offset && at < offset + count as u64 {
                    buf[usize::try_from(at - offset).expect("fits")] = byte;
                }
            }
        }
        Ok(count)
    }

    fn write(&mut self, id: u64, data: &[u8], offset: u64) -> io::Result<()> {
        if let Some(capacity) = self.config.capacity_bytes.filter(|_| self.faults_enabled) {
            let length = self.inodes.get(&id).expect("open inode exists").current.len() as u64;
            let growth = (offset + data.len() as u64).saturating_sub(length);
            if growth > 0 && self.used_bytes() + growth > capacity {
                self.count(FaultKind::DiskFull, format_args!("inode {id} needs {growth} more bytes"));
                return Err(io::Error::new(io::ErrorKind::StorageFull, "simulated ENOSPC"));
            }
        }
        if self.chance(self.config.write_error) {
            let prefix = self.rng.gen_range(0..=data.len());
            self.count(
                FaultKind::WriteError,
                format_args!("inode {id} offset {offset} wrote {prefix} of {}", data.len()),
            );
            if prefix > 0 {
                self.push_write(id, offset, &data[..prefix]);
            }
            return Err(eio("write_at"));
        }
        if !data.is_empty() && self.chance(self.config.misdirected_write) {
            let length = self.inodes.get(&id).expect("open inode exists").current.len() as u64;
            let span = length.max(offset + data.len() as u64);
            let mut landed = self.rng.gen_range(0..=span) / SECTOR_SIZE * SECTOR_SIZE;
            if landed == offset {
                landed += SECTOR_SIZE;
            }
            self.count(FaultKind::MisdirectedWrite, format_args!("inode {id} offset {offset} landed at {landed}"));
            // Two places may be damaged: where it landed (it lost what it held) and where the
            // data should be (it keeps old bytes, or the stray copy if the two overlap). Only
            // bytes that differ from what was meant are damage: a write of the bytes a place
            // already held changes nothing there (wal seeds 889, 899: a header rewritten with
            // the same bytes, zero padding over zeros), and the oracles demand that damage be
            // reported.
            let landed_damage = differing(&self.inodes[&id].current, landed, data);
            let write_id = self.push_write(id, landed, data);
            self.stray_writes.insert(write_id);
            let intended_damage = differing(&self.inodes[&id].current, offset, data);
            for (range, stray) in [(landed_damage, true), (intended_damage, false)] {
                let Some(range) = range else { continue };
                self.damage.push(DamageEntry {
                    inode: id,
                    offset: range.start,
                    length: range.end - range.start,
                    kind: FaultKind::MisdirectedWrite,
                    write_id: Some(write_id),
                    sequence: write_id,
                    stray,
                });
            }
            return Ok(());
        }
        self.push_write(id, offset, data);
        Ok(())
    }

    fn push_write(&mut self, id: u64, offset: u64, data: &[u8]) -> u64 {
        let write_id = self.next_write_id;
        self.next_write_id += 1;
        let inode = self.inode(id);
        apply_write(&mut inode.current, offset, data);
        // A latent sector it covers is repaired only when the write reaches the disk (see
        // `heal`): a write lost to a crash or a failed fsync leaves the sector failing.
        inode.pending.push(Pending::Write { offset, data: data.to_vec(), id: write_id });
        write_id
    }

    fn sync(&mut self, id: u64) -> io::Result<()> {
        if self.faults_enabled && self.config.lying_fsync {
            return Ok(());
        }
        if self.chance(self.config.fsync_failure) {
            self.count(FaultKind::FsyncFailure, format_args!("inode {id}"));
            // Linux marks the failed pages clean: the data is gone, and the next fsync has
            // nothing left to report.
            let dropped: Vec<u64> = self
                .inode(id)
                .pending
                .iter()
                .filter_map(|pending| match pending {
                    Pending::Write { id, .. } => Some(*id),
                    Pending::SetLen { .. } => None,
                })
                .collect();
            let inode = self.inode(id);
            inode.pending.clear();
            inode.current = inode.durable.clone();
            self.damage.retain(|entry| entry.write_id.is_none_or(|write_id| !dropped.contains(&write_id)));
            return Err(eio("sync_data"));
        }
        let pending = std::mem::take(&mut self.inode(id).pending);
        for op in &pending {
            let (replaced, op_id) = op.replaced();
            self.heal(id, replaced, op_id);
        }
        let inode = self.inode(id);
        inode.durable = inode.current.clone();
        for entry in &mut self.damage {
            if entry.inode == id {
                entry.write_id = None;
            }
        }
        Ok(())
    }

    fn set_len(&mut self, id_of_inode: u64, length: u64) -> io::Result<()> {
        let id = id_of_inode;
        if let Some(capacity) = self.config.capacity_bytes.filter(|_| self.faults_enabled) {
            let current = self.inodes.get(&id).expect("open inode exists").current.len() as u64;
            if length > current && self.used_bytes() + (length - current) > capacity {
                self.count(FaultKind::DiskFull, format_args!("inode {id} set_len {length}"));
                return Err(io::Error::new(io::ErrorKind::StorageFull, "simulated ENOSPC"));
            }
        }
        let inode = self.inode(id);
        apply_set_len(&mut inode.current, length);
        let id = self.next_write_id;
        self.next_write_id += 1;
        self.inode(id_of_inode).pending.push(Pending::SetLen { length, id });
        Ok(())
    }

    fn dir_op(&mut self, parent: &Path, op: DirOp) -> io::Result<()> {
        let directory = self.directory(parent)?;
        match &op {
            DirOp::Link { name, inode } => {
                directory.current.insert(name.clone(), *inode);
            }
            DirOp::Unlink { name } => {
                directory.current.remove(name);
            }
            DirOp::Rename { from, to } => {
                let inode = directory.current.remove(from).expect("rename source was checked");
                directory.current.insert(to.clone(), inode);
            }
        }
        directory.pending.push(op);
        Ok(())
    }

    /// Pending operation `op_id` of inode `id` replaced the bytes `healed` of the durable image:
    /// damage there is gone, and so is a latent sector it covers whole (the drive remaps it).
    ///
    /// Only the bytes the operation replaced are healed: a write over part of a damaged range
    /// leaves the rest damaged. (It used to drop the whole range once a write covered its first
    /// byte, so a misdirected write straddling two segments looked healed while the second
    /// segment's first buffer was still broken: logstor seed 7838.) A latent sector used to be
    /// repaired as soon as a write reached the page cache; when that write was lost, the synced
    /// bytes under the sector read back whole, and a value recovery had been forgiven for losing
    /// came back (logstor seeds 13674, 26950, 33185).
    ///
    /// A stray copy of a misdirected write repairs a latent sector too, but heals no damage: its
    /// bytes are not what belongs there (wal seed 17383: a second stray copy over the first
    /// healed the first's damage, and recovery's loss of the record under it looked unexcused).
    fn heal(&mut self, id: u64, healed: Range<u64>, op_id: u64) {
        self.inode(id).latent.retain(|&sector, _| !covers_sector(&healed, sector));
        if self.stray_writes.contains(&op_id) {
            return;
        }
        let mut kept = Vec::with_capacity(self.damage.len());
        for entry in self.damage.drain(..) {
            let end = entry.offset + entry.length;
            if entry.inode != id || op_id <= entry.sequence || end <= healed.start || healed.end <= entry.offset {
                kept.push(entry);
                continue;
            }
            if entry.offset < healed.start {
                kept.push(DamageEntry { length: healed.start - entry.offset, ..entry.clone() });
            }
            if healed.end < end {
                kept.push(DamageEntry { offset: healed.end, length: end - healed.end, ..entry });
            }
        }
        self.damage = kept;
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

    /// Power loss: keep what the fault configuration lets survive, forget the rest.
    fn crash(&mut self) {
        let survive_write = match (self.faults_enabled, self.config.lost_unsynced) {
            (false, _) => 0.0,
            (true, false) => 1.0,
            (true, true) => self.config.spurious_durability,
        };
        let ids: Vec<u64> = self.inodes.keys().copied().collect();
        let mut lost_writes = BTreeSet::new();
        for id in ids {
            let pending = std::mem::take(&mut self.inode(id).pending);
            if pending.is_empty() {
                continue;
            }
            let mut image = std::mem::take(&mut self.inode(id).durable);
            let mut lost_any = false;
            let mut kept_any = false;
            for op in pending {
                let survives = survive_write >= 1.0 || (survive_write > 0.0 && self.rng.gen_bool(survive_write));
                match op {
                    Pending::SetLen { length, id: op_id } if survives => {
                        kept_any = true;
                        apply_set_len(&mut image, length);
                        self.heal(id, length..u64::MAX, op_id);
                    }
                    Pending::SetLen { .. } => lost_any = true,
                    Pending::Write { offset, data, id: op_id } if survives => {
                        kept_any = true;
                        let replaced = self.land_write(id, &mut image, offset, &data);
                        self.confine_stray(op_id, &replaced);
                        for landed in replaced {
                            self.heal(id, landed, op_id);
                        }
                    }
                    Pending::Write { offset, data, id: write_id } => {
                        lost_any = true;
                        lost_writes.insert(write_id);
                        let end = offset + data.len() as u64;
                        if end > image.len() as u64 && self.chance(self.config.size_before_data) {
                            self.count(FaultKind::SizeBeforeData, format_args!("inode {id} grows to {end}"));
                            let old_length = image.len();
                            apply_set_len(&mut image, end);
                            if self.rng.gen_bool(0.5) {
                                self.rng.fill(&mut image[old_length..]);
                            }
                        }
                    }
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
        self.damage.retain(|entry| entry.write_id.is_none_or(|write_id| !lost_writes.contains(&write_id)));
        for entry in &mut self.damage {
            entry.write_id = None;
        }
        let paths: Vec<PathBuf> = self.directories.keys().cloned().collect();
        for path in paths {
            let pending = std::mem::take(&mut self.directories.get_mut(&path).expect("listed").pending);
            let mut entries = self.directories[&path].durable.clone();
            for op in pending {
                if self.chance(self.config.dir_entry_lost) {
                    self.count(FaultKind::DirEntryLost, format_args!("{} {op:?}", path.display()));
                    continue;
                }
                // Operations replay in order; one whose source was lost does nothing.
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
            let directory = self.directories.get_mut(&path).expect("listed");
            directory.current = entries.clone();
            directory.durable = entries;
        }
        let named: BTreeSet<u64> =
            self.directories.values().flat_map(|directory| directory.durable.values().copied()).collect();
        self.inodes.retain(|id, _| named.contains(id));
        for inode in self.inodes.values_mut() {
            inode.handles = 0;
        }
        let inodes = &self.inodes;
        self.damage
            .retain(|entry| inodes.get(&entry.inode).is_some_and(|inode| entry.offset < inode.durable.len() as u64));
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
}

impl SimVfs {
    /// A disk seeded with `seed`, injecting faults at the rates of `config`.
    pub fn new(seed: u64, config: FaultConfig, clock: SimClock, trace: Trace) -> Self {
        let mut directories = BTreeMap::new();
        directories.insert(PathBuf::from("/"), Directory::default());
        directories.insert(PathBuf::new(), Directory::default());
        let state = State {
            rng: ChaCha8Rng::seed_from_u64(seed),
            config,
            faults_enabled: true,
            inodes: BTreeMap::new(),
            next_inode: 1,
            next_write_id: 1,
            directories,
            locks: BTreeMap::new(),
            next_lock_token: 1,
            clock,
            counts: FaultCounts::default(),
            io_calls: 0,
            crash_at_io: None,
            powered_off: false,
            boot: 0,
            damage: Vec::new(),
            stray_writes: BTreeSet::new(),
            trace,
        };
        Self { state: Arc::new(Mutex::new(state)) }
    }

    /// A fault-free disk, for tests.
    pub fn perfect(seed: u64) -> Self {
        Self::new(seed, FaultConfig::none(), SimClock::new(), Trace::off())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Cuts power now: pending operations are kept or lost as the configuration says, every
    /// open handle becomes stale, and locks are released.
    pub fn crash(&self) {
        self.state().crash();
    }

    /// Arranges for power to fail at the `k`-th I/O call from now (1 = the next call).
    pub fn crash_after_io_calls(&self, k: u64) {
        let mut state = self.state();
        assert!(k >= 1, "a crash point is a future call");
        state.crash_at_io = Some(state.io_calls + k);
    }

    /// Cancels a scheduled crash point that has not been reached.
    pub fn disarm_crash(&self) {
        self.state().crash_at_io = None;
    }

    /// True once a scheduled crash point was reached; cleared by [`SimVfs::crash`].
    pub fn is_powered_off(&self) -> bool {
        self.state().powered_off
    }

    /// Turns fault injection on or off. Off, the disk is perfect: crashes still lose unsynced
    /// data, but nothing else goes wrong.
    pub fn set_faults_enabled(&self, enabled: bool) {
        self.state().faults_enabled = enabled;
    }

    pub fn set_config(&self, config: FaultConfig) {
        self.state().config = config;
    }

    pub fn config(&self) -> FaultConfig {
        self.state().config.clone()
    }

    pub fn counts(&self) -> FaultCounts {
        self.state().counts
    }

    pub fn io_calls(&self) -> u64 {
        self.state().io_calls
    }

    pub fn clock(&self) -> SimClock {
        self.state().clock.clone()
    }

    /// Records a runner event in the trace, so the hash covers operations as well as I/O.
    pub fn trace_event(&self, event: fmt::Arguments<'_>) {
        self.state().trace.event(event);
    }

    pub fn trace_hash(&self) -> u64 {
        self.state().trace.hash()
    }

    /// Draws from the disk's RNG (for choices the runner makes about the disk).
    pub fn with_rng<T>(&self, draw: impl FnOnce(&mut ChaCha8Rng) -> T) -> T {
        draw(&mut self.state().rng)
    }

    /// Between lives: with the configured probabilities, flip a bit in, or make latent a sector
    /// of, durable data inside one of the `eligible` ranges. Returns what it damaged.
    pub fn rot(&self, eligible: &[(PathBuf, Range<u64>)]) -> Vec<Damage> {
        let mut state = self.state();
        let mut damaged = Vec::new();
        let candidates: Vec<(u64, PathBuf, Range<u64>)> = eligible
            .iter()
            .filter_map(|(path, range)| {
                let id = state.lookup(path).ok()?;
                let length = state.inodes.get(&id)?.durable.len() as u64;
                let range = range.start..range.end.min(length);
                (!range.is_empty()).then(|| (id, path.clone(), range))
            })
            .collect();
        if candidates.is_empty() {
            return damaged;
        }
        let (bit_rot, latent_sector) = (state.config.bit_rot, state.config.latent_sector);
        if state.chance(bit_rot) {
            let (id, path, range) = candidates[state.rng.gen_range(0..candidates.len())].clone();
            let offset = state.rng.gen_range(range);
            let bit = state.rng.gen_range(0..8);
            // A byte already rotted is left alone: flipping the same bit again would restore
            // it, and the ledger would demand a report of damage that is gone (wal seed 369150).
            let rotted = state
                .damage
                .iter()
                .any(|entry| entry.inode == id && entry.kind == FaultKind::BitRot && entry.offset == offset);
            if rotted {
                return damaged;
            }
            let inode = state.inode(id);
            let index = usize::try_from(offset).expect("fits");
            inode.durable[index] ^= 1 << bit;
            inode.current[index] ^= 1 << bit;
            state.count(FaultKind::BitRot, format_args!("{} offset {offset} bit {bit}", path.display()));
            let sequence = state.next_write_id - 1;
            state.damage.push(DamageEntry {
                inode: id,
                offset,
                length: 1,
                kind: FaultKind::BitRot,
                write_id: None,
                sequence,
                stray: false,
            });
            damaged.push(Damage { path, offset, length: 1, kind: FaultKind::BitRot });
        }
        if state.chance(latent_sector) {
            let (id, path, range) = candidates[state.rng.gen_range(0..candidates.len())].clone();
            let offset = state.rng.gen_range(range);
            let sector = offset / SECTOR_SIZE;
            let mut wrong = vec![0u8; usize::try_from(SECTOR_SIZE).expect("fits")];
            state.rng.fill(&mut wrong[..]);
            state.inode(id).latent.insert(sector, wrong);
            let sector_start = sector * SECTOR_SIZE;
            state.count(FaultKind::LatentSector, format_args!("{} sector {sector}", path.display()));
            let sequence = state.next_write_id - 1;
            state.damage.push(DamageEntry {
                inode: id,
                offset: sector_start,
                length: SECTOR_SIZE,
                kind: FaultKind::LatentSector,
                write_id: None,
                sequence,
                stray: false,
            });
            damaged.push(Damage { path, offset: sector_start, length: SECTOR_SIZE, kind: FaultKind::LatentSector });
        }
        damaged
    }

    /// The damage to data the disk knows it caused and that is still present.
    pub fn damage(&self) -> Vec<Damage> {
        let state = self.state();
        state
            .damage
            .iter()
            .filter_map(|entry| {
                let length = state.inodes.get(&entry.inode)?.current.len() as u64;
                let path = state.path_of(entry.inode)?;
                (entry.offset < length).then_some(Damage {
                    path,
                    offset: entry.offset,
                    length: entry.length,
                    kind: entry.kind,
                })
            })
            .collect()
    }

    /// The durable content of `path`, or `None` if it does not durably exist.
    pub fn durable_contents(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state();
        let (parent, name) = split(path).ok()?;
        let id = *state.directories.get(&parent)?.durable.get(&name)?;
        Some(state.inodes.get(&id)?.durable.clone())
    }

    /// Overwrites `path`'s durable and current content (for tests that hand-damage files).
    pub fn overwrite(&self, path: &Path, contents: Vec<u8>) -> io::Result<()> {
        let mut state = self.state();
        let id = state.lookup(path)?;
        let inode = state.inode(id);
        inode.pending.clear();
        inode.current = contents.clone();
        inode.durable = contents;
        Ok(())
    }

    /// Durable names in directory `path`.
    pub fn durable_names(&self, path: &Path) -> Vec<String> {
        let state = self.state();
        state.directories.get(path).map(|directory| directory.durable.keys().cloned().collect()).unwrap_or_default()
    }
}

#[derive(Debug)]
struct SimFile {
    vfs: SimVfs,
    inode: u64,
    boot: u64,
    writable: bool,
    label: String,
}

struct SimLock {
    vfs: SimVfs,
    path: PathBuf,
    token: u64,
}

impl fmt::Debug for SimLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimLock").field("path", &self.path).finish()
    }
}

impl VfsLock for SimLock {}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut state = self.vfs.state();
        if state.locks.get(&self.path) == Some(&self.token) {
            state.locks.remove(&self.path);
        }
    }
}

impl Vfs for SimVfs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>> {
        let mut state = self.state();
        state.begin(format_args!("open {} {mode:?}", path.display()))?;
        let (parent, name) = split(path)?;
        let existing = state.directory(&parent)?.current.get(&name).copied();
        let id = match (mode, existing) {
            (OpenMode::CreateNew, Some(_)) => return Err(io::Error::new(io::ErrorKind::AlreadyExists, "file exists")),
            (OpenMode::CreateNew, None) => {
                assert!(state.inodes.len() < FILES_MAX, "simulation holds fewer than {FILES_MAX} files");
                let id = state.next_inode;
                state.next_inode += 1;
                state.inodes.insert(id, Inode::default());
                state.dir_op(&parent, DirOp::Link { name, inode: id })?;
                id
            }
            (_, None) => return Err(io::Error::new(io::ErrorKind::NotFound, "no such file")),
            (_, Some(id)) => id,
        };
        state.inode(id).handles += 1;
        let boot = state.boot;
        drop(state);
        Ok(Box::new(SimFile {
            vfs: self.clone(),
            inode: id,
            boot,
            writable: mode != OpenMode::Read,
            label: path.display().to_string(),
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.begin(format_args!("remove {}", path.display()))?;
        state.lookup(path)?;
        let (parent, name) = split(path)?;
        state.dir_op(&parent, DirOp::Unlink { name })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.begin(format_args!("rename {} {}", from.display(), to.display()))?;
        let (from_parent, from_name) = split(from)?;
        let (to_parent, to_name) = split(to)?;
        if from_parent != to_parent {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "rename across directories"));
        }
        state.lookup(from)?;
        state.dir_op(&from_parent, DirOp::Rename { from: from_name, to: to_name })
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.begin(format_args!("mkdir {}", path.display()))?;
        // Directories themselves are durable at once: the engine syncs the parent anyway, and
        // losing a whole directory is outside the fault model.
        for ancestor in path.ancestors() {
            state.directories.entry(ancestor.to_path_buf()).or_default();
        }
        Ok(())
    }

    fn read_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut state = self.state();
        state.begin(format_args!("read_dir {}", path.display()))?;
        Ok(state.directory(path)?.current.keys().cloned().collect())
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.begin(format_args!("sync_dir {}", path.display()))?;
        if state.faults_enabled && state.config.lying_fsync {
            return Ok(());
        }
        let directory = state.directory(path)?;
        directory.durable = directory.current.clone();
        directory.pending.clear();
        Ok(())
    }

    fn lock_dir(&self, path: &Path) -> io::Result<Box<dyn VfsLock>> {
        let mut state = self.state();
        state.begin(format_args!("lock {}", path.display()))?;
        state.directory(path)?;
        if state.locks.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "directory is locked"));
        }
        let token = state.next_lock_token;
        state.next_lock_token += 1;
        state.locks.insert(path.to_path_buf(), token);
        Ok(Box::new(SimLock { vfs: self.clone(), path: path.to_path_buf(), token }))
    }
}

impl SimFile {
    fn state(&self, operation: fmt::Arguments<'_>) -> io::Result<MutexGuard<'_, State>> {
        let mut state = self.vfs.state();
        state.begin(operation)?;
        if state.boot != self.boot {
            return Err(io::Error::other("stale handle from before a crash"));
        }
        Ok(state)
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::new(io::ErrorKind::PermissionDenied, "file opened read-only"))
        }
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut state = self.vfs.state();
        if state.boot == self.boot {
            if let Some(inode) = state.inodes.get_mut(&self.inode) {
                inode.handles = inode.handles.saturating_sub(1);
            }
        }
    }
}

impl VfsFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut state = self.state(format_args!("read {} {offset}+{}", self.label, buf.len()))?;
        state.read(self.inode, buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check_writable()?;
        let mut state =
            self.state(format_args!("write {} {offset}+{} crc {:08x}", self.label, buf.len(), crc32(buf)))?;
        state.write(self.inode, buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.check_writable()?;
        let mut state = self.state(format_args!("sync {}", self.label))?;
        state.sync(self.inode)
    }

    fn len(&self) -> io::Result<u64> {
        let mut state = self.state(format_args!("len {}", self.label))?;
        Ok(state.inode(self.inode).current.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check_writable()?;
        let mut state = self.state(format_args!("set_len {} {len}", self.label))?;
        state.set_len(self.inode, len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        self.check_writable()?;
        let mut state = self.state(format_args!("allocate {} {len}", self.label))?;
        let current = state.inode(self.inode).current.len() as u64;
        if len > current {
            state.set_len(self.inode, len)?;
        }
        Ok(())
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    // FNV-1a folded to 32 bits: only a fingerprint for traces, not a checksum of record.
    let mut hash: u32 = 0x811c_9dc5;
    for &byte in bytes {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

impl SimVfs {
    /// Names in directory `path` as reads see them now. No I/O is counted; for checkers.
    pub fn current_names(&self, path: &Path) -> Vec<String> {
        let state = self.state();
        state.directories.get(path).map(|directory| directory.current.keys().cloned().collect()).unwrap_or_default()
    }

    /// Current length of `path`, without counting an I/O call; for checkers.
    pub fn current_length(&self, path: &Path) -> Option<u64> {
        let state = self.state();
        let id = state.lookup(path).ok()?;
        Some(state.inodes.get(&id)?.current.len() as u64)
    }
}
