//! Parsing Dhan's detailed instrument master (spec dhan-v2 §8.1): columns found by header name,
//! trailing columns optional, every price parsed exactly from its decimal text.
//!
//! Pure: bytes in, an [`Instruments`] table (or the reason the file is refused) out.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Arc;

use chrono::{NaiveDate, NaiveTime};

use super::{Instrument, Instruments, LoadCounts, OptionKind};
use crate::domain::money::parse_scaled;
use crate::domain::{InstrumentKey, Paise, Qty, SecurityId, Segment};

/// Columns without which a row cannot be used; all are among the first 17 of §8.1.
pub const REQUIRED_COLUMNS: [&str; 8] = [
    "EXCH_ID",
    "SEGMENT",
    "SECURITY_ID",
    "INSTRUMENT",
    "SYMBOL_NAME",
    "LOT_SIZE",
    "SM_EXPIRY_DATE",
    "TICK_SIZE",
];

/// Why a whole file is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MasterError {
    #[error("instrument master: required column {0} is missing from the header")]
    MissingColumn(&'static str),
    #[error("instrument master: the TICK_SIZE unit cannot be told: {0}")]
    TickUnitUndecidable(String),
    #[error("instrument master: unreadable CSV: {0}")]
    Csv(String),
    #[error("instrument master: no usable row ({skipped} skipped)")]
    Empty { skipped: u64 },
}

/// The unit of the file's `TICK_SIZE` column (copies differ, §8.1).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TickUnit {
    Rupees,
    Paise,
}

/// Column positions, found by header name.
struct Columns {
    exch: usize,
    segment: usize,
    security_id: usize,
    instrument: usize,
    symbol: usize,
    lot: usize,
    expiry: usize,
    tick: usize,
    underlying: Option<usize>,
    display: Option<usize>,
    strike: Option<usize>,
    option_type: Option<usize>,
    upper: Option<usize>,
    lower: Option<usize>,
    freeze: Option<usize>,
}

impl Columns {
    fn from_header(header: &csv::StringRecord) -> Result<Columns, MasterError> {
        let pos: HashMap<&str, usize> =
            header.iter().enumerate().map(|(i, name)| (name.trim(), i)).collect();
        let req =
            |name: &'static str| pos.get(name).copied().ok_or(MasterError::MissingColumn(name));
        let opt = |name: &str| pos.get(name).copied();
        Ok(Columns {
            exch: req("EXCH_ID")?,
            segment: req("SEGMENT")?,
            security_id: req("SECURITY_ID")?,
            instrument: req("INSTRUMENT")?,
            symbol: req("SYMBOL_NAME")?,
            lot: req("LOT_SIZE")?,
            expiry: req("SM_EXPIRY_DATE")?,
            tick: req("TICK_SIZE")?,
            underlying: opt("UNDERLYING_SYMBOL"),
            display: opt("DISPLAY_NAME"),
            strike: opt("STRIKE_PRICE"),
            option_type: opt("OPTION_TYPE"),
            upper: opt("SM_UPPER_LIMIT"),
            lower: opt("SM_LOWER_LIMIT"),
            freeze: opt("SM_FREEZE_QTY"),
        })
    }
}

/// The field at `i`, trimmed; a row shorter than the header reads as empty.
fn field(rec: &csv::StringRecord, i: usize) -> &str {
    rec.get(i).map(str::trim).unwrap_or("")
}

fn opt_field(rec: &csv::StringRecord, i: Option<usize>) -> &str {
    i.map(|i| field(rec, i)).unwrap_or("")
}

/// `EXCH_ID` + `SEGMENT` → the exchange-segment enum (§8.1).
pub fn segment_of(exch: &str, seg: &str) -> Option<Segment> {
    match (exch, seg) {
        (_, "I") => Some(Segment::IdxI),
        (exch, seg) => Segment::from_exchange_letters(exch, seg),
    }
}

/// The tick unit of a file, from its `TICK_SIZE` values scaled by 10^4. NSE index options step
/// ₹0.05 (§8.1): when the file has any, their tick decides (`0.05` rupees, `5` paise; anything
/// else refuses the file). Without one, a file whose every tick (currency aside) is below 1 is in
/// rupees (no paise tick is that small); otherwise the unit cannot be told.
fn decide_tick_unit(anchor_ticks: &[i64], max_tick_scaled: i64) -> Result<TickUnit, MasterError> {
    if let Some(&first) = anchor_ticks.first() {
        let unit_of = |t: i64| match t {
            500 => Some(TickUnit::Rupees),
            50_000 => Some(TickUnit::Paise),
            _ => None,
        };
        let unit = unit_of(first).ok_or_else(|| {
            MasterError::TickUnitUndecidable(format!(
                "an NSE index option has TICK_SIZE {}, neither 0.05 (rupees) nor 5 (paise)",
                Scaled4(first)
            ))
        })?;
        if let Some(&other) = anchor_ticks.iter().find(|&&t| unit_of(t) != Some(unit)) {
            return Err(MasterError::TickUnitUndecidable(format!(
                "NSE index options disagree: TICK_SIZE {} and {}",
                Scaled4(first),
                Scaled4(other)
            )));
        }
        return Ok(unit);
    }
    // Scaled by 10^4: below 10_000 means below 1.
    if max_tick_scaled < 10_000 {
        Ok(TickUnit::Rupees)
    } else {
        Err(MasterError::TickUnitUndecidable(format!(
            "no NSE index option to compare with, and a TICK_SIZE of {} could be rupees or paise",
            Scaled4(max_tick_scaled)
        )))
    }
}

