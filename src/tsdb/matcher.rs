//! Label matchers, as PromQL's selectors use them: `=`, `!=`, `=~`, `!~`. A regular
//! expression matches a whole value (it is anchored at both ends, with `.` matching newlines,
//! as Prometheus compiles it), in the RE2 syntax of the `regex` crate. A series without a
//! label has the empty string as its value, so a matcher that matches the empty string also
//! selects the series that lack the label.

use std::fmt;

use regex::Regex;

/// What a matcher compares a label's value with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchKind {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

/// A matcher of one label's value.
#[derive(Clone, Debug)]
pub struct Matcher {
    name: String,
    kind: MatchKind,
    value: String,
    /// The compiled expression, for the two regex kinds.
    regex: Option<Regex>,
}

/// A regular expression that does not compile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatcherError {
    pub pattern: String,
    pub reason: String,
}

impl fmt::Display for MatcherError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the regular expression {:?} does not compile: {}", self.pattern, self.reason)
    }
}

impl std::error::Error for MatcherError {}

impl Matcher {
    pub fn new(kind: MatchKind, name: impl Into<String>, value: impl Into<String>) -> Result<Self, MatcherError> {
        let value = value.into();
        let regex = match kind {
            MatchKind::Regex | MatchKind::NotRegex => Some(
                Regex::new(&format!("^(?s:{value})$"))
                    .map_err(|error| MatcherError { pattern: value.clone(), reason: error.to_string() })?,
            ),
            MatchKind::Equal | MatchKind::NotEqual => None,
        };
        Ok(Self { name: name.into(), kind, value, regex })
    }

    /// `name="value"`.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self { name: name.into(), kind: MatchKind::Equal, value: value.into(), regex: None }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> MatchKind {
        self.kind
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether a label value (the empty string for a series without the label) matches.
    pub fn matches(&self, value: &str) -> bool {
        let regex_matches = || self.regex.as_ref().is_some_and(|regex| regex.is_match(value));
        match self.kind {
            MatchKind::Equal => value == self.value,
            MatchKind::NotEqual => value != self.value,
            MatchKind::Regex => regex_matches(),
            MatchKind::NotRegex => !regex_matches(),
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let operator = match self.kind {
            MatchKind::Equal => "=",
            MatchKind::NotEqual => "!=",
            MatchKind::Regex => "=~",
            MatchKind::NotRegex => "!~",
        };
        write!(f, "{}{operator}{:?}", self.name, self.value)
    }
}
