//! Embedding logstor on the real filesystem, with maintenance on a background thread.
//!
//! `cargo run --example logstor -- /tmp/my-store` writes and overwrites keys, deletes some,
//! lets the maintenance thread separate and compact, and reads everything back. Run it twice.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ballast::logstor::{Logstor, LogstorOptions, Maintenance};
use ballast::vfs::OsVfs;

fn main() -> ballast::Result<()> {
    let directory = std::env::args().nth(1).unwrap_or_else(|| "ballast-example-logstor".to_string());
    let options = LogstorOptions { segment_size: 64 << 10, segments_per_file: 16, ..LogstorOptions::default() };
    let store = Logstor::open(Arc::new(OsVfs::new()), &directory, options)?;
    println!("recovered {} keys: {:?}", store.len(), store.recovery_report());

    // The store's core is synchronous; this helper runs separator and compaction steps on a
    // thread of its own, under the mutex.
    let store = Arc::new(Mutex::new(store));
    let maintenance = Maintenance::spawn(Arc::clone(&store), Duration::from_millis(10));
    for round in 0..5u32 {
        let mut store = store.lock().expect("no writer panicked");
        for key in 0..1000u32 {
            store.put(format!("user:{key}").as_bytes(), format!("round {round}").as_bytes())?;
        }
        for key in (0..1000u32).step_by(7) {
            store.delete(format!("user:{key}").as_bytes())?;
        }
        store.sync()?; // durable from here
        store.seal_mixed()?; // hand what was written to the separator
    }
    maintenance.stop()?;

    let store = store.lock().expect("no writer panicked");
    println!("{} keys; user:1 = {:?}", store.len(), store.get(b"user:1")?.map(String::from_utf8));
    println!("{:?}", store.stats());
    Ok(())
}