struct Scaled4(i64);

impl std::fmt::Display for Scaled4 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:04}", self.0 / 10_000, self.0 % 10_000)
    }
}

/// Shares the few distinct `INSTRUMENT` and `UNDERLYING_SYMBOL` texts between rows.
#[derive(Default)]
struct Interner {
    seen: HashMap<Box<str>, Arc<str>>,
}

impl Interner {
    fn get(&mut self, text: &str) -> Arc<str> {
        if let Some(a) = self.seen.get(text) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(text);
        self.seen.insert(text.into(), a.clone());
        a
    }
}

/// A price in rupees (at most two significant decimals); empty, zero or negative reads as none.
fn opt_price(text: &str) -> Result<Option<Paise>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let v = parse_scaled(text, 2).map_err(|e| e.to_string())?;
    Ok((v > 0).then_some(Paise(v)))
}

/// A date `YYYY-MM-DD`, optionally followed by ` HH:MM:SS`; `0001-01-01` or empty reads as none.
fn opt_date(text: &str) -> Result<Option<(NaiveDate, Option<NaiveTime>)>, String> {
    let (day, time) = match text.split_once(' ') {
        Some((d, t)) => (d, t.trim()),
        None => (text, ""),
    };
    if day.is_empty() || day.starts_with("0001-01-01") {
        return Ok(None);
    }
    let date = NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .map_err(|_| format!("{text:?} is not a date"))?;
    let time = if time.is_empty() {
        None
    } else {
        Some(
            NaiveTime::parse_from_str(time, "%H:%M:%S")
                .map_err(|_| format!("{text:?} is not a date and time"))?,
        )
    };
    Ok(Some((date, time)))
}

/// One row; its `tick` holds `TICK_SIZE` scaled by 10^4 until the file's unit is known.
fn parse_row(
    rec: &csv::StringRecord,
    c: &Columns,
    names: &mut Interner,
) -> Result<Instrument, String> {
    let exch = field(rec, c.exch);
    let seg = field(rec, c.segment);
    let segment =
        segment_of(exch, seg).ok_or_else(|| format!("unknown exchange/segment {exch}/{seg}"))?;
    let id_text = field(rec, c.security_id);
    let id: u32 = id_text
        .parse()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("{id_text:?} is not a security id"))?;
    let lot_text = field(rec, c.lot);
    let lot = parse_scaled(lot_text, 0)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("LOT_SIZE {lot_text:?} is not a positive whole number"))?;
    let symbol = field(rec, c.symbol);
    if symbol.is_empty() {
        return Err("empty SYMBOL_NAME".into());
    }
    let tick_text = field(rec, c.tick);
    let tick = parse_scaled(tick_text, 4)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("TICK_SIZE {tick_text:?} is not a positive price"))?;
    let expiry = opt_date(field(rec, c.expiry))?;
    let strike = opt_price(opt_field(rec, c.strike))?;
    let option = match opt_field(rec, c.option_type) {
        "CE" => Some(OptionKind::Call),
        "PE" => Some(OptionKind::Put),
        _ => None,
    };
    let upper = opt_price(opt_field(rec, c.upper))?;
    let lower = opt_price(opt_field(rec, c.lower))?;
    let band = match (lower, upper) {
        (Some(lo), Some(hi)) if lo <= hi => Some((lo, hi)),
        _ => None,
    };
    let freeze_text = opt_field(rec, c.freeze);
    let freeze = if freeze_text.is_empty() {
        None
    } else {
        let v = parse_scaled(freeze_text, 0)
            .map_err(|_| format!("SM_FREEZE_QTY {freeze_text:?} is not a whole number"))?;
        (v > 0).then_some(Qty(v))
    };
    Ok(Instrument {
        key: InstrumentKey { segment, security_id: SecurityId(id) },
        kind: names.get(field(rec, c.instrument)),
        underlying: names.get(opt_field(rec, c.underlying)),
        symbol: symbol.into(),
        display_name: opt_field(rec, c.display).into(),
        lot: Qty(lot),
        expiry: expiry.map(|(d, _)| d),
        expiry_time: expiry.and_then(|(_, t)| t),
        strike,
        option,
        tick: Paise(tick),
        band,
        freeze,
    })
}

