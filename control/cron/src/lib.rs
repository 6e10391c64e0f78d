//! Cron schedules as Kubernetes' CronJob accepts them: five fields
//! (minute hour day-of-month month day-of-week) with lists, ranges, steps and
//! month/day names, or a descriptor such as `@hourly` or `@every 5m`.
//!
//! The API server uses [`Schedule::parse`] to reject bad schedules; the
//! CronJob controller uses [`Schedule::next_after`] to find when to run.
//!
//! ```
//! let schedule = skiff_cron::Schedule::parse("*/15 9-17 * * MON-FRI").unwrap();
//! let after: jiff::Zoned = "2026-01-02T09:20:00[UTC]".parse().unwrap();
//! let next = schedule.next_after(&after).unwrap();
//! assert_eq!(next.to_string(), "2026-01-02T09:30:00+00:00[UTC]");
//! ```

use std::time::Duration;

use jiff::civil::DateTime;
use jiff::{ToSpan, Zoned};

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// The five cron fields as bit sets.
    Fields(Fields),
    /// `@every <duration>`: a fixed interval from the previous time.
    Every(Duration),
}

/// Which minutes, hours, days and months a five-field schedule fires on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    days_of_week: u64,
    /// `*` or `?` in day-of-month / day-of-week: that field does not restrict.
    any_day_of_month: bool,
    any_day_of_week: bool,
}

/// How far ahead [`Schedule::next_after`] looks before giving up (a
/// schedule such as `0 0 30 2 *` never fires).
const HORIZON_YEARS: i16 = 5;

impl Schedule {
    /// Parse a schedule; the error says what is wrong, in the words
    /// Kubernetes uses.
    pub fn parse(schedule: &str) -> Result<Schedule, String> {
        let schedule = schedule.trim();
        if schedule.starts_with("TZ=") || schedule.starts_with("CRON_TZ=") {
            return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
        }
        if let Some(descriptor) = schedule.strip_prefix('@') {
            let fields = match descriptor {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                _ => {
                    return match descriptor.strip_prefix("every ") {
                        Some(every) => go_duration(every.trim())
                            .filter(|d| !d.is_zero())
                            .map(Schedule::Every)
                            .ok_or_else(|| {
                                format!("failed to parse duration {schedule}: {every:?}")
                            }),
                        None => Err(format!("unrecognized descriptor: {schedule}")),
                    };
                }
            };
            return Schedule::parse(fields);
        }
        let fields: Vec<&str> = schedule.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(format!(
                "expected exactly 5 fields, found {}: {schedule}",
                fields.len()
            ));
        };
        const MONTHS: &[&str] = &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ];
        const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
        Ok(Schedule::Fields(Fields {
            minutes: field(minute, 0, 59, &[], false)?,
            hours: field(hour, 0, 23, &[], false)?,
            days_of_month: field(day, 1, 31, &[], true)?,
            months: field(month, 1, 12, MONTHS, false)?,
            days_of_week: field(weekday, 0, 6, DAYS, true)?,
            any_day_of_month: day.starts_with(['*', '?']),
            any_day_of_week: weekday.starts_with(['*', '?']),
        }))
    }

    /// The first time strictly after `after` (in `after`'s time zone) that
    /// the schedule fires, or None if it never does within five years.
    pub fn next_after(&self, after: &Zoned) -> Option<Zoned> {
        match self {
            Schedule::Every(every) => {
                let every = jiff::SignedDuration::try_from(*every).ok()?;
                let next = after.checked_add(every).ok()?;
                next.round(jiff::Unit::Second).ok()
            }
            Schedule::Fields(fields) => fields.next_after(after),
        }
    }
}

impl Fields {
    fn next_after(&self, after: &Zoned) -> Option<Zoned> {
        let zone = after.time_zone();
        let start = after.datetime();
        let mut t = DateTime::from(start.date())
            .with()
            .hour(start.hour())
            .minute(start.minute())
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let last_year = start.year().saturating_add(HORIZON_YEARS);
        while t.year() <= last_year {
            if !bit(self.months, t.month()) {
                t = t
                    .first_of_month()
                    .checked_add(1.month())
                    .ok()?
                    .date()
                    .into();
                continue;
            }
            if !self.day_matches(t) {
                t = t.date().checked_add(1.day()).ok()?.into();
                continue;
            }
            if !bit(self.hours, t.hour()) {
                t = t
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if !bit(self.minutes, t.minute()) {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            // A local time skipped by a DST change maps to the moment after
            // the gap; one repeated maps to its first occurrence.
            let zoned = t.to_zoned(zone.clone()).ok()?;
            if zoned > *after {
                return Some(zoned);
            }
            t = t.checked_add(1.minute()).ok()?;
        }
        None
    }

    /// Day-of-month and day-of-week: when both are restricted, either may
    /// match (cron's historical rule); otherwise both must.
    fn day_matches(&self, t: DateTime) -> bool {
        let day = bit(self.days_of_month, t.day());
        let weekday = bit(self.days_of_week, t.weekday().to_sunday_zero_offset());
        if self.any_day_of_month || self.any_day_of_week {
            day && weekday
        } else {
            day || weekday
        }
    }
}

fn bit(set: u64, value: i8) -> bool {
    (0..64).contains(&value) && set & (1 << value) != 0
}

/// A comma-separated list of ranges as a bit set.
fn field(text: &str, min: u32, max: u32, names: &[&str], question: bool) -> Result<u64, String> {
    let mut bits = 0;
    for part in text.split(',') {
        bits |= range(part, min, max, names, question)?;
    }
    Ok(bits)
}

fn value(text: &str, min: u32, names: &[&str]) -> Result<u32, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(i as u32 + min);
    }
    text.parse()
        .map_err(|_| format!("failed to parse int from {text}: invalid syntax"))
}

