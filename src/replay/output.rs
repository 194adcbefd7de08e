//! Writing `exits.csv` and `summary.json` (risk spec §7): fixed column and key order, rupees
//! with exactly two decimals, times in IST with milliseconds, so that the same input gives
//! byte-identical files. Each file is written to a temporary name and renamed into place.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::exec::ClosedTrade;

use super::{ReplayError, ReplaySummary};

pub const EXITS_FILE: &str = "exits.csv";
pub const SUMMARY_FILE: &str = "summary.json";

/// `exits.csv`, rows ordered by exit time then position id.
pub fn exits_csv(trades: &[ClosedTrade]) -> Vec<u8> {
    let mut rows: Vec<&ClosedTrade> = trades.iter().collect();
    rows.sort_by(|a, b| (a.exited_at, &a.position_id).cmp(&(b.exited_at, &b.position_id)));
    let mut w =
        csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
    let header = [
        "position_id",
        "exit_time",
        "reason",
        "exit_price",
        "quantity",
        "gross_pnl",
        "charges",
        "net_pnl",
    ];
    w.write_record(header).expect("writing to memory does not fail");
    for t in rows {
        // A position id is free text; the writer quotes it when it has to.
        w.write_record([
            t.position_id.to_string(),
            t.exited_at.to_ist_iso(),
            t.reason.code().to_string(),
            t.exit_price.to_string(),
            t.quantity.to_string(),
            t.gross.to_string(),
            t.charges().to_string(),
            t.net.to_string(),
        ])
        .expect("writing to memory does not fail");
    }
    w.into_inner().expect("writing to memory does not fail")
}

pub fn summary_json(summary: &ReplaySummary) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(summary).expect("the summary serialises");
    bytes.push(b'\n');
    bytes
}

/// Writes both files into `dir` (created if missing).
pub fn write_all(dir: &Path, exits: &[u8], summary: &[u8]) -> Result<(), ReplayError> {
    fs::create_dir_all(dir)
        .map_err(|source| ReplayError::Write { path: dir.to_path_buf(), source })?;
    write_file(&dir.join(EXITS_FILE), exits)?;
    write_file(&dir.join(SUMMARY_FILE), summary)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ReplayError> {
    let tmp = path.with_extension("tmp");
    let io = |source| ReplayError::Write { path: path.to_path_buf(), source };
    let mut f = fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}
