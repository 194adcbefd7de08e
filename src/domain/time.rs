//! Time: UTC instants in epoch milliseconds, IST (UTC+05:30, no DST) for everything the exchange
//! schedules, and a clock abstraction so that replay and tests drive virtual time.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, TimeZone, Timelike, Utc};
use serde::{Deserialize, Serialize};

/// IST is UTC+05:30 all year.
pub const IST_OFFSET_SECS: i32 = 19_800;

fn ist() -> FixedOffset {
    FixedOffset::east_opt(IST_OFFSET_SECS).expect("+05:30 is a valid offset")
}

/// A UTC instant, milliseconds since the Unix epoch.
#[derive(
    Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    pub const fn millis(self) -> i64 {
        self.0
    }

    /// The feed's LTT is IST wall-clock time written as if it were a UTC epoch (spec dhan-v2
    /// §1.6): the true instant is `ltt − 19800` seconds.
    pub const fn from_feed_ltt(ltt: u32) -> Timestamp {
        Timestamp((ltt as i64 - IST_OFFSET_SECS as i64) * 1000)
    }

    /// The inverse of [`Timestamp::from_feed_ltt`] (whole seconds), for the simulator.
    pub const fn to_feed_ltt(self) -> u32 {
        (self.0.div_euclid(1000) + IST_OFFSET_SECS as i64) as u32
    }

    pub fn to_ist(self) -> DateTime<FixedOffset> {
        let utc = Utc.timestamp_millis_opt(self.0).single().unwrap_or_default();
        utc.with_timezone(&ist())
    }

    /// The IST calendar date of this instant (the trading day it belongs to).
    pub fn ist_date(self) -> NaiveDate {
        self.to_ist().date_naive()
    }

    /// The IST time of day of this instant, in whole seconds.
    pub fn ist_time_of_day(self) -> TimeOfDay {
        let t = self.to_ist().time();
        TimeOfDay(t.num_seconds_from_midnight())
    }

    /// The instant of `time` IST on `date`.
    pub fn from_ist(date: NaiveDate, time: TimeOfDay) -> Timestamp {
        let naive = date.and_time(time.to_naive());
        let dt = ist().from_local_datetime(&naive).single().expect("fixed offsets are unambiguous");
        Timestamp(dt.timestamp_millis())
    }

    /// ISO-8601 in IST with milliseconds: `2025-11-24T10:30:15.000+05:30`.
    pub fn to_ist_iso(self) -> String {
        self.to_ist().format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string()
    }

    /// Parses ISO-8601 with an explicit offset (`2025-11-24T10:30:15+05:30`, `…Z`, fractional
    /// seconds allowed) or integer epoch milliseconds.
    pub fn parse(text: &str) -> Result<Timestamp, String> {
        let t = text.trim();
        if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            return t.parse::<i64>().map(Timestamp).map_err(|_| format!("{t:?} is out of range"));
        }
        DateTime::parse_from_rfc3339(t).map(|dt| Timestamp(dt.timestamp_millis())).map_err(|e| {
            format!("{t:?} is not an ISO-8601 time with offset or epoch milliseconds ({e})")
        })
    }

    pub fn plus_millis(self, ms: i64) -> Timestamp {
        Timestamp(self.0 + ms)
    }

    /// Milliseconds from `earlier` to `self` (negative if `earlier` is later).
    pub fn millis_since(self, earlier: Timestamp) -> i64 {
        self.0 - earlier.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_ist_iso())
    }
}

/// A time of day in whole seconds since midnight (IST when used for session times).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay(pub u32);

impl TimeOfDay {
    pub const fn hms(h: u32, m: u32, s: u32) -> TimeOfDay {
        TimeOfDay(h * 3600 + m * 60 + s)
    }

    pub fn to_naive(self) -> NaiveTime {
        NaiveTime::from_num_seconds_from_midnight_opt(self.0 % 86_400, 0).expect("in range")
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}:{:02}", self.0 / 3600, self.0 / 60 % 60, self.0 % 60)
    }
}

impl FromStr for TimeOfDay {
    type Err = String;
    /// `HH:MM` or `HH:MM:SS`, 24-hour.
    fn from_str(s: &str) -> Result<TimeOfDay, String> {
        let bad = || format!("{s:?} is not a time of day (HH:MM or HH:MM:SS)");
        let parts: Vec<&str> = s.trim().split(':').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.len() != 2) {
            return Err(bad());
        }
        let mut nums = [0u32; 3];
        for (i, p) in parts.iter().enumerate() {
            nums[i] = p.parse().map_err(|_| bad())?;
        }
        if nums[0] > 23 || nums[1] > 59 || nums[2] > 59 {
            return Err(bad());
        }
        Ok(TimeOfDay::hms(nums[0], nums[1], nums[2]))
    }
}

/// A monotonic reading in milliseconds since an arbitrary origin (the process's first reading
/// for [`SystemClock`]). Ages, timeouts and staleness are measured on it: unlike the wall
/// clock it never steps when the system time is corrected. It means nothing across processes.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mono(pub i64);

