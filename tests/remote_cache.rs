//! Push without the bytes (docs/remote-cache.md): `--verify --write-thin-layout` writes a thin
//! layout, and a push of it streams each left-out layer the registry lacks from a real Bazel
//! HTTP cache (nginx, tests/common/cache.rs) into the real registry. Every push is read back
//! from the registry with curl; what was fetched is read from the cache's access log.

mod common;

use std::path::Path;

use common::cache::{Access, Cache, CacheOptions};
use common::faults::{retry_lines, Fault, FaultProxy, Rule};
use common::pushing::{
    alice_secrets, assert_pushed, assert_refused, assert_served, basic_registry, ALICE_PASSWORD,
    ALICE_USER,
};
use common::sandbox::helper_uris;
use common::*;
use serde_json::{json, Value};
use tempfile::TempDir;

/// The size of each layer of [`sample`]: shown as `10.0 KiB` in messages.
const LAYER: usize = 10 * 1024;

/// The cache's user in the tests that give it credentials (alice is the registry's).
const CACHE_USER: &str = "bazel";
const CACHE_PASSWORD: &str = "cache@pw-s3cret";
/// [`CACHE_PASSWORD`] as it stands in a URL.
const CACHE_PASSWORD_IN_URL: &str = "cache%40pw-s3cret";

/// An image of 3 layers of [`LAYER`] bytes, distinct by `seed`, and its full layout.
fn sample(seed: u64) -> (Image, TempDir) {
    let image = Image::sized(Types::Oci, seed, 3, LAYER);
    let full = image_layout(&image);
    (image, full)
}

