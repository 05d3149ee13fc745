//! Maintenance on a background thread, for programs that embed logstor on the real filesystem.
//! It lives outside the deterministic core: the store itself spawns nothing, and the simulator
//! drives `separator_step` and `compact_step` directly.
//!
//! It is slack, not a duty: the store reclaims space on its own when a write finds free
//! segments short (see the `logstor` module docs), so a program that never runs this, or holds
//! the lock so that it never gets a turn, still keeps its disk use bounded. Running it moves
//! that work off the write path, so that writes rarely have to do it.
#![allow(clippy::disallowed_methods, reason = "the one helper that runs maintenance on a thread of its own")]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::Logstor;

/// A running maintenance thread; [`Maintenance::stop`] ends it and returns its first error.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
///
/// use ballast::logstor::{Logstor, LogstorOptions, Maintenance};
/// use ballast::vfs::OsVfs;
///
/// # fn main() -> ballast::Result<()> {
/// # let directory = tempfile::tempdir().expect("a temp dir");
/// let store = Logstor::open(Arc::new(OsVfs::new()), directory.path(), LogstorOptions::default())?;
/// let store = Arc::new(Mutex::new(store));
/// let maintenance = Maintenance::spawn(Arc::clone(&store), Duration::from_millis(5));
/// store.lock().unwrap().put(b"key", b"value")?;
/// maintenance.stop()?; // joins the thread; an error of a step would come back here
/// assert_eq!(store.lock().unwrap().get(b"key")?, Some(b"value".to_vec()));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Maintenance {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<crate::Result<()>>,
}

impl Maintenance {
    /// Runs a separator step and a compaction step every `interval`, each under the lock, until
    /// stopped or until a step fails (the store is then poisoned; reopen it). The thread gets
    /// the lock only when no one else holds it: a caller that keeps it busy does the
    /// reclaiming itself, in its writes.
    pub fn spawn(store: Arc<Mutex<Logstor>>, interval: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("ballast-logstor-maintenance".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    {
                        let mut store = store.lock().unwrap_or_else(|poison| poison.into_inner());
                        store.separator_step()?;
                        store.compact_step()?;
                    }
                    std::thread::sleep(interval);
                }
                Ok(())
            })
            .expect("the OS starts a thread");
        Self { stop, handle }
    }

    /// Stops the thread and waits for it.
    pub fn stop(self) -> crate::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}
