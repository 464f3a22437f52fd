//! Planning a batch: where to start (STARTING_OFFSETS), how far to go (the target and
//! MAX_OFFSETS_PER_TRIGGER), and what retention took on the way.

use std::collections::BTreeMap;

use tracing::warn;

use crate::config::ProcessorConfig;
use crate::error::{Error, Result};
use crate::sinks::OffsetRange;

/// Earliest and latest (high watermark) offset of each partition.
pub type Watermarks = BTreeMap<i32, (i64, i64)>;

/// STARTING_OFFSETS: where to begin when there is no checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartingOffsets {
    Earliest,
    Latest,
    /// Spark's per-partition JSON: offset, or -2 (earliest) / -1 (latest).
    Specific(BTreeMap<i32, i64>),
}

impl StartingOffsets {
    pub fn parse(text: &str, topic: &str) -> Result<Self> {
        let t = text.trim();
        match t.to_ascii_lowercase().as_str() {
            "earliest" => return Ok(StartingOffsets::Earliest),
            "latest" => return Ok(StartingOffsets::Latest),
            _ => {}
        }
        let bad = |why: String| {
            Error::Config(format!(
                "STARTING_OFFSETS={t:?}: {why}; use latest, earliest, or JSON such as {{\"{topic}\":{{\"0\":42,\"1\":-2}}}}"
            ))
        };
        if !t.starts_with('{') {
            return Err(bad("unknown value".into()));
        }
        let parsed: BTreeMap<String, BTreeMap<String, i64>> =
            serde_json::from_str(t).map_err(|e| {
                bad(format!(
                    "not valid JSON of topics to partition offsets ({e})"
                ))
            })?;
        let Some(partitions) = parsed.get(topic) else {
            return Err(bad(format!("it does not name topic {topic:?}")));
        };
        let mut offsets = BTreeMap::new();
        for (p, &o) in partitions {
            let p: i32 = p
                .parse()
                .map_err(|_| bad(format!("{p:?} is not a partition number")))?;
            if o < -2 {
                return Err(bad(format!("offset {o} of partition {p} is invalid")));
            }
            offsets.insert(p, o);
        }
        Ok(StartingOffsets::Specific(offsets))
    }

    /// The start offset of every partition. Spark requires the JSON form to name every partition.
    pub fn resolve(&self, watermarks: &Watermarks) -> Result<BTreeMap<i32, i64>> {
        watermarks
            .iter()
            .map(|(&p, &(low, high))| {
                let start = match self {
                    StartingOffsets::Earliest => low,
                    StartingOffsets::Latest => high,
                    StartingOffsets::Specific(map) => match map.get(&p) {
                        Some(-2) => low,
                        Some(-1) => high,
                        Some(&o) => o,
                        None => {
                            return Err(Error::Config(format!(
                                "STARTING_OFFSETS does not give partition {p}; name every partition of the topic"
                            )))
                        }
                    },
                };
                Ok((p, start))
            })
            .collect()
    }
}

/// What planning found besides the ranges: offsets lost to retention.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PlanNotes {
    pub lost: Vec<(i32, i64, i64)>,
}

/// Plans the next batch: from `next` (the end of the last batch, per partition) towards `target`
/// (the high watermarks, or the available-now snapshot), at most `max_offsets` in total, split
/// across partitions in proportion to their backlog. Offsets below the earliest available are
/// data loss.
pub fn plan(
    next: &BTreeMap<i32, i64>,
    watermarks: &Watermarks,
    target: &BTreeMap<i32, i64>,
    max_offsets: u64,
    fail_on_data_loss: bool,
) -> Result<(Vec<OffsetRange>, PlanNotes)> {
    let mut notes = PlanNotes::default();
    let mut ranges = Vec::new();
    for (&p, &(low, high)) in watermarks {
        // A partition new since the last batch starts at its beginning, as Spark does.
        let mut start = next.get(&p).copied().unwrap_or(low);
        if start < low {
            if fail_on_data_loss {
                return Err(Error::DataLoss(format!(
                    "partition {p}: offsets {start}..{low} were deleted before they were processed"
                )));
            }
            notes.lost.push((p, start, low));
            start = low;
        }
        if start > high {
            // The topic was recreated or truncated: what we remember is no longer there.
            if fail_on_data_loss {
                return Err(Error::DataLoss(format!(
                    "partition {p}: the next offset {start} is past the end {high}; was the topic recreated?"
                )));
            }
            notes.lost.push((p, high, start));
            start = high;
        }
        let end = target.get(&p).copied().unwrap_or(high).min(high).max(start);
        ranges.push(OffsetRange {
            partition: p,
            start,
            end,
        });
    }
    if max_offsets > 0 {
        cap_in_proportion(&mut ranges, max_offsets);
    }
    Ok((ranges, notes))
}

