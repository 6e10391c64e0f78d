//! Cron schedules as Kubernetes' CronJob accepts them: five fields
//! (minute hour day-of-month month day-of-week) with lists, ranges, steps and
//! month/day names, or a descriptor such as `@hourly` or `@every 5m`.

/// Why a schedule does not parse.
pub fn check(schedule: &str) -> Result<(), String> {
    let schedule = schedule.trim();
    if schedule.starts_with("TZ=") || schedule.starts_with("CRON_TZ=") {
        return Err("cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into());
    }
    if let Some(descriptor) = schedule.strip_prefix('@') {
        return match descriptor {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            _ => match descriptor.strip_prefix("every ") {
                Some(every) if is_go_duration(every.trim()) => Ok(()),
                Some(every) => Err(format!("failed to parse duration {schedule}: {every:?}")),
                None => Err(format!("unrecognized descriptor: {schedule}")),
            },
        };
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: {schedule}",
            fields.len()
        ));
    }
    const MONTHS: &[&str] = &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let specs: [(u32, u32, &[&str], bool); 5] = [
        (0, 59, &[], false),
        (0, 23, &[], false),
        (1, 31, &[], true),
        (1, 12, MONTHS, false),
        (0, 6, DAYS, true),
    ];
    for (field, (min, max, names, question)) in fields.iter().zip(specs) {
        for part in field.split(',') {
            check_range(part, min, max, names, question)?;
        }
    }
    Ok(())
}

fn value(text: &str, min: u32, names: &[&str]) -> Result<u32, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(i as u32 + min);
    }
    text.parse()
        .map_err(|_| format!("failed to parse int from {text}: invalid syntax"))
}

fn check_range(
    part: &str,
    min: u32,
    max: u32,
    names: &[&str],
    question: bool,
) -> Result<(), String> {
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
    if let Some(step) = step {
        match step.parse::<u32>() {
            Ok(n) if n > 0 => {}
            _ => return Err(format!("step of range should be a positive number: {part}")),
        }
    }
    Ok(())
}

/// A Go duration such as `1h30m`, `90s` or `1.5h`.
fn is_go_duration(text: &str) -> bool {
    const UNITS: [&str; 7] = ["ns", "us", "µs", "ms", "s", "m", "h"];
    let mut rest = text;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let Some(unit) = UNITS
            .iter()
            .filter(|u| rest.starts_with(**u))
            .max_by_key(|u| u.len())
        else {
            return false;
        };
        rest = &rest[unit.len()..];
    }
    true
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn schedules() {
        for ok in [
            "*/5 * * * *",
            "0 3 * * 1-5",
            "30 2 1,15 JAN-jun ?",
            "@hourly",
            "@every 1h30m",
            "0 0 * * SUN",
        ] {
            assert!(check(ok).is_ok(), "{ok}: {:?}", check(ok));
        }
        for bad in [
            "* * * *",
            "61 * * * *",
            "* 24 * * *",
            "*/0 * * * *",
            "@sometimes",
            "TZ=UTC 0 * * * *",
            "x * * * *",
        ] {
            assert!(check(bad).is_err(), "{bad}");
        }
    }
}
