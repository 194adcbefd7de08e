//! `scalper status` and `scalper flatten`: talk to a running engine over its HTTP API and print
//! a readable summary. The engine writes its bound address to `<data_dir>/http.addr`
//! (`127.0.0.1:PORT`) at startup; the control token comes from `SCALPER_CONTROL_TOKEN` or
//! `<data_dir>/control-token`.
//!
//! Exit codes: 0 done (status: the engine is healthy), 1 the engine is unreachable, unhealthy
//! or refused, 2 bad configuration.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::cli::{EXIT_FAILURE, EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE};
use crate::config::{Config, SCALPER_CONTROL_TOKEN, Secret, read_control_token_file};

/// The file, inside `data_dir`, holding the engine's HTTP address.
pub const HTTP_ADDR_FILE: &str = "http.addr";

/// A running engine's API.
pub struct Remote {
    base: String,
    token: Secret,
    agent: ureq::Agent,
}

impl Remote {
    /// Finds the engine of `config` (its address file and control token).
    pub fn locate(config: &Config) -> Result<Remote, String> {
        let path = config.data_dir.join(HTTP_ADDR_FILE);
        let addr = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "cannot read the engine's address from {}: {e} (is it running?)",
                path.display()
            )
        })?;
        let addr = addr.trim();
        if addr.is_empty() {
            return Err(format!("{} is empty", path.display()));
        }
        let token = match std::env::var(SCALPER_CONTROL_TOKEN).ok().filter(|t| !t.is_empty()) {
            Some(t) => Secret::new(t),
            None => read_control_token_file(&config.data_dir).map_err(|e| {
                format!(
                    "no control token: set {SCALPER_CONTROL_TOKEN} or provide the token file ({e})"
                )
            })?,
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .timeout_connect(Some(Duration::from_secs(2)))
            .build()
            .into();
        Ok(Remote { base: format!("http://{addr}"), token, agent })
    }

    /// `GET path` (with the bearer token for `/v1/`): status and JSON body.
    pub fn get(&self, path: &str) -> Result<(u16, Value), String> {
        let url = format!("{}{path}", self.base);
        let mut req = self.agent.get(&url);
        if path.starts_with("/v1/") {
            req = req.header("Authorization", &format!("Bearer {}", self.token.expose()));
        }
        let resp = req.call().map_err(|e| format!("GET {url}: {e}"))?;
        read(resp, &url)
    }

    /// `GET path` that must answer 200: its JSON body, or the engine's error (a wrong control
    /// token is 401).
    pub fn get_ok(&self, path: &str) -> Result<Value, String> {
        match self.get(path)? {
            (200, body) => Ok(body),
            (code, body) => Err(format!("{path} answered {code}: {}", s(&body["error"]))),
        }
    }

    /// `POST path` with an empty JSON body and the bearer token.
    pub fn post(&self, path: &str) -> Result<(u16, Value), String> {
        let url = format!("{}{path}", self.base);
        let resp = self
            .agent
            .post(&url)
            .header("Authorization", &format!("Bearer {}", self.token.expose()))
            .header("Content-Type", "application/json")
            .send("")
            .map_err(|e| format!("POST {url}: {e}"))?;
        read(resp, &url)
    }
}

fn read(mut resp: ureq::http::Response<ureq::Body>, url: &str) -> Result<(u16, Value), String> {
    let status = resp.status().as_u16();
    let body: Value = resp
        .body_mut()
        .read_json()
        .map_err(|e| format!("{url} answered {status} with a body that is not JSON: {e}"))?;
    Ok((status, body))
}

