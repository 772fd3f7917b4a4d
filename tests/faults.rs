//! Faults injected between `oci-push` and the real registry (tests/common/faults.rs): every
//! push either completes with the right digests and tags, read back from the registry directly
//! (not through the proxy), or fails with its documented exit code and no tag written.

mod common;

use std::io::{Read as _, Write as _};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use common::faults::*;
use common::pushing::assert_served;
use common::*;

/// No single push here may take longer; the test fails (and the process is killed) past it.
const LIMIT: Duration = Duration::from_secs(25);
const MIB: usize = 1024 * 1024;

fn hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

/// `--layout DIR -r REPO` and the rest.
fn args(layout: &tempfile::TempDir, repo: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--layout".to_string(),
        layout.path().display().to_string(),
        "-r".to_string(),
        repo.to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Success, with the image's digest as the last line.
fn assert_ok(run: &Run, proxy: &FaultProxy, repo: &str, image: &Image) {
    assert_eq!(
        run.code,
        0,
        "oci-push failed; stderr:\n{}\nrequests:\n{}",
        run.stderr,
        proxy.describe()
    );
    assert_eq!(
        run.last_line(),
        format!("{repo}@{}", image.manifest.digest),
        "stdout:\n{}",
        run.stdout
    );
}

/// Failure with `code`, one error line containing every fragment, and nothing on stdout.
fn assert_failed(run: &Run, proxy: &FaultProxy, code: i32, fragments: &[&str]) {
    assert_eq!(
        run.code,
        code,
        "exit code; stderr:\n{}\nrequests:\n{}",
        run.stderr,
        proxy.describe()
    );
    assert_eq!(run.error_count(), 1, "one error line:\n{}", run.stderr);
    for fragment in fragments {
        assert!(
            run.error().contains(fragment),
            "expected '{fragment}' in the error:\n{}",
            run.stderr
        );
    }
    assert!(run.stdout.is_empty(), "stdout: {}", run.stdout);
}

/// A request's attempts without --retries: the first and 10 retries.
const DEFAULT_ATTEMPTS: u32 = 11;

/// The retry lines: `count` of them, each `attempt K of N` with this N.
fn assert_retries(run: &Run, count: usize, attempts: u32) -> Vec<String> {
    let lines = retry_lines(&run.stderr);
    assert_eq!(
        lines.len(),
        count,
        "expected {count} 'retry: ' line(s):\n{}",
        run.stderr
    );
    for line in &lines {
        let (k, n) = attempt_of(line)
            .unwrap_or_else(|| panic!("no 'attempt K of N' in the retry line: {line}"));
        assert_eq!(n, attempts, "N in: {line}");
        assert!(k >= 1 && k <= n, "K in: {line}");
    }
    lines.into_iter().map(String::from).collect()
}

/// The gap between two requests the proxy saw.
fn gap(a: &ProxiedRequest, b: &ProxiedRequest) -> Duration {
    b.at.duration_since(a.at)
}

/// An image of one layer of `size` bytes (and its config), distinct by `seed`.
fn image_of(seed: u64, size: usize) -> Image {
    Image::new(
        Types::Oci,
        ("linux", "amd64"),
        vec![pseudo_random(seed, size)],
    )
}

/// curl with these arguments: exit code, stdout, stderr.
fn curl_raw(args: &[&str]) -> (i32, String, String) {
    let out = Command::new("curl")
        .args(["--max-time", "20"])
        .args(args)
        .output()
        .expect("run curl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---------------------------------------------------------------------------------------------
// The proxy itself, seen by curl and by a push without faults

#[test]
fn proxy_without_rules_forwards_curl_requests_unchanged() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(&registry, vec![]);

    // A TLS ClientHello gets Go's plain-HTTP answer and a close, and is not a request.
    let (code, _, _) = curl_raw(&["-sS", "-k", &format!("https://{}/v2/", proxy.host())]);
    assert_ne!(code, 0, "curl spoke TLS to a plain-HTTP proxy");
    assert_eq!(proxy.tls_probes(), 1);
    assert!(proxy.requests().is_empty());

    let ping = curl("GET", &format!("{}/v2/", proxy.url()), "*/*");
    assert_eq!(ping.status, 200);
    assert_eq!(ping.text().trim(), "{}");
    assert_eq!(
        ping.header("docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );

    // A blob uploaded through the proxy with a chunked request body.
    let bytes = pseudo_random(1, 300_000);
    let blob = Blob::new(OCI_LAYER, bytes.clone());
    let work = tempfile::TempDir::new().unwrap();
    let file = write_file(work.path(), "blob", &bytes);
    let started = curl(
        "POST",
        &format!("{}/v2/app/blobs/uploads/", proxy.url()),
        "*/*",
    );
    assert_eq!(started.status, 202, "{}", started.text());
    let location = started.header("location").expect("Location");
    assert!(
        location.contains(&proxy.host()),
        "the registry builds Location from the Host the client sent: {location}"
    );
    let put_url = format!("{location}&digest={}", blob.digest.replace(':', "%3A"));
    let (code, out, err) = curl_raw(&[
        "-sS",
        "-X",
        "PUT",
        "-H",
        "Transfer-Encoding: chunked",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", file.display()),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &put_url,
    ]);
    assert_eq!((code, out.as_str()), (0, "201"), "{err}");
    let head = curl(
        "HEAD",
        &format!("{}/v2/app/blobs/{}", proxy.url(), blob.digest),
        "*/*",
    );
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length").as_deref(), Some("300000"));
    assert_eq!(
        head.header("docker-content-digest").as_deref(),
        Some(blob.digest.as_str())
    );
    registry.assert_blob("app", &blob);

    // Keep-alive: curl sends two requests on one connection, and both are answered.
    let before = proxy.connections();
    let tags_url = format!("{}/v2/app/tags/list", proxy.url());
    let (code, out, err) = curl_raw(&[
        "-sS",
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} ",
        &format!("{}/v2/", proxy.url()),
        &tags_url,
    ]);
    assert_eq!((code, out.as_str()), (0, "200 404 "), "{err}");
    assert_eq!(proxy.connections() - before, 1, "{}", proxy.describe());

    assert_eq!(proxy.count("POST", "/blobs/uploads/"), 1);
    let puts = proxy.matching("PUT", "/blobs/uploads/");
    assert_eq!(puts.len(), 1);
    assert_eq!(puts[0].body_len, 300_000);
    assert_eq!(puts[0].upstream, Some(201));
    assert_eq!(puts[0].answered, Some(201));
    assert_eq!(proxy.count("*", ""), 6, "{}", proxy.describe());
}

#[test]
fn proxy_applies_each_fault_as_scripted() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(
        &registry,
        vec![
            Rule::every("GET", "/v2/status/", Fault::retry_after(429, "7")),
            Rule::nth(1, "GET", "/v2/reset/", Fault::Reset),
            Rule::every("GET", "/v2/trunc/", Fault::Truncate),
            Rule::every("GET", "/v2/stall/", Fault::stall(Duration::from_secs(1))),
            Rule::every("PUT", "/v2/drop/", Fault::drop_body_after(1000)),
            Rule::every("PUT", "/v2/lost/", Fault::DropResponse),
            Rule::first(2, "GET", "/v2/twice/", Fault::status(503)),
            Rule::every("HEAD", "/v2/trunc/", Fault::Truncate),
        ],
    );
    let url = |path: &str| format!("{}{path}", proxy.url());

    // A status of its own, with its headers and a distribution-style error body.
    let answer = curl("GET", &url("/v2/status/tags/list"), "*/*");
    assert_eq!(answer.status, 429);
    assert_eq!(answer.header("retry-after").as_deref(), Some("7"));
    assert!(
        answer.text().contains("TOOMANYREQUESTS"),
        "{}",
        answer.text()
    );

    // Reset on the first request only; the second is forwarded (the registry's 404).
    let (code, _, _) = curl_raw(&["-sS", &url("/v2/reset/tags/list")]);
    assert_ne!(code, 0, "a reset connection is an error");
    assert_eq!(curl("GET", &url("/v2/reset/tags/list"), "*/*").status, 404);

    // Truncated: the head, then half the body, then the end of the connection.
    let (code, _, err) = curl_raw(&["-sS", "-o", "/dev/null", &url("/v2/trunc/tags/list")]);
    assert_eq!(code, 18, "curl's 'partial file': {err}");
    // An answer without a body (HEAD) is cut in its head (curl takes that in silence, so the
    // test reads the socket).
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        socket,
        "HEAD /v2/trunc/manifests/x HTTP/1.1\r\nHost: {}\r\n\r\n",
        proxy.host()
    )
    .unwrap();
    let mut got = Vec::new();
    socket.read_to_end(&mut got).unwrap();
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 404 Not Found\r\n"), "{got}");
    assert!(!got.contains("\r\n\r\n"), "a whole head: {got}");

    // Stalled: a client that waits less gives up; one that waits gets the registry's answer.
    let (code, _, _) = curl_raw(&["-sS", "--max-time", "0.4", &url("/v2/stall/tags/list")]);
    assert_eq!(code, 28, "curl's timeout");
    let started = Instant::now();
    assert_eq!(curl("GET", &url("/v2/stall/tags/list"), "*/*").status, 404);
    assert!(started.elapsed() >= Duration::from_millis(950));

    // Dropped mid-body: the client fails, the registry sees nothing.
    let work = tempfile::TempDir::new().unwrap();
    let bytes = pseudo_random(2, 100_000);
    let file = write_file(work.path(), "blob", &bytes);
    let digest = sha256(&bytes);
    let (code, _, _) = curl_raw(&[
        "-sS",
        "-X",
        "PUT",
        "--data-binary",
        &format!("@{}", file.display()),
        &url(&format!(
            "/v2/drop/blobs/uploads/x?digest={}",
            digest.replace(':', "%3A")
        )),
    ]);
    assert_ne!(code, 0, "a dropped upload is an error");
    let dropped = proxy.matching("PUT", "/v2/drop/");
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].body_len, 1000);
    assert_eq!(dropped[0].upstream, None, "forwarded anyway");

    // The answer lost after the registry acted: the upload is there all the same.
    let started = curl("POST", &url("/v2/lost/blobs/uploads/"), "*/*");
    assert_eq!(started.status, 202);
    let location = started.header("location").expect("Location");
    let (code, _, _) = curl_raw(&[
        "-sS",
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("{location}&digest={}", digest.replace(':', "%3A")),
    ]);
    assert_eq!(code, 52, "curl's 'empty reply'");
    let lost = proxy.matching("PUT", "/v2/lost/");
    assert_eq!(lost[0].upstream, Some(201), "{}", proxy.describe());
    assert_eq!(lost[0].answered, None);
    registry.assert_blob("lost", &Blob::new(OCI_LAYER, bytes));

    // The first K matches only.
    let statuses: Vec<u16> = (0..3)
        .map(|_| curl("GET", &url("/v2/twice/tags/list"), "*/*").status)
        .collect();
    assert_eq!(statuses, [503, 503, 404]);

    let fired: Vec<usize> = (0..8).map(|rule| proxy.fired(rule)).collect();
    assert_eq!(fired, [1, 1, 1, 2, 1, 1, 2, 1], "{}", proxy.describe());
    assert_eq!(proxy.matched(1), 2);
    assert_eq!(proxy.matched(6), 3);
}

