/*!
Bazel's remote cache as the source of the blobs a thin layout leaves out, by Bazel's HTTP cache
protocol: `GET <cache>/cas/<sha256 hex>`. Bazel stores every file of an output directory there
by the SHA-256 of its content, which is the blob's OCI digest, so a layer built by Bazel is
there under its digest. Each is streamed into its upload, never to disk, and only when the
registry lacks it: the push fetches what it sends and nothing else.

The cache's credentials are its own and go to its origin only, never to the registry (nor the
registry's to the cache), from the sources Bazel reads, first found wins: the URL's
`user:password@`, an `authorization` given with `--remote-cache-header` (as Bazel's
`--remote_header`), the credential helper's headers for the cache's URL, the netrc entry for
its host. gRPC caches (`grpc://`, `grpcs://`) are refused
with the way out (docs/remote-cache.md says what they would take).
*/

mod netrc;

use std::io::Read;
use std::path::Path;

use ureq::http::StatusCode;

use crate::error::{Error, Kind, Result};
use crate::layout::Blob;
use crate::registry::{self, BodyFailed, BodySource, Connection, Fetcher};
use crate::units::human_size;

/// A cache's error answer is read this far, for the message.
const MAX_ERROR_BODY: u64 = 4 * 1024;

/// How to reach the remote cache, from the command line.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--remote-cache URL`, as given (it may hold a password: never shown).
    pub url: Option<String>,
    /// `--remote-cache-header NAME=VALUE`, sent to the cache only.
    pub headers: Vec<(String, String)>,
}

/// A remote cache to fetch blobs from, for the upload threads to share.
pub struct RemoteCache {
    /// `http(s)://host[:port][/prefix]` without a trailing slash or credentials: safe to show.
    base: String,
    headers: Vec<(String, String)>,
    fetcher: Fetcher,
}

impl RemoteCache {
    /// The cache `url` names, with its credentials found (the helper's answer by `deadline`).
    pub fn new(
        url: &str,
        options: &Options,
        helper: Option<&Path>,
        connection: &Connection,
    ) -> Result<RemoteCache> {
        let parsed = parse_url(url)?;
        let mut headers = options.headers.clone();
        let has_authorization = |headers: &[(String, String)]| {
            headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        };
        // As Bazel: the URL's user and password win over every other source.
        if let Some((user, password)) = &parsed.userinfo {
            headers.retain(|(name, _)| !name.eq_ignore_ascii_case("authorization"));
            headers.push(basic(user, password));
        }
        if let (Some(helper), false) = (helper, has_authorization(&headers)) {
            // The URI Bazel asks its helper with for a cache: the cache's own.
            let found = crate::auth::helper_headers(helper, &parsed.base, connection.deadline())
                .map_err(|e| e.of_kind(Kind::Cache))?;
            headers.extend(found);
        }
        if !has_authorization(&headers) {
            let host = registry::split_authority(&parsed.authority, 443)
                .map(|(host, _)| host)
                .unwrap_or_default();
            if let Some((login, password)) = netrc::path().and_then(|p| netrc::lookup(&p, &host)) {
                headers.push(basic(&login, &password));
            }
        }
        Ok(RemoteCache {
            fetcher: Fetcher::new(&parsed.authority, connection)?,
            base: parsed.base,
            headers,
        })
    }

    /// The cache's URL, without credentials.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The source of a blob's bytes in the cache.
    pub fn blob<'a>(&'a self, blob: &'a Blob) -> CacheBlob<'a> {
        CacheBlob { cache: self, blob }
    }
}

impl std::fmt::Debug for RemoteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteCache({})", self.base)
    }
}

/// One blob in the cache: each opening is a GET, of the part an upload request sends.
pub struct CacheBlob<'a> {
    cache: &'a RemoteCache,
    blob: &'a Blob,
}

