//! The metrics endpoint's HTTP server: one thread, every connection non-blocking on one
//! [`mio::Poll`], each with a bounded request and a deadline.
//!
//! Why not an HTTP server crate: the endpoint answers one GET with one body and closes, and its
//! threat is the client, not the protocol. tiny_http gives each request one of a fixed pool of
//! threads (a few slow clients hold them all); hyper needs an async runtime larger than the rest
//! of the daemon's control plane. What this needs is what mio (already in the dependency tree
//! through crossterm) does well: many idle sockets cost one registration each, no thread.
//!
//! The limits, each tested below:
//! - a request head (request line and headers) is at most [`MAX_HEAD`] bytes; more is answered
//!   `431` and closed, unread;
//! - the whole head must arrive within [`HEAD_TIMEOUT`] of the connection (a client trickling a
//!   byte every few seconds is closed then), and the response must be taken within
//!   [`WRITE_TIMEOUT`];
//! - at most [`MAX_CONNECTIONS`] are open; a new one beyond that closes first a connection
//!   whose response has gone, then the oldest still sending its request (a scraper sends its
//!   request at once, so idle floods evict themselves, not it), then the oldest taking one.

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest request head read.
pub const MAX_HEAD: usize = 8192;
/// How long a client has to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client has to take the response.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections open at once.
pub const MAX_CONNECTIONS: usize = 512;
/// After the response, how long what the client still sends is read and discarded (closing
/// a socket with unread input resets it, and the reset can destroy the response in flight).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// The server's limits (the constants above; tests shorten them).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_head: usize,
    pub head_timeout: Duration,
    pub write_timeout: Duration,
    pub max_connections: usize,
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_head: MAX_HEAD,
            head_timeout: HEAD_TIMEOUT,
            write_timeout: WRITE_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            drain_timeout: DRAIN_TIMEOUT,
        }
    }
}

const LISTENER: Token = Token(0);

/// A request as the responder sees it.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
}

/// What the responder answers: status line text, content type, body. The body is shared, so
/// many clients taking the same response hold one copy.
#[derive(Clone)]
pub struct Response {
    pub status: &'static str,
    pub content_type: &'static str,
    pub body: Arc<[u8]>,
}

impl Response {
    pub fn text(status: &'static str, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Arc::from(body.into().into_bytes()),
        }
    }
}

enum Phase {
    /// Reading the head (bytes so far).
    Head(Vec<u8>),
    /// Writing: the header bytes, the body, and how much of both has gone.
    Write {
        head: Vec<u8>,
        body: Option<Arc<[u8]>>,
        sent: usize,
    },
    /// The response has gone; the rest of the input is read and discarded.
    Drain,
}

struct Conn {
    stream: TcpStream,
    phase: Phase,
    deadline: Instant,
    opened: Instant,
}

/// Where the end of the head is (after its blank line), if it has arrived.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The request line's method and path, or `None` for a line that is not one.
pub fn parse_head(head: &[u8]) -> Option<Request<'_>> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    // A method is a token (RFC 9110); the methods served are upper-case letters.
    let method_ok = !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase());
    if parts.next().is_some()
        || !method_ok
        || !version.starts_with("HTTP/1.")
        || !target.starts_with('/')
    {
        return None;
    }
    Some(Request {
        method,
        path: target.split('?').next().unwrap_or(target),
    })
}

fn write_phase(r: Response, head_only: bool) -> Phase {
    let head = format!(
        "HTTP/1.0 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.status,
        r.content_type,
        r.body.len()
    );
    Phase::Write {
        head: head.into_bytes(),
        body: (!head_only).then_some(r.body),
        sent: 0,
    }
}

/// The server: a listener and its connections.
pub struct Server {
    poll: Poll,
    listener: TcpListener,
    conns: HashMap<Token, Conn>,
    next: usize,
    limits: Limits,
    /// Connections may be waiting on the listener that no event will announce.
    pending: bool,
}

