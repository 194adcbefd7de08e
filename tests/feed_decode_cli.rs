//! `scalper decode` as a user runs it: the real binary on a file of mixed packets (and on
//! stdin), checking the JSON lines, the reported offset of a corrupted packet and exit codes.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use scalper::feed::vectors;
use serde_json::{Value, json};

fn scalper() -> Command {
    Command::new(env!("CARGO_BIN_EXE_scalper"))
}

fn run_on_file(bytes: &[u8], extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("feed.bin");
    std::fs::write(&path, bytes).expect("write fixture");
    scalper().arg("decode").arg(&path).args(extra).output().expect("run scalper decode")
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?} is not JSON: {e}")))
        .collect()
}

/// ticker @0, quote @16, full @66, OI @228, corrupted ticker @240, prev close @256,
/// disconnect @272.
fn mixed_with_one_corrupted() -> Vec<u8> {
    let mut corrupted = vectors::TICKER;
    corrupted[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
    [
        &vectors::TICKER[..],
        &vectors::QUOTE,
        &vectors::FULL,
        &vectors::OI,
        &corrupted,
        &vectors::PREV_CLOSE,
        &vectors::DISCONNECT_805,
    ]
    .concat()
}

#[test]
fn clean_file_decodes_every_packet_and_exits_zero() {
    let bytes = [&vectors::TICKER[..], &vectors::QUOTE, &vectors::FULL, &vectors::OI].concat();
    let out = run_on_file(&bytes, &[]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let lines = json_lines(&out);
    let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ticker", "quote", "full", "oi"]);
    assert_eq!(
        lines[1],
        json!({"offset": 16, "kind": "quote", "segment": "NSE_EQ", "security_id": 1333,
               "ltp": "1000.50", "ltq": 25, "ltt": 1763980215,
               "exchange_time": "2025-11-24T10:30:15.000+05:30", "atp": "998.75",
               "volume": 1234567, "total_sell_qty": 250000, "total_buy_qty": 310000,
               "open": "995.00", "close": "990.25", "high": "1004.00", "low": "992.50"})
    );
    assert_eq!(lines[2]["depth"][0]["bid_price"], "123.40");
    assert_eq!(
        lines[3],
        json!({"offset": 228, "kind": "oi", "segment": "NSE_FNO", "security_id": 52175, "oi": 1234500})
    );
    assert!(out.stderr.is_empty());
}

#[test]
fn corrupted_packet_is_reported_with_its_offset_and_the_rest_still_decodes() {
    let out = run_on_file(&mixed_with_one_corrupted(), &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        "scalper decode: malformed feed packet at byte offset 240: ticker packet field ltp is \
         NaN, not a finite non-negative price"
    );
    let offsets: Vec<u64> =
        json_lines(&out).iter().map(|l| l["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, [0, 16, 66, 228, 256, 272]);
}

#[test]
fn strict_stops_at_the_first_malformed_packet() {
    let out = run_on_file(&mixed_with_one_corrupted(), &["--strict"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json_lines(&out).len(), 4, "only the packets before offset 240");
    assert!(String::from_utf8_lossy(&out.stderr).contains("offset 240"));
}

#[test]
fn corrupted_length_field_resumes_at_the_next_plausible_packet() {
    let mut bad = vectors::QUOTE;
    bad[1] = 0x33; // 51 instead of 50
    let bytes = [&vectors::OI[..], &bad, &vectors::TICKER].concat();
    let out = run_on_file(&bytes, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(
        "byte offset 12: quote packet (code 4) declares length 51, its fixed size is 50"
    ));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    assert_eq!(
        (lines[1]["kind"].as_str(), lines[1]["offset"].as_u64()),
        (Some("ticker"), Some(62))
    );
}

#[test]
fn stdin_is_read_when_no_file_is_given() {
    let mut child = scalper()
        .arg("decode")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn scalper decode");
    child.stdin.take().expect("stdin").write_all(&vectors::TWO_IN_ONE).expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    let lines = json_lines(&out);
    assert_eq!(lines[0]["ltp"], "123.50");
    assert_eq!(lines[1]["oi"], 1234575);
}

#[test]
fn missing_file_is_a_usage_error() {
    let out = scalper().args(["decode", "/nonexistent/feed.bin"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/feed.bin"));
}
