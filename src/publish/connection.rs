//! A Redis connection owned by the one thread that uses it (the publisher, the lease keeper,
//! a standby waiting for the lease). Every step has a bound: connecting
//! (`get_connection_with_timeout`), each read and each write, so a Redis that stops answering
//! shows up as an error within `timeout`, never as a hang. Reconnecting is the owner's
//! business (with `runtime::backoff`).

use std::time::Duration;

use redis::io::tcp::TcpSettings;
use redis::{Client, Connection, ConnectionInfo, IntoConnectionInfo, RedisError, TlsCertificates};

use crate::config::{RedisConfig, Secret};

/// Where Redis is and how long any step may take.
#[derive(Clone)]
pub struct RedisTarget {
    client: Client,
    /// Host and port, for logs (never the password).
    describe: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTarget")
            .field("at", &self.describe)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl RedisTarget {
    /// From `[redis] url` and the `REDIS_PASSWORD` secret.
    pub fn from_config(
        config: &RedisConfig,
        password: Option<&Secret>,
        timeout: Duration,
    ) -> Result<RedisTarget, String> {
        let url = &config.url;
        let describe = format!(
            "{}:{}",
            url.host_str().unwrap_or("?"),
            url.port_or_known_default().unwrap_or(6379)
        );
        let info: ConnectionInfo = url
            .as_str()
            .into_connection_info()
            .map_err(|e| format!("redis.url ({describe}): {e}"))?;
        let mut redis = info.redis_settings().clone();
        if let Some(pw) = password {
            redis = redis.set_password(pw.expose());
        }
        let tcp = TcpSettings::default().set_nodelay(true).set_user_timeout(timeout * 2);
        let info = info.set_redis_settings(redis).set_tcp_settings(tcp);
        // rediss:// verifies the server against redis.tls_ca_file, else the bundled web PKI
        // roots (rustls with the process's ring provider).
        let client = match &config.tls_ca_file {
            Some(ca) if url.scheme() == "rediss" => {
                let pem = std::fs::read(ca)
                    .map_err(|e| format!("redis.tls_ca_file {}: {e}", ca.display()))?;
                let certs = TlsCertificates { client_tls: None, root_cert: Some(pem) };
                Client::build_with_tls(info, certs)
            }
            _ => Client::open(info),
        }
        .map_err(|e| format!("redis.url ({describe}): {e}"))?;
        Ok(RedisTarget { client, describe, timeout })
    }

    /// Host and port, for logs.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// A new connection with read and write timeouts set.
    pub fn connect(&self) -> Result<Connection, RedisError> {
        let con = self.client.get_connection_with_timeout(self.timeout)?;
        con.set_read_timeout(Some(self.timeout))?;
        con.set_write_timeout(Some(self.timeout))?;
        Ok(con)
    }
}

/// Whether `e` means the connection is gone (reconnect) rather than a refused command.
pub fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal()
}

/// An error as one line without secrets (the driver never echoes the password).
pub fn describe_error(e: &RedisError) -> String {
    e.to_string()
}
