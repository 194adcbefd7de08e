//! Wiring the tick reader from the configuration: its settings from `[feed]`, an access-token
//! source that re-reads the secrets when the server refuses the token (so a rotated token is
//! picked up without a restart), and the fatal hook that stops new entries while positions are
//! open and no prices can come.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::config::{self, Config, Secret, Secrets};
use crate::domain::Clock;
use crate::engine::seams::{EngineEvent, EventSink};
use crate::exec::core::CoreEvent;
use crate::feed::reader::{AccessToken, FatalHook, FeedFatal, ReaderConfig, TokenSource};
use crate::feed::subscribe::FeedMode;
use crate::risk::trading_state::{TradingCell, TradingCommand};
use crate::runtime::backoff::BackoffPolicy;

/// Jitter of the reconnect backoff (a share of each delay).
const BACKOFF_JITTER: f64 = 0.2;

/// The reader's settings from `[feed]` and the resolved client id.
pub fn reader_config(config: &Config, client_id: &Secret) -> anyhow::Result<ReaderConfig> {
    let f = &config.feed;
    let mut rc = ReaderConfig::new(f.url.as_str(), client_id.expose());
    rc.mode = match f.mode {
        config::FeedMode::Ticker => FeedMode::Ticker,
        config::FeedMode::Quote => FeedMode::Quote,
        config::FeedMode::Full => FeedMode::Full,
    };
    rc.connect_timeout = f.connect_timeout;
    rc.stall_timeout = f.stall_timeout;
    rc.backoff = BackoffPolicy::new(f.reconnect_base, f.reconnect_cap, BACKOFF_JITTER)
        .map_err(|e| anyhow::anyhow!("feed reconnect backoff: {e}"))?;
    rc.cool_off_429 = f.cooloff_429;
    rc.back_off_805 = f.backoff_805;
    rc.waiting = crate::runtime::spin::Waiting::for_worker(&config.host, "tick_reader");
    let problems = rc.validate();
    if !problems.is_empty() {
        anyhow::bail!("feed settings: {}", problems.join("; "));
    }
    Ok(rc)
}

/// The least heartbeat limit the reader needs: its connect and write calls block without a
/// beat for up to their timeouts.
pub fn reader_heartbeat_floor(rc: &ReaderConfig) -> Duration {
    rc.connect_timeout.max(rc.write_timeout) + Duration::from_secs(2)
}

/// The access token: the one resolved at startup first; after that (the server refused it, or
/// the reader restarted) re-resolved from the environment and the secrets file, falling back
/// to the startup one if that fails.
pub struct SecretsTokenSource {
    config: Config,
    initial: Secret,
    used_initial: AtomicBool,
}

impl SecretsTokenSource {
    pub fn new(config: Config, secrets: &Secrets) -> SecretsTokenSource {
        SecretsTokenSource {
            config,
            initial: secrets.dhan_access_token.clone(),
            used_initial: AtomicBool::new(false),
        }
    }
}

impl TokenSource for SecretsTokenSource {
    fn token(&self) -> Result<AccessToken, String> {
        if !self.used_initial.swap(true, Ordering::AcqRel) {
            return Ok(AccessToken::new(self.initial.expose()));
        }
        match Secrets::from_process_env(&self.config) {
            Ok(s) if !s.dhan_access_token.is_empty() => {
                Ok(AccessToken::new(s.dhan_access_token.expose()))
            }
            Ok(_) => Ok(AccessToken::new(self.initial.expose())),
            Err(e) => {
                // The error names files and keys, never values.
                log::warn!(target: "feed", "re-reading the access token failed ({e}); using the one from startup");
                Ok(AccessToken::new(self.initial.expose()))
            }
        }
    }
}

/// On a fatal feed disconnect with positions open: trading goes `Reducing` (exits only), since
/// no new price can come for a new position either.
pub fn fatal_hook(
    trading: TradingCell,
    clock: Arc<dyn Clock>,
    sink: Arc<dyn EventSink>,
) -> FatalHook {
    Arc::new(move |f: &FeedFatal| {
        if f.open_positions == 0 {
            return;
        }
        let why = format!("market feed stopped: {}", f.reason);
        match trading.apply(TradingCommand::Reduce { why }, clock.now()) {
            Ok(Some(change)) => {
                log::error!(target: "exit_engine", "trading {} -> {} ({}): {} instruments with open positions have no feed", change.prev, change.current, change.reason, f.open_positions);
                sink.record(&EngineEvent::Core(CoreEvent::TradingState(change)));
            }
            Ok(None) => {}
            Err(e) => {
                log::warn!(target: "exit_engine", "feed stopped with positions open; trading unchanged: {e}")
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ManualClock, Timestamp};
    use crate::engine::seams::NoopSink;
    use crate::feed::codec::DisconnectReason;
    use crate::risk::TradingState;

    #[test]
    fn a_fatal_feed_with_positions_open_stops_entries_and_without_does_nothing() {
        let trading = TradingCell::active(Timestamp(0));
        let hook = fatal_hook(
            trading.clone(),
            Arc::new(ManualClock::new(Timestamp(5))),
            Arc::new(NoopSink),
        );
        let reason = DisconnectReason::from_code(806);
        hook(&FeedFatal { reason, open_positions: 0 });
        assert_eq!(trading.state(), TradingState::Active);
        hook(&FeedFatal { reason, open_positions: 2 });
        assert_eq!(trading.state(), TradingState::Reducing);
    }

    #[test]
    fn reader_settings_come_from_the_feed_table() {
        let config = Config::from_toml_str(
            "[feed]\nsource = \"sim\"\nurl = \"ws://127.0.0.1:9/\"\nmode = \"ticker\"\nstall_timeout_ms = 7000\n[sim]\nenabled = false\n",
        )
        .unwrap();
        let rc = reader_config(&config, &Secret::new("1000000001")).unwrap();
        assert_eq!(
            (rc.url.as_str(), rc.mode, rc.stall_timeout),
            ("ws://127.0.0.1:9/", FeedMode::Ticker, Duration::from_millis(7000))
        );
        assert!(reader_heartbeat_floor(&rc) > rc.connect_timeout);
    }
}