/// Parses a whole detailed master. Rows that cannot be used (unknown segment, bad number, a tick
/// that is not whole paise such as currency's ₹0.0025) are skipped and counted; a missing required
/// column or an undecidable tick unit refuses the file. `rows_hint` sizes the table up front.
pub fn parse_master<R: Read>(input: R) -> Result<Instruments, MasterError> {
    parse_master_sized(input, 0)
}

/// [`parse_master`] with the expected number of rows (a line count), so that the table is
/// allocated once.
pub fn parse_master_sized<R: Read>(input: R, rows_hint: usize) -> Result<Instruments, MasterError> {
    let mut reader =
        csv::ReaderBuilder::new().flexible(true).trim(csv::Trim::None).from_reader(input);
    let header = reader.headers().map_err(|e| MasterError::Csv(e.to_string()))?.clone();
    let cols = Columns::from_header(&header)?;
    let mut counts = LoadCounts::default();
    let mut rows: Vec<Instrument> = Vec::with_capacity(rows_hint);
    let mut names = Interner::default();
    let mut anchor_ticks: Vec<i64> = Vec::new();
    let mut max_tick: i64 = 0;
    let mut rec = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                counts.rows += 1;
                counts.skip(format!("line {}: {e}", rec.position().map_or(0, |p| p.line())));
                continue;
            }
        }
        if rec.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        counts.rows += 1;
        match parse_row(&rec, &cols, &mut names) {
            Ok(inst) => {
                let scaled = inst.tick.0;
                if inst.key.segment == Segment::NseFno && &*inst.kind == "OPTIDX" {
                    if anchor_ticks.len() < 64 && !anchor_ticks.contains(&scaled) {
                        anchor_ticks.push(scaled);
                    }
                } else if !matches!(inst.key.segment, Segment::NseCurrency | Segment::BseCurrency) {
                    max_tick = max_tick.max(scaled);
                }
                rows.push(inst);
            }
            Err(reason) => {
                let line = rec.position().map_or(0, |p| p.line());
                counts.skip(format!("line {line}: {reason}"));
            }
        }
    }
    let unit = decide_tick_unit(&anchor_ticks, max_tick)?;
    counts.tick_unit = Some(unit);
    let per_paisa = match unit {
        TickUnit::Rupees => 100,
        TickUnit::Paise => 10_000,
    };
    rows.retain_mut(|inst| {
        let scaled = inst.tick.0;
        if scaled % per_paisa == 0 {
            inst.tick = Paise(scaled / per_paisa);
            true
        } else {
            counts.skip(format!(
                "{} {}: TICK_SIZE {} is not a whole number of paise",
                inst.key,
                inst.symbol,
                Scaled4(scaled)
            ));
            false
        }
    });
    if rows.is_empty() {
        return Err(MasterError::Empty { skipped: counts.skipped });
    }
    Ok(Instruments::build(rows, counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_map_as_documented() {
        assert_eq!(segment_of("NSE", "D"), Some(Segment::NseFno));
        assert_eq!(segment_of("BSE", "I"), Some(Segment::IdxI));
        assert_eq!(segment_of("MCX", "M"), Some(Segment::McxComm));
        assert_eq!(segment_of("MCX", "E"), None);
    }

    #[test]
    fn tick_unit_from_index_options() {
        assert_eq!(decide_tick_unit(&[500], 0), Ok(TickUnit::Rupees));
        assert_eq!(decide_tick_unit(&[50_000], 0), Ok(TickUnit::Paise));
        assert!(decide_tick_unit(&[1_000], 0).is_err());
        assert!(decide_tick_unit(&[500, 50_000], 0).is_err());
        assert_eq!(decide_tick_unit(&[], 500), Ok(TickUnit::Rupees));
        assert!(decide_tick_unit(&[], 100_000).is_err());
    }

    #[test]
    fn dates_and_prices() {
        assert_eq!(opt_date("0001-01-01").unwrap(), None);
        assert_eq!(opt_date("").unwrap(), None);
        assert_eq!(
            opt_date("2026-12-30 14:30:00").unwrap(),
            Some((
                NaiveDate::from_ymd_opt(2026, 12, 30).unwrap(),
                NaiveTime::from_hms_opt(14, 30, 0)
            ))
        );
        assert!(opt_date("30-12-2026").is_err());
        assert_eq!(opt_price("-0.01").unwrap(), None);
        assert_eq!(opt_price("24500.00000").unwrap(), Some(Paise(2_450_000)));
        assert!(opt_price("1.234").is_err());
    }
}
