//! The tick reader over `wss://`: rustls (ring) with explicit socket timeouts against a loopback
//! TLS WebSocket server whose certificate comes from a throwaway test CA
//! (`tests/data/feed/`). Checks that the handshake, the v2 query and decoding work through
//! TLS, and that certificate verification is on (the default roots refuse the test CA).

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use scalper::domain::{InstrumentKey, Paise, Segment, SystemClock};
use scalper::feed::codec::{Packet, Ticker, encode_to_vec};
use scalper::feed::reader::{
    AccessToken, FeedReader, FeedStats, ReaderConfig, ReaderShared, install_crypto_provider,
};
use scalper::feed::subscribe::{FeedMode, FeedRequest, parse_request};
use scalper::feed::url::query_params;
use scalper::feed::{SubscriptionSet, TickCache};
use scalper::ops::health::HealthBoard;
use scalper::ops::metrics::Metrics;
use scalper::runtime::{Worker, WorkerCtx};
use tungstenite::Message;
use tungstenite::handshake::server::{Request, Response};

const FNO: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/feed");

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DATA}/{name}")).expect("test TLS material")
}

fn server_config() -> Arc<rustls::ServerConfig> {
    install_crypto_provider();
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&read("test-server.pem"))
            .collect::<Result<_, _>>()
            .expect("server certificate");
    let key = PrivateKeyDer::from_pem_slice(&read("test-server.key")).expect("server key");
    Arc::new(
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server TLS config"),
    )
}

fn client_config_trusting_the_test_ca() -> Arc<rustls::ClientConfig> {
    install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&read("test-ca.pem")) {
        roots.add(cert.expect("CA certificate")).expect("CA is a valid root");
    }
    Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth())
}

/// Serves TLS WebSocket connections: records the query, answers the first subscribe with one
/// ticker packet, then reads until the client goes away.
// The handshake callback's error type is tungstenite's own HTTP response.
#[allow(clippy::result_large_err)]
fn spawn_tls_feed(listener: TcpListener) -> crossbeam_channel::Receiver<Vec<(String, String)>> {
    let (tx, rx) = bounded(8);
    let config = server_config();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { return };
            let (config, tx) = (config.clone(), tx.clone());
            std::thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                let Ok(conn) = rustls::ServerConnection::new(config) else { return };
                let tls = rustls::StreamOwned::new(conn, tcp);
                let mut query = Vec::new();
                let Ok(mut ws) = tungstenite::accept_hdr(tls, |req: &Request, resp: Response| {
                    query = query_params(&req.uri().to_string());
                    Ok(resp)
                }) else {
                    return;
                };
                let _ = tx.send(query);
                while let Ok(msg) = ws.read() {
                    if let Message::Text(text) = msg
                        && let Ok(FeedRequest::Subscribe { instruments, .. }) = parse_request(&text)
                    {
                        for key in instruments {
                            let tick =
                                Packet::Ticker(Ticker::new(key, Paise(12_345), 1_763_980_215));
                            let _ = ws.send(Message::binary(encode_to_vec(&tick)));
                        }
                    }
                }
            });
        }
    });
    rx
}

struct Reader {
    cache: TickCache,
    stats: Arc<FeedStats>,
    stop: scalper::runtime::StopHandle,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

fn start_reader(url: String, tls: Option<Arc<rustls::ClientConfig>>) -> Reader {
    let metrics = Metrics::new();
    let stats = FeedStats::new(&metrics);
    let cache = TickCache::with_capacity(8);
    let (tx, _rx) = bounded(8);
    let shared = ReaderShared {
        cache: cache.clone(),
        subscriptions: SubscriptionSet::with_watchlist([FNO]),
        position_ticks: tx,
        token_source: Arc::new(|| Ok(AccessToken::new("tls-token"))),
        stats: stats.clone(),
        health: HealthBoard::new(),
        on_fatal: Arc::new(|_: &_| {}),
        clock: Arc::new(SystemClock),
    };
    let mut cfg = ReaderConfig::new(url, "1000000001");
    cfg.mode = FeedMode::Ticker;
    cfg.tls = tls;
    cfg.poll_interval = Duration::from_millis(10);
    cfg.connect_timeout = Duration::from_secs(3);
    let (stop, ctx) = WorkerCtx::standalone("feed");
    let thread = std::thread::spawn(move || FeedReader::new(cfg, shared).run(&ctx));
    Reader { cache, stats, stop, thread }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn reader_speaks_wss_through_rustls_with_the_v2_query() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let queries = spawn_tls_feed(listener);
    let r =
        start_reader(format!("wss://127.0.0.1:{port}"), Some(client_config_trusting_the_test_ca()));
    let query = queries.recv_timeout(Duration::from_secs(15)).expect("a TLS handshake");
    let get = |k: &str| query.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    assert_eq!(
        (get("version"), get("authType"), get("clientId"), get("token")),
        (Some("2"), Some("2"), Some("1000000001"), Some("tls-token"))
    );
    wait_until("the tick arrives through TLS", || r.cache.ltp(FNO) == Some(Paise(12_345)));
    r.stop.stop();
    r.thread.join().expect("reader thread").expect("clean stop");
}

#[test]
fn the_default_roots_refuse_an_unknown_certificate_authority() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let _queries = spawn_tls_feed(listener);
    let r = start_reader(format!("wss://127.0.0.1:{port}"), None);
    wait_until("the handshake is refused", || {
        r.stats.disconnects.with_label_values(&["connect_failed"]).get() >= 1
    });
    let error = r.stats.last_error();
    assert!(error.contains("certificate") || error.contains("Certificate"), "{error}");
    assert!(!error.contains("tls-token"));
    assert_eq!(r.stats.connections.get(), 0);
    r.stop.stop();
    r.thread.join().expect("reader thread").expect("clean stop");
}