fn cap_in_proportion(ranges: &mut [OffsetRange], max_offsets: u64) {
    let total: u64 = ranges.iter().map(OffsetRange::len).sum();
    if total <= max_offsets {
        return;
    }
    // Each partition's share is proportional to its backlog (as Spark prorates), so partitions
    // advance through event time in step and a backlog does not make the busy ones' rows late.
    // Largest remainders round the shares so that they sum exactly to the cap.
    let mut grant: Vec<u64> = Vec::with_capacity(ranges.len());
    let mut remainders: Vec<(u128, usize)> = Vec::with_capacity(ranges.len());
    for (i, r) in ranges.iter().enumerate() {
        let exact = u128::from(r.len()) * u128::from(max_offsets);
        grant.push((exact / u128::from(total)) as u64);
        remainders.push((exact % u128::from(total), i));
    }
    let mut left = max_offsets - grant.iter().sum::<u64>();
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in remainders {
        if left == 0 {
            break;
        }
        if grant[i] < ranges[i].len() {
            grant[i] += 1;
            left -= 1;
        }
    }
    for (range, g) in ranges.iter_mut().zip(grant) {
        range.end = range.start + g as i64;
    }
}

/// Plans batches: ranges from the next offsets towards the target, and offsets lost on the way.
pub(super) struct Planner<'a> {
    pub config: &'a ProcessorConfig,
    /// Where to stop (available-now, or draining); empty: follow the topic.
    pub target: BTreeMap<i32, i64>,
    pub available_now: bool,
}

impl Planner<'_> {
    pub fn plan(
        &self,
        next: &BTreeMap<i32, i64>,
        watermarks: &Watermarks,
    ) -> Result<(Vec<OffsetRange>, u64)> {
        let (ranges, notes) = plan(
            next,
            watermarks,
            &self.target,
            self.config.max_offsets_per_trigger,
            self.config.fail_on_data_loss,
        )?;
        for (p, from, to) in &notes.lost {
            warn!("[processor] data loss: partition {p} offsets {from}..{to} are gone (FAIL_ON_DATA_LOSS=false)");
        }
        Ok((
            ranges,
            notes
                .lost
                .iter()
                .map(|(_, from, to)| (to - from).max(0) as u64)
                .sum(),
        ))
    }
}

/// The latest offset of each partition.
pub fn highs(watermarks: &Watermarks) -> BTreeMap<i32, i64> {
    watermarks
        .iter()
        .map(|(&p, &(_, high))| (p, high))
        .collect()
}

