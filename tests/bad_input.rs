//! Bad input: each case has its exit code and message, and leaves nothing in the registry.

mod common;

use common::*;
use std::path::Path;

/// Pushes `layout` with the tag `latest` to a fresh registry and checks that it failed with
/// `code` and an error line containing `message`, and, read back from the registry, that the
/// repository has no tag and none of `tops` (the top manifests the test knows) is there.
fn refused(layout: &Path, tops: &[&str], code: i32, message: &str) -> Run {
    refused_with(layout, tops, &["-t", "latest"], code, message)
}

fn refused_with(layout: &Path, tops: &[&str], extra: &[&str], code: i32, message: &str) -> Run {
    let registry = Registry::start();
    let repo = registry.repo("app");
    let mut args = vec!["--layout", layout.to_str().unwrap(), "-r", repo.as_str()];
    args.extend_from_slice(extra);
    let run = oci_push(&args);
    assert_eq!(run.code, code, "exit code; stderr:\n{}", run.stderr);
    assert!(
        run.error().contains(message),
        "expected '{message}' in:\n{}",
        run.stderr
    );
    assert_eq!(
        run.stderr
            .lines()
            .filter(|l| l.starts_with("oci-push: error:"))
            .count(),
        1
    );
    assert!(run.stdout.is_empty(), "stdout: {}", run.stdout);
    assert!(
        !run.stderr
            .lines()
            .any(|l| l.trim_start().starts_with("manifest")),
        "a manifest was written:\n{}",
        run.stderr
    );
    registry.assert_nothing_tagged("app", tops);
    run
}

fn good_image() -> (Image, tempfile::TempDir) {
    let image = Image::sized(Types::Oci, 3, 2, 2048);
    let layout = image_layout(&image);
    (image, layout)
}

#[test]
fn repository_with_tag_or_digest() {
    let (_, layout) = good_image();
    let run = oci_push([
        "--layout",
        layout.path().to_str().unwrap(),
        "-r",
        "localhost:5000/app:v1",
    ]);
    assert_eq!(run.code, 4);
    assert_eq!(
        run.error(),
        "invalid repository 'localhost:5000/app:v1': it has a tag; pass tags with --tag or the tags file, not in the repository"
    );
    let run = oci_push([
        "--layout",
        layout.path().to_str().unwrap(),
        "-r",
        "localhost:5000/app@sha256:abc",
    ]);
    assert_eq!(run.code, 4);
    assert!(run.error().contains("it has a digest"), "{}", run.stderr);
    let run = oci_push([
        "--layout",
        layout.path().to_str().unwrap(),
        "-r",
        "localhost:5000/App",
    ]);
    assert_eq!(run.code, 4);
    assert!(run.error().contains("lower case"), "{}", run.stderr);
}

#[test]
fn invalid_tag_in_the_tags_file() {
    let (image, layout) = good_image();
    let top: &[&str] = &[&image.manifest.digest];
    let work = tempfile::TempDir::new().unwrap();
    let tags = write_file(work.path(), "tags", b"good\nbad:tag\n");
    let run = refused_with(
        layout.path(),
        top,
        &["--tags-file", tags.to_str().unwrap()],
        4,
        "",
    );
    assert_eq!(
        run.error(),
        format!(
            "{}:2: invalid tag 'bad:tag': it has the character ':'; tags use only A-Z a-z 0-9 _ . -",
            tags.display()
        )
    );
    let long = "a".repeat(129);
    let run = refused_with(layout.path(), top, &["-t", "ok", "-t", &long], 4, "");
    assert_eq!(
        run.error(),
        format!("invalid tag '{long}': it is 129 characters long; tags have at most 128")
    );
}

#[test]
fn usage_errors_exit_1() {
    let run = oci_push(["--layout", "x"]);
    assert_eq!(run.code, 1);
    assert!(run.error().contains("--repository REPO is required"));
    let run = oci_push(["--nope"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.error(), "invalid option '--nope'; see oci-push --help");
    let run = oci_push(["--resolve", "registry.test:443:registry.test"]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.error(),
        "--resolve registry.test:443:registry.test: not an IP address; expected \
         HOST:PORT:ADDRESS, as in registry.example:443:192.0.2.7"
    );
}

#[test]
fn missing_oci_layout_and_index() {
    let (image, layout) = good_image();
    let top: &[&str] = &[&image.manifest.digest];
    std::fs::remove_file(layout.path().join("oci-layout")).unwrap();
    refused(layout.path(), top, 4, "is not an OCI image layout");

    let (_, layout) = good_image();
    std::fs::remove_file(layout.path().join("index.json")).unwrap();
    refused(layout.path(), top, 4, "cannot read");

    let (_, layout) = good_image();
    std::fs::write(
        layout.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"2.0.0"}"#,
    )
    .unwrap();
    refused(
        layout.path(),
        top,
        4,
        "has imageLayoutVersion 2.0.0; oci-push reads version 1.0.0",
    );

    refused(
        Path::new("/nonexistent/layout"),
        &[],
        4,
        "no such directory",
    );
}

