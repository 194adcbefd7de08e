//! The HTTP operator surface over a real loopback socket.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use scalper::ops::http::{self, ApiResponse, HttpWorker, OpsApi, Route};
use scalper::runtime::{StopHandle, Worker, WorkerCtx};
use serde_json::{Value, json};

const TOKEN: &str = "s3cret-control-token";

#[derive(Default)]
struct Recorder {
    healthy: AtomicBool,
    control_calls: AtomicUsize,
}

impl OpsApi for Recorder {
    fn health(&self) -> (bool, Value) {
        let h = self.healthy.load(Ordering::SeqCst);
        (h, json!({ "status": if h { "ok" } else { "down" } }))
    }
    fn metrics(&self) -> String {
        "scalper_uptime_seconds 1\n".into()
    }
    fn control(&self, route: Route, body: Option<Value>) -> ApiResponse {
        self.control_calls.fetch_add(1, Ordering::SeqCst);
        ApiResponse::ok(json!({ "route": format!("{route:?}"), "body": body }))
    }
}

struct Running {
    addr: SocketAddr,
    api: Arc<Recorder>,
    stop: StopHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.stop();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn start() -> Running {
    let (server, addr) = http::bind("127.0.0.1:0").unwrap();
    let api = Arc::new(Recorder::default());
    api.healthy.store(true, Ordering::SeqCst);
    let (stop, ctx) = WorkerCtx::standalone("http");
    let mut worker =
        HttpWorker::new(server, api.clone(), scalper::domain::Secret::new(TOKEN), 1024);
    let thread = std::thread::spawn(move || worker.run(&ctx).unwrap());
    Running { addr, api, stop, thread: Some(thread) }
}

/// Sends raw bytes and returns (status code, body).
fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    raw(addr, req.as_bytes())
}

#[test]
fn health_answers_200_when_healthy_and_503_otherwise() {
    let r = start();
    let (status, body) = request(r.addr, "GET", "/health", None, "");
    assert_eq!(status, 200);
    assert!(body.contains("\"ok\""), "{body}");
    r.api.healthy.store(false, Ordering::SeqCst);
    assert_eq!(request(r.addr, "GET", "/health", None, "").0, 503);
}

#[test]
fn metrics_answer_prometheus_text() {
    let r = start();
    let (status, body) = request(r.addr, "GET", "/metrics", None, "");
    assert_eq!(status, 200);
    assert!(body.contains("scalper_uptime_seconds"));
}

#[test]
fn control_endpoints_refuse_a_missing_or_wrong_token() {
    let r = start();
    for path in ["/v1/halt", "/v1/resume", "/v1/flatten", "/v1/orders"] {
        assert_eq!(request(r.addr, "POST", path, None, "").0, 401, "{path} without token");
        assert_eq!(request(r.addr, "POST", path, Some("wrong"), "").0, 401, "{path} wrong token");
    }
    assert_eq!(request(r.addr, "GET", "/v1/positions", None, "").0, 401);
    assert_eq!(r.api.control_calls.load(Ordering::SeqCst), 0, "nothing reached the engine");
    let (status, body) = request(r.addr, "POST", "/v1/halt", Some(TOKEN), "");
    assert_eq!(status, 200);
    assert!(body.contains("Halt"));
    assert_eq!(r.api.control_calls.load(Ordering::SeqCst), 1);
}

#[test]
fn garbage_requests_get_4xx_and_never_reach_the_engine() {
    let r = start();
    // Not HTTP at all.
    let (status, _) = raw(r.addr, b"\x00\x01\x02 garbage\r\n\r\n");
    assert!((400..500).contains(&status), "garbage got {status}");
    // Unknown route and wrong method.
    assert_eq!(request(r.addr, "GET", "/nope", None, "").0, 404);
    assert_eq!(request(r.addr, "GET", "/v1/halt", Some(TOKEN), "").0, 405);
    assert_eq!(request(r.addr, "POST", "/health", None, "").0, 405);
    // Malformed JSON body.
    assert_eq!(request(r.addr, "POST", "/v1/orders", Some(TOKEN), "{not json").0, 400);
    // Oversized body (limit 1024 in this test).
    let big = "x".repeat(4096);
    assert_eq!(request(r.addr, "POST", "/v1/orders", Some(TOKEN), &big).0, 413);
    assert_eq!(r.api.control_calls.load(Ordering::SeqCst), 0);
    // The server still serves after all that.
    assert_eq!(request(r.addr, "GET", "/health", None, "").0, 200);
}
