//! A block's `meta.json`, as Prometheus writes and reads it (`tsdb/block.go`, `BlockMeta`):
//! its ULID, its half-open time range, its counts, and its compaction history. Written
//! atomically with the rest of the block (the block directory is renamed into place whole),
//! so a crash cannot leave the empty or torn `meta.json` of Prometheus #4058 and #5457; read
//! with every field checked, damage named by file and byte.
//!
//! Prometheus gives `meta.json` no checksum, so a flipped digit in `maxTime` would pass, and
//! raise the time below which the head replays nothing. ballast adds `ballastChecksum`, the
//! CRC-32C of every field it reads, which Prometheus's readers ignore (Go's JSON decoding skips
//! unknown fields); a block without one (Prometheus wrote it) is read on trust.

use std::path::Path;

use serde_json::{json, Value};

use super::ulid::Ulid;
use crate::error::{CorruptionReason, Error, Result};

pub(crate) const FILE_NAME: &str = "meta.json";

/// What a block's `meta.json` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockMeta {
    pub ulid: Ulid,
    /// The oldest sample time the block may hold.
    pub min_time: i64,
    /// One past the newest sample time it may hold: the range is half-open, as Prometheus's.
    pub max_time: i64,
    pub samples: u64,
    pub series: u64,
    pub chunks: u64,
    /// 1 for a block cut from the head, one more than its deepest parent's for a compaction.
    pub level: u32,
    /// The level-1 blocks whose data this one holds (itself, for a block cut from the head).
    pub sources: Vec<Ulid>,
    /// The blocks compacted into this one, with their ranges.
    pub parents: Vec<BlockParent>,
}

/// A block a compaction read, as its result's `meta.json` records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockParent {
    pub ulid: Ulid,
    pub min_time: i64,
    pub max_time: i64,
}

impl BlockMeta {
    /// Whether the block may hold samples in `min_time..=max_time`.
    pub fn overlaps(&self, min_time: i64, max_time: i64) -> bool {
        self.min_time <= max_time && min_time < self.max_time
    }

    /// `meta.json`'s bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut compaction = json!({
            "level": self.level,
            "sources": self.sources.iter().map(ToString::to_string).collect::<Vec<_>>(),
        });
        if !self.parents.is_empty() {
            let parents: Vec<Value> = self
                .parents
                .iter()
                .map(|parent| {
                    json!({"ulid": parent.ulid.to_string(), "minTime": parent.min_time, "maxTime": parent.max_time})
                })
                .collect();
            compaction["parents"] = Value::Array(parents);
        }
        let meta = json!({
            "ulid": self.ulid.to_string(),
            "minTime": self.min_time,
            "maxTime": self.max_time,
            "stats": {"numSamples": self.samples, "numSeries": self.series, "numChunks": self.chunks},
            "compaction": compaction,
            "version": 1,
            "ballastChecksum": self.checksum(),
        });
        let mut bytes = serde_json::to_vec_pretty(&meta).expect("a JSON value always serializes");
        bytes.push(b'\n');
        bytes
    }

    /// The CRC-32C of every field, in a canonical text.
    fn checksum(&self) -> u32 {
        let mut text = format!(
            "{} {} {} {} {} {} {}",
            self.ulid, self.min_time, self.max_time, self.samples, self.series, self.chunks, self.level
        );
        for source in &self.sources {
            text.push_str(&format!(" s{source}"));
        }
        for parent in &self.parents {
            text.push_str(&format!(" p{} {} {}", parent.ulid, parent.min_time, parent.max_time));
        }
        super::encode::crc32c(text.as_bytes())
    }

    /// Reads `bytes`, the `meta.json` at `path`. Fields Prometheus adds that ballast does not
    /// use (thanos labels, out-of-order hints) are ignored; a missing or ill-typed field it
    /// needs, or a format version other than 1, is [`Error::Corruption`] naming the byte.
    pub(crate) fn decode(path: &Path, bytes: &[u8]) -> Result<Self> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|error| corrupt(path, offset_of(bytes, error.line(), error.column())))?;
        let bad = |_| corrupt(path, 0);
        let get = |value: &Value, pointer: &str| value.pointer(pointer).cloned().ok_or(());
        let int = |pointer: &str| get(&value, pointer)?.as_i64().ok_or(());
        let count = |pointer: &str| get(&value, pointer)?.as_u64().ok_or(());
        let ulid_at = |value: &Value, pointer: &str| Ulid::parse(get(value, pointer)?.as_str().ok_or(())?).ok_or(());
        if count("/version").map_err(bad)? != 1 {
            return Err(corrupt(path, 0));
        }
        let sources = match value.pointer("/compaction/sources") {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                items.iter().map(|item| ulid_at(item, "")).collect::<Result<_, ()>>().map_err(bad)?
            }
            Some(_) => return Err(corrupt(path, 0)),
        };
        let parents = match value.pointer("/compaction/parents") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    let time = |pointer| get(item, pointer)?.as_i64().ok_or(());
                    Ok(BlockParent {
                        ulid: ulid_at(item, "/ulid")?,
                        min_time: time("/minTime")?,
                        max_time: time("/maxTime")?,
                    })
                })
                .collect::<Result<_, ()>>()
                .map_err(bad)?,
            Some(_) => return Err(corrupt(path, 0)),
        };
        let meta = Self {
            ulid: ulid_at(&value, "/ulid").map_err(bad)?,
            min_time: int("/minTime").map_err(bad)?,
            max_time: int("/maxTime").map_err(bad)?,
            samples: count("/stats/numSamples").unwrap_or(0),
            series: count("/stats/numSeries").unwrap_or(0),
            chunks: count("/stats/numChunks").unwrap_or(0),
            level: count("/compaction/level").ok().and_then(|level| u32::try_from(level).ok()).unwrap_or(1),
            sources,
            parents,
        };
        if meta.min_time >= meta.max_time {
            return Err(corrupt(path, 0));
        }
        match value.get("ballastChecksum") {
            None => {}
            Some(stored) if stored.as_u64() == Some(u64::from(meta.checksum())) => {}
            Some(_) => return Err(corrupt(path, 0)),
        }
        Ok(meta)
    }
}