#[test]
fn push_through_the_proxy_without_faults() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(&registry, vec![]);
    let image = Image::sized(Types::Oci, 30, 3, 200_000);
    let layout = image_layout(&image);
    let repo = proxy.repo("plain/app");
    let (run, _) = run_bounded(args(&layout, &repo, &["-t", "v1", "-t", "v2"]), LIMIT);
    assert_ok(&run, &proxy, &repo, &image);
    assert_served(&registry, "plain/app", &image, &["v1", "v2"]);
    assert_retries(&run, 0, DEFAULT_ATTEMPTS);
    assert_eq!(proxy.count("POST", "/blobs/uploads/"), 4);
    assert_eq!(proxy.count("PUT", "/blobs/uploads/"), 4);
    assert_eq!(
        proxy.count("PUT", "/manifests/"),
        3,
        "by digest, then two tags"
    );
    for seen in proxy.requests() {
        assert!(
            seen.answered.is_some(),
            "every request answered:\n{}",
            proxy.describe()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Statuses

#[test]
fn a_500_then_success() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::nth(1, "PUT", "/manifests/", Fault::status(500))],
    );
    let image = image_of(31, 50_000);
    let layout = image_layout(&image);
    let repo = proxy.repo("app");
    let (run, _) = run_bounded(args(&layout, &repo, &["-t", "v1"]), LIMIT);
    assert_ok(&run, &proxy, &repo, &image);
    assert_served(&registry, "app", &image, &["v1"]);
    let lines = assert_retries(&run, 1, DEFAULT_ATTEMPTS);
    assert!(
        lines[0].contains("500"),
        "the retry line says why: {}",
        lines[0]
    );
    assert_eq!(proxy.fired(0), 1);
    assert_eq!(
        proxy.count("PUT", "/manifests/"),
        3,
        "by digest twice, the tag once"
    );
}

