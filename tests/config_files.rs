//! The shipped config files and `scalper check-config`, run as a user would: through the real
//! binary, on files on disk. Also the secrets file's permission rule, the secrecy of tokens,
//! and what a live reload accepts and refuses.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use scalper::config::{
    BrokerKind, Config, Mode, ReloadError, Secrets, SecretsError, StoreKind, plan_reload,
    reload_from_file,
};

const SHIPPED: [&str; 3] =
    ["config/default.toml", "config/production.example.toml", "config/sim-live.toml"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn data(name: &str) -> PathBuf {
    root().join("tests/data/config").join(name)
}

/// Runs `scalper check-config FILE` from the repository root.
fn check_config(file: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scalper"))
        .args(["check-config", file])
        .current_dir(root())
        .output()
        .expect("the scalper binary runs")
}

fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr).lines().map(str::to_string).collect()
}

#[test]
fn shipped_files_validate() {
    for file in SHIPPED {
        let c = Config::load(&root().join(file)).unwrap_or_else(|e| panic!("{file}:\n{e}"));
        match file {
            "config/default.toml" => {
                assert_eq!((c.mode, c.broker.kind), (Mode::Paper, BrokerKind::Paper));
                // Relative to config/: `make run` keeps its state in the repository's data/.
                assert_eq!(c.data_dir, root().join("data"));
                assert!(c.sim.enabled && c.entries.demo);
                assert!(c.session.weekends_are_trading_days, "make run must trade at weekends too");
                assert!(c.http.listen.ip().is_loopback());
            }
            "config/production.example.toml" => {
                assert_eq!((c.mode, c.broker.kind), (Mode::Live, BrokerKind::Dhan));
                assert_eq!(c.store.backend.kind(), StoreKind::Postgres);
                assert!(c.redis.enabled && !c.sim.enabled && !c.entries.demo);
            }
            _ => {
                assert_eq!((c.mode, c.broker.kind), (Mode::Live, BrokerKind::Dhan));
                assert!(c.sim.enabled && c.sim.broker);
                assert!(scalper::config::is_loopback_url(&c.broker.rest_url));
            }
        }
    }
}

#[test]
fn check_config_accepts_the_shipped_files() {
    for (file, summary) in
        SHIPPED.iter().zip(["paper, paper, sqlite", "live, dhan, postgres", "live, dhan, sqlite"])
    {
        let out = check_config(file);
        assert_eq!(out.status.code(), Some(0), "{file}: {:?}", stderr_lines(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("ok: {file} ({summary})\n"));
        assert!(out.stderr.is_empty());
    }
}

#[test]
fn check_config_lists_every_mistake_and_exits_2() {
    let file = "tests/data/config/several-mistakes.toml";
    let out = check_config(file);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let want = [
        "http.listen: 0.0.0.0:8080 is not a loopback address; set http.allow_remote = true to serve other hosts",
        "feed.watchlist[1]: unknown exchange segment \"NSE_FUT\"",
        "feed.cooloff_429_secs: 10 is below 60, the least live mode allows (Dhan blocks accounts that retry handshakes sooner)",
        "risk.stop_loss_pct: 12.345 has more than two decimals",
        "risk.ratchet[1].at_pct: 8 is not above risk.ratchet[0].at_pct 10 (tiers must be strictly increasing)",
        "limits.max_daily_loss_rupees: required in live mode (the day's loss at which every position is closed and trading halts)",
        "session.entry_cutoff_time: 15:30:00 is after session.square_off_time 15:20:00",
        "session.holidays[0]: \"2026-13-01\" is not a date (YYYY-MM-DD)",
        "charges.exchange_txn_pct: 0.0350301 has more than six decimals",
        "store.postgres_url: carries a password: remove it and set PGPASSWORD in the environment or the secrets file",
    ];
    let want: Vec<String> = want.iter().map(|l| format!("{file}: {l}")).collect();
    assert_eq!(stderr_lines(&out), want);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("hunter2"));
}

#[test]
fn check_config_lists_unknown_keys_wrong_types_and_bad_values_together() {
    let file = "tests/data/config/mixed-mistakes.toml";
    let out = check_config(file);
    assert_eq!(out.status.code(), Some(2));
    let lines = stderr_lines(&out);
    let want = [
        "4:1: log_level: unknown field `log_level`",
        "7:8: feed.mode: unknown variant `tick`",
        "8:20: feed.stall_timeout_ms: invalid type: string \"45s\", expected i64",
        "13:1: risk.take_proft_pct: unknown field `take_proft_pct`",
        "16:10: risk.ratchet[0].at_pct: invalid type: boolean `true`",
        " feed.cooloff_429_secs: 10 is below 60",
        " risk.stop_loss_pct: 12.345 has more than two decimals",
        " session.entry_cutoff_time: 15:30:00 is after session.square_off_time 15:20:00",
    ];
    assert_eq!(lines.len(), want.len(), "{lines:#?}");
    for (line, want) in lines.iter().zip(want) {
        assert!(line.starts_with(&format!("{file}:{want}")), "want {want:?}\n got {line:?}");
    }
}

