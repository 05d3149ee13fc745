//! Embedding the TSDB head (feature `tsdb`) on the real filesystem.
//!
//! `cargo run --features tsdb --example tsdb -- /tmp/my-tsdb` scrapes three made-up targets'
//! `up` and a counter each run, appending the first scrape by labels and later ones by the
//! refs the head returned, one synced commit per scrape; then it queries with matchers and
//! prints what the head holds, keeps an hour of samples (a truncation, which checkpoints and
//! removes the WAL segments the checkpoint covers) and deletes instance c's `up` of this run.
//! Run it twice: the second run finds the first run's series under the same refs, and its
//! samples, rebuilt from the checkpoint and the WAL.

use std::error::Error;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ballast::tsdb::{Durability, Head, HeadOptions, Labels, MatchKind, Matcher};
use ballast::vfs::OsVfs;

fn main() -> Result<(), Box<dyn Error>> {
    let directory = std::env::args().nth(1).unwrap_or_else(|| "ballast-example-tsdb".to_string());
    let mut head = Head::open(Arc::new(OsVfs::new()), &directory, HeadOptions::default())?;
    // The program's own clock: sample times are its business; the engine never reads one.
    #[allow(clippy::disallowed_methods, reason = "a program embedding ballast stamps its samples")]
    let now = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
    // After the newest sample a run before left, even one run a moment ago.
    let start = head.max_time().map_or(now, |newest| now.max(newest + 15_000));

    let mut refs = Vec::new();
    for scrape in 0..5i64 {
        let t = start + scrape * 15_000;
        let mut appender = head.appender();
        for instance in ["a:9100", "b:9100", "c:9100"] {
            if scrape == 0 {
                // The first scrape names the series by labels; the head returns their refs.
                let up = Labels::new([("__name__", "up"), ("job", "node"), ("instance", instance)])?;
                let requests = Labels::new([("__name__", "requests_total"), ("job", "node"), ("instance", instance)])?;
                refs.push(appender.append(&up, t, 1.0)?);
                refs.push(appender.append(&requests, t, 0.0)?);
            }
        }
        if scrape > 0 {
            // Later scrapes append by ref and skip the lookup of the labels.
            for pair in refs.chunks(2) {
                appender.append_ref(pair[0], t, 1.0)?;
                appender.append_ref(pair[1], t, (scrape * 42) as f64)?;
            }
        }
        appender.commit(Durability::Synced)?;
    }

    let requests =
        [Matcher::equal("__name__", "requests_total"), Matcher::new(MatchKind::Regex, "instance", "[ab]:.*")?];
    for series in head.select(i64::MIN, i64::MAX, &requests)? {
        println!(
            "{} (ref {}): {} samples, last {:?}",
            series.labels,
            series.series,
            series.samples.len(),
            series.samples.last()
        );
    }
    println!("label names: {:?}; instances: {:?}", head.label_names(), head.label_values("instance"));

    // Keep an hour: what is older goes (in a full TSDB, into blocks), with the WAL behind it.
    head.truncate(start - 3_600_000)?;
    let c_up = [Matcher::equal("__name__", "up"), Matcher::equal("instance", "c:9100")];
    let hidden = head.delete(start, i64::MAX, &c_up, Durability::Synced)?;
    println!("deleted this run's samples of {hidden} series; the head starts at {:?}", head.min_time());
    head.close()?;
    Ok(())
}
