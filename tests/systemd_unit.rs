//! The shipped systemd unit (`config/scalper.service`) is hardened: `systemd-analyze security`
//! scores it at most 2.0 and `systemd-analyze verify` has nothing to say about it.
//!
//! `systemd-analyze` comes with the Debian package `systemd`; without it these tests fail
//! (they never skip), and `scripts/with-test-services` installs it when running as root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The highest exposure score the unit may have.
const MAX_EXPOSURE: f64 = 2.0;

fn systemd_analyze(args: &[&str]) -> Output {
    Command::new("systemd-analyze").args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run systemd-analyze ({e}); install the Debian package `systemd` \
             (apt-get install systemd), which provides it"
        )
    })
}

fn repo_unit() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/scalper.service")
}

/// A copy of the unit, named `scalper.service`, whose ExecStart runs the binary built for
/// these tests instead of `/usr/local/bin/scalper`. `verify` checks that the executable exists,
/// and the installed path does not exist on a build machine; everything else is the shipped
/// unit, byte for byte.
fn unit_copy(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(repo_unit()).unwrap();
    assert!(
        text.contains("ExecStart=/usr/local/bin/scalper "),
        "the unit's ExecStart no longer names /usr/local/bin/scalper; update this test"
    );
    let copy = dir.join("scalper.service");
    std::fs::write(
        &copy,
        text.replace(
            "ExecStart=/usr/local/bin/scalper ",
            &format!("ExecStart={} ", env!("CARGO_BIN_EXE_scalper")),
        ),
    )
    .unwrap();
    copy
}

/// The number in "Overall exposure level for scalper.service: 1.2 OK".
fn exposure(report: &str) -> Option<f64> {
    let line = report.lines().find(|l| l.contains("Overall exposure level"))?;
    let after = line.rsplit_once(':')?.1.trim();
    after.split_whitespace().next()?.parse().ok()
}

#[test]
fn exposure_score_is_at_most_two() {
    let unit = repo_unit();
    let out = systemd_analyze(&["security", "--offline=true", unit.to_str().unwrap()]);
    let report = String::from_utf8_lossy(&out.stdout);
    let score = exposure(&report).unwrap_or_else(|| {
        panic!(
            "no exposure score in the output of systemd-analyze security:\n{report}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let open: Vec<&str> = report.lines().filter(|l| l.starts_with('✗')).collect();
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} > {MAX_EXPOSURE}; what is still open:\n{}",
        open.join("\n")
    );
}

#[test]
fn verify_has_no_complaint() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_copy(dir.path());
    let out = systemd_analyze(&["verify", unit.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stderr.trim().is_empty() && stdout.trim().is_empty(),
        "systemd-analyze verify complains (status {}):\n{stdout}{stderr}",
        out.status
    );
}

#[test]
fn the_engine_keeps_what_it_needs() {
    let text = std::fs::read_to_string(repo_unit()).unwrap();
    let set: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.starts_with('#')).collect();
    for needed in [
        // mlockall without CAP_IPC_LOCK.
        "LimitMEMLOCK=infinity",
        // The notify socket and local PostgreSQL/Redis sockets, plus TCP.
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "Type=notify",
        "NotifyAccess=main",
        // @system-service holds mlockall (@memlock), sched_setaffinity (@resources),
        // epoll/eventfd (@io-event) and sockets (@network-io).
        "SystemCallFilter=@system-service",
    ] {
        assert!(set.contains(&needed), "the unit lacks {needed:?}");
    }
    // Nothing the engine needs may be taken away by a deny list.
    for line in set.iter().filter(|l| l.starts_with("SystemCallFilter=~")) {
        for group in ["@memlock", "@resources", "@io-event", "@network-io", "@ipc"] {
            assert!(!line.contains(group), "{line} denies {group}, which the engine needs");
        }
    }
}
