//! Domain vocabulary shared by every part of the engine: money, instruments, time, ids and the
//! messages that travel between workers. Pure types, no I/O.

pub mod ids;
pub mod instrument;
pub mod money;
pub mod order;
pub mod secret;
pub mod tick;
pub mod time;

pub use ids::{CorrelationId, CorrelationIdError, OrderId, PositionId};
pub use instrument::{InstrumentKey, ParseInstrumentError, SecurityId, Segment, Side};
pub use money::{Bp, MoneyError, Paise, Qty};
pub use order::{ExitReason, Fill, OrderIntent, OrderPurpose, Txn};
pub use secret::Secret;
pub use tick::{Tick, TickSource};
pub use time::{Clock, IST_OFFSET_SECS, ManualClock, Mono, SystemClock, TimeOfDay, Timestamp};
