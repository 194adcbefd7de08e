//! The engine-wide trading state (risk spec §4): `Active` (entries and exits), `Reducing`
//! (exits only), `Halted` (exits only, latched).
//!
//! `Halted` is entered by the daily loss limit, the kill switch, an operator's halt or the
//! supervisor's escalation and is left only by an operator's resume or a new IST trading day. Every change goes through
//! [`TradingStatus::apply`], which refuses impossible transitions and returns an audit record
//! ([`TradingStateChange`]). [`TradingCell`] shares one status between the exit core, the
//! supervisor's escalation, the halt on a lost instance lease and the feed's fatal hook; they all
//! change it through the same function. Workers that only read it (the heartbeat, the control API, the exit
//! engine's answers) get a [`TradingView`], which cannot change it.

use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::domain::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TradingState {
    Active,
    Reducing,
    Halted,
}

impl TradingState {
    pub const fn name(self) -> &'static str {
        match self {
            TradingState::Active => "active",
            TradingState::Reducing => "reducing",
            TradingState::Halted => "halted",
        }
    }

    pub const fn allows_entries(self) -> bool {
        matches!(self, TradingState::Active)
    }
}

impl fmt::Display for TradingState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who or what asks for a halt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HaltCause {
    DailyLossLimit,
    KillSwitch,
    /// The supervisor gave up on a component that exits depend on.
    Escalation,
    /// An operator stopped new entries (`/v1/halt`); open positions keep their exits.
    Operator,
}

/// A request to change the trading state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum TradingCommand {
    /// Stop new entries while something is degraded (`Active → Reducing`).
    Reduce { why: String },
    /// The degradation is over (`Reducing → Active`).
    Restore,
    /// `Active | Reducing → Halted`, latched.
    Halt { cause: HaltCause },
    /// An operator lifts a halt (`Halted → Active`).
    Resume,
    /// A new IST trading day began: a halt is lifted.
    NewSession,
}

impl TradingCommand {
    fn name(&self) -> &'static str {
        match self {
            TradingCommand::Reduce { .. } => "reduce",
            TradingCommand::Restore => "restore",
            TradingCommand::Halt { .. } => "halt",
            TradingCommand::Resume => "resume",
            TradingCommand::NewSession => "new session",
        }
    }
}

/// Why the state is what it is (the command that set it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ChangeReason {
    Start,
    Reduce { why: String },
    Restore,
    Halt { cause: HaltCause },
    Resume,
    NewSession,
}

impl fmt::Display for ChangeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeReason::Start => f.write_str("start"),
            ChangeReason::Reduce { why } => write!(f, "reduce: {why}"),
            ChangeReason::Restore => f.write_str("restore"),
            ChangeReason::Halt { cause } => match cause {
                HaltCause::DailyLossLimit => f.write_str("daily_loss_limit"),
                HaltCause::KillSwitch => f.write_str("kill_switch"),
                HaltCause::Escalation => f.write_str("escalation"),
                HaltCause::Operator => f.write_str("operator"),
            },
            ChangeReason::Resume => f.write_str("resume"),
            ChangeReason::NewSession => f.write_str("new_session"),
        }
    }
}

/// The audit record of one change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradingStateChange {
    pub prev: TradingState,
    pub current: TradingState,
    pub reason: ChangeReason,
    pub at: Timestamp,
}

/// The current state, why, and since when; what is persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradingStatus {
    pub state: TradingState,
    pub reason: ChangeReason,
    pub since: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TradingStateError {
    #[error("cannot {command} while trading is {state} ({reason}): {why}")]
    Refused { command: &'static str, state: TradingState, reason: String, why: &'static str },
}

impl TradingStatus {
    pub fn new(state: TradingState, at: Timestamp) -> TradingStatus {
        TradingStatus { state, reason: ChangeReason::Start, since: at }
    }

    /// Applies `command`: `Ok(Some(change))` when the state changed, `Ok(None)` when it already
    /// is what the command asks for (a second halt keeps the first cause), an error when the
    /// transition is impossible.
    pub fn apply(
        &mut self,
        command: TradingCommand,
        at: Timestamp,
    ) -> Result<Option<TradingStateChange>, TradingStateError> {
        use TradingState::{Active, Halted, Reducing};
        let refuse = |why: &'static str| TradingStateError::Refused {
            command: command.name(),
            state: self.state,
            reason: self.reason.to_string(),
            why,
        };
        let (next, reason) = match (self.state, &command) {
            (Active, TradingCommand::Reduce { why }) => {
                (Reducing, ChangeReason::Reduce { why: why.clone() })
            }
            (Reducing, TradingCommand::Reduce { .. }) => return Ok(None),
            (Halted, TradingCommand::Reduce { .. }) => {
                return Err(refuse("a halt is left only by resume or a new session"));
            }
            (Reducing, TradingCommand::Restore) => (Active, ChangeReason::Restore),
            (Active, TradingCommand::Restore) => return Ok(None),
            (Halted, TradingCommand::Restore) => {
                return Err(refuse("a halt is left only by resume or a new session"));
            }
            (Active | Reducing, TradingCommand::Halt { cause }) => {
                (Halted, ChangeReason::Halt { cause: *cause })
            }
            (Halted, TradingCommand::Halt { .. }) => return Ok(None),
            (Halted, TradingCommand::Resume) => (Active, ChangeReason::Resume),
            (Active, TradingCommand::Resume) => return Ok(None),
            (Reducing, TradingCommand::Resume) => {
                return Err(refuse("resume lifts a halt; reducing ends when its cause clears"));
            }
            (Halted, TradingCommand::NewSession) => (Active, ChangeReason::NewSession),
            (Active | Reducing, TradingCommand::NewSession) => return Ok(None),
        };
        let change =
            TradingStateChange { prev: self.state, current: next, reason: reason.clone(), at };
        *self = TradingStatus { state: next, reason, since: at };
        Ok(Some(change))
    }
}