impl BodySource for CacheBlob<'_> {
    fn open(&self, offset: u64, len: u64) -> Result<Box<dyn Read + '_>> {
        let blob = self.blob;
        let Some(hex) = blob.digest.strip_prefix("sha256:") else {
            return Err(Error::new(
                Kind::Cache,
                format!(
                    "blob {} is not a SHA-256 blob; Bazel's cache keeps blobs by SHA-256 only: push a full layout",
                    blob.digest
                ),
            ));
        };
        let url = format!("{}/cas/{hex}", self.cache.base);
        let what = format!("fetching blob {} from the remote cache", blob.digest);
        let whole = offset == 0 && len == blob.size;
        let mut headers = self.cache.headers.clone();
        // The bytes as stored, whose length the descriptor gives; Bazel asks for no encoding
        // either.
        headers.push(("accept-encoding".to_string(), "identity".to_string()));
        if !whole {
            let range = format!("bytes={offset}-{}", offset + len.max(1) - 1);
            headers.push(("range".to_string(), range));
        }
        let mut response = self.cache.fetcher.get(&url, &headers, &what)?;
        let status = response.status();
        let skip = match status {
            StatusCode::OK => offset,
            StatusCode::PARTIAL_CONTENT if !whole => 0,
            StatusCode::NOT_FOUND => return Err(self.missing()),
            _ => return Err(self.refused(&mut response, &url)),
        };
        let expected = len + skip;
        let encoded = response
            .headers()
            .get("content-encoding")
            .is_some_and(|v| v.as_bytes() != b"identity");
        let announced = response
            .headers()
            .get("content-length")
            .filter(|_| !encoded)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|n| n != expected && (whole || skip > 0)) {
            return Err(Error::new(
                Kind::Cache,
                format!(
                    "{what}: {url} is {} bytes, the image's descriptor says {}; the cache holds other bytes under this digest",
                    announced.unwrap_or(0),
                    blob.size
                ),
            ));
        }
        let mut reader = Exact {
            inner: response.into_body().into_reader(),
            left: len,
            at: offset,
            end: offset + len,
            digest: &blob.digest,
        };
        if skip > 0 {
            // The cache ignored the Range: the bytes before the chunk are read and dropped.
            let skipped = std::io::copy(&mut (&mut reader.inner).take(skip), &mut std::io::sink());
            if skipped.ok() != Some(skip) {
                return Err(Error::new(
                    Kind::Cache,
                    format!("{what}: {url} ended before byte {offset}"),
                )
                .transient(None));
            }
        }
        Ok(Box::new(reader))
    }
}

impl CacheBlob<'_> {
    /// The blob is not in the cache: evicted, or stored by another digest function.
    fn missing(&self) -> Error {
        Error::new(
            Kind::Cache,
            format!(
                "blob {} ({}) is not in the remote cache {}: evicted, or Bazel stores blobs there \
                 by a --digest_function other than sha256; put it back by building the image \
                 again (`bazel clean`, then `bazel build --noremote_accept_cached` of it), then \
                 push again (nothing was tagged)",
                self.blob.digest,
                human_size(self.blob.size),
                self.cache.base
            ),
        )
    }

    /// Any other answer than the blob: credentials refused, the cache failing (worth a retry
    /// when it says so), or something else; with the start of what it said.
    fn refused(&self, response: &mut ureq::http::Response<ureq::Body>, url: &str) -> Error {
        let status = response.status();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_ERROR_BODY)
            .read_to_string()
            .unwrap_or_default();
        let body = body.trim();
        // A web server's error page says no more than its status.
        let said = match body.is_empty() || body.starts_with('<') {
            true => String::new(),
            false => format!(": {}", body.chars().take(200).collect::<String>()),
        };
        let hint = match status.as_u16() {
            401 | 403 => {
                "; give the cache's credentials in --remote-cache-header, a credential helper \
                 or ~/.netrc (docs/remote-cache.md)"
            }
            _ => "",
        };
        let error = Error::new(
            Kind::Cache,
            format!(
                "fetching blob {} from the remote cache: GET {url} answered {status}{said}{hint}",
                self.blob.digest
            ),
        );
        match status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            true => error.transient(None),
            false => error,
        }
    }
}

/// The cache's answer, exactly `left` bytes of it: a short one fails (the upload would
/// otherwise wait for bytes that never come), a long one is cut.
struct Exact<'a, R> {
    inner: R,
    left: u64,
    at: u64,
    end: u64,
    digest: &'a str,
}

