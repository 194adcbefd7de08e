//! Execution: the exit core (`core`, the state machine the exit-engine worker and replay
//! drive) and the pure paper broker (`paper`). The worker, the order router and entries wrap
//! these with threads and channels.

pub mod core;
pub mod paper;

pub use self::core::{
    AccountView, Alert, AlertLevel, ClosedTrade, CoreError, CoreEvent, CoreParams, CoreSnapshot,
    CoreState, DayFigures, ExitCore, NewPosition, PendingEntry, PositionChange, PositionEvent,
    PositionView,
};
pub use paper::{PaperBroker, PaperExecution, PaperParams, PaperRefusal};
