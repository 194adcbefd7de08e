//! The trading session on the exchange's clock (IST): which dates are trading days, when a
//! day's square-off and entry cut-off fall, and when a new session begins (which lifts a halt
//! and resets the day's counters).
//!
//! Pure calendar arithmetic over [`SessionParams`]; the exit core asks it on every clock step.
//! A session is identified by its IST date; it begins at 00:00 IST of a trading day and lasts
//! until the next trading day begins, so a weekend or holiday belongs to the session before it.

use chrono::{Datelike, Duration, NaiveDate, Weekday};

use crate::domain::{TimeOfDay, Timestamp};

use super::params::SessionParams;

/// How far back square-offs are looked for after a long gap (a restart after days off): older
/// ones are moot, the window only has to cover weekends and holidays.
const MAX_CATCH_UP_DAYS: i64 = 14;

/// Why entries are closed at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntriesClosed {
    NotATradingDay(NaiveDate),
    AfterCutoff { cutoff: Timestamp },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionClock {
    params: SessionParams,
}

impl SessionClock {
    pub fn new(params: SessionParams) -> SessionClock {
        SessionClock { params }
    }

    pub fn params(&self) -> &SessionParams {
        &self.params
    }

    pub fn is_trading_day(&self, date: NaiveDate) -> bool {
        let weekend = matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
        (self.params.weekends_are_trading_days || !weekend) && !self.params.holidays.contains(&date)
    }

    /// The IST date of `at` if it is a trading day.
    pub fn trading_day(&self, at: Timestamp) -> Option<NaiveDate> {
        let d = at.ist_date();
        self.is_trading_day(d).then_some(d)
    }

    /// The session `at` belongs to: its IST date if that is a trading day, else the last
    /// trading day before it (within a few weeks).
    pub fn session_of(&self, at: Timestamp) -> NaiveDate {
        let mut d = at.ist_date();
        for _ in 0..MAX_CATCH_UP_DAYS * 3 {
            if self.is_trading_day(d) {
                return d;
            }
            d -= Duration::days(1);
        }
        at.ist_date()
    }

    pub fn square_off_at(&self, date: NaiveDate) -> Timestamp {
        Timestamp::from_ist(date, self.params.square_off_time)
    }

    pub fn entry_cutoff_at(&self, date: NaiveDate) -> Timestamp {
        Timestamp::from_ist(date, self.params.entry_cutoff_time)
    }

    /// 00:00 IST of `date`.
    pub fn day_start(&self, date: NaiveDate) -> Timestamp {
        Timestamp::from_ist(date, TimeOfDay(0))
    }

    /// Whether a new entry may be accepted at `at`: a trading day, before its cut-off.
    pub fn entries_open(&self, at: Timestamp) -> Result<(), EntriesClosed> {
        let date = at.ist_date();
        if !self.is_trading_day(date) {
            return Err(EntriesClosed::NotATradingDay(date));
        }
        let cutoff = self.entry_cutoff_at(date);
        if at >= cutoff {
            return Err(EntriesClosed::AfterCutoff { cutoff });
        }
        Ok(())
    }

    /// Whether `at` is at or after the square-off of its own (trading) day.
    pub fn is_past_square_off(&self, at: Timestamp) -> bool {
        self.trading_day(at).is_some_and(|d| at >= self.square_off_at(d))
    }

    /// The square-off instants in `(after, upto]`, oldest first.
    pub fn square_offs_between(&self, after: Timestamp, upto: Timestamp) -> Vec<Timestamp> {
        if upto <= after {
            return Vec::new();
        }
        let last = upto.ist_date();
        let mut d = after.ist_date().max(last - Duration::days(MAX_CATCH_UP_DAYS));
        let mut out = Vec::new();
        while d <= last {
            if self.is_trading_day(d) {
                let t = self.square_off_at(d);
                if t > after && t <= upto {
                    out.push(t);
                }
            }
            d += Duration::days(1);
        }
        out
    }

    /// The first square-off instant strictly after `after` (within the catch-up window), for
    /// a worker that wants to wake exactly when it is due.
    pub fn next_square_off_after(&self, after: Timestamp) -> Option<Timestamp> {
        let mut d = after.ist_date();
        for _ in 0..MAX_CATCH_UP_DAYS {
            if self.is_trading_day(d) {
                let t = self.square_off_at(d);
                if t > after {
                    return Some(t);
                }
            }
            d += Duration::days(1);
        }
        None
    }

    /// The start (00:00 IST) of the first trading day after `date`: when the next session begins.
    pub fn next_session_start_after(&self, date: NaiveDate) -> Option<Timestamp> {
        let mut d = date + Duration::days(1);
        for _ in 0..MAX_CATCH_UP_DAYS {
            if self.is_trading_day(d) {
                return Some(self.day_start(d));
            }
            d += Duration::days(1);
        }
        None
    }

