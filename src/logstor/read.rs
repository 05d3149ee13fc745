//! Reads: gets and scans through the index, records verified as they are read, and the
//! space accounting.

use super::format::{self, Record, BLOCK_SIZE};
use super::index::Entry;
use super::key::IndexKey;
use super::segment::{place, SegmentState};
use super::{Logstor, Stats};
use crate::error::{CorruptionReason, Error, Result};
use crate::vfs;

impl Logstor {
    /// The value of `key`: one index lookup and one positional read, verified by checksum.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some(entry) = self.entry_of(key) else { return Ok(None) };
        if entry.tombstone {
            return Ok(None);
        }
        let mut bytes = self.read_record(entry)?;
        let record = self.verify_record(&bytes, entry, key)?;
        let Some(value) = record.value else { return Ok(None) };
        // The value follows the header and the key: move it to the front of the buffer it was
        // read into rather than copying it into a second allocation.
        let (start, length) = (format::RECORD_HEADER_SIZE + key.len(), value.len());
        bytes.copy_within(start..start + length, 0);
        bytes.truncate(length);
        Ok(Some(bytes))
    }

    pub(super) fn read_record(&self, entry: &Entry) -> Result<Vec<u8>> {
        let length = entry.length as usize;
        if let Some(writer) = self.writers.values().find(|writer| writer.segment == entry.segment) {
            if entry.offset >= writer.buffer_offset {
                let start = usize::try_from(entry.offset - writer.buffer_offset).expect("fits");
                return Ok(writer.buffer[start..start + length].to_vec());
            }
        }
        let (file_index, base) = place(self.geometry, entry.segment);
        let file_index = usize::try_from(file_index).expect("fits");
        let path = || self.directory.join(format::data_file_name(file_index as u64));
        let file = self.files[file_index].as_ref();
        // A record inside one block below the written end: through the cache.
        let block = entry.offset / BLOCK_SIZE;
        let block_end = (block + 1) * BLOCK_SIZE;
        let segment = &self.segments[usize::try_from(entry.segment).expect("fits")];
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.is_enabled() && entry.offset + length as u64 <= block_end && block_end <= segment.written {
            let start = usize::try_from(entry.offset - block * BLOCK_SIZE).expect("within a block");
            let block = u32::try_from(block).expect("a segment's blocks fit a u32");
            if let Some(bytes) = cache.get(entry.segment, segment.generation, block) {
                return Ok(bytes[start..start + length].to_vec());
            }
            let read =
                |slot: &mut [u8]| vfs::read_exact_retrying_named(file, path, slot, base + block_end - BLOCK_SIZE);
            // A block that fails to read is not the record: that may still read, below.
            if let Some(Ok(bytes)) = cache.fill(entry.segment, segment.generation, block, read) {
                return Ok(bytes[start..start + length].to_vec());
            }
        }
        drop(cache);
        let mut bytes = vec![0u8; length];
        vfs::read_exact_retrying_named(file, path, &mut bytes, base + entry.offset)?;
        Ok(bytes)
    }

    pub(super) fn verify_record<'b>(&self, bytes: &'b [u8], entry: &Entry, key: &[u8]) -> Result<Record<'b>> {
        // The path is built only if there is an error to report: this is every get's path.
        let corruption = |reason| {
            let (file_index, base) = place(self.geometry, entry.segment);
            Error::Corruption {
                file: self.directory.join(format::data_file_name(file_index)),
                segment: entry.segment,
                offset: base + entry.offset,
                reason,
            }
        };
        let record = format::decode_record(bytes).map_err(corruption)?;
        // The index knows the record's length: a shorter record that decodes at the start of
        // the bytes read is another write's. (Logstor seed 646427 of `ballast-sim`: a
        // relocated copy went astray, the block kept an older copy of the key under the same
        // sequence number, a crash had let recovery issue again, and a get returned it.)
        if record.size() as u64 != u64::from(entry.length) {
            return Err(corruption(CorruptionReason::HeaderMismatch {
                field: "length",
                expected: u64::from(entry.length),
                found: record.size() as u64,
            }));
        }
        if record.key != key || record.sequence != entry.sequence {
            return Err(corruption(CorruptionReason::HeaderMismatch {
                field: "sequence",
                expected: entry.sequence,
                found: record.sequence,
            }));
        }
        Ok(record)
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.entry_of(key).is_some_and(|entry| !entry.tombstone)
    }

    /// Keys with a value.
    pub fn len(&self) -> u64 {
        self.keys_count
    }

    pub fn is_empty(&self) -> bool {
        self.keys_count == 0
    }

    /// Every key with a value, in key order, with its value (each read and verified).
    pub fn scan(&self) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + '_ {
        let mut live: Vec<(&IndexKey, &Entry)> = self.index.iter().filter(|(_, entry)| !entry.tombstone).collect();
        live.sort_unstable_by_key(|(key, _)| *key);
        live.into_iter().map(move |(key, entry)| {
            let bytes = self.read_record(entry)?;
            let record = self.verify_record(&bytes, entry, key.as_slice())?;
            Ok((key.as_slice().to_vec(), record.value.expect("not a tombstone").to_vec()))
        })
    }

    pub fn stats(&self) -> Stats {
        let free = self.free.len() as u64;
        Stats {
            segments_total: self.segments.len() as u64,
            segments_free: free,
            segments_used: self.segments.len() as u64 - free,
            live_bytes: self.segments.iter().map(|segment| segment.live_bytes).sum(),
            keys_count: self.keys_count,
            sealed_without_live_data: self
                .segments
                .iter()
                .filter(|segment| matches!(segment.state, SegmentState::Sealed(_)) && segment.live_bytes == 0)
                .count() as u64,
        }
    }

    pub fn segment_state(&self, segment: u64) -> Option<SegmentState> {
        self.segments.get(usize::try_from(segment).ok()?).map(|segment| segment.state)
    }

    /// The index entry of `key`.
    pub(super) fn entry_of(&self, key: &[u8]) -> Option<&Entry> {
        self.index.get(key)
    }
}
