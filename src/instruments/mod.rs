//! The instrument master: what the exchange says about each instrument (lot size, tick size,
//! freeze quantity, the day's price band, expiry) and the symbol a person types.
//!
//! `parse` reads Dhan's detailed CSV (pure), `limits` holds the pure checks an order must pass,
//! `synthetic` builds a consistent master for the simulator's instruments, and `source` finds the
//! day's file (local file, download with a last-good copy). The table is built once, never
//! changed, and shared as `Arc`: the daily reload swaps in a new one ([`SharedInstruments`]),
//! readers take their own `Arc` off the hot path.

pub mod find;
pub mod limits;
pub mod parse;
pub mod source;
pub mod synthetic;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use chrono::{NaiveDate, NaiveTime};
use parking_lot::RwLock;

use crate::domain::{InstrumentKey, Paise, Qty};

pub use limits::LimitError;
pub use parse::{MasterError, TickUnit, parse_master};

/// Call or put.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum OptionKind {
    Call,
    Put,
}

impl OptionKind {
    pub const fn code(self) -> &'static str {
        match self {
            OptionKind::Call => "CE",
            OptionKind::Put => "PE",
        }
    }
}

/// One row of the master, as the engine uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instrument {
    pub key: InstrumentKey,
    /// `INSTRUMENT`: `OPTIDX`, `FUTSTK`, `EQUITY`, `INDEX`, ...
    pub kind: Box<str>,
    /// `UNDERLYING_SYMBOL` (`NIFTY`); empty when absent.
    pub underlying: Box<str>,
    /// `SYMBOL_NAME`, e.g. `NIFTY-Dec2026-24500-CE`.
    pub symbol: Box<str>,
    /// `DISPLAY_NAME`; empty when absent.
    pub display_name: Box<str>,
    /// Units per lot (≥ 1).
    pub lot: Qty,
    pub expiry: Option<NaiveDate>,
    /// The time on `SM_EXPIRY_DATE` when the file gives one.
    pub expiry_time: Option<NaiveTime>,
    pub strike: Option<Paise>,
    pub option: Option<OptionKind>,
    /// Minimum price step (≥ 1 paisa).
    pub tick: Paise,
    /// The day's band `(lower, upper)` when the file gives one.
    pub band: Option<(Paise, Paise)>,
    pub freeze: Option<Qty>,
}

/// What a load read, kept, and skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadCounts {
    /// Data rows read.
    pub rows: u64,
    /// Rows in the table.
    pub loaded: u64,
    /// Rows left out (with the first few reasons in `skip_reasons`).
    pub skipped: u64,
    /// Rows whose `SEG:ID` repeated an earlier row (the later one wins).
    pub duplicates: u64,
    pub skip_reasons: Vec<String>,
    pub tick_unit: Option<TickUnit>,
}

impl LoadCounts {
    fn skip(&mut self, reason: String) {
        self.skipped += 1;
        if self.skip_reasons.len() < 5 {
            self.skip_reasons.push(reason);
        }
    }
}

impl fmt::Display for LoadCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rows, {} loaded, {} skipped, {} duplicate ids",
            self.rows, self.loaded, self.skipped, self.duplicates
        )?;
        if let Some(unit) = self.tick_unit {
            write!(
                f,
                ", TICK_SIZE in {}",
                if unit == TickUnit::Rupees { "rupees" } else { "paise" }
            )?;
        }
        if !self.skip_reasons.is_empty() {
            write!(f, " (first skipped: {})", self.skip_reasons.join("; "))?;
        }
        Ok(())
    }
}

/// A symbol shared by several instruments (`RELIANCE` on NSE and BSE).
#[derive(Clone, Debug)]
enum SymbolSlot {
    One(u32),
    Many(Vec<u32>),
}

/// Why a symbol does not name exactly one instrument.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SymbolError {
    #[error("unknown symbol {0:?}")]
    Unknown(String),
    #[error("symbol {symbol:?} names several instruments ({}); give SEGMENT:SECURITY_ID",
        .keys.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    Ambiguous { symbol: String, keys: Vec<InstrumentKey> },
}

