//! Where a sliced run stands, as its checkpoint keeps it: the plan frozen at the start, the
//! slices in flight with their positions, and the completed ones, collapsed into ranges of
//! windows per partition so that the state grows with the partitions, not with the slices.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::window::{Window, WindowPlan};
use crate::paginate::Position;

/// The slices of one run, fixed when it starts: a resumed run cuts the same ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SlicePlan {
    /// Whether the job has partitions: without, one implicit partition; with, exactly
    /// those listed (none, if the API listed none).
    #[serde(default)]
    pub partitioned: bool,
    /// The partitions' values, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub windows: Option<WindowPlan>,
    /// Per partition, its first window to fetch (`start = "mark"`: the windows before
    /// end before its mark); empty when every partition starts at the first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_windows: Vec<u64>,
    /// An incremental job's parameter, and per partition the value it sends (its own
    /// high-water mark less the lookback, or `initial`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_param: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub since: Vec<Option<String>>,
}

/// One slice: a partition's values and a window, either of which may be absent.
#[derive(Clone, Debug, PartialEq)]
pub struct Slice<'a> {
    pub index: u64,
    pub partition: Option<&'a BTreeMap<String, serde_json::Value>>,
    pub window: Option<Window>,
}

impl SlicePlan {
    fn partition_count(&self) -> u64 {
        match self.partitioned {
            true => self.partitions.len() as u64,
            false => 1,
        }
    }

    fn window_count(&self) -> u64 {
        self.windows.as_ref().map_or(1, |w| w.len())
    }

    /// Slices in all: every partition × every window.
    pub fn len(&self) -> u64 {
        self.partition_count() * self.window_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Partition `p`'s first window to fetch.
    pub fn first_window(&self, p: u64) -> u64 {
        self.first_windows.get(p as usize).copied().unwrap_or(0)
    }

    /// Slices to fetch: those of every partition from its first window on.
    pub fn to_fetch(&self) -> u64 {
        let w = self.window_count();
        (0..self.partition_count())
            .map(|p| w.saturating_sub(self.first_window(p)))
            .sum()
    }

    /// Slice `index`: partition `index / windows`, window `index % windows`.
    pub fn get(&self, index: u64) -> Slice<'_> {
        let w = self.window_count().max(1);
        Slice {
            index,
            partition: self.partitions.get((index / w) as usize),
            window: self.windows.as_ref().map(|plan| plan.get(index % w)),
        }
    }

    /// The (partition, window) of a slice index.
    pub fn split(&self, index: u64) -> (u64, u64) {
        let w = self.window_count().max(1);
        (index / w, index % w)
    }
}

/// A slice in flight: where its next request starts, and what it has committed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenSlice {
    pub position: Position,
    pub records: u64,
    /// What the API has stated for the slice so far (some say it on the first page only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stated: Option<u64>,
}

/// Completed windows `[first, end)` of one partition and the records they held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoneRange {
    pub first: u64,
    pub end: u64,
    pub records: u64,
    /// Windows before the partition's mark, not fetched by this run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub before_mark: bool,
}

/// A slice whose records did not add up to what the API stated for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    pub slice: u64,
    pub stated: u64,
    pub records: u64,
}

/// A sliced run's progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SliceProgress {
    pub plan: SlicePlan,
    /// Slices started and not finished, by index.
    #[serde(default)]
    pub open: BTreeMap<u64, OpenSlice>,
    /// Finished slices, by partition index: ranges of window indices.
    #[serde(default)]
    pub done: BTreeMap<u64, Vec<DoneRange>>,
    /// Slices done.
    #[serde(default)]
    pub slices_done: u64,
    /// Slices whose count did not match the API's (the first hundred), and how many in all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mismatches: Vec<Mismatch>,
    #[serde(default)]
    pub mismatched: u64,
    /// The slicing settings the plan was made under: a resumed run with other settings is
    /// refused, since its requests would not be the plan's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// An incremental job's highest cursor value per partition, in its committed records.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub high_water: BTreeMap<u64, serde_json::Value>,
}

impl SliceProgress {
    pub fn new(plan: SlicePlan) -> SliceProgress {
        // The windows before each partition's mark count as done, apart.
        let mut done = BTreeMap::new();
        let mut slices_done = 0;
        for (p, first) in plan.first_windows.iter().enumerate() {
            let first = (*first).min(plan.window_count());
            if first > 0 {
                done.insert(
                    p as u64,
                    vec![DoneRange {
                        first: 0,
                        end: first,
                        records: 0,
                        before_mark: true,
                    }],
                );
                slices_done += first;
            }
        }
        SliceProgress {
            plan,
            open: BTreeMap::new(),
            done,
            slices_done,
            mismatches: Vec::new(),
            mismatched: 0,
            fingerprint: None,
            high_water: BTreeMap::new(),
        }
    }

    /// Slice `index`'s committed records reached `mark` (the cursor field's highest);
    /// `higher` says which of two marks is (the incremental module's order of values).
    pub fn reached(
        &mut self,
        index: u64,
        mark: Option<serde_json::Value>,
        higher: impl Fn(
            Option<serde_json::Value>,
            Option<serde_json::Value>,
        ) -> Option<serde_json::Value>,
    ) {
        if mark.is_none() {
            return;
        }
        let (p, _) = self.plan.split(index);
        let old = self.high_water.remove(&p);
        if let Some(higher) = higher(old, mark) {
            self.high_water.insert(p, higher);
        }
    }

