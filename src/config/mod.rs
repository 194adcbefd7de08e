//! The engine's configuration: one TOML file, parsed strictly (unknown keys are errors),
//! validated completely (every error at once, each with its key path) and handed to the rest
//! of the engine as typed values, so nothing downstream parses text again.
//!
//! - `raw.rs`: the file layout as written, with defaults; `parse.rs`: text → raw, collecting
//!   every unknown key and wrongly typed value; `types.rs`: the validated [`Config`];
//!   `validate.rs`: raw → typed; `value.rs`: exact decimals, rates and the error collector.
//! - `secrets.rs`: tokens from the environment or a private secrets file, never from the config.
//! - `reload.rs`: what a SIGHUP may change in a running engine; `check.rs`: `scalper check-config`.
//!
//! Relative paths in a file (`data_dir`, `secrets.file`, `store.sqlite_path`,
//! `store.spill_dir`, `redis.tls_ca_file`, `sim.scenario`) are relative to the file's directory, so a command finds
//! the same files from any working directory; [`Config::load`] makes them absolute.

mod check;
mod parse;
mod pg_url;
mod raw;
mod reload;
mod secrets;
mod types;
mod validate;
mod value;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

pub use check::check_config;
pub use pg_url::{PgRoots, PgSslMode, PgTls, split_tls};
pub use reload::{Change, Reload, ReloadError, plan_reload, reload_from_file};
pub use secrets::{
    CONTROL_TOKEN_FILE, CredentialSource, DHAN_ACCESS_TOKEN, DHAN_CLIENT_ID, PGPASSWORD,
    REDIS_PASSWORD, SCALPER_CONTROL_TOKEN, Secret, Secrets, SecretsError, control_token_path,
    generate_control_token, read_control_token_file, read_secrets_file,
};
pub use types::*;
pub use validate::{SIM_FEED_PATH, SIM_ORDER_UPDATE_PATH, SIM_REST_PATH};
pub use value::is_loopback_url;

/// One problem in a config file: the key path (`risk.ratchet[2].at_pct`), the reason, and the
/// line and column when the TOML layer knows them. Never carries a secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path; empty for a syntax error or an unreadable file.
    pub key: String,
    pub message: String,
    /// 1-based line and column in the file, when known.
    pub position: Option<(usize, usize)>,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError { key: key.into(), message: message.into(), position: None }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Every problem found in a config file. `Display` prints one per line, each prefixed with the
