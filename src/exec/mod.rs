//! Execution: the exit core (`core`, the state machine the exit-engine worker and replay
//! drive), the pure paper broker (`paper`), and the workers around them: the order router
//! and its gateways (`router`, `paper_gateway`), the order book that owns every order's state
//! (`order_book`), the exit engine
//! (`exit_engine`, with its `outbox`), the PnL refresher, the heartbeat and demo entries.
//! `messages` holds what they send each other, `metrics` their metric handles.

pub mod core;
pub mod entries_demo;
pub mod exit_engine;
pub mod exit_retry;
pub mod heartbeat;
pub mod live;
pub mod messages;
pub mod metrics;
pub mod order_book;
pub mod outbox;
pub mod paper;
pub mod paper_gateway;
pub mod pnl_refresher;
pub mod positions;
pub mod router;
pub mod seams;
pub mod slicing;

pub use self::core::{
    AccountView, Alert, AlertLevel, ClosedTrade, CoreError, CoreEvent, CoreParams, CoreSnapshot,
    CoreState, DayFigures, ExitCore, NewPosition, PendingEntry, PositionChange, PositionEvent,
    PositionView, Pruned,
};
pub use paper::{PaperBroker, PaperExecution, PaperParams, PaperRefusal};
