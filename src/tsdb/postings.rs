//! Postings: for every label name and value, the sorted list of the series that carry it, and
//! the algebra a query combines them with (intersection, union, difference) over sorted
//! cursors, so that nothing is materialised before the end: a cursor seeks forward past what
//! the other lists rule out.

use std::collections::BTreeMap;

use super::labels::Labels;
use super::matcher::Matcher;
use super::SeriesRef;

/// A forward-only cursor over sorted, distinct refs.
pub trait Postings {
    /// The ref under the cursor; `None` once it is exhausted.
    fn current(&self) -> Option<SeriesRef>;
    /// Moves past the current ref.
    fn advance(&mut self);
    /// Moves to the first ref at or after `target`; never backwards.
    fn seek(&mut self, target: SeriesRef);
}

/// Drains `postings` into a vector.
pub fn collect(mut postings: impl Postings) -> Vec<SeriesRef> {
    let mut refs = Vec::new();
    while let Some(current) = postings.current() {
        refs.push(current);
        postings.advance();
    }
    refs
}

/// A cursor over a sorted slice; it seeks by galloping, then binary search.
#[derive(Clone, Debug)]
pub struct SliceCursor<'a> {
    refs: &'a [SeriesRef],
    position: usize,
}

impl<'a> SliceCursor<'a> {
    pub fn new(refs: &'a [SeriesRef]) -> Self {
        debug_assert!(refs.windows(2).all(|pair| pair[0] < pair[1]), "postings are sorted and distinct");
        Self { refs, position: 0 }
    }
}

impl Postings for SliceCursor<'_> {
    fn current(&self) -> Option<SeriesRef> {
        self.refs.get(self.position).copied()
    }

    fn advance(&mut self) {
        self.position = (self.position + 1).min(self.refs.len());
    }

    fn seek(&mut self, target: SeriesRef) {
        let rest = &self.refs[self.position..];
        // Gallop to a window that holds the target, then search inside it.
        let mut bound = 1;
        while bound < rest.len() && rest[bound] < target {
            bound *= 2;
        }
        let window = &rest[..rest.len().min(bound + 1)];
        self.position += window.partition_point(|&value| value < target);
    }
}

impl<P: Postings + ?Sized> Postings for Box<P> {
    fn current(&self) -> Option<SeriesRef> {
        (**self).current()
    }
    fn advance(&mut self) {
        (**self).advance();
    }
    fn seek(&mut self, target: SeriesRef) {
        (**self).seek(target);
    }
}

/// The refs in every one of the lists.
#[derive(Debug)]
pub struct Intersect<P> {
    lists: Vec<P>,
    current: Option<SeriesRef>,
}

impl<P: Postings> Intersect<P> {
    /// The intersection of `lists`; of none, nothing.
    pub fn new(lists: Vec<P>) -> Self {
        let mut intersect = Self { lists, current: None };
        intersect.settle(0);
        intersect
    }

    /// Finds the first ref at or after `target` that every list holds.
    fn settle(&mut self, mut target: SeriesRef) {
        if self.lists.is_empty() {
            self.current = None;
            return;
        }
        'search: loop {
            for list in &mut self.lists {
                list.seek(target);
                match list.current() {
                    None => {
                        self.current = None;
                        return;
                    }
                    Some(found) if found > target => {
                        target = found;
                        continue 'search;
                    }
                    Some(_) => {}
                }
            }
            self.current = Some(target);
            return;
        }
    }
}

impl<P: Postings> Postings for Intersect<P> {
    fn current(&self) -> Option<SeriesRef> {
        self.current
    }

    fn advance(&mut self) {
        if let Some(current) = self.current {
            match current.checked_add(1) {
                Some(next) => self.settle(next),
                None => self.current = None,
            }
        }
    }

    fn seek(&mut self, target: SeriesRef) {
        if self.current.is_some_and(|current| current < target) {
            self.settle(target);
        }
    }
}

/// The refs in any of the lists, each once.
#[derive(Debug)]
pub struct Merge<P> {
    lists: Vec<P>,
}

impl<P: Postings> Merge<P> {
    pub fn new(lists: Vec<P>) -> Self {
        Self { lists }
    }
}

impl<P: Postings> Postings for Merge<P> {
    fn current(&self) -> Option<SeriesRef> {
        self.lists.iter().filter_map(Postings::current).min()
    }

    fn advance(&mut self) {
        let Some(current) = self.current() else { return };
        for list in &mut self.lists {
            if list.current() == Some(current) {
                list.advance();
            }
        }
    }

    fn seek(&mut self, target: SeriesRef) {
        for list in &mut self.lists {
            list.seek(target);
        }
    }
}

/// The refs of `base` that `removed` does not hold.
#[derive(Debug)]
pub struct Without<B, R> {
    base: B,
    removed: R,
}

impl<B: Postings, R: Postings> Without<B, R> {
    pub fn new(base: B, removed: R) -> Self {
        let mut without = Self { base, removed };
        without.skip_removed();
        without
    }

