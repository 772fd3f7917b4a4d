//! Far from the registry a push costs round trips: these tests count the requests a push sends
//! (through a recording front of the real registry) and check the ones that must not wait for
//! each other do not, and that `--format json` reports what crossed the wire.

mod common;

use std::time::Duration;

use common::faults::*;
use common::*;

fn push(layout: &tempfile::TempDir, repo: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "--layout".to_string(),
        layout_arg(layout),
        "-r".to_string(),
        repo.to_string(),
        "--format".to_string(),
        "json".to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    // In the sandbox: no proxy or docker config of the machine's comes between.
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    oci_push_with(&args, &[], None)
}

/// A push of no tag as alice, with `password` on stdin.
fn push_as_alice_without_a_tag(layout: &tempfile::TempDir, repo: &str, password: &str) -> Run {
    let layout = layout_arg(layout);
    let args = [
        "--layout",
        &layout,
        "-r",
        repo,
        "--username",
        pushing::ALICE_USER,
        "--password-stdin",
    ];
    oci_push_with(&args, &[], Some(&format!("{password}\n")))
}

fn wire(run: &Run) -> (u64, u64, u64) {
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("one JSON object");
    let wire = &json["wire"];
    let number = |key: &str| {
        wire[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key}: {json}"))
    };
    (
        number("requests"),
        number("connections"),
        number("roundTrips"),
    )
}

fn requests(proxy: &FaultProxy) -> Vec<String> {
    proxy
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.path()))
        .collect()
}

#[test]
fn an_image_the_registry_has_with_its_tag_is_one_request() {
    let registry = Registry::start();
    let image = Image::sized(Types::Oci, 61, 3, 2000);
    let layout = image_layout(&image);
    push(&layout, &registry.repo("app"), &["-t", "v1"]).ok();

    let proxy = FaultProxy::start(&registry, Vec::new());
    let run = push(&layout, &proxy.repo("app"), &["-t", "v1"]).ok();
    assert_eq!(requests(&proxy), ["HEAD /v2/app/manifests/v1"]);
    // One plain-HTTP connection, then the request on it.
    assert_eq!(wire(&run), (1, 1, 2));
    assert_eq!(proxy.connections(), 1);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["imageExisted"], true);
    assert_eq!(json["tags"][0]["outcome"], "unchanged");
    registry.assert_manifest("app", "v1", &image.manifest);
}

#[test]
fn a_new_image_with_one_tag_checks_the_image_beside_its_blobs_and_lists_no_tags() {
    let registry = Registry::start();
    let image = Image::sized(Types::Oci, 62, 2, 2000);
    let layout = image_layout(&image);
    let proxy = FaultProxy::start(&registry, Vec::new());
    let run = push(&layout, &proxy.repo("app"), &["-t", "v1"]).ok();
    let seen = requests(&proxy);
    let blobs = image.blobs().len();
    let count = |m: &str, p: &str| proxy.count(m, p);
    assert_eq!(seen[0], "HEAD /v2/app/manifests/v1", "{seen:#?}");
    assert_eq!(count("HEAD", &image.manifest.digest), 1, "{seen:#?}");
    assert_eq!(count("GET", "/tags/list"), 0, "{seen:#?}");
    assert_eq!(count("HEAD", "/blobs/"), blobs, "{seen:#?}");
    assert_eq!(count("POST", "/blobs/uploads/"), blobs, "{seen:#?}");
    assert_eq!(count("PUT", "/blobs/uploads/"), blobs, "{seen:#?}");
    assert_eq!(count("PUT", "/manifests/"), 2, "{seen:#?}");
    let (requests, _, round_trips) = wire(&run);
    assert_eq!(requests as usize, seen.len());
    // Connect, HEAD of the tag; then at once: connect, HEAD, POST, PUT; the manifest's PUT
    // (on a new connection when none was idle at that moment: one more), the tag's PUT. With
    // the image's HEAD before the blobs' it would be 10 or 11.
    assert!(round_trips <= 9, "{round_trips} round trips");
    registry.assert_manifest("app", "v1", &image.manifest);
    for blob in image.blobs() {
        registry.assert_blob("app", blob);
    }
}

