//! The head's WAL records, which its checkpoints hold too. One record per commit, so that a
//! commit is atomic: the WAL keeps or drops a record whole, and a torn one is cut at recovery.
//! A commit record holds the series the commit created (ref and labels) and its samples (ref,
//! t, value bits); a tombstones record, one deletion: per series, the time range it deleted.
//!
//! Little-endian. Every commit written today is kind 4: `kind u8` (4); `series u32`, each
//! `ref u64, labels u16`, each `name u16 + bytes, value u32 + bytes`; then `samples u32` and,
//! if there are any, the first sample's `ref u64` and `t i64`, then for each sample the
//! zig-zag varints of its ref and its t less the first's, and its `v u64` (about 11 bytes a
//! sample where kind 1, still read, took 24: every sample's `ref u64, t i64, v u64`).
//! Tombstones: `kind u8` (2); `count u32`, each `ref u64, min_time i64, max_time i64`.

use super::bytes::{put_varint, Cursor};
use super::labels::Labels;
use super::SeriesRef;

/// A commit with every sample's fields in full (written by earlier versions; still read).
const COMMIT_FIXED: u8 = 1;
const TOMBSTONES: u8 = 2;
/// A commit with its samples' refs and times as varints from the first sample's.
const COMMIT: u8 = 4;

/// A decoded WAL record of the head.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Record {
    Commit { series: Vec<(SeriesRef, Labels)>, samples: Vec<Sample> },
    Tombstones(Vec<Tombstone>),
}

/// Samples of a series deleted: those with `min_time <= t <= max_time`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tombstone {
    pub series: SeriesRef,
    pub min_time: i64,
    pub max_time: i64,
}

/// A sample of a series, its value kept as bits (every NaN payload survives).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sample {
    pub series: SeriesRef,
    pub t: i64,
    pub value_bits: u64,
}

/// The bytes a sample of a scrape takes in a commit record (at most 28), to size its buffer.
const SAMPLE_BYTES_TYPICAL: usize = 12;

pub(crate) fn encode_commit(series: &[(SeriesRef, &Labels)], samples: &[Sample]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 4 + series.len() * 64 + 4 + 16 + samples.len() * SAMPLE_BYTES_TYPICAL);
    out.push(COMMIT);
    out.extend_from_slice(&u32::try_from(series.len()).expect("fewer than 2^32 series").to_le_bytes());
    for (series_ref, labels) in series {
        out.extend_from_slice(&series_ref.to_le_bytes());
        out.extend_from_slice(&u16::try_from(labels.len()).expect("fewer than 2^16 labels").to_le_bytes());
        for label in labels.iter() {
            let name_length = u16::try_from(label.name.len()).expect("label names are short");
            out.extend_from_slice(&name_length.to_le_bytes());
            out.extend_from_slice(label.name.as_bytes());
            let value_length = u32::try_from(label.value.len()).expect("label values under 4 GiB");
            out.extend_from_slice(&value_length.to_le_bytes());
            out.extend_from_slice(label.value.as_bytes());
        }
    }
    out.extend_from_slice(&u32::try_from(samples.len()).expect("fewer than 2^32 samples").to_le_bytes());
    let Some(first) = samples.first() else { return out };
    out.extend_from_slice(&first.series.to_le_bytes());
    out.extend_from_slice(&first.t.to_le_bytes());
    for sample in samples {
        put_varint(&mut out, sample.series.wrapping_sub(first.series).cast_signed());
        put_varint(&mut out, sample.t.wrapping_sub(first.t));
        out.extend_from_slice(&sample.value_bits.to_le_bytes());
    }
    out
}

pub(crate) fn encode_tombstones(tombstones: &[Tombstone]) -> Vec<u8> {
    let mut out = vec![TOMBSTONES];
    out.extend_from_slice(&u32::try_from(tombstones.len()).expect("fewer than 2^32 series").to_le_bytes());
    for tombstone in tombstones {
        out.extend_from_slice(&tombstone.series.to_le_bytes());
        out.extend_from_slice(&tombstone.min_time.to_le_bytes());
        out.extend_from_slice(&tombstone.max_time.to_le_bytes());
    }
    out
}

/// The little-endian fields of the head's records.
impl Cursor<'_> {
    fn le16(&mut self) -> Result<u16, u64> {
        self.array().map(u16::from_le_bytes)
    }

    fn le32(&mut self) -> Result<u32, u64> {
        self.array().map(u32::from_le_bytes)
    }

    fn le64(&mut self) -> Result<u64, u64> {
        self.array().map(u64::from_le_bytes)
    }

    fn owned_string(&mut self, length: usize) -> Result<String, u64> {
        let at = self.at as u64;
        String::from_utf8(self.take(length)?.to_vec()).map_err(|_| at)
    }
}

/// Decodes a record; `Err(at)` names the byte of the record where it stops making sense.
pub(crate) fn decode(bytes: &[u8]) -> Result<Record, u64> {
    let mut reader = Cursor::new(bytes);
    let record = match reader.array::<1>()?[0] {
        COMMIT_FIXED => decode_commit(&mut reader, decode_samples_fixed)?,
        COMMIT => decode_commit(&mut reader, decode_samples)?,
        TOMBSTONES => decode_tombstones(&mut reader)?,
        _ => return Err(0),
    };
    // A record must end where its last field does.
    if reader.is_empty() {
        Ok(record)
    } else {
        Err(reader.at as u64)
    }
}