impl Mono {
    /// The reading of a virtual clock whose monotonic time is its wall time (replay, tests).
    pub const fn of_wall(t: Timestamp) -> Mono {
        Mono(t.0)
    }

    /// Milliseconds from `earlier` to `self` (negative if `earlier` is later).
    pub fn millis_since(self, earlier: Mono) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    pub fn plus_millis(self, ms: i64) -> Mono {
        Mono(self.0.saturating_add(ms))
    }
}

/// Where "now" comes from. Workers use [`SystemClock`]; replay and tests use [`ManualClock`].
/// `now` is the wall clock, for session times (square-off, cut-off, trading day) and records;
/// `mono` is monotonic, for every age, timeout and staleness.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
    fn mono(&self) -> Mono;

    /// The monotonic reading at `at`, an instant the caller has already read, so that one
    /// clock read can stamp a whole frame. A clock that does not follow `Instant` (a manual
    /// clock) gives its own reading.
    fn mono_at(&self, at: Instant) -> Mono {
        let _ = at;
        self.mono()
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp(Utc::now().timestamp_millis())
    }

    fn mono(&self) -> Mono {
        self.mono_at(Instant::now())
    }

    fn mono_at(&self, at: Instant) -> Mono {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        Mono(at.saturating_duration_since(*ORIGIN.get_or_init(Instant::now)).as_millis() as i64)
    }
}

/// A clock that only moves when told to; clones share the same time. Moving it forward
/// (`set` to a later time, `advance_millis`) moves both readings; `set` to an earlier time and
/// [`ManualClock::step_wall_millis`] move the wall clock only, as a system-time correction does.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    wall: Arc<AtomicI64>,
    mono: Arc<AtomicI64>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock {
            wall: Arc::new(AtomicI64::new(start.0)),
            mono: Arc::new(AtomicI64::new(start.0)),
        }
    }

    pub fn set(&self, t: Timestamp) {
        let prev = self.wall.swap(t.0, Ordering::SeqCst);
        if t.0 > prev {
            self.mono.fetch_add(t.0 - prev, Ordering::SeqCst);
        }
    }

    pub fn advance_millis(&self, ms: i64) {
        self.wall.fetch_add(ms, Ordering::SeqCst);
        if ms > 0 {
            self.mono.fetch_add(ms, Ordering::SeqCst);
        }
    }

    /// Steps the wall clock by `ms` (either way) without any time passing.
    pub fn step_wall_millis(&self, ms: i64) {
        self.wall.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.wall.load(Ordering::SeqCst))
    }

    fn mono(&self) -> Mono {
        Mono(self.mono.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_ltt_is_ist_wall_clock() {
        // spec dhan-v2 §1.6 test vector
        let t = Timestamp::from_feed_ltt(1_763_980_215);
        assert_eq!(t.millis(), 1_763_960_415_000);
        assert_eq!(t.to_ist_iso(), "2025-11-24T10:30:15.000+05:30");
        assert_eq!(t.to_feed_ltt(), 1_763_980_215);
        assert_eq!(t.ist_time_of_day(), TimeOfDay::hms(10, 30, 15));
    }

    #[test]
    fn iso_and_epoch_millis_parse() {
        let a = Timestamp::parse("2025-11-24T10:30:15+05:30").unwrap();
        let b = Timestamp::parse("2025-11-24T05:00:15Z").unwrap();
        let c = Timestamp::parse("1763960415000").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert!(Timestamp::parse("2025-11-24 10:30:15").is_err());
    }

    #[test]
    fn session_instants_are_ist() {
        let d = NaiveDate::from_ymd_opt(2025, 11, 24).unwrap();
        let t = Timestamp::from_ist(d, TimeOfDay::hms(15, 20, 0));
        assert_eq!(t.to_ist_iso(), "2025-11-24T15:20:00.000+05:30");
        assert_eq!(t.ist_date(), d);
    }

    #[test]
    fn time_of_day_parses_hh_mm_and_hh_mm_ss() {
        assert_eq!("15:20".parse::<TimeOfDay>(), Ok(TimeOfDay::hms(15, 20, 0)));
        assert_eq!("09:15:30".parse::<TimeOfDay>(), Ok(TimeOfDay::hms(9, 15, 30)));
        for bad in ["24:00", "9:15", "15:60", "15-20", "15:20:00:00"] {
            assert!(bad.parse::<TimeOfDay>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_wall_step_leaves_the_monotonic_reading_alone() {
        let c = ManualClock::new(Timestamp(1_000));
        c.advance_millis(500);
        assert_eq!((c.now(), c.mono()), (Timestamp(1_500), Mono(1_500)));
        c.step_wall_millis(3_600_000);
        c.step_wall_millis(-7_200_000);
        assert_eq!((c.now(), c.mono()), (Timestamp(1_500 - 3_600_000), Mono(1_500)));
        c.set(Timestamp(2_000 - 3_600_000));
        assert_eq!(c.mono(), Mono(2_000), "a forward set is time passing");
        let s = SystemClock;
        assert!(s.mono() <= s.mono());
    }
}