#[test]
fn transient_statuses_are_retried_until_success() {
    let registry = Registry::start();
    let image = image_of(32, 50_000);
    let proxy = FaultProxy::start(
        &registry,
        vec![
            Rule::nth(1, "HEAD", "/blobs/", Fault::status(408)),
            Rule::nth(1, "POST", "/blobs/uploads/", Fault::status(502)),
            Rule::nth(1, "PUT", "/blobs/uploads/", Fault::status(503)),
            Rule::first(2, "PUT", &image.manifest.digest, Fault::status(500)),
            Rule::nth(1, "PUT", "/manifests/v1", Fault::retry_after(429, "0")),
            // The tags after the first are looked up in one listing, retried like any request.
            Rule::nth(1, "GET", "/tags/list", Fault::status(504)),
        ],
    );
    let layout = image_layout(&image);
    let repo = proxy.repo("app");
    let (run, _) = run_bounded(
        args(&layout, &repo, &["-j", "1", "-t", "v1", "-t", "v2"]),
        LIMIT,
    );
    assert_ok(&run, &proxy, &repo, &image);
    assert_served(&registry, "app", &image, &["v1", "v2"]);
    let fired: Vec<usize> = (0..6).map(|rule| proxy.fired(rule)).collect();
    assert_eq!(fired, [1, 1, 1, 2, 1, 1], "{}", proxy.describe());
    assert_retries(&run, 7, DEFAULT_ATTEMPTS);
}

#[test]
fn persistent_503_exhausts_the_retries_with_exit_5_and_nothing_tagged() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::every("PUT", "/manifests/", Fault::status(503))],
    );
    let image = image_of(33, 50_000);
    let layout = image_layout(&image);
    let repo = proxy.repo("app");
    let (run, took) = run_bounded(args(&layout, &repo, &["--retries", "2", "-t", "v1"]), LIMIT);
    assert_failed(&run, &proxy, 5, &["503", &image.manifest.digest]);
    registry.assert_nothing_tagged("app", &[&image.manifest.digest]);
    let lines = assert_retries(&run, 2, 3);
    let ks: Vec<u32> = lines
        .iter()
        .filter_map(|l| attempt_of(l))
        .map(|a| a.0)
        .collect();
    assert_eq!(ks[1], ks[0] + 1, "attempts counted up: {lines:?}");
    let puts = proxy.matching("PUT", "/manifests/");
    assert_eq!(puts.len(), 3, "first attempt and 2 retries");
    // Exponential backoff from 0.5 s (±25%): the second wait is longer than the first.
    let (first, second) = (gap(&puts[0], &puts[1]), gap(&puts[1], &puts[2]));
    assert!(first >= Duration::from_millis(350), "first wait {first:?}");
    assert!(
        second >= Duration::from_millis(700),
        "second wait {second:?}"
    );
    assert!(second > first, "{first:?} then {second:?}");
    assert!(took < Duration::from_secs(8), "took {took:?}");
}

