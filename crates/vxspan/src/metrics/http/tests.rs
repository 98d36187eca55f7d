//! The HTTP server against hostile clients: each test runs a real server on loopback.

use super::*;
use std::io::{Read, Write};
use std::net::TcpStream as StdStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Running {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    open: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start(limits: Limits, body: usize) -> Running {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let mut server = Server::new(l, limits).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let open = Arc::new(AtomicUsize::new(0));
    let (s, o) = (stop.clone(), open.clone());
    let body: Arc<[u8]> = Arc::from(vec![b'm'; body]);
    let thread = std::thread::spawn(move || {
        let mut events = Events::with_capacity(64);
        let mut respond = |r: &Request<'_>| Response {
            status: "200 OK",
            content_type: "text/plain",
            body: if r.path == "/metrics" {
                body.clone()
            } else {
                Arc::from(&b"other"[..])
            },
        };
        while !s.load(Ordering::Relaxed) {
            server.turn(&mut events, &mut respond).unwrap();
            o.store(server.open(), Ordering::Relaxed);
        }
    });
    Running {
        addr,
        stop,
        open,
        thread: Some(thread),
    }
}

fn fast() -> Limits {
    Limits {
        head_timeout: Duration::from_millis(400),
        write_timeout: Duration::from_millis(400),
        max_connections: 64,
        ..Limits::default()
    }
}

/// A complete GET; the whole response, and how long it took.
fn get(addr: std::net::SocketAddr, path: &str) -> (String, Duration) {
    let t = Instant::now();
    let mut s = StdStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    (String::from_utf8_lossy(&out).into_owned(), t.elapsed())
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(5), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn request_lines_parse_or_are_refused() {
    let r = parse_head(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!((r.method, r.path), ("GET", "/metrics"));
    assert!(parse_head(b"GET /metrics\r\n\r\n").is_none());
    assert!(parse_head(b"GET metrics HTTP/1.1\r\n\r\n").is_none());
    assert!(parse_head(b"GET  /metrics HTTP/1.1\r\n\r\n").is_none());
    assert!(parse_head(b"\xff\xfe /x HTTP/1.1\r\n\r\n").is_none());
    assert!(
        parse_head(b" // HTTP/1.0\n\n").is_none(),
        "no method (a fuzzing find)"
    );
    assert!(parse_head(b"get / HTTP/1.0\n\n").is_none());
    assert_eq!(head_end(b"GET / HTTP/1.0\n\nrest"), Some(16));
    assert_eq!(head_end(b"GET / HTTP/1.0\r\nA: b\r\n"), None);
}

#[test]
fn a_get_is_answered_with_length_and_close() {
    let srv = start(fast(), 100_000);
    let (resp, _) = get(srv.addr, "/metrics");
    assert!(resp.starts_with("HTTP/1.0 200 OK\r\n"), "{resp:.80}");
    assert!(resp.contains("Content-Length: 100000\r\n"));
    assert_eq!(resp.split("\r\n\r\n").nth(1).unwrap().len(), 100_000);
    let (other, _) = get(srv.addr, "/");
    assert!(other.ends_with("other"));
    let mut s = StdStream::connect(srv.addr).unwrap();
    s.write_all(b"POST /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.0 405"), "{out}");
    let mut s = StdStream::connect(srv.addr).unwrap();
    s.write_all(b"HEAD /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.contains("Content-Length: 100000") && out.ends_with("\r\n\r\n"));
}

#[test]
fn an_oversized_head_is_refused_unread_and_costs_no_memory() {
    let srv = start(fast(), 10);
    let mut s = StdStream::connect(srv.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // 4 MB of header bytes, sent by a thread: the server stops reading after MAX_HEAD.
    let mut w = s.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let line = [b'a'; 1024];
        let _ = w.write_all(b"GET /metrics HTTP/1.1\r\n");
        let mut sent = 0;
        for _ in 0..4096 {
            if w.write_all(&line).is_err() {
                break;
            }
            sent += line.len();
        }
        sent
    });
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.0 431"), "{out:.100}");
    let sent = sender.join().unwrap();
    assert!(sent < 4096 * 1024, "the server read everything ({sent})");
    // Served meanwhile, and after.
    assert!(get(srv.addr, "/metrics").0.ends_with("mmmmmmmmmm"));
}

#[test]
fn idle_connections_beyond_the_limit_evict_the_oldest_and_a_scrape_is_answered() {
    // Idle connections live 2 s here: long enough for all 200 to be open at once on a busy
    // machine (the listener's backlog makes some wait for a SYN retry).
    let srv = start(
        Limits {
            head_timeout: Duration::from_secs(2),
            ..fast()
        },
        10,
    );
    let idle: Vec<StdStream> = (0..200)
        .map(|_| StdStream::connect(srv.addr).unwrap())
        .collect();
    wait_until("the server holds its maximum", || {
        srv.open.load(Ordering::Relaxed) == 64
    });
    let (resp, took) = get(srv.addr, "/metrics");
    assert!(resp.starts_with("HTTP/1.0 200"), "{resp}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    // And they are closed when their time to send a request is over.
    wait_until("idle connections closed", || {
        srv.open.load(Ordering::Relaxed) == 0
    });
    drop(idle);
}

#[test]
fn a_slow_loris_is_closed_at_the_head_deadline_and_others_are_served_meanwhile() {
    let srv = start(fast(), 10);
    let mut slow = StdStream::connect(srv.addr).unwrap();
    let t = Instant::now();
    let mut closed = None;
    for b in b"GET /metrics HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        .iter()
        .cycle()
        .take(200)
    {
        if slow.write_all(&[*b]).is_err() {
            closed = Some(t.elapsed());
            break;
        }
        let (resp, took) = get(srv.addr, "/metrics");
        assert!(resp.starts_with("HTTP/1.0 200") && took < Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(20));
    }
    // The server closed it (a write after the close fails once the reset came back).
    let closed = closed.expect("the slow client was never closed");
    assert!(closed >= Duration::from_millis(400), "{closed:?}");
    assert!(closed < Duration::from_secs(3), "{closed:?}");
}

#[test]
fn a_client_that_never_reads_a_large_response_is_dropped_at_the_write_deadline() {
    let srv = start(fast(), 64 << 20);
    let mut lazy = StdStream::connect(srv.addr).unwrap();
    lazy.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    wait_until("the lazy client is open", || {
        srv.open.load(Ordering::Relaxed) == 1
    });
    // Others are served meanwhile (small path), and the lazy one goes at its deadline.
    let (resp, took) = get(srv.addr, "/");
    assert!(resp.ends_with("other") && took < Duration::from_secs(1));
    wait_until("the lazy client closed", || {
        srv.open.load(Ordering::Relaxed) == 0
    });
    drop(lazy);
}

/// A burst of connections larger than the standard library's queue of 128, while the server
/// is busy (here: not turning at all), is queued whole: the kernel drops none of their SYNs,
/// so none waits a second for a retransmission.
#[test]
fn a_burst_of_connections_waits_in_the_queue_not_for_a_retransmission() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let _server = Server::new(l, Limits::default()).unwrap();
    let mut held = Vec::new();
    for n in 0..300 {
        match StdStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Ok(s) => held.push(s),
            Err(e) => panic!("connection {n} not queued: {e}"),
        }
    }
    assert_eq!(held.len(), 300);
}
