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

// ---- The limits of the server itself (shared with the simulator), with a handler that can
// hold a request in progress so that a connection's state is known, not raced.

#[path = "harness_common/mod.rs"]
mod harness_common;

mod limits {
    use super::harness_common::wait_until;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use scalper::runtime::http_server::{
        Handler, HttpAction, HttpListener, HttpRequest, HttpResponse, Limits, serve,
    };

    struct Served {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        entered: Arc<AtomicUsize>,
        release: crossbeam_channel::Sender<()>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Drop for Served {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            for _ in 0..64 {
                let _ = self.release.try_send(());
            }
            if let Some(t) = self.thread.take() {
                t.join().unwrap();
            }
        }
    }

    /// `/hold` waits until the test releases it; everything else answers 200 at once.
    fn start(limits: Limits) -> Served {
        let listener = HttpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.addr();
        let stop = Arc::new(AtomicBool::new(false));
        let entered = Arc::new(AtomicUsize::new(0));
        let (release, released) = crossbeam_channel::unbounded::<()>();
        let handler: Arc<Handler> = {
            let entered = entered.clone();
            Arc::new(move |req: HttpRequest| {
                if req.path == "/hold" {
                    entered.fetch_add(1, Ordering::SeqCst);
                    let _ = released.recv_timeout(Duration::from_secs(30));
                }
                HttpAction::Respond(HttpResponse::raw(200, "ok", "text/plain"))
            })
        };
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let go_on = || !stop.load(Ordering::SeqCst);
                serve(&listener, &limits, "t", &*handler, go_on).unwrap();
            })
        };
        Served { addr, stop, entered, release, thread: Some(thread) }
    }

    fn small() -> Limits {
        Limits { tick: Duration::from_millis(20), ..Limits::control(1024) }
    }

    fn connect(addr: SocketAddr) -> TcpStream {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Reads until the server closes; the status of the first answer (0 if none).
    fn read_status(s: &mut TcpStream) -> (u16, String) {
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).to_string();
        (text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0), text)
    }

    #[test]
    fn a_header_over_8_kib_gets_431_and_the_server_goes_on() {
        let r = start(small());
        let mut s = connect(r.addr);
        let big = format!("GET /x HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(9 * 1024));
        let _ = s.write_all(big.as_bytes());
        assert_eq!(read_status(&mut s).0, 431);
        // A megabyte of header without end: answered 431 after 8 KiB, not buffered.
        let mut s = connect(r.addr);
        let _ = s.write_all(b"GET /x HTTP/1.1\r\nX-Big: ");
        let _ = s.write_all(&vec![b'a'; 1 << 20]);
        assert_eq!(read_status(&mut s).0, 431);
        let mut s = connect(r.addr);
        s.write_all(b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        assert_eq!(read_status(&mut s).0, 200);
    }

    #[test]
    fn a_body_over_the_limit_gets_413_before_it_is_read() {
        let r = start(small());
        let mut s = connect(r.addr);
        s.write_all(b"POST /x HTTP/1.1\r\nContent-Length: 1025\r\n\r\n").unwrap();
        assert_eq!(read_status(&mut s).0, 413);
    }

    #[test]
    fn beyond_the_connection_cap_a_newcomer_gets_503_without_a_thread() {
        let r = start(Limits { max_connections: 4, workers: 4, ..small() });
        let mut held: Vec<TcpStream> = (0..4)
            .map(|_| {
                let mut s = connect(r.addr);
                s.write_all(b"GET /hold HTTP/1.1\r\n\r\n").unwrap();
                s
            })
            .collect();
        wait_until("four requests are in progress", || r.entered.load(Ordering::SeqCst) == 4);
        let mut extra = connect(r.addr);
        let started = Instant::now();
        assert_eq!(read_status(&mut extra).0, 503);
        assert!(started.elapsed() < Duration::from_secs(2), "refused fast");
        // Once the held requests end, the slots are free again.
        for _ in 0..4 {
            r.release.send(()).unwrap();
        }
        for s in &mut held {
            let mut buf = [0u8; 256];
            assert!(s.read(&mut buf).unwrap() > 0, "the held request is answered");
        }
        drop(held);
        let mut later = connect(r.addr);
        later.write_all(b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        assert_eq!(read_status(&mut later).0, 200);
    }

    #[test]
    fn at_the_cap_the_longest_idle_connection_makes_room() {
        let r = start(Limits { max_connections: 2, ..small() });
        let mut first = connect(r.addr);
        first.write_all(b"GET /x HTTP/1.1\r\n\r\n").unwrap();
        let mut buf = [0u8; 256];
        assert!(first.read(&mut buf).unwrap() > 0, "first answered, now idle");
        let mut second = connect(r.addr);
        second.write_all(b"GET /x HTTP/1.1\r\n\r\n").unwrap();
        assert!(second.read(&mut buf).unwrap() > 0, "second answered, now idle");
        let mut third = connect(r.addr);
        third.write_all(b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        assert_eq!(read_status(&mut third).0, 200);
        let r1 = first.read(&mut buf);
        assert!(matches!(r1, Ok(0)) || r1.is_err(), "the longest idle was closed: {r1:?}");
    }

    #[test]
    fn an_idle_connection_is_closed_after_the_idle_timeout() {
        let r = start(Limits { idle_timeout: Duration::from_millis(200), ..small() });
        let started = Instant::now();
        let mut silent = connect(r.addr);
        assert_eq!(read_status(&mut silent).0, 0, "closed without an answer");
        let mut kept = connect(r.addr);
        kept.write_all(b"GET /x HTTP/1.1\r\n\r\n").unwrap();
        let (status, text) = read_status(&mut kept);
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("Connection: keep-alive"), "{text}");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[test]
    fn a_slowloris_request_is_cut_at_the_request_deadline_while_others_are_served() {
        let deadline = Duration::from_millis(500);
        let r = start(Limits { request_deadline: deadline, ..small() });
        let mut slow = connect(r.addr);
        let started = Instant::now();
        let dribble = b"GET /x HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let mut cut = None;
        for b in dribble.iter().cycle().take(400) {
            if slow.write_all(&[*b]).is_err() {
                cut = Some(started.elapsed());
                break;
            }
            // Someone else is served meanwhile.
            let mut other = connect(r.addr);
            other.write_all(b"GET /x HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
            assert_eq!(read_status(&mut other).0, 200);
            slow.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 512];
            let got = slow.read(&mut buf);
            slow.set_nonblocking(false).unwrap();
            if let Ok(n) = got {
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
                cut = Some(started.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let cut = cut.expect("the dribbling client was cut");
        assert!(cut >= deadline && cut < deadline * 6, "cut after {cut:?}");
    }

    #[test]
    fn a_keep_alive_connection_ends_after_its_request_budget() {
        let r = start(Limits { max_requests_per_connection: 2, ..small() });
        let mut s = connect(r.addr);
        s.write_all(b"GET /x HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\n\r\n")
            .unwrap();
        let (_, text) = read_status(&mut s);
        assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
        assert!(text.contains("Connection: close"), "{text}");
    }
}
