//! The reconnect decision table (pure): how a connection attempt or session ended, and what the
//! reader does next (spec dhan-v2 §1.7, §1.8, §7).

use std::time::Duration;

use super::ReaderConfig;
use crate::feed::codec::DisconnectReason;
use crate::runtime::backoff::Backoff;

/// How a connection attempt or a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    Stopped,
    /// HTTP 429 at the handshake.
    RateLimited,
    /// HTTP 401/403 at the handshake.
    Unauthorized,
    /// Could not connect (DNS, TCP, TLS, other HTTP status, timeout, no token).
    ConnectFailed,
    /// A code-50 packet.
    Server(DisconnectReason),
    /// Transport error, close frame or stall on an established socket.
    Lost,
}

/// What to do after an [`Ending`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    Stop,
    Retry { after: Duration, reload_token: bool },
    Fatal(DisconnectReason),
}

/// The reconnect decision table (pure). `random` is uniform in `[0, 1)`.
pub fn plan(ending: &Ending, cfg: &ReaderConfig, backoff: &mut Backoff, random: f64) -> Plan {
    let retry = |after: Duration, reload_token: bool| Plan::Retry { after, reload_token };
    match ending {
        Ending::Stopped => Plan::Stop,
        Ending::RateLimited => retry(backoff.next_delay(random).max(cfg.cool_off_429), false),
        Ending::Unauthorized => retry(backoff.next_delay(random), true),
        Ending::ConnectFailed | Ending::Lost => retry(backoff.next_delay(random), false),
        Ending::Server(reason) => match reason {
            DisconnectReason::TooManyConnections => {
                retry(backoff.next_delay(random).max(cfg.back_off_805), false)
            }
            DisconnectReason::TokenExpired | DisconnectReason::TokenInvalid => {
                retry(backoff.next_delay(random), true)
            }
            DisconnectReason::DataApiNotSubscribed
            | DisconnectReason::AuthenticationFailed
            | DisconnectReason::ClientIdInvalid => Plan::Fatal(*reason),
            _ => retry(backoff.next_delay(random), false),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::backoff::BackoffPolicy;

    fn cfg() -> ReaderConfig {
        let mut c = ReaderConfig::new("ws://127.0.0.1:1", "1");
        c.backoff = BackoffPolicy::new(Duration::from_millis(100), Duration::from_secs(10), 0.0)
            .expect("valid policy");
        c.cool_off_429 = Duration::from_secs(60);
        c.back_off_805 = Duration::from_secs(30);
        c
    }

    fn retry(ms: u64, reload_token: bool) -> Plan {
        Plan::Retry { after: Duration::from_millis(ms), reload_token }
    }

    #[test]
    fn reconnect_plan_follows_the_disconnect_table() {
        use DisconnectReason as R;
        let cases = [
            (Ending::Stopped, Plan::Stop),
            (Ending::Lost, retry(100, false)),
            (Ending::ConnectFailed, retry(100, false)),
            (Ending::RateLimited, retry(60_000, false)),
            (Ending::Unauthorized, retry(100, true)),
            (Ending::Server(R::TooManyConnections), retry(30_000, false)),
            (Ending::Server(R::TokenExpired), retry(100, true)),
            (Ending::Server(R::TokenInvalid), retry(100, true)),
            (Ending::Server(R::DataApiNotSubscribed), Plan::Fatal(R::DataApiNotSubscribed)),
            (Ending::Server(R::AuthenticationFailed), Plan::Fatal(R::AuthenticationFailed)),
            (Ending::Server(R::ClientIdInvalid), Plan::Fatal(R::ClientIdInvalid)),
            (Ending::Server(R::InternalError), retry(100, false)),
            (Ending::Server(R::InstrumentLimit), retry(100, false)),
            (Ending::Server(R::Other(999)), retry(100, false)),
        ];
        for (ending, expected) in cases {
            let mut b = Backoff::new(cfg().backoff);
            assert_eq!(plan(&ending, &cfg(), &mut b, 0.0), expected, "{ending:?}");
        }
    }

    #[test]
    fn repeated_failures_back_off_exponentially_and_cool_offs_stay_a_floor() {
        let c = cfg();
        let mut b = Backoff::new(c.backoff);
        let waits: Vec<Plan> = (0..4).map(|_| plan(&Ending::Lost, &c, &mut b, 0.0)).collect();
        assert_eq!(
            waits,
            [retry(100, false), retry(200, false), retry(400, false), retry(800, false)]
        );
        for _ in 0..20 {
            plan(&Ending::Lost, &c, &mut b, 0.0);
        }
        assert_eq!(plan(&Ending::Lost, &c, &mut b, 0.0), retry(10_000, false), "capped");
        assert_eq!(plan(&Ending::RateLimited, &c, &mut b, 0.0), retry(60_000, false));
    }
}
