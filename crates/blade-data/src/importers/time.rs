//! Calendar dates of the source files to Unix seconds, without a date-time crate.

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1..=12).
///
/// Howard Hinnant's `days_from_civil` ("chrono-Compatible Low-Level Date Algorithms").
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400; // [0, 399]
    let m = i64::from(month);
    let mp = if m > 2 { m - 3 } else { m + 9 }; // March = 0
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Years a date may have: far beyond any interaction log, and small enough that every
/// arithmetic step below stays within `i64` (a file's `99999999999999-01-01` is a bad row, not
/// an overflow).
const YEARS: std::ops::RangeInclusive<i64> = -1_000_000..=1_000_000;

/// Seconds since the epoch of midnight UTC of a checked date.
fn date_seconds(year: i64, month: u32, day: u32) -> Option<i64> {
    if !YEARS.contains(&year)
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400)
}

/// Month number of an English month name or its three-letter abbreviation.
fn month_number(name: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let lower = name.to_ascii_lowercase();
    let prefix = lower.get(..3)?;
    let index = MONTHS.iter().position(|m| *m == prefix)?;
    Some(index as u32 + 1)
}

/// `YYYY-MM-DD` (midnight UTC) to Unix seconds.
pub(crate) fn parse_ymd(s: &str) -> Option<i64> {
    let mut parts = s.trim().splitn(3, '-');
    let year = parts.next()?.parse::<i64>().ok()?;
    let month = parts.next()?.parse::<u32>().ok()?;
    let day = parts.next()?.parse::<u32>().ok()?;
    date_seconds(year, month, day)
}

/// Goodreads' `Fri Aug 25 13:55:02 -0700 2017` to Unix seconds, honouring the UTC offset.
pub(crate) fn parse_goodreads_date(s: &str) -> Option<i64> {
    let fields: Vec<&str> = s.split_whitespace().collect();
    let [_weekday, month, day, hms, offset, year] = fields.as_slice() else {
        return None;
    };
    let month = month_number(month)?;
    let day = day.parse::<u32>().ok()?;
    let year = year.parse::<i64>().ok()?;
    let mut hms = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || !(0..24).contains(&h) || !(0..60).contains(&m) {
        return None;
    }
    if !(0..=60).contains(&sec) {
        return None;
    }
    let (sign, digits) = match offset.as_bytes().first()? {
        b'+' => (1, &offset[1..]),
        b'-' => (-1, &offset[1..]),
        _ => return None,
    };
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let off_h = digits[..2].parse::<i64>().ok()?;
    let off_m = digits[2..].parse::<i64>().ok()?;
    let offset_s = sign * (off_h * 3600 + off_m * 60);
    Some(date_seconds(year, month, day)? + h * 3600 + m * 60 + sec - offset_s)
}

/// Steam (Australian reviews) `Posted November 5, 2011.` to Unix seconds (midnight UTC).
///
/// Steam omits the year for reviews of the crawl's own year (`Posted March 3.`); such a date
/// gives `None`, as its year cannot be known from the file.
pub(crate) fn parse_steam_posted(s: &str) -> Option<i64> {
    let s = s.trim();
    let s = s.strip_prefix("Posted").unwrap_or(s).trim();
    let s = s.strip_suffix('.').unwrap_or(s);
    let (month_day, year) = s.split_once(',')?;
    let (month, day) = month_day.trim().split_once(' ')?;
    let year = year.trim().parse::<i64>().ok()?;
    date_seconds(year, month_number(month)?, day.trim().parse().ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_match_known_epochs() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(parse_ymd("2017-12-17"), Some(1_513_468_800));
        assert_eq!(parse_ymd("2016-02-29"), Some(1_456_704_000));
        assert_eq!(parse_ymd("2017-02-29"), None);
        assert_eq!(parse_ymd("2017-13-01"), None);
        assert_eq!(parse_ymd("yesterday"), None);
    }

    #[test]
    fn goodreads_dates_honour_the_offset() {
        // 2017-08-25 13:55:02 -07:00 = 20:55:02 UTC.
        let t = parse_goodreads_date("Fri Aug 25 13:55:02 -0700 2017");
        assert_eq!(t, Some(1_503_694_502));
        let utc = parse_goodreads_date("Fri Aug 25 20:55:02 +0000 2017");
        assert_eq!(utc, t);
        assert_eq!(parse_goodreads_date(""), None);
        assert_eq!(parse_goodreads_date("Fri Aug 25 13:55:02 0700 2017"), None);
        assert_eq!(parse_goodreads_date("Fri Foo 25 13:55:02 -0700 2017"), None);
    }

    #[test]
    fn steam_posted_dates() {
        assert_eq!(
            parse_steam_posted("Posted November 5, 2011."),
            parse_ymd("2011-11-05")
        );
        assert_eq!(parse_steam_posted("Posted March 3."), None);
    }

    #[test]
    fn huge_years_are_bad_dates_not_overflows() {
        for y in [
            "99999999999999",
            "-99999999999999",
            "9223372036854775807",
            "1000001",
        ] {
            assert_eq!(parse_ymd(&format!("{y}-01-01")), None, "{y}");
            assert_eq!(
                parse_steam_posted(&format!("Posted November 5, {y}.")),
                None
            );
            assert_eq!(
                parse_goodreads_date(&format!("Fri Aug 25 13:55:02 -0700 {y}")),
                None
            );
        }
        assert!(parse_ymd("1000000-12-31").is_some());
        assert!(
            parse_ymd("-1000000-01-01").is_none(),
            "a leading minus is not a year here"
        );
    }
}
