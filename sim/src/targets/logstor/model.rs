//! The logstor model: each key's version history, the group each version was written in, and
//! how much of it was synced.

use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub(super) struct History {
    /// Versions in order, each with the group it was written in; `None` is absent (the start,
    /// or a delete).
    pub(super) versions: Vec<(Option<Vec<u8>>, u32)>,
    /// Index into `versions` of the last synced one.
    pub(super) synced: usize,
}

impl History {
    pub(super) fn latest(&self) -> Option<&Vec<u8>> {
        self.versions.last().and_then(|(value, _)| value.as_ref())
    }

    /// The group of the newest version: where the store keeps the key now.
    pub(super) fn group(&self) -> u32 {
        self.versions.last().map_or(0, |&(_, group)| group)
    }

    pub(super) fn push(&mut self, value: Option<Vec<u8>>) {
        let group = self.group();
        self.versions.push((value, group));
    }
}

#[derive(Debug, Default)]
pub(super) struct Model {
    pub(super) keys: BTreeMap<Vec<u8>, History>,
    pub(super) next_value: u64,
}

impl Model {
    pub(super) fn history(&mut self, key: &[u8], group: u32) -> &mut History {
        self.keys.entry(key.to_vec()).or_insert_with(|| History { versions: vec![(None, group)], synced: 0 })
    }

    pub(super) fn sync_all(&mut self) {
        for history in self.keys.values_mut() {
            history.synced = history.versions.len() - 1;
        }
    }
}
