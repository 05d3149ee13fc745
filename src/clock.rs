//! Time. [`SystemClock`] is the only code in the engine that reads the OS clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types, reason = "the one place allowed to read OS time")]

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of time. Object safe; held as `Arc<dyn Clock>`.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Time since an origin fixed when the clock was made. Must never go backwards.
    fn monotonic(&self) -> Duration;

    /// Wall-clock time since the Unix epoch. May jump in either direction; use it for labels,
    /// never for ordering or timeouts.
    fn wall(&self) -> Duration;
}

/// The operating system's clocks.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
    last_monotonic: Mutex<Duration>,
}

impl SystemClock {
    pub fn new() -> Self {
        Self { origin: Instant::now(), last_monotonic: Mutex::new(Duration::ZERO) }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn monotonic(&self) -> Duration {
        let now = self.origin.elapsed();
        let mut last = self.last_monotonic.lock().unwrap_or_else(|poison| poison.into_inner());
        assert!(now >= *last, "monotonic clock went backwards: {now:?} < {last:?}");
        *last = now;
        now
    }

    fn wall(&self) -> Duration {
        // A clock set before 1970 reads as the epoch rather than failing the caller.
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO)
    }
}
