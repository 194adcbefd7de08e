//! `scalper replay`: the exit core, the paper broker and the PnL code driven single-threaded on a
//! virtual clock by recorded ticks (risk spec §7). Same input, byte-identical output.
//!
//! For each row of `ticks.csv`, in file order, with the clock at the row's `ts`:
//! 1. positions of `positions.csv` whose `opened_at` ≤ `ts` are opened (adopted as given: no
//!    trade-count, open-position, cooldown or wallet checks), unless `opened_at` is at or after
//!    its day's square-off or after a halt of that day: those are listed under `not_opened`;
//! 2. the timed rules whose instant has come (`ExitCore::on_clock`): square-off exits carry the
//!    square-off instant as their time, stale-feed exits the instant they came due;
//! 3. the per-tick rules of the positions on the row's instrument, then the account rules
//!    (`ExitCore::on_tick`);
//! 4. every exit intent is filled at once by the paper broker (at the trigger price, or the last
//!    price for timed and account exits, moved by the configured slippage) with the intent's
//!    time, and the account rules run again with the realised net PnL of those fills.
//!
//! Positions opened after the last tick are opened (or not) by the same test and stay open.
//! All input is read and checked before anything runs; a bad row in either file is an error
//! naming the file and line, and nothing is written.
//!
//! `exits.csv`: `position_id,exit_time,reason,exit_price,quantity,gross_pnl,charges,net_pnl`,
//! ordered by `exit_time` then `position_id`; `charges` is both legs; rupees with two decimals.
//!
//! `summary.json` (keys always in this order; rupee amounts are strings with exactly two
//! decimals, times ISO-8601 `+05:30` with milliseconds):
//!
//! ```text
//! {
//!   "ticks": 42,                  // rows of ticks.csv processed
//!   "positions": 3,               // rows of positions.csv
//!   "exits": 2,                   // rows of exits.csv
//!   "totals": { "gross_pnl": "1500.00", "charges": "63.28", "net_pnl": "1436.72" },
//!   "exits_by_reason": { "daily_loss_limit": 0, "kill_switch": 0, "peak_drawdown": 0,
//!                        "ratchet_stop": 0, "square_off": 0, "stale_feed": 0,
//!                        "stop_loss": 1, "take_profit": 1, "trailing_stop": 0 },
//!   "open_positions": [           // still open after the last row, by position id
//!     { "position_id": "p3", "segment": "NSE_FNO", "security_id": 52177, "side": "LONG",
//!       "quantity": 75, "entry_price": "100.00", "last_price": "101.50",
//!       "last_tick_at": "2025-11-24T10:05:00.000+05:30",   // null if it saw no tick
//!       "unrealised_pnl": "112.50" }                         // gross, at the last price
//!   ],
//!   "unrealised_pnl": "112.50",   // sum over open_positions
//!   "not_opened": [               // in opened_at order
//!     { "position_id": "p4", "opened_at": "2025-11-24T10:20:00.000+05:30",
//!       "reason": "after_halt",   // or "at_or_after_square_off"
//!       "detail": "trading halted at 2025-11-24T10:10:00.000+05:30 (daily_loss_limit)" }
//!   ],
//!   "trading": { "state": "halted", "reason": "daily_loss_limit",
//!                "since": "2025-11-24T10:10:00.000+05:30" }
//! }
//! ```
//!
//! The CLI maps bad input (unreadable or malformed files) to exit code 2 and failures to write
//! the output to exit code 1.

mod input;
mod output;

use std::collections::BTreeMap;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};

use crate::domain::{ExitReason, Paise, Timestamp};
use crate::exec::{ClosedTrade, CoreEvent, CoreParams, ExitCore, PaperBroker, PaperParams};
use crate::risk::position::Origin;
use crate::risk::{TradingCell, TradingState};

pub use input::{
    PositionRow, TickRow, positions_from_reader, read_positions, read_ticks, ticks_from_reader,
};
pub use output::{EXITS_FILE, SUMMARY_FILE};

/// What replay runs with: the exit core's parameters and the paper broker's, and the
/// instrument master (`instruments.master_file`) when there is one: an exit above an
/// instrument's freeze quantity is then charged per child order, as the engine charges it.
#[derive(Debug, Clone, Default)]
pub struct ReplayParams {
    pub core: CoreParams,
    pub paper: PaperParams,
    pub instruments: Option<crate::instruments::SharedInstruments>,
}

/// Equal parameters: the same core and paper settings, and the same master table (the same
/// one, not an equal copy) or none on both sides.
impl PartialEq for ReplayParams {
    fn eq(&self, other: &ReplayParams) -> bool {
        let same_master = match (&self.instruments, &other.instruments) {
            (None, None) => true,
            (Some(a), Some(b)) => std::sync::Arc::ptr_eq(&a.load(), &b.load()),
            _ => false,
        };
        self.core == other.core && self.paper == other.paper && same_master
    }
}

