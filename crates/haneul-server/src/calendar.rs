//! The centre's calendar: the time zone in which months, days and dates are counted for
//! statements, usage charts, award dates and notices (default Asia/Seoul). Timestamps in the API
//! stay Unix milliseconds (UTC); only the grouping into days and months, and the dates shown to
//! people, follow the centre's zone.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};
use serde::Deserialize;

/// The zone a centre uses when its configuration names none.
pub const DEFAULT_TIME_ZONE: &str = "Asia/Seoul";

/// A time zone from the IANA database, by name.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub struct Calendar {
    name: String,
    tz: TimeZone,
}

impl Default for Calendar {
    fn default() -> Self {
        Calendar::new(DEFAULT_TIME_ZONE).expect("the bundled time zone database has Asia/Seoul")
    }
}

impl TryFrom<String> for Calendar {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        Calendar::new(&name)
    }
}

impl Calendar {
    /// The zone called `name` (`Asia/Seoul`, `UTC`, ...).
    pub fn new(name: &str) -> Result<Calendar, String> {
        let tz = TimeZone::get(name).map_err(|_| {
            format!(
                "time_zone: `{name}` is not an IANA time zone; write one such as Asia/Seoul or UTC"
            )
        })?;
        Ok(Calendar {
            name: name.to_string(),
            tz,
        })
    }

    /// The zone command-line tools show dates in: `HANEUL_TIME_ZONE` when it names a zone,
    /// else the default centre zone.
    pub fn from_env() -> Calendar {
        std::env::var("HANEUL_TIME_ZONE")
            .ok()
            .and_then(|name| Calendar::new(&name).ok())
            .unwrap_or_default()
    }

    /// The zone's IANA name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn zoned(&self, ms: i64) -> Option<Zoned> {
        Some(
            Timestamp::from_millisecond(ms)
                .ok()?
                .to_zoned(self.tz.clone()),
        )
    }

    fn midnight(&self, date: Date) -> Option<i64> {
        Some(
            date.to_zoned(self.tz.clone())
                .ok()?
                .timestamp()
                .as_millisecond(),
        )
    }

    /// `YYYY-MM-DD` of a Unix-millisecond time, in the centre's zone.
    pub fn date(&self, ms: i64) -> String {
        match self.zoned(ms) {
            Some(z) => z.date().to_string(),
            None => "?".to_string(),
        }
    }

    /// `YYYY-MM-DD HH:MM ZONE` of a Unix-millisecond time, for messages to people.
    pub fn date_time(&self, ms: i64) -> String {
        match self.zoned(ms) {
            Some(z) => format!("{} {}", z.strftime("%Y-%m-%d %H:%M"), z.strftime("%Z")),
            None => "?".to_string(),
        }
    }

    /// The bounds `[from, until)` of a month written `YYYY-MM`: its first local midnight and the
    /// next month's.
    pub fn month_bounds(&self, month: &str) -> Option<(i64, i64)> {
        let (y, m) = month.split_once('-')?;
        if y.len() != 4 || m.len() != 2 || !y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        let first = Date::new(y.parse().ok()?, m.parse().ok()?, 1).ok()?;
        let next = first.checked_add(1.month()).ok()?;
        Some((self.midnight(first)?, self.midnight(next)?))
    }

    /// A time parameter: Unix milliseconds, or a date `YYYY-MM-DD` (its local midnight).
    pub fn parse_time(&self, raw: &str) -> Option<i64> {
        if let Ok(ms) = raw.parse::<i64>() {
            return Some(ms);
        }
        self.parse_date(raw)
    }

    /// A date `YYYY-MM-DD`: its local midnight, as Unix milliseconds.
    pub fn parse_date(&self, raw: &str) -> Option<i64> {
        let mut parts = raw.splitn(3, '-');
        let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return None;
        }
        // Date::new refuses 2026-02-30 and the like.
        let date = Date::new(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?).ok()?;
        self.midnight(date)
    }

    /// The start of the local hour or day (`bucket`) holding `ms`.
    pub fn floor(&self, bucket: Bucket, ms: i64) -> Option<i64> {
        let z = self.zoned(ms)?;
        let start = match bucket {
            Bucket::Hour => z
                .start_of_day()
                .ok()?
                .checked_add((z.hour() as i64).hours())
                .ok()?,
            Bucket::Day => z.start_of_day().ok()?,
        };
        // A local hour that a backward clock change repeats starts at its later instance;
        // never past `ms` itself.
        Some(start.timestamp().as_millisecond().min(ms))
    }

    /// The bucket starts from the bucket holding `from` up to the one holding `to - 1`, plus the
    /// end of the last: `n + 1` boundaries of `n` buckets, at most `max + 1`; `None` when the
    /// range holds more than `max` buckets.
    pub fn boundaries(&self, bucket: Bucket, from: i64, to: i64, max: usize) -> Option<Vec<i64>> {
        let mut at = self.floor(bucket, from)?;
        let mut out = vec![at];
        while at < to {
            if out.len() > max {
                return None;
            }
            at = self.next(bucket, at)?;
            out.push(at);
        }
        Some(out)
    }

    /// The start of the bucket after the one starting at `start`.
    fn next(&self, bucket: Bucket, start: i64) -> Option<i64> {
        let z = self.zoned(start)?;
        let next = match bucket {
            Bucket::Hour => return Some(start + 3_600_000),
            Bucket::Day => z.date().tomorrow().ok()?,
        };
        self.midnight(next)
    }

    /// `n` local days before the start of the bucket holding `ms` (for default ranges).
    pub fn back(&self, bucket: Bucket, ms: i64, n: i64) -> Option<i64> {
        let start = self.floor(bucket, ms)?;
        match bucket {
            Bucket::Hour => Some(start - n * 3_600_000),
            Bucket::Day => {
                let date = self.zoned(start)?.date().checked_sub(n.days()).ok()?;
                self.midnight(date)
            }
        }
    }
}

