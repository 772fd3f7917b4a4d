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
use std::sync::Mutex;

use ureq::http::StatusCode;

use crate::error::{Error, Kind, Result};
use crate::layout::Blob;
use crate::registry::{self, BodyFailed, BodySource, Connection, Fetcher, Refusal};
use crate::units::human_size;

/// How to reach the remote cache, from the command line. Its `Debug` shows no secret.
#[derive(Clone, Default)]
pub struct Options {
    /// `--remote-cache URL`, as given (it may hold a password: never shown).
    pub url: Option<String>,
    /// `--remote-cache-header NAME=VALUE`, sent to the cache only.
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Options")
            .field("url", &self.url.as_deref().map(shown_without_credentials))
            .field("headers", &names)
            .finish()
    }
}

/// A remote cache to fetch blobs from, for the upload threads to share.
pub struct RemoteCache {
    /// `http(s)://host[:port][/prefix]` without a trailing slash or credentials: safe to show.
    base: String,
    headers: Vec<(String, String)>,
    fetcher: Fetcher,
}

impl RemoteCache {
    /// The cache `url` names, with its credentials found (a helper's answer within the
    /// push's `--timeout`).
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
            headers.push(crate::auth::basic_header(user, password));
        }
        if let (Some(helper), false) = (helper, has_authorization(&headers)) {
            // The URI Bazel asks its helper with for a cache: the cache's own. A helper made
            // for the registry may know nothing of it: the cache's answer then says what is
            // missing.
            match crate::auth::helper_headers(helper, &parsed.base, connection.deadline()) {
                Ok(found) => headers.extend(found),
                Err(e) if e.kind() == Kind::Timeout => return Err(e),
                Err(e) => log::warn!("warning: for the remote cache: {e}; asking it without"),
            }
        }
        if !has_authorization(&headers) {
            if let Some((login, password)) =
                netrc::path().and_then(|p| netrc::lookup(&p, &parsed.host))
            {
                headers.push(crate::auth::basic_header(&login, &password));
            }
        }
        // The bytes as stored, whose length the descriptor gives; Bazel asks for no encoding
        // either.
        headers.push(("accept-encoding".to_string(), "identity".to_string()));
        Ok(RemoteCache {
            fetcher: Fetcher::new(&parsed.authority, connection)?,
            base: parsed.base,
            headers,
        })
    }

    /// The source of a blob's bytes in the cache.
    pub fn blob<'a>(&'a self, blob: &'a Blob) -> CacheBlob<'a> {
        CacheBlob {
            cache: self,
            blob,
            rest: Mutex::new(None),
        }
    }
}

impl std::fmt::Debug for RemoteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteCache({})", self.base)
    }
}

/// One blob in the cache: each opening is a GET of the part an upload request sends, or goes
/// on with the answer of a cache that ignores `Range` (bazel-remote's HTTP port), which holds
/// the whole blob: then a chunked upload costs one GET, not one per chunk.
pub struct CacheBlob<'a> {
    cache: &'a RemoteCache,
    blob: &'a Blob,
    /// Such an answer, at the byte the last chunk ended.
    rest: Mutex<Option<Exact<'a>>>,
}

impl BodySource for CacheBlob<'_> {
    fn open(&self, offset: u64, len: u64) -> Result<Box<dyn Read + '_>> {
        let going_on = self
            .rest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .filter(|rest| rest.at == offset);
        let answer = match going_on {
            Some(rest) => rest,
            None => self.get(offset, len)?,
        };
        Ok(Box::new(Chunk {
            answer: Some(answer),
            left: len,
            rest: &self.rest,
        }))
    }
}

