//! URLs as the client needs them: where one points (its origin, for deciding where credentials
//! may go), how a `Location` resolves against the request it answers, and how a URL may be
//! shown (without its query) or built (a query, a form).

use std::net::IpAddr;

/// `host[:port]` of an absolute URL, as written.
pub fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split(['/', '?', '#']).next().unwrap_or(rest)
}

/// The host (lower case, IPv6 without brackets) and port of `[user@]host[:port]` or
/// `[v6][:port]`; `default_port` when none is written. None when the port is not a number.
pub fn split_authority(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']')?;
            (host, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            _ => (authority, None),
        },
    };
    let port = match port {
        Some(port) => port.parse().ok()?,
        None => default_port,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// The host of an absolute URL, lower case, without port or brackets.
pub fn host(url: &str) -> String {
    split_authority(authority(url), 0).map_or_else(String::new, |(host, _)| host)
}

/// Whether two absolute URLs share scheme, host and port (default ports spelt out or not):
/// credentials given for one may go to the other. Anything odd (user info, another spelling)
/// compares as another origin, which only ever withholds credentials.
pub fn same_origin(a: &str, b: &str) -> bool {
    origin(a) == origin(b)
}

fn origin(url: &str) -> (String, String) {
    let scheme = url
        .split_once("://")
        .map_or("", |(s, _)| s)
        .to_ascii_lowercase();
    let host = authority(url).to_ascii_lowercase();
    let default = match scheme.as_str() {
        "https" => ":443",
        _ => ":80",
    };
    // IPv6 hosts are bracketed, so the suffix is always a port.
    match host.strip_suffix(default) {
        Some(bare) => (scheme, bare.to_string()),
        None => (scheme, host),
    }
}

/// `reference` (a `Location`: absolute, `//host/path`, `/path`, or relative) made absolute
/// against `base`, the URL it answered.
pub fn resolve(base: &str, reference: &str) -> String {
    if reference.starts_with("http://") || reference.starts_with("https://") {
        return reference.to_string();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
    if let Some(elsewhere) = reference.strip_prefix("//") {
        return format!("{scheme}://{elsewhere}");
    }
    let host = authority(base);
    if reference.starts_with('/') {
        return format!("{scheme}://{host}{reference}");
    }
    // `host` is a prefix of `rest` ending before an ASCII delimiter: a char boundary.
    let path = rest[host.len()..].split(['?', '#']).next().unwrap_or("");
    let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
    format!("{scheme}://{host}{dir}/{reference}")
}

/// The one rule for what is on this machine by its name alone: `localhost` and IP literals in
/// 127.0.0.0/8 or `::1`. A DNS name such as `127.0.0.1.example.com` can resolve anywhere.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A URL as it may be shown: upload session URLs carry state in their query (distribution's
/// `_state`, S3 signatures, GCS upload ids), and a token realm's query a refresh token, so no
/// query is.
pub fn redact(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_string(),
    }
}

/// `url` with `pairs` added to its query (`?` or `&`), percent-encoded.
pub fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{}", form_encode(pairs))
}

/// `application/x-www-form-urlencoded`, also right for a query string.
pub fn form_encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_and_redaction() {
        assert_eq!(authority("https://r.io:5000/v2/x?y"), "r.io:5000");
        assert_eq!(authority("http://[::1]:80/v2/"), "[::1]:80");
        assert_eq!(authority("http://h"), "h");
        assert_eq!(host("https://User@R.io:5000/v2/"), "r.io");
        assert_eq!(host("http://[::1]:80/v2/"), "::1");
        assert_eq!(
            redact("http://h/v2/x/blobs/uploads/u?_state=abc&digest=sha256%3A1"),
            "http://h/v2/x/blobs/uploads/u?…"
        );
        assert_eq!(redact("http://h/v2/"), "http://h/v2/");
    }

    #[test]
    fn origins() {
        assert!(same_origin("https://r.io/v2/a", "https://r.io:443/v2/b?x"));
        assert!(same_origin("HTTPS://R.IO/v2/", "https://r.io"));
        assert!(same_origin("http://[::1]:80/", "http://[::1]/v2/"));
        for (a, b) in [
            ("https://r.io/", "http://r.io/"),
            ("https://r.io/", "https://r.io:5000/"),
            ("https://r.io/", "https://cdn.r.io/"),
            ("https://r.io/", "https://r.io@evil.example/"),
            ("http://127.0.0.1:5000/", "http://localhost:5000/"),
        ] {
            assert!(!same_origin(a, b), "{a} {b}");
        }
    }

    #[test]
    fn locations_resolve_against_the_request() {
        let base = "https://r.io:5000/v2/app/blobs/uploads/?mount=x";
        assert_eq!(
            resolve(base, "https://s3.example/u?sig=1"),
            "https://s3.example/u?sig=1"
        );
        assert_eq!(resolve(base, "//cdn.example/u"), "https://cdn.example/u");
        assert_eq!(
            resolve(base, "/v2/app/blobs/uploads/1"),
            "https://r.io:5000/v2/app/blobs/uploads/1"
        );
        assert_eq!(
            resolve(base, "1?_state=s"),
            "https://r.io:5000/v2/app/blobs/uploads/1?_state=s"
        );
        assert_eq!(resolve("http://h", "x"), "http://h/x");
    }

    #[test]
    fn loopback_by_name_alone() {
        for host in [
            "localhost",
            "LocalHost",
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "[::1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["127.0.0.1.nip.io", "reg.localhost", "10.0.0.1", "::2", ""] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn form_encoding() {
        assert_eq!(
            form_encode(&[("scope", "repository:a/b:pull,push"), ("service", "reg x")]),
            "scope=repository%3Aa%2Fb%3Apull%2Cpush&service=reg%20x"
        );
    }
}