impl Server {
    pub fn new(listener: std::net::TcpListener, limits: Limits) -> std::io::Result<Server> {
        listener.set_nonblocking(true)?;
        // The standard library listens with a queue of 128. A burst beyond it (a flood of idle
        // connections reopened at once, while this thread waits for the counters) overflows
        // it, and the kernel drops the SYN of whatever comes next: a scraper arriving then
        // waits for its retransmission, a second later. The queue holds as many connections as
        // the server keeps open (the kernel caps it at net.core.somaxconn). Linux takes a
        // second listen(2) on a listening socket as a new queue length.
        let backlog = i32::try_from(limits.max_connections).unwrap_or(i32::MAX);
        // SAFETY: listen takes the descriptor of the socket `listener` owns (open for the call)
        // and an integer.
        if unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), backlog) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut listener = TcpListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Server {
            poll,
            listener,
            conns: HashMap::new(),
            next: 1,
            limits,
            pending: false,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.conns.len()
    }

    /// Serves until `until` returns true (checked at least once a second); `respond` answers
    /// each complete request.
    pub fn run(
        &mut self,
        mut respond: impl FnMut(&Request<'_>) -> Response,
        mut until: impl FnMut() -> bool,
    ) -> std::io::Result<()> {
        let mut events = Events::with_capacity(256);
        while !until() {
            self.turn(&mut events, &mut respond)?;
        }
        Ok(())
    }

    /// One wait for events (at most a second, or until the nearest deadline), and what they
    /// allow.
    pub fn turn(
        &mut self,
        events: &mut Events,
        respond: &mut impl FnMut(&Request<'_>) -> Response,
    ) -> std::io::Result<()> {
        let now = Instant::now();
        let wait = self
            .conns
            .values()
            .map(|c| c.deadline.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_secs(1))
            .min(if self.pending {
                Duration::from_millis(50)
            } else {
                Duration::from_secs(1)
            });
        match self.poll.poll(events, Some(wait)) {
            Err(e) if e.kind() == ErrorKind::Interrupted => return Ok(()),
            r => r?,
        }
        // The connections first, then new ones: a burst of connections evicts only after the
        // requests already here were read.
        let mut listener = self.pending;
        for ev in events.iter() {
            if ev.token() == LISTENER {
                listener = true;
            } else {
                self.advance(ev.token(), respond);
            }
        }
        if listener {
            self.accept();
        }
        let now = Instant::now();
        let late: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in late {
            self.close(t);
        }
        Ok(())
    }

    /// Takes pending connections until the listener has none (edge-triggered: no new event
    /// comes for the ones left). Stopping early (out of descriptors, or this round's bound)
    /// marks the listener `pending`: the next turn accepts again after a short wait.
    fn accept(&mut self) {
        self.pending = false;
        for _ in 0..1024 {
            let mut stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // A connection reset before it was taken, or a signal: the next one.
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionAborted | ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                // Out of descriptors or memory: try again at the next turn.
                Err(_) => break,
            };
            if self.conns.len() >= self.limits.max_connections {
                // The connection that costs least to lose: one whose response has gone
                // (draining), else the oldest still sending its request, else the oldest
                // taking its response.
                let rank = |c: &Conn| match c.phase {
                    Phase::Drain => 0,
                    Phase::Head(_) => 1,
                    Phase::Write { .. } => 2,
                };
                let victim = self
                    .conns
                    .iter()
                    .min_by_key(|(_, c)| (rank(c), c.opened))
                    .map(|(t, _)| *t);
                if let Some(t) = victim {
                    self.close(t);
                }
            }
            let token = Token(self.next);
            self.next = self.next.wrapping_add(1).max(1);
            if self
                .poll
                .registry()
                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                .is_err()
            {
                continue;
            }
            let now = Instant::now();
            self.conns.insert(
                token,
                Conn {
                    stream,
                    phase: Phase::Head(Vec::new()),
                    deadline: now + self.limits.head_timeout,
                    opened: now,
                },
            );
        }
        self.pending = true;
    }

    fn close(&mut self, t: Token) {
        if let Some(mut c) = self.conns.remove(&t) {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }

    /// Reads or writes what the connection allows now; closes it when it is done or broken.
    fn advance(&mut self, t: Token, respond: &mut impl FnMut(&Request<'_>) -> Response) {
        let Some(c) = self.conns.get_mut(&t) else {
            return;
        };
        // A broken connection is finished too.
        if step(c, &self.limits, respond).unwrap_or(true) {
            self.close(t);
        }
    }
}

/// Moves one connection on; `Ok(true)` when it is finished.
fn step(
    c: &mut Conn,
    limits: &Limits,
    respond: &mut impl FnMut(&Request<'_>) -> Response,
) -> std::io::Result<bool> {
    let max_head = limits.max_head;
    if let Phase::Head(buf) = &mut c.phase {
        let mut chunk = [0u8; 2048];
        // Edge-triggered: read until the socket has nothing more (or the head is complete).
        loop {
            let room = max_head + 1 - buf.len().min(max_head + 1);
            if room == 0 {
                break;
            }
            match c.stream.read(&mut chunk[..room.min(2048)]) {
                Ok(0) => return Ok(true),
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if head_end(buf).is_some() {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let phase = match head_end(buf) {
            Some(end) if end <= max_head => match parse_head(&buf[..end]) {
                Some(req) => {
                    let head_only = req.method == "HEAD";
                    let r = if req.method == "GET" || head_only {
                        respond(&req)
                    } else {
                        Response::text("405 Method Not Allowed", "GET only\n")
                    };
                    write_phase(r, head_only)
                }
                None => write_phase(Response::text("400 Bad Request", "bad request\n"), false),
            },
            _ if buf.len() > max_head => write_phase(
                Response::text(
                    "431 Request Header Fields Too Large",
                    format!("the request head is limited to {max_head} bytes\n"),
                ),
                false,
            ),
            _ => return Ok(false),
        };
        c.phase = phase;
        c.deadline = Instant::now() + limits.write_timeout;
    }
    if let Phase::Write { head, body, sent } = &mut c.phase {
        if !write_some(&mut c.stream, head, body.as_deref(), sent)? {
            return Ok(false);
        }
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
        c.phase = Phase::Drain;
        c.deadline = Instant::now() + limits.drain_timeout;
    }
    // Drain: a little, within the deadline. A client still sending after that much is reset.
    let mut chunk = [0u8; 4096];
    for _ in 0..16 {
        match c.stream.read(&mut chunk) {
            Ok(0) => return Ok(true),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Writes what the socket takes of `head` then `body` from `sent` on; `Ok(true)` once all
/// has gone.
fn write_some(
    stream: &mut TcpStream,
    head: &[u8],
    body: Option<&[u8]>,
    sent: &mut usize,
) -> std::io::Result<bool> {
    let body = body.unwrap_or_default();
    while *sent < head.len() + body.len() {
        let part = if *sent < head.len() {
            &head[*sent..]
        } else {
            &body[*sent - head.len()..]
        };
        match stream.write(part) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => *sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests;
