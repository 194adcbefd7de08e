//! The single-instance lease in Redis: one key per Dhan account that at most one engine holds.
//!
//! - **Acquire**: `SET lease NX PX ttl`, and in the same Lua script `INCR` the account's token
//!   counter: the holder gets a fencing token that is larger than every earlier holder's.
//! - **Renew**: a compare-and-extend script — `PEXPIRE` only if the key still holds our value —
//!   every `instance.renew_every_ms`.
//! - **Release** on a clean shutdown: a compare-and-delete script, so a standby takes over at
//!   once instead of waiting for the key to expire.
//!
//! Keys (under `redis.key_prefix`): `lease:{account}` (string: the holder, `host:pid:nonce`,
//! expires `instance.lease_ttl_ms` after the last renewal) and `lease:{account}:token`
//! (integer: the last fencing token handed out, never expires). `{account}` is a 16-hex-digit
//! FNV-1a hash of the Dhan client id, so the id itself is not written to Redis.
//!
//! Why Redis and not a PostgreSQL advisory lock: the lease must keep working while the
//! database is down (the engine trades through a database outage, spilling to disk), and an
//! advisory lock lives and dies with one database session, which the store's writer drops and
//! reopens on every outage. Redis is already the engine's shared, fast, optional service, and
//! a key with a TTL expresses "held until renewed" directly.
//!
//! [`LeaseTiming`] is the arithmetic of when the lease must be considered lost locally: a
//! safety margin before it can expire in Redis, measured from when the renewal was *sent*.

use std::time::Duration;

use redis::{Connection, RedisResult, Script};

use super::gate::OrderGate;
use crate::publish::keys::Keys;

const ACQUIRE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return false";

const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0";

const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// When the lease counts as ours, locally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    pub ttl: Duration,
    pub renew_every: Duration,
    /// Stop this long before the lease could expire in Redis: covers the time to stop
    /// sending, clock-rate differences and a renewal that reached Redis late.
    pub margin: Duration,
}

impl LeaseTiming {
    /// A quarter of the TTL as the safety margin.
    pub fn new(ttl: Duration, renew_every: Duration) -> LeaseTiming {
        LeaseTiming { ttl, renew_every, margin: ttl / 4 }
    }

    /// The monotonic instant (ms) until which a lease acquired or renewed by a command sent at
    /// `sent_ms` is ours: Redis starts its TTL when the command *arrives*, never before it was
    /// sent, so this is at least `margin` before the key can expire there.
    pub fn valid_until(&self, sent_ms: u64) -> u64 {
        sent_ms + (self.ttl - self.margin).as_millis() as u64
    }

    /// The connect/read/write timeout for lease commands: short against the renewal period.
    pub fn command_timeout(&self) -> Duration {
        (self.renew_every / 2).clamp(Duration::from_millis(50), Duration::from_secs(1))
    }
}

/// The account part of the lease key: FNV-1a of the client id, 16 hex digits.
pub fn account_key(client_id: &str) -> String {
    let h = client_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{h:016x}")
}

/// One account's lease as this process sees it.
#[derive(Debug, Clone)]
pub struct RedisLease {
    key: String,
    token_key: String,
    /// Our value in the key: unique per process start.
    holder: String,
    timing: LeaseTiming,
}

impl RedisLease {
    pub fn new(keys: &Keys, client_id: &str, holder: String, timing: LeaseTiming) -> RedisLease {
        let account = account_key(client_id);
        RedisLease {
            key: keys.lease(&account),
            token_key: keys.lease_token(&account),
            holder,
            timing,
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    pub fn timing(&self) -> LeaseTiming {
        self.timing
    }

    fn ttl_ms(&self) -> u64 {
        self.timing.ttl.as_millis() as u64
    }

    /// Takes the lease if nobody holds it; returns the fencing token.
    pub fn try_acquire(&self, con: &mut Connection) -> RedisResult<Option<u64>> {
        Script::new(ACQUIRE)
            .key(&self.key)
            .key(&self.token_key)
            .arg(&self.holder)
            .arg(self.ttl_ms())
            .invoke(con)
    }

    /// Extends the lease if it is still ours; `false` when another process holds it (or
    /// nobody: it expired).
    pub fn renew(&self, con: &mut Connection) -> RedisResult<bool> {
        let n: i64 =
            Script::new(RENEW).key(&self.key).arg(&self.holder).arg(self.ttl_ms()).invoke(con)?;
        Ok(n == 1)
    }

    /// Gives the lease up if it is still ours.
    pub fn release(&self, con: &mut Connection) -> RedisResult<bool> {
        let n: i64 = Script::new(RELEASE).key(&self.key).arg(&self.holder).invoke(con)?;
        Ok(n == 1)
    }

    /// Who holds the lease now, if anyone.
    pub fn current_holder(&self, con: &mut Connection) -> RedisResult<Option<String>> {
        redis::cmd("GET").arg(&self.key).query(con)
    }

    /// The gate for a lease acquired by a command sent at `sent_ms` with `token`.
    pub fn gate(&self, token: u64, sent_ms: u64) -> OrderGate {
        OrderGate::leased(token, self.timing.valid_until(sent_ms))
    }
}

/// A value unique to this process start, for the lease key.
pub fn holder_value() -> String {
    format!("{}:{:016x}", crate::publish::instance_name(), fastrand::u64(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_is_ours_until_a_quarter_ttl_before_it_can_expire() {
        let t = LeaseTiming::new(Duration::from_millis(4_000), Duration::from_millis(1_000));
        assert_eq!(t.margin, Duration::from_millis(1_000));
        assert_eq!(t.valid_until(10_000), 13_000);
        assert_eq!(t.command_timeout(), Duration::from_millis(500));
        let fast = LeaseTiming::new(Duration::from_millis(400), Duration::from_millis(60));
        assert_eq!(fast.command_timeout(), Duration::from_millis(50), "never below 50 ms");
    }

    #[test]
    fn the_account_key_hides_the_client_id() {
        let k = account_key("1000000001");
        assert_eq!(k.len(), 16);
        assert!(!k.contains("1000000001"));
        assert_eq!(k, account_key("1000000001"));
        assert_ne!(k, account_key("1000000002"));
    }
}