/// The immutable table: O(1) lookups by `SEG:ID` and by symbol.
#[derive(Debug, Default)]
pub struct Instruments {
    rows: Vec<Instrument>,
    by_key: HashMap<InstrumentKey, u32>,
    by_symbol: HashMap<Box<str>, SymbolSlot>,
    counts: LoadCounts,
}

impl Instruments {
    /// An empty table: no instrument is known, no exchange limit is applied.
    pub fn empty() -> Instruments {
        Instruments::default()
    }

    /// Builds the indexes. A repeated `SEG:ID` keeps the later row.
    pub fn build(rows: Vec<Instrument>, mut counts: LoadCounts) -> Instruments {
        let mut by_key: HashMap<InstrumentKey, u32> = HashMap::with_capacity(rows.len());
        let mut kept: Vec<Instrument> = Vec::with_capacity(rows.len());
        for inst in rows {
            match by_key.get(&inst.key) {
                Some(&i) => {
                    counts.duplicates += 1;
                    kept[i as usize] = inst;
                }
                None => {
                    by_key.insert(inst.key, kept.len() as u32);
                    kept.push(inst);
                }
            }
        }
        let mut by_symbol: HashMap<Box<str>, SymbolSlot> = HashMap::with_capacity(kept.len());
        for (i, inst) in kept.iter().enumerate() {
            let i = i as u32;
            match by_symbol.get_mut(&inst.symbol) {
                None => {
                    by_symbol.insert(inst.symbol.clone(), SymbolSlot::One(i));
                }
                Some(slot) => match slot {
                    SymbolSlot::One(first) => *slot = SymbolSlot::Many(vec![*first, i]),
                    SymbolSlot::Many(v) => v.push(i),
                },
            }
        }
        counts.loaded = kept.len() as u64;
        Instruments { rows: kept, by_key, by_symbol, counts }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn counts(&self) -> &LoadCounts {
        &self.counts
    }

    pub fn iter(&self) -> impl Iterator<Item = &Instrument> {
        self.rows.iter()
    }

    pub fn get(&self, key: InstrumentKey) -> Option<&Instrument> {
        self.by_key.get(&key).map(|&i| &self.rows[i as usize])
    }

    /// The one instrument with this `SYMBOL_NAME` (exact, case-insensitive as a fallback).
    pub fn by_symbol(&self, symbol: &str) -> Result<&Instrument, SymbolError> {
        let slot = match self.by_symbol.get(symbol.trim()) {
            Some(s) => s,
            None => self
                .by_symbol
                .get(symbol.trim().to_ascii_uppercase().as_str())
                .ok_or_else(|| SymbolError::Unknown(symbol.to_string()))?,
        };
        match slot {
            SymbolSlot::One(i) => Ok(&self.rows[*i as usize]),
            SymbolSlot::Many(v) => Err(SymbolError::Ambiguous {
                symbol: symbol.to_string(),
                keys: v.iter().map(|&i| self.rows[i as usize].key).collect(),
            }),
        }
    }

    /// The symbol of a key, or the key itself when the master does not know it.
    pub fn label(&self, key: InstrumentKey) -> String {
        match self.get(key) {
            Some(inst) => inst.symbol.to_string(),
            None => key.to_string(),
        }
    }
}

/// The current table, shared by every reader; the daily reload replaces it whole. Readers clone
/// the `Arc` (a short read lock) and keep it for as long as they need; a swap never waits for
/// them and never changes a table someone holds.
#[derive(Clone, Debug, Default)]
pub struct SharedInstruments {
    current: Arc<RwLock<Arc<Instruments>>>,
}

impl SharedInstruments {
    pub fn new(table: Instruments) -> SharedInstruments {
        SharedInstruments { current: Arc::new(RwLock::new(Arc::new(table))) }
    }

    /// The current table.
    pub fn load(&self) -> Arc<Instruments> {
        self.current.read().clone()
    }

    /// Replaces the table; readers holding the old one keep it until they drop it.
    pub fn store(&self, table: Instruments) {
        let new = Arc::new(table);
        let old = std::mem::replace(&mut *self.current.write(), new);
        // The old table is freed outside the lock (by the last holder).
        drop(old);
    }
}
