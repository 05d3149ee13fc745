//! Embedding the commitlog, with snapshots, on the real filesystem.
//!
//! `cargo run --example commitlog -- /tmp/my-commitlog` commits transactions for a small
//! counter datastore, snapshots it when a snapshot falls due, and shows how a restart restores
//! the state: the latest valid snapshot, then the transactions after it. Run it twice.

use std::sync::Arc;

use ballast::commitlog::{Commitlog, CommitlogOptions, SnapshotSource};
use ballast::vfs::OsVfs;

/// The datastore: a single counter; each transaction adds the number it holds.
struct Counter {
    total: u64,
}

impl SnapshotSource for Counter {
    fn snapshot(&mut self, _offset: u64) -> Vec<u8> {
        self.total.to_le_bytes().to_vec()
    }
}

fn main() -> ballast::Result<()> {
    let directory = std::env::args().nth(1).unwrap_or_else(|| "ballast-example-commitlog".to_string());
    let options =
        CommitlogOptions { segment_size_max: 4096, snapshot_interval_transactions: 100, ..Default::default() };
    let mut log = Commitlog::open(Arc::new(OsVfs::new()), &directory, options)?;

    // Restore: the newest snapshot that verifies, then replay what came after it.
    let (mut counter, replay_from) = match log.latest_snapshot()? {
        Some(snapshot) => {
            let total = u64::from_le_bytes(snapshot.data[..8].try_into().expect("8-byte snapshot"));
            (Counter { total }, snapshot.offset + 1)
        }
        None => (Counter { total: 0 }, 0),
    };
    for item in log.transactions_from(replay_from) {
        let (_, transaction) = item?;
        counter.total += u64::from_le_bytes(transaction[..8].try_into().expect("8-byte transaction"));
    }
    println!("restored total {} at offset {:?}", counter.total, log.max_committed_offset());

    // The datastore decides what goes in a commit and supplies the offsets.
    for batch in 0..50u64 {
        let first = log.next_offset();
        let amounts: Vec<[u8; 8]> = (0..4).map(|index| (batch * 4 + index).to_le_bytes()).collect();
        let transactions: Vec<(u64, &[u8])> =
            amounts.iter().enumerate().map(|(index, amount)| (first + index as u64, amount.as_slice())).collect();
        log.commit(&transactions)?;
        counter.total += (0..4).map(|index| batch * 4 + index).sum::<u64>();
        // A snapshot falls due when a segment rotates or every 100 transactions.
        if let Some(offset) = log.take_snapshot(&mut counter)? {
            println!("snapshot at offset {offset}");
        }
    }
    log.sync()?; // durable from here
    println!("total {} at offset {:?}", counter.total, log.max_committed_offset());
    log.close()
}
