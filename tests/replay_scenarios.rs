//! Replay scenarios (risk spec §7): each directory under `tests/data/replay/` holds `ticks.csv`,
//! `positions.csv`, the `expected_exits.csv` (computed by hand from the spec) and
//! `expected_summary.json` (the summary fields that matter for the scenario). The replay runs
//! through `scalper::replay::run` and, for a few cases, through the real `scalper` binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use scalper::domain::{Bp, Paise};
use scalper::exec::CoreParams;
use scalper::replay::{self, ReplayError, ReplayParams};
use scalper::risk::RiskParams;
use serde_json::Value;

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/replay").join(name)
}

fn run(
    name: &str,
    params: &ReplayParams,
) -> (tempfile::TempDir, Result<replay::ReplaySummary, ReplayError>) {
    let dir = scenario(name);
    let out = tempfile::tempdir().unwrap();
    let result =
        replay::run(params, &dir.join("ticks.csv"), &dir.join("positions.csv"), out.path());
    (out, result)
}

/// Every key of `expected` must be in `actual` with the same value (objects recursively;
/// arrays and scalars compared whole).
fn assert_subset(expected: &Value, actual: &Value, path: &str) {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, v) in e {
                let sub = format!("{path}.{k}");
                let av = a.get(k).unwrap_or_else(|| panic!("summary has no {sub}: {actual:#}"));
                assert_subset(v, av, &sub);
            }
        }
        (Value::Array(e), Value::Array(a)) => {
            assert_eq!(e.len(), a.len(), "{path}: {actual:#}");
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                assert_subset(ev, av, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(expected, actual, "{path}"),
    }
}

fn check(name: &str, params: &ReplayParams) {
    let (out, result) = run(name, params);
    let summary = result.unwrap_or_else(|e| panic!("{name}: {e}"));
    let dir = scenario(name);
    let expected_exits = fs::read_to_string(dir.join("expected_exits.csv")).unwrap();
    let exits = fs::read_to_string(out.path().join("exits.csv")).unwrap();
    assert_eq!(exits, expected_exits, "{name}: exits.csv");
    let expected: Value =
        serde_json::from_str(&fs::read_to_string(dir.join("expected_summary.json")).unwrap())
            .unwrap();
    let actual: Value =
        serde_json::from_str(&fs::read_to_string(out.path().join("summary.json")).unwrap())
            .unwrap();
    assert_subset(&expected, &actual, name);
    assert_eq!(summary.exits as usize, exits.lines().count() - 1);
}

#[test]
fn long_positions_exit_on_each_per_tick_rule() {
    check("long_exits", &ReplayParams::default());
}

#[test]
fn short_positions_exit_on_each_per_tick_rule() {
    check("short_exits", &ReplayParams::default());
}

#[test]
fn square_off_exits_every_open_position_at_the_square_off_instant() {
    check("square_off", &ReplayParams::default());
}

#[test]
fn daily_loss_limit_flattens_every_position_and_the_halt_blocks_a_later_one() {
    check("daily_loss_limit", &ReplayParams::default());
}

#[test]
fn stale_feed_exits_when_configured() {
    let params = ReplayParams {
        core: CoreParams {
            risk: RiskParams { stale_exit_after_secs: 60, ..RiskParams::default() },
            ..CoreParams::default()
        },
        ..ReplayParams::default()
    };
    check("stale_feed", &params);
}

#[test]
fn stale_feed_is_off_by_default() {
    let (_out, result) = run("stale_feed", &ReplayParams::default());
    let s = result.unwrap();
    assert_eq!(s.exits, 0);
    assert_eq!(s.open_positions.len(), 2);
}

#[test]
fn second_run_is_byte_identical() {
    for name in ["long_exits", "daily_loss_limit", "square_off"] {
        let (a, ra) = run(name, &ReplayParams::default());
        let (b, rb) = run(name, &ReplayParams::default());
        ra.unwrap();
        rb.unwrap();
        for file in ["exits.csv", "summary.json"] {
            let x = fs::read(a.path().join(file)).unwrap();
            let y = fs::read(b.path().join(file)).unwrap();
            assert!(!x.is_empty());
            assert_eq!(x, y, "{name}/{file}");
        }
    }
}

#[test]
fn slippage_moves_paper_exit_fills_against_the_order() {
    let params = ReplayParams {
        paper: scalper::exec::PaperParams { slippage_ticks: 2, ..Default::default() },
        ..ReplayParams::default()
    };
    let (_out, result) = run("long_exits", &params);
    let s = result.unwrap();
    // Long exits sell: 2 ticks × ₹0.05 below the trigger price.
    let l1 = s.trades.iter().find(|t| t.position_id.as_str() == "L1").unwrap();
    assert_eq!(l1.exit_price, Paise(8_990));
    assert_eq!(l1.gross, Paise(-75_750));
}

#[test]
fn rules_switched_off_leave_positions_open() {
    let params = ReplayParams {
        core: CoreParams {
            risk: RiskParams { stop_loss: Bp::ZERO, ..RiskParams::all_off() },
            ..CoreParams::default()
        },
        ..ReplayParams::default()
    };
    let (_out, result) = run("long_exits", &params);
    let s = result.unwrap();
    assert_eq!(s.exits, 0);
    assert_eq!(s.open_positions.len(), 6);
}