#[test]
fn retries_zero_means_one_attempt() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::nth(1, "PUT", "/manifests/", Fault::status(500))],
    );
    let image = image_of(34, 1000);
    let layout = image_layout(&image);
    let (run, _) = run_bounded(
        args(&layout, &proxy.repo("app"), &["--retries", "0", "-t", "v1"]),
        LIMIT,
    );
    assert_failed(&run, &proxy, 5, &["500"]);
    assert_retries(&run, 0, 1);
    assert_eq!(proxy.count("PUT", "/manifests/"), 1);
    registry.assert_nothing_tagged("app", &[&image.manifest.digest]);
}

#[test]
fn retries_count_per_request_not_per_layer() {
    // A POST that keeps failing inside a blob upload: the request's own retries are all it
    // gets, the upload around it does not start it over again.
    let registry = Registry::start();
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::every("POST", "/blobs/uploads/", Fault::status(503))],
    );
    let image = image_of(36, 1000);
    let layout = image_layout(&image);
    let (run, _) = run_bounded(
        args(&layout, &proxy.repo("app"), &["--retries", "2", "-j", "1"]),
        LIMIT,
    );
    assert_failed(&run, &proxy, 5, &["503"]);
    let lines = assert_retries(&run, 2, 3);
    let attempts: Vec<u32> = lines
        .iter()
        .filter_map(|l| attempt_of(l))
        .map(|(k, _)| k)
        .collect();
    assert_eq!(attempts, [2, 3], "{}", run.stderr);
    assert_eq!(
        proxy.count("POST", "/blobs/uploads/"),
        3,
        "{}",
        proxy.describe()
    );
    registry.assert_nothing_tagged("app", &[&image.manifest.digest]);
}

#[test]
fn retry_after_in_seconds_is_honoured() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::nth(
            1,
            "PUT",
            "/manifests/",
            Fault::retry_after(429, "1"),
        )],
    );
    let image = image_of(35, 1000);
    let layout = image_layout(&image);
    let repo = proxy.repo("app");
    let (run, _) = run_bounded(args(&layout, &repo, &["-t", "v1"]), LIMIT);
    assert_ok(&run, &proxy, &repo, &image);
    assert_served(&registry, "app", &image, &["v1"]);
    let lines = assert_retries(&run, 1, DEFAULT_ATTEMPTS);
    assert!(
        lines[0].contains("429"),
        "the retry line says why: {}",
        lines[0]
    );
    let waits = durations_in(&lines[0]);
    assert!(
        waits
            .iter()
            .any(|w| *w >= Duration::from_millis(950) && *w <= Duration::from_millis(1500)),
        "the retry line gives the 1 s wait Retry-After asked for: {}",
        lines[0]
    );
    let puts = proxy.matching("PUT", "/manifests/");
    let waited = gap(&puts[0], &puts[1]);
    assert!(
        waited >= Duration::from_millis(950),
        "waited {waited:?} after Retry-After: 1"
    );
}

#[test]
fn retry_after_as_an_http_date_is_honoured() {
    let registry = Registry::start();
    let when = http_date(SystemTime::now() + Duration::from_secs(4));
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::nth(
            1,
            "PUT",
            "/manifests/",
            Fault::retry_after(503, &when),
        )],
    );
    let image = image_of(36, 1000);
    let layout = image_layout(&image);
    let repo = proxy.repo("app");
    let (run, took) = run_bounded(args(&layout, &repo, &["-t", "v1"]), LIMIT);
    assert_ok(&run, &proxy, &repo, &image);
    assert_served(&registry, "app", &image, &["v1"]);
    assert_retries(&run, 1, DEFAULT_ATTEMPTS);
    let puts = proxy.matching("PUT", "/manifests/");
    let waited = gap(&puts[0], &puts[1]);
    // The date is whole seconds and was set before the push began: 2 s or more remain.
    assert!(
        waited >= Duration::from_millis(1500),
        "waited {waited:?} for Retry-After: {when}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn credentials_refused_fail_at_once_with_exit_2() {
    let registry = Registry::start();
    let image = image_of(37, 1000);
    let layout = image_layout(&image);

    // 401 with a challenge: no retry (at most the one authenticated re-send).
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::every(
            "HEAD",
            "/blobs/",
            Fault::status(401).with_header("WWW-Authenticate", "Basic realm=\"fault-proxy\""),
        )],
    );
    let (run, took) = run_bounded(
        args(&layout, &proxy.repo("app"), &["-j", "1", "-t", "v1"]),
        LIMIT,
    );
    assert_failed(&run, &proxy, 2, &["401"]);
    assert_retries(&run, 0, DEFAULT_ATTEMPTS);
    let heads = proxy.count("HEAD", "/blobs/");
    assert!((1..=2).contains(&heads), "{}", proxy.describe());
    assert!(took < Duration::from_secs(5), "took {took:?}");
    registry.assert_nothing_tagged("app", &[&image.manifest.digest]);

    // 403 on the manifest: no retry at all.
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::every("PUT", "/manifests/", Fault::status(403))],
    );
    let (run, _) = run_bounded(args(&layout, &proxy.repo("denied"), &["-t", "v1"]), LIMIT);
    assert_failed(&run, &proxy, 2, &["403"]);
    assert_retries(&run, 0, DEFAULT_ATTEMPTS);
    assert_eq!(proxy.count("PUT", "/manifests/"), 1, "{}", proxy.describe());
    registry.assert_nothing_tagged("denied", &[&image.manifest.digest]);
}

