//! The logstor oracle: every open (strict, then repair), the check of what it recovered
//! against each key's versions, and the closed-segment check at every seal.

use std::collections::BTreeMap;

use ballast::logstor::{format, Logstor};
use ballast::Error;

use super::{directory, Workload};
use crate::fail;
use crate::harness::{self, Context, Failure};

impl Workload {
    /// Checks the recovered store against the model; `false` when reading it back met damage
    /// the disk caused, so the open must be repeated.
    pub(super) fn check_open(
        &mut self,
        context: &mut Context,
        store: &Logstor,
        damaged: bool,
        after_crash: bool,
    ) -> Result<bool, Failure> {
        let report = store.recovery_report().clone();
        if report.torn_segments_sealed > 0 {
            context.note("torn_segment_sealed");
        }
        if report.frees_finished > 0 {
            context.note("free_finished");
        }
        if let Some(repair) = &report.repair {
            context.note(if repair.resumed { "repair_resumed" } else { "repair" });
        }
        // Damage done during the open counts too: recovery's own writes can be misdirected.
        let lenient = damaged || report.repair.is_some() || !context.vfs.damage().is_empty();
        let scanned = harness::retry_reads(context, "scanning the store", || store.scan().collect())?;
        let recovered: BTreeMap<Vec<u8>, Vec<u8>> = match scanned {
            Ok(found) => found,
            Err(Error::Corruption { .. }) if !context.vfs.damage().is_empty() => {
                // A write the disk misdirected (recovery's own, even) damaged what the index
                // points to; nothing is returned as data, and the next open reports it.
                context.note("scan_met_damage");
                return Ok(false);
            }
            Err(error) => fail!("open succeeded but scanning failed: {error}"),
        };
        for key in recovered.keys() {
            if !self.model.keys.contains_key(key) {
                fail!("recovered key {:?} that was never written", String::from_utf8_lossy(key));
            }
        }
        for (key, history) in &mut self.model.keys {
            let found = recovered.get(key);
            // The newest version this state can be, searching from the last synced one; with
            // damage, any version at all.
            let floor = if lenient { 0 } else { history.synced };
            let Some(index) =
                (floor..history.versions.len()).rev().find(|&index| history.versions[index].0.as_ref() == found)
            else {
                let what = found.map_or("absent".to_string(), |value| format!("{} bytes", value.len()));
                if history.versions.iter().any(|(version, _)| version.as_ref() == found) {
                    fail!(
                        "lost synced data: key {:?} recovered an old version ({what}) below its last synced one",
                        String::from_utf8_lossy(key)
                    );
                }
                fail!("key {:?} recovered a value that was never written ({what})", String::from_utf8_lossy(key));
            };
            history.versions.truncate(index + 1);
            history.synced = if after_crash { index } else { history.synced.min(index) };
        }
        context.trace(format_args!("check recovered {} keys (lenient {lenient})", recovered.len()));
        Ok(true)
    }

    /// Whether the disk damaged segment `segment` (it may then read back as anything).
    fn segment_damaged(&self, context: &Context, segment: u64) -> bool {
        let per_file = self.options.segments_per_file;
        let file = directory().join(format::data_file_name(segment / per_file));
        let start = (segment % per_file) * self.options.segment_size;
        context.vfs.damage().iter().any(|damage| {
            damage.path == file
                && damage.offset < start + self.options.segment_size
                && damage.offset + damage.length > start
        })
    }

    /// The closed-segment check, at every seal.
    pub(super) fn check_sealed(&self, context: &mut Context, store: &mut Logstor) -> Result<(), Failure> {
        let sealed = store.take_sealed();
        if store.is_poisoned() {
            // A step failed part way; the handle's view is no longer the disk's. Reopening
            // re-verifies everything.
            return Ok(());
        }
        for segment in sealed {
            if self.segment_damaged(context, segment) {
                context.note("seal_check_skipped_damaged");
                continue;
            }
            match store.check_segment_indexed(segment) {
                Ok(violations) if violations.is_empty() => context.note("sealed_segment_checked"),
                Ok(violations) => fail!("sealed segment {segment} is not fully indexed: {}", violations.join("; ")),
                Err(Error::Io { .. }) => {}
                Err(error) if !context.vfs.damage().is_empty() => {
                    context.trace(format_args!("seal check skipped: {error}"))
                }
                Err(error) => fail!("reading sealed segment {segment} failed: {error}"),
            }
        }
        Ok(())
    }
}
