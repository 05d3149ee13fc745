//! A record write that the disk puts somewhere else, in a reused segment file, just before the
//! segment is sealed.
//!
//! Regression (simulator, wal seeds 32139, 45464, 47315, 58583, 65084, 73125, 100200, 101032,
//! swept on 85ae6c4): rotation's last record write went astray in a reused file. Its intended
//! place kept the old file's bytes, which were zeros there, and its stray copy landed past the
//! records, in the old bytes that sealing cuts off before padding. The sealed segment then
//! looked like one whose data simply ended earlier: the live reader and every later open
//! returned the log without the record, and the records after it one place early, with no
//! error. Sealing now ends the data with a seal fragment, and a sealed segment whose data ends
//! before its seal is corruption.

use std::path::Path;
use std::sync::Arc;

use ballast::wal::{RecoveryMode, Wal, WalOptions};
use ballast::Error;
use ballast_sim::{FaultConfig, FaultKind, SimClock, SimVfs, Trace};

const DIRECTORY: &str = "/wal";

fn options() -> WalOptions {
    WalOptions {
        segment_size: 2048,
        page_size: 128,
        recovery_mode: RecoveryMode::Strict,
        preallocate: 2048,
        recycle_segments: 1,
        first_segment: 0,
    }
}

/// Builds a log whose segment 2 reuses segment 0's file (a short record, then zeros), appends
/// `a` and `b` there with `b`'s write misdirected, and seals segment 2. Returns the disk, the
/// handle, the records the log must hold, and where `b`'s write landed.
fn log_with_misdirected_last_write(seed: u64) -> (SimVfs, Wal, Vec<Vec<u8>>, u64) {
    let vfs = SimVfs::new(seed, FaultConfig::none(), SimClock::new(), Trace::off());
    let mut wal = Wal::open(Arc::new(vfs.clone()), DIRECTORY, options()).unwrap();
    wal.append(b"").unwrap();
    wal.rotate().unwrap();
    let one = b"segment one".to_vec();
    wal.append(&one).unwrap();
    wal.truncate_before(1).unwrap();
    wal.rotate().unwrap();
    assert!(vfs.current_names(Path::new(DIRECTORY)).contains(&"00000002".to_string()));
    let (a, b) = (vec![0xa5; 40], vec![0x5a; 10]);
    wal.append(&a).unwrap();
    wal.flush().unwrap();
    wal.append(&b).unwrap();
    vfs.set_config(FaultConfig { misdirected_write: 1.0, ..FaultConfig::none() });
    wal.flush().unwrap();
    vfs.set_config(FaultConfig::none());
    let landed = vfs
        .damage()
        .iter()
        .filter(|damage| damage.kind == FaultKind::MisdirectedWrite)
        .map(|damage| damage.offset)
        .max()
        .expect("the write was misdirected");
    wal.rotate().unwrap();
    (vfs, wal, vec![one, a, b], landed)
}

/// Reads every record, or the error that stopped the read.
fn read_all(wal: &Wal) -> Result<Vec<Vec<u8>>, Error> {
    wal.records().map(|item| item.map(|(_, record)| record)).collect()
}

#[test]
fn a_lost_last_write_in_a_reused_segment_is_corruption_not_a_shorter_log() {
    let mut stray_copy_cut_off = 0;
    for seed in 0..16 {
        let (vfs, wal, expected, landed) = log_with_misdirected_last_write(seed);
        // The records end at 32 + (8 + 40) + (8 + 10) = 98: a copy landed past them was cut off.
        if landed > 98 {
            stray_copy_cut_off += 1;
        }
        match read_all(&wal) {
            Ok(records) => assert_eq!(records, expected, "seed {seed}: a live read returned another log"),
            Err(error) => assert!(error.is_corruption(), "seed {seed}: {error}"),
        }
        drop(wal);
        match Wal::open(Arc::new(vfs.clone()), DIRECTORY, options()) {
            Ok(wal) => assert_eq!(read_all(&wal).unwrap(), expected, "seed {seed}: an open returned another log"),
            Err(Error::Corruption { segment, .. }) => assert_eq!(segment, 2, "seed {seed}"),
            Err(error) => panic!("seed {seed}: {error}"),
        }
    }
    assert!(stray_copy_cut_off > 0, "no seed put the stray copy where sealing cuts it off");
}