#[test]
fn index_json_with_zero_or_two_manifests() {
    let a = Image::sized(Types::Oci, 4, 1, 100);
    let b = Image::sized(Types::Oci, 5, 1, 100);
    let mut blobs = a.blobs();
    blobs.extend(b.blobs());
    blobs.extend([&a.manifest, &b.manifest]);
    let manifests: &[&str] = &[&a.manifest.digest, &b.manifest.digest];
    let none = write_layout(&[], &blobs);
    refused(none.path(), manifests, 4, "lists no manifest");
    let two = write_layout(&[&a.manifest, &b.manifest], &blobs);
    let run = refused(two.path(), manifests, 4, "lists 2 manifests");
    assert!(run.error().contains(&a.manifest.digest) && run.error().contains(&b.manifest.digest));
}

#[test]
fn missing_blob() {
    let (image, layout) = good_image();
    let path = blob_path(layout.path(), &image.layers[0]);
    std::fs::remove_file(&path).unwrap();
    let run = refused(layout.path(), &[&image.manifest.digest], 4, "is missing");
    assert_eq!(
        run.error(),
        format!(
            "blob {} is missing: expected {}; the layout is incomplete, rebuild the image",
            image.layers[0].digest,
            path.display()
        )
    );
}

#[test]
fn blob_of_the_wrong_size() {
    let (image, layout) = good_image();
    let path = blob_path(layout.path(), &image.layers[1]);
    std::fs::write(&path, b"short").unwrap();
    refused(
        layout.path(),
        &[&image.manifest.digest],
        4,
        &format!(
            "blob {} has the wrong size: {} is 5 bytes, its descriptor says 2048",
            image.layers[1].digest,
            path.display()
        ),
    );
}

#[test]
fn corrupt_blob_is_refused_and_nothing_is_tagged() {
    let (image, layout) = good_image();
    let layer = &image.layers[1];
    let path = blob_path(layout.path(), layer);
    let mut bytes = layer.bytes.clone();
    bytes[0] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let run = refused(layout.path(), &[&image.manifest.digest], 4, "");
    assert_eq!(
        run.error(),
        format!(
            "blob {} is corrupt: the bytes of {} do not hash to its digest (the registry refused them); rebuild the image",
            layer.digest,
            path.display()
        )
    );
}

#[test]
fn corrupt_manifest_is_found_before_any_request() {
    let (image, layout) = good_image();
    let path = blob_path(layout.path(), &image.manifest);
    let mut bytes = image.manifest.bytes.clone();
    let last = bytes.len() - 2;
    bytes[last] = b' ';
    let corrupt = sha256(&bytes);
    std::fs::write(&path, bytes).unwrap();
    refused(
        layout.path(),
        &[&image.manifest.digest, &corrupt],
        4,
        &format!(
            "blob {} is corrupt: {} hashes to",
            image.manifest.digest,
            path.display()
        ),
    );
}

#[test]
fn malformed_manifest_json() {
    let garbage = Blob::new(
        OCI_MANIFEST,
        b"{\"schemaVersion\": 2, \"layers\": 7}".to_vec(),
    );
    let layout = write_layout(&[&garbage], &[&garbage]);
    refused(
        layout.path(),
        &[&garbage.digest],
        4,
        &format!("manifest {} (", garbage.digest),
    );
}

/// A push of `layout` to `127.0.0.1:PORT/app` that does not retry.
fn push_once_to(layout: &tempfile::TempDir, port: u16) -> Run {
    oci_push([
        "--layout",
        layout.path().to_str().unwrap(),
        "-r",
        &format!("127.0.0.1:{port}/app"),
        "--retries",
        "0",
    ])
}

#[test]
fn unreachable_registry_exits_3() {
    let (_, layout) = good_image();
    let port = free_port();
    let run = push_once_to(&layout, port);
    assert_eq!(run.code, 3, "{}", run.stderr);
    // The first request is the question whether the image is there already.
    assert!(
        run.error().starts_with("checking manifest sha256:"),
        "{}",
        run.stderr
    );
    assert!(
        run.error().contains(&format!(
            ": HEAD http://127.0.0.1:{port}/v2/app/manifests/sha256:"
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.error()
            .ends_with("(is the registry running and reachable?)"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_web_server_instead_of_a_registry_is_named_as_such() {
    let (_, layout) = good_image();
    let server = servers::Server::start(servers::bind_loopback(), |mut stream| {
        if servers::accept(&mut stream, true).is_some() {
            let page = b"<html><body>Not Found</body></html>";
            let _ = servers::respond(&mut stream, 404, &[("Content-Type", "text/html")], page);
        }
    });
    let port = server.port();
    let run = push_once_to(&layout, port);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.error().contains(&format!(
            ": POST http://127.0.0.1:{port}/v2/app/blobs/uploads/ answered 404 Not Found: \
             <html><body>Not Found</body></html> (not an OCI registry's answer: check the \
             registry's host and port)"
        )),
        "{}",
        run.stderr
    );
}
