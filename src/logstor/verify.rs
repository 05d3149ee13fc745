//! `verify`: a read-only check of a store directory, for tools and users.

use std::io;
use std::path::Path;

use super::format;
use super::io_error;
use super::scan::{scan_segment, SegmentScan};
use crate::error::{Error, Result};
use crate::vfs::{self, OpenMode, Vfs};

/// What [`verify`] found.
#[derive(Debug)]
pub struct VerifyReport {
    pub segments_used: u64,
    pub records_count: u64,
    /// Segments torn while being written (recovery seals them): a store that was closed with
    /// [`Logstor::close`](super::Logstor::close) has none; one dropped without it, or cut off by a crash, has the
    /// segments it was writing.
    pub torn_segments: u64,
    /// The first problem that would fail a strict open.
    pub problem: Option<Error>,
}

/// Scans every segment the way a strict open would, changing nothing and taking no lock.
pub fn verify(vfs: &dyn Vfs, directory: &Path) -> Result<VerifyReport> {
    let meta_path = directory.join(format::META_FILE_NAME);
    let file = vfs.open(&meta_path, OpenMode::Read).map_err(io_error(&meta_path, "open"))?;
    let mut bytes = vec![0u8; format::META_SIZE];
    let mut report = VerifyReport { segments_used: 0, records_count: 0, torn_segments: 0, problem: None };
    if let Err(error) = vfs::read_exact_retrying(file.as_ref(), &meta_path, &mut bytes, 0) {
        report.problem = Some(error);
        return Ok(report);
    }
    let geometry = match format::decode_meta(&bytes) {
        Ok(meta) => meta.geometry,
        Err(reason) => {
            report.problem = Some(Error::Corruption { file: meta_path, segment: 0, offset: 0, reason });
            return Ok(report);
        }
    };
    let mut index = 0;
    let mut segment_bytes = vec![0u8; usize::try_from(geometry.segment_size).expect("fits")];
    loop {
        let path = directory.join(format::data_file_name(index));
        let file = match vfs.open(&path, OpenMode::Read) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(report),
            Err(error) => return Err(Error::io(&path, "open", error)),
        };
        for local in 0..geometry.segments_per_file {
            let segment = index * geometry.segments_per_file + local;
            let base = local * geometry.segment_size;
            if let Err(error) = vfs::read_exact_retrying(file.as_ref(), &path, &mut segment_bytes, base) {
                report.problem = Some(error);
                return Ok(report);
            }
            match scan_segment(&segment_bytes, segment) {
                SegmentScan::Free { .. } => {}
                SegmentScan::Used { sealed_at, records, .. } => {
                    report.segments_used += 1;
                    report.records_count += records.len() as u64;
                    report.torn_segments += u64::from(sealed_at.is_none());
                }
                SegmentScan::Damaged { offset, reason, .. } => {
                    report.problem = Some(Error::Corruption { file: path, segment, offset: base + offset, reason });
                    return Ok(report);
                }
            }
        }
        index += 1;
    }
}
