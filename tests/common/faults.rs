//! Faults for the reliability tests: a fault-injecting HTTP/1.1 proxy that sits between
//! `oci-push` and the real registry, a way to stop and restart that registry on the same port
//! and storage, and a runner for `oci-push` that is bounded in time and can be killed.
//!
//! The proxy ([`FaultProxy`]) forwards every request (bodies sent with `Content-Length` or
//! chunked) to the registry on a fresh upstream connection and relays the answer, keeping the
//! client's connection alive as a registry would. Scripted [`Rule`]s match a method and a
//! substring of the request target (path and query) and, on the Nth match, on every match or on
//! the first K matches, apply a [`Fault`] instead: drop the connection part-way through the
//! request body, answer a status of their own (`Retry-After` and all), stall, truncate the
//! answer, lose the answer after the registry acted, or reset at once. Every request is recorded
//! ([`ProxiedRequest`]) so that a test can count, say, the upload sessions a push opened. A TLS
//! ClientHello (from a client trying HTTPS first, as crane does) is answered as Go's plain-HTTP server
//! answers it, with a `400` and a close, and is not counted as a request.
//!
//! Everything is bounded: socket timeouts, stalls that end when the proxy is dropped, and the
//! proxy's threads are stopped and joined on drop.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tempfile::TempDir;

use super::http::{
    framing, header, invalid, is_hop_by_hop, read_body, read_head, read_headers, read_line, reason,
    Framing, Head, MAX_BODY, MAX_HEAD,
};
use super::{Registry, Run};

/// How long a proxy thread waits on a silent peer before giving up on the connection.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Connecting to the registry (on loopback: refused at once when it is down).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What Go's `net/http` writes when a plain-HTTP server receives a TLS ClientHello.
const GO_BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request";

// ---------------------------------------------------------------------------------------------
// Rules

/// Which of the requests a rule matches it acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// Only the Nth matching request (1-based).
    Nth(usize),
    /// Every matching request.
    Every,
    /// The first K matching requests.
    FirstK(usize),
    /// About `percent` in 100 of the matching requests, drawn by a coin seeded with `seed`:
    /// the same requests every run when they arrive in the same order (one upload at a
    /// time), different ones for another seed.
    Chance { percent: u64, seed: u64 },
}

/// What the proxy does to a request instead of (or on top of) forwarding it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Read `after` bytes of the request body (all of it when it is shorter), wait `wait`, then
    /// close the connection. Nothing reaches the registry.
    DropBody { after: u64, wait: Duration },
    /// Answer `status` (with these extra headers, and `body` or a distribution-style JSON error)
    /// instead of forwarding; the request body is read first and the connection kept.
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: Option<String>,
        /// How long to wait before answering (a slow refusal).
        delay: Duration,
    },
    /// Wait `wait` once the request is read, then forward it as usual (`forward`), or close the
    /// connection without forwarding. Dropping the proxy ends the wait (and closes).
    Stall { wait: Duration, forward: bool },
    /// Forward, then send the answer cut short and close: its head and half of its body, with a
    /// `Content-Length` declaring at least 64 bytes (so that even an empty `201` is cut); for an
    /// answer that has no body (`HEAD`, `204`, `304`), half of its head.
    Truncate,
    /// Forward, then close without answering: the registry acted, the client never hears.
    DropResponse,
    /// Close as soon as the request head is read; unread body bytes make it a TCP reset.
    Reset,
    /// One of these, drawn by the rule's coin (with [`When::Chance`]) or in turn.
    OneOf(Vec<Fault>),
    /// Forward, then change the registry's answer as another registry would send it.
    Rewrite(Vec<Edit>),
    /// Honour `If-Match` and `If-None-Match: *` on the request as a registry with conditional
    /// manifest writes would (distribution ignores them): after `wait` (a window for another
    /// writer), ask the registry where the target points now, and answer 412 when the
    /// condition fails; forward otherwise.
    Conditional { wait: Duration },
}

/// A change to a forwarded answer, for [`Fault::Rewrite`]: another registry's manners.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    Status(u16),
    /// Sets (replaces) a header.
    Header(String, String),
    RemoveHeader(String),
    /// `Location: http://host:port/v2/...` as `/v2/...`, as GHCR and GAR send it.
    RelativeLocation,
}

impl Edit {
    pub fn header(name: &str, value: &str) -> Edit {
        Edit::Header(name.to_string(), value.to_string())
    }

