//! Reopen time of a 1 M-key logstor store (the `kv` suite's shape: 16-byte keys, 100-byte
//! values, compacted), built once in `bench-data/reopen-store` and then opened 7 times. For
//! profiling the open alone: `perf record` this example.
//!
//! `cargo run --release --manifest-path bench/Cargo.toml --example logstor_reopen`

use std::sync::Arc;
use std::time::Instant;

use ballast::logstor::{Logstor, LogstorOptions};
use ballast::vfs::OsVfs;

fn main() {
    let directory = std::path::Path::new("bench-data/reopen-store");
    if !directory.exists() {
        let mut store = Logstor::open(Arc::new(OsVfs::new()), directory, LogstorOptions::default()).expect("open");
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for index in 0..1_000_000u64 {
            // xorshift: distinct keys in random order.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&state.to_le_bytes());
            key[8..].copy_from_slice(&index.to_le_bytes());
            store.put(&key, &[7u8; 100]).expect("put");
            if index % 1000 == 999 {
                store.sync().expect("sync");
            }
        }
        store.maintain_to_quiescence().expect("compaction");
        store.close().expect("close");
    }
    for _ in 0..7 {
        let started = Instant::now();
        let store = Logstor::open(Arc::new(OsVfs::new()), directory, LogstorOptions::default()).expect("open");
        println!("open {:.1} ms, {} keys", started.elapsed().as_secs_f64() * 1e3, store.len());
    }
}
