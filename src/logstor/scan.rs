//! The scan of one logstor segment at open: which use of the segment its buffers belong to,
//! where that use ends, and whether it was sealed, freed, torn or damaged. The rules are in
//! `docs/format.md` ("Recovery scans each segment").

use std::ops::{Range, RangeInclusive};

use super::format::{self, BufferHeader, BufferKind, BLOCK_SIZE, BUFFER_HEADER_SIZE};
use super::SegmentKind;
use crate::error::CorruptionReason;

/// The outcome of scanning one segment at open.
#[derive(Debug)]
pub(super) enum SegmentScan {
    Free {
        generation: u64,
        /// An older use's buffers, which verify, still start the segment: its freeing was cut
        /// short, or its FREE marker at offset 0 went astray, and only what lies after them
        /// (a later FREE marker or buffer) says they are stale. The open finishes the freeing
        /// with a FREE marker at 0, so that damage to that evidence later cannot bring them back.
        ///
        /// Regression (logstor seed 43505 of `ballast-sim`): a freeing cut short by a write error
        /// left a partial FREE marker over the seal and none at 0; the scan took the segment
        /// for free but wrote nothing, and after a latent sector error took that marker's
        /// header, a later open read the stale buffers back as a torn use and served a value a
        /// reported repair had dropped.
        unfinished: bool,
    },
    /// `sealed_at` is the seal's offset, or `None` if the segment was torn at `end`.
    Used {
        kind: SegmentKind,
        generation: u64,
        end: u64,
        sealed_at: Option<u64>,
        /// Where each record lies in the segment (also its offset), in a buffer that verified.
        records: Vec<Range<usize>>,
    },
    /// Damage to synced data: a seal follows it.
    Damaged {
        offset: u64,
        reason: CorruptionReason,
        /// The records a cut at `offset` drops: those in the data buffers between the damage
        /// and the seal that verify (see [`damaged`]).
        records_after: u64,
        /// Where the seal lies: the segment's data, which a cut at `offset` shortens to
        /// `offset`, ends there.
        sealed_at: u64,
        /// The records in the buffers before the damage, which verified (what a cut keeps).
        records: Vec<Range<usize>>,
    },
}

/// Every generation a buffer can carry, for [`find_seal`] to accept a seal of any.
pub(super) const ANY_GENERATION: RangeInclusive<u64> = 0..=u64::MAX;

/// Finds a valid SEAL of `segment`, of a generation in `generations`, at a block boundary after
/// `from`.
pub(super) fn find_seal(
    bytes: &[u8],
    segment: u64,
    generations: RangeInclusive<u64>,
    from: u64,
) -> Option<BufferHeader> {
    let mut offset = from.div_ceil(BLOCK_SIZE) * BLOCK_SIZE;
    while offset + BLOCK_SIZE <= bytes.len() as u64 {
        let at = usize::try_from(offset).expect("fits");
        let room = bytes.len() as u64 - offset;
        if let Ok(header) = format::decode_buffer_header(&bytes[at..], segment, offset, room) {
            let whole = &bytes[at..at + usize::try_from(header.length()).expect("fits")];
            if header.kind == BufferKind::Seal
                && generations.contains(&header.generation)
                && format::verify_buffer(whole, &header).is_ok()
            {
                return Some(header);
            }
        }
        offset += BLOCK_SIZE;
    }
    None
}

/// The generation the next use of a free segment carries: above every generation any header in
/// it names, so that no buffer left on disk is ever read as part of the new use.
///
/// A header is not verified on its own (its checksum covers its records too), so any bytes
/// can name any generation; at `u64::MAX` the generation stays there rather than overflow.
pub(super) fn next_generation(bytes: &[u8], segment: u64) -> u64 {
    highest_generation(bytes, segment).saturating_add(1)
}