/// What is left in each partition after `ranges` (the input lag, in offsets).
pub fn lag(watermarks: &Watermarks, ranges: &[OffsetRange]) -> Vec<(i32, u64)> {
    ranges
        .iter()
        .map(|r| {
            let left = watermarks
                .get(&r.partition)
                .map_or(0, |&(_, high)| (high - r.end).max(0) as u64);
            (r.partition, left)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(parts: &[(i32, i64, i64)]) -> Watermarks {
        parts.iter().map(|&(p, l, h)| (p, (l, h))).collect()
    }

    fn lens(ranges: &[OffsetRange]) -> Vec<u64> {
        ranges.iter().map(OffsetRange::len).collect()
    }

    #[test]
    fn starting_offsets_forms() {
        let wm = w(&[(0, 5, 100), (1, 0, 50)]);
        let resolve =
            |text: &str| StartingOffsets::parse(text, "transactions").and_then(|s| s.resolve(&wm));
        assert_eq!(
            resolve("earliest").unwrap(),
            BTreeMap::from([(0, 5), (1, 0)])
        );
        assert_eq!(
            resolve("LATEST").unwrap(),
            BTreeMap::from([(0, 100), (1, 50)])
        );
        assert_eq!(
            resolve(r#"{"transactions":{"0":42,"1":-2}}"#).unwrap(),
            BTreeMap::from([(0, 42), (1, 0)])
        );
        assert_eq!(
            resolve(r#"{"transactions":{"0":-1,"1":7}}"#).unwrap(),
            BTreeMap::from([(0, 100), (1, 7)])
        );
        for bad in [
            "newest",
            r#"{"other":{"0":1}}"#,
            r#"{"transactions":{"x":1}}"#,
            "{",
            r#"{"transactions":{"0":-3}}"#,
        ] {
            let e = StartingOffsets::parse(bad, "transactions")
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("invalid setting: STARTING_OFFSETS="), "{e}");
        }
        let e = resolve(r#"{"transactions":{"0":1}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("partition 1"), "{e}");
    }

    #[test]
    fn max_offsets_is_split_in_proportion_to_each_partitions_backlog() {
        let wm = w(&[(0, 0, 1000), (1, 0, 10), (2, 0, 2000)]);
        let next = BTreeMap::from([(0, 0), (1, 0), (2, 0)]);
        let (ranges, _) = plan(&next, &wm, &BTreeMap::new(), 301, true).unwrap();
        // 301 × 1000/3010 = 100.0, × 10/3010 = 1.0, × 2000/3010 = 199.99 → 100, 1, 200 exactly.
        assert_eq!(lens(&ranges), vec![100, 1, 200]);
        let (ranges, _) = plan(&next, &wm, &BTreeMap::new(), 300, true).unwrap();
        assert_eq!(lens(&ranges).iter().sum::<u64>(), 300);
        assert_eq!(lens(&ranges), vec![100, 1, 199]);
        let wm = w(&[(0, 0, 1000), (1, 0, 10), (2, 0, 1000)]);
        let (ranges, _) = plan(&next, &wm, &BTreeMap::new(), 0, true).unwrap();
        assert_eq!(lens(&ranges), vec![1000, 10, 1000]);
        let (ranges, _) = plan(&next, &wm, &BTreeMap::new(), 5000, true).unwrap();
        assert_eq!(lens(&ranges), vec![1000, 10, 1000]);
    }

    #[test]
    fn plan_stops_at_the_available_now_target_and_picks_up_new_partitions_from_the_start() {
        let wm = w(&[(0, 0, 100), (1, 0, 100), (2, 3, 9)]);
        let next = BTreeMap::from([(0, 40), (1, 100)]);
        let target = BTreeMap::from([(0, 60), (1, 100), (2, 9)]);
        let (ranges, notes) = plan(&next, &wm, &target, 0, true).unwrap();
        assert_eq!(
            ranges,
            vec![
                OffsetRange {
                    partition: 0,
                    start: 40,
                    end: 60
                },
                OffsetRange {
                    partition: 1,
                    start: 100,
                    end: 100
                },
                OffsetRange {
                    partition: 2,
                    start: 3,
                    end: 9
                },
            ]
        );
        assert!(notes.lost.is_empty());
    }

    #[test]
    fn deleted_offsets_fail_or_are_reported_as_lost() {
        let wm = w(&[(0, 50, 100)]);
        let next = BTreeMap::from([(0, 20)]);
        let e = plan(&next, &wm, &BTreeMap::new(), 0, true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("partition 0: offsets 20..50 were deleted"),
            "{e}"
        );
        let (ranges, notes) = plan(&next, &wm, &BTreeMap::new(), 0, false).unwrap();
        assert_eq!(
            ranges,
            vec![OffsetRange {
                partition: 0,
                start: 50,
                end: 100
            }]
        );
        assert_eq!(notes.lost, vec![(0, 20, 50)]);
    }
}
