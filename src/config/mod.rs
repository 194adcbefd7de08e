//! The engine's configuration: one TOML file, parsed strictly (unknown keys are errors),
//! validated completely (every error at once, each with its key path) and handed to the rest
//! of the engine as typed values, so nothing downstream parses text again.
//!
//! - `raw.rs`: the file layout as written, with defaults; `types.rs`: the validated [`Config`];
//!   `validate.rs`: raw → typed; `value.rs`: exact decimals, rates and the error collector.
//! - `secrets.rs`: tokens from the environment or a private secrets file, never from the config.
//! - `reload.rs`: what a SIGHUP may change in a running engine; `check.rs`: `scalper check-config`.
//!
//! Relative paths in the file (`data_dir`, `secrets.file`, `store.*`, `sim.scenario`) are
//! relative to the engine's working directory.

mod check;
mod raw;
mod reload;
mod secrets;
mod types;
mod validate;
mod value;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use check::check_config;
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
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors::new(
                Some(path.to_path_buf()),
                vec![ConfigError::new("", format!("cannot read the file: {e}"))],
            )
        })?;
        Config::from_toml_str(&text).map_err(|e| e.with_file(path))
    }

    /// Parses and validates config text. Syntax errors, unknown keys and wrongly typed values
    /// are reported one at a time (by the TOML layer), with key path, line and column; once
    /// the text parses, every validation error is reported at once.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigErrors> {
        let raw = parse_raw(text)?;
        validate::validate(&raw)
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

fn parse_raw(text: &str) -> Result<raw::RawConfig, ConfigErrors> {
    let position = |span: Option<std::ops::Range<usize>>| span.map(|s| line_col(text, s.start));
    let de = toml::Deserializer::parse(text).map_err(|e| {
        ConfigErrors::new(
            None,
            vec![ConfigError {
                key: String::new(),
                message: e.message().trim().to_string(),
                position: position(e.span()),
            }],
        )
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        let inner = e.into_inner();
        ConfigErrors::new(
            None,
            vec![ConfigError {
                key,
                message: inner.message().trim().to_string(),
                position: position(inner.span()),
            }],
        )
    })
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
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
        crate::replay::ReplayParams { core: self.core_params(), paper: self.paper.clone() }
    }
}
