//! Validation of storage and supervision: `[store]`, `[redis]`, `[instance]`, `[runtime]`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::super::pg_url::split_tls;
use super::super::raw::RawConfig;
use super::super::types::*;
use super::super::value::Collector;
use super::{non_empty, placeholder_url};

pub(super) fn store(c: &mut Collector, raw: &RawConfig, data_dir: &Path) -> StoreConfig {
    let s = &raw.store;
    let backend = match s.backend {
        StoreKind::Sqlite => {
            let path = match s.sqlite_path.as_deref() {
                Some(p) if p.trim().is_empty() => {
                    c.push("store.sqlite_path", "must not be empty");
                    PathBuf::new()
                }
                Some(p) => PathBuf::from(p.trim()),
                None => data_dir.join("scalper.db"),
            };
            StoreBackend::Sqlite { path }
        }
        StoreKind::Postgres => {
            let url = match s.postgres_url.as_deref().and_then(non_empty) {
                None => {
                    c.push("store.postgres_url", "required when store.backend = \"postgres\"");
                    String::new()
                }
                Some(text) => {
                    // The text is never echoed: it might carry a password.
                    match split_tls(text).and_then(|(rest, _)| {
                        postgres::Config::from_str(&rest).map_err(|_| String::new())
                    }) {
                        Err(e) if !e.is_empty() => c.push("store.postgres_url", e),
                        Err(_) => c.push(
                            "store.postgres_url",
                            "not a PostgreSQL connection string (postgres://user@host:port/db or key=value pairs)",
                        ),
                        Ok(pg) if pg.get_password().is_some() => c.push(
                            "store.postgres_url",
                            "carries a password: remove it and set PGPASSWORD in the environment or the secrets file",
                        ),
                        Ok(_) => {}
                    }
                    text.to_string()
                }
            };
            StoreBackend::Postgres { url }
        }
    };
    let spill_dir = match s.spill_dir.as_deref() {
        Some(p) if p.trim().is_empty() => {
            c.push("store.spill_dir", "must not be empty");
            PathBuf::new()
        }
        Some(p) => PathBuf::from(p.trim()),
        None => data_dir.join("spill"),
    };
    let queue_capacity = c.size("store.queue_capacity", s.queue_capacity, 1);
    let batch_max = c.size("store.batch_max", s.batch_max, 1);
    if let (Some(q), Some(b)) = (queue_capacity, batch_max)
        && b > q
    {
        c.push("store.batch_max", format!("{b} is above store.queue_capacity {q}"));
    }
    StoreConfig {
        backend,
        spill_dir,
        queue_capacity: queue_capacity.unwrap_or(1),
        batch_max: batch_max.unwrap_or(1),
        flush_interval: c
            .millis("store.flush_interval_ms", s.flush_interval_ms, 1)
            .unwrap_or_default(),
    }
}

pub(super) fn redis(
    c: &mut Collector,
    raw: &RawConfig,
    heartbeat: &HeartbeatConfig,
) -> RedisConfig {
    let r = &raw.redis;
    let url = c.url("redis.url", &r.url, &["redis", "rediss"]);
    if let Some(u) = &url
        && u.password().is_some()
    {
        c.push("redis.url", "carries a password: remove it and set REDIS_PASSWORD in the environment or the secrets file");
    }
    let ttl = c.secs("redis.heartbeat_ttl_secs", r.heartbeat_ttl_secs, 1);
    if let Some(ttl) = ttl
        && !heartbeat.interval.is_zero()
        && ttl <= heartbeat.interval
    {
        c.push(
            "redis.heartbeat_ttl_secs",
            format!(
                "{} must be longer than heartbeat.interval_secs {} (or the heartbeat key expires between beats)",
                r.heartbeat_ttl_secs, raw.heartbeat.interval_secs
            ),
        );
    }
    let tls_ca_file = match r.tls_ca_file.as_deref().map(str::trim) {
        None => None,
        Some("") => {
            c.push("redis.tls_ca_file", "must not be empty");
            None
        }
        Some(path) => {
            if url.as_ref().is_some_and(|u| u.scheme() != "rediss") {
                c.push("redis.tls_ca_file", "only applies to a rediss:// redis.url");
            }
            Some(PathBuf::from(path))
        }
    };
    RedisConfig {
        tls_ca_file,
        enabled: r.enabled,
        url: url.unwrap_or_else(placeholder_url),
        key_prefix: r.key_prefix.clone(),
        heartbeat_ttl: ttl.unwrap_or_default(),
    }
}

pub(super) fn instance(c: &mut Collector, raw: &RawConfig) -> InstanceConfig {
    let i = &raw.instance;
    if i.lease == LeaseKind::Redis && !raw.redis.enabled {
        c.push("instance.lease", "\"redis\" needs redis.enabled = true");
    }
    let ttl = c.millis("instance.lease_ttl_ms", i.lease_ttl_ms, 1);
    let renew = c.millis("instance.renew_every_ms", i.renew_every_ms, 1);
    if let (Some(t), Some(r)) = (ttl, renew)
        && r >= t
    {
        c.push(
            "instance.renew_every_ms",
            format!(
                "{} must be shorter than instance.lease_ttl_ms {}",
                i.renew_every_ms, i.lease_ttl_ms
            ),
        );
    }
    InstanceConfig {
        lease: i.lease,
        lease_ttl: ttl.unwrap_or_default(),
        renew_every: renew.unwrap_or_default(),
    }
}

pub(super) fn runtime(c: &mut Collector, raw: &RawConfig) -> RuntimeConfig {
    let r = &raw.runtime;
    let base = c.millis("runtime.backoff_base_ms", r.backoff_base_ms, 1);
    let cap = c.millis("runtime.backoff_cap_ms", r.backoff_cap_ms, 1);
    if let (Some(b), Some(cp)) = (base, cap)
        && b > cp
    {
        c.push(
            "runtime.backoff_cap_ms",
            format!("{} is below runtime.backoff_base_ms {}", r.backoff_cap_ms, r.backoff_base_ms),
        );
    }
    let mut heartbeat_limits = BTreeMap::new();
    for (name, ms) in &r.heartbeat_limits {
        let key = format!("runtime.heartbeat_limits.{name}");
        if name.trim().is_empty() {
            c.push(key, "a worker name must not be empty");
        } else if let Some(d) = c.millis(&key, *ms, 1) {
            heartbeat_limits.insert(name.clone(), d);
        }
    }
    RuntimeConfig {
        backoff_base: base.unwrap_or_default(),
        backoff_cap: cap.unwrap_or_default(),
        restart_budget: c.count("runtime.restart_budget", r.restart_budget, 1).unwrap_or(1),
        restart_window: c
            .secs("runtime.restart_window_secs", r.restart_window_secs, 1)
            .unwrap_or_default(),
        stop_deadline: c
            .millis("runtime.stop_deadline_ms", r.stop_deadline_ms, 1)
            .unwrap_or_default(),
        heartbeat_limit: c
            .millis("runtime.heartbeat_limit_ms", r.heartbeat_limit_ms, 1)
            .unwrap_or_default(),
        heartbeat_limits,
    }
}
