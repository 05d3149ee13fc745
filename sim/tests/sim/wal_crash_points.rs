//! Power cut at every I/O call of a repair: whatever point it stops at, the next open either
//! reports the corruption again or finishes the repair and reports it, and never drops synced
//! records silently.
//!
//! Regression (simulator, wal seed 21 when found): a repair removed the later segments, then
//! its truncation failed; the next open saw the damaged segment as the last one, cut it as a
//! torn tail, and reported nothing. Repairs now write a plan durably before acting.
//!
//! Also a power cut at every I/O call while a truncated segment's file is reused.

use std::path::Path;
use std::sync::Arc;

use ballast::wal::{Position, RecoveryMode, Wal, WalOptions};
use ballast::Error;
use ballast_sim::SimVfs;

const DIRECTORY: &str = "/wal";

fn options(recovery_mode: RecoveryMode) -> WalOptions {
    WalOptions {
        segment_size: 1024,
        page_size: 256,
        recovery_mode,
        preallocate: 512,
        recycle_segments: 0,
        first_segment: 0,
    }
}

/// A synced four-segment log whose segment 1 is damaged; returns the disk and the positions.
fn damaged_log() -> (SimVfs, Vec<Position>, usize) {
    let vfs = SimVfs::perfect(1);
    let mut wal = Wal::open(Arc::new(vfs.clone()), DIRECTORY, options(RecoveryMode::Strict)).unwrap();
    let positions: Vec<Position> = (0..40).map(|index| wal.append(&[index as u8; 90]).unwrap()).collect();
    wal.close().unwrap();
    let damaged = positions.iter().position(|position| position.segment == 1).unwrap() + 2;
    let path = Path::new(DIRECTORY).join("00000001");
    let mut bytes = vfs.durable_contents(&path).unwrap();
    bytes[positions[damaged].offset as usize + 20] ^= 0x40;
    vfs.overwrite(&path, bytes).unwrap();
    (vfs, positions, damaged)
}

fn records(wal: &Wal) -> Vec<Position> {
    wal.records().map(|item| item.unwrap().0).collect()
}

#[test]
fn a_repair_interrupted_at_any_io_call_is_never_silent() {
    let mut completed = false;
    for k in 1..200 {
        let (vfs, positions, damaged) = damaged_log();
        let expected: Vec<Position> = positions[..damaged].to_vec();
        vfs.crash_after_io_calls(k);
        let first = Wal::open(Arc::new(vfs.clone()), DIRECTORY, options(RecoveryMode::Repair));
        if let Ok(wal) = first {
            assert!(!vfs.is_powered_off());
            vfs.disarm_crash();
            assert_eq!(records(&wal), expected);
            completed = true;
            break;
        }
        assert!(vfs.is_powered_off(), "crash point {k}: the open failed only because power did");
        vfs.crash();
        match Wal::open(Arc::new(vfs.clone()), DIRECTORY, options(RecoveryMode::Strict)) {
            Ok(wal) => {
                let repair = wal.recovery_report().repair.clone();
                assert!(
                    repair.as_ref().is_some_and(|repair| repair.resumed),
                    "crash point {k}: a strict open after an interrupted repair must report it: {repair:?}"
                );
                assert_eq!(records(&wal), expected, "crash point {k}");
            }
            Err(Error::Corruption { segment: 1, .. }) => {
                let wal = Wal::open(Arc::new(vfs.clone()), DIRECTORY, options(RecoveryMode::Repair)).unwrap();
                assert!(wal.recovery_report().repair.is_some(), "crash point {k}");
                assert_eq!(records(&wal), expected, "crash point {k}");
            }
            Err(error) => panic!("crash point {k}: {error}"),
        }
    }
    assert!(completed, "some crash point lies beyond the whole repair");
}

/// What a reopened log holds: every record with its position and bytes.
fn contents(wal: &Wal) -> Vec<(Position, Vec<u8>)> {
    wal.records().map(|item| item.unwrap()).collect()
}

/// Power cut at every I/O call while a rotation reuses the file of a truncated segment, records
/// go into it, and it is sealed in turn: the next strict open always succeeds, reads back every
/// synced record and nothing that was not appended (the old segment's fragments, all valid
/// records of segment 0, never come back).
#[test]
fn reusing_a_truncated_segment_file_survives_a_crash_at_any_io_call() {
    let options = WalOptions { recycle_segments: 1, ..options(RecoveryMode::Strict) };
    let mut completed = false;
    for k in 1..400 {
        let vfs = SimVfs::perfect(1);
        let mut wal = Wal::open(Arc::new(vfs.clone()), DIRECTORY, options.clone()).unwrap();
        while wal.end().segment < 1 {
            wal.append(&[0xEE; 90]).unwrap();
        }
        wal.sync().unwrap();
        wal.truncate_before(1).unwrap();
        assert_eq!(vfs.current_names(Path::new(DIRECTORY)), ["00000000.recycle", "00000001"]);
        let mut expected = contents(&wal);
        let mut synced = expected.len();
        vfs.crash_after_io_calls(k);
        // Until segment 3 begins: segment 2 reuses segment 0's file and is sealed.
        let outcome = (|| -> ballast::Result<()> {
            let mut index = 0u8;
            while wal.end().segment < 3 {
                let data = vec![index; 40 + usize::from(index % 3) * 60];
                let position = wal.append(&data)?;
                expected.push((position, data));
                index += 1;
                if index.is_multiple_of(3) {
                    wal.sync()?;
                    synced = expected.len();
                }
            }
            wal.sync()?;
            synced = expected.len();
            Ok(())
        })();
        let finished = outcome.is_ok() && !vfs.is_powered_off();
        if finished {
            assert!(
                !vfs.current_names(Path::new(DIRECTORY)).contains(&"00000000.recycle".to_string()),
                "segment 2 took the kept file"
            );
            vfs.disarm_crash();
        } else {
            assert!(vfs.is_powered_off(), "crash point {k}: only the power failed: {outcome:?}");
        }
        drop(wal);
        vfs.crash();
        let wal = Wal::open(Arc::new(vfs.clone()), DIRECTORY, options.clone())
            .unwrap_or_else(|error| panic!("crash point {k}: strict open failed: {error}"));
        let found = contents(&wal);
        assert!(found.len() >= synced, "crash point {k}: {} records back, {synced} were synced", found.len());
        assert!(found.len() <= expected.len(), "crash point {k}: more records than were appended");
        assert_eq!(found, expected[..found.len()], "crash point {k}");
        if finished {
            // Every I/O call of the workload was a crash point, the reuse's among them.
            assert!(k > 30, "the workload made only {k} I/O calls");
            completed = true;
            break;
        }
    }
    assert!(completed, "some crash point lies beyond the whole workload");
}
