//! The commitlog model: the datastore's transactions (batches of puts and deletes on a map
//! from key to value), the commits that were made, what was acknowledged durable, and the
//! state at any offset.

use std::collections::BTreeMap;

use ballast::commitlog::SnapshotSource;

pub(super) type State = BTreeMap<u8, u32>;

pub(super) fn apply(state: &mut State, transaction: &[u8]) {
    let mut at = 0;
    while at < transaction.len() {
        match transaction[at] {
            0 => {
                let value = u32::from_le_bytes(transaction[at + 2..at + 6].try_into().expect("4 bytes"));
                state.insert(transaction[at + 1], value);
                at += 6;
            }
            _ => {
                state.remove(&transaction[at + 1]);
                at += 2;
            }
        }
    }
}

fn encode_state(state: &State) -> Vec<u8> {
    state.iter().flat_map(|(key, value)| std::iter::once(*key).chain(value.to_le_bytes())).collect()
}

pub(super) fn decode_state(bytes: &[u8]) -> Option<State> {
    bytes.len().is_multiple_of(5).then(|| {
        bytes.chunks(5).map(|chunk| (chunk[0], u32::from_le_bytes(chunk[1..5].try_into().expect("4")))).collect()
    })
}

#[derive(Debug, Clone)]
pub(super) struct ModelCommit {
    pub(super) first_offset: u64,
    pub(super) count: u64,
    pub(super) epoch: u64,
}

#[derive(Debug, Default)]
pub(super) struct Model {
    /// Every transaction ever committed and still in the history, at index = offset.
    pub(super) transactions: Vec<Vec<u8>>,
    pub(super) commits: Vec<ModelCommit>,
    /// Transactions acknowledged durable: offsets below this must survive.
    pub(super) synced: u64,
    /// Offsets at or above this may vanish without damage: a reset that did not return.
    pub(super) reset_floor: Option<u64>,
    pub(super) epoch: u64,
}

impl Model {
    pub(super) fn state_at(&self, end: u64) -> State {
        let mut state = State::new();
        for transaction in &self.transactions[..usize::try_from(end).expect("fits")] {
            apply(&mut state, transaction);
        }
        state
    }

    pub(super) fn truncate(&mut self, end: u64) {
        self.transactions.truncate(usize::try_from(end).expect("fits"));
        self.commits.retain(|commit| commit.first_offset + commit.count <= end);
        self.synced = self.synced.min(end);
    }
}

/// The datastore's snapshot source: the model's state at the log's end.
pub(super) struct ModelSource<'a>(pub(super) &'a Model);

impl SnapshotSource for ModelSource<'_> {
    fn snapshot(&mut self, offset: u64) -> Vec<u8> {
        encode_state(&self.0.state_at(offset + 1))
    }
}
