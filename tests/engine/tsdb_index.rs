//! The TSDB's label index (`ballast::tsdb`): label sets, the postings algebra against a naive
//! model of sorted sets, matcher semantics, and `select` against a brute-force filter.

use std::collections::BTreeSet;

use ballast::tsdb::postings::{collect, Intersect, Merge, Postings, SliceCursor, Without};
use ballast::tsdb::{LabelError, Labels, MatchKind, Matcher, MemPostings, SeriesRef};
use proptest::prelude::*;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::new(pairs.iter().copied()).expect("valid labels")
}

#[test]
fn label_sets_are_sorted_and_validated() {
    let set = labels(&[("job", "api"), ("__name__", "up"), ("instance", "a:9090")]);
    let names: Vec<&str> = set.iter().map(|label| label.name.as_str()).collect();
    assert_eq!(names, ["__name__", "instance", "job"]);
    assert_eq!(set.get("job"), Some("api"));
    assert_eq!(set.get("zone"), None);
    assert_eq!(set.to_string(), r#"{__name__="up", instance="a:9090", job="api"}"#);
    assert_eq!(Labels::new([("1st", "x")]), Err(LabelError::BadName { name: "1st".into() }));
    assert_eq!(Labels::new([("a-b", "x")]), Err(LabelError::BadName { name: "a-b".into() }));
    assert_eq!(Labels::new([("", "x")]), Err(LabelError::BadName { name: String::new() }));
    assert_eq!(Labels::new([("a", "x"), ("a", "y")]), Err(LabelError::DuplicateName { name: "a".into() }));
    assert_eq!(Labels::new([("a", "")]), Err(LabelError::EmptyValue { name: "a".into() }));
    // Prometheus's order: label by label, name then value, a prefix first.
    assert!(labels(&[("a", "1")]) < labels(&[("a", "1"), ("b", "0")]));
    assert!(labels(&[("a", "1"), ("c", "0")]) < labels(&[("a", "2")]));
    assert!(labels(&[("a", "9")]) < labels(&[("b", "0")]));
}

#[test]
fn matchers_are_anchored_re2_with_dot_matching_newlines() {
    let regex = |pattern: &str| Matcher::new(MatchKind::Regex, "l", pattern).expect("compiles");
    assert!(regex("a|b").matches("a"));
    assert!(!regex("a").matches("ab"), "anchored at the end");
    assert!(!regex("b").matches("ab"), "anchored at the start");
    assert!(regex("a.b").matches("a\nb"), "dot matches a newline");
    assert!(regex(".*").matches(""));
    let not_regex = Matcher::new(MatchKind::NotRegex, "l", "a.*").expect("compiles");
    assert!(not_regex.matches("b") && !not_regex.matches("abc") && not_regex.matches(""));
    assert!(Matcher::new(MatchKind::NotEqual, "l", "x").expect("plain").matches(""));
    let error = Matcher::new(MatchKind::Regex, "l", "(").expect_err("does not compile");
    assert_eq!(error.pattern, "(");
    // Lookaround is not RE2: refused, not misread.
    assert!(Matcher::new(MatchKind::Regex, "l", "(?=a)a").is_err());
}

#[test]
fn select_treats_a_missing_label_as_the_empty_value() {
    let mut index = MemPostings::default();
    index.add(1, &labels(&[("job", "api"), ("env", "prod")]));
    index.add(2, &labels(&[("job", "api")]));
    index.add(3, &labels(&[("job", "db"), ("env", "dev")]));
    let matcher = |kind, name: &str, value: &str| Matcher::new(kind, name, value).expect("compiles");
    let select = |matchers: &[Matcher]| index.select(matchers);
    assert_eq!(select(&[Matcher::equal("job", "api")]), [1, 2]);
    assert_eq!(select(&[Matcher::equal("env", "")]), [2], "env=\"\" selects the series without env");
    assert_eq!(select(&[matcher(MatchKind::NotEqual, "env", "")]), [1, 3]);
    assert_eq!(select(&[matcher(MatchKind::NotEqual, "env", "prod")]), [2, 3]);
    assert_eq!(select(&[matcher(MatchKind::Regex, "env", "p.*|")]), [1, 2]);
    assert_eq!(select(&[matcher(MatchKind::NotRegex, "job", "a.*"), Matcher::equal("env", "dev")]), [3]);
    assert_eq!(select(&[]), [1, 2, 3]);
    assert_eq!(index.label_names().collect::<Vec<_>>(), ["env", "job"]);
    assert_eq!(index.label_values("job").collect::<Vec<_>>(), ["api", "db"]);
    index.remove(1, &labels(&[("job", "api"), ("env", "prod")]));
    assert_eq!(index.label_values("env").collect::<Vec<_>>(), ["dev"]);
    assert_eq!(index.select(&[Matcher::equal("job", "api")]), [2]);
}

fn sorted_set() -> impl Strategy<Value = BTreeSet<SeriesRef>> {
    prop::collection::btree_set(0u64..200, 0..60)
}

/// The first element of `set` at or after `target`.
fn naive_seek(set: &BTreeSet<SeriesRef>, target: SeriesRef) -> Option<SeriesRef> {
    set.range(target..).next().copied()
}

proptest! {
    /// Intersect, Merge and Without agree with set algebra, whole and under interleaved seeks.
    #[test]
    fn postings_algebra_matches_sets(
        a in sorted_set(), b in sorted_set(), c in sorted_set(),
        seeks in prop::collection::vec(0u64..220, 0..10),
    ) {
        let (va, vb, vc): (Vec<_>, Vec<_>, Vec<_>) =
            (a.iter().copied().collect(), b.iter().copied().collect(), c.iter().copied().collect());
        let cursors = || vec![SliceCursor::new(&va), SliceCursor::new(&vb), SliceCursor::new(&vc)];
        let intersection: BTreeSet<_> = a.iter().filter(|x| b.contains(x) && c.contains(x)).copied().collect();
        let union: BTreeSet<_> = a.iter().chain(&b).chain(&c).copied().collect();
        let difference: BTreeSet<_> = a.difference(&b).copied().collect();
        prop_assert_eq!(collect(Intersect::new(cursors())), intersection.iter().copied().collect::<Vec<_>>());
        prop_assert_eq!(collect(Merge::new(cursors())), union.iter().copied().collect::<Vec<_>>());
        let without = Without::new(SliceCursor::new(&va), SliceCursor::new(&vb));
        prop_assert_eq!(collect(without), difference.iter().copied().collect::<Vec<_>>());
        // Seeks, in ascending order as a query makes them.
        let mut targets = seeks.clone();
        targets.sort_unstable();
        let mut intersect = Intersect::new(cursors());
        let mut merge = Merge::new(cursors());
        let mut without = Without::new(SliceCursor::new(&va), SliceCursor::new(&vb));
        for &target in &targets {
            intersect.seek(target);
            merge.seek(target);
            without.seek(target);
            prop_assert_eq!(intersect.current(), naive_seek(&intersection, target));
            prop_assert_eq!(merge.current(), naive_seek(&union, target));
            prop_assert_eq!(without.current(), naive_seek(&difference, target));
        }
    }

    /// `select` agrees with filtering every series by its labels, a missing label read as "".
    #[test]
    fn select_matches_a_brute_force_filter(
        series in prop::collection::vec(
            prop::collection::btree_map("[abc]", "[xyz]{1,2}", 0..3), 1..30),
        matchers in prop::collection::vec(
            (0..4usize, "[abc]", prop::sample::select(vec!["", "x", "y", "xy", "x.*", ".*", "x|z", "zz?", ".+"])),
            0..3),
    ) {
        let mut index = MemPostings::default();
        let mut all = Vec::new();
        for (index_ref, pairs) in series.iter().enumerate() {
            let set = Labels::new(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str()))).expect("valid");
            index.add(index_ref as SeriesRef, &set);
            all.push(set);
        }
        let kinds = [MatchKind::Equal, MatchKind::NotEqual, MatchKind::Regex, MatchKind::NotRegex];
        let matchers: Vec<Matcher> = matchers
            .iter()
            .map(|(kind, name, value)| Matcher::new(kinds[*kind], name.as_str(), *value).expect("compiles"))
            .collect();
        let expected: Vec<SeriesRef> = all
            .iter()
            .enumerate()
            .filter(|(_, set)| matchers.iter().all(|m| m.matches(set.get(m.name()).unwrap_or(""))))
            .map(|(index_ref, _)| index_ref as SeriesRef)
            .collect();
        prop_assert_eq!(index.select(&matchers), expected);
    }
}