/// The scan of a segment whose first buffers, of `generation`, end at `offset` with a valid
/// buffer of a later generation somewhere after them, if there is one: then the segment was
/// freed and used again, and both the FREE marker and the first buffer of that later use went
/// astray, leaving an older use's first buffers in front of the later use's.
///
/// A seal of the older buffers' own generation does not make them current (their freeing's
/// marker over it may have gone astray too), so this is asked before any seal of theirs.
///
/// Those older buffers are stale: every record in them was moved or dead before the segment
/// was freed. With a seal of a later generation, the later use's records were synced behind
/// them: damage at offset 0. Without one, the later use was being written when the power failed,
/// and the segment is free.
///
/// Regression (logstor seeds 80241 and 90502 of `ballast-sim`): the scan took the stale
/// buffers' generation for the segment's, found no seal of it and sealed the segment as torn,
/// silently hiding the synced records in a strict open; freeing it later gave it a generation
/// the later use's buffers already carried, which then read back as part of the next use.
fn stale_first_use(bytes: &[u8], segment: u64, generation: u64, offset: u64) -> Option<SegmentScan> {
    let later = generation.checked_add(1)?..=u64::MAX;
    if let Some(seal) = find_seal(bytes, segment, later.clone(), offset) {
        let reason =
            CorruptionReason::HeaderMismatch { field: "generation", expected: generation, found: seal.generation };
        return Some(damaged(bytes, segment, 0, reason, &seal, Vec::new()));
    }
    let mut at = offset;
    while at + BLOCK_SIZE <= bytes.len() as u64 {
        let start = usize::try_from(at).expect("fits");
        if let Ok(header) = format::decode_buffer_header(&bytes[start..], segment, at, bytes.len() as u64 - at) {
            let whole = &bytes[start..start + usize::try_from(header.length()).expect("fits")];
            if later.contains(&header.generation) && format::verify_buffer(whole, &header).is_ok() {
                return Some(SegmentScan::Free { generation: next_generation(bytes, segment), unfinished: true });
            }
        }
        at += BLOCK_SIZE;
    }
    None
}

/// The highest generation any decodable header in the segment names.
pub(super) fn highest_generation(bytes: &[u8], segment: u64) -> u64 {
    let mut highest = 0;
    let mut offset = 0;
    while offset + BLOCK_SIZE <= bytes.len() as u64 {
        let at = usize::try_from(offset).expect("fits");
        if let Ok(header) = format::decode_buffer_header(&bytes[at..], segment, offset, bytes.len() as u64 - offset) {
            highest = highest.max(header.generation);
        }
        offset += BLOCK_SIZE;
    }
    highest
}

/// The highest sequence number of any record in a data buffer of segment `segment` that
/// verifies, of any use and generation, found block by block; 0 if there is none. An open
/// starts sequence numbers above it even where the scan ignores the records (a segment taken
/// for free, the buffers after a torn chain): they are still on disk, and a sequence issued
/// again let a stale copy pass for the current one (logstor seed 646427 of `ballast-sim`).
pub(super) fn highest_sequence(bytes: &[u8], segment: u64) -> u64 {
    let mut highest = 0;
    let mut offset = 0;
    while offset + BLOCK_SIZE <= bytes.len() as u64 {
        let at = usize::try_from(offset).expect("fits");
        let room = bytes.len() as u64 - offset;
        if let Ok(header) = format::decode_buffer_header(&bytes[at..], segment, offset, room) {
            let buffer = &bytes[at..at + usize::try_from(header.length()).expect("within the segment")];
            if header.kind == BufferKind::Data && format::verify_buffer(buffer, &header).is_ok() {
                let data_end = BUFFER_HEADER_SIZE + header.data_length as usize;
                let mut record_at = BUFFER_HEADER_SIZE;
                while record_at < data_end {
                    let record = format::decode_verified_record(&buffer[record_at..data_end]).expect("verified");
                    highest = highest.max(record.sequence);
                    record_at += record.size();
                }
            }
        }
        offset += BLOCK_SIZE;
    }
    highest
}

/// The scan of a segment damaged at `offset`, before `seal`: a cut there drops every record
/// of the seal's generation in a data buffer that verifies from the block after the damage up to
/// the seal, found block by block (a damaged buffer's length cannot be trusted).
///
/// Regression: a damaged first buffer reported no records dropped, whatever the buffers after
/// it held, and `bytes_dropped` was the rest of the segment, unused space included, where the
/// data a reader found ends at the seal (`tests/engine/repair_counts.rs`).
fn damaged(
    bytes: &[u8],
    segment: u64,
    offset: u64,
    reason: CorruptionReason,
    seal: &BufferHeader,
    records: Vec<Range<usize>>,
) -> SegmentScan {
    assert!(offset <= seal.offset, "the seal is looked for from the damage on");
    let mut records_after = 0;
    let mut at = (offset + 1).div_ceil(BLOCK_SIZE) * BLOCK_SIZE;
    // Each iteration moves `at` on by at least a block.
    while at < seal.offset {
        let start = usize::try_from(at).expect("fits");
        match format::decode_buffer_header(&bytes[start..], segment, at, bytes.len() as u64 - at) {
            Ok(header) if header.kind == BufferKind::Data && header.generation == seal.generation => {
                let whole = &bytes[start..start + usize::try_from(header.length()).expect("fits")];
                if format::verify_buffer(whole, &header).is_ok() {
                    records_after += u64::from(header.records_count);
                    at += header.length();
                    continue;
                }
            }
            _ => {}
        }
        at += BLOCK_SIZE;
    }
    SegmentScan::Damaged { offset, reason, records_after, sealed_at: seal.offset, records }
}

