//! Small HTTP/1.1 servers on loopback, on threads, for the tests: the request parsing they share,
//! a CONNECT proxy, and a "front" that forwards to a real registry but sends blob uploads to
//! another host (like a presigned storage URL). Every server answers one request per connection
//! (`Connection: close`), records what it saw, and stops accepting when dropped.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::http;
use super::AdminAuth;

/// How long a server thread waits for a peer before giving up on the connection.
const IO_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// HTTP requests

/// A request as a test server received it.
#[derive(Clone, Debug)]
pub struct HttpRequest {
    pub method: String,
    /// The request target as sent: a path and query, an absolute URL, or (CONNECT) host:port.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        http::header(&self.headers, name)
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// The target without its query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The decoded query parameters, in order, repeated ones included.
    pub fn query(&self) -> Vec<(String, String)> {
        self.target
            .split_once('?')
            .map(|(_, q)| parse_form(q))
            .unwrap_or_default()
    }

    /// The head as it goes on the wire, with `Content-Length` for the body read and without the
    /// hop-by-hop headers, `Connection: close` instead.
    fn head_for_forwarding(&self, replace: &[(&str, Option<String>)]) -> String {
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        for (name, value) in &self.headers {
            if http::is_hop_by_hop(name)
                || replace.iter().any(|(r, _)| name.eq_ignore_ascii_case(r))
            {
                continue;
            }
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        for (name, value) in replace {
            if let Some(value) = value {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        if !self.body.is_empty() || matches!(self.method.as_str(), "POST" | "PUT" | "PATCH") {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        head.push_str("Connection: close\r\n\r\n");
        head
    }
}

/// Reads a request head (request line and headers). `Ok(None)` when the peer closed without
/// sending anything; an `InvalidData` error for anything that is not HTTP, such as the TLS
/// ClientHello of a client trying HTTPS first (answered at once, so that client fails fast).
pub fn read_head(reader: &mut BufReader<TcpStream>) -> io::Result<Option<HttpRequest>> {
    let first = reader.fill_buf()?;
    if first.is_empty() {
        return Ok(None);
    }
    if !first[0].is_ascii_alphabetic() {
        return Err(http::invalid("not HTTP (a TLS handshake?)"));
    }
    let Some(head) = http::read_head(reader)? else {
        return Ok(None);
    };
    if !head.version.starts_with("HTTP/1.") {
        return Err(http::invalid("not HTTP/1.x"));
    }
    Ok(Some(HttpRequest {
        method: head.method,
        target: head.target,
        headers: head.headers,
        body: Vec::new(),
    }))
}

/// Reads the body that follows `request`'s head: chunked or `Content-Length`, else none.
pub fn read_body(reader: &mut BufReader<TcpStream>, request: &mut HttpRequest) -> io::Result<()> {
    let framing = http::framing(&request.headers)?;
    let (body, whole) = http::read_body(reader, &framing, http::MAX_BODY)?;
    if !whole {
        return Err(http::invalid("request body too large"));
    }
    request.body = body;
    Ok(())
}

/// Reads a whole request, head and body.
pub fn read_request(reader: &mut BufReader<TcpStream>) -> io::Result<Option<HttpRequest>> {
    let Some(mut request) = read_head(reader)? else {
        return Ok(None);
    };
    read_body(reader, &mut request)?;
    Ok(Some(request))
}

/// Reads one request from a test server's connection: its head, and with `whole` its body
/// too. `None` when the peer closed without a word, or sent something that is not an HTTP/1.x
/// request (a TLS ClientHello, ...), which is answered `400` at once so that the client fails
/// fast. Returns the request and the reader, whose buffer holds whatever the client sent after
/// what was read (a tunnel's first bytes).
pub fn accept(stream: &mut TcpStream, whole: bool) -> Option<(HttpRequest, BufReader<TcpStream>)> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let read = if whole {
        read_request(&mut reader)
    } else {
        read_head(&mut reader)
    };
    match read {
        Ok(Some(request)) => Some((request, reader)),
        Ok(None) => None,
        Err(_) => {
            let _ = respond(stream, 400, &[], b"not an HTTP/1.x request\n");
            None
        }
    }
}

/// Writes a complete response and asks the client to close the connection.
pub fn respond(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", http::reason(status));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

/// Percent-decoding of a query or form component (`+` is a space).
pub fn url_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=1&b=2` (a query or an `application/x-www-form-urlencoded` body), decoded.
pub fn parse_form(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (url_decode(k), url_decode(v))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Accept loops

/// A listening socket served by a thread, one thread per connection; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub fn start<F>(listener: TcpListener, handler: F) -> Server
    where
        F: Fn(TcpStream) + Send + Sync + 'static,
    {
        let addr = listener.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        let stopping = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
                let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
                let handler = handler.clone();
                std::thread::spawn(move || handler(stream));
            }
        });
        Server { addr, stop }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

pub fn bind_loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

/// Copies bytes both ways until both sides are done.
fn tunnel(client: TcpStream, upstream: TcpStream) {
    tunnel_late(client, upstream, Duration::ZERO)
}

/// Copies bytes both ways until both sides are done, each chunk from `upstream` arriving
/// `late` after it was sent, as over a long link (chunks in flight do not wait for each other).
fn tunnel_late(client: TcpStream, upstream: TcpStream, late: Duration) {
    let (Ok(mut client_read), Ok(mut upstream_write)) = (client.try_clone(), upstream.try_clone())
    else {
        return;
    };
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut client_read, &mut upstream_write);
        let _ = upstream_write.shutdown(Shutdown::Write);
    });
    let (mut upstream_read, mut client_write) = (upstream, client);
    let (send, receive) = std::sync::mpsc::channel::<(std::time::Instant, Vec<u8>)>();
    let down = std::thread::spawn(move || {
        for (due, chunk) in receive {
            std::thread::sleep(due.saturating_duration_since(std::time::Instant::now()));
            if client_write.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = client_write.shutdown(Shutdown::Write);
    });
    let mut buffer = vec![0; 64 << 10];
    while let Ok(n @ 1..) = upstream_read.read(&mut buffer) {
        if send
            .send((std::time::Instant::now() + late, buffer[..n].to_vec()))
            .is_err()
        {
            break;
        }
    }
    drop(send);
    let _ = (down.join(), up.join());
}

// ---------------------------------------------------------------------------------------------
// A slow link

/// A TCP pass-through to `upstream` whose answers come `delay` late (every chunk the server
/// sends waits that long), so that round trips cost something on loopback. Records when it
/// accepted each connection.
pub struct SlowLink {
    server: Server,
    accepted: Arc<Mutex<Vec<std::time::Instant>>>,
}

impl SlowLink {
    pub fn start(upstream: SocketAddr, delay: Duration) -> SlowLink {
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let record = accepted.clone();
        let server = Server::start(bind_loopback(), move |client| {
            record.lock().unwrap().push(std::time::Instant::now());
            let Ok(upstream) = TcpStream::connect(upstream) else {
                return;
            };
            let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
            tunnel_late(client, upstream, delay);
        });
        SlowLink { server, accepted }
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// When each connection was accepted, in order.
    pub fn accepted(&self) -> Vec<std::time::Instant> {
        self.accepted.lock().unwrap().clone()
    }
}

// ---------------------------------------------------------------------------------------------
// CONNECT proxy

/// What the proxy was asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProxyUse {
    /// `CONNECT host:port`: a tunnel (what ureq does for http:// and https:// URLs alike).
    Connect(String),
    /// `GET http://host:port/...`: a forwarded absolute-form request, by authority.
    Forward(String),
}

impl ProxyUse {
    pub fn authority(&self) -> &str {
        match self {
            ProxyUse::Connect(a) | ProxyUse::Forward(a) => a,
        }
    }
}

/// An HTTP proxy on 127.0.0.1 that tunnels `CONNECT host:port` (and forwards absolute-form
/// requests) to loopback addresses only. Host names it does not know fail with 502; `aliases`
/// maps names that do not resolve on this machine (e.g. `registry.test`) to loopback addresses,
/// so a push to such a name can only succeed through the proxy.
pub struct ConnectProxy {
    server: Server,
    uses: Arc<Mutex<Vec<ProxyUse>>>,
}

impl ConnectProxy {
    pub fn start(aliases: &[(&str, IpAddr)]) -> ConnectProxy {
        let aliases: Vec<(String, IpAddr)> = aliases
            .iter()
            .map(|(n, ip)| {
                assert!(ip.is_loopback(), "proxy aliases must be loopback");
                (n.to_ascii_lowercase(), *ip)
            })
            .collect();
        let uses = Arc::new(Mutex::new(Vec::new()));
        let log = uses.clone();
        let server = Server::start(bind_loopback(), move |stream| {
            proxy_connection(stream, &aliases, &log)
        });
        ConnectProxy { server, uses }
    }

    /// `http://127.0.0.1:PORT`, for `HTTPS_PROXY` and friends.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    pub fn uses(&self) -> Vec<ProxyUse> {
        self.uses.lock().unwrap().clone()
    }

    /// How many tunnels or forwarded requests went to `authority` (`host:port`).
    pub fn uses_of(&self, authority: &str) -> usize {
        self.uses()
            .iter()
            .filter(|u| u.authority().eq_ignore_ascii_case(authority))
            .count()
    }
}

fn resolve_loopback(authority: &str, aliases: &[(String, IpAddr)]) -> Option<SocketAddr> {
    let (host, port) = authority.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = if let Some((_, ip)) = aliases.iter().find(|(n, _)| n.eq_ignore_ascii_case(host)) {
        *ip
    } else if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse::<IpAddr>().ok().filter(IpAddr::is_loopback)?
    };
    Some(SocketAddr::new(ip, port))
}

fn proxy_connection(
    mut stream: TcpStream,
    aliases: &[(String, IpAddr)],
    log: &Mutex<Vec<ProxyUse>>,
) {
    let Some((request, reader)) = accept(&mut stream, false) else {
        return;
    };
    let (authority, connect) = if request.method.eq_ignore_ascii_case("CONNECT") {
        (request.target.clone(), true)
    } else if let Some(rest) = request.target.strip_prefix("http://") {
        (rest.split('/').next().unwrap_or("").to_string(), false)
    } else {
        let _ = respond(&mut stream, 400, &[], b"not a proxy request\n");
        return;
    };
    let authority = if authority.contains(':') || authority.starts_with('[') {
        authority
    } else {
        format!("{authority}:80")
    };
    log.lock().unwrap().push(if connect {
        ProxyUse::Connect(authority.clone())
    } else {
        ProxyUse::Forward(authority.clone())
    });
    let Some(addr) = resolve_loopback(&authority, aliases) else {
        let _ = respond(
            &mut stream,
            502,
            &[],
            b"the test proxy only reaches loopback\n",
        );
        return;
    };
    let Ok(mut upstream) = TcpStream::connect_timeout(&addr, Duration::from_secs(10)) else {
        let _ = respond(&mut stream, 502, &[], b"cannot connect upstream\n");
        return;
    };
    let _ = upstream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = upstream.set_write_timeout(Some(IO_TIMEOUT));
    if connect {
        if stream
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .is_err()
        {
            return;
        }
    } else {
        let mut head = format!("{} {} HTTP/1.1\r\n", request.method, request.target);
        for (name, value) in &request.headers {
            if !name.to_ascii_lowercase().starts_with("proxy-") {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        head.push_str("\r\n");
        if upstream.write_all(head.as_bytes()).is_err() {
            return;
        }
    }
    // Whatever the client sent after the head is already in the reader's buffer.
    if upstream.write_all(reader.buffer()).is_err() {
        return;
    }
    tunnel(stream, upstream);
}

// ---------------------------------------------------------------------------------------------
// Redirecting front

/// Which listener of a [`RedirectFront`] saw a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The registry's address as the client knows it (`127.0.0.1:PORT`).
    Front,
    /// The "storage" host the uploads are sent to (`localhost:PORT2`).
    Storage,
}

/// A request one side of the front received, with the status it answered.
#[derive(Clone, Debug)]
pub struct Seen {
    pub side: Side,
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub status: u16,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        http::header(&self.headers, name)
    }
}

/// A plain-HTTP forwarder in front of a real (plain-HTTP) registry. Everything passes through
/// unchanged, except that the `Location` of an upload session (`202` to
/// `POST /v2/<name>/blobs/uploads/`) is moved to a second listener under another host name,
/// `http://localhost:PORT2/...`. That listener records the request headers and forwards to
/// the registry with the registry's own credentials, as a presigned storage URL would: the
/// client must follow it without sending its `Authorization`.
pub struct RedirectFront {
    front: Server,
    storage: Server,
    _storage_v6: Option<Server>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl RedirectFront {
    pub fn start(registry: &super::Registry) -> RedirectFront {
        assert!(
            registry.ca_file().is_none(),
            "the redirect front speaks plain HTTP to the registry"
        );
        let upstream = SocketAddr::from(([127, 0, 0, 1], registry.port));
        let admin = registry.admin_auth();
        let seen = Arc::new(Mutex::new(Vec::new()));

        let storage_listener = bind_loopback();
        let storage_port = storage_listener.local_addr().expect("addr").port();
        // `localhost` may resolve to ::1 first on some machines: listen there too when we can.
        let storage_v6 = TcpListener::bind(("::1", storage_port)).ok();

        let storage_handler = {
            let seen = seen.clone();
            let admin = admin.clone();
            Arc::new(move |stream: TcpStream| {
                forward_connection(stream, Side::Storage, upstream, storage_port, &admin, &seen)
            })
        };
        let h = storage_handler.clone();
        let storage = Server::start(storage_listener, move |s| h(s));
        let storage_v6 = storage_v6.map(|l| {
            let h = storage_handler.clone();
            Server::start(l, move |s| h(s))
        });
        let front = {
            let seen = seen.clone();
            Server::start(bind_loopback(), move |stream| {
                forward_connection(stream, Side::Front, upstream, storage_port, &admin, &seen)
            })
        };
        RedirectFront {
            front,
            storage,
            _storage_v6: storage_v6,
            seen,
        }
    }

    /// `127.0.0.1:PORT`: where the client should push.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.front.port())
    }

