//! `scalper decode [FILE] [--strict]`: raw feed bytes (packets back to back, as captured from the
//! socket) from FILE or stdin, one JSON object per packet on stdout.
//!
//! Prices are decimal strings with two decimals, quantities integers, `exchange_time` the true
//! instant of the LTT in IST (`2025-11-24T10:30:15.000+05:30`), `offset` the packet's first byte
//! in the input. A malformed packet prints one line on stderr with its byte offset and the
//! reason; decoding resumes at the next plausible packet (rule in `splitter`) unless `--strict`
//! stops it. Exit code 1 if any packet was malformed, 2 if the input cannot be read, else 0.

use std::io::{self, Read, Write};
use std::path::Path;

use serde::Serialize;

use crate::cli::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE};
use crate::domain::{Paise, Timestamp};
use crate::feed::codec::Packet;
use crate::feed::splitter::{Framed, Packets};

/// One output line. Fields a packet type does not have are left out.
#[derive(Serialize, Default)]
struct Line {
    offset: usize,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    segment: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    segment_code: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    security_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ltp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ltq: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ltt: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exchange_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    atp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    volume: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_sell_qty: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_buy_qty: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oi: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oi_day_high: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oi_day_low: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    open: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    close: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    high: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    low: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev_close: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev_oi: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    depth: Option<Vec<Level>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    length: Option<u16>,
}

#[derive(Serialize)]
struct Level {
    bid_price: String,
    bid_qty: u32,
    bid_orders: u16,
    ask_price: String,
    ask_qty: u32,
    ask_orders: u16,
}

fn money(p: Paise) -> Option<String> {
    Some(p.to_string())
}

fn time(t: Timestamp) -> Option<String> {
    Some(t.to_ist_iso())
}

fn line(f: &Framed) -> Line {
    let mut l = Line { offset: f.offset, kind: "unknown", ..Line::default() };
    if let Some(kind) = f.packet.kind() {
        l.kind = kind.name();
    }
    if let Some(k) = f.packet.instrument() {
        l.segment = Some(k.segment.name());
        l.security_id = Some(k.security_id.0);
    }
    match &f.packet {
        Packet::Ticker(t) => {
            (l.ltp, l.ltt, l.exchange_time) = (money(t.ltp), Some(t.ltt), time(t.exchange_time));
        }
        Packet::Quote(q) => {
            (l.ltp, l.ltq, l.ltt) = (money(q.ltp), Some(q.ltq), Some(q.ltt));
            (l.exchange_time, l.atp, l.volume) =
                (time(q.exchange_time), money(q.atp), Some(q.volume));
            (l.total_sell_qty, l.total_buy_qty) = (Some(q.total_sell_qty), Some(q.total_buy_qty));
            (l.open, l.close, l.high, l.low) =
                (money(q.open), money(q.close), money(q.high), money(q.low));
        }
        Packet::Full(q) => {
            (l.ltp, l.ltq, l.ltt) = (money(q.ltp), Some(q.ltq), Some(q.ltt));
            (l.exchange_time, l.atp, l.volume) =
                (time(q.exchange_time), money(q.atp), Some(q.volume));
            (l.total_sell_qty, l.total_buy_qty) = (Some(q.total_sell_qty), Some(q.total_buy_qty));
            (l.oi, l.oi_day_high, l.oi_day_low) =
                (Some(q.oi), Some(q.oi_day_high), Some(q.oi_day_low));
            (l.open, l.close, l.high, l.low) =
                (money(q.open), money(q.close), money(q.high), money(q.low));
            l.depth = Some(
                q.depth
                    .iter()
                    .map(|d| Level {
                        bid_price: d.bid_price.to_string(),
                        bid_qty: d.bid_qty,
                        bid_orders: d.bid_orders,
                        ask_price: d.ask_price.to_string(),
                        ask_qty: d.ask_qty,
                        ask_orders: d.ask_orders,
                    })
                    .collect(),
            );
        }
        Packet::Oi(o) => l.oi = Some(o.oi),
        Packet::PrevClose(p) => (l.prev_close, l.prev_oi) = (money(p.prev_close), Some(p.prev_oi)),
        Packet::MarketStatus(m) => {
            (l.segment_code, l.security_id) = (Some(m.segment), Some(m.security_id))
        }
        Packet::Disconnect(d) => {
            (l.reason_code, l.reason) = (Some(d.reason.code()), Some(d.reason.description()));
        }
        Packet::Unknown(u) => {
            (l.code, l.length) = (Some(u.code), Some(u.len));
            (l.segment_code, l.security_id) = (Some(u.segment), Some(u.security_id));
        }
    }
    l
}

/// One packet as its JSON output line (without the newline).
pub fn packet_json(f: &Framed) -> String {
    serde_json::to_string(&line(f)).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// What a decode run found.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub packets: usize,
    pub malformed: usize,
}