#[test]
fn other_client_errors_fail_at_once() {
    let registry = Registry::start();
    let image = image_of(38, 1000);
    let layout = image_layout(&image);

    let invalid = r#"{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid","detail":"injected"}]}"#;
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::every(
            "PUT",
            "/manifests/",
            Fault::status(400).with_body(invalid),
        )],
    );
    let (run, _) = run_bounded(args(&layout, &proxy.repo("invalid"), &["-t", "v1"]), LIMIT);
    assert_failed(&run, &proxy, 5, &["400", "MANIFEST_INVALID"]);
    assert_retries(&run, 0, DEFAULT_ATTEMPTS);
    assert_eq!(proxy.count("PUT", "/manifests/"), 1);
    registry.assert_nothing_tagged("invalid", &[&image.manifest.digest]);

    let unknown =
        r#"{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}"#;
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::every(
            "POST",
            "/blobs/uploads/",
            Fault::status(404).with_body(unknown),
        )],
    );
    let (run, _) = run_bounded(
        args(&layout, &proxy.repo("unknown"), &["-j", "1", "-t", "v1"]),
        LIMIT,
    );
    assert_failed(&run, &proxy, 5, &["404", "NAME_UNKNOWN"]);
    assert_retries(&run, 0, DEFAULT_ATTEMPTS);
    assert_eq!(proxy.count("POST", "/blobs/uploads/"), 1);
    registry.assert_nothing_tagged("unknown", &[&image.manifest.digest]);

    // The registry says the bytes do not match the digest: the layout is corrupt (exit 4).
    let digest_invalid = r#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}]}"#;
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::every(
            "PUT",
            "/blobs/uploads/",
            Fault::status(400).with_body(digest_invalid),
        )],
    );
    let (run, _) = run_bounded(
        args(&layout, &proxy.repo("corrupt"), &["-j", "1", "-t", "v1"]),
        LIMIT,
    );
    assert_failed(&run, &proxy, 4, &["is corrupt"]);
    assert_retries(&run, 0, DEFAULT_ATTEMPTS);
    assert_eq!(proxy.count("PUT", "/blobs/uploads/"), 1);
    registry.assert_nothing_tagged("corrupt", &[&image.manifest.digest]);
}

// ---------------------------------------------------------------------------------------------
// Order

#[test]
fn platform_manifests_go_at_once_and_the_index_after_them() {
    // Each platform manifest's PUT is held 600 ms by the proxy: one after the other, they
    // would arrive at least that far apart.
    let registry = Registry::start();
    let images: Vec<(Image, (&str, &str))> = [("amd64", 60), ("arm64", 61), ("s390x", 62)]
        .into_iter()
        .map(|(arch, seed)| {
            let image = Image::new(Types::Oci, ("linux", arch), vec![pseudo_random(seed, 3000)]);
            (image, ("linux", arch))
        })
        .collect();
    let index = Index::new(Types::Oci, images);
    let hold = Duration::from_millis(600);
    let rules = index
        .images
        .iter()
        .map(|i| Rule::every("PUT", hex(&i.manifest.digest), Fault::stall(hold)))
        .collect();
    let proxy = FaultProxy::start(&registry, rules);
    let layout = index_layout(&index);
    let repo = proxy.repo("multi");
    let (run, _) = run_bounded(args(&layout, &repo, &["-t", "v1"]), LIMIT);
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, proxy.describe());
    registry.assert_manifest("multi", "v1", &index.manifest);

    let arrived = |digest: &str| {
        let puts = proxy.matching("PUT", &format!("/manifests/{digest}"));
        assert_eq!(puts.len(), 1, "one PUT of {digest}:\n{}", proxy.describe());
        puts[0].at
    };
    let children: Vec<Instant> = index
        .images
        .iter()
        .map(|i| arrived(&i.manifest.digest))
        .collect();
    let (first, last) = (
        children.iter().min().unwrap(),
        children.iter().max().unwrap(),
    );
    assert!(
        *last - *first < hold / 2,
        "the platform manifests went one after the other:\n{}",
        proxy.describe()
    );
    assert!(
        arrived(&index.manifest.digest) >= *last + hold,
        "the index went before its manifests were in:\n{}",
        proxy.describe()
    );
}

// ---------------------------------------------------------------------------------------------
// Connections

#[test]
fn connection_dropped_mid_blob_put_restarts_the_upload() {
    let registry = Registry::start();
    let image = image_of(40, 2 * MIB);
    let layer = &image.layers[0];
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::nth(
            1,
            "PUT",
            hex(&layer.digest),
            Fault::drop_body_after(256 * 1024),
        )],
    );
    let layout = image_layout(&image);
    let repo = proxy.repo("app");
    let (run, _) = run_bounded(args(&layout, &repo, &["-t", "v1"]), LIMIT);
    assert_ok(&run, &proxy, &repo, &image);
    assert_served(&registry, "app", &image, &["v1"]);
    assert_retries(&run, 1, DEFAULT_ATTEMPTS);
    let puts = proxy.matching("PUT", hex(&layer.digest));
    assert_eq!(puts.len(), 2, "{}", proxy.describe());
    assert_eq!(puts[0].body_len, 256 * 1024);
    assert_eq!(puts[1].body_len, layer.bytes.len() as u64);
    assert_ne!(
        puts[0].path(),
        puts[1].path(),
        "the upload restarts in a new session"
    );
    assert_eq!(
        proxy.count("POST", "/blobs/uploads/"),
        3,
        "a session for the config, two for the layer"
    );
}