/// Scans one segment's bytes (see the module docs and `docs/format.md` for the rules).
pub(super) fn scan_segment(bytes: &[u8], segment: u64) -> SegmentScan {
    let first = match format::decode_buffer_header(bytes, segment, 0, bytes.len() as u64) {
        Ok(header) => header,
        Err(reason) => {
            // No valid first buffer: free, unless a seal later says the segment was in use and
            // synced, in which case its first buffer was damaged.
            if let Some(seal) = find_seal(bytes, segment, ANY_GENERATION, BLOCK_SIZE) {
                return damaged(bytes, segment, 0, reason, &seal, Vec::new());
            }
            return SegmentScan::Free { generation: next_generation(bytes, segment), unfinished: false };
        }
    };
    if first.kind == BufferKind::Free {
        // A use of the segment writes its buffers and seal with the generation of the FREE
        // marker it replaced. A seal of that generation (or a later one: generations only grow)
        // after a FREE marker means the first buffer of that use never replaced the marker:
        // synced records are behind it.
        if let Some(seal) = find_seal(bytes, segment, first.generation..=u64::MAX, BLOCK_SIZE) {
            let reason = CorruptionReason::FreeMarkerInUse;
            return damaged(bytes, segment, 0, reason, &seal, Vec::new());
        }
        // The next use must carry a generation above every buffer left in the segment: a use
        // whose first buffer was lost in a crash may have left later buffers of the marker's
        // own generation, which a new use of that generation would read as its continuation.
        return SegmentScan::Free { generation: next_generation(bytes, segment), unfinished: false };
    }
    let kind = SegmentKind::from_owner(first.owner);
    let Chain { end, offset, records } = walk_chain(bytes, segment, &first);
    match end {
        ChainEnd::Sealed => match stale_first_use(bytes, segment, first.generation, offset) {
            Some(stale) => stale,
            None => {
                SegmentScan::Used { kind, generation: first.generation, end: offset, sealed_at: Some(offset), records }
            }
        },
        ChainEnd::Freed => SegmentScan::Free { generation: next_generation(bytes, segment), unfinished: true },
        ChainEnd::Stopped(problem) => stopped(bytes, segment, &first, Chain { end: problem, offset, records }),
    }
}

/// How the walk of a use's buffers from offset 0 ended.
enum ChainEnd {
    /// At a valid seal of the use.
    Sealed,
    /// At a FREE marker of a later generation: the one freeing writes over the seal, durably,
    /// before the marker at offset 0. The segment was freed, and its records were moved or
    /// dead. Only the marker's header is asked to decode: a stray write that damaged the rest
    /// of it must not bring the records back either.
    ///
    /// Regression (logstor seed 100071 of `ballast-sim`): both markers of a freeing were hit
    /// by misdirected writes, the one at 0 lost and the one over the seal damaged; the scan
    /// took the segment for one torn while written and sealed it again, and after its group
    /// was dropped, a record of that group came back.
    Freed,
    /// At something else (`Some`: what is wrong there), or at the end of the segment.
    Stopped(Option<CorruptionReason>),
}

/// A walk of a use's buffers: how it ended, where, and the records in the buffers before.
struct Chain<End> {
    end: End,
    offset: u64,
    /// Where each record lies in the segment (also its offset), in a buffer that verified.
    records: Vec<Range<usize>>,
}

/// Walks the buffers of the use that `first` begins, while each verifies and carries its
/// generation and owner.
fn walk_chain(bytes: &[u8], segment: u64, first: &BufferHeader) -> Chain<ChainEnd> {
    let size = bytes.len() as u64;
    let mut records = Vec::new();
    let mut offset = 0;
    let end = loop {
        if offset + BLOCK_SIZE > size {
            break ChainEnd::Stopped(None);
        }
        let at = usize::try_from(offset).expect("fits");
        let header = match format::decode_buffer_header(&bytes[at..], segment, offset, size - offset) {
            Ok(header) if header.kind == BufferKind::Free && header.generation > first.generation => {
                break ChainEnd::Freed;
            }
            Ok(header) if header.generation != first.generation => {
                let reason = CorruptionReason::HeaderMismatch {
                    field: "generation",
                    expected: first.generation,
                    found: header.generation,
                };
                break ChainEnd::Stopped(Some(reason));
            }
            Ok(header) if header.owner != first.owner => {
                let reason = CorruptionReason::HeaderMismatch {
                    field: "owner",
                    expected: u64::from(first.owner),
                    found: u64::from(header.owner),
                };
                break ChainEnd::Stopped(Some(reason));
            }
            Ok(header) => header,
            Err(reason) => break ChainEnd::Stopped(Some(reason)),
        };
        let whole = &bytes[at..at + usize::try_from(header.length()).expect("fits")];
        if let Err((_, reason)) = format::verify_buffer(whole, &header) {
            break ChainEnd::Stopped(Some(reason));
        }
        match header.kind {
            BufferKind::Seal => break ChainEnd::Sealed,
            BufferKind::Free => break ChainEnd::Stopped(Some(CorruptionReason::FreeMarkerInUse)),
            BufferKind::Data => {}
        }
        let mut record_at = BUFFER_HEADER_SIZE;
        for _ in 0..header.records_count {
            let record = format::decode_verified_record(&whole[record_at..]).expect("verified with the buffer");
            records.push(at + record_at..at + record_at + record.size());
            record_at += record.size();
        }
        offset += header.length();
    };
    Chain { end, offset, records }
}

