//! Price scenarios for the simulator's feed: the `ticks.csv` format of the risk spec §7
//! (header `ts,segment,security_id,ltp`, `ts` ISO-8601 with offset or epoch milliseconds, extra
//! columns ignored), read into rows the feed replays in real time or as fast as possible.

use std::io::Read;
use std::path::Path;

use crate::domain::{InstrumentKey, Paise, Segment, Timestamp};

/// One scenario price.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ScenarioRow {
    pub ts: Timestamp,
    pub instrument: InstrumentKey,
    pub ltp: Paise,
}

/// What is wrong with a scenario file, and where.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read scenario {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("scenario header lacks column {0:?} (needs ts,segment,security_id,ltp)")]
    MissingColumn(&'static str),
    #[error("scenario line {line}: {what}")]
    BadRow { line: u64, what: String },
    #[error("scenario is not valid CSV: {0}")]
    Csv(String),
}

/// Reads a `ticks.csv` file.
pub fn load(path: &Path) -> Result<Vec<ScenarioRow>, ScenarioError> {
    let file = std::fs::File::open(path)
        .map_err(|source| ScenarioError::Io { path: path.display().to_string(), source })?;
    parse(file)
}

/// Parses `ticks.csv` text. Rows stay in file order.
pub fn parse(input: impl Read) -> Result<Vec<ScenarioRow>, ScenarioError> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(input);
    let headers = reader.headers().map_err(|e| ScenarioError::Csv(e.to_string()))?.clone();
    let column = |name: &'static str| {
        headers.iter().position(|h| h == name).ok_or(ScenarioError::MissingColumn(name))
    };
    let (ts_col, seg_col, id_col, ltp_col) =
        (column("ts")?, column("segment")?, column("security_id")?, column("ltp")?);
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| ScenarioError::Csv(e.to_string()))?;
        let line = record.position().map_or(0, |p| p.line());
        let bad = |what: String| ScenarioError::BadRow { line, what };
        let field = |i: usize| record.get(i).unwrap_or("");
        let ts = Timestamp::parse(field(ts_col)).map_err(bad)?;
        let segment = Segment::from_name(field(seg_col))
            .ok_or_else(|| bad(format!("unknown segment {:?}", field(seg_col))))?;
        let id: u32 = field(id_col).parse().map_err(|_| {
            bad(format!("security_id {:?} is not a positive integer", field(id_col)))
        })?;
        let ltp = Paise::parse_rupees(field(ltp_col)).map_err(|e| bad(format!("ltp: {e}")))?;
        if ltp.is_negative() {
            return Err(bad(format!("ltp {ltp} is negative")));
        }
        rows.push(ScenarioRow { ts, instrument: InstrumentKey::new(segment, id), ltp });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse_with_iso_or_epoch_times_and_extra_columns_ignored() {
        let text = "ts,segment,security_id,ltp,note\n\
                    2025-11-24T10:30:15+05:30,NSE_FNO,52175,123.45,first\n\
                    1763960416000,IDX_I,13,25910.05,\n";
        let rows = parse(text.as_bytes()).unwrap();
        assert_eq!(
            rows,
            vec![
                ScenarioRow {
                    ts: Timestamp::from_millis(1_763_960_415_000),
                    instrument: InstrumentKey::new(Segment::NseFno, 52175),
                    ltp: Paise(12345),
                },
                ScenarioRow {
                    ts: Timestamp::from_millis(1_763_960_416_000),
                    instrument: InstrumentKey::new(Segment::IdxI, 13),
                    ltp: Paise(2_591_005),
                },
            ]
        );
    }

    #[test]
    fn bad_rows_name_their_line() {
        let cases = [
            ("ts,segment,security_id\n", "lacks column \"ltp\""),
            ("ts,segment,security_id,ltp\nyesterday,NSE_FNO,1,1.00\n", "line 2"),
            ("ts,segment,security_id,ltp\n1,NSE_XX,1,1.00\n", "unknown segment"),
            ("ts,segment,security_id,ltp\n1,NSE_FNO,-1,1.00\n", "security_id"),
            ("ts,segment,security_id,ltp\n1,NSE_FNO,1,1.001\n", "ltp"),
            ("ts,segment,security_id,ltp\n1,NSE_FNO,1,-1.00\n", "negative"),
        ];
        for (text, expected) in cases {
            let e = parse(text.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(expected), "{text:?}: {e}");
        }
    }
}
