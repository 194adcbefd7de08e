//! The control server of the real binary (paper mode) under abuse: a 1 MiB header, 500
//! concurrent idle connections and slowloris clients. The engine's memory and threads stay
//! flat, `/health` keeps answering, and an entry placed meanwhile still opens its position.

mod process_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use process_support::*;

/// `VmRSS` (kB) and `Threads` of a process, from /proc/<pid>/status.
fn rss_and_threads(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (field("VmRSS:"), field("Threads:"))
}

/// 500 sockets and the engine's own need more than a default soft limit of 1024 leaves spare.
fn raise_open_file_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit on this process with a valid rlimit struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max.min(8192).max(lim.rlim_cur);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
}

/// One `GET /health` on a fresh connection: its status and how long the answer took.
fn health(addr: SocketAddr) -> (u16, Duration) {
    health_sent_under(addr, &Mutex::new(()))
}

/// [`health`], its connection opened and its request written while holding `arrivals`, the
/// lock every idle connection of the flood is opened under. At the connection cap each
/// arrival evicts the longest-idle connection, and a connection whose request has not
/// arrived yet is idle: a probe preempted between its connect and its write while the flood
/// went on would be evicted as one of the idle (the server's policy, not a failure of it).
/// Under the lock, every connection that arrives after the probe's finds its request there.
fn health_sent_under(addr: SocketAddr, arrivals: &Mutex<()>) -> (u16, Duration) {
    let sent = arrivals.lock().unwrap();
    let started = Instant::now();
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return (0, started.elapsed());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    drop(sent);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    (text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0), started.elapsed())
}

#[test]
fn header_floods_idle_connections_and_slowloris_leave_the_engine_flat_and_trading() {
    raise_open_file_limit();
    let (_sim, prices) = sim_feed();
    prices.set_price(A, rupees("100.00"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("scalper.toml");
    std::fs::write(&config, config_text(&data, &format!("ws://{}", _sim.addr()), "")).unwrap();
    let mut e = spawn(dir.path(), &config, "engine", &[]);
    let addr = e.wait_active(&data);
    wait_for("the feed is subscribed", || prices.subscribed().contains(&A));
    for _ in 0..20 {
        assert_eq!(health(addr).0, 200);
    }
    let (rss0, threads0) = rss_and_threads(e.pid());

    // /health, probed all along on fresh connections.
    let stop = Arc::new(AtomicBool::new(false));
    let arrivals = Arc::new(Mutex::new(()));
    let prober = {
        let stop = stop.clone();
        let arrivals = arrivals.clone();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                seen.push(health_sent_under(addr, &arrivals));
                std::thread::sleep(Duration::from_millis(20));
            }
            seen
        })
    };
    let peak = |peak: &mut (u64, u64), pid: i32| {
        let (rss, threads) = rss_and_threads(pid);
        *peak = (peak.0.max(rss), peak.1.max(threads));
    };
    let mut top = (rss0, threads0);

    // A 1 MiB header line.
    let flood = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(b"GET /health HTTP/1.1\r\nX-Flood: ");
        let _ = s.write_all(&vec![b'a'; 1 << 20]);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).split(' ').nth(1).unwrap_or("").to_string()
    });
    // Slowloris: four clients dribbling a header a byte at a time.
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let started = Instant::now();
                let mut line =
                    b"GET /health HTTP/1.1\r\nX-Slow: ".iter().chain(std::iter::repeat(&b'a'));
                while !stop.load(Ordering::SeqCst) {
                    if s.write_all(&[*line.next().unwrap()]).is_err() {
                        return Some(started.elapsed());
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                None
            })
        })
        .collect();
    // The flood's answer is read before the idle connections come: at the connection cap they
    // would evict its connection while it drains (the longest idle go first), and a close with
    // unread input resets the connection, taking the unread answer with it.
    assert_eq!(flood.join().unwrap(), "431", "the 1 MiB header is refused");
    peak(&mut top, e.pid());
    // 500 concurrent idle connections, held open.
    let mut idle = Vec::new();
    for _ in 0..500 {
        let arrival = arrivals.lock().unwrap();
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            idle.push(s);
        }
        drop(arrival);
        if idle.len() % 50 == 0 {
            peak(&mut top, e.pid());
        }
    }
    assert!(idle.len() >= 450, "only {} connections opened", idle.len());

    // Trading meanwhile: an entry is accepted (202) and its position opens.
    let id = open(addr, A, "LONG");
    assert!(position(addr, &id).is_some());

    // Until the slowloris clients are cut (request deadline 5 s), sampling memory and threads.
    let until = Instant::now() + Duration::from_secs(30);
    while !slow.iter().all(|t| t.is_finished()) && Instant::now() < until {
        peak(&mut top, e.pid());
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    let cut: Vec<Option<Duration>> = slow.into_iter().map(|t| t.join().unwrap()).collect();
    let seen = prober.join().unwrap();
    drop(idle);

    let slowest = seen.iter().map(|(_, d)| *d).max().unwrap();
    let mut sorted: Vec<Duration> = seen.iter().map(|(_, d)| *d).collect();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    eprintln!(
        "health probes: {} answered, median {median:?}, slowest {slowest:?}; RSS {} -> {} kB, \
         threads {} -> {}; slowloris cut after {cut:?}",
        seen.len(),
        rss0,
        top.0,
        threads0,
        top.1
    );
    assert!(seen.iter().all(|(code, _)| *code == 200), "every probe answered 200: {seen:?}");
    assert!(slowest < Duration::from_secs(1), "slowest /health {slowest:?}");
    assert!(top.1 < threads0 + 10, "threads {threads0} -> {}", top.1);
    assert!(top.0 < rss0 + 10 * 1024, "RSS {rss0} -> {} kB", top.0);
    assert!(cut.iter().all(|c| c.is_some_and(|d| d < Duration::from_secs(15))), "{cut:?}");
    assert_eq!(health(addr).0, 200, "still serving");
    assert!(position(addr, &id).is_some(), "the position is still open");
}
