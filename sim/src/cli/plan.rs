//! Which seeds a run takes: a range (open-ended for a time-boxed run), one shard of it for a
//! fleet (`--shard K/N`: the seeds `s` with `s mod N = K`), and when it stops early (`--for`,
//! `--until-fail`). A run reports the range it covered, so that the next one resumes after it
//! and `merge` can check that shards tile a range.

use std::time::{Duration, Instant};

/// One shard of a fleet of `count` workers: this one takes the seeds `s` with `s % count ==
/// index`. `0/1` is the whole range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    pub const WHOLE: Self = Self { index: 0, count: 1 };

    /// Parses `K/N` (`K < N`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (index, count) = text.split_once('/').ok_or_else(|| format!("bad shard {text:?}: expected K/N"))?;
        let number = |part: &str| part.trim().parse::<u64>().map_err(|error| format!("bad shard {text:?}: {error}"));
        let (index, count) = (number(index)?, number(count)?);
        if count == 0 || index >= count {
            return Err(format!("bad shard {text:?}: need 0 <= K < N"));
        }
        Ok(Self { index, count })
    }

    /// The first seed at or after `seed` this shard takes, if there is one below `u64::MAX`.
    pub fn first_at_or_after(self, seed: u64) -> Option<u64> {
        let residue = seed % self.count;
        let offset = if self.index >= residue { self.index - residue } else { self.count - (residue - self.index) };
        seed.checked_add(offset)
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The seeds `START..END` (`END` absent: open-ended, for `--for`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seeds {
    pub start: u64,
    pub end: Option<u64>,
}

impl Seeds {
    /// Parses `START..END` (end exclusive), `START..` or a single seed.
    pub fn parse(text: &str) -> Result<Self, String> {
        let number = |part: &str| part.trim().parse::<u64>().map_err(|error| format!("bad seed {part:?}: {error}"));
        match text.split_once("..") {
            Some((start, "")) => Ok(Self { start: number(start)?, end: None }),
            Some((start, end)) => {
                let (start, end) = (number(start)?, number(end)?);
                if start >= end {
                    return Err(format!("empty seed range {text}"));
                }
                Ok(Self { start, end: Some(end) })
            }
            None => {
                let seed = number(text)?;
                Ok(Self { start: seed, end: Some(seed.checked_add(1).ok_or("seed too large")?) })
            }
        }
    }
}

/// The seeds one target's run takes, in order, and when it stops taking them.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub seeds: Seeds,
    pub shard: Shard,
    /// No seed is begun after this.
    pub deadline: Option<Instant>,
    /// No seed is begun after the first failure (in seed order).
    pub until_fail: bool,
}

impl Plan {
    pub fn new(seeds: Seeds, shard: Shard, run_for: Option<Duration>, until_fail: bool) -> Self {
        Self { seeds, shard, deadline: run_for.map(|duration| Instant::now() + duration), until_fail }
    }

    /// The `n`-th seed of the plan (from 0), if the range holds one.
    pub fn seed(&self, n: u64) -> Option<u64> {
        let first = self.shard.first_at_or_after(self.seeds.start)?;
        let seed = n.checked_mul(self.shard.count).and_then(|step| first.checked_add(step))?;
        self.seeds.end.is_none_or(|end| seed < end).then_some(seed)
    }

    /// How many seeds the plan holds, if it ends.
    pub fn len(&self) -> Option<u64> {
        let end = self.seeds.end?;
        Some(match self.shard.first_at_or_after(self.seeds.start) {
            Some(first) if first < end => (end - first).div_ceil(self.shard.count),
            _ => 0,
        })
    }

    /// Whether the deadline has passed.
    pub fn out_of_time(&self) -> bool {
        self.deadline.is_some_and(|deadline| Instant::now() >= deadline)
    }

    /// The end of the range covered once the first `ran` seeds of the plan have run: the seed
    /// after which a resumed run starts (the range's end if every seed ran).
    pub fn covered_end(&self, ran: u64) -> u64 {
        match (self.seed(ran), self.seeds.end) {
            (Some(next), _) => next,
            (None, Some(end)) => end,
            // Open-ended and past u64::MAX: nothing is left.
            (None, None) => u64::MAX,
        }
    }
}

/// Parses a duration as `90s`, `10m`, `2h` or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "s"),
    };
    let amount: u64 = number.parse().map_err(|_| format!("bad duration {text:?}: expected e.g. 90s, 10m, 2h"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(format!("bad duration {text:?}: the unit is s, m or h")),
    };
    let seconds = amount.checked_mul(seconds).filter(|&seconds| seconds > 0).ok_or(format!("bad duration {text:?}"))?;
    Ok(Duration::from_secs(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(seeds: &str, shard: &str) -> Plan {
        Plan::new(Seeds::parse(seeds).unwrap(), Shard::parse(shard).unwrap(), None, false)
    }

    #[test]
    fn a_shard_takes_every_nth_seed_of_the_range_and_the_shards_tile_it() {
        let all: Vec<u64> = (0..3)
            .flat_map(|k| {
                let plan = plan("10..20", &format!("{k}/3"));
                (0..plan.len().unwrap()).map(move |n| plan.seed(n).unwrap())
            })
            .collect();
        let mut sorted = all.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (10..20).collect::<Vec<_>>());
        assert_eq!(plan("10..20", "1/3").seed(0), Some(10));
        assert_eq!(plan("10..20", "2/3").seed(0), Some(11));
        assert_eq!(plan("10..20", "0/3").len(), Some(3), "12, 15, 18");
        assert_eq!(plan("10..20", "0/3").covered_end(1), 15);
        assert_eq!(plan("10..20", "0/3").covered_end(3), 20);
        assert_eq!(plan("5..", "0/1").seed(1_000), Some(1_005));
        assert_eq!(plan("5..", "0/1").len(), None);
        // The largest shard count, near the largest seeds: no overflow.
        let last = Shard { index: 1, count: u64::MAX };
        assert_eq!(last.first_at_or_after(u64::MAX - 1), None);
        assert_eq!(last.first_at_or_after(0), Some(1));
    }

    #[test]
    fn bad_shards_seeds_and_durations_are_refused() {
        assert!(Shard::parse("3/3").is_err());
        assert!(Shard::parse("0/0").is_err());
        assert!(Shard::parse("1").is_err());
        assert!(Seeds::parse("5..5").is_err());
        assert!(Seeds::parse("x..").is_err());
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5d").is_err());
    }
}