fn load(path: &Path) -> Result<Config, u8> {
    Config::load(path).map_err(|errors| {
        for line in errors.lines() {
            eprintln!("{line}");
        }
        EXIT_USAGE
    })
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `scalper status --config FILE`.
pub fn status(config: &Path) -> u8 {
    let config = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let summary = Remote::locate(&config).and_then(|r| {
        let (code, health) = r.get("/health")?;
        if code != 200 && code != 503 {
            return Err(format!("/health answered {code}"));
        }
        let positions = r.get_ok("/v1/positions")?;
        let pnl = r.get_ok("/v1/pnl")?;
        Ok((code, render_status(&r.base, &health, &positions, &pnl)))
    });
    match summary {
        Ok((code, text)) => {
            print!("{text}");
            if code == 200 { EXIT_OK } else { EXIT_UNHEALTHY }
        }
        Err(e) => {
            eprintln!("scalper status: {e}");
            EXIT_FAILURE
        }
    }
}

/// The readable status: health and trading, workers, positions with PnL, the day.
pub fn render_status(base: &str, health: &Value, positions: &Value, pnl: &Value) -> String {
    let mut out = String::new();
    let trading = &pnl["trading"];
    out.push_str(&format!(
        "engine {base}: {} ({} mode); trading {} ({} since {})\n",
        s(&health["status"]),
        s(&health["mode"]),
        s(&trading["state"]),
        s(&trading["reason"]),
        s(&trading["since"]),
    ));
    if let Some(workers) = health["workers"].as_array() {
        let list: Vec<String> = workers
            .iter()
            .map(|w| {
                let restarts = w["restarts"].as_u64().unwrap_or(0);
                let stuck = if w["stuck"].as_bool() == Some(true) { ", stuck" } else { "" };
                let restarts =
                    if restarts > 0 { format!(", {restarts} restarts") } else { String::new() };
                format!("{} {}{restarts}{stuck}", s(&w["name"]), s(&w["state"]))
            })
            .collect();
        out.push_str(&format!("workers: {}\n", list.join("; ")));
    }
    if let Some(components) = health["components"].as_object() {
        for (name, c) in components.iter().filter(|(_, c)| c["status"] != "ok") {
            out.push_str(&format!("  {name}: {} {}\n", s(&c["status"]), s(&c["reason"])));
        }
    }
    let list = positions["positions"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!("positions: {}\n", list.len()));
    for p in &list {
        let stale = if p["price_is_stale"].as_bool() == Some(true) { " (stale)" } else { "" };
        let blocked = &p["exit_blocked"];
        let blocked = if blocked.is_null() {
            String::new()
        } else {
            format!(" ({}: {})", s(&blocked["cause"]), s(&blocked["reason"]))
        };
        let instrument = match p["symbol"].as_str() {
            Some(sym) => format!("{sym} ({})", s(&p["instrument"])),
            None => s(&p["instrument"]),
        };
        out.push_str(&format!(
            "  {} {} {} {} entry {} last {}{stale} unrealised {} {}{blocked}\n",
            s(&p["id"]),
            instrument,
            s(&p["side"]),
            s(&p["quantity"]),
            s(&p["entry_price"]),
            s(&p["last_price"]),
            s(&p["unrealised_pnl"]),
            s(&p["state"]),
        ));
    }
    out.push_str(&format!(
        "day PnL {} (realised net {}, unrealised {}, charges {}); {} trades, {} closed; daily loss limit {}\n",
        s(&pnl["day_pnl"]),
        s(&pnl["realised_net"]),
        s(&pnl["unrealised_gross"]),
        s(&pnl["charges"]),
        s(&pnl["trades_today"]),
        s(&pnl["closed_today"]),
        s(&pnl["max_daily_loss"]),
    ));
    if !pnl["paper_cash"].is_null() {
        out.push_str(&format!("paper cash {}\n", s(&pnl["paper_cash"])));
    }
    out
}

/// `scalper flatten --config FILE`: the kill switch.
pub fn flatten(config: &Path) -> u8 {
    let config = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match Remote::locate(&config).and_then(|r| r.post("/v1/flatten")) {
        Ok((200, body)) => {
            print!("{}", render_flatten(&body));
            EXIT_OK
        }
        Ok((code, body)) => {
            eprintln!("scalper flatten: the engine answered {code}: {}", s(&body["error"]));
            EXIT_FAILURE
        }
        Err(e) => {
            eprintln!("scalper flatten: {e}");
            EXIT_FAILURE
        }
    }
}

/// What the kill switch did, readably.
pub fn render_flatten(body: &Value) -> String {
    let exits = body["exits"].as_array().cloned().unwrap_or_default();
    let mut out = format!(
        "kill switch: {} positions exiting, {} already exiting; trading {} ({})\n",
        exits.len(),
        s(&body["already_exiting"]),
        s(&body["trading"]["state"]),
        s(&body["trading"]["reason"]),
    );
    for e in &exits {
        out.push_str(&format!(
            "  {} exit order {} at last price {}\n",
            s(&e["position_id"]),
            s(&e["correlation_id"]),
            s(&e["price"]),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flatten_summary_names_every_exit_and_the_trading_state() {
        let body = json!({
            "exits": [{ "position_id": "P1-1", "correlation_id": "X1-P1-1", "price": "101.50" }],
            "already_exiting": 0,
            "trading": { "state": "halted", "reason": "kill_switch", "since": "x" },
        });
        let text = render_flatten(&body);
        assert!(
            text.starts_with(
                "kill switch: 1 positions exiting, 0 already exiting; trading halted (kill_switch)"
            ),
            "{text}"
        );
        assert!(text.contains("P1-1 exit order X1-P1-1 at last price 101.50"), "{text}");
    }

    #[test]
    fn status_shows_the_symbol_beside_the_id() {
        let position = |symbol: Value| {
            json!({"positions": [{"id": "P1-1", "instrument": "NSE_FNO:52175", "symbol": symbol,
                "side": "LONG", "quantity": 75, "entry_price": "100.00", "last_price": "101.00",
                "unrealised_pnl": "75.00", "state": "active", "exit_blocked": null}]})
        };
        let text = render_status(
            "http://x",
            &json!({}),
            &position(json!("NIFTY-Dec2026-24500-CE")),
            &json!({}),
        );
        assert!(text.contains("P1-1 NIFTY-Dec2026-24500-CE (NSE_FNO:52175) LONG 75"), "{text}");
        let text = render_status("http://x", &json!({}), &position(Value::Null), &json!({}));
        assert!(text.contains("P1-1 NSE_FNO:52175 LONG 75"), "{text}");
    }
}
