//! Secrets: the Dhan credentials, the control API token, database passwords and the alert
//! targets' URLs and bot tokens (`SCALPER_ALERT_<NAME>_URL`, `SCALPER_ALERT_<NAME>_BOT_TOKEN`).
//! They come from the environment or from the `KEY=VALUE` file named by `[secrets] file` (the
//! environment wins), never from the config file itself, and they never appear in a log,
//! error, panic or `Debug` output: [`Secret`] prints `***`.
//!
//! `Config::load` validates the file; [`Secrets::resolve`] is called once at startup with the
//! validated config and applies the mode's rules (live mode needs real credentials, paper mode
//! against the simulator falls back to the simulator's own). [`generate_control_token`] makes
//! the paper-mode control token when none is configured.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::types::{ALERT_SECRET_PREFIX, Config, FeedSource, Mode};
pub use crate::domain::Secret;

/// Name of the file holding the generated paper-mode control token, inside `data_dir`.
pub const CONTROL_TOKEN_FILE: &str = "control-token";
/// The shortest control token accepted in live mode.
pub const MIN_CONTROL_TOKEN_LEN: usize = 16;

/// Environment / secrets-file keys.
pub const DHAN_CLIENT_ID: &str = "DHAN_CLIENT_ID";
pub const DHAN_ACCESS_TOKEN: &str = "DHAN_ACCESS_TOKEN";
pub const SCALPER_CONTROL_TOKEN: &str = "SCALPER_CONTROL_TOKEN";
pub const PGPASSWORD: &str = "PGPASSWORD";
pub const REDIS_PASSWORD: &str = "REDIS_PASSWORD";
const KNOWN_KEYS: [&str; 5] =
    [DHAN_CLIENT_ID, DHAN_ACCESS_TOKEN, SCALPER_CONTROL_TOKEN, PGPASSWORD, REDIS_PASSWORD];

/// Why the secrets could not be resolved. No variant carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "secrets file {} has mode {mode:04o}: it must not be readable or writable by group or \
         others (chmod 600 {})",
        path.display(),
        path.display()
    )]
    InsecureFile { path: PathBuf, mode: u32 },
    #[error("reading secrets file {}: {source}", path.display())]
    ReadFile { path: PathBuf, source: io::Error },
    #[error("secrets file {} line {line}: {reason}", path.display())]
    BadLine { path: PathBuf, line: usize, reason: String },
    #[error(
        "{mode} mode needs {}: set them in the environment or in the secrets file",
        keys.join(", ")
    )]
    Missing { mode: Mode, keys: Vec<&'static str> },
    #[error(
        "[alerts] targets need {}: set them in the environment or in the secrets file",
        keys.join(", ")
    )]
    MissingAlert { keys: Vec<String> },
    #[error("{key} is not an http:// or https:// URL with a host (value not shown)")]
    BadAlertUrl { key: String },
    #[error("{key} is shorter than {min} characters", min = MIN_CONTROL_TOKEN_LEN)]
    TooShort { key: &'static str },
    #[error("writing control token {}: {source}", path.display())]
    WriteToken { path: PathBuf, source: io::Error },
    #[error("reading random bytes from /dev/urandom for the control token: {0}")]
    Random(io::Error),
}

/// Where a Dhan credential came from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    Environment,
    SecretsFile,
    /// The simulator's own (`[sim] client_id`/`access_token`), paper mode against the simulator.
    Simulator,
}

/// The resolved secrets. `Debug` shows only `***`.
#[derive(Clone, Debug)]
pub struct Secrets {
    pub dhan_client_id: Secret,
    pub dhan_access_token: Secret,
    /// Where the Dhan credentials came from (for the startup log line).
    pub dhan_source: CredentialSource,
    /// `None` in paper mode when not configured: call [`generate_control_token`].
    pub control_token: Option<Secret>,
    pub pg_password: Option<Secret>,
    pub redis_password: Option<Secret>,
    /// `[[alerts.targets]]` name → its URL (webhook, Slack) or bot token (Telegram), from
    /// `SCALPER_ALERT_<NAME>_URL` / `SCALPER_ALERT_<NAME>_BOT_TOKEN`.
    pub alert_targets: BTreeMap<String, Secret>,
}