    fn apply(&self, answer: &mut Answer) {
        match self {
            Edit::Status(status) => {
                answer.status = *status;
                answer.reason = reason(*status).to_string();
            }
            Edit::Header(name, value) => {
                answer
                    .headers
                    .retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                answer.headers.push((name.clone(), value.clone()));
            }
            Edit::RemoveHeader(name) => answer
                .headers
                .retain(|(n, _)| !n.eq_ignore_ascii_case(name)),
            Edit::RelativeLocation => {
                for (name, value) in answer.headers.iter_mut() {
                    if name.eq_ignore_ascii_case("location") {
                        if let Some(rest) = value.split_once("://").map(|(_, rest)| rest) {
                            *value = rest[rest.find('/').unwrap_or(rest.len())..].to_string();
                        }
                    }
                }
            }
        }
    }
}

impl Fault {
    /// Answer `status` with a JSON error body.
    pub fn status(status: u16) -> Fault {
        Fault::Status {
            status,
            headers: Vec::new(),
            body: None,
            delay: Duration::ZERO,
        }
    }

    /// Answer `status` with `Retry-After: value` (seconds, or an HTTP date: see [`http_date`]).
    pub fn retry_after(status: u16, value: &str) -> Fault {
        Fault::status(status).with_header("Retry-After", value)
    }

    /// Adds a header to a [`Fault::Status`] answer.
    pub fn with_header(self, name: &str, value: &str) -> Fault {
        match self {
            Fault::Status {
                status,
                mut headers,
                body,
                delay,
            } => {
                headers.push((name.to_string(), value.to_string()));
                Fault::Status {
                    status,
                    headers,
                    body,
                    delay,
                }
            }
            other => panic!("with_header on {other:?}: only a Status answer has headers"),
        }
    }

    /// Replaces the body of a [`Fault::Status`] answer.
    pub fn with_body(self, text: &str) -> Fault {
        match self {
            Fault::Status {
                status,
                headers,
                delay,
                ..
            } => Fault::Status {
                status,
                headers,
                body: Some(text.to_string()),
                delay,
            },
            other => panic!("with_body on {other:?}: only a Status answer has a body"),
        }
    }

    /// Makes a [`Fault::Status`] answer wait `wait` first.
    pub fn delayed(self, wait: Duration) -> Fault {
        match self {
            Fault::Status {
                status,
                headers,
                body,
                ..
            } => Fault::Status {
                status,
                headers,
                body,
                delay: wait,
            },
            other => panic!("delayed on {other:?}: only a Status answer waits"),
        }
    }

    /// Close the connection after `bytes` of the request body, at once.
    pub fn drop_body_after(bytes: u64) -> Fault {
        Fault::DropBody {
            after: bytes,
            wait: Duration::ZERO,
        }
    }

    /// Read `bytes` of the request body, then hold the connection for `wait` and close it.
    pub fn hang_body_after(bytes: u64, wait: Duration) -> Fault {
        Fault::DropBody { after: bytes, wait }
    }

    /// Wait `wait`, then forward: a slow registry.
    pub fn stall(wait: Duration) -> Fault {
        Fault::Stall {
            wait,
            forward: true,
        }
    }

    /// Wait `wait`, then close without forwarding: a registry that never answers.
    pub fn hang(wait: Duration) -> Fault {
        Fault::Stall {
            wait,
            forward: false,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Fault::DropBody { .. } => "drop-body",
            Fault::Status { .. } => "status",
            Fault::Stall { forward: true, .. } => "stall",
            Fault::Stall { forward: false, .. } => "hang",
            Fault::Truncate => "truncate",
            Fault::DropResponse => "drop-response",
            Fault::Reset => "reset",
            Fault::OneOf(_) => "one-of",
            Fault::Rewrite(_) => "rewrite",
            Fault::Conditional { .. } => "conditional",
        }
    }
}

/// A scripted fault: requests whose method is `method` (`*` for any) and whose target (path
/// and query, as sent) contains `path` get `fault`, on the matches `when` says.
#[derive(Clone, Debug)]
pub struct Rule {
    pub method: String,
    pub path: String,
    pub when: When,
    pub fault: Fault,
    /// Only requests without an `Authorization` header match.
    pub bare_only: bool,
    /// Only requests declaring a body (`Content-Length`) of more than this many bytes match.
    pub body_over: Option<u64>,
}

impl Rule {
    pub fn new(method: &str, path: &str, when: When, fault: Fault) -> Rule {
        Rule {
            method: method.to_string(),
            path: path.to_string(),
            when,
            fault,
            bare_only: false,
            body_over: None,
        }
    }

    /// Matches only requests that carry no `Authorization` header: with a 401 challenge, a
    /// registry that wants credentials for some requests and takes any it gets.
    pub fn without_credentials(mut self) -> Rule {
        self.bare_only = true;
        self
    }

