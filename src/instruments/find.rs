//! `scalper instruments find`: the instruments whose symbol or display name carries every word
//! of a query, nearest expiry first.

use std::fmt::Write as _;

use chrono::NaiveDate;

use super::{Instrument, Instruments};

/// The words of a symbol or display name, upper-cased.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(['-', ' ', '_']).filter(|w| !w.is_empty()).map(|w| w.to_ascii_uppercase())
}

fn matches(inst: &Instrument, terms: &[String]) -> bool {
    terms.iter().all(|term| {
        words(&inst.symbol).any(|w| &w == term)
            || words(&inst.display_name).any(|w| &w == term)
            || inst.key.security_id.0.to_string() == *term
            || inst.key.to_string() == *term
    })
}

/// Matching instruments that have not expired before `today`: nearest expiry first (instruments
/// without expiry last), then by symbol; at most `limit`.
pub fn find<'a>(
    table: &'a Instruments,
    query: &str,
    today: NaiveDate,
    limit: usize,
) -> Vec<&'a Instrument> {
    let terms: Vec<String> = words(query).collect();
    if terms.is_empty() {
        return Vec::new();
    }
    let mut hits: Vec<&Instrument> = table
        .iter()
        .filter(|i| i.expiry.is_none_or(|e| e >= today))
        .filter(|i| matches(i, &terms))
        .collect();
    hits.sort_by(|a, b| {
        (a.expiry.is_none(), a.expiry, &a.symbol).cmp(&(b.expiry.is_none(), b.expiry, &b.symbol))
    });
    hits.truncate(limit);
    hits
}

/// The table `instruments find` prints.
pub fn render(hits: &[&Instrument]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<28} {:<28} {:<16} {:>6} {:>6} {:>7} {:<21} {:<10}",
        "SYMBOL", "DISPLAY NAME", "ID", "LOT", "TICK", "FREEZE", "BAND", "EXPIRY"
    );
    for i in hits {
        let band = match i.band {
            Some((lo, hi)) => format!("{lo}-{hi}"),
            None => "-".into(),
        };
        let freeze = i.freeze.map_or_else(|| "-".to_string(), |f| f.to_string());
        let expiry = i.expiry.map_or_else(|| "-".to_string(), |e| e.to_string());
        let _ = writeln!(
            out,
            "{:<28} {:<28} {:<16} {:>6} {:>6} {:>7} {:<21} {:<10}",
            i.symbol,
            i.display_name,
            i.key.to_string(),
            i.lot,
            i.tick.to_string(),
            freeze,
            band,
            expiry
        );
    }
    out
}
