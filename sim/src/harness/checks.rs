//! Checks more than one oracle makes the same way.

use std::path::Path;

use ballast::Error;

use super::{Context, Failure, OPEN_ATTEMPTS_MAX};
use crate::fail;
use crate::faults::FaultKind;
use crate::Damage;

/// Whether some of the `damage` is in the segment a segmented log (wal, commitlog) reported
/// `error`, a corruption, in; `segment_of` names a file's segment.
pub fn damage_explains(damage: &[Damage], error: &Error, segment_of: impl Fn(&Path) -> Option<u64>) -> bool {
    let Error::Corruption { segment, .. } = error else { return false };
    damage.iter().any(|damage| segment_of(&damage.path) == Some(*segment))
}

/// A live read of a segmented log (wal, commitlog) failed: an I/O error ends this read (the
/// next one tries again); corruption is excused only in a segment a write was misdirected into,
/// the one damage a live handle can meet in what it wrote; anything else fails the seed.
pub fn live_read_failed(
    context: &mut Context,
    error: Error,
    segment_of: impl Fn(&Path) -> Option<u64>,
) -> Result<(), Failure> {
    match error {
        Error::Io { .. } => {
            context.note("read_retried");
            Ok(())
        }
        Error::Corruption { segment, offset, .. } => {
            let misdirected =
                context.vfs.damage().iter().any(|damage| {
                    damage.kind == FaultKind::MisdirectedWrite && segment_of(&damage.path) == Some(segment)
                });
            if !misdirected {
                fail!("live read reported corruption in segment {segment} at {offset} with no damage there");
            }
            context.note("misdirected_write_detected");
            Ok(())
        }
        error => fail!("live read failed: {error}"),
    }
}

/// Runs `read` again after each I/O error (a transient read error, noted), and returns the
/// first other result for the caller to judge. So many I/O errors in a row that the disk
/// never lets the check read fail the seed: a check that gave up and judged nothing read would
/// either fail for the wrong reason or, where the oracle is lenient, forgive every loss.
pub fn retry_reads<T>(
    context: &mut Context,
    what: &str,
    mut read: impl FnMut() -> ballast::Result<T>,
) -> Result<ballast::Result<T>, Failure> {
    for _ in 0..OPEN_ATTEMPTS_MAX {
        match read() {
            Err(Error::Io { .. }) => context.note("read_retried"),
            other => return Ok(other),
        }
    }
    fail!("{what} met an I/O error {OPEN_ATTEMPTS_MAX} times in a row")
}