    /// Advances `base` past every ref `removed` holds.
    fn skip_removed(&mut self) {
        while let Some(current) = self.base.current() {
            self.removed.seek(current);
            if self.removed.current() != Some(current) {
                return;
            }
            self.base.advance();
        }
    }
}

impl<B: Postings, R: Postings> Postings for Without<B, R> {
    fn current(&self) -> Option<SeriesRef> {
        self.base.current()
    }

    fn advance(&mut self) {
        self.base.advance();
        self.skip_removed();
    }

    fn seek(&mut self, target: SeriesRef) {
        self.base.seek(target);
        self.skip_removed();
    }
}

/// The in-memory postings of the head: label name → value → sorted refs, and every ref.
#[derive(Clone, Debug, Default)]
pub struct MemPostings {
    by_label: BTreeMap<String, BTreeMap<String, Vec<SeriesRef>>>,
    all: Vec<SeriesRef>,
}

/// Inserts `series` into the sorted `refs` (at the end, nearly always: refs only grow).
fn insert_sorted(refs: &mut Vec<SeriesRef>, series: SeriesRef) {
    match refs.last() {
        Some(&last) if last < series => refs.push(series),
        None => refs.push(series),
        Some(_) => {
            if let Err(index) = refs.binary_search(&series) {
                refs.insert(index, series);
            }
        }
    }
}

impl MemPostings {
    /// Adds series `series` under each of its labels.
    pub fn add(&mut self, series: SeriesRef, labels: &Labels) {
        insert_sorted(&mut self.all, series);
        for label in labels.iter() {
            let values = self.by_label.entry(label.name.clone()).or_default();
            insert_sorted(values.entry(label.value.clone()).or_default(), series);
        }
    }

    /// Removes series `series`, which carried `labels`.
    pub fn remove(&mut self, series: SeriesRef, labels: &Labels) {
        let remove_from = |refs: &mut Vec<SeriesRef>| {
            if let Ok(index) = refs.binary_search(&series) {
                refs.remove(index);
            }
        };
        remove_from(&mut self.all);
        for label in labels.iter() {
            let Some(values) = self.by_label.get_mut(&label.name) else { continue };
            if let Some(refs) = values.get_mut(&label.value) {
                remove_from(refs);
                if refs.is_empty() {
                    values.remove(&label.value);
                }
            }
            if values.is_empty() {
                self.by_label.remove(&label.name);
            }
        }
    }

    /// Every series, sorted.
    pub fn all(&self) -> SliceCursor<'_> {
        SliceCursor::new(&self.all)
    }

    /// The series carrying `name="value"`.
    pub fn get(&self, name: &str, value: &str) -> SliceCursor<'_> {
        let refs = self.by_label.get(name).and_then(|values| values.get(value));
        SliceCursor::new(refs.map_or(&[], Vec::as_slice))
    }

    /// The label names in use, sorted.
    pub fn label_names(&self) -> impl Iterator<Item = &str> {
        self.by_label.keys().map(String::as_str)
    }

    /// The values label `name` takes, sorted.
    pub fn label_values(&self, name: &str) -> impl Iterator<Item = &str> {
        self.by_label.get(name).into_iter().flat_map(|values| values.keys().map(String::as_str))
    }

    /// The union of the postings of the values of `name` that `keep` accepts.
    fn values_where<'a>(&'a self, name: &str, keep: impl Fn(&str) -> bool) -> Merge<SliceCursor<'a>> {
        let lists = self
            .by_label
            .get(name)
            .into_iter()
            .flat_map(|values| values.iter())
            .filter(|(value, _)| keep(value))
            .map(|(_, refs)| SliceCursor::new(refs))
            .collect();
        Merge::new(lists)
    }

    /// The series every one of `matchers` selects, sorted by ref. A matcher that matches the
    /// empty string selects the series without its label as well: it removes the series whose
    /// value it rejects instead of selecting those whose value it accepts. With no matcher that
    /// needs a value, the selection starts from every series.
    pub fn select(&self, matchers: &[Matcher]) -> Vec<SeriesRef> {
        let (removing, selecting): (Vec<&Matcher>, Vec<&Matcher>) =
            matchers.iter().partition(|matcher| matcher.matches(""));
        let mut lists: Vec<Box<dyn Postings + '_>> = selecting
            .iter()
            .map(|matcher| Box::new(self.values_where(matcher.name(), |value| matcher.matches(value))) as Box<_>)
            .collect();
        if lists.is_empty() {
            lists.push(Box::new(self.all()));
        }
        let mut selected: Box<dyn Postings + '_> = Box::new(Intersect::new(lists));
        for matcher in removing {
            let rejected = self.values_where(matcher.name(), |value| !matcher.matches(value));
            selected = Box::new(Without::new(selected, rejected));
        }
        collect(selected)
    }
}
