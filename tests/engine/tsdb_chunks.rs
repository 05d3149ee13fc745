//! The XOR chunk encoding (`ballast::tsdb::chunkenc`): bit for bit what Prometheus writes,
//! round trips of any samples, the delta-of-delta bucket edges and the value windows in a
//! layout snapshot, and decoding of any bytes without a panic.

use ballast::tsdb::chunkenc::{ChunkError, XorChunk, XorIterator};
use proptest::prelude::*;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn chunk_of(samples: &[(i64, f64)]) -> XorChunk {
    let mut chunk = XorChunk::new();
    for &(t, v) in samples {
        chunk.append(t, v);
    }
    chunk
}

fn decoded(chunk: &XorChunk) -> Vec<(i64, u64)> {
    chunk.iter().map(|sample| sample.map(|(t, v)| (t, v.to_bits())).expect("decodes")).collect()
}

/// Ten samples one millisecond and 1.0 apart, and the bytes Prometheus's chunkenc wrote for
/// them: the chunk test vector published by the rusty-chunkenc project
/// (`golang-tests/test.json`), generated with a copy of Prometheus's `xor.go`. It includes the
/// empty trailing byte Prometheus's bit stream leaves after a byte-aligned write.
#[test]
fn ten_samples_encode_to_the_bytes_prometheus_writes() {
    let samples: Vec<(i64, f64)> = (0..10).map(|i| (1_234_123_324 + i, 123_535.123 + i as f64)).collect();
    let chunk = chunk_of(&samples);
    assert_eq!(hex(chunk.bytes()), "000af8e8f9980940fe28f1f7ced91701ee2fd050d051d050d053c0");
    assert_eq!(chunk.num_samples(), 10);
    let expected: Vec<(i64, u64)> = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
    assert_eq!(decoded(&chunk), expected);
}

/// Each delta of deltas at the edges of Prometheus's buckets (14, 17, 20 bits, then 64), and
/// values that exercise every case of the XOR window: equal, inside the last window, a new
/// window, 64 significant bits, NaN payloads, infinities and signed zeros.
#[test]
fn bucket_edges_and_value_windows_layout() {
    let mut lines = Vec::new();
    for dod in [0i64, 1, -1, 8192, -8191, 8193, -8192, 65536, -65535, 65537, -65536, 524_288, -524_287, 524_289] {
        // Deltas 1000 then 1000 + dod: the third sample carries `dod`.
        let chunk = chunk_of(&[(0, 1.0), (1000, 1.0), (2000 + dod, 1.0)]);
        assert_eq!(decoded(&chunk)[2].0, 2000 + dod);
        lines.push(format!("dod {dod:>8}: {}", hex(chunk.bytes())));
    }
    let values: [(&str, f64); 9] = [
        ("equal", 1.5),
        ("in window", 1.75),
        ("new window", -2.0e300),
        ("64 bits", f64::from_bits(0x8000_0000_0000_0001)),
        ("nan", f64::NAN),
        ("nan payload", f64::from_bits(0x7ff0_0000_dead_beef)),
        ("inf", f64::INFINITY),
        ("-inf", f64::NEG_INFINITY),
        ("-0", -0.0),
    ];
    let mut samples = vec![(0, 1.5)];
    for (index, (name, value)) in values.iter().enumerate() {
        samples.push((1 + index as i64, *value));
        let chunk = chunk_of(&samples);
        assert_eq!(decoded(&chunk).last().map(|&(_, bits)| bits), Some(value.to_bits()), "{name}");
        lines.push(format!("{name:>11}: {}", hex(chunk.bytes())));
    }
    insta::assert_snapshot!("tsdb_xor_layout", lines.join("\n"));
}

#[test]
fn a_sample_at_time_zero_and_negative_times_are_kept() {
    let samples = [(-5, 2.0), (0, 0.0), (0, 0.0), (i64::MAX, -1.0)];
    let chunk = chunk_of(&samples);
    let expected: Vec<(i64, u64)> = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
    assert_eq!(decoded(&chunk), expected);
}

#[test]
fn a_chunk_shorter_than_its_count_is_an_error_naming_the_sample() {
    let chunk = chunk_of(&[(10, 1.0), (20, 2.0), (30, 4.0)]);
    let bytes = chunk.bytes();
    assert!(matches!(XorIterator::new(&bytes[..1]), Err(ChunkError::NoHeader)));
    let cut = &bytes[..bytes.len() - 2];
    let results: Vec<_> = XorIterator::new(cut).expect("has a header").collect();
    assert_eq!(results.len(), 3);
    assert!(results[..2].iter().all(Result::is_ok));
    assert_eq!(results[2], Err(ChunkError::Truncated { index: 2 }));
}

proptest! {
    /// Any samples (timestamps in any order, any value bits) read back exactly.
    #[test]
    fn any_samples_round_trip(samples in prop::collection::vec((any::<i64>(), any::<u64>()), 0..300)) {
        let mut chunk = XorChunk::new();
        for &(t, bits) in &samples {
            chunk.append(t, f64::from_bits(bits));
        }
        prop_assert_eq!(chunk.num_samples() as usize, samples.len());
        prop_assert_eq!(decoded(&chunk), samples);
    }

    /// Realistic series: a scrape interval with jitter, and a counter or a gauge.
    #[test]
    fn scraped_series_round_trip(
        start in -1_000_000i64..1_000_000_000_000,
        interval in 1i64..120_000,
        jitter in prop::collection::vec(-500i64..500, 1..240),
        step in -10.0f64..10.0,
    ) {
        let samples: Vec<(i64, f64)> = jitter
            .iter()
            .enumerate()
            .map(|(i, &j)| (start + interval * i as i64 + j, step * i as f64))
            .collect();
        let chunk = chunk_of(&samples);
        let expected: Vec<(i64, u64)> = samples.iter().map(|&(t, v)| (t, v.to_bits())).collect();
        prop_assert_eq!(decoded(&chunk), expected);
    }

    /// Any bytes decode without a panic, yielding at most the count the header gives.
    #[test]
    fn any_bytes_decode_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(iterator) = XorIterator::new(&bytes) {
            let total = iterator.total();
            let count = iterator.take(70_000).count();
            prop_assert!(count <= usize::from(total));
        }
    }
}
