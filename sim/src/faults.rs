//! The fault classes of `docs/faults.md`, their keys, and the per-seed configuration of rates.

use std::fmt;

/// One class of `docs/faults.md`. The key (its `Display`) names it in summaries, JSON and traces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    LostUnsynced,
    SpuriousDurability,
    TornWrite,
    SizeBeforeData,
    DirEntryLost,
    FsyncFailure,
    WriteError,
    ReadError,
    LatentSector,
    BitRot,
    MisdirectedWrite,
    DiskFull,
    Latency,
    CrashInsideOp,
}

impl FaultKind {
    pub const ALL: [FaultKind; 14] = [
        Self::LostUnsynced,
        Self::SpuriousDurability,
        Self::TornWrite,
        Self::SizeBeforeData,
        Self::DirEntryLost,
        Self::FsyncFailure,
        Self::WriteError,
        Self::ReadError,
        Self::LatentSector,
        Self::BitRot,
        Self::MisdirectedWrite,
        Self::DiskFull,
        Self::Latency,
        Self::CrashInsideOp,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Self::LostUnsynced => "lost_unsynced",
            Self::SpuriousDurability => "spurious_durability",
            Self::TornWrite => "torn_write",
            Self::SizeBeforeData => "size_before_data",
            Self::DirEntryLost => "dir_entry_lost",
            Self::FsyncFailure => "fsync_failure",
            Self::WriteError => "write_error",
            Self::ReadError => "read_error",
            Self::LatentSector => "latent_sector",
            Self::BitRot => "bit_rot",
            Self::MisdirectedWrite => "misdirected_write",
            Self::DiskFull => "disk_full",
            Self::Latency => "latency",
            Self::CrashInsideOp => "crash_inside_op",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// How many faults of each class were injected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts(pub [u64; 14]);

impl FaultCounts {
    pub fn add(&mut self, kind: FaultKind) {
        self.0[kind.index()] += 1;
    }

    pub fn get(&self, kind: FaultKind) -> u64 {
        self.0[kind.index()]
    }

    pub fn merge(&mut self, other: &FaultCounts) {
        for (total, count) in self.0.iter_mut().zip(other.0) {
            *total += count;
        }
    }
}

/// The rates a [`crate::SimVfs`] injects faults at. Probabilities are per call (per pending
/// operation at a crash). Drawn per seed by the swarm; all zero means a perfect disk.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultConfig {
    /// Crash drops pending writes (1). When false the disk keeps everything written, as a
    /// disk with power-loss protection would.
    pub lost_unsynced: bool,
    /// Probability each pending write survives a crash anyway (2); needs `lost_unsynced`.
    pub spurious_durability: f64,
    /// Probability a surviving write lands torn at sector granularity (3).
    pub torn_write: f64,
    /// Probability a lost appending write still leaves the file longer (4).
    pub size_before_data: f64,
    /// Probability each pending directory operation is lost at a crash (5).
    pub dir_entry_lost: f64,
    /// Probability a `sync_data` fails and drops the pending data (6).
    pub fsync_failure: f64,
    /// Probability a `write_at` fails with EIO after writing a prefix (7).
    pub write_error: f64,
    /// Probability a `read_at` fails with EIO, transiently (8).
    pub read_error: f64,
    /// Probability, per life, that a durable sector of an eligible file reads back wrong (9).
    pub latent_sector: f64,
    /// Probability, per life, that a bit flips in durable data of an eligible file (10).
    pub bit_rot: f64,
    /// Probability a `write_at` lands at another offset of the same file (11).
    pub misdirected_write: f64,
    /// Total bytes the disk holds (12); `None` for unlimited.
    pub capacity_bytes: Option<u64>,
    /// Every call advances the clock by a drawn latency, with rare stalls (13).
    pub latency: bool,
    /// Probability a crash is cut inside an operation, at its k-th I/O call (14).
    pub crash_inside_op: f64,
    /// Canary: `sync_data` returns `Ok` but keeps the data pending, as a lying disk would.
    pub lying_fsync: bool,
}

impl FaultConfig {
    /// A perfect disk: crashes lose unsynced data, nothing else goes wrong.
    pub fn none() -> Self {
        Self {
            lost_unsynced: true,
            spurious_durability: 0.0,
            torn_write: 0.0,
            size_before_data: 0.0,
            dir_entry_lost: 0.0,
            fsync_failure: 0.0,
            write_error: 0.0,
            read_error: 0.0,
            latent_sector: 0.0,
            bit_rot: 0.0,
            misdirected_write: 0.0,
            capacity_bytes: None,
            latency: false,
            crash_inside_op: 0.0,
            lying_fsync: false,
        }
    }
}

impl fmt::Display for FaultConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "lost_unsynced={} spurious_durability={:.3} torn_write={:.3} size_before_data={:.3} \
             dir_entry_lost={:.3} fsync_failure={:.4} write_error={:.4} read_error={:.4} \
             latent_sector={:.3} bit_rot={:.3} misdirected_write={:.4} disk_full={} latency={} \
             crash_inside_op={:.3}{}",
            self.lost_unsynced,
            self.spurious_durability,
            self.torn_write,
            self.size_before_data,
            self.dir_entry_lost,
            self.fsync_failure,
            self.write_error,
            self.read_error,
            self.latent_sector,
            self.bit_rot,
            self.misdirected_write,
            self.capacity_bytes.map_or("off".to_string(), |bytes| format!("{bytes}B")),
            self.latency,
            self.crash_inside_op,
            if self.lying_fsync { " canary=lying-fsync" } else { "" },
        )
    }
}
