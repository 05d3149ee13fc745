//! Where the time of WAL shape (a) goes when ballast checkpoints as the `wal` suite drives it:
//! appends (CPU; each timed, so they include about 50 ns of clock reads apiece), the appends
//! that rotate, syncs, and truncations. Compare the syncs with the `limits` rows run just before.
//!
//! `cargo run --release --manifest-path bench/Cargo.toml --example wal_breakdown -- [segment MiB]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast::vfs::OsVfs;
use ballast::wal::{Wal, WalOptions};

fn main() {
    let segment_mib: u64 = std::env::args().nth(1).map_or(8, |arg| arg.parse().expect("segment size in MiB"));
    std::fs::create_dir_all("bench-data").expect("bench-data is creatable");
    let record = [7u8; 100];
    for _ in 0..5 {
        let directory = tempfile::tempdir_in("bench-data").expect("a temp dir");
        let options = WalOptions { segment_size: segment_mib << 20, ..WalOptions::default() };
        let started = Instant::now();
        let mut wal = Wal::open(Arc::new(OsVfs::new()), directory.path(), options).expect("open");
        let (mut appends, mut rotating, mut syncs, mut truncations) =
            (Duration::ZERO, Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let mut rotations = 0;
        for index in 0..1_000_000u64 {
            let segment = wal.end().segment;
            let timer = Instant::now();
            wal.append(&record).expect("append");
            if wal.end().segment == segment {
                appends += timer.elapsed();
            } else {
                rotating += timer.elapsed();
                rotations += 1;
            }
            if (index + 1) % 1000 == 0 {
                let timer = Instant::now();
                wal.sync().expect("sync");
                syncs += timer.elapsed();
                let (first, last) = wal.segments();
                if first < last {
                    let timer = Instant::now();
                    wal.truncate_before(last).expect("truncate");
                    truncations += timer.elapsed();
                }
            }
        }
        wal.close().expect("close");
        let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
        println!(
            "{segment_mib} MiB segments: {:.1} ms in all: appends {:.1} ms, {rotations} rotating appends {:.1} ms, 1000 syncs {:.1} ms, truncations {:.1} ms",
            ms(started.elapsed()),
            ms(appends),
            ms(rotating),
            ms(syncs),
            ms(truncations)
        );
    }
}