impl Secrets {
    /// Resolves the secrets from the process environment and the configured secrets file.
    pub fn from_process_env(config: &Config) -> Result<Secrets, SecretsError> {
        Secrets::resolve(config, |key| std::env::var(key).ok())
    }

    /// Resolves the secrets: each key from `env` if set and non-empty, else from the secrets
    /// file. Live mode needs `DHAN_CLIENT_ID`, `DHAN_ACCESS_TOKEN` and `SCALPER_CONTROL_TOKEN`
    /// (at least 16 characters). With `feed.source = "sim"` missing Dhan credentials default to
    /// the simulator's; otherwise they are required too (the feed needs them).
    pub fn resolve(
        config: &Config,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Secrets, SecretsError> {
        let file = match &config.secrets.file {
            Some(path) => read_secrets_file(path)?,
            None => BTreeMap::new(),
        };
        let lookup = |key: &'static str| -> Option<(Secret, CredentialSource)> {
            match env(key).filter(|v| !v.is_empty()) {
                Some(v) => Some((Secret::new(v), CredentialSource::Environment)),
                None => file.get(key).map(|v| (v.clone(), CredentialSource::SecretsFile)),
            }
        };
        let live = config.mode == Mode::Live;
        let client_id = lookup(DHAN_CLIENT_ID);
        let access_token = lookup(DHAN_ACCESS_TOKEN);
        let control_token = lookup(SCALPER_CONTROL_TOKEN).map(|(s, _)| s);

        let sim_fallback = !live && config.feed.source == FeedSource::Sim;
        let mut missing = Vec::new();
        let (dhan_client_id, dhan_access_token, dhan_source) = match (client_id, access_token) {
            (Some((id, src)), Some((token, _))) => (id, token, src),
            (id, token) if sim_fallback => {
                // Both or neither: mixing a real client id with the simulator's token would
                // only produce a confusing authentication failure.
                if id.is_some() || token.is_some() {
                    log::warn!(
                        target: "config",
                        "only one of {DHAN_CLIENT_ID}/{DHAN_ACCESS_TOKEN} is set; using the \
                         simulator's credentials"
                    );
                }
                (
                    config.sim.client_id.clone(),
                    config.sim.access_token.clone(),
                    CredentialSource::Simulator,
                )
            }
            (id, token) => {
                if id.is_none() {
                    missing.push(DHAN_CLIENT_ID);
                }
                if token.is_none() {
                    missing.push(DHAN_ACCESS_TOKEN);
                }
                (Secret::default(), Secret::default(), CredentialSource::Environment)
            }
        };
        if live && control_token.is_none() {
            missing.push(SCALPER_CONTROL_TOKEN);
        }
        if !missing.is_empty() {
            return Err(SecretsError::Missing { mode: config.mode, keys: missing });
        }
        let mut alert_targets = BTreeMap::new();
        let mut missing_alerts = Vec::new();
        for target in &config.alerts.targets {
            let key = target.secret_key();
            let value = env(&key)
                .filter(|v| !v.is_empty())
                .map(Secret::new)
                .or_else(|| file.get(key.as_str()).cloned());
            match value {
                Some(v) => {
                    if target.kind != super::types::AlertTargetKind::Telegram
                        && !is_http_url(v.expose())
                    {
                        return Err(SecretsError::BadAlertUrl { key });
                    }
                    alert_targets.insert(target.name.clone(), v);
                }
                None => missing_alerts.push(key),
            }
        }
        if !missing_alerts.is_empty() {
            return Err(SecretsError::MissingAlert { keys: missing_alerts });
        }
        if live && control_token.as_ref().is_some_and(|t| t.expose().len() < MIN_CONTROL_TOKEN_LEN)
        {
            return Err(SecretsError::TooShort { key: SCALPER_CONTROL_TOKEN });
        }
        Ok(Secrets {
            dhan_client_id,
            dhan_access_token,
            dhan_source,
            control_token,
            pg_password: lookup(PGPASSWORD).map(|(s, _)| s),
            redis_password: lookup(REDIS_PASSWORD).map(|(s, _)| s),
            alert_targets,
        })
    }