/// Decodes `bytes`, writing JSON lines to `out` and error lines to `err`.
pub fn decode_to(
    bytes: &[u8],
    strict: bool,
    out: &mut impl Write,
    err: &mut impl Write,
) -> io::Result<Summary> {
    let mut summary = Summary::default();
    for item in Packets::new(bytes) {
        match item {
            Ok(framed) => {
                summary.packets += 1;
                writeln!(out, "{}", packet_json(&framed))?;
            }
            Err(e) => {
                summary.malformed += 1;
                writeln!(err, "scalper decode: {e}")?;
                if strict {
                    break;
                }
            }
        }
    }
    out.flush()?;
    Ok(summary)
}

/// The command: reads FILE (or stdin), decodes, returns the exit code.
pub fn run(file: Option<&Path>, strict: bool) -> u8 {
    let mut bytes = Vec::new();
    let read = match file {
        Some(path) => std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes)),
        None => io::stdin().lock().read_to_end(&mut bytes),
    };
    if let Err(e) = read {
        let source = file.map_or("stdin".to_string(), |p| p.display().to_string());
        eprintln!("scalper decode: cannot read {source}: {e}");
        return EXIT_USAGE;
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let stderr = io::stderr();
    let mut err = stderr.lock();
    match decode_to(&bytes, strict, &mut out, &mut err) {
        Ok(s) if s.malformed == 0 => EXIT_OK,
        Ok(_) => EXIT_FAILURE,
        // Most likely a closed pipe on stdout; nothing more can be reported there.
        Err(_) => EXIT_FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::feed::vectors;

    fn decode(bytes: &[u8], strict: bool) -> (Vec<Value>, String, Summary) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let summary = decode_to(bytes, strict, &mut out, &mut err).unwrap();
        let lines = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (lines, String::from_utf8(err).unwrap(), summary)
    }

    #[test]
    fn ticker_prints_every_field() {
        let (lines, err, summary) = decode(&vectors::TICKER, false);
        assert_eq!(
            lines,
            vec![json!({"offset": 0, "kind": "ticker", "segment": "NSE_FNO", "security_id": 52175,
                "ltp": "123.45", "ltt": 1763980215, "exchange_time": "2025-11-24T10:30:15.000+05:30"})]
        );
        assert_eq!((err.as_str(), summary), ("", Summary { packets: 1, malformed: 0 }));
    }

    #[test]
    fn full_prints_depth_as_an_array_of_levels() {
        let (lines, _, _) = decode(&vectors::FULL, false);
        let l = &lines[0];
        assert_eq!(l["kind"], "full");
        assert_eq!(l["oi_day_low"], 1150275);
        assert_eq!(l["close"], "118.60");
        assert_eq!(l["depth"].as_array().unwrap().len(), 5);
        assert_eq!(
            l["depth"][4],
            json!({"bid_price": "123.20", "bid_qty": 600, "bid_orders": 5,
                   "ask_price": "123.70", "ask_qty": 4500, "ask_orders": 19})
        );
    }

    #[test]
    fn other_kinds_print_their_fields() {
        let mut bytes = Vec::new();
        for v in [
            &vectors::PREV_CLOSE[..],
            &vectors::MARKET_STATUS,
            &vectors::DISCONNECT_807,
            &[1, 9, 0, 0, 3, 0, 0, 0, 0],
        ] {
            bytes.extend_from_slice(v);
        }
        let (lines, _, _) = decode(&bytes, false);
        assert_eq!(
            lines,
            vec![
                json!({"offset": 0, "kind": "prev_close", "segment": "IDX_I", "security_id": 13, "prev_close": "25910.05", "prev_oi": 0}),
                json!({"offset": 16, "kind": "market_status", "segment_code": 0, "security_id": 0}),
                json!({"offset": 24, "kind": "disconnect", "reason_code": 807, "reason": "access token expired"}),
                json!({"offset": 34, "kind": "unknown", "segment_code": 0, "security_id": 3, "code": 1, "length": 9}),
            ]
        );
    }

    #[test]
    fn malformed_packet_is_reported_with_its_offset_and_decoding_resumes() {
        let mut bad = vectors::QUOTE;
        bad[3] = 6;
        let bytes: Vec<u8> = [&vectors::OI[..], &bad, &vectors::TICKER].concat();
        let (lines, err, summary) = decode(&bytes, false);
        assert_eq!(summary, Summary { packets: 2, malformed: 1 });
        assert_eq!(lines[1]["offset"], 62);
        assert_eq!(
            err,
            "scalper decode: malformed feed packet at byte offset 12: quote packet has unknown \
             exchange segment code 6\n"
        );
        let (lines, _, summary) = decode(&bytes, true);
        assert_eq!((lines.len(), summary), (1, Summary { packets: 1, malformed: 1 }));
    }
}
