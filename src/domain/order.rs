//! What travels between the exit engine, the order router and a broker: order intents, exit
//! reasons and fills.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{CorrelationId, InstrumentKey, OrderId, Paise, PositionId, Qty, Side, Timestamp};

/// Buy or sell, as the broker spells it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Txn {
    Buy,
    Sell,
}

impl Txn {
    pub const fn name(self) -> &'static str {
        match self {
            Txn::Buy => "BUY",
            Txn::Sell => "SELL",
        }
    }

    /// The transaction that opens a position on `side`.
    pub const fn opening(side: Side) -> Txn {
        match side {
            Side::Long => Txn::Buy,
            Side::Short => Txn::Sell,
        }
    }

    /// The transaction that closes a position on `side`.
    pub const fn closing(side: Side) -> Txn {
        match side {
            Side::Long => Txn::Sell,
            Side::Short => Txn::Buy,
        }
    }
}

impl fmt::Display for Txn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a position exits: the reason codes of the risk spec (§3, §4, §5).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    StopLoss,
    RatchetStop,
    TakeProfit,
    TrailingStop,
    PeakDrawdown,
    SquareOff,
    DailyLossLimit,
    KillSwitch,
    StaleFeed,
    /// Not an exit the engine placed: reconciliation found the position flat at the broker
    /// (closed from another platform) and closed it locally.
    ClosedAtBroker,
}

impl ExitReason {
    pub const ALL: [ExitReason; 10] = [
        ExitReason::StopLoss,
        ExitReason::RatchetStop,
        ExitReason::TakeProfit,
        ExitReason::TrailingStop,
        ExitReason::PeakDrawdown,
        ExitReason::SquareOff,
        ExitReason::DailyLossLimit,
        ExitReason::KillSwitch,
        ExitReason::StaleFeed,
        ExitReason::ClosedAtBroker,
    ];

    /// The reason code as written in `exits.csv`, logs and metrics.
    pub const fn code(self) -> &'static str {
        match self {
            ExitReason::StopLoss => "stop_loss",
            ExitReason::RatchetStop => "ratchet_stop",
            ExitReason::TakeProfit => "take_profit",
            ExitReason::TrailingStop => "trailing_stop",
            ExitReason::PeakDrawdown => "peak_drawdown",
            ExitReason::SquareOff => "square_off",
            ExitReason::DailyLossLimit => "daily_loss_limit",
            ExitReason::KillSwitch => "kill_switch",
            ExitReason::StaleFeed => "stale_feed",
            ExitReason::ClosedAtBroker => "closed_at_broker",
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for ExitReason {
    type Err = String;
    fn from_str(s: &str) -> Result<ExitReason, String> {
        ExitReason::ALL
            .into_iter()
            .find(|r| r.code() == s)
            .ok_or_else(|| format!("{s:?} is not an exit reason"))
    }
}

/// Whether an order opens or closes a position. Exits go first everywhere: queues, rate budget.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "reason")]
pub enum OrderPurpose {
    Entry,
    Exit(ExitReason),
}

impl OrderPurpose {
    pub const fn is_exit(self) -> bool {
        matches!(self, OrderPurpose::Exit(_))
    }
}

/// An order the engine wants placed: MARKET, or LIMIT at `limit_price` (entries only, as
/// asked through `POST /v1/orders`). The correlation id is decided before the order leaves the
/// engine and is how every later answer is matched to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderIntent {
    pub correlation_id: CorrelationId,
    pub position_id: PositionId,
    pub instrument: InstrumentKey,
    pub txn: Txn,
    pub quantity: Qty,
    pub purpose: OrderPurpose,
    /// The price that motivated the order (trigger price for an exit, last price for an entry);
    /// the paper broker fills at it.
    pub reference_price: Paise,
    /// Whether `reference_price` is stale (no tick within `stale_after_ms`).
    pub price_is_stale: bool,
    pub created_at: Timestamp,
    /// A LIMIT order's price, already on the instrument's tick and inside its day band
    /// (`instruments::limits::limit_price`); `None`: a MARKET order. Exits are always MARKET.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_price: Option<Paise>,
}

/// One execution reported by a broker (paper or Dhan). `trade_id` is unique per broker and is
/// how duplicates are dropped. A fill may stand for several trades of one order at different
/// prices (the part of an order that traded between two reports, or an entry's total): `price`
/// is then their average rounded to the paisa, for display and the rules, and `value` their
/// exact Σ price × quantity, for PnL and charges.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    pub correlation_id: CorrelationId,
    pub order_id: OrderId,
    pub trade_id: String,
    pub instrument: InstrumentKey,
    pub txn: Txn,
    pub quantity: Qty,
    pub price: Paise,
    /// Σ price × quantity of the trades this fill stands for (paise). Zero when unknown (a
    /// fill written before values were recorded): [`Fill::value`] then derives it.
    #[serde(default)]
    pub value: Paise,
    pub at: Timestamp,
}

impl Fill {
    /// The exact value of the fill: `value`, or `price × quantity` when it was not recorded.
    pub fn value(&self) -> Paise {
        if self.value == Paise::ZERO { self.price * self.quantity } else { self.value }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_reason_codes_round_trip() {
        for r in ExitReason::ALL {
            assert_eq!(r.code().parse::<ExitReason>(), Ok(r));
        }
    }

    #[test]
    fn closing_txn_is_the_opposite_of_opening() {
        assert_eq!(Txn::opening(Side::Long), Txn::Buy);
        assert_eq!(Txn::closing(Side::Long), Txn::Sell);
        assert_eq!(Txn::opening(Side::Short), Txn::Sell);
        assert_eq!(Txn::closing(Side::Short), Txn::Buy);
    }
}
