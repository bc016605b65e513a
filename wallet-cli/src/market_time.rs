//! Market time for people: which delivery interval `next`, `+2`, `1234` or
//! `2026-11-21T17:20Z` means, and UTC times read and written without a
//! time-zone database (the ledger's times are milliseconds since the epoch).

use std::str::FromStr;

use gridshare_ledger::genesis::Genesis;

/// How far ahead `next` looks for an offer: a node admits a transaction at
/// the time of its next block, so an interval whose gate closes sooner than
/// this would likely be closed by then.
pub const OFFER_MARGIN_MS: u64 = 2_000;
const MS_PER_SECOND: u64 = 1_000;
const MS_PER_DAY: u64 = 86_400_000;
/// Days from 0000-03-01 to 1970-01-01 in the proleptic Gregorian calendar.
const DAYS_0000_03_01_TO_EPOCH: u64 = 719_468;
const DAYS_PER_400_YEARS: u64 = 146_097;

/// How people name an interval on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntervalSpec {
    /// The first interval whose gate closure is still in the future.
    Next,
    /// This many intervals after `Next`.
    AfterNext(u64),
    /// An interval by its index.
    Index(u64),
    /// The interval that contains this time (ms since the epoch).
    At(u64),
    /// The interval that contains the time this long from now, in ms
    /// (negative: ago): `+15m`, `PT1H`, `-30m`.
    In(i64),
}

/// Why an interval or a time was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    #[error(
        "bad interval `{0}`: use next, +N (N intervals after next), an interval number, a time such as 2026-11-21T17:20Z or 2026-11-21T18:20+01:00, or a duration from now such as +15m or PT1H"
    )]
    BadInterval(String),
    #[error("bad time `{text}`: {reason}")]
    BadTime { text: String, reason: &'static str },
    #[error("bad day `{0}`: use YYYY-MM-DD, e.g. 2026-11-21")]
    BadDay(String),
    #[error("{time} is before the community began ({genesis})")]
    BeforeGenesis { time: String, genesis: String },
    #[error("the interval is beyond any representable time")]
    OutOfRange,
    #[error(
        "`{0}` is not a time: give RFC 3339 (2026-11-21T17:20Z, 2026-11-21T18:20+01:00), a date \
         (2026-11-21, midnight in --tz), a time without zone (2026-11-21T18:20, in --tz), `now`, or a \
         duration from now (-24h, -P1D, +15m, PT15M)"
    )]
    BadWhen(String),
}

impl FromStr for IntervalSpec {
    type Err = TimeError;

    fn from_str(text: &str) -> Result<IntervalSpec, TimeError> {
        let text = text.trim();
        let bad = || TimeError::BadInterval(text.to_string());
        if text.eq_ignore_ascii_case("next") {
            return Ok(IntervalSpec::Next);
        }
        if let Some(count) = text.strip_prefix('+').and_then(digits) {
            return Ok(IntervalSpec::AfterNext(count));
        }
        if let Some(index) = digits(text) {
            return Ok(IntervalSpec::Index(index));
        }
        if text.len() >= 10 && text.as_bytes().get(4) == Some(&b'-') {
            return parse_utc(text).map(IntervalSpec::At);
        }
        parse_duration_ms(text).map(IntervalSpec::In).ok_or_else(bad)
    }
}

/// Reads a time as people write it (see [`TimeError::BadWhen`]); civil
/// times and durations are in `tz`, from `now`.
pub fn parse_when(
    text: &str,
    now: jiff::Timestamp,
    tz: &jiff::tz::TimeZone,
) -> Result<jiff::Timestamp, TimeError> {
    let bad = || TimeError::BadWhen(text.to_string());
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Ok(ms) = parse_utc(trimmed) {
        return i64::try_from(ms)
            .ok()
            .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
            .ok_or_else(bad);
    }
    // A time with a zone that `parse_utc` refused is refused, never read
    // as a time in `tz` without it.
    let zoned = trimmed.get(10..).is_some_and(|rest| rest.contains(['+', '-', 'Z', 'z', '[']));
    // A date alone is its midnight.
    if !zoned && let Ok(civil) = trimmed.parse::<jiff::civil::DateTime>() {
        return civil.to_zoned(tz.clone()).map(|zoned| zoned.timestamp()).map_err(|_| bad());
    }
    let duration = parse_duration(trimmed).ok_or_else(bad)?;
    now.to_zoned(tz.clone()).checked_add(duration).map(|zoned| zoned.timestamp()).map_err(|_| bad())
}

