//! Reading `ticks.csv` and `positions.csv` (risk spec §7) into validated rows. Every problem is
//! reported with the file and the line; nothing is guessed.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use csv::{ReaderBuilder, StringRecord, Trim};

use crate::domain::money::{div_round_half_away, parse_scaled};
use crate::domain::{InstrumentKey, Paise, PositionId, Qty, Segment, Side, Tick, Timestamp};
use crate::exec::NewPosition;

use super::ReplayError;

/// Prices in the files may carry float noise from a recorder (`123.4499969`): up to nine
/// decimals are read exactly and rounded half away from zero to the paisa, like a feed price.
const PRICE_PLACES: u32 = 9;

/// One row of `ticks.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickRow {
    pub line: u64,
    pub tick: Tick,
}

/// One row of `positions.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionRow {
    pub line: u64,
    pub position: NewPosition,
}

/// Reads `ticks.csv`: header `ts,segment,security_id,ltp` (extra columns ignored), rows in time
/// order.
pub fn read_ticks(path: &Path) -> Result<Vec<TickRow>, ReplayError> {
    ticks_from_reader(open(path)?, path)
}

/// [`read_ticks`] on any reader; `path` only names the file in errors.
pub fn ticks_from_reader(input: impl Read, path: &Path) -> Result<Vec<TickRow>, ReplayError> {
    let mut table = Table::new(input, path, &["ts", "segment", "security_id", "ltp"])?;
    let mut rows = Vec::new();
    let mut previous: Option<Timestamp> = None;
    while let Some((line, record)) = table.next_record()? {
        let bad = |message: String| ReplayError::Row { file: path.to_path_buf(), line, message };
        let ts = parse_ts(table.field(&record, 0)).map_err(bad)?;
        if let Some(prev) = previous
            && ts < prev
        {
            return Err(bad(format!(
                "ts {} is earlier than the previous row's {} (rows must be in time order)",
                ts.to_ist_iso(),
                prev.to_ist_iso()
            )));
        }
        previous = Some(ts);
        let instrument =
            parse_instrument(table.field(&record, 1), table.field(&record, 2)).map_err(bad)?;
        let ltp = parse_price("ltp", table.field(&record, 3)).map_err(bad)?;
        let tick = Tick::at(instrument, ltp, ts);
        rows.push(TickRow { line, tick });
    }
    Ok(rows)
}

/// Reads `positions.csv`: header `id,segment,security_id,side,quantity,entry_price,opened_at`.
pub fn read_positions(path: &Path) -> Result<Vec<PositionRow>, ReplayError> {
    positions_from_reader(open(path)?, path)
}

/// [`read_positions`] on any reader; `path` only names the file in errors.
pub fn positions_from_reader(
    input: impl Read,
    path: &Path,
) -> Result<Vec<PositionRow>, ReplayError> {
    let columns = ["id", "segment", "security_id", "side", "quantity", "entry_price", "opened_at"];
    let mut table = Table::new(input, path, &columns)?;
    let mut rows: Vec<PositionRow> = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    while let Some((line, record)) = table.next_record()? {
        let bad = |message: String| ReplayError::Row { file: path.to_path_buf(), line, message };
        let id = table.field(&record, 0);
        if id.is_empty() {
            return Err(bad("id is empty".into()));
        }
        if let Some(first) = seen.insert(id.to_string(), line) {
            return Err(bad(format!("id {id:?} is already used on line {first}")));
        }
        let instrument =
            parse_instrument(table.field(&record, 1), table.field(&record, 2)).map_err(bad)?;
        if !instrument.segment.is_tradable() {
            return Err(bad(format!("segment {} is not tradable", instrument.segment)));
        }
        let side: Side = table.field(&record, 3).parse().map_err(bad)?;
        let qty_text = table.field(&record, 4);
        let quantity = match qty_text.parse::<i64>() {
            Ok(q) if q > 0 => Qty(q),
            _ => return Err(bad(format!("quantity {qty_text:?} is not a positive whole number"))),
        };
        let entry_price = parse_price("entry_price", table.field(&record, 5)).map_err(bad)?;
        let opened_at = parse_ts(table.field(&record, 6)).map_err(bad)?;
        let position = NewPosition {
            id: PositionId::new(id),
            instrument,
            side,
            quantity,
            entry_price,
            opened_at,
        };
        rows.push(PositionRow { line, position });
    }
    Ok(rows)
}