impl<'a> CacheBlob<'a> {
    /// `GET URL/cas/HEX`, for the bytes from `offset` on: the answer, at `offset`.
    fn get(&self, offset: u64, len: u64) -> Result<Exact<'a>> {
        let blob = self.blob;
        let hex = blob.digest.strip_prefix("sha256:").unwrap_or(&blob.digest);
        let url = format!("{}/cas/{hex}", self.cache.base);
        let what = format!("fetching blob {} from the remote cache", blob.digest);
        let whole = offset == 0 && len == blob.size;
        let end = offset.saturating_add(len);
        let mut headers = self.cache.headers.clone();
        if !whole && len > 0 {
            headers.push(("range".to_string(), format!("bytes={offset}-{}", end - 1)));
        }
        let mut response = self.cache.fetcher.get(&url, &headers, &what)?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let encoded = header("content-encoding").is_some_and(|v| v != "identity");
        let length = header("content-length")
            .filter(|_| !encoded)
            .and_then(|v| v.parse::<u64>().ok());
        let other_bytes = |what_came: String| {
            Error::new(
                Kind::Cache,
                format!(
                    "{what}: {url} answered {what_came}, where the image's descriptor says {} bytes; the cache holds other bytes under this digest",
                    blob.size
                ),
            )
        };
        let (start, answer_end) = match response.status() {
            StatusCode::OK => {
                if length.is_some_and(|n| n != blob.size) {
                    return Err(other_bytes(format!("{} bytes", length.unwrap_or(0))));
                }
                (0, blob.size)
            }
            StatusCode::PARTIAL_CONTENT if !whole => {
                let range = header("content-range").unwrap_or_default();
                let asked = format!("bytes {offset}-{}/{}", end - 1, blob.size);
                if range != asked || length.is_some_and(|n| n != len) {
                    return Err(other_bytes(format!("the range {range:?} to {asked:?}")));
                }
                (offset, end)
            }
            StatusCode::NOT_FOUND => return Err(self.missing()),
            _ => return Err(self.refused(&mut response, &url)),
        };
        let mut answer = Exact {
            inner: Box::new(response.into_body().into_reader()),
            at: start,
            end: answer_end,
            digest: &blob.digest,
        };
        if start < offset {
            // The cache ignored the Range: the bytes before the chunk are read and dropped.
            let skip = offset - start;
            let skipped = std::io::copy(&mut (&mut answer).take(skip), &mut std::io::sink());
            if skipped.ok() != Some(skip) {
                return Err(Error::new(
                    Kind::Cache,
                    format!("{what}: {url} ended before byte {offset}"),
                )
                .transient(None));
            }
        }
        Ok(answer)
    }

    /// The blob is not in the cache: evicted, or stored by another digest function.
    fn missing(&self) -> Error {
        Error::new(
            Kind::Cache,
            format!(
                "blob {} ({}) is not in the remote cache {}: evicted, or Bazel stores blobs there \
                 by a --digest_function other than sha256; put it back by {REBUILD}, then push \
                 again (nothing was tagged)",
                self.blob.digest,
                human_size(self.blob.size),
                self.cache.base
            ),
        )
    }

    /// Any other answer than the blob: credentials refused, the cache failing (worth a retry
    /// when it says so), or something else; with the start of what it said.
    fn refused(&self, response: &mut ureq::http::Response<ureq::Body>, url: &str) -> Error {
        let refusal = Refusal::read(response, &ureq::http::Method::GET);
        let status = refusal.status;
        // A web server's error page says no more than its status.
        let said = match refusal.detail().starts_with(": <") {
            true => "",
            false => refusal.detail(),
        };
        let hint = match status.as_u16() {
            401 | 403 => {
                "; give the cache's credentials in --remote-cache-header, a credential helper \
                 or ~/.netrc (docs/remote-cache.md)"
            }
            _ => "",
        };
        refusal.retried(Error::new(
            Kind::Cache,
            format!(
                "fetching blob {} from the remote cache: GET {url} answered {status}{said}{hint}",
                self.blob.digest
            ),
        ))
    }
}

/// How to put an evicted or corrupt blob back into the cache: Bazel's action cache says the
/// image is built, so only a clean build makes it build and upload the layout again.
pub const REBUILD: &str = "building the image again (`bazel clean`, then `bazel build \
                           --noremote_accept_cached` of it)";

