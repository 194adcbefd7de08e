//! The command line as an operator meets it, through the real binary: `--version` and help for
//! every option, `status` exit codes, relative paths resolved against the config file (so
//! `status --config /abs/path` works from anywhere), the generated paper control token kept
//! across restarts, and the simulator's addresses announced once.

mod process_support;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use process_support::{Process, TOKEN, config_text, sim_feed};

fn scalper() -> Command {
    Command::new(env!("CARGO_BIN_EXE_scalper"))
}

/// `scalper status --config FILE` from the root directory, with `token` as the control token
/// (`""`: none, so the token file is used).
fn status(config: &Path, token: &str) -> Output {
    scalper()
        .args(["status", "--config"])
        .arg(config)
        .current_dir("/")
        .env("SCALPER_CONTROL_TOKEN", token)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `scalper run --config FILE` started in `cwd`, logging to `dir/<name>.log`.
fn spawn_in(cwd: &Path, dir: &Path, config: &Path, name: &str, token: &str) -> Process {
    let log_path = dir.join(format!("{name}.log"));
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
    let child = scalper()
        .arg("run")
        .arg("--config")
        .arg(config)
        .current_dir(cwd)
        .stdout(Stdio::null())
        .stderr(log)
        .env("SCALPER_CONTROL_TOKEN", token)
        .env("RUST_LOG", "info")
        .spawn()
        .unwrap();
    Process { child, dir: dir.to_path_buf(), log_path, name: name.to_string() }
}

#[test]
fn version_flag_and_help_for_every_option() {
    let version = scalper().arg("--version").output().unwrap();
    assert!(version.status.success(), "{}", text(&version.stderr));
    let want = format!("scalper {}\n", env!("CARGO_PKG_VERSION"));
    assert_eq!(text(&version.stdout), want);
    assert_eq!(text(&scalper().arg("version").output().unwrap().stdout), want);

    for command in
        ["run", "check-config", "version", "decode", "sim", "replay", "status", "flatten"]
    {
        let out = scalper().args([command, "--help"]).output().unwrap();
        assert!(out.status.success(), "{command} --help: {}", text(&out.stderr));
        let help = text(&out.stdout);
        // Every entry under Arguments/Options is the flag, two spaces or more, its description.
        let mut in_list = false;
        for line in help.lines() {
            if line.ends_with(':') && !line.starts_with(' ') {
                in_list = line == "Arguments:" || line == "Options:";
                continue;
            }
            // An entry starts with its flag or argument; deeper lines continue a description.
            if in_list && line.trim_start().starts_with(['-', '<', '[']) {
                let parts = line.trim().split("  ").filter(|p| !p.trim().is_empty()).count();
                assert!(parts >= 2, "`scalper {command} --help`: {line:?} has no description");
            }
        }
    }
}

#[test]
fn relative_paths_follow_the_config_file_and_status_exit_codes() {
    let (_sim, _prices) = sim_feed();
    let feed_url = format!("ws://{}", _sim.addr());
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    let config = etc.join("scalper.toml");
    // `data_dir = "state"`: the engine runs in dir/, status in /; both mean etc/state.
    std::fs::write(&config, config_text(Path::new("state"), &feed_url, "")).unwrap();
    let state = etc.join("state");

    let mut engine = spawn_in(dir.path(), dir.path(), &config, "engine", TOKEN);
    engine.wait_active(&state);
    assert!(!dir.path().join("state").exists(), "nothing under the working directory");

    let ok = status(&config, TOKEN);
    assert_eq!(ok.status.code(), Some(0), "{}{}", text(&ok.stdout), text(&ok.stderr));
    assert!(text(&ok.stdout).starts_with("engine http://"), "{}", text(&ok.stdout));

    let refused = status(&config, "not-the-control-token");
    assert_eq!(refused.status.code(), Some(1), "a wrong token: {}", text(&refused.stdout));
    assert!(text(&refused.stderr).contains("401"), "{}", text(&refused.stderr));
    assert!(refused.stdout.is_empty());

    let bad = etc.join("bad.toml");
    std::fs::write(&bad, "mood = 1\n").unwrap();
    assert_eq!(status(&bad, TOKEN).status.code(), Some(2), "a bad config");

    engine.signal(libc::SIGTERM);
    assert_eq!(engine.wait_exit(Duration::from_secs(30)), 0);
    let gone = status(&config, TOKEN);
    assert_eq!(gone.status.code(), Some(1), "no engine: {}", text(&gone.stdout));
    assert!(text(&gone.stderr).contains(&state.display().to_string()), "{}", text(&gone.stderr));
}

#[test]
fn the_generated_control_token_survives_a_restart() {
    let (_sim, _prices) = sim_feed();
    let feed_url = format!("ws://{}", _sim.addr());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("scalper.toml");
    std::fs::write(&config, config_text(&data, &feed_url, "")).unwrap();
    let token_file = data.join("control-token");

    let mut first = spawn_in(dir.path(), dir.path(), &config, "first", "");
    first.wait_active(&data);
    let before = std::fs::read_to_string(&token_file).unwrap();
    first.signal(libc::SIGTERM);
    assert_eq!(first.wait_exit(Duration::from_secs(30)), 0);

    let mut second = spawn_in(dir.path(), dir.path(), &config, "second", "");
    second.wait_active(&data);
    assert_eq!(std::fs::read_to_string(&token_file).unwrap(), before, "same token after a restart");
    // A tool holding the token from before the restart is still let in.
    let out = status(&config, before.trim());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    second.signal(libc::SIGTERM);
    assert_eq!(second.wait_exit(Duration::from_secs(30)), 0);
}

#[test]
fn the_simulator_announces_its_addresses_once() {
    // Standalone: the JSON line on stdout is the announcement; stderr does not repeat it.
    let mut sim = scalper()
        .arg("sim")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_LOG", "info")
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(sim.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let json: serde_json::Value = serde_json::from_str(&line).unwrap();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(sim.id() as i32, libc::SIGTERM) }, 0);
    let mut stderr = String::new();
    sim.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(sim.wait().unwrap().success(), "{stderr}");
    let listen = json["listen"].as_str().unwrap();
    let rest = json["broker"]["rest"].as_str().unwrap();
    assert!(!stderr.contains(listen) && !stderr.contains(rest), "repeated on stderr:\n{stderr}");

    // In the engine: one banner line names the in-process simulator's feed.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("scalper.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\n[http]\nlisten = \"127.0.0.1:0\"\n", data.display().to_string()),
    )
    .unwrap();
    let mut engine = spawn_in(dir.path(), dir.path(), &config, "engine", TOKEN);
    engine.wait_log("All workers are up");
    let log = engine.log();
    let banner: Vec<&str> =
        log.lines().filter(|l| l.contains("simulator: market feed on")).collect();
    assert_eq!(banner.len(), 1, "{log}");
    let feed = banner[0].split("market feed on ").nth(1).unwrap().split(' ').next().unwrap();
    let feed = feed.trim_end_matches('/');
    let announced = log.lines().filter(|l| l.contains(feed) && l.contains("listening")).count();
    assert_eq!(announced, 0, "the feed address is announced twice:\n{log}");
    engine.signal(libc::SIGTERM);
    assert_eq!(engine.wait_exit(Duration::from_secs(30)), 0);
}