#[test]
fn a_platform_manifest_goes_up_once_its_own_blobs_are_in() {
    let registry = Registry::start();
    let fast = Image::new(
        Types::Oci,
        ("linux", "amd64"),
        vec![pseudo_random(63, 3000)],
    );
    let slow = Image::new(
        Types::Oci,
        ("linux", "arm64"),
        vec![pseudo_random(64, 3000)],
    );
    let slow_layer = slow.layers[0].digest.clone();
    let fast_manifest = fast.manifest.digest.clone();
    let index = Index::new(
        Types::Oci,
        vec![(fast, ("linux", "amd64")), (slow, ("linux", "arm64"))],
    );
    let layout = index_layout(&index);
    // The arm64 layer's existence check takes a second: the amd64 manifest does not wait.
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::nth(
            1,
            "HEAD",
            &slow_layer,
            Fault::status(404).delayed(Duration::from_secs(1)),
        )],
    );
    push(&layout, &proxy.repo("multi"), &["-j", "4"]).ok();
    let seen = proxy.requests();
    let at = |method: &str, path: &str| {
        seen.iter()
            .find(|r| r.is(method, path))
            .map(|r| r.at)
            .unwrap_or_else(|| panic!("no {method} {path}: {:#?}", requests(&proxy)))
    };
    // The upload's PUT names the digest in its query, its colon maybe percent-encoded.
    let slow_hex = slow_layer.trim_start_matches("sha256:");
    let slow_upload = seen
        .iter()
        .find(|r| r.is("PUT", "/blobs/uploads/") && r.target.contains(slow_hex))
        .map(|r| r.at)
        .expect("the slow layer's upload");
    assert!(
        at("PUT", &format!("/manifests/{fast_manifest}")) < slow_upload,
        "the amd64 manifest waited for the arm64 layer: {:#?}",
        requests(&proxy)
    );
    assert!(at("PUT", &format!("/manifests/{}", index.manifest.digest)) > slow_upload);
    registry.assert_manifest("multi", &index.manifest.digest, &index.manifest);
    for image in &index.images {
        registry.assert_manifest("multi", &image.manifest.digest, &image.manifest);
    }
}

/// Pushes a 3-blob image to a TLS registry under a name that is not loopback (--resolve),
/// whose answers come 300 ms late, and checks that the uploads' TCP and TLS handshakes were
/// made while the first request waited: the link accepted every connection at once, and the
/// push counts 7 or 8 round trips, not 9 or 10.
fn connections_are_opened_ahead(registry: &Registry, ca: &str, extra: &[&str]) {
    let delay = Duration::from_millis(300);
    let link = servers::SlowLink::start(registry.host().parse().unwrap(), delay);
    let image = Image::sized(Types::Oci, 65, 2, 2000);
    let layout = image_layout(&image);
    let name = format!("registry.test:{}", link.port());
    let pin = format!("{name}:127.0.0.1");
    let mut args = vec!["--resolve", &pin, "--ca-file", ca];
    args.extend(extra);
    let run = push(&layout, &format!("{name}/app"), &args).ok();
    // The first request's connection, and one for each step after it that runs at once (the
    // three blobs and the top manifest's check), all opened before the first answer came.
    let accepted = link.accepted();
    assert!(accepted.len() >= 4, "{}", run.stdout);
    assert!(
        accepted[3] - accepted[0] < delay / 2,
        "the uploads' connections waited for the first answer: {:?}",
        accepted
            .iter()
            .map(|t| *t - accepted[0])
            .collect::<Vec<_>>()
    );
    let (_, connections, round_trips) = wire(&run);
    assert_eq!(connections as usize, accepted.len(), "{}", run.stdout);
    // TCP, TLS, HEAD of the image; then HEAD, POST, PUT of each blob at once; the manifest (on
    // a new connection if none was idle at that moment: one more). Without connections opened
    // ahead: 9 or 10.
    assert!(round_trips <= 8, "{}", run.stdout);
    registry.assert_manifest("app", &image.manifest.digest, &image.manifest);
    for blob in image.blobs() {
        registry.assert_blob("app", blob);
    }
}

