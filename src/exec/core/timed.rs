//! The exit core's timed rules: square-off, stale-feed exits and the start of a new session,
//! run when the clock reaches their instant (`on_clock`).

use crate::domain::{ExitReason, Mono, Timestamp};
use crate::risk::position::Position;
use crate::risk::trading_state::TradingCommand;

use super::{AlertLevel, CoreEvent, DayFigures, ExitCore, alert, fresh_at};

impl ExitCore {
    // ---- clock ----------------------------------------------------------------------------

    /// The timed rules whose instant has come, in time order: each day's square-off at
    /// `square_off_time` (exit time = that instant), stale-feed exits after
    /// `stale_exit_after_secs` without a fresh price (exit time = when it came due), then a new
    /// session (counters reset, halt lifted). A position still `Active` past its day's
    /// square-off (a rejected exit, a late adoption) exits at `now`. A rejected exit whose
    /// retry is due starts again (`exit_retry`).
    ///
    /// Runs on a virtual clock whose monotonic reading is its wall time (replay, tests); the
    /// engine calls [`ExitCore::on_clock_at`].
    pub fn on_clock(&mut self, now: Timestamp) -> Vec<CoreEvent> {
        self.on_clock_at(now, Mono::of_wall(now))
    }

    /// [`ExitCore::on_clock`] at wall time `now` and monotonic reading `mono`: square-offs and
    /// sessions follow the wall clock, stale-feed exits the monotonic one.
    pub fn on_clock_at(&mut self, now: Timestamp, mono: Mono) -> Vec<CoreEvent> {
        let mut events = Vec::new();
        let prev = self.clock;
        // Before the first reading (a restored core), the last step's reading from its wall age.
        let prev_mono =
            self.clock_mono.or(prev.map(|p| mono.plus_millis(-now.millis_since(p).max(0))));
        self.note_mono(now, mono);
        if self.day.session.is_none() {
            self.day.session = Some(self.session.session_of(now));
        }
        let stale_ms = self.risk.stale_exit_after_secs.saturating_mul(1_000);

        if let Some(prev) = prev.filter(|p| now > *p) {
            // Instants in (prev, now]: square-offs rank before stale exits at the same instant.
            let mut due: Vec<(Timestamp, u8, usize)> = self
                .session
                .square_offs_between(prev, now)
                .into_iter()
                .map(|t| (t, 0, usize::MAX))
                .collect();
            if let Some(prev_mono) = prev_mono.filter(|_| stale_ms > 0) {
                for (slot, p) in self.slots.iter().enumerate() {
                    let Some(p) = p.as_ref().filter(|p| p.is_active()) else { continue };
                    let Some(d) = self.stale_due(p, stale_ms) else { continue };
                    if d > prev_mono && d <= mono {
                        // When it came due, on the wall clock of this reading.
                        due.push((now.plus_millis(-mono.millis_since(d)), 1, slot));
                    }
                }
            }
            due.sort();
            for (t, kind, slot) in due {
                if kind == 0 {
                    self.square_off(t, |p| p.opened_at <= t, &mut events);
                } else {
                    self.stale_exit(slot, t, &mut events);
                }
            }
        }

        if self.session.is_past_square_off(now) {
            self.square_off(now, |_| true, &mut events);
        }
        if stale_ms > 0 {
            for slot in 0..self.slots.len() {
                let late = self.slots[slot]
                    .as_ref()
                    .is_some_and(|p| p.is_active() && self.silent_ms(p, now) >= stale_ms);
                if late {
                    self.stale_exit(slot, now, &mut events);
                }
            }
        }
        self.retry_due_exits(now, &mut events);
        self.roll_session(now, &mut events);
        self.clock = Some(prev.map_or(now, |p| p.max(now)));
        self.clock_mono = Some(prev_mono.map_or(mono, |p| p.max(mono)));
        events
    }

    pub(super) fn square_off(
        &mut self,
        at: Timestamp,
        include: impl Fn(&Position) -> bool,
        events: &mut Vec<CoreEvent>,
    ) {
        for slot in 0..self.slots.len() {
            if let Some(p) = self.slots[slot].as_ref().filter(|p| p.is_active() && include(p)) {
                let (price, stale) = (p.last_price, self.is_stale(p, at));
                self.start_exit(slot, ExitReason::SquareOff, price, at, stale, events);
            }
        }
    }

    fn stale_exit(&mut self, slot: usize, at: Timestamp, events: &mut Vec<CoreEvent>) {
        let Some(p) = self.slots[slot].as_ref().filter(|p| p.is_active()) else { return };
        let (price, id, since) = (p.last_price, p.id.clone(), fresh_at(p));
        if self.start_exit(slot, ExitReason::StaleFeed, price, at, true, events) {
            events.push(alert(
                AlertLevel::Warning,
                "stale_feed",
                format!(
                    "position {id}: no fresh price since {since}, exiting at last price {price}"
                ),
                at,
            ));
        }
    }

    /// Starts a new session when `at` falls on a later trading day than the current one.
    pub(super) fn roll_session(&mut self, at: Timestamp, events: &mut Vec<CoreEvent>) {
        let current = match self.day.session {
            Some(d) => d,
            None => {
                self.day.session = Some(self.session.session_of(at));
                return;
            }
        };
        let Some(new) = self.session.new_session(current, at) else { return };
        self.day = DayFigures { session: Some(new), ..DayFigures::default() };
        self.entry_attempts.clear();
        events.push(CoreEvent::SessionStarted { session: new, at });
        if let Ok(Some(change)) = self.trading.apply(TradingCommand::NewSession, at) {
            events.push(CoreEvent::TradingState(change));
        }
    }
}