    pub fn repo(&self, path: &str) -> String {
        format!("{}/{path}", self.host())
    }

    /// `localhost:PORT2`: where uploads are redirected.
    pub fn storage_host(&self) -> String {
        format!("localhost:{}", self.storage.port())
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn seen_on(&self, side: Side) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.side == side).collect()
    }
}

fn forward_connection(
    mut stream: TcpStream,
    side: Side,
    upstream: SocketAddr,
    storage_port: u16,
    admin: &AdminAuth,
    seen: &Mutex<Vec<Seen>>,
) {
    let Some((request, _)) = accept(&mut stream, true) else {
        return;
    };
    let replace: Vec<(&str, Option<String>)> = match side {
        // The client's own credentials go to the registry unchanged.
        Side::Front => Vec::new(),
        // The storage host holds its own credentials, as a presigned URL does.
        Side::Storage => vec![("Authorization", admin.authorization(request.path()))],
    };
    let answer = (|| -> io::Result<Vec<u8>> {
        let mut up = TcpStream::connect_timeout(&upstream, Duration::from_secs(10))?;
        up.set_read_timeout(Some(IO_TIMEOUT))?;
        up.write_all(request.head_for_forwarding(&replace).as_bytes())?;
        up.write_all(&request.body)?;
        let mut raw = Vec::new();
        up.read_to_end(&mut raw)?;
        Ok(raw)
    })();
    let Ok(raw) = answer else {
        let _ = respond(&mut stream, 502, &[], b"registry unreachable\n");
        return;
    };
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw.get(split + 4..).unwrap_or(&[]);
    let mut lines = head.split("\r\n");
    let status_line = lines
        .next()
        .unwrap_or("HTTP/1.1 502 Bad Gateway")
        .to_string();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(502);
    let is_upload_start = side == Side::Front
        && request.method == "POST"
        && request.path().ends_with("/blobs/uploads/")
        && status == 202;
    let mut out = format!("{status_line}\r\n");
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("connection") {
            continue;
        }
        if is_upload_start && name.eq_ignore_ascii_case("location") {
            let path = match value.find("://") {
                Some(i) => {
                    let rest = &value[i + 3..];
                    &rest[rest.find('/').unwrap_or(rest.len())..]
                }
                None => value,
            };
            out.push_str(&format!(
                "Location: http://localhost:{storage_port}{path}\r\n"
            ));
            continue;
        }
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    seen.lock().unwrap().push(Seen {
        side,
        method: request.method.clone(),
        target: request.target.clone(),
        headers: request.headers.clone(),
        status,
    });
    let _ = stream.write_all(out.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
}
