//! A cron schedule (`spec.backup.schedule`) as a systemd timer's `OnCalendar=` expression.

/// The five cron fields, their ranges and names.
const FIELDS: [(&str, u32, u32); 5] = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
];
const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
const SYSTEMD_DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// The values one field allows: every value (`*`), or a sorted list.
#[derive(Debug, PartialEq)]
enum Values {
    Any,
    Some(Vec<u32>),
}

/// `cron` (`minute hour day-of-month month day-of-week`) as an `OnCalendar=` expression, or
/// what is wrong with it.
pub fn on_calendar(cron: &str) -> Result<String, String> {
    let mut values = parse(cron)?;
    let dow = match values.pop() {
        Some(Values::Some(days)) => {
            let mut days: Vec<u32> = days.into_iter().map(|d| d % 7).collect();
            days.sort_unstable();
            days.dedup();
            Some(days)
        }
        _ => None,
    };
    if dow.is_some() && values[2] != Values::Any {
        return Err(format!(
            "{cron:?}: restrict the day of month or the day of week, not both"
        ));
    }
    let text = |v: &Values, width: usize| match v {
        Values::Any => "*".to_string(),
        Values::Some(list) => list
            .iter()
            .map(|n| format!("{n:0width$}"))
            .collect::<Vec<_>>()
            .join(","),
    };
    let date = format!(
        "*-{}-{} {}:{}:00",
        text(&values[3], 2),
        text(&values[2], 2),
        text(&values[1], 2),
        text(&values[0], 2)
    );
    Ok(match dow {
        Some(days) => {
            let names: Vec<&str> = days.iter().map(|d| SYSTEMD_DAYS[*d as usize]).collect();
            format!("{} {date}", names.join(","))
        }
        None => date,
    })
}

/// The five fields of `cron`, parsed.
fn parse(cron: &str) -> Result<Vec<Values>, String> {
    let parts: Vec<&str> = cron.split_whitespace().collect();
    if parts.len() != 5 {
        return Err(format!(
            "{cron:?} has {} fields; cron syntax has five: minute hour day-of-month month day-of-week",
            parts.len()
        ));
    }
    let mut values = Vec::new();
    for (text, (name, lo, hi)) in parts.iter().zip(FIELDS) {
        values.push(field(text, name, lo, hi).map_err(|e| format!("{cron:?}: {e}"))?);
    }
    Ok(values)
}

/// The parsed fields of a schedule, asked in closed form: a day at a time, never a minute at a
/// time.
struct Schedule(Vec<Values>);

impl Schedule {
    fn has(&self, i: usize, n: u32) -> bool {
        match &self.0[i] {
            Values::Any => true,
            Values::Some(list) => list.contains(&n) || (i == 4 && n == 0 && list.contains(&7)),
        }
    }

    /// Whether it fires on `date` at all.
    fn on(&self, date: time::Date) -> bool {
        let dow = date.weekday().number_days_from_sunday() as u32;
        self.has(2, date.day() as u32) && self.has(3, date.month() as u32) && self.has(4, dow)
    }

    /// The minutes of a day (`hour * 60 + minute`) at which it fires, ascending.
    fn minutes_of_day(&self) -> Vec<u32> {
        let hours = (0..24).filter(|h| self.has(1, *h));
        let at = |h: u32| {
            (0..60)
                .filter(move |m| self.has(0, *m))
                .map(move |m| h * 60 + m)
        };
        hours.flat_map(at).collect()
    }
}

/// The last time at or before `now` (UTC, to the minute) that `cron` fires, within a year.
pub fn previous(cron: &str, now: time::OffsetDateTime) -> Option<time::OffsetDateTime> {
    let s = Schedule(parse(cron).ok()?);
    let times = s.minutes_of_day();
    let today = now.date();
    let limit = now.hour() as u32 * 60 + now.minute() as u32;
    (0..=366).find_map(|back| {
        let date = today - time::Duration::days(back);
        let latest = times
            .iter()
            .rev()
            .find(|t| back > 0 || **t <= limit)
            .filter(|_| s.on(date))?;
        let (h, m) = ((latest / 60) as u8, (latest % 60) as u8);
        Some(date.with_hms(h, m, 0).ok()?.assume_utc())
    })
}

/// The longest interval, in seconds, between two consecutive times `cron` fires over one year
/// from a fixed day (2026-01-01 UTC), so that the answer does not change from one run to the
/// next. None when it fires less than twice in that year.
pub fn longest_interval(cron: &str) -> Option<i64> {
    let s = Schedule(parse(cron).ok()?);
    let times = s.minutes_of_day();
    let (first, last) = (*times.first()? as i64, *times.last()? as i64);
    let start = time::Date::from_calendar_date(2026, time::Month::January, 1).ok()?;
    let days: Vec<i64> = (0..=366)
        .filter(|d| s.on(start + time::Duration::days(*d)))
        .collect();
    // Within a day, between consecutive times; across days, from one day's last to the next
    // firing day's first.
    let within = times.windows(2).map(|w| (w[1] - w[0]) as i64);
    let across = days.windows(2).map(|w| (w[1] - w[0]) * 1440 + first - last);
    let runs = days.len() * times.len();
    let longest = within.filter(|_| !days.is_empty()).chain(across).max()?;
    (runs >= 2).then_some(longest * 60)
}

