//! Job arrays: the task ids of one array (`0-9`, `1,3,5`, `0-15:4`) and its `%N` limit on
//! tasks running at once, parsed and checked once, and written back in one canonical form.
//! An array is stored as one job; its tasks become jobs of their own only when the controller
//! materialises them, so nothing here depends on the number of tasks beyond the id list.

use crate::ModelError;
use std::fmt;

/// Most tasks one array may hold (Slurm's `MaxArraySize` plays this part there).
pub const MAX_ARRAY_TASKS: usize = 10_000;
/// Task ids run from 0 up to this value.
pub const MAX_ARRAY_TASK_ID: u32 = 999_999;

/// An array's task ids, sorted and without repeats, and its optional `%N` limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArraySpec {
    tasks: Vec<u32>,
    max_running: Option<u32>,
}

fn bad(reason: impl Into<String>) -> ModelError {
    ModelError::invalid("array", reason)
}

fn number(s: &str, what: &str, whole: &str) -> Result<u32, ModelError> {
    let v: u32 = s.trim().parse().map_err(|_| {
        bad(format!(
            "`{s}` in `{whole}` is not a {what}; write ranges as 0-9, lists as 1,3,5, steps as 0-15:4 and a limit as %4"
        ))
    })?;
    Ok(v)
}

impl ArraySpec {
    /// Reads `0-9`, `1,3,5`, `0-15:4`, any of those joined by commas, and an optional `%N`.
    pub fn parse(s: &str) -> Result<ArraySpec, ModelError> {
        let whole = s.trim();
        if whole.is_empty() {
            return Err(bad("is empty; write task ids such as 0-9 or 1,3,5"));
        }
        if whole.len() > 4096 {
            return Err(bad("is longer than 4096 characters"));
        }
        let (list, max_running) = match whole.split_once('%') {
            Some((l, n)) => {
                let n = number(n, "number of tasks", whole)?;
                if n == 0 {
                    return Err(bad("%0 would run no task; %N must be 1 or more"));
                }
                (l, Some(n))
            }
            None => (whole, None),
        };
        let mut tasks: Vec<u32> = Vec::new();
        for part in list.split(',') {
            let (range, step) = match part.split_once(':') {
                Some((r, st)) => (r, number(st, "step", whole)?),
                None => (part, 1),
            };
            if step == 0 {
                return Err(bad(format!("step 0 in `{part}`; a step is 1 or more")));
            }
            let (lo, hi) = match range.split_once('-') {
                Some((a, b)) => (number(a, "task id", whole)?, number(b, "task id", whole)?),
                None => {
                    let v = number(range, "task id", whole)?;
                    (v, v)
                }
            };
            if lo > hi {
                return Err(bad(format!(
                    "range `{range}` runs backwards; write the lower id first"
                )));
            }
            if hi > MAX_ARRAY_TASK_ID {
                return Err(bad(format!(
                    "task id {hi} is above the highest allowed, {MAX_ARRAY_TASK_ID}"
                )));
            }
            if ((hi - lo) / step) as usize + tasks.len() >= MAX_ARRAY_TASKS {
                return Err(bad(format!(
                    "more than {MAX_ARRAY_TASKS} tasks; split the work into several arrays"
                )));
            }
            tasks.extend((lo..=hi).step_by(step as usize));
        }
        tasks.sort_unstable();
        tasks.dedup();
        Ok(ArraySpec { tasks, max_running })
    }

    /// The task ids, ascending.
    pub fn tasks(&self) -> &[u32] {
        &self.tasks
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The `%N` limit: at most this many tasks queued or running at once.
    pub fn max_running(&self) -> Option<u32> {
        self.max_running
    }

    pub fn min(&self) -> u32 {
        self.tasks.first().copied().unwrap_or(0)
    }

    pub fn max(&self) -> u32 {
        self.tasks.last().copied().unwrap_or(0)
    }

    /// `SLURM_ARRAY_TASK_STEP`: the distance between ids when they form one evenly spaced
    /// range, 1 otherwise.
    pub fn step(&self) -> u32 {
        match self.tasks.as_slice() {
            [a, b, rest @ ..] => {
                let d = b - a;
                let even = rest
                    .iter()
                    .scan(*b, |prev, &t| {
                        let ok = t - *prev == d;
                        *prev = t;
                        Some(ok)
                    })
                    .all(|ok| ok);
                if even { d } else { 1 }
            }
            _ => 1,
        }
    }
}

/// Task ids in Slurm's compact form: evenly spaced runs as `lo-hi` or `lo-hi:step`, others
/// one by one (`0-4,7,10-20:5`). `ids` must be ascending.
pub fn compress_task_ids(ids: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ids.len() {
        let lo = ids[i];
        let Some(&next) = ids.get(i + 1) else {
            out.push(lo.to_string());
            break;
        };
        let d = next - lo;
        let mut j = i + 1;
        while j + 1 < ids.len() && ids[j + 1] - ids[j] == d {
            j += 1;
        }
        // Two ids a step apart only read better as a range when they are neighbours.
        if j - i >= 2 || d == 1 {
            let hi = ids[j];
            out.push(if d == 1 {
                format!("{lo}-{hi}")
            } else {
                format!("{lo}-{hi}:{d}")
            });
            i = j + 1;
        } else {
            out.push(lo.to_string());
            i += 1;
        }
    }
    out.join(",")
}

impl fmt::Display for ArraySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&compress_task_ids(&self.tasks))?;
        if let Some(n) = self.max_running {
            write!(f, "%{n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ranges_lists_steps_and_limits() {
        let a = ArraySpec::parse("0-9999%64").unwrap();
        assert_eq!(a.len(), 10_000);
        assert_eq!((a.min(), a.max(), a.step()), (0, 9999, 1));
        assert_eq!(a.max_running(), Some(64));
        assert_eq!(a.to_string(), "0-9999%64");
        assert_eq!(ArraySpec::parse("1,3,5").unwrap().tasks(), &[1, 3, 5]);
        let s = ArraySpec::parse("0-15:4").unwrap();
        assert_eq!(s.tasks(), &[0, 4, 8, 12]);
        assert_eq!(s.step(), 4);
        assert_eq!(s.to_string(), "0-12:4");
        let m = ArraySpec::parse("3,1-2,3,7").unwrap();
        assert_eq!(m.tasks(), &[1, 2, 3, 7]);
        assert_eq!(m.step(), 1);
        assert_eq!(m.to_string(), "1-3,7");
        assert_eq!(ArraySpec::parse("5").unwrap().to_string(), "5");
    }

    #[test]
    fn refuses_bad_specs_naming_the_field() {
        for (bad, words) in [
            ("", "empty"),
            ("5-2", "backwards"),
            ("0-9%0", "%N must be 1"),
            ("0-9:0", "step 0"),
            ("a-b", "not a task id"),
            ("0-10000", "more than 10000"),
            ("0-1000000", "above the highest"),
            ("0-5000,6000-11000", "more than 10000"),
            ("1,,2", "not a task id"),
        ] {
            let e = ArraySpec::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("array: "), "{bad}: {e}");
            assert!(e.contains(words), "{bad}: {e}");
        }
    }

    #[test]
    fn compresses_ids() {
        assert_eq!(compress_task_ids(&[]), "");
        assert_eq!(compress_task_ids(&[4]), "4");
        assert_eq!(compress_task_ids(&[4, 5]), "4-5");
        assert_eq!(compress_task_ids(&[4, 9]), "4,9");
        assert_eq!(
            compress_task_ids(&[0, 1, 2, 3, 4, 7, 10, 15, 20]),
            "0-4,7,10-20:5"
        );
    }
}
