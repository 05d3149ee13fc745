//! Embedding logstor on the real filesystem, with maintenance on a background thread.
//!
//! `cargo run --example logstor -- /tmp/my-store` writes and overwrites keys, deletes some,
//! reads everything back, closes the store and verifies it. Run it as often as you like: the
//! live data stays the same, and so does the space the store takes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ballast::logstor::{self, Logstor, LogstorOptions, Maintenance};
use ballast::vfs::OsVfs;

fn main() -> ballast::Result<()> {
    let directory = std::env::args().nth(1).unwrap_or_else(|| "ballast-example-logstor".to_string());
    let options = LogstorOptions { segment_size: 64 << 10, segments_per_file: 16, ..LogstorOptions::default() };
    let store = Logstor::open(Arc::new(OsVfs::new()), &directory, options)?;
    println!("recovered {} keys: {:?}", store.len(), store.recovery_report());

    // The store's core is synchronous and reclaims space itself as it writes. This helper runs
    // separator and compaction steps on a thread of its own, under the mutex, so that writes
    // find space already reclaimed; holding the mutex for the whole loop, as this does, only
    // means it gets no turn.
    let store = Arc::new(Mutex::new(store));
    let maintenance = Maintenance::spawn(Arc::clone(&store), Duration::from_millis(10));
    {
        let mut store = store.lock().expect("no writer panicked");
        for round in 0..5u32 {
            for key in 0..1000u32 {
                store.put(format!("user:{key}").as_bytes(), format!("round {round}").as_bytes())?;
            }
            for key in (0..1000u32).step_by(7) {
                store.delete(format!("user:{key}").as_bytes())?;
            }
            store.sync()?; // durable from here
            store.seal_mixed()?; // hand what was written to the separator
        }
    }
    maintenance.stop()?;

    let store = Arc::into_inner(store).expect("the thread has stopped").into_inner().expect("no writer panicked");
    println!("{} keys; user:1 = {:?}", store.len(), store.get(b"user:1")?.map(String::from_utf8));
    println!("{:?}", store.stats());
    store.close()?; // seals the segments it was writing
    println!("{:?}", logstor::verify(&OsVfs::new(), directory.as_ref())?);
    Ok(())
}
