//! Simulated time: advanced only by the simulated disk's latencies and by the runner.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ballast::clock::Clock;

/// A [`Clock`] that moves only when told to. Clones share the same time.
#[derive(Clone, Debug, Default)]
pub struct SimClock {
    nanos: Arc<AtomicU64>,
}

/// The wall time a simulation starts at: 2026-01-01T00:00:00Z, fixed so runs are reproducible.
const WALL_ORIGIN_SECONDS: u64 = 1_767_225_600;

impl SimClock {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }
}

impl Clock for SimClock {
    fn monotonic(&self) -> Duration {
        self.now()
    }

    fn wall(&self) -> Duration {
        Duration::from_secs(WALL_ORIGIN_SECONDS) + self.now()
    }
}
