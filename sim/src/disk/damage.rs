//! The damage ledger: what the disk knows it broke in durable data (misdirected writes, bit rot,
//! latent sectors) and is still there, so that the oracles know what they may forgive; how an
//! overwrite heals it; and the rot that strikes between lives.

use std::ops::Range;
use std::path::PathBuf;

use rand::Rng;

use super::ledger::{covers_sector, DamageEntry};
use super::state::State;
use super::{SimVfs, SECTOR_SIZE};
use crate::faults::FaultKind;

/// Damage to durable data the disk knows it caused (classes 9, 10, 11), still present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub path: PathBuf,
    /// Where the damaged bytes start, and how many there are.
    pub offset: u64,
    pub length: u64,
    pub kind: FaultKind,
}

/// A file `eligible` for rot: its inode, its path and the range of its durable data that may rot.
type Candidate = (u64, PathBuf, Range<u64>);

impl State {
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
    pub(super) fn heal(&mut self, id: u64, healed: Range<u64>, op_id: u64) {
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

    /// The `eligible` ranges clipped to the durable data of files that exist.
    fn rot_candidates(&self, eligible: &[(PathBuf, Range<u64>)]) -> Vec<Candidate> {
        eligible
            .iter()
            .filter_map(|(path, range)| {
                let id = self.lookup(path).ok()?;
                let length = self.inodes.get(&id)?.durable.len() as u64;
                let range = range.start..range.end.min(length);
                (!range.is_empty()).then(|| (id, path.clone(), range))
            })
            .collect()
    }

    /// Flips a bit of one of the `candidates`, or changes nothing after its draws and returns
    /// `None` if the byte drawn has rotted already.
    fn flip_bit(&mut self, candidates: &[Candidate]) -> Option<Damage> {
        let (id, path, range) = candidates[self.rng.gen_range(0..candidates.len())].clone();
        let offset = self.rng.gen_range(range);
        let bit = self.rng.gen_range(0..8);
        // A byte already rotted is left alone: flipping the same bit again would restore
        // it, and the ledger would demand a report of damage that is gone (wal seed 369150).
        let rotted = self
            .damage
            .iter()
            .any(|entry| entry.inode == id && entry.kind == FaultKind::BitRot && entry.offset == offset);
        if rotted {
            return None;
        }
        let inode = self.inode(id);
        let index = usize::try_from(offset).expect("fits");
        inode.durable[index] ^= 1 << bit;
        inode.current[index] ^= 1 << bit;
        self.count(FaultKind::BitRot, format_args!("{} offset {offset} bit {bit}", path.display()));
        Some(self.record_rot(id, path, offset, 1, FaultKind::BitRot))
    }

    /// Makes latent a sector of one of the `candidates`: it reads back as random bytes.
    fn make_latent(&mut self, candidates: &[Candidate]) -> Damage {
        let (id, path, range) = candidates[self.rng.gen_range(0..candidates.len())].clone();
        let offset = self.rng.gen_range(range);
        let sector = offset / SECTOR_SIZE;
        let mut wrong = vec![0u8; usize::try_from(SECTOR_SIZE).expect("fits")];
        self.rng.fill(&mut wrong[..]);
        self.inode(id).latent.insert(sector, wrong);
        let sector_start = sector * SECTOR_SIZE;
        self.count(FaultKind::LatentSector, format_args!("{} sector {sector}", path.display()));
        self.record_rot(id, path, sector_start, SECTOR_SIZE, FaultKind::LatentSector)
    }

    /// Enters rot in the ledger: only operations issued from now on can replace the bytes.
    fn record_rot(&mut self, inode: u64, path: PathBuf, offset: u64, length: u64, kind: FaultKind) -> Damage {
        let sequence = self.next_write_id - 1;
        self.damage.push(DamageEntry { inode, offset, length, kind, write_id: None, sequence, stray: false });
        Damage { path, offset, length, kind }
    }
}

impl SimVfs {
    /// Between lives: with the configured probabilities, flip a bit in, or make latent a sector
    /// of, durable data inside one of the `eligible` ranges. Returns what it damaged.
    pub fn rot(&self, eligible: &[(PathBuf, Range<u64>)]) -> Vec<Damage> {
        let mut state = self.state();
        let mut damaged = Vec::new();
        let candidates = state.rot_candidates(eligible);
        if candidates.is_empty() {
            return damaged;
        }
        let (bit_rot, latent_sector) = (state.config.bit_rot, state.config.latent_sector);
        if state.chance(bit_rot) {
            // A byte that rotted already ends this rot: no sector goes latent either.
            let Some(flipped) = state.flip_bit(&candidates) else { return damaged };
            damaged.push(flipped);
        }
        if state.chance(latent_sector) {
            damaged.push(state.make_latent(&candidates));
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
}