    /// A new session when `at` falls on a trading day later than `current`.
    pub fn new_session(&self, current: NaiveDate, at: Timestamp) -> Option<NaiveDate> {
        self.trading_day(at).filter(|d| *d > current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn ist(text: &str) -> Timestamp {
        Timestamp::parse(&format!("{text}+05:30")).unwrap()
    }

    fn clock() -> SessionClock {
        let mut p = SessionParams::default();
        p.holidays.insert(date(2025, 11, 5));
        SessionClock::new(p)
    }

    #[test]
    fn next_square_off_is_strictly_after_and_skips_non_trading_days() {
        let c = clock();
        // Tuesday 4 Nov 2025 before and at its square-off; Wednesday 5 Nov is a holiday.
        assert_eq!(
            c.next_square_off_after(ist("2025-11-04T10:00:00")),
            Some(ist("2025-11-04T15:20:00"))
        );
        assert_eq!(
            c.next_square_off_after(ist("2025-11-04T15:20:00")),
            Some(ist("2025-11-06T15:20:00"))
        );
        // Friday 7 Nov after its square-off: the next is Monday 10 Nov.
        assert_eq!(
            c.next_square_off_after(ist("2025-11-07T16:00:00")),
            Some(ist("2025-11-10T15:20:00"))
        );
    }

    #[test]
    fn next_session_starts_on_the_next_trading_day() {
        let c = clock();
        assert_eq!(c.next_session_start_after(date(2025, 11, 4)), Some(ist("2025-11-06T00:00:00")));
        assert_eq!(c.next_session_start_after(date(2025, 11, 7)), Some(ist("2025-11-10T00:00:00")));
    }

    #[test]
    fn weekends_and_holidays_are_not_trading_days() {
        let c = clock();
        assert!(c.is_trading_day(date(2025, 11, 24))); // Monday
        assert!(!c.is_trading_day(date(2025, 11, 22))); // Saturday
        assert!(!c.is_trading_day(date(2025, 11, 23))); // Sunday
        assert!(!c.is_trading_day(date(2025, 11, 5))); // holiday
        let special = SessionClock::new(SessionParams {
            weekends_are_trading_days: true,
            ..SessionParams::default()
        });
        assert!(special.is_trading_day(date(2025, 11, 22)));
    }

    #[test]
    fn trading_day_is_the_ist_date() {
        // 2025-11-23T20:00Z is Monday 01:30 IST.
        let t = Timestamp::parse("2025-11-23T20:00:00Z").unwrap();
        assert_eq!(clock().trading_day(t), Some(date(2025, 11, 24)));
        assert_eq!(clock().session_of(ist("2025-11-23T10:00:00")), date(2025, 11, 21));
    }

    #[test]
    fn square_off_and_cutoff_instants_are_ist() {
        let c = clock();
        assert_eq!(c.square_off_at(date(2025, 11, 24)), ist("2025-11-24T15:20:00"));
        assert_eq!(c.entry_cutoff_at(date(2025, 11, 24)), ist("2025-11-24T15:15:00"));
    }

    #[test]
    fn entries_close_at_exactly_the_cutoff() {
        let c = clock();
        assert_eq!(c.entries_open(ist("2025-11-24T15:14:59.999")), Ok(()));
        assert!(matches!(
            c.entries_open(ist("2025-11-24T15:15:00")),
            Err(EntriesClosed::AfterCutoff { .. })
        ));
        assert!(matches!(
            c.entries_open(ist("2025-11-22T10:00:00")),
            Err(EntriesClosed::NotATradingDay(_))
        ));
    }

    #[test]
    fn square_off_is_due_from_exactly_its_instant() {
        let c = clock();
        assert!(!c.is_past_square_off(ist("2025-11-24T15:19:59.999")));
        assert!(c.is_past_square_off(ist("2025-11-24T15:20:00")));
        assert!(!c.is_past_square_off(ist("2025-11-22T15:30:00")));
    }

    #[test]
    fn square_offs_between_skips_non_trading_days() {
        let c = clock();
        let got = c.square_offs_between(ist("2025-11-21T15:19:00"), ist("2025-11-24T15:20:00"));
        assert_eq!(got, vec![ist("2025-11-21T15:20:00"), ist("2025-11-24T15:20:00")]);
        assert!(
            c.square_offs_between(ist("2025-11-24T15:20:00"), ist("2025-11-24T16:00:00"))
                .is_empty()
        );
    }

    #[test]
    fn new_session_on_the_next_trading_day_only() {
        let c = clock();
        let fri = date(2025, 11, 21);
        assert_eq!(c.new_session(fri, ist("2025-11-21T23:59:59")), None);
        assert_eq!(c.new_session(fri, ist("2025-11-22T09:00:00")), None);
        assert_eq!(c.new_session(fri, ist("2025-11-24T00:00:00")), Some(date(2025, 11, 24)));
    }
}