/// A duration as people write it: `15m`, `2h 30m`, `-24h`, `+1d`, or ISO
/// 8601 (`PT15M`, `-P1D`); calendar units (months, years) need a date and a
/// zone to mean a length, see [`parse_when`].
pub fn parse_duration(text: &str) -> Option<jiff::Span> {
    let text = text.trim();
    text.strip_prefix('+').unwrap_or(text).parse::<jiff::Span>().ok()
}

/// A duration of fixed length in ms (a day is 24 hours): [`parse_duration`]
/// without months or years.
pub fn parse_duration_ms(text: &str) -> Option<i64> {
    let duration = parse_duration(text)?.to_duration(jiff::SpanRelativeTo::days_are_24_hours()).ok()?;
    i64::try_from(duration.as_millis()).ok()
}

/// A non-empty run of ASCII digits as a number.
fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl IntervalSpec {
    /// The interval this names for an offer at `now_ms`: `next` and `+N`
    /// count from the first interval whose gate closes at least
    /// `OFFER_MARGIN_MS` later, so that the offer reaches a block in time.
    pub fn resolve_for_offer(self, genesis: &Genesis, now_ms: u64) -> Result<u64, TimeError> {
        match self {
            IntervalSpec::Next | IntervalSpec::AfterNext(_) => {
                self.resolve(genesis, now_ms.saturating_add(OFFER_MARGIN_MS))
            }
            IntervalSpec::Index(_) | IntervalSpec::At(_) | IntervalSpec::In(_) => {
                self.resolve(genesis, now_ms)
            }
        }
    }

    /// The interval this names at time `now_ms`.
    pub fn resolve(self, genesis: &Genesis, now_ms: u64) -> Result<u64, TimeError> {
        match self {
            IntervalSpec::Next => Ok(genesis.first_open_interval(now_ms)),
            IntervalSpec::AfterNext(count) => {
                genesis.first_open_interval(now_ms).checked_add(count).ok_or(TimeError::OutOfRange)
            }
            IntervalSpec::Index(index) => Ok(index),
            IntervalSpec::In(offset_ms) => {
                let time_ms = now_ms.checked_add_signed(offset_ms).ok_or(TimeError::OutOfRange)?;
                IntervalSpec::At(time_ms).resolve(genesis, now_ms)
            }
            IntervalSpec::At(time_ms) => {
                if time_ms < genesis.genesis_time_ms {
                    return Err(TimeError::BeforeGenesis {
                        time: format_utc(time_ms),
                        genesis: format_utc(genesis.genesis_time_ms),
                    });
                }
                Ok(genesis.interval_at(time_ms))
            }
        }
    }
}

/// The latest interval that has ended by `now_ms`, if any has.
pub fn latest_ended_interval(genesis: &Genesis, now_ms: u64) -> Option<u64> {
    let elapsed = now_ms.checked_sub(genesis.genesis_time_ms)?;
    (elapsed / genesis.market.interval_length_ms).checked_sub(1)
}

/// The system clock in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    let elapsed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}

/// `2026-11-21 17:20:04 UTC`, with `.800` when the time has milliseconds.
pub fn format_utc(time_ms: u64) -> String {
    let (year, month, day) = civil_from_days(time_ms / MS_PER_DAY);
    let in_day_ms = time_ms % MS_PER_DAY;
    let seconds = in_day_ms / MS_PER_SECOND;
    let (hour, minute, second) = (seconds / 3_600, seconds / 60 % 60, seconds % 60);
    let millis = in_day_ms % MS_PER_SECOND;
    let fraction = if millis == 0 { String::new() } else { format!(".{millis:03}") };
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{second:02}{fraction} UTC")
}