fn hex(blob: &Blob) -> &str {
    blob.digest
        .strip_prefix("sha256:")
        .expect("a sha256 digest")
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// `oci-push --verify --layout FULL --write-thin-layout THIN`, succeeded.
fn write_thin(full: &Path) -> (TempDir, Run) {
    let thin = TempDir::new().expect("temp dir");
    let args = [
        "--verify",
        "--layout",
        utf8(full),
        "--write-thin-layout",
        utf8(thin.path()),
    ];
    let run = oci_push_with(&args, &[], None).ok();
    (thin, run)
}

/// [`write_thin`], checked: it prints the image's
/// digest, and THIN holds `oci-layout`, the same `index.json`, the manifest and the config but
/// no layer, and `oci-push-thin.json` listing every layer with its size.
fn thin_layout(image: &Image, full: &TempDir) -> TempDir {
    let (thin, run) = write_thin(full.path());
    assert_eq!(run.last_line(), image.manifest.digest);
    let mut blobs: Vec<String> = std::fs::read_dir(thin.path().join("blobs/sha256"))
        .expect("the thin layout's blobs")
        .map(|e| e.expect("entry").file_name().into_string().expect("name"))
        .collect();
    blobs.sort();
    let mut expected = vec![
        hex(&image.manifest).to_string(),
        hex(&image.config).to_string(),
    ];
    expected.sort();
    assert_eq!(
        blobs, expected,
        "the thin layout holds the manifest and config only"
    );
    let read = |dir: &Path, name: &str| std::fs::read(dir.join(name)).expect(name);
    assert_eq!(
        read(thin.path(), "index.json"),
        read(full.path(), "index.json")
    );
    assert_eq!(
        read(thin.path(), "oci-layout"),
        read(full.path(), "oci-layout")
    );
    let list: Value =
        serde_json::from_slice(&read(thin.path(), "oci-push-thin.json")).expect("the thin list");
    let omitted: Vec<Value> = image
        .layers
        .iter()
        .map(|l| json!({"digest": l.digest, "size": l.bytes.len()}))
        .collect();
    assert_eq!(list, json!({ "omitted": omitted }));
    thin
}

/// [`sample`] `seed`, its thin layout, and every blob of it in `cache` (configs and manifests
/// too: fetching one would show).
fn in_cache(cache: &Cache, seed: u64) -> (Image, TempDir, TempDir) {
    let (image, full) = sample(seed);
    let thin = thin_layout(&image, &full);
    cache.put_layout(full.path());
    (image, full, thin)
}

/// `oci-push --layout LAYOUT -r REPO -t v1 [--remote-cache URL] EXTRA...` in `sandbox`, with
/// `env` on top of its clean environment and `stdin` piped in.
fn push_in(
    sandbox: &Sandbox,
    layout: &Path,
    repo: &str,
    cache: Option<&str>,
    extra: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> Run {
    let mut args = vec!["--layout", utf8(layout), "-r", repo, "-t", "v1"];
    if let Some(url) = cache {
        args.extend(["--remote-cache", url]);
    }
    args.extend_from_slice(extra);
    sandbox.run(&args, env, stdin)
}

/// [`push_in`] a fresh sandbox, from the cache at `cache`.
fn push(layout: &TempDir, repo: &str, cache: &str, extra: &[&str]) -> Run {
    push_in(
        &Sandbox::new(),
        layout.path(),
        repo,
        Some(cache),
        extra,
        &[],
        None,
    )
}

/// The push's JSON reports each blob from `from` (the layers', in order) with `outcome`, and
/// `fetched` bytes from the cache, and the registry serves the image under `v1`; the JSON.
fn assert_reported_and_served(
    run: &Run,
    registry: &Registry,
    path: &str,
    image: &Image,
    from: &[&str],
    outcome: &str,
    fetched: u64,
) -> Value {
    let json = run.json();
    assert_eq!(blob_reports(&json), expected_reports(image, from, outcome));
    assert_eq!(json["bytes"]["fetched"], fetched);
    assert_served(registry, path, image, &["v1"]);
    json
}

/// Each blob's `(digest, kind, from, outcome)` in a push's JSON (held to its schema), sorted.
fn blob_reports(json: &Value) -> Vec<(String, String, String, String)> {
    schema::assert_follows_schema(json);
    let text = |v: &Value| v.as_str().unwrap_or_else(|| panic!("{v}")).to_string();
    let mut reports: Vec<_> = json["blobs"]
        .as_array()
        .unwrap_or_else(|| panic!("no blobs: {json}"))
        .iter()
        .map(|b| {
            (
                text(&b["digest"]),
                text(&b["kind"]),
                text(&b["from"]),
                text(&b["outcome"]),
            )
        })
        .collect();
    reports.sort();
    reports
}

/// What [`blob_reports`] should say: the config from its file, the layers from `from` (one
/// for each), all with `outcome`.
fn expected_reports(
    image: &Image,
    from: &[&str],
    outcome: &str,
) -> Vec<(String, String, String, String)> {
    assert_eq!(from.len(), image.layers.len());
    let mut reports = vec![(
        image.config.digest.clone(),
        "config".to_string(),
        "file".to_string(),
        outcome.to_string(),
    )];
    for (layer, from) in image.layers.iter().zip(from) {
        reports.push((
            layer.digest.clone(),
            "layer".to_string(),
            from.to_string(),
            outcome.to_string(),
        ));
    }
    reports.sort();
    reports
}

/// How many times the cache served each blob (GETs answered 200 or 206).
fn fetches(cache: &Cache, blobs: &[Blob]) -> Vec<usize> {
    blobs.iter().map(|b| cache.fetches(hex(b))).collect()
}

/// The image of `base` with its layer `at` replaced by new bytes, and its full layout.
fn with_new_layer(base: &Image, at: usize, seed: u64) -> (Image, TempDir) {
    let mut layers: Vec<Vec<u8>> = base.layers.iter().map(|l| l.bytes.clone()).collect();
    layers[at] = pseudo_random(seed, LAYER);
    let image = Image::new(Types::Oci, ("linux", "amd64"), layers);
    let full = image_layout(&image);
    (image, full)
}

// ---------------------------------------------------------------------------------------------
// What is fetched, and what is not

#[test]
fn a_cold_push_fetches_each_layer_once_and_no_config_or_manifest() {
    let registry = Registry::start();
    let cache = Cache::start();
    // The cache holds every blob, config and manifest included: fetching one would show.
    let (image, _full, thin) = in_cache(&cache, 1);
    let run = push(
        &thin,
        &registry.repo("cold/app"),
        &cache.url(),
        &["--format", "json"],
    )
    .ok();

    assert_eq!(fetches(&cache, &image.layers), [1, 1, 1]);
    assert_eq!(cache.fetches(hex(&image.config)), 0);
    assert_eq!(cache.fetches(hex(&image.manifest)), 0);
    // Nothing else was asked of the cache: one whole GET of each layer.
    let mut seen: Vec<Access> = cache.requests();
    seen.sort_by(|a, b| a.path.cmp(&b.path));
    let mut expected: Vec<Access> = image
        .layers
        .iter()
        .map(|l| Access {
            method: "GET".to_string(),
            path: format!("/cas/{}", hex(l)),
            status: 200,
            body_bytes: LAYER as u64,
            range: String::new(),
            authorization: String::new(),
        })
        .collect();
    expected.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(seen, expected);

    assert_served(&registry, "cold/app", &image, &["v1"]);
    let json = run.json();
    assert_eq!(json["digest"], image.manifest.digest.as_str());
    assert_eq!(json["error"], Value::Null);
    assert_eq!(
        blob_reports(&json),
        expected_reports(&image, &["remoteCache"; 3], "uploaded")
    );
    let layers = 3 * LAYER as u64;
    assert_eq!(json["bytes"]["fetched"], layers);
    assert_eq!(
        json["bytes"]["sent"],
        layers + image.config.bytes.len() as u64
    );
    assert_eq!(
        json["tags"],
        json!([{"tag": "v1", "outcome": "applied", "previous": null}])
    );
}

#[test]
fn a_re_push_fetches_nothing() {
    let registry = Registry::start();
    let cache = Cache::start();
    let (image, _full, thin) = in_cache(&cache, 2);
    let repo = registry.repo("again/app");
    push(&thin, &repo, &cache.url(), &[]).ok();
    let first = cache.requests();
    assert_eq!(first.len(), 3, "{first:#?}");

    let again = push(&thin, &repo, &cache.url(), &[]);
    assert_pushed(&again, &registry, &repo, "again/app", &image);
    // A new tag too: the image is there, nothing is fetched for it either.
    let tagged = push(
        &thin,
        &repo,
        &cache.url(),
        &["-t", "v2", "--format", "json"],
    )
    .ok();
    assert_eq!(tagged.json()["bytes"]["fetched"], 0);
    assert_eq!(registry.tags("again/app"), ["v1", "v2"]);
    assert_eq!(cache.requests(), first, "the re-pushes asked the cache");
}

#[test]
fn an_image_sharing_all_layers_but_one_fetches_only_the_new_one() {
    let registry = Registry::start();
    let cache = Cache::start();
    let (first, first_full) = sample(3);
    let (second, second_full) = with_new_layer(&first, 1, 99_003);
    assert_ne!(first.config.digest, second.config.digest);
    let first_thin = thin_layout(&first, &first_full);
    let second_thin = thin_layout(&second, &second_full);
    cache.put_layout(first_full.path());
    cache.put_layout(second_full.path());
    let repo = registry.repo("shared/app");
    push(&first_thin, &repo, &cache.url(), &[]).ok();
    assert_eq!(fetches(&cache, &first.layers), [1, 1, 1]);

    let run = push(&second_thin, &repo, &cache.url(), &[]);
    assert_pushed(&run, &registry, &repo, "shared/app", &second);
    assert_eq!(fetches(&cache, &second.layers), [1, 1, 1]);
    assert_eq!(cache.fetches(hex(&first.layers[1])), 1);
    assert_eq!(cache.fetches(hex(&second.config)), 0);
    assert_eq!(cache.requests().len(), 4, "{:#?}", cache.requests());
}

#[test]
fn layers_mounted_from_another_repository_are_not_fetched() {
    let registry = Registry::start();
    let cache = Cache::start();
    let (image, _full, thin) = in_cache(&cache, 4);
    push(&thin, &registry.repo("one/app"), &cache.url(), &[]).ok();
    let before = cache.requests();
    assert_eq!(before.len(), 3);

    let from = registry.repo("one/app");
    let run = push(
        &thin,
        &registry.repo("two/app"),
        &cache.url(),
        &["--mount-from", &from, "--format", "json"],
    )
    .ok();
    assert_eq!(cache.requests(), before, "a mounted push asked the cache");
    let json = assert_reported_and_served(
        &run,
        &registry,
        "two/app",
        &image,
        &["remoteCache"; 3],
        "mounted",
        0,
    );
    assert_eq!(json["bytes"]["sent"], 0);
}

// ---------------------------------------------------------------------------------------------
// A cache that lacks a blob

#[test]
fn an_evicted_layer_fails_the_push_untagged_with_exit_8_until_it_is_back() {
    let registry = Registry::start();
    let cache = Cache::start();
    let (image, full, thin) = in_cache(&cache, 5);
    let evicted = &image.layers[1];
    cache.evict(hex(evicted));
    let repo = registry.repo("evicted/app");

    let run = push(&thin, &repo, &cache.url(), &[]);
    assert_eq!(run.code, 8, "stderr:\n{}", run.stderr);
    assert_eq!(run.error_count(), 1, "{}", run.stderr);
    let last = run.stderr.lines().last().unwrap_or("");
    let start = format!(
        "oci-push: error: blob {} (10.0 KiB) is not in the remote cache {}: evicted, ",
        evicted.digest,
        cache.url()
    );
    assert!(
        last.starts_with(&start),
        "expected {start:?}...; stderr:\n{}",
        run.stderr
    );
    for fix in [
        "bazel build --noremote_accept_cached",
        "then push again (nothing was tagged)",
    ] {
        assert!(last.contains(fix), "no {fix:?} in: {last}");
    }
    assert!(run.stdout.is_empty(), "stdout: {}", run.stdout);
    registry.assert_nothing_tagged("evicted/app", &[&image.manifest.digest]);
    // A 404 is no reason to retry: asked once.
    let asked = cache
        .requests()
        .iter()
        .filter(|a| a.path == format!("/cas/{}", hex(evicted)))
        .count();
    assert_eq!(asked, 1);

    cache.put_layout(full.path());
    let again = push(&thin, &repo, &cache.url(), &[]);
    assert_pushed(&again, &registry, &repo, "evicted/app", &image);
    assert_eq!(cache.fetches(hex(evicted)), 1);
}

// ---------------------------------------------------------------------------------------------
// --local-layout

#[test]
fn a_local_full_layout_is_read_from_disk_and_nothing_is_fetched() {
    let registry = Registry::start();
    // An empty cache: any fetch would fail, and would show in its log.
    let cache = Cache::start();
    let (image, full) = sample(6);
    let thin = thin_layout(&image, &full);
    let run = push(
        &thin,
        &registry.repo("local/app"),
        &cache.url(),
        &["--local-layout", utf8(full.path()), "--format", "json"],
    )
    .ok();
    assert_eq!(cache.requests(), [], "the cache was asked");
    assert_reported_and_served(
        &run,
        &registry,
        "local/app",
        &image,
        &["file"; 3],
        "uploaded",
        0,
    );

    // With every left-out blob on disk, no cache is needed at all.
    let repo = registry.repo("local/nocache");
    let extra = ["--local-layout", utf8(full.path())];
    let run = push_in(&Sandbox::new(), thin.path(), &repo, None, &extra, &[], None);
    assert_pushed(&run, &registry, &repo, "local/nocache", &image);
}

#[test]
fn a_local_blob_of_the_wrong_size_or_missing_is_fetched_and_only_it() {
    let registry = Registry::start();
    let cache = Cache::start();
    let (image, _full, thin) = in_cache(&cache, 7);
    let local = image_layout(&image);
    let short = &image.layers[1].bytes[..LAYER - 1];
    std::fs::write(blob_path(local.path(), &image.layers[1]), short).expect("shorten a blob");
    std::fs::remove_file(blob_path(local.path(), &image.layers[2])).expect("remove a blob");

    let run = push(
        &thin,
        &registry.repo("partial/app"),
        &cache.url(),
        &["--local-layout", utf8(local.path()), "--format", "json"],
    )
    .ok();
    assert_eq!(fetches(&cache, &image.layers), [0, 1, 1]);
    assert_eq!(cache.requests().len(), 2, "{:#?}", cache.requests());
    assert_reported_and_served(
        &run,
        &registry,
        "partial/app",
        &image,
        &["file", "remoteCache", "remoteCache"],
        "uploaded",
        2 * LAYER as u64,
    );
}

#[test]
fn a_local_blob_of_the_right_size_but_other_bytes_is_refused_as_corrupt() {
    let registry = Registry::start();
    let cache = Cache::start();
    let (image, _full, thin) = in_cache(&cache, 8);
    let local = image_layout(&image);
    let corrupt = blob_path(local.path(), &image.layers[0]);
    std::fs::write(&corrupt, pseudo_random(8_888, LAYER)).expect("corrupt a blob");

    let run = push(
        &thin,
        &registry.repo("corrupt/app"),
        &cache.url(),
        &["--local-layout", utf8(local.path())],
    );
    assert_refused(
        &run,
        &registry,
        "corrupt/app",
        4,
        &[
            &format!("blob {} is corrupt", image.layers[0].digest),
            utf8(&corrupt),
        ],
    );
    assert_eq!(cache.fetches(hex(&image.layers[0])), 0);
}

// ---------------------------------------------------------------------------------------------
// Chunks

#[test]
fn a_chunked_upload_fetches_each_chunk_with_a_range() {
    let registry = Registry::start();
    let cache = Cache::start();
    let size = 200 * 1024;
    let image = Image::new(Types::Oci, ("linux", "amd64"), vec![pseudo_random(9, size)]);
    let full = image_layout(&image);
    let thin = thin_layout(&image, &full);
    cache.put_layout(full.path());
    let run = push(
        &thin,
        &registry.repo("chunks/app"),
        &cache.url(),
        &["--chunk-size", "64KiB"],
    );
    assert_pushed(
        &run,
        &registry,
        &registry.repo("chunks/app"),
        "chunks/app",
        &image,
    );

    let seen = ranges_served(&cache);
    let path = format!("/cas/{}", hex(&image.layers[0]));
    let chunk = |from: u64, to: u64| {
        (
            path.clone(),
            206,
            format!("bytes={from}-{to}"),
            to - from + 1,
        )
    };
    assert_eq!(
        seen,
        [
            chunk(0, 65_535),
            chunk(65_536, 131_071),
            chunk(131_072, 196_607),
            chunk(196_608, 204_799),
        ]
    );
    assert_eq!(cache.bytes_sent(), size as u64);
}

/// bazel-remote's HTTP port answers every GET with the whole blob: the chunks go on from
/// one answer, read once, instead of a GET per chunk that drops the bytes before it.
#[test]
fn a_chunked_upload_from_a_cache_that_ignores_ranges_reads_one_answer() {
    let registry = Registry::start();
    let cache = Cache::start_with(CacheOptions {
        ignore_ranges: true,
        ..CacheOptions::default()
    });
    let size = 200 * 1024;
    let image = Image::new(
        Types::Oci,
        ("linux", "amd64"),
        vec![pseudo_random(19, size)],
    );
    let full = image_layout(&image);
    let thin = thin_layout(&image, &full);
    cache.put_layout(full.path());
    let repo = registry.repo("whole/app");
    let run = push(&thin, &repo, &cache.url(), &["--chunk-size", "64KiB"]);
    assert_pushed(&run, &registry, &repo, "whole/app", &image);
    let seen = ranges_served(&cache);
    let path = format!("/cas/{}", hex(&image.layers[0]));
    assert_eq!(
        seen,
        [(path, 200, "bytes=0-65535".to_string(), size as u64)],
        "one whole answer served every chunk"
    );
}

/// The cache's answers: path, status, the `Range` asked and the bytes sent.
fn ranges_served(cache: &Cache) -> Vec<(String, u16, String, u64)> {
    cache
        .requests()
        .into_iter()
        .map(|a| (a.path, a.status, a.range, a.body_bytes))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The cache's credentials

fn basic_cache() -> Cache {
    Cache::start_with(CacheOptions::basic_auth(CACHE_USER, CACHE_PASSWORD))
}

fn cache_secrets() -> Vec<String> {
    vec![
        CACHE_PASSWORD.to_string(),
        CACHE_PASSWORD_IN_URL.to_string(),
        b64(format!("{CACHE_USER}:{CACHE_PASSWORD}")),
    ]
}

/// `http://USER:PASSWORD@127.0.0.1:PORT`.
fn url_with_credentials(port: u16) -> String {
    format!("http://{CACHE_USER}:{CACHE_PASSWORD_IN_URL}@127.0.0.1:{port}")
}

/// Asserts every request reached the cache with its credentials, and answered.
fn assert_authorized(cache: &Cache, count: usize) {
    let seen: Vec<(u16, String)> = cache
        .requests()
        .into_iter()
        .map(|a| (a.status, a.authorization))
        .collect();
    let expected = (200, basic_auth(CACHE_USER, CACHE_PASSWORD));
    assert_eq!(seen, vec![expected; count]);
}

#[test]
fn a_cache_refusing_no_credentials_is_exit_8_with_the_way_out() {
    let registry = Registry::start();
    let cache = basic_cache();
    let (image, _full, thin) = in_cache(&cache, 10);
    let run = push(&thin, &registry.repo("noauth/app"), &cache.url(), &[]);
    assert_refused(
        &run,
        &registry,
        "noauth/app",
        8,
        &[
            "from the remote cache: GET ",
            "answered 401 Unauthorized; give the cache's credentials in --remote-cache-header, a credential helper or ~/.netrc",
        ],
    );
    registry.assert_nothing_tagged("noauth/app", &[&image.manifest.digest]);
}

#[test]
fn credentials_in_the_url_serve_and_are_never_shown() {
    let registry = Registry::start();
    let cache = basic_cache();
    let (image, _full, thin) = in_cache(&cache, 11);
    let repo = registry.repo("url/app");
    let run = push(
        &thin,
        &repo,
        &url_with_credentials(cache.port),
        &["--verbose"],
    );
    assert_pushed(&run, &registry, &repo, "url/app", &image);
    assert_authorized(&cache, 3);
    run.assert_no_secrets(&cache_secrets());
    assert!(run.stderr.contains(&cache.url()), "{}", run.stderr);
}

#[test]
fn a_netrc_entry_for_the_cache_s_host_serves() {
    let registry = Registry::start();
    let cache = basic_cache();
    let (image, _full, thin) = in_cache(&cache, 12);
    let netrc = format!("machine 127.0.0.1\n  login {CACHE_USER}\n  password {CACHE_PASSWORD}\n");
    let sandbox = Sandbox::new();

    // ~/.netrc, HOME being the sandbox's.
    sandbox.write("home/.netrc", netrc.as_bytes());
    let repo = registry.repo("netrc/home");
    let extra = ["--verbose"];
    let run = push_in(
        &sandbox,
        thin.path(),
        &repo,
        Some(&cache.url()),
        &extra,
        &[],
        None,
    );
    assert_pushed(&run, &registry, &repo, "netrc/home", &image);
    run.assert_no_secrets(&cache_secrets());

    // $NETRC wins over ~/.netrc, which now holds a wrong password.
    let file = sandbox.write("elsewhere/netrc", netrc.as_bytes());
    sandbox.write(
        "home/.netrc",
        format!("machine 127.0.0.1 login {CACHE_USER} password wrong\n").as_bytes(),
    );
    let repo = registry.repo("netrc/env");
    let env = [("NETRC", utf8(&file))];
    let run = push_in(
        &sandbox,
        thin.path(),
        &repo,
        Some(&cache.url()),
        &[],
        &env,
        None,
    );
    assert_pushed(&run, &registry, &repo, "netrc/env", &image);
    // Both pushes fetched every layer (each repository lacked them), with the credentials.
    assert_authorized(&cache, 6);
}

#[test]
fn a_remote_cache_header_serves_and_is_never_shown() {
    let registry = Registry::start();
    let cache = basic_cache();
    let (image, _full, thin) = in_cache(&cache, 13);
    let header = format!("authorization={}", basic_auth(CACHE_USER, CACHE_PASSWORD));
    let repo = registry.repo("header/app");
    let run = push(
        &thin,
        &repo,
        &cache.url(),
        &["--remote-cache-header", &header, "--verbose"],
    );
    assert_pushed(&run, &registry, &repo, "header/app", &image);
    assert_authorized(&cache, 3);
    run.assert_no_secrets(&cache_secrets());
}

/// A Bazel credential helper in `sandbox` answering `Authorization: AUTHORIZATION` for the
/// cache's URL only (Bazel asks its helper with the URI it will send the credentials to), and
/// nothing for any other, the registry's included. Returns (its path, the log of
/// `ARGS<TAB>STDIN` lines).
fn cache_helper(
    sandbox: &Sandbox,
    cache: &Cache,
    authorization: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let headers = json!({"Authorization": [authorization]});
    sandbox.bazel_credential_helper_for("cache-helper", &headers, Some(&cache.url()))
}

#[test]
fn a_bazel_credential_helper_answering_for_the_cache_s_url_serves() {
    let registry = Registry::start();
    let cache = basic_cache();
    let (image, _full, thin) = in_cache(&cache, 14);
    let sandbox = Sandbox::new();
    let (helper, log) = cache_helper(&sandbox, &cache, &basic_auth(CACHE_USER, CACHE_PASSWORD));
    let repo = registry.repo("helper/app");
    let extra = ["--credential-helper", utf8(&helper), "--verbose"];
    let run = push_in(
        &sandbox,
        thin.path(),
        &repo,
        Some(&cache.url()),
        &extra,
        &[],
        None,
    );
    assert_pushed(&run, &registry, &repo, "helper/app", &image);
    assert_authorized(&cache, 3);
    run.assert_no_secrets(&cache_secrets());
    let mut uris = helper_uris(&log);
    uris.sort();
    let mut expected = vec![cache.url(), format!("https://{}/v2/", registry.host())];
    expected.sort();
    assert_eq!(
        uris, expected,
        "the helper is asked for the cache and the registry, once each"
    );
}

#[test]
fn the_url_s_credentials_win_over_an_authorization_header() {
    let registry = Registry::start();
    let cache = basic_cache();
    let (image, _full, thin) = in_cache(&cache, 27);
    let wrong = format!("authorization={}", basic_auth(CACHE_USER, "wrong"));
    let repo = registry.repo("first/url");
    let run = push(
        &thin,
        &repo,
        &url_with_credentials(cache.port),
        &["--remote-cache-header", &wrong],
    );
    assert_pushed(&run, &registry, &repo, "first/url", &image);
    assert_authorized(&cache, 3);
}

#[test]
fn an_authorization_header_wins_over_the_helper_and_netrc_which_are_not_asked() {
    let registry = Registry::start();
    let cache = basic_cache();
    let (image, _full, thin) = in_cache(&cache, 28);
    let sandbox = Sandbox::new();
    let (helper, log) = cache_helper(&sandbox, &cache, &basic_auth(CACHE_USER, "from-helper"));
    let netrc = format!("machine 127.0.0.1 login {CACHE_USER} password from-netrc\n");
    sandbox.write("home/.netrc", netrc.as_bytes());
    let header = format!("authorization={}", basic_auth(CACHE_USER, CACHE_PASSWORD));
    let repo = registry.repo("first/header");
    let extra = [
        "--remote-cache-header",
        &header,
        "--credential-helper",
        utf8(&helper),
    ];
    let run = push_in(
        &sandbox,
        thin.path(),
        &repo,
        Some(&cache.url()),
        &extra,
        &[],
        None,
    );
    assert_pushed(&run, &registry, &repo, "first/header", &image);
    assert_authorized(&cache, 3);
    // The helper still serves the registry, and only it.
    assert_eq!(
        helper_uris(&log),
        [format!("https://{}/v2/", registry.host())]
    );
}

#[test]
fn the_cache_s_credentials_do_not_follow_a_redirect_to_another_origin() {
    let registry = Registry::start();
    let cache = Cache::start();
    let (image, _full, thin) = in_cache(&cache, 29);
    let moved = &image.layers[0];
    let path = format!("/cas/{}", hex(moved));
    // Another origin, serving the same cache.
    let elsewhere = FaultProxy::start_to(cache.port, Vec::new());
    let redirect =
        Fault::status(307).with_header("Location", &format!("{}{path}", elsewhere.url()));
    let front = FaultProxy::start_to(cache.port, vec![Rule::every("GET", &path, redirect)]);
    let url = url_with_credentials(front.port());
    let api_key = "x-api-key=key-s3cret";
    let repo = registry.repo("moved/app");
    let run = push(&thin, &repo, &url, &["--remote-cache-header", api_key]);
    let mut secrets = cache_secrets();
    secrets.push("key-s3cret".to_string());
    run.assert_no_secrets(&secrets);
    // The credentials went to the cache's origin...
    let asked = front.matching("GET", &path);
    let sent = |name: &str| {
        asked
            .first()
            .and_then(|r| r.header(name))
            .map(str::to_string)
    };
    let basic = basic_auth(CACHE_USER, CACHE_PASSWORD);
    assert_eq!(sent("authorization").as_deref(), Some(basic.as_str()));
    assert_eq!(sent("x-api-key").as_deref(), Some("key-s3cret"));
    // ...and the redirect was not followed at all (as Bazel's HTTP cache client): the push fails before any tag,
    // having asked the front once (a 3xx is no reason to retry) and the other origin never.
    assert_refused(
        &run,
        &registry,
        "moved/app",
        8,
        &[&format!("GET {}{path} answered 307", front.url())],
    );
    assert_eq!(front.count("GET", &path), 1, "{}", front.describe());
    assert!(elsewhere.requests().is_empty(), "{}", elsewhere.describe());
}

/// A push as alice to an htpasswd registry behind a recording proxy, from a cache needing
/// credentials of its own (in the URL `cache_url` gives, or in `~/.netrc` with `netrc`): each
/// side gets its own credentials and never the other's.
fn assert_credentials_stay_apart(seed: u64, cache_url: impl Fn(&Cache) -> String, netrc: bool) {
    let registry = basic_registry();
    let front = FaultProxy::start(&registry, Vec::new());
    let cache = basic_cache();
    let (image, full) = sample(seed);
    let thin = thin_layout(&image, &full);
    cache.put_layout(full.path());
    let sandbox = Sandbox::new();
    if netrc {
        // The registry is on the same host, 127.0.0.1: the entry is still the cache's only.
        let entry = format!("machine 127.0.0.1 login {CACHE_USER} password {CACHE_PASSWORD}\n");
        sandbox.write("home/.netrc", entry.as_bytes());
    }
    let repo = front.repo("apart/app");
    let extra = ["--username", ALICE_USER, "--password-stdin", "--verbose"];
    let password = format!("{ALICE_PASSWORD}\n");
    let run = push_in(
        &sandbox,
        thin.path(),
        &repo,
        Some(&cache_url(&cache)),
        &extra,
        &[],
        Some(&password),
    );
    assert_pushed(&run, &registry, &repo, "apart/app", &image);
    run.assert_no_secrets(&cache_secrets());
    run.assert_no_secrets(&alice_secrets());

    assert_authorized(&cache, 3);
    let alice = basic_auth(ALICE_USER, ALICE_PASSWORD);
    let seen = front.requests();
    assert!(
        seen.iter()
            .any(|r| r.header("authorization") == Some(alice.as_str())),
        "the registry never got alice's credentials:\n{}",
        front.describe()
    );
    for request in &seen {
        for (name, value) in &request.headers {
            for secret in cache_secrets() {
                assert!(
                    !value.contains(&secret),
                    "the registry got the cache's credentials in {name} of {} {}",
                    request.method,
                    request.path()
                );
            }
        }
    }
}

#[test]
fn the_cache_s_url_credentials_and_the_registry_s_stay_apart() {
    assert_credentials_stay_apart(15, |cache| url_with_credentials(cache.port), false);
}

#[test]
fn a_netrc_entry_for_the_cache_s_host_is_not_sent_to_a_registry_on_the_same_host() {
    assert_credentials_stay_apart(16, Cache::url, true);
}

#[test]
fn a_cache_holding_other_bytes_under_a_digest_fails_the_push() {
    let registry = Registry::start();
    let cache = Cache::start();
    let (image, _full, thin) = in_cache(&cache, 30);
    let stored = |bytes: &[u8]| cache.put_as(hex(&image.layers[0]), bytes);

    // Of another size: the cache's Content-Length says so before a byte goes up.
    stored(&pseudo_random(30_000, LAYER + 7));
    let run = push(&thin, &registry.repo("other/size"), &cache.url(), &[]);
    let expected = format!(
        "fetching blob {} from the remote cache: {}/cas/{} answered {} bytes, where the image's descriptor says {LAYER} bytes; the cache holds other bytes under this digest",
        image.layers[0].digest,
        cache.url(),
        hex(&image.layers[0]),
        LAYER + 7
    );
    assert_refused(&run, &registry, "other/size", 8, &[&expected]);

    // Of the same size: the registry finds they do not hash to the digest.
    stored(&pseudo_random(30_001, LAYER));
    let run = push(&thin, &registry.repo("other/bytes"), &cache.url(), &[]);
    assert_refused(
        &run,
        &registry,
        "other/bytes",
        8,
        &[&format!(
            "blob {} is corrupt in the remote cache: its bytes there do not hash to its digest (the registry refused them); delete the cache's entry",
            image.layers[0].digest
        )],
    );
    let head = registry.head(&format!("/v2/other/bytes/blobs/{}", image.layers[0].digest));
    assert_eq!(head.status, 404, "the registry took the wrong bytes");
}

// ---------------------------------------------------------------------------------------------
// Bad input

/// A repository nothing listens on: these runs fail before any request.
const NOWHERE: &str = "127.0.0.1:1/app";

#[test]
fn a_grpc_cache_is_refused_with_the_way_out_and_without_its_password() {
    let (image, full) = sample(17);
    let thin = thin_layout(&image, &full);
    for (url, shown) in [
        ("grpcs://x", "grpcs://x"),
        (
            "grpc://bazel:pw-s3cret@cache.example.com:9092",
            "grpc://cache.example.com:9092",
        ),
    ] {
        let run = push(&thin, NOWHERE, url, &[]);
        assert_eq!(run.code, 1, "{url}: {}", run.stderr);
        assert!(
            run.error().starts_with(&format!(
                "--remote-cache {shown}: gRPC remote caches are not supported yet; give the cache's HTTP endpoint"
            )),
            "{}",
            run.stderr
        );
        assert!(
            run.error().contains("docs/remote-cache.md"),
            "{}",
            run.stderr
        );
        run.assert_no_secrets(&["pw-s3cret"]);
    }
}

#[test]
fn a_thin_layout_without_a_remote_cache_is_refused_before_any_request() {
    let registry = Registry::start();
    let front = FaultProxy::start(&registry, Vec::new());
    let (image, full) = sample(18);
    let thin = thin_layout(&image, &full);
    let run = push_in(
        &Sandbox::new(),
        thin.path(),
        &front.repo("thin/app"),
        None,
        &[],
        &[],
        None,
    );
    assert_refused(
        &run,
        &registry,
        "thin/app",
        1,
        &[
            &format!(
                "is a thin layout: 3 blob(s), {} first, are left to the remote cache",
                image.layers[0].digest
            ),
            "give --remote-cache URL",
        ],
    );
    assert!(front.requests().is_empty(), "{}", front.describe());
}

#[test]
fn write_thin_layout_goes_with_verify() {
    let (_image, full) = sample(19);
    let out = TempDir::new().expect("temp dir");
    let thin = out.path().join("thin");
    let args = [
        "--layout",
        utf8(full.path()),
        "-r",
        NOWHERE,
        "--write-thin-layout",
        utf8(&thin),
    ];
    let run = oci_push_with(&args, &[], None);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.error(),
        "--write-thin-layout DIR goes with --verify (the build-time check writes it)"
    );
    assert!(!thin.exists(), "the thin layout was written");
}

#[test]
fn a_remote_cache_header_must_be_name_equals_value() {
    let (image, full) = sample(20);
    let thin = thin_layout(&image, &full);
    let run = push(
        &thin,
        NOWHERE,
        "http://127.0.0.1:1",
        &["--remote-cache-header", "novalue"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.error(),
        "--remote-cache-header: expected NAME=VALUE with a header name before the ="
    );
    let broken = "x-token=pw-s3cret\nx-evil: 1";
    let run = push(
        &thin,
        NOWHERE,
        "http://127.0.0.1:1",
        &["--remote-cache-header", broken],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.error()
            .contains("x-token=...: the value holds a line break"),
        "{}",
        run.stderr
    );
    run.assert_no_secrets(&["pw-s3cret"]);
}

#[test]
fn a_thin_list_whose_size_differs_from_the_descriptor_is_invalid() {
    let (image, full) = sample(21);
    let thin = thin_layout(&image, &full);
    let list = thin.path().join("oci-push-thin.json");
    let layer = &image.layers[2];
    let omitted: Vec<Value> = image
        .layers
        .iter()
        .map(|l| {
            let size = l.bytes.len() + usize::from(l.digest == layer.digest);
            json!({"digest": l.digest, "size": size})
        })
        .collect();
    std::fs::write(&list, json!({ "omitted": omitted }).to_string()).expect("rewrite the list");
    let expected = format!(
        "blob {} is {} bytes in {}, its descriptor says {LAYER}; rebuild the image",
        layer.digest,
        LAYER + 1,
        list.display()
    );
    let run = push(&thin, NOWHERE, "http://127.0.0.1:1", &[]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert_eq!(run.error(), expected);
    let run = oci_push_with(&["--verify", "--layout", utf8(thin.path())], &[], None);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert_eq!(run.error(), expected);
}

#[test]
fn a_thin_layout_verifies_without_its_layers() {
    let (image, full) = sample(22);
    let thin = thin_layout(&image, &full);
    let run = oci_push_with(&["--verify", "--layout", utf8(thin.path())], &[], None).ok();
    assert_eq!(run.stdout, format!("{}\n", image.manifest.digest));
    assert!(
        run.stderr.contains(&format!(
            "verified 1 blob(s) and 1 manifest(s) in {} (3 left to the remote cache)",
            thin.path().display()
        )),
        "{}",
        run.stderr
    );
    // A thin layout is no source of another.
    let again = TempDir::new().expect("temp dir");
    let args = [
        "--verify",
        "--layout",
        utf8(thin.path()),
        "--write-thin-layout",
        utf8(again.path()),
    ];
    let run = oci_push_with(&args, &[], None);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.error().contains("is a thin layout already"),
        "{}",
        run.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// A failing cache

/// The cache behind a fault proxy with `rules` for the GETs of `blob`.
fn faulty_cache(cache: &Cache, blob: &Blob, faults: Vec<(usize, Fault)>) -> FaultProxy {
    let path = format!("/cas/{}", hex(blob));
    let rules = faults
        .into_iter()
        .map(|(nth, fault)| match nth {
            0 => Rule::every("GET", &path, fault),
            n => Rule::nth(n, "GET", &path, fault),
        })
        .collect();
    FaultProxy::start_to(cache.port, rules)
}

#[test]
fn a_cache_answering_500_once_is_retried() {
    let registry = Registry::start();
    let cache = Cache::start();
    let (image, _full, thin) = in_cache(&cache, 23);
    let failing = &image.layers[0];
    let front = faulty_cache(&cache, failing, vec![(1, Fault::status(500))]);
    let repo = registry.repo("retry500/app");
    let run = push(&thin, &repo, &front.url(), &[]);
    assert_pushed(&run, &registry, &repo, "retry500/app", &image);
    let path = format!("/cas/{}", hex(failing));
    assert_eq!(front.count("GET", &path), 2, "{}", front.describe());
    assert_eq!(fetches(&cache, &image.layers), [1, 1, 1]);
    let retries = retry_lines(&run.stderr);
    assert_eq!(retries.len(), 1, "{}", run.stderr);
    assert!(retries[0].contains(&failing.digest), "{}", retries[0]);
    assert!(retries[0].contains("answered 500"), "{}", retries[0]);
}

/// 501 is an answer, as from a registry: not retried (the one rule of `is_transient`).
#[test]
fn a_cache_answering_501_is_not_retried() {
    let registry = Registry::start();
    let cache = Cache::start();
    let (image, _full, thin) = in_cache(&cache, 31);
    let failing = &image.layers[0];
    let front = faulty_cache(&cache, failing, vec![(0, Fault::status(501))]);
    let repo = registry.repo("retry501/app");
    let run = push(&thin, &repo, &front.url(), &[]);
    assert_refused(
        &run,
        &registry,
        "retry501/app",
        8,
        &["answered 501 Not Implemented"],
    );
    let path = format!("/cas/{}", hex(failing));
    assert_eq!(front.count("GET", &path), 1, "{}", front.describe());
    assert!(retry_lines(&run.stderr).is_empty(), "{}", run.stderr);
}

#[test]
fn a_cache_answer_cut_short_is_retried() {
    let registry = Registry::start();
    let cache = Cache::start();
    let (image, _full, thin) = in_cache(&cache, 24);
    let failing = &image.layers[2];
    let front = faulty_cache(&cache, failing, vec![(1, Fault::Truncate)]);
    let repo = registry.repo("cut/app");
    let run = push(&thin, &repo, &front.url(), &[]);
    assert_pushed(&run, &registry, &repo, "cut/app", &image);
    // The proxy read each answer whole from nginx, and cut the first one short.
    assert_eq!(fetches(&cache, &image.layers), [1, 1, 2]);
    assert_eq!(retry_lines(&run.stderr).len(), 1, "{}", run.stderr);
}

#[test]
fn a_cache_answer_cut_short_every_time_fails_with_exit_8() {
    let registry = Registry::start();
    let cache = Cache::start();
    let (image, _full, thin) = in_cache(&cache, 25);
    let failing = &image.layers[1];
    let front = faulty_cache(&cache, failing, vec![(0, Fault::Truncate)]);
    let run = push(
        &thin,
        &registry.repo("cutcut/app"),
        &front.url(),
        &["--retries", "1"],
    );
    assert_refused(
        &run,
        &registry,
        "cutcut/app",
        8,
        &[
            &format!(
                "fetching blob {} from the remote cache: reading the answer failed",
                failing.digest
            ),
            "at byte 5120 of 10240",
        ],
    );
    registry.assert_nothing_tagged("cutcut/app", &[&image.manifest.digest]);
    let path = format!("/cas/{}", hex(failing));
    assert_eq!(front.count("GET", &path), 2, "{}", front.describe());
}

// ---------------------------------------------------------------------------------------------
// Dry runs

#[test]
fn a_dry_run_of_a_thin_layout_fetches_nothing() {
    let registry = Registry::start();
    let cache = Cache::start();
    let (image, _full, thin) = in_cache(&cache, 26);
    let repo = registry.repo("dry/app");
    let expected = format!("{repo}@{}", image.manifest.digest);

    let run = push_in(
        &Sandbox::new(),
        thin.path(),
        &repo,
        None,
        &["--dry-run"],
        &[],
        None,
    )
    .ok();
    assert_eq!(run.last_line(), expected);
    let run = push(
        &thin,
        &repo,
        &cache.url(),
        &["--dry-run", "--format", "json"],
    )
    .ok();
    let json = run.json();
    assert_eq!(json["dryRun"], true);
    assert_eq!(json["digest"], image.manifest.digest.as_str());

    assert_eq!(cache.requests(), [], "a dry run asked the cache");
    registry.assert_nothing_tagged("dry/app", &[&image.manifest.digest]);
    for blob in image.blobs() {
        let head = registry.head(&format!("/v2/dry/app/blobs/{}", blob.digest));
        assert_eq!(head.status, 404, "a dry run uploaded {}", blob.digest);
    }
}

#[test]
fn a_thin_list_past_its_bound_is_refused() {
    let (image, full) = sample(23);
    let thin = thin_layout(&image, &full);
    let list = thin.path().join("oci-push-thin.json");
    let mut text = std::fs::read(&list).expect("the thin list");
    text.resize(16 * 1024 * 1024 + 1, b' ');
    std::fs::write(&list, text).expect("grow the list");
    let run = oci_push_with(&["--verify", "--layout", utf8(thin.path())], &[], None);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.error().starts_with(&format!(
            "cannot read {} (larger than 16.0 MiB",
            list.display()
        )),
        "{}",
        run.stderr
    );
}

/// Bazel's cache keys blobs by SHA-256 only: a layer of another algorithm stays in the thin
/// layout, and a thin list that leaves one to the cache is refused when it is read.
#[test]
fn a_sha512_layer_stays_in_the_thin_layout() {
    use sha2::Digest as _;
    let bytes = pseudo_random(24, LAYER);
    let hex512 = format!("{:x}", sha2::Sha512::digest(&bytes));
    let mut layer = Blob::new(OCI_LAYER, bytes);
    layer.digest = format!("sha512:{hex512}");
    let image = Image::new(
        Types::Oci,
        ("linux", "amd64"),
        vec![pseudo_random(25, LAYER)],
    );
    let config = &image.config;
    let manifest = Blob::new(
        OCI_MANIFEST,
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": [layer.descriptor(), image.layers[0].descriptor()],
        }))
        .expect("json"),
    );
    let full = write_layout(&[&manifest], &[config, &image.layers[0]]);
    let dir512 = full.path().join("blobs/sha512");
    std::fs::create_dir_all(&dir512).expect("blobs/sha512");
    std::fs::write(dir512.join(&hex512), &layer.bytes).expect("the sha512 layer");

    let (thin, _) = write_thin(full.path());
    assert_eq!(
        std::fs::read(thin.path().join("blobs/sha512").join(&hex512)).expect("kept"),
        layer.bytes
    );
    let list = thin.path().join("oci-push-thin.json");
    let listed: Value = serde_json::from_slice(&std::fs::read(&list).expect("list")).expect("json");
    assert_eq!(
        listed,
        json!({"omitted": [{"digest": image.layers[0].digest, "size": LAYER}]})
    );

    std::fs::remove_file(thin.path().join("blobs/sha512").join(&hex512)).expect("remove");
    let omitted = json!({"omitted": [
        {"digest": layer.digest, "size": LAYER},
        {"digest": image.layers[0].digest, "size": LAYER},
    ]});
    std::fs::write(&list, omitted.to_string()).expect("rewrite the list");
    let run = oci_push_with(&["--verify", "--layout", utf8(thin.path())], &[], None);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert_eq!(
        run.error(),
        format!(
            "blob {} is left to the remote cache in {}, which keeps SHA-256 blobs only; rebuild the image",
            layer.digest,
            list.display()
        )
    );
}
