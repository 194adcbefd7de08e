//! `make install` (scripts/install.sh) staged into a directory: binary, config, secrets
//! template and the hardened systemd unit land where the unit expects them.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// The names of an ELF64 little-endian file's sections.
fn elf_sections(p: &Path) -> Vec<String> {
    let b = std::fs::read(p).unwrap();
    assert_eq!(&b[..6], b"\x7fELF\x02\x01", "{}: not an ELF64 little-endian file", p.display());
    let u16_at = |o: usize| u16::from_le_bytes(b[o..o + 2].try_into().unwrap()) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap()) as usize;
    let (shoff, shentsize, shnum, shstrndx) =
        (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
    let header = |i: usize| shoff + i * shentsize;
    let names = u64_at(header(shstrndx) + 0x18);
    (0..shnum)
        .map(|i| {
            let start = names + u32_at(header(i));
            let end = start + b[start..].iter().position(|&c| c == 0).unwrap();
            String::from_utf8_lossy(&b[start..end]).into_owned()
        })
        .collect()
}

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
    // Every message names the staged paths, not the live system's.
    let said = String::from_utf8_lossy(&out.stdout);
    for path in ["etc/scalper/scalper.toml", "etc/scalper/secrets.env"] {
        assert!(said.contains(&d.join(path).display().to_string()), "{path} not named: {said}");
    }
    assert!(!said.contains(" /etc/"), "a message names the live system: {said}");
    assert_eq!(mode(&d.join("usr/local/bin/scalper")), 0o755);
    // Debug info is dropped from the installed binary (the test build has plenty).
    // (.debug_gdb_scripts is loaded data, not debug info: strip keeps it.)
    let debug = |p: &Path| {
        elf_sections(p).into_iter().filter(|s| s == ".debug_info" || s == ".debug_line").count()
    };
    assert!(debug(Path::new(env!("CARGO_BIN_EXE_scalper"))) > 0, "the test binary has debug info");
    assert_eq!(debug(&d.join("usr/local/bin/scalper")), 0, "the installed binary is stripped");
    let template = std::fs::read_to_string(d.join("etc/scalper/secrets.env")).unwrap();
    for key in [
        "DHAN_CLIENT_ID",
        "DHAN_ACCESS_TOKEN",
        "SCALPER_CONTROL_TOKEN",
        "PGPASSWORD",
        "REDIS_PASSWORD",
        "SCALPER_ALERT_ONCALL_URL",
    ] {
        assert!(template.contains(&format!("# {key}=\n")), "secrets template lacks {key}");
    }
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
