//! The Microsoft Philly job table (`timestamp,duration,num_gpus,gpu_time,cluster`): submit time,
//! run seconds and GPUs of each job. Each virtual cluster becomes a project of the given class;
//! a job larger than a node becomes a gang of node-sized tasks.

use super::{ProjectTable, Shape, SimJob, Workload, split_gang};
use crate::error::SimError;
use haneul_model::{GpuRequest, OrgClass, Span, Time};
use std::path::Path;

pub fn load(path: &Path, shape: Shape, class: OrgClass) -> Result<Workload, SimError> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .map_err(|e| csv_open_error(path, e))?;
    let headers = rdr.headers().map_err(|e| csv_open_error(path, e))?.clone();
    let col = |name: &str| -> Result<usize, SimError> {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| SimError::Row {
                path: path.to_path_buf(),
                line: 1,
                field: name.into(),
                reason: "missing column; Philly tables have timestamp,duration,num_gpus,gpu_time,cluster".into(),
            })
    };
    let (c_ts, c_dur, c_gpus, c_vc) = (
        col("timestamp")?,
        col("duration")?,
        col("num_gpus")?,
        col("cluster")?,
    );
    let mut projects = ProjectTable::default();
    let mut jobs = Vec::new();
    let mut rec = csv::StringRecord::new();
    loop {
        let more = rdr.read_record(&mut rec).map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            SimError::Row {
                path: path.to_path_buf(),
                line,
                field: "row".into(),
                reason: e.to_string(),
            }
        })?;
        if !more {
            break;
        }
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        let bad = |field: &str, reason: String| SimError::Row {
            path: path.to_path_buf(),
            line,
            field: field.into(),
            reason,
        };
        let get = |c: usize, field: &str| -> Result<&str, SimError> {
            rec.get(c)
                .map(str::trim)
                .ok_or_else(|| bad(field, "missing value".into()))
        };
        let ts = get(c_ts, "timestamp")?;
        let submit = parse_timestamp(ts)
            .ok_or_else(|| bad("timestamp", format!("`{ts}` is not `YYYY-MM-DD HH:MM:SS`")))?;
        let dur_s = get(c_dur, "duration")?;
        let dur: f64 = dur_s
            .parse()
            .ok()
            .filter(|d: &f64| d.is_finite() && *d >= 0.0)
            .ok_or_else(|| {
                bad(
                    "duration",
                    format!("`{dur_s}` is not a number of seconds >= 0"),
                )
            })?;
        let g = get(c_gpus, "num_gpus")?;
        let gpus: u32 = g
            .parse::<f64>()
            .ok()
            .filter(|x| x.fract() == 0.0 && *x >= 1.0 && *x <= 1e6)
            .map(|x| x as u32)
            .ok_or_else(|| {
                bad(
                    "num_gpus",
                    format!("`{g}` is not a whole number of GPUs >= 1"),
                )
            })?;
        let vc = get(c_vc, "cluster")?;
        if vc.is_empty() {
            return Err(bad("cluster", "empty virtual cluster name".into()));
        }
        let project = projects.get_or_add(vc, class);
        let (replicas, per) = split_gang(gpus, shape.max_gpus_per_node);
        let mut job = SimJob::new(
            Time::from_secs(submit),
            project,
            replicas,
            GpuRequest::Whole(per),
            Span((dur * 1000.0).round() as i64),
        );
        job.line = line;
        jobs.push(job);
    }
    let mut w = Workload {
        source: path.to_path_buf(),
        projects: projects.defs,
        jobs,
        model_field: "gpu_model",
    };
    w.finish_loading();
    Ok(w)
}

pub(crate) fn csv_open_error(path: &Path, e: csv::Error) -> SimError {
    match e.into_kind() {
        csv::ErrorKind::Io(source) => SimError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => SimError::File {
            path: path.to_path_buf(),
            reason: format!("{other:?}"),
        },
    }
}

/// Seconds since the Unix epoch of `YYYY-MM-DD HH:MM:SS` (UTC); `None` when malformed.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let (date, time) = s.split_once(' ')?;
    let mut d = date.split('-');
    let y: i64 = d.next()?.parse().ok()?;
    let m: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    let mut t = time.split(':');
    let hh: i64 = t.next()?.parse().ok()?;
    let mm: i64 = t.next()?.parse().ok()?;
    let ss: i64 = t.next().unwrap_or("0").parse().ok()?;
    if d.next().is_some()
        || t.next().is_some()
        || !(1..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || hh > 23
        || mm > 59
        || ss > 60
    {
        return None;
    }
    Some(days_from_civil(y, m, day) * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_to_unix_seconds() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse_timestamp("2017-10-09 07:01:55"), Some(1_507_532_515));
        assert_eq!(parse_timestamp("2017-13-09 07:01:55"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
    }
}