#[test]
fn connection_dropped_mid_patch_resumes_where_the_registry_says() {
    let registry = Registry::start();
    let size = 3 * MIB + 12_345;
    let image = image_of(41, size);
    let layer = &image.layers[0];
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::nth(
            2,
            "PATCH",
            "/blobs/uploads/",
            Fault::drop_body_after(100_000),
        )],
    );
    let layout = image_layout(&image);
    let repo = proxy.repo("app");
    let (run, _) = run_bounded(
        args(
            &layout,
            &repo,
            &["-j", "1", "--chunk-size", "1MiB", "-t", "v1"],
        ),
        LIMIT,
    );
    assert_ok(&run, &proxy, &repo, &image);
    assert_served(&registry, "app", &image, &["v1"]);
    assert_eq!(proxy.fired(0), 1);
    assert_retries(&run, 1, DEFAULT_ATTEMPTS);

    // One session for the layer (largest first, so the dropped PATCH is its second chunk),
    // one for the config: resumed, not restarted.
    assert_eq!(
        proxy.count("POST", "/blobs/uploads/"),
        2,
        "{}",
        proxy.describe()
    );
    let put = proxy.matching("PUT", hex(&layer.digest));
    assert_eq!(put.len(), 1);
    assert_eq!(put[0].body_len, 0, "the final PUT carries no body");
    let session = put[0].path().to_string();
    let requests: Vec<ProxiedRequest> = proxy
        .requests()
        .into_iter()
        .filter(|s| s.path() == session)
        .collect();
    let dropped = requests
        .iter()
        .position(|s| s.fault == Some(0))
        .expect("the dropped PATCH is in the layer's session");
    assert_eq!(
        requests[dropped].header("content-range"),
        Some(format!("{}-{}", MIB, 2 * MIB - 1).as_str())
    );
    let asked = &requests[dropped + 1];
    assert_eq!(
        (asked.method.as_str(), asked.upstream),
        ("GET", Some(204)),
        "after the failure it asks where the upload stands:\n{}",
        proxy.describe()
    );
    assert_eq!(
        requests[dropped + 2].header("content-range"),
        Some(format!("{}-{}", MIB, 2 * MIB - 1).as_str()),
        "it resumes from the registry's offset"
    );
    // The PATCHes that went through cover the layer exactly, in order.
    let mut next = 0u64;
    for patch in requests
        .iter()
        .filter(|s| s.method == "PATCH" && s.fault.is_none())
    {
        let range = patch.header("content-range").expect("Content-Range");
        let (start, end) = range.split_once('-').expect("start-end");
        let (start, end): (u64, u64) = (start.parse().unwrap(), end.parse().unwrap());
        assert_eq!(start, next, "{range}");
        assert_eq!(patch.body_len, end - start + 1, "{range}");
        assert_eq!(
            patch.header("content-length"),
            Some((end - start + 1).to_string().as_str())
        );
        assert!(end - start < MIB as u64, "chunks of at most 1 MiB: {range}");
        assert_eq!(patch.upstream, Some(202));
        next = end + 1;
    }
    assert_eq!(next, size as u64);
}

#[test]
fn upload_session_lost_after_a_failed_patch_restarts_the_upload() {
    let registry = Registry::start();
    let size = 2 * MIB + 777;
    let image = image_of(42, size);
    let layer = &image.layers[0];
    let proxy = FaultProxy::start(
        &registry,
        vec![
            Rule::nth(
                2,
                "PATCH",
                "/blobs/uploads/",
                Fault::drop_body_after(100_000),
            ),
            Rule::every("GET", "/blobs/uploads/", Fault::status(404)),
        ],
    );
    let layout = image_layout(&image);
    let repo = proxy.repo("app");
    let (run, _) = run_bounded(
        args(
            &layout,
            &repo,
            &["-j", "1", "--chunk-size", "1MiB", "-t", "v1"],
        ),
        LIMIT,
    );
    assert_ok(&run, &proxy, &repo, &image);
    assert_served(&registry, "app", &image, &["v1"]);
    assert_eq!(
        proxy.count("POST", "/blobs/uploads/"),
        3,
        "a new session for the layer:\n{}",
        proxy.describe()
    );
    let put = proxy.matching("PUT", hex(&layer.digest));
    assert_eq!(put.len(), 1);
    let session = put[0].path().to_string();
    let bytes: u64 = proxy
        .requests()
        .iter()
        .filter(|s| s.method == "PATCH" && s.path() == session)
        .map(|s| s.body_len)
        .sum();
    assert_eq!(bytes, size as u64, "the new session gets the whole layer");
}

#[test]
fn connection_failures_exhaust_the_retries_with_exit_3() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::every("PUT", "/manifests/", Fault::Reset)],
    );
    let image = image_of(43, 1000);
    let layout = image_layout(&image);
    let (run, _) = run_bounded(
        args(&layout, &proxy.repo("app"), &["--retries", "1", "-t", "v1"]),
        LIMIT,
    );
    assert_failed(&run, &proxy, 3, &[&image.manifest.digest]);
    assert_retries(&run, 1, 2);
    assert_eq!(proxy.count("PUT", "/manifests/"), 2);
    registry.assert_nothing_tagged("app", &[&image.manifest.digest]);
}

