//! Embedding the WAL on the real filesystem.
//!
//! `cargo run --example wal -- /tmp/my-wal` appends a few records, syncs them, and prints
//! everything the log holds; run it twice to see the records of the first run recovered.

use std::sync::Arc;

use ballast::vfs::OsVfs;
use ballast::wal::{RecoveryMode, Wal, WalOptions};

fn main() -> ballast::Result<()> {
    let directory = std::env::args().nth(1).unwrap_or_else(|| "ballast-example-wal".to_string());
    let options = WalOptions { recovery_mode: RecoveryMode::Strict, ..WalOptions::default() };
    // Opening recovers: a torn tail from a crash is truncated; damage to synced data is an
    // error naming the file and offset (reopen with RecoveryMode::Repair to cut it away).
    let mut wal = Wal::open(Arc::new(OsVfs::new()), &directory, options)?;
    println!("recovered: {:?}", wal.recovery_report());

    let first = wal.append(b"first record")?;
    wal.append_batch(&[b"second", b"third"])?;
    // Nothing is durable until sync returns.
    wal.sync()?;
    println!("appended from {first}");

    for item in wal.records() {
        let (position, record) = item?;
        println!("{position}: {}", String::from_utf8_lossy(&record));
    }
    // Old segments can go once whatever they fed (a checkpoint, a snapshot) is durable.
    let (_, last) = wal.segments();
    wal.truncate_before(last)?;
    wal.close()
}
