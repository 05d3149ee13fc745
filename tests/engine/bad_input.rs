//! Bad input: every case is a typed error naming the file, never a panic.

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use ballast::wal::RecoveryMode;
use ballast::{CorruptionReason, Error};

use crate::{open, write_log};

#[test]
fn a_directory_of_garbage() {
    let directory = tempfile::tempdir().unwrap();
    fs::write(directory.path().join("00000000"), vec![0x5a; 5000]).unwrap();
    match open(directory.path(), RecoveryMode::Strict) {
        Err(Error::Corruption { file, segment: 0, offset: 0, reason: CorruptionReason::BadMagic }) => {
            assert_eq!(file, directory.path().join("00000000"));
        }
        other => panic!("expected bad magic, got {other:?}"),
    }
    assert_eq!(fs::read(directory.path().join("00000000")).unwrap(), vec![0x5a; 5000], "a strict open changes nothing");
}

#[test]
fn a_segment_shorter_than_its_header() {
    let directory = tempfile::tempdir().unwrap();
    fs::write(directory.path().join("00000000"), b"BLSTWAL").unwrap();
    match open(directory.path(), RecoveryMode::Strict) {
        Err(Error::Corruption { file, offset: 0, reason: CorruptionReason::Truncated { length: 7 }, .. }) => {
            assert_eq!(file, directory.path().join("00000000"));
        }
        other => panic!("expected a truncated header, got {other:?}"),
    }
}

#[test]
fn a_sealed_segment_truncated_mid_record() {
    let directory = tempfile::tempdir().unwrap();
    write_log(directory.path(), 40);
    let path = directory.path().join("00000000");
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() / 2 + 3]).unwrap();
    match open(directory.path(), RecoveryMode::Strict) {
        Err(Error::Corruption { file, segment: 0, .. }) => assert_eq!(file, path),
        other => panic!("expected corruption in segment 0, got {other:?}"),
    }
}

#[test]
fn a_wrongly_named_file() {
    for name in ["0000001", "00000001.log", "wal.db", "000000001"] {
        let directory = tempfile::tempdir().unwrap();
        write_log(directory.path(), 30);
        fs::write(directory.path().join(name), b"?").unwrap();
        match open(directory.path(), RecoveryMode::Strict) {
            Err(Error::BadFileName { file }) => assert_eq!(file, directory.path().join(name)),
            other => panic!("{name}: expected BadFileName, got {other:?}"),
        }
    }
}

#[test]
fn a_gap_in_the_numbering() {
    let directory = tempfile::tempdir().unwrap();
    write_log(directory.path(), 40);
    fs::remove_file(directory.path().join("00000001")).unwrap();
    match open(directory.path(), RecoveryMode::Strict) {
        Err(Error::SegmentGap { directory: reported, missing: 1 }) => assert_eq!(reported, directory.path()),
        other => panic!("expected a gap at 1, got {other:?}"),
    }
}

#[test]
fn leftover_temp_files_are_removed() {
    let directory = tempfile::tempdir().unwrap();
    write_log(directory.path(), 30);
    fs::write(directory.path().join("00000009.tmp"), b"half a segment").unwrap();
    let wal = open(directory.path(), RecoveryMode::Strict).unwrap();
    assert_eq!(wal.recovery_report().temp_files_removed, 1);
    assert!(!directory.path().join("00000009.tmp").exists());
}

#[test]
fn a_second_open_in_this_process_is_locked() {
    let directory = tempfile::tempdir().unwrap();
    let _first = open(directory.path(), RecoveryMode::Strict).unwrap();
    match open(directory.path(), RecoveryMode::Strict) {
        Err(error @ Error::Locked { .. }) => {
            let Error::Locked { directory: reported, holder } = &error else { unreachable!() };
            assert_eq!(reported, directory.path());
            assert_eq!(*holder, Some(std::process::id()), "the lock file names the holder");
            assert!(error.to_string().ends_with(&format!("of process {}", std::process::id())), "{error}");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[test]
fn a_lock_held_by_another_process() {
    let directory = tempfile::tempdir().unwrap();
    let lock_path = directory.path().join(ballast::vfs::LOCK_FILE_NAME);
    // util-linux flock(1) takes the same flock(2) lock OsVfs uses, in another process, and
    // holds it until its stdin closes.
    let mut holder = Command::new("flock")
        .arg("--nonblock")
        .arg(&lock_path)
        .args(["--command", &format!("echo $$ > {}; echo $$; exec cat", lock_path.display())])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("flock(1) from util-linux is installed");
    let mut line = String::new();
    BufReader::new(holder.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let pid: u32 = line.trim().parse().expect("the holder's shell printed its PID");
    let result = open(directory.path(), RecoveryMode::Strict);
    drop(holder.stdin.take());
    holder.wait().unwrap();
    match result {
        Err(Error::Locked { directory: reported, holder }) => {
            assert_eq!(reported, directory.path());
            assert_eq!(holder, Some(pid), "the PID the holder wrote in the lock file");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    // The dead holder's PID is still in the file; the lock is what counts, and it is free.
    let _wal = open(directory.path(), RecoveryMode::Strict).expect("the lock is free once the other process exits");
    let written = std::fs::read_to_string(&lock_path).unwrap();
    assert_eq!(written, format!("{}\n", std::process::id()), "the new holder overwrote the old number");
}

/// Regression: closing a store and opening it again at once sometimes failed with
/// `Error::Locked` while another thread started a child process (seen as a flaky
/// `logstor_format::a_damaged_later_buffer_header_in_a_sealed_segment_is_corruption` next to
/// `a_lock_held_by_another_process`). A child holds copies of the parent's descriptors from
/// `fork` until `exec` closes them, and an `flock` lasts while any copy of its descriptor is
/// open, so dropping the handle did not release the lock. The lock is now released explicitly.
#[test]
fn reopening_at_once_is_not_locked_while_other_threads_start_processes() {
    let directory = tempfile::tempdir().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spawner = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut spawned = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                Command::new("true").status().expect("true(1) runs");
                spawned += 1;
            }
            spawned
        })
    };
    let mut locked = 0;
    for _ in 0..300 {
        match open(directory.path(), RecoveryMode::Strict) {
            Ok(wal) => drop(wal),
            Err(Error::Locked { .. }) => locked += 1,
            Err(other) => panic!("open failed: {other}"),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let spawned = spawner.join().unwrap();
    assert!(spawned > 0, "the other thread started processes meanwhile");
    assert_eq!(locked, 0, "opens found the lock of a handle already dropped ({spawned} processes started)");
}