/// A cache's answer, from byte `at` to `end` of the blob: a short one fails (the upload would
/// otherwise wait for bytes that never come), a long one is cut.
struct Exact<'a> {
    inner: Box<dyn Read + Send>,
    at: u64,
    end: u64,
    digest: &'a str,
}

impl Exact<'_> {
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

impl Read for Exact<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.end - self.at;
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let most = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match self.inner.read(&mut buf[..most]) {
            Ok(0) => return Err(self.failed("the answer ended")),
            Ok(n) => n,
            Err(e) => return Err(self.failed(&format!("reading the answer failed ({e})"))),
        };
        self.at += n as u64;
        Ok(n)
    }
}

/// One request body's part of an answer: `left` bytes of it. An answer that holds more (a
/// whole blob for one chunk) goes back to `rest` once the chunk is read, for the next.
struct Chunk<'r, 'a> {
    answer: Option<Exact<'a>>,
    left: u64,
    rest: &'r Mutex<Option<Exact<'a>>>,
}

impl Read for Chunk<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(answer) = self.answer.as_mut() else {
            return Ok(0);
        };
        let most = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = answer.read(&mut buf[..most])?;
        self.left -= n as u64;
        Ok(n)
    }
}

impl Drop for Chunk<'_, '_> {
    fn drop(&mut self) {
        if let Some(answer) = self.answer.take() {
            if self.left == 0 && answer.at < answer.end {
                *self.rest.lock().unwrap_or_else(|e| e.into_inner()) = Some(answer);
            }
        }
    }
}

/// A `--remote-cache` URL, taken apart.
#[derive(Debug, PartialEq, Eq)]
struct Url {
    /// `scheme://authority[/prefix]`, no trailing slash.
    base: String,
    authority: String,
    /// The host alone, lower case: netrc's `machine`.
    host: String,
    userinfo: Option<(String, String)>,
}

/// Checks a `--remote-cache` URL, before anything runs.
pub fn check_url(text: &str) -> Result<()> {
    parse_url(text).map(|_| ())
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
    if path.contains('@') {
        return Err(usage(
            "an @ after the host: write a password's / and @ percent-encoded (%2F, %40)",
        ));
    }
    let (userinfo, authority) = match authority.rsplit_once('@') {
        Some(("", host)) => (None, host),
        Some((userinfo, host)) => {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            (Some((percent_decode(user), percent_decode(password))), host)
        }
        None => (None, authority),
    };
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        80
    };
    let host = match registry::split_authority(authority, default_port) {
        Some((host, _)) if !host.is_empty() => host,
        _ => return Err(usage("expected a host and, after a colon, a port number")),
    };
    let path = path.trim_end_matches('/');
    Ok(Url {
        base: format!("{}://{authority}{path}", scheme.to_ascii_lowercase()),
        authority: authority.to_string(),
        host,
        userinfo,
    })
}

/// A URL as it may be shown: without `user:password@`. Everything to the last `@` goes, so
/// that a password holding a `/` is not shown either.
pub fn shown_without_credentials(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_string();
    };
    match rest.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://{host}"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_their_prefix_and_lose_their_credentials() {
        let url = parse_url("https://alice:p%40ss@cache.example.com:8443/team/").unwrap();
        assert_eq!(url.base, "https://cache.example.com:8443/team");
        assert_eq!(url.authority, "cache.example.com:8443");
        assert_eq!(url.host, "cache.example.com");
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
            "https://h:abc",
            "https://[::1",
            "https://u:pa/ss@h",
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
        let e = parse_url("https://a:pw/s3cret@h").unwrap_err();
        assert!(!e.message().contains("s3cret"), "{e}");
        let options = Options {
            url: Some("https://a:pw-s3cret@h".to_string()),
            headers: vec![("x-api-key".to_string(), "pw-s3cret".to_string())],
        };
        let shown = format!("{options:?}");
        assert!(
            !shown.contains("pw-s3cret") && shown.contains("x-api-key"),
            "{shown}"
        );
    }
}