#[test]
fn unknown_keys_are_refused_with_file_line_and_key() {
    for (name, want) in [
        (
            "unknown-top-level.toml",
            "unknown-top-level.toml:3:1: log_level: unknown field `log_level`",
        ),
        (
            "unknown-nested.toml",
            "unknown-nested.toml:5:1: risk.take_proft_pct: unknown field `take_proft_pct`",
        ),
    ] {
        let errs = Config::load(&data(name)).unwrap_err();
        assert_eq!(errs.errors.len(), 1);
        let line = &errs.lines()[0];
        assert!(line.ends_with(&errs.errors[0].message) && line.contains(want), "{line}");
        let out = check_config(&format!("tests/data/config/{name}"));
        assert_eq!(out.status.code(), Some(2));
        let lines = stderr_lines(&out);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with(&format!("tests/data/config/{want}")), "{}", lines[0]);
    }
}

#[test]
fn over_precise_percentages_are_refused() {
    let errs = Config::load(&data("over-precise.toml")).unwrap_err();
    let file = data("over-precise.toml").display().to_string();
    assert_eq!(
        errs.lines(),
        [
            format!("{file}: risk.stop_loss_pct: 9.999 has more than two decimals"),
            format!("{file}: risk.take_profit_pct: 20.125 has more than two decimals"),
        ]
    );
}

#[test]
fn live_mode_without_a_daily_loss_limit_is_refused() {
    let errs = Config::load(&data("live-without-limits.toml")).unwrap_err();
    assert_eq!(errs.errors.len(), 1);
    assert!(errs.has("limits.max_daily_loss_rupees"));
    let out = check_config("tests/data/config/live-without-limits.toml");
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr_lines(&out),
        [
            "tests/data/config/live-without-limits.toml: limits.max_daily_loss_rupees: required in live mode (the day's loss at which every position is closed and trading halts)"
        ]
    );
}

#[test]
fn durations_beyond_a_day_are_refused_instead_of_wrapping() {
    let file = "tests/data/config/unbounded-durations.toml";
    let out = check_config(file);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr_lines(&out),
        [
            format!(
                "{file}: feed.stall_timeout_ms: 86400001 is out of range: must be at most 86400000 (a day)"
            ),
            format!(
                "{file}: risk.stale_after_ms: 9223372036854775807 is out of range: must be at most 86400000 (a day)"
            ),
            format!(
                "{file}: risk.stale_exit_after_secs: 18446744073709552 is out of range: must be at most 86400 (a day)"
            ),
            format!(
                "{file}: limits.reentry_cooldown_secs: 18446744073709552 is out of range: must be at most 86400 (a day)"
            ),
        ]
    );
}

#[test]
fn check_config_reports_an_unreadable_file() {
    let out = check_config("tests/data/config/no-such-file.toml");
    assert_eq!(out.status.code(), Some(2));
    let lines = stderr_lines(&out);
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].starts_with("tests/data/config/no-such-file.toml: cannot read the file:"),
        "{}",
        lines[0]
    );
}

/// A live config whose secrets file is `secrets` with `mode`.
fn live_with_secrets_file(dir: &Path, secrets: &str, mode: u32) -> (Config, PathBuf) {
    let secrets_path = dir.join("secrets.env");
    fs::write(&secrets_path, secrets).unwrap();
    fs::set_permissions(&secrets_path, fs::Permissions::from_mode(mode)).unwrap();
    let cfg_path = dir.join("live.toml");
    fs::write(
        &cfg_path,
        format!(
            "mode = \"live\"\n[secrets]\nfile = {:?}\n[limits]\nmax_daily_loss_rupees = 2500\n",
            secrets_path.display().to_string()
        ),
    )
    .unwrap();
    (Config::load(&cfg_path).unwrap(), secrets_path)
}

const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzUxMiJ9.live-access-token";
const CONTROL: &str = "c0ntrol-t0ken-0123456789";

fn secrets_text() -> String {
    format!(
        "DHAN_CLIENT_ID=1100000042\nDHAN_ACCESS_TOKEN={TOKEN}\nSCALPER_CONTROL_TOKEN={CONTROL}\n"
    )
}

