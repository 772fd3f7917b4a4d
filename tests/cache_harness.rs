//! The HTTP remote cache harness itself (nginx with WebDAV, tests/common/cache.rs): that it
//! stores and serves `/cas/<hex>` as Bazel's cache does, answers ranges, authenticates, and
//! that its access log tells what a client fetched.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::cache::*;
use common::*;

fn curl_cache(method: &str, url: &str, extra: &[&str]) -> HttpAnswer {
    let mut args = vec!["--noproxy".to_string(), "*".to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    curl_with(method, url, "*/*", &args)
}

fn access(method: &str, path: &str, status: u16, body_bytes: u64, range: &str) -> Access {
    Access {
        method: method.to_string(),
        path: path.to_string(),
        status,
        body_bytes,
        range: range.to_string(),
        authorization: String::new(),
    }
}

#[test]
fn put_get_range_head_and_evict_as_the_log_shows_them() {
    let cache = Cache::start();
    let bytes = pseudo_random(1, 10_000);
    let hex = sha256(&bytes).trim_start_matches("sha256:").to_string();
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), &bytes).expect("write");
    let url = format!("{}/cas/{hex}", cache.url());

    let data = format!("@{}", file.path().display());
    let put = curl_cache("PUT", &url, &["--data-binary", &data]);
    assert_eq!(put.status, 201, "PUT: {}", put.text());
    assert!(cache.has(&hex));

    let get = curl_cache("GET", &url, &[]);
    assert_eq!(get.status, 200);
    assert!(get.body == bytes, "the bytes PUT come back");

    let range = curl_cache("GET", &url, &["-H", "Range: bytes=100-199"]);
    assert_eq!(range.status, 206);
    assert_eq!(
        range.header("content-range").as_deref(),
        Some("bytes 100-199/10000")
    );
    assert!(range.body == bytes[100..200], "the range's bytes");

    let head = curl_cache("HEAD", &url, &[]);
    assert_eq!(head.status, 200);

    cache.evict(&hex);
    assert!(!cache.has(&hex));
    let gone = curl_cache("GET", &url, &[]);
    assert_eq!(gone.status, 404);

    let path = format!("/cas/{hex}");
    let requests = cache.requests();
    assert_eq!(requests.len(), 5, "{requests:#?}");
    assert_eq!(requests[0], access("PUT", &path, 201, 0, ""));
    assert_eq!(requests[1], access("GET", &path, 200, 10_000, ""));
    assert_eq!(requests[2], access("GET", &path, 206, 100, "bytes=100-199"));
    assert_eq!(requests[3], access("HEAD", &path, 200, 0, ""));
    // The 404's error page has a body, which bytes_sent leaves out.
    assert_eq!(requests[4].status, 404);
    assert!(requests[4].body_bytes > 0);
    assert_eq!(cache.fetches(&hex), 2, "HEADs and 404s are no fetches");
    assert_eq!(cache.bytes_sent(), 10_100);
}

#[test]
fn put_and_put_layout_store_blobs_under_cas() {
    let cache = Cache::start();
    let hex = cache.put(b"a blob");
    let got = curl_cache("GET", &format!("{}/cas/{hex}", cache.url()), &[]);
    assert_eq!(got.status, 200);
    assert_eq!(got.body, b"a blob");

    let image = Image::sized(Types::Oci, 7, 2, 1000);
    let layout = image_layout(&image);
    cache.put_layout(layout.path());
    for blob in image.blobs().into_iter().chain([&image.manifest]) {
        let hex = blob.digest.trim_start_matches("sha256:");
        assert!(cache.has(hex), "{} in the cache", blob.digest);
        let got = curl_cache("GET", &format!("{}/cas/{hex}", cache.url()), &[]);
        assert!(got.body == blob.bytes, "bytes of {}", blob.digest);
        assert_eq!(cache.fetches(hex), 1);
    }
    assert!(
        cache.requests().iter().all(|a| a.method == "GET"),
        "put and put_layout write the storage, not through nginx"
    );
}

#[test]
fn basic_auth_refuses_without_credentials_and_accepts_with_them() {
    let cache = Cache::start_with(CacheOptions::basic_auth("alice", "s3cret:with colon"));
    let hex = cache.put(b"guarded");
    let url = format!("{}/cas/{hex}", cache.url());

    let refused = curl_cache("GET", &url, &[]);
    assert_eq!(refused.status, 401);
    assert!(refused
        .header("www-authenticate")
        .is_some_and(|h| h.starts_with("Basic")));
    let wrong = curl_cache("GET", &url, &["-u", "alice:wrong"]);
    assert_eq!(wrong.status, 401);
    let accepted = curl_cache("GET", &url, &["-u", "alice:s3cret:with colon"]);
    assert_eq!(accepted.status, 200);
    assert_eq!(accepted.body, b"guarded");

    let requests = cache.requests();
    let seen: Vec<(u16, &str)> = requests
        .iter()
        .map(|a| (a.status, a.authorization.as_str()))
        .collect();
    let alice = basic_auth("alice", "s3cret:with colon");
    assert_eq!(
        seen,
        [
            (401, ""),
            (401, basic_auth("alice", "wrong").as_str()),
            (200, alice.as_str())
        ]
    );
    assert_eq!(cache.fetches(&hex), 1);
    assert_eq!(cache.bytes_sent(), 7, "401 pages are not counted");
}

/// nginx logs a request on a kept-alive connection only after the client may have read the
/// answer; `requests()` still sees every answer read before it.
#[test]
fn requests_sees_answers_read_on_kept_alive_connections() {
    let cache = Cache::start();
    let hex = cache.put(b"kept alive");
    let mut stream = TcpStream::connect(("127.0.0.1", cache.port)).expect("connect");
    for n in 1..=20 {
        let request = format!("GET /cas/{hex} HTTP/1.1\r\nHost: cache\r\n\r\n");
        stream.write_all(request.as_bytes()).expect("send");
        let mut answer = Vec::new();
        let mut buf = [0; 4096];
        while !answer.ends_with(b"kept alive") {
            let read = stream.read(&mut buf).expect("read");
            assert!(read > 0, "nginx closed the connection");
            answer.extend_from_slice(&buf[..read]);
        }
        assert_eq!(cache.fetches(&hex), n);
    }
}
