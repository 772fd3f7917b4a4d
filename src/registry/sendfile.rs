/*!
Blob bodies over plain HTTP, handed to the kernel.

ureq copies a body through a buffer in user space: each byte read from the file, then written to
the socket. For a 500 MiB image that is about 0.15 s of CPU, taken on a 2-core machine from the
registry, which is the bottleneck of a cold push. Over plain HTTP (a registry on loopback or a
private network, no proxy) this module sends the request itself: the head, then the file by
`sendfile(2)`, with no copy through this process (std's `io::copy` never uses sendfile from a
file into a socket). Linux only, and only for bodies of [`WORTH_IT`] or more; smaller ones and
everything else (TLS, proxies, requests without a file body) stay with ureq. The answer is read
whole (`Connection: close`) and handed back as a ureq response, so callers cannot tell the paths
apart.
*/

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use ureq::http::{Method, Response};

use super::FileBody;

/// The smallest body worth a connection of its own. Below it, the copy through ureq's buffer
/// costs less than opening a connection (for the registry too, a new one per request), and the
/// body goes on a pooled connection.
pub const WORTH_IT: u64 = 4 << 20;
/// The most of an answer we read: registries answer an upload with a few hundred bytes.
const MAX_ANSWER: u64 = 1 << 20;
/// Sent in pieces of this size, so that the progress bar moves.
const PIECE: u64 = 8 << 20;

/// Sends `method url` with `headers` and the body; errors are ureq's, so the caller classifies
/// them (transient or not) as for any request.
pub fn send(
    method: &Method,
    url: &str,
    headers: &[(String, String)],
    body: FileBody,
    user_agent: &str,
    remaining: Duration,
) -> Result<Response<ureq::Body>, ureq::Error> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ureq::Error::BadUri(url.to_string()))?;
    let (authority, target) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let address = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addresses: Vec<_> = address
        .to_socket_addrs()
        .map_err(|_| ureq::Error::HostNotFound)?
        .collect();
    // `localhost` may resolve to ::1 first and the registry listen on 127.0.0.1 only: try
    // every address, as ureq does.
    let connect_timeout = remaining.min(Duration::from_secs(30));
    let mut last = ureq::Error::HostNotFound;
    let mut connected = None;
    for candidate in &addresses {
        match TcpStream::connect_timeout(candidate, connect_timeout) {
            Ok(stream) => {
                connected = Some(stream);
                break;
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                last = ureq::Error::Timeout(ureq::Timeout::Connect)
            }
            Err(e) => last = ureq::Error::Io(e),
        }
    }
    let mut stream = connected.ok_or(last)?;
    stream.set_nodelay(true).map_err(ureq::Error::Io)?;
    stream
        .set_write_timeout(Some(remaining))
        .map_err(ureq::Error::Io)?;
    stream
        .set_read_timeout(Some(remaining))
        .map_err(ureq::Error::Io)?;

    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: {user_agent}\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let sent = stream
        .write_all(head.as_bytes())
        .and_then(|()| send_body(&mut stream, &body));
    // A registry may answer (401, 413, ...) and close before taking the whole body: its
    // answer says more than the broken pipe does.
    match (read_answer(&stream), sent) {
        (Ok(response), _) => Ok(response),
        (Err(_), Err(e)) | (Err(e), Ok(())) => Err(io_error(e)),
    }
}

fn send_body(stream: &mut TcpStream, body: &FileBody) -> io::Result<()> {
    let mut offset = body.offset;
    let end = body.offset + body.len;
    while offset < end {
        let piece = PIECE.min(end - offset) as usize;
        // The kernel reads the file at `offset` (the file's own position is left alone) and
        // writes to the socket, with no copy through this process.
        let sent = rustix::fs::sendfile(&*stream, body.file, Some(&mut offset), piece)?;
        if sent == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file is shorter than its size",
            ));
        }
        if let Some(progress) = body.progress {
            progress(offset);
        }
    }
    stream.flush()
}

/// Reads the status line, the headers and the (short) body; the registry closes after it.
fn read_answer(stream: &TcpStream) -> io::Result<Response<ureq::Body>> {
    let mut reader = BufReader::new(stream.take(MAX_ANSWER));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .filter(|_| line.starts_with("HTTP/1."))
        .ok_or_else(|| bad_answer("no HTTP status line"))?;
    let mut builder = Response::builder().status(status);
    let mut content_length = None;
    let mut chunked = false;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(bad_answer("the answer ended in its headers"));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(bad_answer("a header line without ':'"));
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse::<u64>().ok();
        }
        if name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked") {
            chunked = true;
        }
        builder = builder.header(name, value);
    }
    let mut bytes = Vec::new();
    match (content_length, chunked) {
        (_, true) => read_chunked(&mut reader, &mut bytes)?,
        (Some(len), false) => {
            reader.by_ref().take(len).read_to_end(&mut bytes)?;
            if (bytes.len() as u64) < len {
                return Err(bad_answer("the answer's body was cut short"));
            }
        }
        (None, false) => {
            reader.read_to_end(&mut bytes)?;
        }
    }
    builder
        .body(ureq::Body::builder().data(bytes))
        .map_err(|e| bad_answer(&e.to_string()))
}

fn read_chunked(reader: &mut impl BufRead, out: &mut Vec<u8>) -> io::Result<()> {
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let size = line.trim().split(';').next().unwrap_or("");
        let size = u64::from_str_radix(size, 16).map_err(|_| bad_answer("a bad chunk size"))?;
        if size == 0 {
            return Ok(());
        }
        reader.by_ref().take(size).read_to_end(out)?;
        line.clear();
        reader.read_line(&mut line)?;
    }
}

fn bad_answer(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("bad HTTP answer: {why}"),
    )
}

fn io_error(e: io::Error) -> ureq::Error {
    match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            ureq::Error::Timeout(ureq::Timeout::Global)
        }
        _ => ureq::Error::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// The answer `raw` as `read_answer` makes it, through a real loopback socket.
    fn answer(raw: &'static [u8]) -> io::Result<Response<ureq::Body>> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        let server = std::thread::spawn(move || {
            let (mut peer, _) = listener.accept()?;
            peer.write_all(raw)
        });
        let stream = TcpStream::connect(address)?;
        server.join().expect("server thread")?;
        read_answer(&stream)
    }

    fn body(response: Response<ureq::Body>) -> String {
        let mut response = response;
        response.body_mut().read_to_string().unwrap_or_default()
    }

    #[test]
    fn answers_with_length_chunks_or_nothing() {
        let r =
            answer(b"HTTP/1.1 201 Created\r\nLocation: /x\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["location"], "/x");
        assert_eq!(body(r), "{}");
        let r = answer(b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!((r.status().as_u16(), body(r)), (400, "abcde".to_string()));
        let r = answer(b"HTTP/1.0 202 Accepted\r\n\r\nrest").unwrap();
        assert_eq!(body(r), "rest");
    }

    #[test]
    fn broken_answers_are_errors() {
        for raw in [
            &b"HTTP/1.1 201 Created\r\nContent-Length: 10\r\n\r\nshort"[..],
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 201 Created\r\nno colon\r\n\r\n",
            b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n",
        ] {
            let raw: &'static [u8] = Box::leak(raw.to_vec().into_boxed_slice());
            assert!(answer(raw).is_err(), "{}", String::from_utf8_lossy(raw));
        }
    }
}
