//! Label sets: a series is named by its labels, sorted by name, each name at most once.

use std::fmt;

/// One label of a series.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label {
    pub name: String,
    pub value: String,
}

/// A series' labels, sorted by name, with valid and distinct names and no empty value.
/// Ordered as Prometheus orders series: label by label, name then value, a prefix first.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Vec<Label>);

/// Why a label set is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LabelError {
    /// A name that is not `[a-zA-Z_][a-zA-Z0-9_]*`.
    BadName { name: String },
    /// The same name twice.
    DuplicateName { name: String },
    /// An empty value: a label with an empty value is the same as no label, so it must be left
    /// out rather than stored.
    EmptyValue { name: String },
    /// More than the WAL's record format holds: names of at most 65,535 bytes, values of at
    /// most 4 GiB - 1, at most 65,535 labels.
    TooLarge { what: &'static str },
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadName { name } => write!(f, "label name {name:?} is not [a-zA-Z_][a-zA-Z0-9_]*"),
            Self::DuplicateName { name } => write!(f, "label name {name:?} appears twice"),
            Self::EmptyValue { name } => {
                write!(f, "label {name:?} has an empty value (the same as no label: leave it out)")
            }
            Self::TooLarge { what } => write!(f, "the label set is too large: {what}"),
        }
    }
}

impl std::error::Error for LabelError {}

/// Whether `name` is a valid label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|byte| byte.is_ascii_alphabetic() || byte == b'_');
    first_ok && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

impl Labels {
    /// The label set of `pairs` (name, value), in any order.
    pub fn new<N: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (N, V)>) -> Result<Self, LabelError> {
        let mut labels: Vec<Label> =
            pairs.into_iter().map(|(name, value)| Label { name: name.into(), value: value.into() }).collect();
        labels.sort();
        if labels.len() > usize::from(u16::MAX) {
            return Err(LabelError::TooLarge { what: "more than 65,535 labels" });
        }
        for (index, label) in labels.iter().enumerate() {
            if label.name.len() > usize::from(u16::MAX) {
                return Err(LabelError::TooLarge { what: "a name longer than 65,535 bytes" });
            }
            if u32::try_from(label.value.len()).is_err() {
                return Err(LabelError::TooLarge { what: "a value of 4 GiB or more" });
            }
            if !is_valid_name(&label.name) {
                return Err(LabelError::BadName { name: label.name.clone() });
            }
            if label.value.is_empty() {
                return Err(LabelError::EmptyValue { name: label.name.clone() });
            }
            if index > 0 && labels[index - 1].name == label.name {
                return Err(LabelError::DuplicateName { name: label.name.clone() });
            }
        }
        Ok(Self(labels))
    }

    /// The value of label `name`, if the set has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        let index = self.0.binary_search_by(|label| label.name.as_str().cmp(name)).ok()?;
        Some(&self.0[index].value)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (index, label) in self.0.iter().enumerate() {
            let separator = if index == 0 { "" } else { ", " };
            write!(f, "{separator}{}={:?}", label.name, label.value)?;
        }
        f.write_str("}")
    }
}