    /// The configured control token, or (paper mode) the one in `<data_dir>/control-token`:
    /// kept from an earlier start when that file is still a private, well-formed token,
    /// generated afresh otherwise.
    pub fn control_token_or_generate(&self, config: &Config) -> Result<Secret, SecretsError> {
        match &self.control_token {
            Some(t) => Ok(t.clone()),
            None => match kept_control_token(&config.data_dir) {
                Some(t) => Ok(t),
                None => generate_control_token(&config.data_dir),
            },
        }
    }
}

/// Reads a `KEY=VALUE` secrets file after checking that only its owner can read or write it.
/// Blank lines and `#` comments are skipped, an `export ` prefix and quotes around the value
/// are allowed (so the same file works as a shell include and a systemd `EnvironmentFile`).
/// Unknown keys are refused: a misspelt key would otherwise look like a missing secret. Keys
/// starting with `SCALPER_ALERT_` are the alert targets' (see `[alerts]`).
pub fn read_secrets_file(path: &Path) -> Result<BTreeMap<String, Secret>, SecretsError> {
    let read_err = |source| SecretsError::ReadFile { path: path.to_path_buf(), source };
    let mut file = fs::File::open(path).map_err(read_err)?;
    let mode = file.metadata().map_err(read_err)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(SecretsError::InsecureFile { path: path.to_path_buf(), mode: mode & 0o7777 });
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(read_err)?;
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let bad = |reason: String| SecretsError::BadLine {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(bad("expected KEY=VALUE".into()));
        };
        let key = key.trim();
        let alert_key = key.len() > ALERT_SECRET_PREFIX.len()
            && key.starts_with(ALERT_SECRET_PREFIX)
            && key.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        let Some(known) = KNOWN_KEYS
            .iter()
            .copied()
            .find(|k| *k == key)
            .map(str::to_string)
            .or_else(|| alert_key.then(|| key.to_string()))
        else {
            return Err(bad(format!(
                "unknown key {key:?} (expected one of {}, or {ALERT_SECRET_PREFIX}<NAME>_URL / _BOT_TOKEN)",
                KNOWN_KEYS.join(", ")
            )));
        };
        let value = value.trim();
        let value = strip_quotes(value);
        out.insert(known, Secret::new(value));
    }
    Ok(out)
}

/// Whether `v` is an http(s) URL with a host (an alert target's webhook).
fn is_http_url(v: &str) -> bool {
    url::Url::parse(v.trim()).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
    })
}

fn strip_quotes(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

/// Where the paper-mode control token is written: `<data_dir>/control-token`.
pub fn control_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(CONTROL_TOKEN_FILE)
}

/// Generates a random control token (32 bytes from the OS, hex) and writes it to
/// `<data_dir>/control-token` with mode 0600, replacing any previous one atomically. Local
/// tools (`scalper status`, `scalper flatten`) read it from there.
pub fn generate_control_token(data_dir: &Path) -> Result<Secret, SecretsError> {
    let mut bytes = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(SecretsError::Random)?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();

    let path = control_token_path(data_dir);
    let tmp = data_dir.join(format!(".{CONTROL_TOKEN_FILE}.tmp"));
    let write_err = |source| SecretsError::WriteToken { path: path.clone(), source };
    fs::create_dir_all(data_dir).map_err(write_err)?;
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(write_err(e)),
    }
    // Created 0600 from the start, so the token is never readable by others, not even briefly.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(write_err)?;
    f.write_all(token.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .map_err(write_err)?;
    fs::rename(&tmp, &path).map_err(write_err)?;
    Ok(Secret::new(token))
}