fn corrupt(path: &Path, at: u64) -> Error {
    Error::Corruption { file: path.to_path_buf(), segment: 0, offset: at, reason: CorruptionReason::BadRecord { at } }
}

/// The byte offset of 1-based `line` and `column` in `bytes` (serde_json reports positions so).
fn offset_of(bytes: &[u8], line: usize, column: usize) -> u64 {
    let line_start: usize =
        bytes.split(|&byte| byte == b'\n').take(line.saturating_sub(1)).map(|line| line.len() + 1).sum();
    (line_start + column.saturating_sub(1)).min(bytes.len()) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> BlockMeta {
        let ulid = Ulid::new(1_700_000_000_000, 7);
        BlockMeta {
            ulid,
            min_time: 0,
            max_time: 7_200_000,
            samples: 3,
            series: 2,
            chunks: 2,
            level: 2,
            sources: vec![Ulid::new(1, 1), Ulid::new(2, 2)],
            parents: vec![BlockParent { ulid: Ulid::new(1, 1), min_time: 0, max_time: 3_600_000 }],
        }
    }

    #[test]
    fn meta_json_reads_back_what_was_written() {
        let path = Path::new("b/meta.json");
        assert_eq!(BlockMeta::decode(path, &meta().encode()).unwrap(), meta());
    }

    /// The `meta.json` promtool 2.42's `create-blocks-from openmetrics` wrote on this machine.
    #[test]
    fn prometheus_meta_json_is_read() {
        let text = br#"{
	"ulid": "01GSZ7Y1D3PR5BNZ6VQK7TKJXW",
	"minTime": 1000,
	"maxTime": 600001,
	"stats": {
		"numSamples": 600,
		"numSeries": 3,
		"numChunks": 6
	},
	"compaction": {
		"level": 1,
		"sources": [
			"01GSZ7Y1D3PR5BNZ6VQK7TKJXW"
		]
	},
	"version": 1
}"#;
        let meta = BlockMeta::decode(Path::new("meta.json"), text).unwrap();
        assert_eq!((meta.min_time, meta.max_time, meta.samples, meta.level), (1000, 600_001, 600, 1));
        assert_eq!(meta.sources, vec![meta.ulid]);
    }

    #[test]
    fn damaged_meta_json_is_refused_naming_the_byte() {
        let good = meta().encode();
        let path = Path::new("b/meta.json");
        for cut in [0, 1, good.len() / 2, good.len() - 3] {
            let error = BlockMeta::decode(path, &good[..cut]).unwrap_err();
            assert!(matches!(&error, Error::Corruption { file, .. } if file == path), "{error:?}");
        }
        let text = String::from_utf8(good).unwrap();
        for bad in
            [text.replace("\"version\": 1", "\"version\": 2"), text.replace("\"maxTime\": 7200000", "\"maxTime\": 0")]
        {
            assert!(BlockMeta::decode(path, bad.as_bytes()).is_err(), "{bad}");
        }
        let error = BlockMeta::decode(path, b"{\n  \"ulid\": x").unwrap_err();
        assert!(matches!(error, Error::Corruption { offset: 12, .. }), "{error:?}");
    }
}