fn range(part: &str, min: u32, max: u32, names: &[&str], question: bool) -> Result<u64, String> {
    let (range, step) = match part.split_once('/') {
        Some((range, step)) => (range, Some(step)),
        None => (part, None),
    };
    let (start, end) = if range == "*" || (question && range == "?") {
        (min, max)
    } else if let Some((a, b)) = range.split_once('-') {
        (value(a, min, names)?, value(b, min, names)?)
    } else {
        let v = value(range, min, names)?;
        (v, if step.is_some() { max } else { v })
    };
    if start < min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({min}): {part}"
        ));
    }
    if end > max {
        return Err(format!(
            "end of range ({end}) above maximum ({max}): {part}"
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {part}"
        ));
    }
    let step = match step {
        None => 1,
        Some(step) => match step.parse::<u32>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("step of range should be a positive number: {part}")),
        },
    };
    Ok((start..=end)
        .step_by(step as usize)
        .fold(0, |bits, v| bits | (1 << v)))
}

/// A Go duration such as `1h30m`, `90s` or `1.5h`.
fn go_duration(text: &str) -> Option<Duration> {
    const UNITS: [(&str, f64); 7] = [
        ("ns", 1e-9),
        ("us", 1e-6),
        ("µs", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
    ];
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    let mut seconds = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, scale) = UNITS
            .iter()
            .filter(|(u, _)| rest.starts_with(u))
            .max_by_key(|(u, _)| u.len())?;
        rest = &rest[unit.len()..];
        seconds += number * scale;
    }
    Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::Schedule;

    fn next(schedule: &str, after: &str) -> String {
        let after: jiff::Zoned = after.parse().unwrap();
        Schedule::parse(schedule)
            .unwrap()
            .next_after(&after)
            .map(|z| z.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn accepts_and_rejects_like_kubernetes() {
        for ok in [
            "*/5 * * * *",
            "0 3 * * 1-5",
            "30 2 1,15 JAN-jun ?",
            "@hourly",
            "@every 1h30m",
            "0 0 * * SUN",
        ] {
            assert!(
                Schedule::parse(ok).is_ok(),
                "{ok}: {:?}",
                Schedule::parse(ok)
            );
        }
        for bad in [
            "* * * *",
            "61 * * * *",
            "* 24 * * *",
            "*/0 * * * *",
            "@sometimes",
            "@every x",
            "TZ=UTC 0 * * * *",
            "x * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn finds_the_next_time() {
        let at = "2026-03-10T10:07:30+00:00[UTC]";
        assert_eq!(next("* * * * *", at), "2026-03-10T10:08:00+00:00[UTC]");
        assert_eq!(next("*/15 * * * *", at), "2026-03-10T10:15:00+00:00[UTC]");
        assert_eq!(next("0 3 * * *", at), "2026-03-11T03:00:00+00:00[UTC]");
        assert_eq!(next("@monthly", at), "2026-04-01T00:00:00+00:00[UTC]");
        // 2026-03-10 is a Tuesday: next Sunday is the 15th.
        assert_eq!(next("0 0 * * SUN", at), "2026-03-15T00:00:00+00:00[UTC]");
        // Both day fields restricted: either matches (the 1st, or a Friday).
        assert_eq!(next("0 0 1 * FRI", at), "2026-03-13T00:00:00+00:00[UTC]");
        assert_eq!(next("0 0 29 2 *", at), "2028-02-29T00:00:00+00:00[UTC]");
        assert_eq!(next("0 0 30 2 *", at), "");
        assert_eq!(next("@every 90s", at), "2026-03-10T10:09:00+00:00[UTC]");
    }

    #[test]
    fn follows_the_time_zone_and_its_dst_changes() {
        // 2026-03-08 02:30 does not exist in New York: it fires at 03:30 EDT.
        assert_eq!(
            next("30 2 * * *", "2026-03-07T12:00:00-05:00[America/New_York]"),
            "2026-03-08T03:30:00-04:00[America/New_York]"
        );
        assert_eq!(
            next("0 9 * * *", "2026-06-01T10:00:00+02:00[Europe/Berlin]"),
            "2026-06-02T09:00:00+02:00[Europe/Berlin]"
        );
    }
}
