//! The simulated disk: a [`Vfs`](ballast::vfs::Vfs) that keeps, per file, a durable image and
//! the operations pending since the last sync, and per directory, the durable entries and the
//! entry operations pending since the last `sync_dir`. Reads see the newest state, as a page
//! cache would. A crash keeps any subset of what was pending (as the seed's fault configuration
//! allows), tears what it keeps, and forgets the rest. Every decision comes from one seeded RNG,
//! so a seed replays byte for byte.
//!
//! One concept a file: [`SimVfs`] and its public API here; the disk's state and its read, write,
//! sync and directory paths in `state`; power loss and torn landing in `crash`; the damage
//! ledger (what the disk knows it broke, and bit rot and latent sectors) in `damage`; the
//! handles (`SimFile`, `SimLock`) and the `Vfs` impls in `file`.

mod crash;
mod damage;
mod file;
mod ledger;
mod state;

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

pub use damage::Damage;
use state::{split, State};

use crate::clock::SimClock;
use crate::faults::{FaultConfig, FaultCounts};
use crate::trace::Trace;

/// Sector size: the unit in which torn writes tear and latent errors strike.
pub const SECTOR_SIZE: u64 = 512;
/// Bound on the files one simulation may hold, to catch a leaking engine early.
const FILES_MAX: usize = 100_000;

/// A [`Vfs`](ballast::vfs::Vfs) in memory with injected faults. Clones share one disk.
#[derive(Clone)]
pub struct SimVfs {
    state: Arc<Mutex<State>>,
}

impl fmt::Debug for SimVfs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimVfs").finish_non_exhaustive()
    }
}

impl SimVfs {
    /// A disk seeded with `seed`, injecting faults at the rates of `config`.
    pub fn new(seed: u64, config: FaultConfig, clock: SimClock, trace: Trace) -> Self {
        Self { state: Arc::new(Mutex::new(State::new(seed, config, clock, trace))) }
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

    /// Names in directory `path` as reads see them now. No I/O is counted; for checkers.
    pub fn current_names(&self, path: &Path) -> Vec<String> {
        let state = self.state();
        state.directories.get(path).map(|directory| directory.current.keys().cloned().collect()).unwrap_or_default()
    }

    /// The directories directly in `path`. No I/O is counted; for checkers.
    pub fn subdirectory_names(&self, path: &Path) -> Vec<String> {
        self.state().subdirectories(path)
    }

    /// Current length of `path`, without counting an I/O call; for checkers.
    pub fn current_length(&self, path: &Path) -> Option<u64> {
        let state = self.state();
        let id = state.lookup(path).ok()?;
        Some(state.inodes.get(&id)?.current.len() as u64)
    }
}