/// The shared trading status: cheap to clone, safe to use from any thread.
#[derive(Debug, Clone)]
pub struct TradingCell(Arc<Mutex<TradingStatus>>);

impl TradingCell {
    pub fn new(status: TradingStatus) -> TradingCell {
        TradingCell(Arc::new(Mutex::new(status)))
    }

    /// A cell that starts `Active`.
    pub fn active(at: Timestamp) -> TradingCell {
        TradingCell::new(TradingStatus::new(TradingState::Active, at))
    }

    pub fn state(&self) -> TradingState {
        self.0.lock().state
    }

    pub fn status(&self) -> TradingStatus {
        self.0.lock().clone()
    }

    /// [`TradingStatus::apply`] under the lock, so concurrent callers see one order of changes.
    pub fn apply(
        &self,
        command: TradingCommand,
        at: Timestamp,
    ) -> Result<Option<TradingStateChange>, TradingStateError> {
        self.0.lock().apply(command, at)
    }

    /// Replaces the status wholesale: for restoring persisted state at startup only.
    pub fn restore(&self, status: TradingStatus) {
        *self.0.lock() = status;
    }

    /// A read-only view of this cell.
    pub fn view(&self) -> TradingView {
        TradingView(self.0.clone())
    }
}

/// Reads the shared trading status; cannot change it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TradingView(Arc<Mutex<TradingStatus>>);

impl TradingView {
    pub fn state(&self) -> TradingState {
        self.0.lock().state
    }

    pub fn status(&self) -> TradingStatus {
        self.0.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TradingState::{Active, Halted, Reducing};

    fn halt(cause: HaltCause) -> TradingCommand {
        TradingCommand::Halt { cause }
    }

    fn reduce() -> TradingCommand {
        TradingCommand::Reduce { why: "broker circuit open".into() }
    }

    /// (from, command, Some(to) = changed | None = unchanged | Err)
    #[test]
    fn transition_table() {
        #[derive(Debug)]
        enum Want {
            To(TradingState),
            Same,
            Refused,
        }
        use Want::{Refused, Same, To};
        let cases = [
            (Active, reduce(), To(Reducing)),
            (Active, TradingCommand::Restore, Same),
            (Active, halt(HaltCause::DailyLossLimit), To(Halted)),
            (Active, halt(HaltCause::KillSwitch), To(Halted)),
            (Active, halt(HaltCause::Escalation), To(Halted)),
            (Active, halt(HaltCause::Operator), To(Halted)),
            (Active, TradingCommand::Resume, Same),
            (Active, TradingCommand::NewSession, Same),
            (Reducing, reduce(), Same),
            (Reducing, TradingCommand::Restore, To(Active)),
            (Reducing, halt(HaltCause::KillSwitch), To(Halted)),
            (Reducing, TradingCommand::Resume, Refused),
            (Reducing, TradingCommand::NewSession, Same),
            (Halted, reduce(), Refused),
            (Halted, TradingCommand::Restore, Refused),
            (Halted, halt(HaltCause::KillSwitch), Same),
            (Halted, TradingCommand::Resume, To(Active)),
            (Halted, TradingCommand::NewSession, To(Active)),
        ];
        for (from, command, want) in cases {
            let mut s = TradingStatus::new(from, Timestamp(0));
            let before = s.clone();
            let got = s.apply(command.clone(), Timestamp(5));
            match (&want, got) {
                (To(to), Ok(Some(change))) => {
                    assert_eq!((change.prev, change.current, change.at), (from, *to, Timestamp(5)));
                    assert_eq!((s.state, s.since), (*to, Timestamp(5)), "{from} {command:?}");
                }
                (Same, Ok(None)) | (Refused, Err(_)) => assert_eq!(s, before, "{from} {command:?}"),
                (want, got) => panic!("{from} {command:?}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn halt_is_latched_and_keeps_its_first_cause() {
        let cell = TradingCell::active(Timestamp(0));
        cell.apply(halt(HaltCause::DailyLossLimit), Timestamp(1)).unwrap();
        assert_eq!(cell.apply(halt(HaltCause::KillSwitch), Timestamp(2)), Ok(None));
        assert!(cell.apply(TradingCommand::Restore, Timestamp(3)).is_err());
        let st = cell.status();
        assert_eq!(st.reason, ChangeReason::Halt { cause: HaltCause::DailyLossLimit });
        assert_eq!(st.since, Timestamp(1));
    }

    #[test]
    fn refusal_says_what_and_why() {
        let mut s = TradingStatus::new(Halted, Timestamp(0));
        let err = s.apply(reduce(), Timestamp(1)).unwrap_err().to_string();
        assert!(err.contains("cannot reduce while trading is halted"), "{err}");
    }

    #[test]
    fn cell_is_shared_between_clones_and_threads() {
        let cell = TradingCell::active(Timestamp(0));
        let other = cell.clone();
        std::thread::spawn(move || other.apply(halt(HaltCause::Escalation), Timestamp(9)).unwrap())
            .join()
            .unwrap();
        assert_eq!(cell.state(), Halted);
    }

    #[test]
    fn a_view_sees_every_change_of_its_cell() {
        let cell = TradingCell::active(Timestamp(0));
        let view = cell.view();
        assert_eq!(view.state(), Active);
        cell.apply(halt(HaltCause::Operator), Timestamp(4)).unwrap();
        assert_eq!((view.state(), view.status()), (Halted, cell.status()));
    }
}
