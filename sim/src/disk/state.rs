//! The disk's state: inodes with their durable image and pending operations, directories with
//! their durable entries and pending entry operations, and the paths every call takes through
//! them (read, write, sync, set_len, directory operations).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::ledger::{covers_sector, differing, DamageEntry};
use super::SECTOR_SIZE;
use crate::clock::SimClock;
use crate::faults::{FaultConfig, FaultCounts, FaultKind};
use crate::trace::Trace;

#[derive(Debug)]
pub(super) enum Pending {
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

#[derive(Debug, Default)]
pub(super) struct Inode {
    pub(super) durable: Vec<u8>,
    pub(super) current: Vec<u8>,
    pub(super) pending: Vec<Pending>,
    /// Sector index -> the wrong bytes it reads back as, until an overwrite reaches the durable
    /// image (a pending one only hides it: reads come from the page cache).
    pub(super) latent: BTreeMap<u64, Vec<u8>>,
    pub(super) handles: u32,
}

#[derive(Debug)]
pub(super) enum DirOp {
    Link { name: String, inode: u64 },
    Unlink { name: String },
    Rename { from: String, to: String },
}

#[derive(Debug, Default)]
pub(super) struct Directory {
    pub(super) durable: BTreeMap<String, u64>,
    pub(super) current: BTreeMap<String, u64>,
    pub(super) pending: Vec<DirOp>,
}

pub(super) struct State {
    pub(super) rng: ChaCha8Rng,
    pub(super) config: FaultConfig,
    pub(super) faults_enabled: bool,
    pub(super) inodes: BTreeMap<u64, Inode>,
    pub(super) next_inode: u64,
    pub(super) next_write_id: u64,
    pub(super) directories: BTreeMap<PathBuf, Directory>,
    pub(super) locks: BTreeMap<PathBuf, u64>,
    pub(super) next_lock_token: u64,
    pub(super) clock: SimClock,
    pub(super) counts: FaultCounts,
    pub(super) io_calls: u64,
    pub(super) crash_at_io: Option<u64>,
    pub(super) powered_off: bool,
    /// Incremented at every crash; handles from an earlier boot fail.
    pub(super) boot: u64,
    pub(super) damage: Vec<DamageEntry>,
    /// Writes that landed somewhere other than meant: they damage what they cover, so they
    /// never heal damage there.
    pub(super) stray_writes: BTreeSet<u64>,
    pub(super) trace: Trace,
}

fn power_loss() -> io::Error {
    io::Error::other("simulated power loss")
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("simulated EIO on {what}"))
}

pub(super) fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let parent = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok((parent, name.to_string()))
}

pub(super) fn apply_write(bytes: &mut Vec<u8>, offset: u64, data: &[u8]) {
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

pub(super) fn apply_set_len(bytes: &mut Vec<u8>, length: u64) {
    bytes.resize(usize::try_from(length).expect("simulated files fit in memory"), 0);
}

impl State {
    pub(super) fn new(seed: u64, config: FaultConfig, clock: SimClock, trace: Trace) -> Self {
        let mut directories = BTreeMap::new();
        directories.insert(PathBuf::from("/"), Directory::default());
        directories.insert(PathBuf::new(), Directory::default());
        Self {
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
        }
    }

    pub(super) fn chance(&mut self, probability: f64) -> bool {
        self.faults_enabled && probability > 0.0 && self.rng.gen_bool(probability.min(1.0))
    }

    pub(super) fn count(&mut self, kind: FaultKind, detail: impl fmt::Display) {
        self.counts.add(kind);
        self.trace.event(format_args!("fault {kind} {detail}"));
    }

    /// The bookkeeping every call does first: power, the crash point, latency.
    pub(super) fn begin(&mut self, operation: fmt::Arguments<'_>) -> io::Result<()> {
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

    pub(super) fn inode(&mut self, id: u64) -> &mut Inode {
        self.inodes.get_mut(&id).expect("a handle's inode outlives the handle")
    }

    pub(super) fn directory(&mut self, path: &Path) -> io::Result<&mut Directory> {
        self.directories.get_mut(path).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such directory"))
    }

    /// The names of the directories directly in `path`, sorted.
    pub(super) fn subdirectories(&self, path: &Path) -> Vec<String> {
        let children = self.directories.keys().filter(|child| child.parent() == Some(path) && *child != path);
        children.filter_map(|child| Some(child.file_name()?.to_str()?.to_string())).collect()
    }

    /// Renames directory `from` and everything under it to `to`, which must not exist. Like
    /// every directory operation of this disk, durable at once (docs/faults.md: directories).
    pub(super) fn rename_directory(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        if self.directories.contains_key(to) || self.lookup(to).is_ok() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "rename onto an existing name"));
        }
        let moved: Vec<PathBuf> = self.directories.keys().filter(|path| path.starts_with(from)).cloned().collect();
        for path in moved {
            let directory = self.directories.remove(&path).expect("listed");
            let renamed = to.join(path.strip_prefix(from).expect("under from"));
            self.directories.insert(renamed, directory);
        }
        Ok(())
    }

    /// Removes the empty directory `path`, durably at once.
    pub(super) fn remove_directory(&mut self, path: &Path) -> io::Result<()> {
        let directory = self.directory(path)?;
        if !directory.current.is_empty() || !self.subdirectories(path).is_empty() {
            return Err(io::Error::new(io::ErrorKind::DirectoryNotEmpty, "directory not empty"));
        }
        self.directories.remove(path);
        Ok(())
    }

    pub(super) fn lookup(&self, path: &Path) -> io::Result<u64> {
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

    pub(super) fn path_of(&self, inode: u64) -> Option<PathBuf> {
        self.directories.iter().find_map(|(directory_path, directory)| {
            directory.current.iter().find(|(_, &id)| id == inode).map(|(name, _)| directory_path.join(name))
        })
    }

    pub(super) fn read(&mut self, id: u64, buf: &mut [u8], offset: u64) -> io::Result<usize> {
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

    pub(super) fn write(&mut self, id: u64, data: &[u8], offset: u64) -> io::Result<()> {
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

    pub(super) fn sync(&mut self, id: u64) -> io::Result<()> {
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

    pub(super) fn set_len(&mut self, id_of_inode: u64, length: u64) -> io::Result<()> {
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

    pub(super) fn dir_op(&mut self, parent: &Path, op: DirOp) -> io::Result<()> {
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
}