/// Parses an RFC 3339 time into ms since the Unix epoch (UTC):
/// `YYYY-MM-DDTHH:MM[:SS[.fff]]` followed by `Z` or an offset from UTC,
/// `+01:00` or `-05:00` (a space may replace the `T`), or ` UTC` as
/// [`format_utc`] writes it, so that every time the CLI prints is one it
/// takes. The zone is required, so that nobody's local time is taken for
/// another.
pub fn parse_utc(text: &str) -> Result<u64, TimeError> {
    let bad = |reason| TimeError::BadTime { text: text.to_string(), reason };
    let trimmed = text.trim();
    let (body, offset_ms) = if let Some(body) = trimmed
        .strip_suffix('Z')
        .or_else(|| trimmed.strip_suffix('z'))
        .or_else(|| trimmed.strip_suffix(" UTC"))
    {
        (body, 0_i64)
    } else if let Some((body, offset)) =
        trimmed.len().checked_sub(6).and_then(|at| trimmed.is_char_boundary(at).then(|| trimmed.split_at(at)))
        && let Some(offset_ms) = utc_offset_ms(offset)
    {
        (body, offset_ms)
    } else {
        return Err(bad(
            "a time needs its zone: end it with Z (UTC) or an offset, e.g. 2026-11-21T17:20Z or 2026-11-21T18:20+01:00",
        ));
    };
    let (date, time) = body
        .split_once(['T', 't', ' '])
        .ok_or(bad("expected YYYY-MM-DDTHH:MM[:SS[.fff]]Z, e.g. 2026-11-21T17:20Z"))?;
    let day_ms = parse_day(date).map_err(|_| bad("the date must be YYYY-MM-DD and exist"))?;
    let (clock, millis) = match time.split_once('.') {
        Some((clock, fraction)) => {
            if fraction.is_empty() || fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("at most 3 digits after the seconds' point"));
            }
            let padded = format!("{fraction:0<3}");
            (clock, padded.parse::<u64>().map_err(|_| bad("bad milliseconds"))?)
        }
        None => (time, 0),
    };
    let parts: Vec<&str> = clock.split(':').collect();
    let field = |index: usize, max: u64| -> Option<u64> {
        let part = parts.get(index)?;
        if part.len() != 2 {
            return None;
        }
        digits(part).filter(|value| *value <= max)
    };
    let invalid = bad("the time of day must be HH:MM or HH:MM:SS");
    let (hour, minute) = (field(0, 23), field(1, 59));
    let second = if parts.len() == 3 { field(2, 59) } else { Some(0) };
    let (Some(hour), Some(minute), Some(second)) = (hour, minute, second) else {
        return Err(invalid);
    };
    if !(2..=3).contains(&parts.len()) || (parts.len() == 2 && millis > 0) {
        return Err(invalid);
    }
    let local_ms = day_ms + ((hour * 60 + minute) * 60 + second) * MS_PER_SECOND + millis;
    // A local time at +01:00 is an hour ahead of UTC.
    u64::try_from(i128::from(local_ms) - i128::from(offset_ms)).map_err(|_| bad("the time is before 1970"))
}

/// An RFC 3339 offset `+HH:MM` or `-HH:MM` (up to ±23:59) in ms.
fn utc_offset_ms(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let sign = match bytes.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    if bytes.len() != 6 || bytes[3] != b':' {
        return None;
    }
    let (hours, minutes) = (digits(&text[1..3])?, digits(&text[4..6])?);
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some(sign * i64::try_from((hours * 60 + minutes) * 60_000).ok()?)
}

/// Parses a UTC day `YYYY-MM-DD` (1970 to 9999) into the time it starts.
pub fn parse_day(text: &str) -> Result<u64, TimeError> {
    let bad = || TimeError::BadDay(text.to_string());
    let parts: Vec<&str> = text.trim().split('-').collect();
    let [year, month, day] = parts[..] else { return Err(bad()) };
    if year.len() != 4 || month.len() != 2 || day.len() != 2 {
        return Err(bad());
    }
    let (Some(year), Some(month), Some(day)) = (digits(year), digits(month), digits(day)) else {
        return Err(bad());
    };
    if year < 1970 || !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(bad());
    }
    Ok(days_from_civil(year, month, day) * MS_PER_DAY)
}

/// The length of a UTC day in milliseconds.
pub const DAY_MS: u64 = MS_PER_DAY;

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a date from 1970 on (H. Hinnant's algorithm,
/// with years starting in March so that leap days come last).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year / 400;
    let year_of_era = year - era * 400;
    let month_from_march = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * DAYS_PER_400_YEARS + day_of_era - DAYS_0000_03_01_TO_EPOCH
}