impl Eq for ReplayParams {}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read {}: {source}", file.display())]
    Open { file: PathBuf, source: std::io::Error },
    #[error("{}: line {line}: {message}", file.display())]
    Row { file: PathBuf, line: u64, message: String },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("replay stopped at {} line {line}: {message}", file.display())]
    Engine { file: PathBuf, line: u64, message: String },
}

impl ReplayError {
    /// Whether the input files are at fault (rather than the output or the engine).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, ReplayError::Open { .. } | ReplayError::Row { .. })
    }
}

/// The content of `summary.json` (see the module doc), plus the closed trades.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplaySummary {
    pub ticks: u64,
    pub positions: u64,
    pub exits: u64,
    pub totals: Totals,
    pub exits_by_reason: BTreeMap<String, u64>,
    pub open_positions: Vec<OpenPosition>,
    #[serde(serialize_with = "rupees")]
    pub unrealised_pnl: Paise,
    pub not_opened: Vec<NotOpened>,
    pub trading: TradingSummary,
    /// The rows of `exits.csv`, in file order.
    #[serde(skip)]
    pub trades: Vec<ClosedTrade>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Totals {
    #[serde(serialize_with = "rupees")]
    pub gross_pnl: Paise,
    #[serde(serialize_with = "rupees")]
    pub charges: Paise,
    #[serde(serialize_with = "rupees")]
    pub net_pnl: Paise,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenPosition {
    pub position_id: String,
    pub segment: String,
    pub security_id: u32,
    pub side: String,
    pub quantity: i64,
    #[serde(serialize_with = "rupees")]
    pub entry_price: Paise,
    #[serde(serialize_with = "rupees")]
    pub last_price: Paise,
    pub last_tick_at: Option<String>,
    #[serde(serialize_with = "rupees")]
    pub unrealised_pnl: Paise,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotOpened {
    pub position_id: String,
    pub opened_at: String,
    /// `after_halt` or `at_or_after_square_off`.
    pub reason: String,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TradingSummary {
    pub state: String,
    pub reason: String,
    pub since: String,
}

fn rupees<S: Serializer>(p: &Paise, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(p)
}

/// Runs a replay and writes `exits.csv` and `summary.json` into `out_dir`.
pub fn run(
    params: &ReplayParams,
    ticks_path: &Path,
    positions_path: &Path,
    out_dir: &Path,
) -> Result<ReplaySummary, ReplayError> {
    let positions = read_positions(positions_path)?;
    let ticks = read_ticks(ticks_path)?;
    let summary = simulate(params, &positions, &ticks, ticks_path)?;
    output::write_all(
        out_dir,
        &output::exits_csv(&summary.trades),
        &output::summary_json(&summary),
    )?;
    Ok(summary)
}

/// The replay itself, on rows already read: no file is touched.
pub fn simulate(
    params: &ReplayParams,
    positions: &[PositionRow],
    ticks: &[TickRow],
    ticks_path: &Path,
) -> Result<ReplaySummary, ReplayError> {
    let start = ticks.first().map_or(Timestamp(0), |r| r.tick.received_at);
    let mut core = ExitCore::new(params.core.clone(), TradingCell::active(start));
    if let Some(m) = &params.instruments {
        core.set_instruments(m.clone());
    }
    let mut run = Run {
        master: params.instruments.clone(),
        core,
        broker: PaperBroker::new(params.paper.clone(), params.core.charges.clone()),
        trades: Vec::new(),
        halts: Vec::new(),
        not_opened: Vec::new(),
        file: ticks_path.to_path_buf(),
        line: 0,
    };
    let mut queue: Vec<&PositionRow> = positions.iter().collect();
    queue.sort_by_key(|r| r.position.opened_at); // stable: file order among equal times
    let mut queue: VecDeque<&PositionRow> = queue.into();

    for row in ticks {
        let now = row.tick.received_at;
        run.line = row.line;
        while let Some(p) = queue.front().filter(|p| p.position.opened_at <= now) {
            run.open(p)?;
            queue.pop_front();
        }
        let events = run.core.on_clock(now);
        run.settle(events)?;
        let events = run.core.on_tick(&row.tick);
        run.settle(events)?;
        let events = run.core.check_account(now);
        run.settle(events)?;
    }
    for p in queue {
        run.open(p)?;
    }
    Ok(run.summary(ticks.len() as u64, positions.len() as u64))
}

struct Run {
    /// How many child orders an exit goes out as (`ReplayParams::instruments`).
    master: Option<crate::instruments::SharedInstruments>,
    core: ExitCore,
    broker: PaperBroker,
    trades: Vec<ClosedTrade>,
    /// Instants at which trading became halted.
    halts: Vec<(Timestamp, String)>,
    not_opened: Vec<NotOpened>,
    file: PathBuf,
    line: u64,
}

impl Run {
    fn engine_error(&self, message: String) -> ReplayError {
        ReplayError::Engine { file: self.file.clone(), line: self.line, message }
    }

    fn open(&mut self, row: &PositionRow) -> Result<(), ReplayError> {
        let p = &row.position;
        let at = p.opened_at;
        let skip = |reason: &str, detail: String| NotOpened {
            position_id: p.id.to_string(),
            opened_at: at.to_ist_iso(),
            reason: reason.to_string(),
            detail,
        };
        if self.core.session_clock().is_past_square_off(at) {
            let date = at.ist_date();
            let square_off = self.core.session_clock().square_off_at(date);
            self.not_opened.push(skip(
                "at_or_after_square_off",
                format!("square-off of {date} is at {}", square_off.to_ist_iso()),
            ));
            return Ok(());
        }
        let date = at.ist_date();
        if let Some((h, why)) = self.halts.iter().find(|(h, _)| h.ist_date() == date && *h <= at) {
            self.not_opened
                .push(skip("after_halt", format!("trading halted at {} ({why})", h.to_ist_iso())));
            return Ok(());
        }
        self.core
            .open_position(p.clone(), Origin::Adopted)
            .map_err(|e| self.engine_error(format!("positions.csv line {}: {e}", row.line)))?;
        Ok(())
    }

    /// Fills every exit intent at once and follows the consequences.
    fn settle(&mut self, events: Vec<CoreEvent>) -> Result<(), ReplayError> {
        let mut queue: VecDeque<CoreEvent> = events.into();
        while let Some(event) = queue.pop_front() {
            match event {
                CoreEvent::ExitIntent(intent) => {
                    let orders = self.master.as_ref().map_or(1, |m| {
                        crate::exec::slicing::leg_orders(
                            &m.load(),
                            intent.instrument,
                            intent.quantity,
                        )
                    });
                    let exec = self
                        .broker
                        .execute_leg(&intent, intent.created_at, None, orders)
                        .map_err(|e| self.engine_error(e.to_string()))?;
                    let f = &exec.fill;
                    let more = self
                        .core
                        .on_exit_filled(&f.correlation_id, f.price, f.quantity, f.at)
                        .map_err(|e| self.engine_error(e.to_string()))?;
                    queue.extend(more);
                }
                CoreEvent::TradeClosed(trade) => self.trades.push(*trade),
                CoreEvent::TradingState(change) if change.current == TradingState::Halted => {
                    self.halts.push((change.at, change.reason.to_string()));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn summary(self, ticks: u64, positions: u64) -> ReplaySummary {
        let mut trades = self.trades;
        trades.sort_by(|a, b| (a.exited_at, &a.position_id).cmp(&(b.exited_at, &b.position_id)));
        let totals = Totals {
            gross_pnl: trades.iter().map(|t| t.gross).sum(),
            charges: trades.iter().map(ClosedTrade::charges).sum(),
            net_pnl: trades.iter().map(|t| t.net).sum(),
        };
        let mut exits_by_reason: BTreeMap<String, u64> =
            ExitReason::ALL.iter().map(|r| (r.code().to_string(), 0)).collect();
        for t in &trades {
            *exits_by_reason.entry(t.reason.code().to_string()).or_default() += 1;
        }
        let mut open: Vec<OpenPosition> = self
            .core
            .positions()
            .map(|p| OpenPosition {
                position_id: p.id.to_string(),
                segment: p.instrument.segment.name().to_string(),
                security_id: p.instrument.security_id.0,
                side: p.side.name().to_string(),
                quantity: p.open_quantity().0,
                entry_price: p.entry_price,
                last_price: p.last_price,
                last_tick_at: p.last_price_at.map(Timestamp::to_ist_iso),
                unrealised_pnl: p.unrealised(),
            })
            .collect();
        open.sort_by(|a, b| a.position_id.cmp(&b.position_id));
        let status = self.core.trading().status();
        ReplaySummary {
            ticks,
            positions,
            exits: trades.len() as u64,
            totals,
            exits_by_reason,
            unrealised_pnl: open.iter().map(|p| p.unrealised_pnl).sum(),
            open_positions: open,
            not_opened: self.not_opened,
            trading: TradingSummary {
                state: status.state.name().to_string(),
                reason: status.reason.to_string(),
                since: status.since.to_ist_iso(),
            },
            trades,
        }
    }
}

/// The `replay` command: runs with `params`, prints a one-line outcome, returns the exit code
/// (0 ok, 2 bad input, 1 failure to write or run).
pub fn command(params: &ReplayParams, ticks: &Path, positions: &Path, out: &Path) -> u8 {
    match run(params, ticks, positions, out) {
        Ok(s) => {
            println!(
                "replay: {} ticks, {} positions, {} exits, net {} ({} still open, {} not opened); wrote {} and {}",
                s.ticks,
                s.positions,
                s.exits,
                s.totals.net_pnl,
                s.open_positions.len(),
                s.not_opened.len(),
                out.join(EXITS_FILE).display(),
                out.join(SUMMARY_FILE).display(),
            );
            crate::cli::EXIT_OK
        }
        Err(e) => {
            eprintln!("scalper replay: {e}");
            if e.is_bad_input() { crate::cli::EXIT_USAGE } else { crate::cli::EXIT_FAILURE }
        }
    }
}