/// The scan of a segment whose use, begun by `first`, stopped at `chain.offset` without a seal
/// or a freeing: damage to synced data if a seal after it says so, else a torn tail.
fn stopped(bytes: &[u8], segment: u64, first: &BufferHeader, chain: Chain<Option<CorruptionReason>>) -> SegmentScan {
    let Chain { end: problem, offset, records } = chain;
    let (generation, kind) = (first.generation, SegmentKind::from_owner(first.owner));
    let Some(reason) = problem else {
        // The buffers run to the end of the segment with no room for a seal: torn at the end.
        return SegmentScan::Used { kind, generation, end: offset, sealed_at: None, records };
    };
    if offset > 0 {
        if let Some(stale) = stale_first_use(bytes, segment, generation, offset) {
            return stale;
        }
    }
    // A first buffer that fails verification vouches for nothing, its generation included: a
    // flipped generation bit made the scan look for a seal of a generation no buffer has, take
    // the synced segment for one torn while written, and seal it empty, silently, in a strict
    // open. As with a first header that does not decode, a seal of any generation says the
    // segment was in use and synced.
    let seal_generations = if offset > 0 { generation..=generation } else { ANY_GENERATION };
    if let Some(seal) = find_seal(bytes, segment, seal_generations, offset) {
        return damaged(bytes, segment, offset, reason, &seal, records);
    }
    if offset == 0 {
        // Not even the first buffer verifies, and no seal says it was synced: the power failed
        // while it was being written, and the segment holds nothing. It is free, above every
        // generation in it.
        //
        // Regression (logstor seed 102730 of `ballast-sim`): such a segment was sealed empty
        // with the generation its torn first header named, an older use's; freeing it gave the
        // next use the generation of the lost use whose later buffers were still on disk, and
        // they read back as the next use's continuation: a value lost in a crash came back.
        return SegmentScan::Free { generation: next_generation(bytes, segment), unfinished: false };
    }
    // No seal after it: the power failed while this segment was being written.
    SegmentScan::Used { kind, generation, end: offset, sealed_at: None, records }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logstor::format::Record;

    /// A data buffer at `offset` of `segment` holding records with these sequence numbers.
    fn data_buffer(segment: u64, offset: u64, sequences: &[u64]) -> Vec<u8> {
        let mut buffer = vec![0u8; BUFFER_HEADER_SIZE];
        for &sequence in sequences {
            let record = Record { key: b"k", value: Some(b"value"), group: 0, sequence };
            format::encode_record(&mut buffer, &record);
        }
        let count = u32::try_from(sequences.len()).expect("few");
        format::seal_buffer(&mut buffer, BufferKind::Data, 0, segment, 3, offset, count);
        buffer
    }

    /// Logstor seed 646427: records in a segment an open takes for free kept their sequence
    /// numbers on disk, and the open issued them again. Their highest is found whatever the
    /// scan makes of the segment, and bytes that do not verify count for nothing.
    #[test]
    fn the_highest_sequence_counts_every_buffer_that_verifies() {
        let block = usize::try_from(BLOCK_SIZE).expect("4 KiB");
        let mut segment = vec![0u8; 4 * block];
        let first = data_buffer(5, 0, &[7, 40]);
        segment[..first.len()].copy_from_slice(&first);
        let later = data_buffer(5, 2 * BLOCK_SIZE, &[90]);
        let at = 2 * block;
        segment[at..at + later.len()].copy_from_slice(&later);
        assert_eq!(highest_sequence(&segment, 5), 90);
        segment[at + 100] ^= 1;
        assert_eq!(highest_sequence(&segment, 5), 40, "a buffer that fails its checksum vouches for nothing");
        assert_eq!(highest_sequence(&segment, 6), 0, "buffers of another segment are not this one's");
        assert_eq!(highest_sequence(&[0u8; 8192], 5), 0);
    }
}
