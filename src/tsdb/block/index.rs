//! The block's `index` file, format 2, as Prometheus reads it (docs/design/
//! prometheus-block-format.md): symbols, series with their chunk metas, postings, the postings
//! offset table and the table of contents, each section checked by a CRC-32C. Label indices,
//! which readers since Prometheus 2.15 ignore, are left out, as Prometheus 3.7 leaves them.

use std::collections::{BTreeMap, BTreeSet};

use super::encode::{crc32c, put_be32, put_be64, put_section, put_string, put_uvarint, put_varint};
use crate::tsdb::Labels;

pub(crate) const MAGIC: u32 = 0xBAAA_D700;
const VERSION: u8 = 2;

/// A chunk as the index lists it: its first and last sample times and its reference in the
/// chunk files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkMeta {
    pub min_time: i64,
    pub max_time: i64,
    pub reference: u64,
}

fn align(out: &mut Vec<u8>, to: usize) {
    out.resize(out.len().next_multiple_of(to), 0);
}

/// The index of `series`, sorted by labels, each with its chunks in time order (at least one).
pub(crate) fn encode(series: &[(Labels, Vec<ChunkMeta>)]) -> Vec<u8> {
    debug_assert!(series.windows(2).all(|pair| pair[0].0 < pair[1].0), "series sorted by labels");
    let mut out = Vec::new();
    put_be32(&mut out, MAGIC);
    out.push(VERSION);
    let symbols_at = out.len() as u64;
    let symbols: BTreeSet<&str> = series
        .iter()
        .flat_map(|(labels, _)| labels.iter().flat_map(|label| [label.name.as_str(), label.value.as_str()]))
        .collect();
    let reference: BTreeMap<&str, u64> =
        symbols.iter().enumerate().map(|(index, &symbol)| (symbol, index as u64)).collect();
    let mut body = Vec::new();
    put_be32(&mut body, u32::try_from(symbols.len()).expect("fewer than 2^32 symbols"));
    for symbol in &symbols {
        put_string(&mut body, symbol);
    }
    put_section(&mut out, &body);

    let series_at = out.len() as u64;
    let mut postings: BTreeMap<(&str, &str), Vec<u32>> = BTreeMap::new();
    let mut all = Vec::new();
    for (labels, chunks) in series {
        align(&mut out, 16);
        let series_ref = u32::try_from(out.len() / 16).expect("an index under 64 GiB");
        all.push(series_ref);
        for label in labels.iter() {
            postings.entry((label.name.as_str(), label.value.as_str())).or_default().push(series_ref);
        }
        let body = series_entry(labels, chunks, &reference);
        put_uvarint(&mut out, body.len() as u64);
        out.extend_from_slice(&body);
        put_be32(&mut out, crc32c(&body));
    }

    align(&mut out, 4);
    let postings_at = out.len() as u64;
    let mut offsets: Vec<(&str, &str, u64)> = Vec::new();
    for (name, value, refs) in std::iter::once(("", "", &all)).chain(postings.iter().map(|((n, v), r)| (*n, *v, r))) {
        align(&mut out, 4);
        offsets.push((name, value, out.len() as u64));
        let mut body = Vec::new();
        put_be32(&mut body, u32::try_from(refs.len()).expect("fewer than 2^32 series"));
        for &series_ref in refs {
            put_be32(&mut body, series_ref);
        }
        put_section(&mut out, &body);
    }

    let offset_table_at = out.len() as u64;
    let mut body = Vec::new();
    put_be32(&mut body, u32::try_from(offsets.len()).expect("fewer than 2^32 postings"));
    for (name, value, offset) in offsets {
        put_uvarint(&mut body, 2);
        put_string(&mut body, name);
        put_string(&mut body, value);
        put_uvarint(&mut body, offset);
    }
    put_section(&mut out, &body);

    let mut toc = Vec::new();
    // Without label indices, their two fields point where the sections after them begin.
    for offset in [symbols_at, series_at, postings_at, offset_table_at, postings_at, offset_table_at] {
        put_be64(&mut toc, offset);
    }
    let checksum = crc32c(&toc);
    out.extend_from_slice(&toc);
    put_be32(&mut out, checksum);
    out
}

/// A series' entry body: its labels as symbol references, then its chunk metas, each after the
/// first as deltas from the one before.
fn series_entry(labels: &Labels, chunks: &[ChunkMeta], reference: &BTreeMap<&str, u64>) -> Vec<u8> {
    let mut body = Vec::new();
    put_uvarint(&mut body, labels.len() as u64);
    for label in labels.iter() {
        put_uvarint(&mut body, reference[label.name.as_str()]);
        put_uvarint(&mut body, reference[label.value.as_str()]);
    }
    put_uvarint(&mut body, chunks.len() as u64);
    let mut previous: Option<ChunkMeta> = None;
    for chunk in chunks {
        let span = u64::try_from(chunk.max_time - chunk.min_time).expect("min_time <= max_time");
        match previous {
            None => {
                put_varint(&mut body, chunk.min_time);
                put_uvarint(&mut body, span);
                put_uvarint(&mut body, chunk.reference);
            }
            Some(previous) => {
                put_uvarint(&mut body, u64::try_from(chunk.min_time - previous.max_time).expect("chunks in order"));
                put_uvarint(&mut body, span);
                put_varint(&mut body, (chunk.reference - previous.reference).cast_signed());
            }
        }
        previous = Some(*chunk);
    }
    body
}