impl<R> Exact<'_, R> {
    fn failed(&self, why: &str) -> std::io::Error {
        let error = Error::new(
            Kind::Cache,
            format!(
                "fetching blob {} from the remote cache: {why} at byte {} of {}",
                self.digest, self.at, self.end
            ),
        )
        .transient(None);
        std::io::Error::other(BodyFailed(error))
    }
}

impl<R: Read> Read for Exact<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let most = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = match self.inner.read(&mut buf[..most]) {
            Ok(0) => return Err(self.failed("the answer ended")),
            Ok(n) => n,
            Err(e) => return Err(self.failed(&format!("reading the answer failed ({e})"))),
        };
        self.left -= n as u64;
        self.at += n as u64;
        Ok(n)
    }
}

/// A `--remote-cache` URL, taken apart.
#[derive(Debug, PartialEq, Eq)]
struct Url {
    /// `scheme://authority[/prefix]`, no trailing slash.
    base: String,
    authority: String,
    userinfo: Option<(String, String)>,
}

fn parse_url(text: &str) -> Result<Url> {
    let usage = |why: &str| {
        Error::usage(format!(
            "--remote-cache {}: {why}",
            shown_without_credentials(text)
        ))
    };
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(usage("expected http://HOST[:PORT][/PATH] or https://..."));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "http" | "https" => {}
        "grpc" | "grpcs" => {
            return Err(usage(
                "gRPC remote caches are not supported yet; give the cache's HTTP endpoint \
                 (https://..., as bazel-remote's --http_address serves), or leave \
                 --@rules_oci_push//settings:remote_cache empty to push full layouts \
                 (docs/remote-cache.md)",
            ))
        }
        _ => return Err(usage("expected an http:// or https:// URL")),
    }
    if rest.contains(['?', '#']) || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(usage("a cache URL has no query, fragment or spaces"));
    }
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let (userinfo, authority) = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            (Some((percent_decode(user), percent_decode(password))), host)
        }
        None => (None, authority),
    };
    if authority.is_empty() || authority.starts_with(':') {
        return Err(usage("the URL names no host"));
    }
    let path = path.trim_end_matches('/');
    Ok(Url {
        base: format!("{}://{authority}{path}", scheme.to_ascii_lowercase()),
        authority: authority.to_string(),
        userinfo,
    })
}

/// A URL as it may be shown: without `user:password@`.
pub fn shown_without_credentials(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_string();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://{host}{}", &rest[end..]),
        None => text.to_string(),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn basic(user: &str, password: &str) -> (String, String) {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    ("authorization".to_string(), format!("Basic {encoded}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_their_prefix_and_lose_their_credentials() {
        let url = parse_url("https://alice:p%40ss@cache.example.com:8443/team/").unwrap();
        assert_eq!(url.base, "https://cache.example.com:8443/team");
        assert_eq!(url.authority, "cache.example.com:8443");
        assert_eq!(
            url.userinfo,
            Some(("alice".to_string(), "p@ss".to_string()))
        );
        let url = parse_url("HTTP://127.0.0.1:9090").unwrap();
        assert_eq!(url.base, "http://127.0.0.1:9090");
        assert_eq!(url.userinfo, None);
    }

    #[test]
    fn grpc_and_other_schemes_are_refused_with_the_way_out() {
        for url in ["grpcs://remote.example.com", "grpc://127.0.0.1:9092"] {
            let e = parse_url(url).unwrap_err();
            assert_eq!(e.kind(), Kind::Usage);
            assert!(
                e.message()
                    .contains("gRPC remote caches are not supported yet"),
                "{e}"
            );
            assert!(e.message().contains("docs/remote-cache.md"), "{e}");
        }
        for url in [
            "cache.example.com",
            "ftp://h/x",
            "https://",
            "https://:80",
            "https://h/x?y",
        ] {
            assert_eq!(parse_url(url).unwrap_err().kind(), Kind::Usage, "{url}");
        }
    }

    #[test]
    fn a_password_in_the_url_is_never_shown() {
        let e = parse_url("ftp://alice:pw-s3cret@h/x").unwrap_err();
        assert!(!e.message().contains("pw-s3cret"), "{e}");
        assert_eq!(
            shown_without_credentials("https://a:pw-s3cret@h:1/p"),
            "https://h:1/p"
        );
    }
}
