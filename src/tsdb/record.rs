//! The head's WAL records, which its checkpoints hold too. One record per commit, so that a
//! commit is atomic: the WAL keeps or drops a record whole, and a torn one is cut at recovery.
//! A commit record holds the series the commit created (ref and labels) and its samples (ref,
//! t, value bits); a tombstones record, one deletion: per series, the time range it deleted.
//!
//! Little-endian. Commit: `kind u8` (1); `series u32`, each `ref u64, labels u16`, each
//! `name u16 + bytes, value u32 + bytes`; then `samples u32`, each `ref u64, t i64, v u64`.
//! Tombstones: `kind u8` (2); `count u32`, each `ref u64, min_time i64, max_time i64`.

use super::labels::Labels;
use super::SeriesRef;

const COMMIT: u8 = 1;
const TOMBSTONES: u8 = 2;

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

pub(crate) fn encode_commit(series: &[(SeriesRef, &Labels)], samples: &[Sample]) -> Vec<u8> {
    let mut out = vec![COMMIT];
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
    for sample in samples {
        out.extend_from_slice(&sample.series.to_le_bytes());
        out.extend_from_slice(&sample.t.to_le_bytes());
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

/// Reads fields off the front of a record; every read is bounds-checked, and nothing is
/// allocated from a length field before the bytes it counts have been seen.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize) -> Result<&'a [u8], u64> {
        let end = self.at.checked_add(length).filter(|&end| end <= self.bytes.len()).ok_or(self.at as u64)?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], u64> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }

    fn u16(&mut self) -> Result<u16, u64> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, u64> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, u64> {
        self.array().map(u64::from_le_bytes)
    }

    fn string(&mut self, length: usize) -> Result<String, u64> {
        let at = self.at as u64;
        String::from_utf8(self.take(length)?.to_vec()).map_err(|_| at)
    }
}

/// Decodes a record; `Err(at)` names the byte of the record where it stops making sense.
pub(crate) fn decode(bytes: &[u8]) -> Result<Record, u64> {
    let mut reader = Reader { bytes, at: 0 };
    match reader.array::<1>()?[0] {
        COMMIT => decode_commit(&mut reader),
        TOMBSTONES => decode_tombstones(&mut reader),
        _ => Err(0),
    }
}

fn decode_commit(reader: &mut Reader<'_>) -> Result<Record, u64> {
    let mut series = Vec::new();
    for _ in 0..reader.u32()? {
        let series_ref = reader.u64()?;
        let mut pairs = Vec::new();
        for _ in 0..reader.u16()? {
            let name_length = usize::from(reader.u16()?);
            let name = reader.string(name_length)?;
            let value_length = usize::try_from(reader.u32()?).map_err(|_| reader.at as u64)?;
            pairs.push((name, reader.string(value_length)?));
        }
        let at = reader.at as u64;
        series.push((series_ref, Labels::new(pairs).map_err(|_| at)?));
    }
    let mut samples = Vec::new();
    for _ in 0..reader.u32()? {
        let (series_ref, t, value_bits) = (reader.u64()?, reader.u64()?, reader.u64()?);
        samples.push(Sample { series: series_ref, t: t as i64, value_bits });
    }
    finish(reader, Record::Commit { series, samples })
}

fn decode_tombstones(reader: &mut Reader<'_>) -> Result<Record, u64> {
    let mut tombstones = Vec::new();
    for _ in 0..reader.u32()? {
        let (series, min_time, max_time) = (reader.u64()?, reader.u64()? as i64, reader.u64()? as i64);
        if min_time > max_time {
            return Err(reader.at as u64 - 16);
        }
        tombstones.push(Tombstone { series, min_time, max_time });
    }
    finish(reader, Record::Tombstones(tombstones))
}

/// A record must end where its last field does.
fn finish(reader: &Reader<'_>, record: Record) -> Result<Record, u64> {
    if reader.at == reader.bytes.len() {
        Ok(record)
    } else {
        Err(reader.at as u64)
    }
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
    }
}
