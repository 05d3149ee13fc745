//! The per-seed swarm draw: which fault classes are on and at what rates, and the canary a run
//! may plant on top of them.

use std::ops::Range;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::Canary;
use crate::faults::FaultConfig;

/// Draws which fault classes are on for this seed, and their rates (swarm testing).
pub fn draw_faults(rng: &mut ChaCha8Rng, segment_size: u64) -> FaultConfig {
    let mut config = FaultConfig::none();
    if rng.gen_bool(0.1) {
        return config;
    }
    // Each class is on with some probability, and when on its rate is drawn from a range.
    let rate =
        |rng: &mut ChaCha8Rng, on: f64, range: Range<f64>| if rng.gen_bool(on) { rng.gen_range(range) } else { 0.0 };
    config.lost_unsynced = rng.gen_bool(0.9);
    config.spurious_durability = rate(rng, 0.5, 0.1..0.9);
    config.torn_write = rate(rng, 0.5, 0.1..0.8);
    config.size_before_data = rate(rng, 0.5, 0.1..0.8);
    config.dir_entry_lost = rate(rng, 0.5, 0.1..0.7);
    config.fsync_failure = rate(rng, 0.3, 0.002..0.05);
    config.write_error = rate(rng, 0.3, 0.002..0.03);
    config.read_error = rate(rng, 0.3, 0.001..0.02);
    config.latent_sector = rate(rng, 0.3, 0.1..0.6);
    config.bit_rot = rate(rng, 0.3, 0.1..0.6);
    config.misdirected_write = rate(rng, 0.3, 0.002..0.03);
    if rng.gen_bool(0.2) {
        config.capacity_bytes = Some(segment_size * rng.gen_range(4..10));
    }
    config.latency = rng.gen_bool(0.5);
    config.crash_inside_op = rate(rng, 0.5, 0.2..0.8);
    config
}

/// Plants the lying-fsync canary in `faults`: syncs succeed and keep the data pending, and a
/// crash loses it, so the oracle must see synced data vanish.
pub fn apply_canary(canary: Option<Canary>, faults: &mut FaultConfig) {
    if canary == Some(Canary::LyingFsync) {
        faults.lying_fsync = true;
        faults.lost_unsynced = true;
        faults.spurious_durability = 0.0;
    }
}