type SamplesDecoder = fn(&mut Cursor<'_>) -> Result<Vec<Sample>, u64>;

fn decode_commit(reader: &mut Cursor<'_>, decode_samples: SamplesDecoder) -> Result<Record, u64> {
    let mut series = Vec::new();
    for _ in 0..reader.le32()? {
        let series_ref = reader.le64()?;
        let mut pairs = Vec::new();
        for _ in 0..reader.le16()? {
            let name_length = usize::from(reader.le16()?);
            let name = reader.owned_string(name_length)?;
            let value_length = usize::try_from(reader.le32()?).map_err(|_| reader.at as u64)?;
            pairs.push((name, reader.owned_string(value_length)?));
        }
        let at = reader.at as u64;
        series.push((series_ref, Labels::new(pairs).map_err(|_| at)?));
    }
    Ok(Record::Commit { series, samples: decode_samples(reader)? })
}

fn decode_samples_fixed(reader: &mut Cursor<'_>) -> Result<Vec<Sample>, u64> {
    let mut samples = Vec::new();
    for _ in 0..reader.le32()? {
        let (series, t, value_bits) = (reader.le64()?, reader.le64()?, reader.le64()?);
        samples.push(Sample { series, t: t.cast_signed(), value_bits });
    }
    Ok(samples)
}

fn decode_samples(reader: &mut Cursor<'_>) -> Result<Vec<Sample>, u64> {
    let count = reader.le32()?;
    if count == 0 {
        return Ok(Vec::new());
    }
    let (first_series, first_t) = (reader.le64()?, reader.le64()?.cast_signed());
    // Every sample takes at least 10 bytes: no count allocates more than the record holds.
    let held = (reader.bytes.len() - reader.at) / 10;
    let mut samples = Vec::with_capacity(usize::try_from(count).unwrap_or(usize::MAX).min(held));
    for _ in 0..count {
        let series = first_series.wrapping_add(reader.varint()?.cast_unsigned());
        let t = first_t.wrapping_add(reader.varint()?);
        samples.push(Sample { series, t, value_bits: reader.le64()? });
    }
    Ok(samples)
}

fn decode_tombstones(reader: &mut Cursor<'_>) -> Result<Record, u64> {
    let mut tombstones = Vec::new();
    for _ in 0..reader.le32()? {
        let (series, min_time, max_time) = (reader.le64()?, reader.le64()?.cast_signed(), reader.le64()?.cast_signed());
        if min_time > max_time {
            return Err(reader.at as u64 - 16);
        }
        tombstones.push(Tombstone { series, min_time, max_time });
    }
    Ok(Record::Tombstones(tombstones))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn commits_round_trip() {
        let labels = Labels::new([("__name__", "up"), ("job", "a")]).expect("valid");
        let samples = [Sample { series: 7, t: -3, value_bits: f64::NAN.to_bits() }];
        let bytes = encode_commit(&[(7, &labels)], &samples);
        let decoded = decode(&bytes).expect("decodes");
        assert_eq!(decoded, Record::Commit { series: vec![(7, labels.clone())], samples: samples.to_vec() });
        assert_eq!(decode(&encode_commit(&[], &[])), Ok(Record::Commit { series: vec![], samples: vec![] }));
        let tombstones = vec![Tombstone { series: 3, min_time: -5, max_time: 5 }];
        assert_eq!(decode(&encode_tombstones(&tombstones)), Ok(Record::Tombstones(tombstones)));
    }

    #[test]
    fn a_commit_of_the_fixed_kind_earlier_versions_wrote_still_decodes() {
        // Kind 1, no series, one sample: ref 7, t -3, value bits 42.
        let mut bytes = vec![1, 0, 0, 0, 0, 1, 0, 0, 0];
        for field in [7u64, (-3i64).cast_unsigned(), 42] {
            bytes.extend_from_slice(&field.to_le_bytes());
        }
        let sample = Sample { series: 7, t: -3, value_bits: 42 };
        assert_eq!(decode(&bytes), Ok(Record::Commit { series: vec![], samples: vec![sample] }));
    }

    #[test]
    fn a_scrape_of_a_thousand_series_takes_eleven_bytes_a_sample() {
        let samples: Vec<Sample> = (0..1000).map(|i| Sample { series: 1000 + i, t: 30_000, value_bits: i }).collect();
        let bytes = encode_commit(&[], &samples);
        assert_eq!(bytes.len(), 9 + 16 + 64 * 10 + 936 * 11, "refs 1000..1064 take one byte, the rest two");
        assert_eq!(decode(&bytes), Ok(Record::Commit { series: vec![], samples }));
    }

    #[test]
    fn a_tombstone_whose_range_is_backwards_is_refused() {
        let bytes = encode_tombstones(&[Tombstone { series: 3, min_time: 5, max_time: 4 }]);
        assert_eq!(decode(&bytes), Err(13));
    }

    #[test]
    fn a_record_with_bytes_after_its_end_or_cut_short_is_refused_at_the_byte() {
        let mut bytes = encode_commit(&[], &[]);
        bytes.push(0);
        assert_eq!(decode(&bytes), Err(9));
        assert_eq!(decode(&bytes[..3]), Err(1));
        assert_eq!(decode(&[9]), Err(0));
    }

    proptest! {
        /// Any bytes decode or are refused without a panic; a huge count allocates nothing
        /// before the bytes it counts are there.
        #[test]
        fn any_bytes_decode_without_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
        }

        /// Any refs and times, the farthest apart included, come back as they went.
        #[test]
        fn any_samples_round_trip(fields in prop::collection::vec((any::<u64>(), any::<i64>(), any::<u64>()), 0..40)) {
            let samples: Vec<Sample> =
                fields.into_iter().map(|(series, t, value_bits)| Sample { series, t, value_bits }).collect();
            let decoded = decode(&encode_commit(&[], &samples));
            prop_assert_eq!(decoded, Ok(Record::Commit { series: vec![], samples }));
        }
    }
}