/// Pushes a small image once per request of a push, the fault on that request: each push
/// completes, with the right digests and tag.
fn survives_a_fault_on_each_request(fault: Fault, name: &str, seed: u64) {
    let registry = Registry::start();
    let image = image_of(seed, 20_000);
    let layout = image_layout(&image);
    let proxy = FaultProxy::start(&registry, vec![]);
    let push = |path: &str| {
        run_bounded(
            args(
                &layout,
                &proxy.repo(path),
                &["-j", "1", "--retries", "2", "-t", "v1"],
            ),
            LIMIT,
        )
        .0
    };
    let clean = push("clean");
    assert_ok(&clean, &proxy, &proxy.repo("clean"), &image);
    assert_served(&registry, "clean", &image, &["v1"]);
    let total = proxy.requests().len();
    assert!(total >= 8, "a push makes {total} requests");
    for n in 1..=total {
        proxy.forget();
        let rule = proxy.add(Rule::nth(n, "*", "", fault.clone()));
        let path = format!("{name}{n}");
        let run = push(&path);
        let hit = proxy
            .requests()
            .into_iter()
            .find(|s| s.fault == Some(rule))
            .map(|s| format!("{} {}", s.method, s.path()))
            .unwrap_or_else(|| panic!("request {n} never came:\n{}", proxy.describe()));
        assert_eq!(
            run.code,
            0,
            "{name} on request {n} ({hit}); stderr:\n{}\nrequests:\n{}",
            run.stderr,
            proxy.describe()
        );
        assert_eq!(
            run.last_line(),
            format!("{}@{}", proxy.repo(&path), image.manifest.digest)
        );
        assert_served(&registry, &path, &image, &["v1"]);
    }
}

#[test]
fn reset_on_the_nth_request_at_every_step() {
    survives_a_fault_on_each_request(Fault::Reset, "reset", 44);
}

#[test]
fn answer_lost_after_the_registry_acted_at_every_step() {
    survives_a_fault_on_each_request(Fault::DropResponse, "lost", 45);
}

#[test]
fn truncated_answer_at_every_step() {
    survives_a_fault_on_each_request(Fault::Truncate, "cut", 46);
}

// ---------------------------------------------------------------------------------------------
// Time

#[test]
fn stalled_answer_is_cut_by_the_timeout_with_exit_6() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::every(
            "PUT",
            "/manifests/",
            Fault::hang(Duration::from_secs(20)),
        )],
    );
    let image = image_of(47, 1000);
    let layout = image_layout(&image);
    let (run, took) = run_bounded(
        args(
            &layout,
            &proxy.repo("app"),
            &["--timeout", "2s", "-t", "v1"],
        ),
        LIMIT,
    );
    assert_failed(&run, &proxy, 6, &["timed out"]);
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(6),
        "a 2 s push took {took:?}"
    );
    assert!(proxy.count("PUT", "/manifests/") >= 1);
    registry.assert_nothing_tagged("app", &[&image.manifest.digest]);
}

#[test]
fn a_slow_answer_within_the_timeout_is_waited_for() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::nth(
            1,
            "PUT",
            "/manifests/",
            Fault::stall(Duration::from_millis(1500)),
        )],
    );
    let image = image_of(48, 1000);
    let layout = image_layout(&image);
    let repo = proxy.repo("app");
    let (run, took) = run_bounded(
        args(&layout, &repo, &["--timeout", "20s", "-t", "v1"]),
        LIMIT,
    );
    assert_ok(&run, &proxy, &repo, &image);
    assert_served(&registry, "app", &image, &["v1"]);
    assert_retries(&run, 0, DEFAULT_ATTEMPTS);
    assert!(took >= Duration::from_millis(1500));
    assert_eq!(
        proxy.count("PUT", "/manifests/"),
        2,
        "by digest and the tag"
    );
}

#[test]
fn timeout_retries_and_chunk_size_flags() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(&registry, vec![]);
    let size = MIB + MIB / 2 + 3;
    let image = image_of(49, size);
    let layout = image_layout(&image);
    for (i, timeout) in ["1h", "5m", "30s", "45", "20000ms"].iter().enumerate() {
        let path = format!("timeout{i}");
        let repo = proxy.repo(&path);
        let (run, _) = run_bounded(args(&layout, &repo, &["--timeout", timeout]), LIMIT);
        assert_ok(&run, &proxy, &repo, &image);
        assert_served(&registry, &path, &image, &[]);
    }
    for (i, (chunk, bytes)) in [
        ("512KiB", 512 * 1024),
        ("1M", MIB),
        ("1048576", MIB),
        ("1MiB", MIB),
    ]
    .iter()
    .enumerate()
    {
        proxy.forget();
        let path = format!("chunk{i}");
        let repo = proxy.repo(&path);
        let (run, _) = run_bounded(
            args(
                &layout,
                &repo,
                &["-j", "1", "--chunk-size", chunk, "-t", "v1"],
            ),
            LIMIT,
        );
        assert_ok(&run, &proxy, &repo, &image);
        assert_served(&registry, &path, &image, &["v1"]);
        let put = proxy.matching("PUT", hex(&image.layers[0].digest));
        let patches: Vec<ProxiedRequest> = proxy
            .requests()
            .into_iter()
            .filter(|s| s.method == "PATCH" && s.path() == put[0].path())
            .collect();
        assert_eq!(
            patches.len(),
            size.div_ceil(*bytes),
            "--chunk-size {chunk}:\n{}",
            proxy.describe()
        );
        assert_eq!(patches[0].body_len, *bytes as u64, "--chunk-size {chunk}");
        assert_eq!(
            patches[0].header("content-range"),
            Some(format!("0-{}", bytes - 1).as_str())
        );
    }
    for (flag, value) in [
        ("--timeout", "soon"),
        ("--timeout", "-1s"),
        ("--retries", "many"),
        ("--retries", "-1"),
        ("--chunk-size", "lots"),
    ] {
        let (run, _) = run_bounded(
            args(&layout, &proxy.repo("bad"), &[flag, value]),
            Duration::from_secs(5),
        );
        assert_eq!(run.code, 1, "{flag} {value}: {}", run.stderr);
        assert!(run.error().contains(flag), "{flag} {value}: {}", run.stderr);
    }
}

