//! `make install` (scripts/install.sh) staged into a directory: binary, config, secrets
//! template and the hardened systemd unit land where the unit expects them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode()
        & 0o777
}

#[test]
fn install_stages_binary_config_secrets_and_unit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dest = tempfile::tempdir().unwrap();
    let out = Command::new(root.join("scripts/install.sh"))
        .env("DESTDIR", dest.path())
        .env("PREFIX", "/usr/local")
        .env("BIN", env!("CARGO_BIN_EXE_scalper"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let d = dest.path();
    assert_eq!(mode(&d.join("usr/local/bin/scalper")), 0o755);
    assert_eq!(mode(&d.join("etc/scalper/scalper.toml")), 0o640);
    assert_eq!(mode(&d.join("etc/scalper/secrets.env")), 0o600, "secrets are owner-only");
    let installed = Command::new(d.join("usr/local/bin/scalper")).arg("version").output().unwrap();
    assert!(String::from_utf8_lossy(&installed.stdout).starts_with("scalper "));

    let unit = std::fs::read_to_string(d.join("etc/systemd/system/scalper.service")).unwrap();
    for line in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=always",
        "User=scalper",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ReadWritePaths=/var/lib/scalper",
        "LimitMEMLOCK=infinity",
        "ExecStart=/usr/local/bin/scalper run --config /etc/scalper/scalper.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(unit.contains(line), "unit lacks {line:?}");
    }
    // The installed example config is the production one and it validates.
    let check = Command::new(env!("CARGO_BIN_EXE_scalper"))
        .arg("check-config")
        .arg(d.join("etc/scalper/scalper.toml"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));

    // Installing again never overwrites the operator's config.
    std::fs::write(d.join("etc/scalper/scalper.toml"), "# edited\n").unwrap();
    let again = Command::new(root.join("scripts/install.sh"))
        .env("DESTDIR", d)
        .env("BIN", env!("CARGO_BIN_EXE_scalper"))
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(std::fs::read_to_string(d.join("etc/scalper/scalper.toml")).unwrap(), "# edited\n");
}