    /// The Nth matching request (1-based) gets the fault.
    pub fn nth(n: usize, method: &str, path: &str, fault: Fault) -> Rule {
        assert!(n >= 1, "requests are counted from 1");
        Rule::new(method, path, When::Nth(n), fault)
    }

    pub fn every(method: &str, path: &str, fault: Fault) -> Rule {
        Rule::new(method, path, When::Every, fault)
    }

    pub fn first(k: usize, method: &str, path: &str, fault: Fault) -> Rule {
        Rule::new(method, path, When::FirstK(k), fault)
    }

    /// Matches only requests whose declared body is larger than `bytes`: a cap on bodies.
    pub fn body_over(mut self, bytes: u64) -> Rule {
        self.body_over = Some(bytes);
        self
    }

    fn matches(&self, head: &Head) -> bool {
        let declared = head
            .header("content-length")
            .and_then(|l| l.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if self.body_over.is_some_and(|cap| declared <= cap) {
            return false;
        }
        (self.method == "*" || self.method.eq_ignore_ascii_case(&head.method))
            && head.target.contains(&self.path)
            && !(self.bare_only && head.header("authorization").is_some())
    }
}

struct Armed {
    rule: Rule,
    active: bool,
    matched: usize,
    fired: usize,
}

// ---------------------------------------------------------------------------------------------
// What the proxy saw

/// One request the proxy received, and what became of it.
#[derive(Clone, Debug)]
pub struct ProxiedRequest {
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// Body bytes the proxy read from the client (all of them unless a fault cut it).
    pub body_len: u64,
    /// When the request head arrived.
    pub at: Instant,
    /// The client connection it came on (numbered from 1 in accept order).
    pub connection: usize,
    /// The rule (index from [`FaultProxy::add`] / the start list) that acted on it.
    pub fault: Option<usize>,
    /// The registry's status, when the request was forwarded and answered.
    pub upstream: Option<u16>,
    /// The status the client received in full (None: cut, dropped or reset).
    pub answered: Option<u16>,
    /// Why forwarding failed (the registry was down, ...).
    pub upstream_error: Option<String>,
}

impl ProxiedRequest {
    /// The target without its query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Whether `method` (`*`: any) and a target containing `path` select this request.
    pub fn is(&self, method: &str, path: &str) -> bool {
        (method == "*" || self.method.eq_ignore_ascii_case(method)) && self.target.contains(path)
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy

struct Shared {
    upstream: SocketAddr,
    rules: Mutex<Vec<Armed>>,
    log: Mutex<Vec<ProxiedRequest>>,
    stop: AtomicBool,
    tls_probes: AtomicUsize,
    connections: AtomicUsize,
    /// Clones of every open socket, shut down when the proxy is dropped.
    sockets: Mutex<HashMap<usize, TcpStream>>,
    next_socket: AtomicUsize,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps `wait`, or less when the proxy is dropped; true when the whole wait passed.
    fn sleep(&self, wait: Duration) -> bool {
        let end = Instant::now() + wait;
        loop {
            if self.stopped() {
                return false;
            }
            let now = Instant::now();
            if now >= end {
                return true;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(10)));
        }
    }

    /// Keeps a clone of the socket to shut down when the proxy is dropped. A socket tracked
    /// after the drop began (and so missed by it) is shut down here.
    fn track(&self, stream: &TcpStream) -> Option<usize> {
        let clone = stream.try_clone().ok()?;
        let id = self.next_socket.fetch_add(1, Ordering::SeqCst);
        lock(&self.sockets).insert(id, clone);
        if self.stopped() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        Some(id)
    }

    fn untrack(&self, id: Option<usize>) {
        if let Some(id) = id {
            lock(&self.sockets).remove(&id);
        }
    }

    fn record(&self, head: &Head, connection: usize) -> usize {
        let mut log = lock(&self.log);
        log.push(ProxiedRequest {
            method: head.method.clone(),
            target: head.target.clone(),
            headers: head.headers.clone(),
            body_len: 0,
            at: Instant::now(),
            connection,
            fault: None,
            upstream: None,
            answered: None,
            upstream_error: None,
        });
        log.len() - 1
    }

    fn update(&self, index: usize, change: impl FnOnce(&mut ProxiedRequest)) {
        if let Some(seen) = lock(&self.log).get_mut(index) {
            change(seen);
        }
    }

    /// Counts the request against every active rule it matches; the first rule whose turn it
    /// is acts on it.
    fn pick(&self, head: &Head) -> Option<(usize, Fault)> {
        let mut rules = lock(&self.rules);
        let mut chosen = None;
        for (index, armed) in rules.iter_mut().enumerate() {
            if !armed.active || !armed.rule.matches(head) {
                continue;
            }
            armed.matched += 1;
            let draw = match armed.rule.when {
                When::Chance { seed, .. } => coin(seed, armed.matched as u64),
                _ => armed.matched as u64,
            };
            let turn = match armed.rule.when {
                When::Nth(n) => armed.matched == n,
                When::Every => true,
                When::FirstK(k) => armed.matched <= k,
                When::Chance { percent, .. } => draw % 100 < percent,
            };
            if turn && chosen.is_none() {
                armed.fired += 1;
                let pick = match armed.rule.when {
                    When::Chance { .. } => (draw / 100) as usize,
                    _ => armed.fired - 1,
                };
                let fault = match &armed.rule.fault {
                    Fault::OneOf(faults) if !faults.is_empty() => {
                        faults[pick % faults.len()].clone()
                    }
                    fault => fault.clone(),
                };
                chosen = Some((index, fault));
            }
        }
        chosen
    }
}

/// A number drawn from `seed` and `n` (splitmix64): a coin that is the same every run.
fn coin(seed: u64, n: u64) -> u64 {
    let mut x = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The fault-injecting proxy; stops (and ends every stall) when dropped.
pub struct FaultProxy {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy in front of `registry`, with these rules (numbered from 0 in this order).
    pub fn start(registry: &Registry, rules: Vec<Rule>) -> FaultProxy {
        FaultProxy::start_to(registry.port, rules)
    }

    /// A proxy in front of whatever listens (or not) on `127.0.0.1:upstream_port`.
    pub fn start_to(upstream_port: u16, rules: Vec<Rule>) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            upstream: SocketAddr::from(([127, 0, 0, 1], upstream_port)),
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            tls_probes: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            sockets: Mutex::new(HashMap::new()),
            next_socket: AtomicUsize::new(0),
            threads: Mutex::new(Vec::new()),
        });
        lock(&shared.rules).extend(rules.into_iter().map(|rule| Armed {
            rule,
            active: true,
            matched: 0,
            fired: 0,
        }));
        let for_loop = shared.clone();
        let accept = std::thread::spawn(move || accept_loop(listener, for_loop));
        FaultProxy {
            port,
            shared,
            accept: Some(accept),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT/path`: a repository reached through the proxy.
    pub fn repo(&self, path: &str) -> String {
        format!("{}/{path}", self.host())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// Adds a rule; returns its number for [`FaultProxy::fired`].
    pub fn add(&self, rule: Rule) -> usize {
        let mut rules = lock(&self.shared.rules);
        rules.push(Armed {
            rule,
            active: true,
            matched: 0,
            fired: 0,
        });
        rules.len() - 1
    }

    /// Turns every rule off: from now on the proxy only forwards. Counts are kept.
    pub fn disarm_all(&self) {
        for armed in lock(&self.shared.rules).iter_mut() {
            armed.active = false;
        }
    }

    /// How many times rule `rule` acted.
    pub fn fired(&self, rule: usize) -> usize {
        lock(&self.shared.rules).get(rule).map_or(0, |a| a.fired)
    }

    /// How many requests rule `rule` matched (acted on or not).
    pub fn matched(&self, rule: usize) -> usize {
        lock(&self.shared.rules).get(rule).map_or(0, |a| a.matched)
    }

    /// Waits until rule `rule` acted `times` times; false when `limit` passed first.
    pub fn wait_fired(&self, rule: usize, times: usize, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if self.fired(rule) >= times {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.fired(rule) >= times
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        lock(&self.shared.log).clone()
    }

    /// The requests with this method (`*`: any) whose target contains `path`.
    pub fn matching(&self, method: &str, path: &str) -> Vec<ProxiedRequest> {
        lock(&self.shared.log)
            .iter()
            .filter(|s| s.is(method, path))
            .cloned()
            .collect()
    }

    /// How many requests had this method (`*`: any) and a target containing `path`.
    pub fn count(&self, method: &str, path: &str) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|s| s.is(method, path))
            .count()
    }

    /// Forgets the requests seen so far (rules and their counts are kept).
    pub fn forget(&self) {
        lock(&self.shared.log).clear();
    }

    /// Connections that opened with a TLS ClientHello (answered with a 400 and closed).
    pub fn tls_probes(&self) -> usize {
        self.shared.tls_probes.load(Ordering::SeqCst)
    }

    /// Client connections accepted, TLS probes included.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// One line per request, for assertion messages.
    pub fn describe(&self) -> String {
        let log = lock(&self.shared.log);
        let first = log.first().map(|s| s.at);
        log.iter()
            .map(|s| {
                let ms = first.map_or(0, |f| s.at.duration_since(f).as_millis());
                let mut line = format!(
                    "{ms:>6} ms  conn {:>3}  {} {}  body {}",
                    s.connection,
                    s.method,
                    redact_query(&s.target),
                    s.body_len
                );
                if let Some(rule) = s.fault {
                    line.push_str(&format!("  FAULT(rule {rule})"));
                }
                if let Some(status) = s.upstream {
                    line.push_str(&format!("  registry {status}"));
                }
                if let Some(status) = s.answered {
                    line.push_str(&format!("  client got {status}"));
                }
                if let Some(e) = &s.upstream_error {
                    line.push_str(&format!("  upstream error: {e}"));
                }
                line.push('\n');
                line
            })
            .collect()
    }
}

/// An upload URL's query is long state; keep the digest, drop the rest.
fn redact_query(target: &str) -> String {
    match target.split_once('?') {
        Some((path, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|p| !p.starts_with("_state="))
                .collect();
            if kept.is_empty() {
                format!("{path}?…")
            } else {
                format!("{path}?{}", kept.join("&"))
            }
        }
        None => target.to_string(),
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop, then cut every connection so that no thread waits on a peer.
        let _ = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(1),
        );
        for (_, socket) in lock(&self.shared.sockets).drain() {
            let _ = socket.shutdown(Shutdown::Both);
        }
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let threads: Vec<JoinHandle<()>> = lock(&self.shared.threads).drain(..).collect();
        for thread in threads {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopped() {
            return;
        }
        let Ok(stream) = stream else { continue };
        let number = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
        let id = shared.track(&stream);
        let for_thread = shared.clone();
        let handle = std::thread::spawn(move || {
            serve(&for_thread, stream, number);
            for_thread.untrack(id);
        });
        let mut threads = lock(&shared.threads);
        // Reap finished connection threads as we go.
        let mut i = 0;
        while i < threads.len() {
            if threads[i].is_finished() {
                let _ = threads.swap_remove(i).join();
            } else {
                i += 1;
            }
        }
        threads.push(handle);
    }
}

/// Serves one client connection: requests one after another (keep-alive) until a fault, an
/// error, a `Connection: close` or the proxy's end.
fn serve(shared: &Shared, client: TcpStream, connection: usize) {
    let _ = client.set_read_timeout(Some(IO_TIMEOUT));
    let _ = client.set_write_timeout(Some(IO_TIMEOUT));
    let _ = client.set_nodelay(true);
    let Ok(read_half) = client.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = client;
    match reader.fill_buf() {
        Ok([0x16, ..]) => {
            shared.tls_probes.fetch_add(1, Ordering::SeqCst);
            let _ = writer.write_all(GO_BAD_REQUEST);
            let _ = writer.flush();
            let _ = writer.shutdown(Shutdown::Write);
            return;
        }
        Ok([]) | Err(_) => return,
        Ok(_) => {}
    }
    while !shared.stopped() {
        let head = match read_head(&mut reader) {
            Ok(Some(head)) => head,
            _ => return,
        };
        if !exchange(shared, &head, &mut reader, &mut writer, connection) {
            return;
        }
    }
}

/// One request: read it, act on it, answer. False when the client connection must close.
fn exchange(
    shared: &Shared,
    head: &Head,
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    connection: usize,
) -> bool {
    let index = shared.record(head, connection);
    let chosen = shared.pick(head);
    if let Some((rule, _)) = &chosen {
        let rule = *rule;
        shared.update(index, |s| s.fault = Some(rule));
    }
    let fault = chosen.map(|(_, f)| f);
    let Ok(framing) = framing(&head.headers) else {
        return false;
    };
    let continue_first = head
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    match &fault {
        Some(Fault::Reset) => return false,
        Some(Fault::DropBody { after, wait }) => {
            if continue_first {
                let _ = writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
            }
            if let Ok((body, _)) = read_body(reader, &framing, *after) {
                let len = body.len() as u64;
                shared.update(index, |s| s.body_len = len);
            }
            shared.sleep(*wait);
            return false;
        }
        _ => {}
    }
    if continue_first && writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
        return false;
    }
    let body = match read_body(reader, &framing, MAX_BODY) {
        Ok((body, true)) => body,
        _ => return false,
    };
    let len = body.len() as u64;
    shared.update(index, |s| s.body_len = len);
    let close = head.wants_close();
    if let Some(Fault::Conditional { wait }) = &fault {
        if !shared.sleep(*wait) {
            return false;
        }
        if !condition_holds(shared, head) {
            let answer = injected_answer(412, &[], None, &head.method, close);
            shared.update(index, |s| s.answered = Some(412));
            return writer
                .write_all(&answer)
                .and_then(|()| writer.flush())
                .is_ok()
                && !close;
        }
    }
    match &fault {
        Some(Fault::Status {
            status,
            headers,
            body,
            delay,
        }) => {
            if !shared.sleep(*delay) {
                return false;
            }
            let answer = injected_answer(*status, headers, body.as_deref(), &head.method, close);
            let status = *status;
            shared.update(index, |s| s.answered = Some(status));
            return writer
                .write_all(&answer)
                .and_then(|()| writer.flush())
                .is_ok()
                && !close;
        }
        // A hang ends in a close, as does a stall the proxy's end cut short.
        Some(Fault::Stall { wait, forward }) if !shared.sleep(*wait) || !*forward => return false,
        _ => {}
    }
    let mut answer = match forward(shared, head, &body) {
        Ok(answer) => answer,
        Err(e) => {
            let e = e.to_string();
            shared.update(index, |s| s.upstream_error = Some(e));
            // The registry is unreachable: the client sees its connection dropped.
            return false;
        }
    };
    shared.update(index, |s| s.upstream = Some(answer.status));
    if let Some(Fault::Rewrite(edits)) = &fault {
        for edit in edits {
            edit.apply(&mut answer);
        }
    }
    let status = answer.status;
    let (head_bytes, body_bytes) = answer.to_bytes(&head.method, close, false);
    match &fault {
        Some(Fault::Truncate) => {
            let bodyless = no_body(&head.method, status);
            if bodyless {
                let _ = writer.write_all(&head_bytes[..head_bytes.len() / 2]);
            } else {
                let (head_bytes, _) = answer.to_bytes(&head.method, true, true);
                let _ = writer.write_all(&head_bytes);
                let _ = writer.write_all(&body_bytes[..body_bytes.len() / 2]);
            }
            let _ = writer.flush();
            false
        }
        Some(Fault::DropResponse) => false,
        _ => {
            let ok = writer
                .write_all(&head_bytes)
                .and_then(|()| writer.write_all(&body_bytes))
                .and_then(|()| writer.flush())
                .is_ok();
            if ok {
                shared.update(index, |s| s.answered = Some(status));
            }
            ok && !close
        }
    }
}

/// Whether the request's `If-Match` (the digest its target names now, quoted as an ETag) or
/// `If-None-Match: *` (the target does not exist) holds, asked of the registry with a HEAD.
fn condition_holds(shared: &Shared, head: &Head) -> bool {
    let if_match = head
        .header("if-match")
        .map(|v| v.trim().trim_matches('"').to_string());
    let if_none = head
        .header("if-none-match")
        .is_some_and(|v| v.trim() == "*");
    if if_match.is_none() && !if_none {
        return true;
    }
    let mut headers: Vec<(String, String)> = head
        .headers
        .iter()
        .filter(|(name, _)| {
            ["authorization", "host"]
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n))
        })
        .cloned()
        .collect();
    headers.push((
        "Accept".to_string(),
        "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"
            .to_string(),
    ));
    let probe = Head {
        method: "HEAD".to_string(),
        target: head.target.clone(),
        version: head.version.clone(),
        headers,
    };
    let Ok(answer) = forward(shared, &probe, &[]) else {
        return false;
    };
    let current = match answer.status {
        200 => header(&answer.headers, "docker-content-digest").map(str::to_string),
        _ => None,
    };
    match (if_match, current) {
        (Some(expected), Some(current)) => expected == current,
        (Some(_), None) => false,
        (None, current) => current.is_none(),
    }
}

/// Sends the request to the registry on a new connection and reads its whole answer.
fn forward(shared: &Shared, head: &Head, body: &[u8]) -> io::Result<Answer> {
    let stream = TcpStream::connect_timeout(&shared.upstream, CONNECT_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let _ = stream.set_nodelay(true);
    let id = shared.track(&stream);
    let result = (|| {
        let mut writer = stream.try_clone()?;
        let mut out = format!("{} {} HTTP/1.1\r\n", head.method, head.target);
        for (name, value) in &head.headers {
            if is_hop_by_hop(name) || name.eq_ignore_ascii_case("expect") {
                continue;
            }
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        let had_body = !matches!(framing(&head.headers)?, Framing::None);
        if had_body || !body.is_empty() {
            out.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        out.push_str("Connection: close\r\n\r\n");
        writer.write_all(out.as_bytes())?;
        writer.write_all(body)?;
        writer.flush()?;
        let mut reader = BufReader::new(stream.try_clone()?);
        read_answer(&mut reader, &head.method)
    })();
    shared.untrack(id);
    result
}

/// An answer the proxy makes up for a [`Fault::Status`].
fn injected_answer(
    status: u16,
    headers: &[(String, String)],
    body: Option<&str>,
    method: &str,
    close: bool,
) -> Vec<u8> {
    let body = body.map(str::to_string).unwrap_or_else(|| {
        format!(
            r#"{{"errors":[{{"code":"{}","message":"{} (injected by the test's fault proxy)","detail":null}}]}}"#,
            error_code(status),
            reason(status).to_lowercase()
        )
    });
    let own_type = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\n{}Docker-Distribution-Api-Version: registry/2.0\r\nContent-Length: {}\r\n",
        reason(status),
        match own_type {
            true => "",
            false => "Content-Type: application/json; charset=utf-8\r\n",
        },
        body.len()
    );
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !no_body(method, status) {
        bytes.extend_from_slice(body.as_bytes());
    }
    bytes
}

fn error_code(status: u16) -> &'static str {
    match status {
        400 => "BLOB_UPLOAD_INVALID",
        401 => "UNAUTHORIZED",
        403 => "DENIED",
        404 => "BLOB_UPLOAD_UNKNOWN",
        405 => "UNSUPPORTED",
        408 => "TIMEOUT",
        413 => "SIZE_INVALID",
        429 => "TOOMANYREQUESTS",
        _ => "UNAVAILABLE",
    }
}

fn no_body(method: &str, status: u16) -> bool {
    method.eq_ignore_ascii_case("HEAD") || status == 204 || status == 304 || status < 200
}

/// The registry's answer, read whole.
struct Answer {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    /// Head and body as the client gets them: hop-by-hop headers replaced, the body re-framed
    /// with `Content-Length` (for HEAD the registry's own length is kept). With `declare_more`,
    /// the length declared is at least 64 bytes (for [`Fault::Truncate`]).
    fn to_bytes(&self, method: &str, close: bool, declare_more: bool) -> (Vec<u8>, Vec<u8>) {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, self.reason);
        for (name, value) in &self.headers {
            if !is_hop_by_hop(name) {
                out.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        if method.eq_ignore_ascii_case("HEAD") {
            if let Some(len) = header(&self.headers, "content-length") {
                out.push_str(&format!("Content-Length: {len}\r\n"));
            }
        } else if !no_body(method, self.status) {
            let len = if declare_more {
                self.body.len().max(64)
            } else {
                self.body.len()
            };
            out.push_str(&format!("Content-Length: {len}\r\n"));
        }
        if close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        let body = if no_body(method, self.status) {
            Vec::new()
        } else {
            self.body.clone()
        };
        (out.into_bytes(), body)
    }
}

fn read_answer<R: BufRead>(reader: &mut R, method: &str) -> io::Result<Answer> {
    loop {
        let mut budget = MAX_HEAD;
        let line = read_line(reader, &mut budget)?.ok_or(io::ErrorKind::UnexpectedEof)?;
        let mut parts = line.splitn(3, ' ');
        let _version = parts.next();
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid("bad status line"))?;
        let reason = parts.next().unwrap_or("").to_string();
        let headers = read_headers(reader, &mut budget)?;
        if (100..200).contains(&status) {
            continue;
        }
        let body = if no_body(method, status) {
            Vec::new()
        } else {
            let framing = match framing(&headers)? {
                Framing::None => Framing::UntilClose,
                other => other,
            };
            let (body, _) = read_body(reader, &framing, MAX_BODY)?;
            body
        };
        return Ok(Answer {
            status,
            reason,
            headers,
            body,
        });
    }
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), as `Retry-After` and `Date` carry.
pub fn http_date(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (hour, minute, second) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // 1970-01-01 was a Thursday.
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][(days % 7) as usize];
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let month_name = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(month - 1) as usize];
    format!("{weekday}, {day:02} {month_name} {year} {hour:02}:{minute:02}:{second:02} GMT")
}

// ---------------------------------------------------------------------------------------------
// Stopping and restarting the real registry

impl Registry {
    /// Kills the registry process (its storage stays) and waits until its port is closed.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let end = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(Instant::now() < end, "the registry's port stayed open");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the registry again, on the same port, with the same configuration and storage.
    pub fn start_again(&mut self) {
        let config = self.dir.path().join("config.yml");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("registry.log"))
            .expect("registry log");
        self.child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("restart docker-registry");
        let end = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the registry exited on restart ({status}); log:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < end,
                "the registry did not restart; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Gives the registry a fixed `http.secret` (and restarts it): upload sessions then survive
    /// a restart, as they do behind a load balancer whose registries share their secret.
    pub fn pin_upload_secret(&mut self) {
        let path = self.dir.path().join("config.yml");
        let config = std::fs::read_to_string(&path).expect("registry config");
        if !config.contains("\n  secret:") {
            let mut pinned = String::new();
            for line in config.lines() {
                pinned.push_str(line);
                pinned.push('\n');
                if line.starts_with("  addr:") {
                    pinned.push_str("  secret: oci-push-fault-tests-upload-secret\n");
                }
            }
            assert!(pinned.contains("  secret:"), "no http addr in:\n{config}");
            std::fs::write(&path, pinned).expect("write registry config");
        }
        self.stop();
        self.start_again();
    }
}

// ---------------------------------------------------------------------------------------------
// Running oci-push, bounded

/// A running `oci-push`, its output going to files.
pub struct Running {
    child: Child,
    dir: TempDir,
    pub started: Instant,
}

/// Starts `oci-push` without proxy variables in its environment.
pub fn spawn_oci_push<I, S>(args: I) -> Running
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let dir = TempDir::new().expect("temp dir");
    let stdout = std::fs::File::create(dir.path().join("stdout")).expect("stdout file");
    let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_oci-push"));
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    for var in [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
    ] {
        command.env_remove(var);
    }
    let child = command.spawn().expect("start oci-push");
    Running {
        child,
        dir,
        started: Instant::now(),
    }
}

impl Running {
    /// SIGKILL, then what it had printed (exit code -1: killed by a signal).
    pub fn kill(mut self) -> Run {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.collect(-1)
    }

    /// Waits for the exit, at most `limit`: past it the process is killed and the test fails.
    pub fn wait(mut self, limit: Duration) -> (Run, Duration) {
        let end = self.started + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let took = self.started.elapsed();
                return (self.collect(status.code().unwrap_or(-1)), took);
            }
            if Instant::now() >= end {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let run = self.collect(-1);
                panic!(
                    "oci-push ran longer than {limit:?} and was killed; stderr:\n{}",
                    run.stderr
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn collect(&self, code: i32) -> Run {
        let read = |name: &str| {
            String::from_utf8_lossy(&std::fs::read(self.dir.path().join(name)).unwrap_or_default())
                .into_owned()
        };
        Run {
            code,
            stdout: read("stdout"),
            stderr: read("stderr"),
        }
    }
}

/// Runs `oci-push` to its end, at most `limit` (the test fails past it); returns what it
/// printed and how long it took.
pub fn run_bounded<I, S>(args: I, limit: Duration) -> (Run, Duration)
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    spawn_oci_push(args).wait(limit)
}

// ---------------------------------------------------------------------------------------------
// Reading the retry lines

/// The `retry: ...` lines of stderr.
pub fn retry_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("retry: "))
        .collect()
}

/// `attempt K of N` in a line.
pub fn attempt_of(line: &str) -> Option<(u32, u32)> {
    let words: Vec<&str> = line
        .split(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '(' | ')' | ':'))
        .filter(|w| !w.is_empty())
        .collect();
    words.windows(4).find_map(|w| {
        (w[0] == "attempt" && w[2] == "of")
            .then(|| Some((w[1].parse().ok()?, w[3].parse().ok()?)))
            .flatten()
    })
}

/// Every duration written in a line: `1s`, `1.5 s`, `750ms`, `2 seconds`, ...
pub fn durations_in(line: &str) -> Vec<Duration> {
    let bytes = line.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts_number = bytes[i].is_ascii_digit()
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'.'));
        if !starts_number {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let Ok(value) = line[start..i].parse::<f64>() else {
            continue;
        };
        let mut j = i;
        if j < bytes.len() && bytes[j] == b' ' {
            j += 1;
        }
        let unit_end = (j..bytes.len())
            .find(|&k| !bytes[k].is_ascii_alphabetic())
            .unwrap_or(bytes.len());
        let scale = match &line[j..unit_end] {
            "ms" | "millisecond" | "milliseconds" => 0.001,
            "s" | "sec" | "secs" | "second" | "seconds" => 1.0,
            _ => continue,
        };
        found.push(Duration::from_secs_f64(value * scale));
        i = unit_end;
    }
    found
}