/// file (and line:column when known): `config.toml: risk.stop_loss_pct: 12.345 has more than
/// two decimals`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors {
    pub file: Option<PathBuf>,
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    pub fn new(file: Option<PathBuf>, errors: Vec<ConfigError>) -> ConfigErrors {
        ConfigErrors { file, errors }
    }

    fn with_file(mut self, file: &Path) -> ConfigErrors {
        self.file = Some(file.to_path_buf());
        self
    }

    /// One line per error, as printed by `check-config`.
    pub fn lines(&self) -> Vec<String> {
        self.errors
            .iter()
            .map(|e| match (&self.file, e.position) {
                (Some(f), Some((l, c))) => format!("{}:{l}:{c}: {e}", f.display()),
                (Some(f), None) => format!("{}: {e}", f.display()),
                (None, Some((l, c))) => format!("{l}:{c}: {e}"),
                (None, None) => e.to_string(),
            })
            .collect()
    }

    /// Whether any error is about `key` (exact key path).
    pub fn has(&self, key: &str) -> bool {
        self.errors.iter().any(|e| e.key == key)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines().join("\n"))
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Reads, parses and validates a config file, and makes its relative paths absolute
    /// against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::new(
                Some(path.to_path_buf()),
                vec![ConfigError::new("", format!("cannot read the file: {e}"))],
            )
        })?;
        let mut config = Config::from_toml_str(&text).map_err(|e| e.with_file(path))?;
        config.resolve_paths(&file_dir(path));
        Ok(config)
    }

    /// Joins every relative path of the configuration onto `base` (a directory without
    /// symlinks, so a leading `..` can be applied to it by name: `../data` → the parent's
    /// `data`).
    fn resolve_paths(&mut self, base: &Path) {
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() && !p.as_os_str().is_empty() {
                let mut out = base.to_path_buf();
                let mut rest = p.components().peekable();
                while let Some(c @ (Component::ParentDir | Component::CurDir)) = rest.peek() {
                    if *c == Component::ParentDir {
                        out.pop();
                    }
                    rest.next();
                }
                out.extend(rest);
                *p = out;
            }
        };
        rebase(&mut self.data_dir);
        if let Some(file) = &mut self.secrets.file {
            rebase(file);
        }
        if let StoreBackend::Sqlite { path } = &mut self.store.backend {
            rebase(path);
        }
        rebase(&mut self.store.spill_dir);
        if let Some(ca) = &mut self.redis.tls_ca_file {
            rebase(ca);
        }
        if let Some(scenario) = &mut self.sim.scenario {
            rebase(scenario);
        }
        if let Some(master) = &mut self.sim.master_file {
            rebase(master);
        }
        if let Some(master) = &mut self.instruments.master_file {
            rebase(master);
        }
    }

    /// Parses and validates config text, reporting every error at once: unknown keys, wrongly
    /// typed values and unknown enum variants (with key path, line and column) followed by the
    /// validation errors of the rest of the file. A syntax error is reported alone.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigErrors> {
        let parse::Parsed { raw, mut errors, removed } = parse::parse(text)?;
        let invalid = match validate::validate(&raw) {
            Ok(config) if errors.is_empty() => return Ok(config),
            Ok(_) => Vec::new(),
            Err(e) => e.errors,
        };
        // A removed key was validated as its default: what validation says about it is noise.
        let about_removed = |key: &str| {
            removed.iter().any(|r| {
                key.strip_prefix(r.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
            })
        };
        errors.extend(invalid.into_iter().filter(|e| !about_removed(&e.key)));
        Err(ConfigErrors::new(None, errors))
    }

    /// Rewrites every loopback URL with port 0 (`feed.url`, `broker.rest_url`,
    /// `broker.order_update_url`) to the in-process simulator's bound address. Called by the
    /// engine once the simulator is listening, when `sim.listen` asked for port 0.
    pub fn bind_simulator(&mut self, bound: SocketAddr) {
        for url in
            [&mut self.feed.url, &mut self.broker.rest_url, &mut self.broker.order_update_url]
        {
            if url.port() == Some(0) && is_loopback_url(url) {
                // Both calls only fail for URLs that cannot have a host (not ws/http).
                let _ = url.set_ip_host(bound.ip());
                let _ = url.set_port(Some(bound.port()));
            }
        }
        self.sim.listen = bound;
    }

    /// Short summary for logs and `check-config`: mode, broker and store, e.g.
    /// `live, dhan, postgres`.
    pub fn summary(&self) -> String {
        format!("{}, {}, {}", self.mode, self.broker.kind, self.store.backend.kind())
    }
}

impl Default for Config {
    /// The configuration of an empty file: paper mode against the in-process simulator.
    fn default() -> Config {
        Config::from_toml_str("").expect("the built-in defaults form a valid paper configuration")
    }
}

/// The directory of a config file, absolute and with symlinks resolved (`config/x.toml` →
/// `<cwd>/config`).
fn file_dir(path: &Path) -> PathBuf {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::canonicalize(dir)
        .or_else(|_| std::path::absolute(dir))
        .unwrap_or_else(|_| dir.to_path_buf())
}

#[cfg(test)]
mod tests;

impl Config {
    /// The exit core's parameters: the `[risk]`, `[limits]`, `[session]`, `[charges]` and
    /// `[exit_retry]` tables.
    pub fn core_params(&self) -> crate::exec::core::CoreParams {
        crate::exec::core::CoreParams {
            risk: self.risk.clone(),
            limits: self.limits.clone(),
            session: self.session.clone(),
            charges: self.charges.clone(),
            exit_retry: self.exit_retry,
        }
    }

    /// What `scalper replay` runs with: the core's parameters and the paper broker's.
    pub fn replay_params(&self) -> crate::replay::ReplayParams {
        // The master of `instruments.master_file`, when it reads: replay charges a leg above
        // the freeze quantity per child order, as the engine does. Replay never downloads.
        let instruments = self
            .instruments
            .master_file
            .as_ref()
            .and_then(|path| std::fs::read(path).ok())
            .and_then(|bytes| crate::instruments::parse::parse_master(bytes.as_slice()).ok())
            .map(crate::instruments::SharedInstruments::new);
        crate::replay::ReplayParams {
            core: self.core_params(),
            paper: self.paper.clone(),
            instruments,
        }
    }
}