#[test]
fn world_readable_secrets_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, path) = live_with_secrets_file(dir.path(), &secrets_text(), 0o644);
    let err = Secrets::resolve(&cfg, |_| None).unwrap_err();
    assert!(matches!(err, SecretsError::InsecureFile { mode: 0o644, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()) && msg.contains("0644"), "{msg}");
    assert!(!msg.contains(TOKEN));
}

#[test]
fn private_secrets_file_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = live_with_secrets_file(dir.path(), &secrets_text(), 0o600);
    let s = Secrets::resolve(&cfg, |_| None).unwrap();
    assert_eq!(s.dhan_access_token.expose(), TOKEN);
    assert_eq!(s.control_token.as_ref().map(|t| t.expose()), Some(CONTROL));
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, _) = live_with_secrets_file(dir.path(), &secrets_text(), 0o600);
    let secrets = Secrets::resolve(&cfg, |_| None).unwrap();
    let shown = format!("{cfg:?}\n{cfg:#?}\n{secrets:?}\n{secrets:#?}\n{:?}", (&cfg, &secrets));
    for secret in [TOKEN, CONTROL, "1100000042"] {
        assert!(!shown.contains(secret), "{secret} leaked");
    }
    assert!(shown.contains("***"));

    // The simulator's token is the one secret a config file may hold.
    let sim = Config::from_toml_str(&format!("[sim]\naccess_token = {TOKEN:?}\n")).unwrap();
    assert_eq!(sim.sim.access_token.expose(), TOKEN);
    assert!(!format!("{sim:?}{sim:#?}").contains(TOKEN));
}

/// Writes `config/default.toml` with `edit` applied into `dir` and returns its path. Its
/// relative data_dir is made absolute first, so that the copy names the same directory.
fn edited_default(dir: &Path, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = fs::read_to_string(root().join("config/default.toml")).unwrap();
    let data = format!("data_dir = {:?}", root().join("data").display().to_string());
    let text = text.replacen("data_dir = \"../data\"", &data, 1);
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit must change the file");
    let path = dir.join(name);
    fs::write(&path, edited).unwrap();
    path
}

#[test]
fn reload_applies_a_risk_and_limits_change() {
    let running = Config::load(&root().join("config/default.toml")).unwrap();
    let before = running.clone();
    let dir = tempfile::tempdir().unwrap();
    let path = edited_default(dir.path(), "risk.toml", |t| {
        t.replace("stop_loss_pct = 1.5\n", "stop_loss_pct = 2.5\n")
            .replace("max_open_positions = 3", "max_open_positions = 2")
    });
    let reload = reload_from_file(&running, &path).unwrap();
    let changes: Vec<String> = reload.changes.iter().map(|c| c.to_string()).collect();
    assert_eq!(changes, ["risk.stop_loss_pct: 1.5 → 2.5", "limits.max_open_positions: 3 → 2"]);
    assert_eq!(reload.config.risk.stop_loss, scalper::domain::Bp(250));
    assert_eq!(running, before, "planning a reload leaves the running config alone");

    // The same file again: accepted, nothing to do.
    let same = reload_from_file(&running, &root().join("config/default.toml")).unwrap();
    assert!(same.changes.is_empty());
}

#[test]
fn reload_refuses_a_broker_change_and_names_the_keys() {
    let running = Config::load(&root().join("config/default.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = edited_default(dir.path(), "broker.toml", |t| {
        t.replace("kind = \"paper\"", "kind = \"paper\"\nrequest_timeout_ms = 8000")
            .replace("stop_loss_pct = 1.5\n", "stop_loss_pct = 4\n")
            .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:9090\"")
    });
    match reload_from_file(&running, &path) {
        Err(ReloadError::NeedsRestart { keys }) => {
            assert_eq!(keys, ["http.listen", "broker.request_timeout_ms"]);
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn reload_refuses_an_invalid_file() {
    let running = Config::load(&root().join("config/default.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = edited_default(dir.path(), "invalid.toml", |t| {
        t.replace("stop_loss_pct = 1.5\n", "stop_loss_pct = 3.125\n")
    });
    match reload_from_file(&running, &path) {
        Err(ReloadError::Invalid(errs)) => {
            assert_eq!(
                errs.lines(),
                [format!(
                    "{}: risk.stop_loss_pct: 3.125 has more than two decimals",
                    path.display()
                )]
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let unknown = edited_default(dir.path(), "unknown.toml", |t| {
        t.replace("[risk]\n", "[risk]\nstop_los_pct = 1\n")
    });
    assert!(matches!(reload_from_file(&running, &unknown), Err(ReloadError::Invalid(_))));
    // A mode change is the clearest restart case.
    let live = Config::load(&root().join("config/sim-live.toml")).unwrap();
    assert!(matches!(plan_reload(&running, Ok(live)), Err(ReloadError::NeedsRestart { .. })));
}
