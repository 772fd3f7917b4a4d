//! HTTP/1.1 framing for the test servers and the fault proxy: request and answer heads, bodies
//! by `Content-Length` or chunked, with limits, so that a misbehaving peer fails a read instead
//! of hanging a test.

use std::io::{self, BufRead, BufReader, Read};
use std::net::TcpStream;

/// The longest request head or answer head read.
pub const MAX_HEAD: usize = 64 * 1024;
/// The largest body read.
pub const MAX_BODY: u64 = 512 * 1024 * 1024;

pub struct Head {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub fn wants_close(&self) -> bool {
        let connection = self.header("connection").unwrap_or("").to_ascii_lowercase();
        connection.split(',').any(|t| t.trim() == "close")
            || (self.version == "HTTP/1.0" && !connection.contains("keep-alive"))
    }
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub fn is_hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "content-length",
        "te",
        "trailer",
        "upgrade",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// The reason phrase of a status line.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

pub fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// One CRLF- (or LF-) terminated line, within what is left of `budget`; None at a clean EOF.
pub fn read_line<R: BufRead>(reader: &mut R, budget: &mut usize) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = reader
        .by_ref()
        .take(*budget as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if n > *budget {
        return Err(invalid("head too long"));
    }
    *budget -= n;
    if !line.ends_with(b"\n") {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    line.pop();
    if line.ends_with(b"\r") {
        line.pop();
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}

pub fn read_headers<R: BufRead>(
    reader: &mut R,
    budget: &mut usize,
) -> io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader, budget)?.ok_or(io::ErrorKind::UnexpectedEof)?;
        if line.is_empty() {
            return Ok(headers);
        }
        let (name, value) = line.split_once(':').ok_or_else(|| invalid("bad header"))?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
}

/// A request head; None when the client closed the connection between requests.
pub fn read_head(reader: &mut BufReader<TcpStream>) -> io::Result<Option<Head>> {
    let mut budget = MAX_HEAD;
    let request_line = loop {
        match read_line(reader, &mut budget)? {
            None => return Ok(None),
            Some(line) if line.is_empty() => continue,
            Some(line) => break line,
        }
    };
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("bad request line"));
    };
    let (method, target, version) = (method.to_string(), target.to_string(), version.to_string());
    let headers = read_headers(reader, &mut budget)?;
    Ok(Some(Head {
        method,
        target,
        version,
        headers,
    }))
}

pub enum Framing {
    None,
    Length(u64),
    Chunked,
    /// An answer without a length: its body runs to the end of the connection.
    UntilClose,
}

pub fn framing(headers: &[(String, String)]) -> io::Result<Framing> {
    if let Some(te) = header(headers, "transfer-encoding") {
        if te.to_ascii_lowercase().contains("chunked") {
            return Ok(Framing::Chunked);
        }
    }
    match header(headers, "content-length") {
        Some(len) => len
            .trim()
            .parse()
            .map(Framing::Length)
            .map_err(|_| invalid("bad Content-Length")),
        None => Ok(Framing::None),
    }
}

/// Reads a body, stopping after `limit` bytes; returns it and whether it was read whole.
pub fn read_body<R: BufRead>(
    reader: &mut R,
    framing: &Framing,
    limit: u64,
) -> io::Result<(Vec<u8>, bool)> {
    let mut body = Vec::new();
    match framing {
        Framing::None => Ok((body, true)),
        Framing::Length(len) => {
            let want = (*len).min(limit);
            reader.by_ref().take(want).read_to_end(&mut body)?;
            if (body.len() as u64) < want {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            Ok((body, want == *len))
        }
        Framing::UntilClose => {
            reader.by_ref().take(limit).read_to_end(&mut body)?;
            Ok((body, true))
        }
        Framing::Chunked => loop {
            let mut budget = MAX_HEAD;
            let line = read_line(reader, &mut budget)?.ok_or(io::ErrorKind::UnexpectedEof)?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
            if size == 0 {
                // Trailers, up to the empty line.
                read_headers(reader, &mut budget)?;
                return Ok((body, true));
            }
            let room = limit.saturating_sub(body.len() as u64);
            let want = size.min(room);
            let before = body.len();
            reader.by_ref().take(want).read_to_end(&mut body)?;
            if ((body.len() - before) as u64) < want {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            if want < size {
                return Ok((body, false));
            }
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf)?;
            if &crlf != b"\r\n" {
                return Err(invalid("chunk without CRLF"));
            }
        },
    }
}