/// The token an earlier start generated, if `<data_dir>/control-token` is a regular file (not
/// a symlink) that only its owner can read or write and holds a token of the generated form
/// (64 hex digits). Anything else is replaced: a token others could read may have leaked.
fn kept_control_token(data_dir: &Path) -> Option<Secret> {
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(control_token_path(data_dir))
        .ok()?;
    let meta = f.metadata().ok()?;
    if !meta.is_file() || meta.permissions().mode() & 0o077 != 0 {
        return None;
    }
    let mut text = String::new();
    f.read_to_string(&mut text).ok()?;
    let token = text.trim();
    (token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())).then(|| Secret::new(token))
}

/// Reads the control token written by [`generate_control_token`] (for local tools).
pub fn read_control_token_file(data_dir: &Path) -> Result<Secret, SecretsError> {
    let path = control_token_path(data_dir);
    let text = fs::read_to_string(&path)
        .map_err(|source| SecretsError::ReadFile { path: path.clone(), source })?;
    Ok(Secret::new(text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_type_errors_do_not_echo_the_value() {
        #[derive(serde::Deserialize)]
        struct T {
            #[allow(dead_code)]
            t: Secret,
        }
        let err = toml::from_str::<T>("t = 987654321\n").err().unwrap();
        assert!(!err.message().contains("987654321"), "{}", err.message());
        assert!(err.message().contains("value not shown"), "{}", err.message());
    }

    #[test]
    fn quotes_and_export_are_accepted_in_the_secrets_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.env");
        fs::write(
            &path,
            "# comment\n\nexport DHAN_CLIENT_ID=\"11\"\nDHAN_ACCESS_TOKEN='tok=en'\nPGPASSWORD=pw\n",
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let m = read_secrets_file(&path).unwrap();
        assert_eq!(m[DHAN_CLIENT_ID].expose(), "11");
        assert_eq!(m[DHAN_ACCESS_TOKEN].expose(), "tok=en");
        assert_eq!(m[PGPASSWORD].expose(), "pw");
    }

    #[test]
    fn secrets_file_errors_name_the_line_but_never_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.env");
        for (text, want) in [
            ("DHAN_ACCES_TOKEN=hunter2\n", "line 1: unknown key \"DHAN_ACCES_TOKEN\""),
            ("\nhunter2\n", "line 2: expected KEY=VALUE"),
        ] {
            fs::write(&path, text).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            let err = read_secrets_file(&path).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn secrets_file_with_group_or_other_bits_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.env");
        fs::write(&path, "DHAN_CLIENT_ID=1\n").unwrap();
        for (mode, ok) in
            [(0o600, true), (0o400, true), (0o640, false), (0o644, false), (0o602, false)]
        {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let r = read_secrets_file(&path);
            assert_eq!(r.is_ok(), ok, "mode {mode:o}");
            if !ok {
                let err = r.unwrap_err().to_string();
                assert!(err.contains(&format!("mode {mode:04o}")), "{err}");
                assert!(err.contains(&path.display().to_string()), "{err}");
            }
        }
    }

    #[test]
    fn generated_control_token_is_random_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let a = generate_control_token(&data).unwrap();
        let path = control_token_path(&data);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(a.expose().len(), 64);
        assert_eq!(read_control_token_file(&data).unwrap(), a);
        let b = generate_control_token(&data).unwrap();
        assert_ne!(a, b);
        assert_eq!(read_control_token_file(&data).unwrap(), b);
    }

    fn config(text: &str) -> Config {
        Config::from_toml_str(text).unwrap()
    }

    #[test]
    fn the_generated_control_token_is_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let cfg = config(&format!("data_dir = {:?}\n", data.display().to_string()));
        let paper = Secrets::resolve(&cfg, env(&[])).unwrap();
        let first = paper.control_token_or_generate(&cfg).unwrap();
        let second = paper.control_token_or_generate(&cfg).unwrap();
        assert_eq!(first, second, "a restart keeps the token status/flatten already read");
        assert_eq!(read_control_token_file(&data).unwrap(), first);

        // A token others could read, a truncated one or a symlink is replaced.
        let path = control_token_path(&data);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let third = paper.control_token_or_generate(&cfg).unwrap();
        assert_ne!(third, first);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        fs::write(&path, "abc\n").unwrap();
        let fourth = paper.control_token_or_generate(&cfg).unwrap();
        assert_ne!(fourth.expose(), "abc");
        assert_eq!(fourth.expose().len(), 64);
        let elsewhere = dir.path().join("other-token");
        fs::write(&elsewhere, format!("{}\n", "a".repeat(64))).unwrap();
        fs::set_permissions(&elsewhere, fs::Permissions::from_mode(0o600)).unwrap();
        fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
        let fifth = paper.control_token_or_generate(&cfg).unwrap();
        assert_ne!(fifth.expose(), "a".repeat(64));
        assert_eq!(read_control_token_file(&data).unwrap(), fifth);
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn environment_wins_over_the_secrets_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.env");
        fs::write(&path, "DHAN_CLIENT_ID=from-file\nDHAN_ACCESS_TOKEN=file-token\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let cfg = config(&format!("[secrets]\nfile = {:?}\n", path.display().to_string()));
        let s = Secrets::resolve(&cfg, env(&[(DHAN_ACCESS_TOKEN, "env-token")])).unwrap();
        assert_eq!(s.dhan_client_id.expose(), "from-file");
        assert_eq!(s.dhan_access_token.expose(), "env-token");
        assert_eq!(s.dhan_source, CredentialSource::SecretsFile);
        assert!(s.control_token.is_none(), "paper mode generates one at startup");
    }

    #[test]
    fn paper_against_the_simulator_falls_back_to_its_credentials() {
        let cfg = config("");
        let s = Secrets::resolve(&cfg, env(&[])).unwrap();
        assert_eq!(s.dhan_source, CredentialSource::Simulator);
        assert_eq!(s.dhan_access_token, cfg.sim.access_token);
        assert_eq!(s.dhan_client_id, cfg.sim.client_id);
    }

    #[test]
    fn paper_on_the_real_feed_needs_dhan_credentials() {
        let cfg = config("[feed]\nsource = \"dhan\"\n");
        let err = Secrets::resolve(&cfg, env(&[])).unwrap_err().to_string();
        assert_eq!(
            err,
            "paper mode needs DHAN_CLIENT_ID, DHAN_ACCESS_TOKEN: set them in the environment or \
             in the secrets file"
        );
    }

    #[test]
    fn live_mode_needs_every_credential_and_a_long_control_token() {
        let cfg = config("mode = \"live\"\n[limits]\nmax_daily_loss_rupees = 1000\n");
        let err = Secrets::resolve(&cfg, env(&[(DHAN_CLIENT_ID, "1")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "live mode needs DHAN_ACCESS_TOKEN, SCALPER_CONTROL_TOKEN: set them in the \
             environment or in the secrets file"
        );
        let short =
            [(DHAN_CLIENT_ID, "1"), (DHAN_ACCESS_TOKEN, "t"), (SCALPER_CONTROL_TOKEN, "short")];
        assert!(matches!(Secrets::resolve(&cfg, env(&short)), Err(SecretsError::TooShort { .. })));
        let full = [
            (DHAN_CLIENT_ID, "1"),
            (DHAN_ACCESS_TOKEN, "token-abc"),
            (SCALPER_CONTROL_TOKEN, "0123456789abcdef"),
        ];
        let s = Secrets::resolve(&cfg, env(&full)).unwrap();
        assert_eq!(s.dhan_source, CredentialSource::Environment);
        assert_eq!(s.control_token_or_generate(&cfg).unwrap().expose(), "0123456789abcdef");
        let shown = format!("{s:?}");
        assert!(!shown.contains("token-abc") && !shown.contains("0123456789abcdef"), "{shown}");
    }

    #[test]
    fn a_configured_but_missing_secrets_file_is_an_error() {
        let cfg = config("[secrets]\nfile = \"/nonexistent/scalper.env\"\n");
        let err = Secrets::resolve(&cfg, env(&[])).unwrap_err().to_string();
        assert!(err.starts_with("reading secrets file /nonexistent/scalper.env:"), "{err}");
    }
}