/// The width of a usage-series bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    pub fn parse(s: &str) -> Option<Bucket> {
        match s {
            "hour" => Some(Bucket::Hour),
            "day" => Some(Bucket::Day),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn a_seoul_month_starts_at_local_midnight() {
        let seoul = Calendar::default();
        let (from, until) = seoul.month_bounds("2026-12").unwrap();
        // 2026-12-01T00:00+09:00 is 2026-11-30T15:00Z.
        assert_eq!(from, 1_796_050_800_000);
        assert_eq!(seoul.date(from), "2026-12-01");
        assert_eq!(seoul.date(from - 1), "2026-11-30");
        assert_eq!(seoul.date(until), "2027-01-01");
        // A job at 08:00 KST on the 1st is in December, though it is still November in UTC.
        let eight_am = from + 8 * H;
        assert!((from..until).contains(&eight_am));
        assert_eq!(Calendar::new("UTC").unwrap().date(eight_am), "2026-11-30");
    }

    #[test]
    fn utc_months_and_refusals() {
        let utc = Calendar::new("UTC").unwrap();
        assert_eq!(utc.month_bounds("1970-01"), Some((0, 31 * 24 * H)));
        let (from, until) = utc.month_bounds("2024-02").unwrap();
        assert_eq!(until - from, 29 * 24 * H);
        for bad in [
            "2024-13", "2024-1", "24-01", "2024_01", "abcd-ef", "2024-+1",
        ] {
            assert_eq!(utc.month_bounds(bad), None, "{bad}");
        }
        assert_eq!(utc.parse_time("86400000"), Some(24 * H));
        assert_eq!(utc.parse_time("1970-01-02"), Some(24 * H));
        assert_eq!(utc.parse_time("2026-02-30"), None);
        assert!(
            Calendar::new("Mars/Olympus")
                .unwrap_err()
                .contains("time_zone")
        );
    }

    #[test]
    fn day_buckets_follow_local_midnights_across_a_clock_change() {
        let ny = Calendar::new("America/New_York").unwrap();
        // 2026-03-08 is 23 hours long in New York.
        let from = ny.parse_time("2026-03-07").unwrap();
        let to = ny.parse_time("2026-03-10").unwrap();
        let b = ny.boundaries(Bucket::Day, from, to, 10).unwrap();
        let lengths: Vec<i64> = b.windows(2).map(|w| (w[1] - w[0]) / H).collect();
        assert_eq!(lengths, [24, 23, 24]);
        assert!(ny.boundaries(Bucket::Day, from, to, 2).is_none());
        let seoul = Calendar::default();
        let from = seoul.parse_time("2026-12-01").unwrap();
        let b = seoul
            .boundaries(Bucket::Hour, from + 90 * 60_000, from + 3 * H, 10)
            .unwrap();
        assert_eq!(b, [from + H, from + 2 * H, from + 3 * H]);
        assert_eq!(
            seoul.back(Bucket::Day, from + H, 30).map(|t| seoul.date(t)),
            Some("2026-11-01".into())
        );
    }
}