#[test]
fn the_uploads_connections_are_opened_while_the_first_request_is_answered() {
    let tls = Tls::new(&["registry.test"]);
    let ca = tls.ca.display().to_string();
    let registry = Registry::start_with(RegistryOptions::tls(tls));
    connections_are_opened_ahead(&registry, &ca, &[]);
}

#[test]
fn connections_opened_ahead_survive_session_tickets_sent_after_the_handshake() {
    // Asking for a client certificate, Go's TLS server sends its session tickets after the
    // handshake (as OpenSSL and nginx always do): unread, they would make a connection
    // opened ahead look broken when it is used.
    let tls = Tls::new(&["registry.test"]);
    let ca = tls.ca.display().to_string();
    let (cert, key) = tls.client("alice");
    let registry = Registry::start_with(RegistryOptions {
        mutual_tls: true,
        ..RegistryOptions::tls(tls)
    });
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    connections_are_opened_ahead(&registry, &ca, &["--cert-file", &cert, "--key-file", &key]);
}

#[test]
fn a_wrong_password_is_tried_once_not_once_per_upload() {
    let registry = Registry::start_with(RegistryOptions::htpasswd(
        pushing::ALICE_USER,
        pushing::ALICE_PASSWORD,
    ));
    let image = Image::sized(Types::Oci, 67, 4, 2000);
    let layout = image_layout(&image);
    let proxy = FaultProxy::start(&registry, Vec::new());
    let repo = proxy.repo("app");
    let run = push_as_alice_without_a_tag(&layout, &repo, "wrong");
    assert_eq!(run.code, 2, "{}", run.stderr);
    let with_password = proxy
        .requests()
        .iter()
        .filter(|r| r.header("authorization").is_some())
        .count();
    assert_eq!(with_password, 1, "{:#?}", requests(&proxy));
}

#[test]
fn without_a_tag_the_image_is_asked_again_beside_the_blobs_once_the_token_is_there() {
    let server = TokenServer::start(Policy::default());
    let registry = Registry::start_with(RegistryOptions::token(server.config()));
    let image = Image::sized(Types::Oci, 66, 2, 2000);
    let layout = image_layout(&image);
    // The image's HEAD with the token is answered a second late: the blobs do not wait for it.
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::nth(
            2,
            "HEAD",
            &image.manifest.digest,
            Fault::status(404).delayed(Duration::from_secs(1)),
        )],
    );
    let repo = proxy.repo("app");
    push_as_alice_without_a_tag(&layout, &repo, pushing::ALICE_PASSWORD).ok();
    let seen = proxy.requests();
    let heads: Vec<_> = seen
        .iter()
        .filter(|r| r.is("HEAD", &image.manifest.digest))
        .collect();
    assert_eq!(heads.len(), 2, "{:#?}", requests(&proxy));
    assert_eq!(
        heads[0].answered,
        Some(401),
        "the first learns the challenge"
    );
    let upload = seen
        .iter()
        .find(|r| r.is("POST", "/blobs/uploads/"))
        .expect("an upload session");
    let start = seen[0].at;
    let timeline: Vec<String> = seen
        .iter()
        .map(|r| {
            format!(
                "{:>5} ms {} {}",
                (r.at - start).as_millis(),
                r.method,
                r.path()
            )
        })
        .collect();
    assert!(
        upload.at < heads[1].at + Duration::from_millis(500),
        "the uploads waited for the image's HEAD: {timeline:#?}"
    );
    registry.assert_manifest("app", &image.manifest.digest, &image.manifest);
    for blob in image.blobs() {
        registry.assert_blob("app", blob);
    }
}