// ---------------------------------------------------------------------------------------------
// Killed, and the registry restarted

#[test]
fn killed_mid_upload_then_a_rerun_completes_and_skips_what_is_there() {
    let registry = Registry::start();
    let big = pseudo_random(50, 3 * MIB);
    let small = pseudo_random(51, 10_000);
    let image = Image::new(Types::Oci, ("linux", "amd64"), vec![big, small]);
    let (big, small) = (&image.layers[0], &image.layers[1]);
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::every(
            "PUT",
            hex(&big.digest),
            Fault::hang_body_after(MIB as u64, Duration::from_secs(60)),
        )],
    );
    let layout = image_layout(&image);
    let repo = proxy.repo("app");
    let push_args = args(&layout, &repo, &["-t", "v1", "-t", "latest"]);

    let running = spawn_oci_push(&push_args);
    assert!(
        proxy.wait_fired(0, 1, Duration::from_secs(15)),
        "the big layer's upload never started:\n{}",
        proxy.describe()
    );
    // The small blobs finish while the big one hangs half-sent.
    let deadline = Instant::now() + Duration::from_secs(15);
    for blob in [&image.config, small] {
        while registry
            .head(&format!("/v2/app/blobs/{}", blob.digest))
            .status
            != 200
        {
            assert!(Instant::now() < deadline, "{} never arrived", blob.digest);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let killed = running.kill();
    assert!(
        !killed
            .stderr
            .lines()
            .any(|l| l.trim_start().starts_with("manifest")),
        "no manifest before every blob:\n{}",
        killed.stderr
    );
    registry.assert_nothing_tagged("app", &[&image.manifest.digest]);
    let big_there = registry.head(&format!("/v2/app/blobs/{}", big.digest));
    assert_eq!(big_there.status, 404, "half a layer is not a layer");

    // The same command again, without faults.
    proxy.disarm_all();
    proxy.forget();
    let (run, _) = run_bounded(&push_args, LIMIT);
    assert_ok(&run, &proxy, &repo, &image);
    assert_served(&registry, "app", &image, &["latest", "v1"]);
    assert_eq!(
        proxy.count("POST", "/blobs/uploads/"),
        1,
        "only the big layer is uploaded again:\n{}",
        proxy.describe()
    );
    assert_eq!(proxy.count("PUT", hex(&small.digest)), 0);
    assert_eq!(proxy.count("PUT", hex(&image.config.digest)), 0);
    assert_eq!(proxy.count("PUT", hex(&big.digest)), 1);
}

#[test]
fn registry_stopped_mid_push_and_restarted() {
    let mut registry = Registry::start();
    // Upload sessions survive a restart only when the registry keeps its secret.
    registry.pin_upload_secret();
    let image = Image::new(
        Types::Oci,
        ("linux", "amd64"),
        vec![pseudo_random(52, 2 * MIB), pseudo_random(53, 5000)],
    );
    let big = &image.layers[0];
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::nth(
            1,
            "PUT",
            hex(&big.digest),
            Fault::stall(Duration::from_millis(1500)),
        )],
    );
    let layout = image_layout(&image);
    let repo = proxy.repo("app");
    let push_args = args(&layout, &repo, &["--retries", "4", "-t", "v1"]);

    let running = spawn_oci_push(&push_args);
    assert!(
        proxy.wait_fired(0, 1, Duration::from_secs(15)),
        "the big layer's upload never started:\n{}",
        proxy.describe()
    );
    // The held upload goes on to a stopped registry; the registry is back 2.5 s later.
    registry.stop();
    std::thread::sleep(Duration::from_millis(2500));
    registry.start_again();
    let (run, took) = running.wait(LIMIT);
    eprintln!("through the restart: exit {} after {took:?}", run.code);
    assert!(
        proxy.requests().iter().any(|s| s.upstream_error.is_some()),
        "no request met the stopped registry:\n{}",
        proxy.describe()
    );
    assert!(
        !retry_lines(&run.stderr).is_empty(),
        "the outage was retried:\n{}",
        run.stderr
    );
    match run.code {
        0 => {
            assert_ok(&run, &proxy, &repo, &image);
            assert_served(&registry, "app", &image, &["v1"]);
        }
        3 => {
            assert_eq!(run.error_count(), 1, "{}", run.stderr);
            registry.assert_nothing_tagged("app", &[&image.manifest.digest]);
            let (again, _) = run_bounded(&push_args, LIMIT);
            assert_ok(&again, &proxy, &repo, &image);
            assert_served(&registry, "app", &image, &["v1"]);
        }
        other => panic!(
            "exit {other}: survive (0) or fail as unreachable (3); stderr:\n{}\nrequests:\n{}",
            run.stderr,
            proxy.describe()
        ),
    }
}