fn open(path: &Path) -> Result<File, ReplayError> {
    File::open(path).map_err(|source| ReplayError::Open { file: path.to_path_buf(), source })
}

/// A CSV file with named columns located in its header.
struct Table<'a, R> {
    path: &'a Path,
    reader: csv::Reader<R>,
    /// Index of each wanted column in the file.
    index: Vec<usize>,
    record: StringRecord,
}

impl<'a, R: Read> Table<'a, R> {
    fn new(input: R, path: &'a Path, columns: &[&str]) -> Result<Table<'a, R>, ReplayError> {
        let mut reader = ReaderBuilder::new().trim(Trim::All).from_reader(input);
        let header = reader.headers().map_err(|e| csv_error(path, &e))?.clone();
        let mut index = Vec::new();
        for name in columns {
            match header.iter().position(|h| h == *name) {
                Some(i) => index.push(i),
                None => {
                    return Err(ReplayError::Row {
                        file: path.to_path_buf(),
                        line: 1,
                        message: format!(
                            "header has no {name:?} column (expected {})",
                            columns.join(",")
                        ),
                    });
                }
            }
        }
        Ok(Table { path, reader, index, record: StringRecord::new() })
    }

    fn next_record(&mut self) -> Result<Option<(u64, StringRecord)>, ReplayError> {
        match self.reader.read_record(&mut self.record) {
            Ok(false) => Ok(None),
            Ok(true) => {
                let line = self.record.position().map_or(0, |p| p.line());
                Ok(Some((line, self.record.clone())))
            }
            Err(e) => Err(csv_error(self.path, &e)),
        }
    }

    fn field<'r>(&self, record: &'r StringRecord, column: usize) -> &'r str {
        record.get(self.index[column]).unwrap_or("")
    }
}

fn csv_error(path: &Path, e: &csv::Error) -> ReplayError {
    let line = e.position().map_or(0, |p| p.line());
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("row has {len} fields but the header has {expected_len}")
        }
        csv::ErrorKind::Utf8 { .. } => "row is not valid UTF-8".to_string(),
        _ => e.to_string(),
    };
    ReplayError::Row { file: path.to_path_buf(), line, message }
}

fn parse_ts(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse(text)
}

fn parse_instrument(segment: &str, security_id: &str) -> Result<InstrumentKey, String> {
    let segment = Segment::from_name(segment)
        .ok_or_else(|| format!("segment {segment:?} is not a Dhan exchange segment"))?;
    let id: u32 = security_id
        .parse()
        .map_err(|_| format!("security_id {security_id:?} is not a positive whole number"))?;
    Ok(InstrumentKey::new(segment, id))
}

/// Decimal rupees → paise, exactly, half away from zero beyond two decimals; must be positive.
fn parse_price(column: &str, text: &str) -> Result<Paise, String> {
    let scaled = parse_scaled(text, PRICE_PLACES)
        .map_err(|e| format!("{column} {text:?} is not a price in rupees ({e})"))?;
    let paise = div_round_half_away(i128::from(scaled), 10i128.pow(PRICE_PLACES - 2)) as i64;
    if paise <= 0 {
        return Err(format!("{column} {text:?} is not a positive price"));
    }
    Ok(Paise(paise))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_round_half_away_from_zero_to_the_paisa() {
        assert_eq!(parse_price("ltp", "123.45"), Ok(Paise(12_345)));
        assert_eq!(parse_price("ltp", "123.4499969"), Ok(Paise(12_345)));
        assert_eq!(parse_price("ltp", "0.005"), Ok(Paise(1)));
        assert_eq!(parse_price("ltp", "100"), Ok(Paise(10_000)));
        assert!(parse_price("ltp", "0.004").is_err());
        assert!(parse_price("ltp", "-1").is_err());
        assert!(parse_price("ltp", "1e3").is_err());
        assert!(parse_price("ltp", "").is_err());
    }
}