/// The date of a day since 1970-01-01: the inverse of `days_from_civil`.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let days = days + DAYS_0000_03_01_TO_EPOCH;
    let era = days / DAYS_PER_400_YEARS;
    let day_of_era = days - era * DAYS_PER_400_YEARS;
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use gridshare_ledger::testkit::{TestCommunity, test_market};

    use super::*;

    /// 10-second intervals with gate closure 4 s before the start, from
    /// 2026-11-21 00:00:00 UTC.
    fn genesis() -> Genesis {
        let mut market = test_market();
        market.interval_length_ms = 10_000;
        market.gate_closure_lead_ms = 4_000;
        TestCommunity::new(1, 0, market, 1_795_219_200_000).genesis
    }

    #[test]
    fn times_are_read_in_every_form_people_write() {
        let now: jiff::Timestamp = "2026-11-21T17:20:00Z".parse().unwrap();
        let at = |text: &str, tz: &str| {
            let tz = if tz == "UTC" { jiff::tz::TimeZone::UTC } else { jiff::tz::TimeZone::get(tz).unwrap() };
            parse_when(text, now, &tz).map(|time| time.to_string()).unwrap_or_else(|e| e.to_string())
        };
        assert_eq!(at("2026-11-21T18:20+01:00", "UTC"), "2026-11-21T17:20:00Z");
        assert_eq!(at("2026-11-21T17:20Z", "Europe/Amsterdam"), "2026-11-21T17:20:00Z");
        assert_eq!(at("2026-11-21", "Europe/Amsterdam"), "2026-11-20T23:00:00Z", "local midnight");
        assert_eq!(at("2026-07-01", "Europe/Amsterdam"), "2026-06-30T22:00:00Z", "summer time");
        assert_eq!(at("2026-11-21T18:20", "Europe/Amsterdam"), "2026-11-21T17:20:00Z");
        assert_eq!(at("now", "UTC"), "2026-11-21T17:20:00Z");
        assert_eq!(at("-24h", "UTC"), "2026-11-20T17:20:00Z");
        assert_eq!(at("+15m", "UTC"), "2026-11-21T17:35:00Z");
        assert_eq!(at("PT15M", "UTC"), "2026-11-21T17:35:00Z");
        assert_eq!(at("-P1D", "UTC"), "2026-11-20T17:20:00Z");
        assert_eq!(at("-1 month", "Europe/Amsterdam"), "2026-10-21T16:20:00Z", "18:20 local, in summer time");
        assert!(at("yesterday-ish", "UTC").contains("is not a time"));
        // An offset or zone parse_utc does not take is refused, not dropped.
        for zoned in ["2026-11-21T18:20+01", "2026-11-21T18:20+0100", "2026-11-21T18:20:00.1234+01:00"] {
            assert!(at(zoned, "Europe/Amsterdam").contains("is not a time"), "{zoned} was read");
        }
        assert!(at("2026-11-21T18:20+01:00[Europe/Paris]", "UTC").contains("is not a time"));
    }

    #[test]
    fn parses_interval_specs() {
        assert_eq!("next".parse(), Ok(IntervalSpec::Next));
        assert_eq!("NEXT".parse(), Ok(IntervalSpec::Next));
        assert_eq!("+3".parse(), Ok(IntervalSpec::AfterNext(3)));
        assert_eq!("1234".parse(), Ok(IntervalSpec::Index(1234)));
        assert_eq!("2026-11-21T17:20Z".parse(), Ok(IntervalSpec::At(1_795_281_600_000)));
        for bad in ["", "+", "+-1", "-1", "soon", "1.5", "12a", "2026-11-21T17:20"] {
            assert!(bad.parse::<IntervalSpec>().is_err(), "{bad:?} was accepted");
        }
        let message = "later".parse::<IntervalSpec>().unwrap_err().to_string();
        assert!(message.starts_with("bad interval `later`: use next, +N"), "{message}");
        let message = "2026-11-21T17:20".parse::<IntervalSpec>().unwrap_err().to_string();
        assert!(message.contains("a time needs its zone: end it with Z (UTC) or an offset"), "{message}");
        // Any RFC 3339 offset names the same instant.
        assert_eq!("2026-11-21T18:20+01:00".parse(), Ok(IntervalSpec::At(1_795_281_600_000)));
        assert_eq!("2026-11-21T12:20-05:00".parse(), Ok(IntervalSpec::At(1_795_281_600_000)));
        // A duration from now, as people or ISO 8601 write it.
        assert_eq!("+15m".parse(), Ok(IntervalSpec::In(900_000)));
        assert_eq!("PT15M".parse(), Ok(IntervalSpec::In(900_000)));
        assert_eq!("2h 30m".parse(), Ok(IntervalSpec::In(9_000_000)));
        assert_eq!("-30m".parse(), Ok(IntervalSpec::In(-1_800_000)));
        assert_eq!("+1d".parse(), Ok(IntervalSpec::In(86_400_000)));
        assert!("P1M".parse::<IntervalSpec>().is_err(), "a month has no fixed length");
        let genesis = genesis();
        let now = genesis.genesis_time_ms + 3_600_000;
        assert_eq!(
            IntervalSpec::In(900_000).resolve(&genesis, now),
            IntervalSpec::At(now + 900_000).resolve(&genesis, now)
        );
        assert!(IntervalSpec::In(-7_200_000).resolve(&genesis, now).is_err(), "before the community began");
    }

    #[test]
    fn resolves_next_by_gate_closure() {
        let genesis = genesis();
        let start = genesis.genesis_time_ms;
        // At the start, interval 0's gate (saturated at genesis − 4 s) has
        // passed: interval 1's gate is at 6 s.
        assert_eq!(genesis.first_open_interval(start), 1);
        assert_eq!(genesis.first_open_interval(start + 5_999), 1);
        assert_eq!(genesis.first_open_interval(start + 6_000), 2);
        assert_eq!(genesis.first_open_interval(start - 10_000), 0);
        for now in [start, start + 5_999, start + 6_000, start + 123_456] {
            let next = genesis.first_open_interval(now);
            assert!(genesis.gate_closure_ms(next).unwrap() > now);
            assert!(next == 0 || genesis.gate_closure_ms(next - 1).unwrap() <= now);
        }
        assert_eq!(IntervalSpec::AfterNext(2).resolve(&genesis, start), Ok(3));
        // Offers leave time to reach a block: 4.5 s in, interval 1's gate
        // (at 6 s) is too close.
        assert_eq!(IntervalSpec::Next.resolve(&genesis, start + 4_500), Ok(1));
        assert_eq!(IntervalSpec::Next.resolve_for_offer(&genesis, start + 4_500), Ok(2));
        assert_eq!(IntervalSpec::AfterNext(1).resolve_for_offer(&genesis, start + 4_500), Ok(3));
        assert_eq!(IntervalSpec::Index(1).resolve_for_offer(&genesis, start + 4_500), Ok(1));
        assert_eq!(IntervalSpec::At(start + 25_000).resolve(&genesis, 0), Ok(2));
        assert!(matches!(
            IntervalSpec::At(start - 1).resolve(&genesis, 0),
            Err(TimeError::BeforeGenesis { .. })
        ));
        assert_eq!(latest_ended_interval(&genesis, start + 9_999), None);
        assert_eq!(latest_ended_interval(&genesis, start + 10_000), Some(0));
        assert_eq!(latest_ended_interval(&genesis, start + 29_999), Some(1));
        assert_eq!(latest_ended_interval(&genesis, start - 1), None);
    }

    #[test]
    fn utc_times_round_trip() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_utc(1_795_281_604_800), "2026-11-21 17:20:04.800 UTC");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(parse_utc("2026-11-21T17:20:04.8Z"), Ok(1_795_281_604_800));
        assert_eq!(parse_utc("2026-11-21 17:20:04+00:00"), Ok(1_795_281_604_000));
        assert_eq!(parse_day("2000-02-29"), Ok(951_782_400_000));
        assert_eq!(parse_day("1970-01-01"), Ok(0));
        for bad in ["2026-02-29", "2026-13-01", "2026-1-01", "1969-12-31", "2026-11-21T00:00Z"] {
            assert!(parse_day(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(parse_utc("2026-11-21T22:50:04.8+05:30"), Ok(1_795_281_604_800));
        assert_eq!(parse_utc("1970-01-01T01:00+01:00"), Ok(0));
        for bad in [
            "2026-11-21T24:00Z",
            "2026-11-21T17:60Z",
            "2026-11-21T17Z",
            "2026-11-21T17:20:00.1234Z",
            "2026-11-21T17:20+24:00",
            "2026-11-21T17:20+01:60",
            "2026-11-21T17:20+0100",
            "2026-11-21T17:20 01:00",
            "1970-01-01T00:00+01:00",
            "2026-11-21T17:20+é:00",
        ] {
            assert!(parse_utc(bad).is_err(), "{bad:?} was accepted");
        }
        // Every day from 1970 to 2100 survives the round trip, and every
        // time the CLI prints it takes back.
        let mut day_ms = 0;
        while day_ms < 4_102_444_800_000 {
            let text = format_utc(day_ms);
            assert_eq!(parse_day(&text[..10]), Ok(day_ms), "{text}");
            for time_ms in [day_ms, day_ms + 63_904_800, day_ms + 86_399_999] {
                assert_eq!(parse_utc(&format_utc(time_ms)), Ok(time_ms), "{}", format_utc(time_ms));
                assert_eq!(IntervalSpec::from_str(&format_utc(time_ms)), Ok(IntervalSpec::At(time_ms)));
            }
            day_ms += MS_PER_DAY;
        }
    }
}