    /// The same, made under the slicing settings `fingerprint` names.
    pub fn with_fingerprint(mut self, fingerprint: Option<String>) -> SliceProgress {
        self.fingerprint = fingerprint;
        self
    }

    /// Records of the slices done.
    pub fn records_done(&self) -> u64 {
        self.done.values().flatten().map(|r| r.records).sum()
    }

    pub fn is_done(&self, index: u64) -> bool {
        let (p, w) = self.plan.split(index);
        self.done
            .get(&p)
            .is_some_and(|ranges| ranges.iter().any(|r| (r.first..r.end).contains(&w)))
    }

    /// Every slice done.
    pub fn finished(&self) -> bool {
        self.slices_done >= self.plan.len()
    }

    /// The slices to fetch, in order, with where each starts: those in flight at their
    /// positions, then those not begun (`None`: at the first page).
    pub fn remaining(&self) -> impl Iterator<Item = (u64, Option<Position>)> + '_ {
        let open = self
            .open
            .iter()
            .map(|(i, s)| (*i, Some(s.position.clone())));
        let fresh = (0..self.plan.len())
            .filter(|i| !self.open.contains_key(i) && !self.is_done(*i))
            .map(|i| (i, None));
        open.chain(fresh)
    }

    /// What the API stated for slice `index` before (in a run that was interrupted).
    pub fn stated_of(&self, index: u64) -> Option<u64> {
        self.open.get(&index).and_then(|s| s.stated)
    }

    /// Records committed by slice `index` so far (0 for one not begun).
    pub fn records_of(&self, index: u64) -> u64 {
        self.open.get(&index).map_or(0, |s| s.records)
    }

    /// Slice `index` has committed `records` more and now stands at `next` (`None`: done,
    /// `stated` the records the API said it has).
    pub fn advance(
        &mut self,
        index: u64,
        records: u64,
        next: Option<Position>,
        stated: Option<u64>,
    ) {
        let total = self.records_of(index) + records;
        let stated = stated.or(self.open.get(&index).and_then(|s| s.stated));
        match next {
            Some(position) => {
                self.open.insert(
                    index,
                    OpenSlice {
                        position,
                        records: total,
                        stated,
                    },
                );
            }
            None => {
                self.open.remove(&index);
                if self.is_done(index) {
                    return;
                }
                if let Some(stated) = stated
                    && stated != total
                {
                    self.mismatched += 1;
                    if self.mismatches.len() < 100 {
                        self.mismatches.push(Mismatch {
                            slice: index,
                            stated,
                            records: total,
                        });
                    }
                }
                self.slices_done += 1;
                let (p, w) = self.plan.split(index);
                let ranges = self.done.entry(p).or_default();
                ranges.push(DoneRange {
                    first: w,
                    end: w + 1,
                    records: total,
                    before_mark: false,
                });
                ranges.sort_by_key(|r| r.first);
                // Adjacent windows collapse into one range (those before the mark apart).
                let mut merged: Vec<DoneRange> = Vec::with_capacity(ranges.len());
                for r in ranges.drain(..) {
                    match merged.last_mut() {
                        Some(last) if last.end == r.first && last.before_mark == r.before_mark => {
                            last.end = r.end;
                            last.records += r.records;
                        }
                        _ => merged.push(r),
                    }
                }
                *ranges = merged;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(partitions: usize, windows: u64) -> SlicePlan {
        let start = chrono::DateTime::from_timestamp(0, 0).unwrap();
        SlicePlan {
            first_windows: Vec::new(),
            since_param: None,
            since: Vec::new(),
            partitioned: true,
            partitions: (0..partitions)
                .map(|i| BTreeMap::from([("id".to_string(), serde_json::json!(i))]))
                .collect(),
            windows: Some(WindowPlan {
                start,
                end: start + chrono::Duration::days(windows as i64),
                step_ms: 86_400_000,
            }),
        }
    }

    #[test]
    fn done_windows_collapse_into_one_range_per_partition() {
        let mut p = SliceProgress::new(plan(3, 10));
        assert_eq!(p.plan.len(), 30);
        // Out of order, as concurrent slices finish.
        for i in [1, 0, 3, 2, 4, 5, 6, 7, 9, 8] {
            p.advance(i, 5, Some(Position::Single), None);
            p.advance(i, 2, None, Some(7));
        }
        assert_eq!(
            p.done[&0],
            vec![DoneRange {
                first: 0,
                end: 10,
                records: 70,
                before_mark: false,
            }]
        );
        assert!(p.open.is_empty());
        assert_eq!(p.remaining().next(), Some((10, None)));
        assert_eq!(p.remaining().count(), 20);
        assert!(p.mismatches.is_empty());
        p.advance(12, 3, None, Some(4));
        assert_eq!(
            p.mismatches,
            vec![Mismatch {
                slice: 12,
                stated: 4,
                records: 3
            }]
        );
        assert_eq!(p.done[&1].len(), 1);
        // A slice done twice (a resume that fetched it again) counts once.
        p.advance(12, 3, None, None);
        assert_eq!(p.slices_done, 11);
    }
}
