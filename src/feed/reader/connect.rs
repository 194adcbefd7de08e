//! Opening the feed socket with explicit timeouts: resolve, `TcpStream::connect_timeout`, socket
//! timeouts, then the WebSocket handshake (TLS through rustls with the ring provider for
//! `wss://`, plain for the simulator's `ws://`). The handshake runs in short read-timeout
//! slices so the worker keeps beating and notices a stop. No error text carries the token.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Arc, Once, OnceLock};
use std::time::{Duration, Instant};

use tungstenite::handshake::HandshakeError;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Connector, WebSocket};

use crate::feed::url::{feed_url, scrub};
use crate::runtime::WorkerCtx;

pub(crate) type FeedSocket = WebSocket<MaybeTlsStream<TcpStream>>;

/// Why a connection attempt failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("no access token: {0}")]
    Token(String),
    #[error("bad feed URL: {0}")]
    BadUrl(String),
    #[error("cannot resolve {host}: {error}")]
    Resolve { host: String, error: String },
    #[error("TCP connect to {host} failed: {error}")]
    Tcp { host: String, error: String },
    #[error("handshake refused with HTTP 429 Too Many Requests")]
    RateLimited,
    #[error("handshake refused with HTTP {0} (credentials rejected)")]
    Unauthorized(u16),
    #[error("handshake refused with HTTP {0}")]
    Http(u16),
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error("handshake timed out after {0:?}")]
    Timeout(Duration),
    #[error("stopped while connecting")]
    Stopped,
}

/// Installs rustls' ring crypto provider as the process default, once. Harmless if one is
/// already installed.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            install_crypto_provider();
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            Arc::new(
                rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth(),
            )
        })
        .clone()
}

/// Socket timeouts of one attempt.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub write: Duration,
    /// Read timeout slice while handshaking and reading.
    pub poll: Duration,
}

/// An open feed socket and a handle on its TCP stream (for changing timeouts).
pub(crate) struct Opened {
    pub ws: FeedSocket,
    pub tcp: TcpStream,
}

/// Connects to `base` with the v2 query parameters; `tls` overrides the default TLS settings.
pub(crate) fn open(
    base: &str,
    token: &str,
    client_id: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
    t: Timeouts,
    ctx: &WorkerCtx,
) -> Result<Opened, ConnectError> {
    let url = feed_url(base, token, client_id);
    let clean = |e: &dyn std::fmt::Display| scrub(&scrub(&e.to_string(), token), client_id);
    let uri: tungstenite::http::Uri = url.parse().map_err(|e| ConnectError::BadUrl(clean(&e)))?;
    let host = uri.host().ok_or_else(|| ConnectError::BadUrl(format!("{base}: no host")))?;
    let secure = uri.scheme_str() == Some("wss");
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let host_port = format!("{host}:{port}");
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| ConnectError::Resolve { host: host_port.clone(), error: e.to_string() })?
        .collect();
    let mut last = String::from("no address");
    let mut tcp = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, t.connect) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = e.to_string(),
        }
    }
    let tcp = tcp.ok_or(ConnectError::Tcp { host: host_port.clone(), error: last })?;
    let io =
        |e: std::io::Error| ConnectError::Tcp { host: host_port.clone(), error: e.to_string() };
    tcp.set_nodelay(true).map_err(io)?;
    tcp.set_read_timeout(Some(t.poll)).map_err(io)?;
    tcp.set_write_timeout(Some(t.write)).map_err(io)?;
    let handle = tcp.try_clone().map_err(io)?;

    let deadline = Instant::now() + t.connect;
    let connector = Connector::Rustls(tls.unwrap_or_else(tls_config));
    let mut attempt = tungstenite::client_tls_with_config(url.as_str(), tcp, None, Some(connector));
    loop {
        match attempt {
            Ok((ws, _response)) => return Ok(Opened { ws, tcp: handle }),
            Err(HandshakeError::Interrupted(mid)) => {
                ctx.beat();
                if ctx.should_stop() {
                    return Err(ConnectError::Stopped);
                }
                if Instant::now() >= deadline {
                    return Err(ConnectError::Timeout(t.connect));
                }
                attempt = mid.handshake();
            }
            Err(HandshakeError::Failure(tungstenite::Error::Http(response))) => {
                return Err(match response.status().as_u16() {
                    429 => ConnectError::RateLimited,
                    code @ (401 | 403) => ConnectError::Unauthorized(code),
                    code => ConnectError::Http(code),
                });
            }
            Err(HandshakeError::Failure(e)) => return Err(ConnectError::Handshake(clean(&e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_config_builds_with_the_ring_provider_and_web_roots() {
        let config = tls_config();
        assert!(Arc::ptr_eq(&config, &tls_config()), "built once");
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }

    #[test]
    fn an_unreachable_port_is_a_tcp_error_without_the_token() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let (_stop, ctx) = WorkerCtx::standalone("t");
        let t = Timeouts {
            connect: Duration::from_secs(1),
            write: Duration::from_secs(1),
            poll: Duration::from_millis(50),
        };
        let Err(e) = open(&format!("ws://{addr}"), "s3cr3t", "1", None, t, &ctx) else {
            panic!("nothing listens there")
        };
        assert!(matches!(e, ConnectError::Tcp { .. }), "{e:?}");
        assert!(!e.to_string().contains("s3cr3t"));
    }
}