/// Replays a scenario whose files hold a bad row; the error must name `file`, `line` and the
/// offending `text`, and nothing may be written.
fn assert_refused(name: &str, file: &str, line: &str, text: &str) {
    let dir = scenario(name);
    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("out");
    let err = replay::run(
        &ReplayParams::default(),
        &dir.join("ticks.csv"),
        &dir.join("positions.csv"),
        &out,
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(file) && msg.contains(line) && msg.contains(text), "{msg}");
    assert!(err.is_bad_input());
    assert!(!out.exists(), "nothing may be written");
}

#[test]
fn malformed_tick_row_names_file_and_line_and_writes_nothing() {
    assert_refused("malformed_tick", "ticks.csv", "line 4", "12.3.4");
}

#[test]
fn malformed_position_row_names_file_and_line_and_writes_nothing() {
    assert_refused("malformed_position", "positions.csv", "line 3", "FLAT");
}

#[test]
fn malformed_rows_of_every_kind_are_located() {
    let cases: [(&str, &str, &str); 8] = [
        ("ticks.csv", "ts,segment,security_id\n", "line 1"),
        (
            "ticks.csv",
            "ts,segment,security_id,ltp\n2025-11-24T10:00:00+05:30,NSE_XYZ,1,1.00\n",
            "line 2",
        ),
        ("ticks.csv", "ts,segment,security_id,ltp\n2025-11-24T10:00:00,NSE_FNO,1,1.00\n", "line 2"),
        (
            "ticks.csv",
            "ts,segment,security_id,ltp\n2025-11-24T10:00:00+05:30,NSE_FNO,1,1.00,9\n",
            "line 2",
        ),
        (
            "ticks.csv",
            "ts,segment,security_id,ltp\n2025-11-24T10:00:00+05:30,NSE_FNO,1,1.00\n2025-11-24T09:59:59+05:30,NSE_FNO,1,1.00\n",
            "line 3",
        ),
        (
            "positions.csv",
            "id,segment,security_id,side,quantity,entry_price,opened_at\np,NSE_FNO,1,LONG,0,1.00,2025-11-24T10:00:00+05:30\n",
            "line 2",
        ),
        (
            "positions.csv",
            "id,segment,security_id,side,quantity,entry_price,opened_at\np,NSE_FNO,1,LONG,1,1.00,2025-11-24T10:00:00+05:30\np,NSE_FNO,1,LONG,1,1.00,2025-11-24T10:00:00+05:30\n",
            "line 3",
        ),
        (
            "positions.csv",
            "id,segment,security_id,side,quantity,entry_price,opened_at\np,IDX_I,13,LONG,1,1.00,2025-11-24T10:00:00+05:30\n",
            "line 2",
        ),
    ];
    let good_ticks = "ts,segment,security_id,ltp\n";
    let good_positions = "id,segment,security_id,side,quantity,entry_price,opened_at\n";
    for (file, content, line) in cases {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("ticks.csv"), good_ticks).unwrap();
        fs::write(dir.path().join("positions.csv"), good_positions).unwrap();
        fs::write(dir.path().join(file), content).unwrap();
        let out = dir.path().join("out");
        let err = replay::run(
            &ReplayParams::default(),
            &dir.path().join("ticks.csv"),
            &dir.path().join("positions.csv"),
            &out,
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(file) && msg.contains(line), "{content:?}: {msg}");
        assert!(!out.exists());
    }
}

#[test]
fn missing_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = replay::run(
        &ReplayParams::default(),
        &dir.path().join("nope.csv"),
        &scenario("long_exits").join("positions.csv"),
        dir.path(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("nope.csv"), "{err}");
}

#[test]
fn the_replay_command_writes_the_files_and_maps_errors_to_exit_codes() {
    let bin = env!("CARGO_BIN_EXE_scalper");
    let dir = scenario("long_exits");
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(bin)
        .args(["replay", "--config"])
        .arg(defaults_config())
        .arg("--ticks")
        .arg(dir.join("ticks.csv"))
        .arg("--positions")
        .arg(dir.join("positions.csv"))
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(0), "{}", String::from_utf8_lossy(&status.stderr));
    let exits = fs::read_to_string(out.path().join("exits.csv")).unwrap();
    assert_eq!(exits, fs::read_to_string(dir.join("expected_exits.csv")).unwrap());

    let bad = scenario("malformed_tick");
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(bin)
        .args(["replay", "--config"])
        .arg(defaults_config())
        .arg("--ticks")
        .arg(bad.join("ticks.csv"))
        .arg("--positions")
        .arg(bad.join("positions.csv"))
        .arg("--out")
        .arg(out.path().join("x"))
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&status.stderr).contains("line 4"));
    assert!(!out.path().join("x").exists());
}

fn defaults_config() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/replay/spec-defaults.toml")
}

#[test]
fn the_spec_defaults_config_gives_the_default_replay_parameters() {
    let cfg = scalper::config::Config::load(&defaults_config()).unwrap();
    assert_eq!(cfg.replay_params(), scalper::replay::ReplayParams::default());
}