/// One field: `*`, or a comma list of `n`, `a-b`, `*/s`, `a-b/s`.
fn field(text: &str, name: &str, lo: u32, hi: u32) -> Result<Values, String> {
    if text == "*" {
        return Ok(Values::Any);
    }
    let mut out = Vec::new();
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("{name}: bad step in {item:?}"))?;
                (r, step)
            }
            None => (item, 1),
        };
        let (a, b) = match range {
            "*" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a, name, lo, hi)?, value(b, name, lo, hi)?),
                None => {
                    let v = value(r, name, lo, hi)?;
                    (v, if step > 1 { hi } else { v })
                }
            },
        };
        if a > b {
            return Err(format!("{name}: {item:?} runs backwards"));
        }
        out.extend((a..=b).step_by(step as usize));
    }
    out.sort_unstable();
    out.dedup();
    Ok(Values::Some(out))
}

/// A number within `lo..=hi`, or a month or day name where the field takes names.
fn value(text: &str, name: &str, lo: u32, hi: u32) -> Result<u32, String> {
    let lower = text.to_ascii_lowercase();
    let named = match name {
        "month" => MONTHS
            .iter()
            .position(|m| *m == lower)
            .map(|i| i as u32 + 1),
        "day of week" => DAYS.iter().position(|d| *d == lower).map(|i| i as u32),
        _ => None,
    };
    named
        .or_else(|| text.parse().ok())
        .filter(|v| (lo..=hi).contains(v))
        .ok_or_else(|| format!("{name}: {text:?} is not a value from {lo} to {hi}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_schedules_become_calendar_events() {
        let cases = [
            ("0 1 * * 0", "Sun *-*-* 01:00:00"),
            ("0 1 * * 1-6", "Mon,Tue,Wed,Thu,Fri,Sat *-*-* 01:00:00"),
            ("*/15 * * * *", "*-*-* *:00,15,30,45:00"),
            ("30 2 1 * *", "*-*-01 02:30:00"),
            ("0 0 * jan,jul 7", "Sun *-01,07-* 00:00:00"),
            (
                "5 */6 * * mon-fri",
                "Mon,Tue,Wed,Thu,Fri *-*-* 00,06,12,18:05:00",
            ),
            ("0 3 1-10/3 * *", "*-*-01,04,07,10 03:00:00"),
        ];
        for (cron, want) in cases {
            assert_eq!(on_calendar(cron).as_deref(), Ok(want), "{cron}");
        }
    }

    fn at(y: i32, mo: u8, d: u8, h: u8, mi: u8, s: u8) -> time::OffsetDateTime {
        let month = time::Month::try_from(mo).unwrap();
        let date = time::Date::from_calendar_date(y, month, d).unwrap();
        date.with_hms(h, mi, s).unwrap().assume_utc()
    }

    #[test]
    fn the_previous_run_is_found() {
        // 2026-11-30 is a Monday.
        let now = at(2026, 11, 30, 10, 17, 42);
        let sunday = at(2026, 11, 29, 1, 0, 0);
        assert_eq!(previous("0 1 * * 0", now), Some(sunday));
        assert_eq!(previous("0 1 * * 7", now), Some(sunday));
        let today = at(2026, 11, 30, 1, 0, 0);
        assert_eq!(previous("0 1 * * 1-6", now), Some(today));
        let quarter = at(2026, 11, 30, 10, 15, 0);
        assert_eq!(previous("*/15 * * * *", now), Some(quarter));
        assert_eq!(previous("0 0 30 2 *", now), None, "never fires");
    }

    #[test]
    fn the_longest_interval_between_runs() {
        assert_eq!(longest_interval("0 1 * * 0"), Some(7 * 86_400));
        assert_eq!(
            longest_interval("0 1 * * 1-6"),
            Some(2 * 86_400),
            "Saturday to Monday"
        );
        assert_eq!(longest_interval("*/15 * * * *"), Some(900));
        assert_eq!(longest_interval("0 3 1 * *"), Some(31 * 86_400));
    }

    #[test]
    fn every_minute_and_never_are_answered_at_once() {
        let now = at(2026, 11, 30, 10, 17, 42);
        assert_eq!(
            previous("* * * * *", now),
            Some(at(2026, 11, 30, 10, 17, 0))
        );
        assert_eq!(longest_interval("* * * * *"), Some(60));
        assert_eq!(longest_interval("0 0 30 2 *"), None, "never fires");
        assert_eq!(
            longest_interval("0 0 29 2 *"),
            None,
            "once in the year from 2026 at most"
        );
    }

    #[test]
    fn bad_schedules_say_what_is_wrong() {
        let cases = [
            ("0 1 * *", "five"),
            ("60 1 * * *", "minute"),
            ("0 1 * * 8", "day of week"),
            ("0 1 5 * 1", "not both"),
            ("0 1 * * 5-1", "backwards"),
            ("*/0 * * * *", "step"),
            ("@daily", "five"),
        ];
        for (cron, why) in cases {
            let err = on_calendar(cron).unwrap_err();
            assert!(err.contains(why), "{cron}: {err}");
        }
    }
}
