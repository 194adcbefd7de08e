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
pub use parse::{MasterError, TickUnit, parse_master, parse_master_sized};

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
    pub kind: Arc<str>,
    /// `UNDERLYING_SYMBOL` (`NIFTY`); empty when absent.
    pub underlying: Arc<str>,
    /// `SYMBOL_NAME`, e.g. `NIFTY-Dec2026-24500-CE`.
    pub symbol: Arc<str>,
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
    pub(crate) fn skip(&mut self, reason: String) {
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

/// Why a symbol does not name exactly one instrument.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SymbolError {
    #[error("unknown symbol {0:?}")]
    Unknown(String),
    #[error("symbol {symbol:?} names several instruments ({}); give SEGMENT:SECURITY_ID",
        .keys.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    Ambiguous { symbol: String, keys: Vec<InstrumentKey> },
}

/// The `by_symbol` mark of a symbol shared by several rows (`RELIANCE` on NSE and BSE).
const MANY: u32 = u32::MAX;

/// The immutable table: O(1) lookups by `SEG:ID` and by symbol.
#[derive(Debug, Default)]
pub struct Instruments {
    rows: Vec<Instrument>,
    by_key: HashMap<InstrumentKey, u32>,
    /// Symbol → row; a symbol on several rows maps to [`MANY`] and its rows are in `shared`.
    by_symbol: HashMap<Arc<str>, u32>,
    shared: HashMap<Arc<str>, Vec<u32>>,
    counts: LoadCounts,
}

impl Instruments {
    /// An empty table: no instrument is known, no exchange limit is applied.
    pub fn empty() -> Instruments {
        Instruments::default()
    }

    /// Builds the indexes in place. A repeated `SEG:ID` keeps the later row.
    pub fn build(mut rows: Vec<Instrument>, mut counts: LoadCounts) -> Instruments {
        let mut by_key: HashMap<InstrumentKey, u32> = HashMap::with_capacity(rows.len());
        for (i, inst) in rows.iter().enumerate() {
            if by_key.insert(inst.key, i as u32).is_some() {
                counts.duplicates += 1;
            }
        }
        if counts.duplicates > 0 {
            let mut i = 0u32;
            rows.retain(|inst| {
                let keep = by_key.get(&inst.key) == Some(&i);
                i += 1;
                keep
            });
            by_key.clear();
            for (i, inst) in rows.iter().enumerate() {
                by_key.insert(inst.key, i as u32);
            }
        }
        let mut by_symbol: HashMap<Arc<str>, u32> = HashMap::with_capacity(rows.len());
        let mut shared: HashMap<Arc<str>, Vec<u32>> = HashMap::new();
        for (i, inst) in rows.iter().enumerate() {
            let i = i as u32;
            match by_symbol.get_mut(&inst.symbol) {
                None => {
                    by_symbol.insert(inst.symbol.clone(), i);
                }
                Some(slot) if *slot == MANY => {
                    shared.entry(inst.symbol.clone()).or_default().push(i);
                }
                Some(slot) => {
                    shared.insert(inst.symbol.clone(), vec![*slot, i]);
                    *slot = MANY;
                }
            }
        }
        shared.shrink_to_fit();
        counts.loaded = rows.len() as u64;
        Instruments { rows, by_key, by_symbol, shared, counts }
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

    /// The one instrument with this `SYMBOL_NAME`: exact, or upper-cased (`reliance` finds an
    /// upper-case `RELIANCE`; mixed-case symbols must be typed as written).
    pub fn by_symbol(&self, symbol: &str) -> Result<&Instrument, SymbolError> {
        let exact = symbol.trim();
        let (name, slot) = match self.by_symbol.get_key_value(exact) {
            Some((k, v)) => (k, *v),
            None => self
                .by_symbol
                .get_key_value(exact.to_ascii_uppercase().as_str())
                .map(|(k, v)| (k, *v))
                .ok_or_else(|| SymbolError::Unknown(symbol.to_string()))?,
        };
        if slot != MANY {
            return Ok(&self.rows[slot as usize]);
        }
        let keys = self
            .shared
            .get(name)
            .map(|v| v.iter().map(|&i| self.rows[i as usize].key).collect())
            .unwrap_or_default();
        Err(SymbolError::Ambiguous { symbol: symbol.to_string(), keys })
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
