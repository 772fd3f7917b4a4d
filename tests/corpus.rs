//! The bad-input corpus: malformed layouts, digests, tags files, tags, repositories and paths,
//! generated here. Each case asserts the exit code, the one error line (and a fragment of it),
//! an empty stdout, no panic, and that nothing was tagged. Cases refused before any request
//! point at a witness (a proxy in front of a dead port) and assert that not one connection was
//! made; the `--verify` (offline) check gives the same answer for every layout case. The few
//! cases only the registry can find run against the real registry.

mod common;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::faults::{run_bounded, FaultProxy};
use common::*;

const LIMIT: Duration = Duration::from_secs(20);

fn os(text: &str) -> OsString {
    OsString::from(text)
}

/// Exit `code`, no panic, nothing on stdout, and exactly one line on stderr: the error,
/// containing `fragment`.
fn assert_refusal(run: &Run, code: i32, fragment: &str, what: &str) {
    assert_eq!(run.code, code, "{what}: exit code; stderr:\n{}", run.stderr);
    assert!(
        !run.stderr.contains("panicked"),
        "{what}: a panic:\n{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{what}: stdout: {}", run.stdout);
    assert_eq!(
        run.stderr.lines().count(),
        1,
        "{what}: one line on stderr, the error:\n{}",
        run.stderr
    );
    assert!(
        run.error().contains(fragment),
        "{what}: expected '{fragment}' in:\n{}",
        run.stderr
    );
}

/// Runs `oci-push` with `args` (the repository, `-r REPO`, added) against a witness: refused
/// with `code` and `fragment`, and not one connection made, so nothing can have been tagged.
fn refused_offline(args: Vec<OsString>, code: i32, fragment: &str, what: &str) -> Run {
    let witness = FaultProxy::start_to(free_port(), vec![]);
    let mut all = args;
    all.extend([os("-r"), os(&witness.repo("app"))]);
    let (run, _) = run_bounded(&all, LIMIT);
    assert_refusal(&run, code, fragment, what);
    assert_eq!(
        witness.connections(),
        0,
        "{what}: a request was made:\n{}",
        witness.describe()
    );
    run
}

/// A push of `layout` with a tag is refused offline, and `--verify` refuses it the same way.
fn refused_layout(layout: &Path, fragment: &str, what: &str) -> Run {
    let run = refused_offline(
        vec![os("--layout"), layout.into(), os("-t"), os("latest")],
        4,
        fragment,
        what,
    );
    let (verify, _) = run_bounded([os("--verify"), os("--layout"), layout.into()], LIMIT);
    assert_refusal(&verify, 4, fragment, &format!("{what} (--verify)"));
    assert_eq!(
        verify.error(),
        run.error(),
        "{what}: --verify and a push say the same"
    );
    run
}

/// Pushes `layout` with tag `latest` to a real registry: refused with `code` and `fragment`,
/// and, read back from the registry, it has no tag and no manifest under `top`.
fn refused_by_registry(layout: &Path, top: &str, code: i32, fragment: &str) -> Run {
    let registry = Registry::start();
    let (run, _) = run_bounded(
        [
            os("--layout"),
            layout.into(),
            os("-r"),
            os(&registry.repo("app")),
            os("-t"),
            os("latest"),
        ],
        LIMIT,
    );
    assert_eq!(run.code, code, "exit code; stderr:\n{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert_eq!(run.error_count(), 1, "{}", run.stderr);
    assert!(
        run.error().contains(fragment),
        "expected '{fragment}' in:\n{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "stdout: {}", run.stdout);
    assert!(
        !run.stderr
            .lines()
            .any(|l| l.trim_start().starts_with("manifest")),
        "a manifest was written:\n{}",
        run.stderr
    );
    registry.assert_nothing_tagged("app", &[top]);
    run
}

fn good_image() -> (Image, tempfile::TempDir) {
    let image = Image::sized(Types::Oci, 60, 2, 2048);
    let layout = image_layout(&image);
    (image, layout)
}

/// A layout whose top manifest is `manifest` (any bytes), with `blobs` beside it.
fn layout_with_manifest(manifest: &[u8], blobs: &[&Blob]) -> (Blob, tempfile::TempDir) {
    let manifest = Blob::new(OCI_MANIFEST, manifest.to_vec());
    let mut all: Vec<&Blob> = blobs.to_vec();
    all.push(&manifest);
    let layout = write_layout(&[&manifest], &all);
    (manifest, layout)
}

/// An OCI image manifest naming this config and these layer descriptors (any JSON).
fn manifest_json(config: &serde_json::Value, layers: &[serde_json::Value]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": layers,
    }))
    .unwrap()
}

fn config_blob() -> Blob {
    Blob::new(
        OCI_CONFIG,
        br#"{"architecture":"amd64","os":"linux"}"#.to_vec(),
    )
}

// ---------------------------------------------------------------------------------------------
// The layout: oci-layout, index.json, manifests

#[test]
fn malformed_index_json() {
    let deep = "[".repeat(100_000);
    let size = |value: &str| {
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"sha256:{}","size":{value}}}]}}"#,
            "a".repeat(64)
        )
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "cut short",
            br#"{"schemaVersion": 2, "manifests": ["#.to_vec(),
        ),
        ("empty", Vec::new()),
        ("an array", b"[]".to_vec()),
        ("null", b"null".to_vec()),
        ("binary", b"\xff\xfe\x00\x01garbage".to_vec()),
        ("no manifests field", br#"{"schemaVersion":2}"#.to_vec()),
        (
            "manifests not a list",
            br#"{"schemaVersion":2,"manifests":{}}"#.to_vec(),
        ),
        ("nested 100000 deep", deep.into_bytes()),
        ("negative size", size("-1").into_bytes()),
        ("fractional size", size("1.5").into_bytes()),
        ("size as a string", size("\"5\"").into_bytes()),
        ("size past u64", size("18446744073709551616").into_bytes()),
    ];
    for (what, bytes) in cases {
        let (_, layout) = good_image();
        std::fs::write(layout.path().join("index.json"), &bytes).unwrap();
        refused_layout(
            layout.path(),
            &format!(
                "{} is not a valid OCI index",
                layout.path().join("index.json").display()
            ),
            what,
        );
    }
}

#[test]
fn index_json_with_zero_or_several_manifests() {
    let a = Image::sized(Types::Oci, 61, 1, 100);
    let b = Image::sized(Types::Oci, 62, 1, 100);
    let c = Image::sized(Types::Oci, 63, 1, 100);
    let mut blobs = a.blobs();
    blobs.extend(b.blobs());
    blobs.extend(c.blobs());
    blobs.extend([&a.manifest, &b.manifest, &c.manifest]);
    let none = write_layout(&[], &blobs);
    refused_layout(
        none.path(),
        "lists no manifest; the layout holds no image to push",
        "zero",
    );
    let three = write_layout(&[&a.manifest, &b.manifest, &c.manifest], &blobs);
    let run = refused_layout(three.path(), "lists 3 manifests (", "three");
    for image in [&a, &b, &c] {
        assert!(
            run.error().contains(&image.manifest.digest),
            "{}",
            run.stderr
        );
    }
    assert!(
        run.error().contains("wrap them in an image index"),
        "{}",
        run.stderr
    );
}

#[test]
fn oci_layout_marker() {
    let cases: Vec<(&str, Option<&[u8]>, &str)> = vec![
        (
            "unknown version",
            Some(br#"{"imageLayoutVersion":"9.9.9"}"#),
            "has imageLayoutVersion 9.9.9; oci-push reads version 1.0.0",
        ),
        (
            "version 2",
            Some(br#"{"imageLayoutVersion":"2.0.0"}"#),
            "has imageLayoutVersion 2.0.0; oci-push reads version 1.0.0",
        ),
        (
            "malformed",
            Some(b"{imageLayoutVersion"),
            "oci-layout is not valid JSON",
        ),
        (
            "binary",
            Some(b"\x00\xff\xfe"),
            "oci-layout is not valid JSON",
        ),
        ("no version", Some(b"{}"), "has no imageLayoutVersion"),
        (
            "version not a string",
            Some(br#"{"imageLayoutVersion":1}"#),
            "imageLayoutVersion",
        ),
        ("missing", None, "is not an OCI image layout"),
    ];
    for (what, bytes, fragment) in cases {
        let (_, layout) = good_image();
        let path = layout.path().join("oci-layout");
        match bytes {
            Some(bytes) => std::fs::write(&path, bytes).unwrap(),
            None => std::fs::remove_file(&path).unwrap(),
        }
        refused_layout(layout.path(), fragment, what);
    }
}

#[test]
fn malformed_manifests() {
    let config = config_blob();
    let deep = "[".repeat(100_000).into_bytes();
    let not_manifest = format!("is not a valid {OCI_MANIFEST}");
    let not_index = format!("is not a valid {OCI_INDEX}");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("cut short", br#"{"schemaVersion":2,"#.to_vec(), "is not valid JSON"),
        ("empty", Vec::new(), "is not valid JSON"),
        ("binary", b"\x89PNG\r\n\x1a\n\x00".to_vec(), "is not valid JSON"),
        ("nested 100000 deep", deep, "is not valid JSON"),
        (
            "layers not a list",
            br#"{"schemaVersion":2,"layers":7}"#.to_vec(),
            &not_manifest,
        ),
        (
            "null",
            b"null".to_vec(),
            &not_manifest,
        ),
        (
            "no config",
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#
                .to_vec(),
            &not_manifest,
        ),
        (
            "unknown media type",
            br#"{"schemaVersion":2,"mediaType":"text/plain"}"#.to_vec(),
            "has media type text/plain, which oci-push cannot push",
        ),
        (
            "index without manifests",
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json"}"#.to_vec(),
            &not_index,
        ),
    ];
    for (what, bytes, fragment) in cases {
        let (manifest, layout) = layout_with_manifest(&bytes, &[&config]);
        let run = refused_layout(layout.path(), fragment, what);
        assert!(
            run.error()
                .starts_with(&format!("manifest {} (", manifest.digest)),
            "{what}: names the manifest and its file:\n{}",
            run.stderr
        );
    }

    // A broken child of an index is found too.
    let child = Blob::new(OCI_MANIFEST, br#"{"schemaVersion":2,"#.to_vec());
    let index = Blob::new(
        OCI_INDEX,
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [child.descriptor()],
        }))
        .unwrap(),
    );
    let layout = write_layout(&[&index], &[&index, &child]);
    let run = refused_layout(layout.path(), "is not valid JSON", "broken child");
    assert!(run.error().contains(&child.digest), "{}", run.stderr);
}

#[test]
fn indexes_nested_too_deep() {
    let image = Image::sized(Types::Oci, 64, 1, 100);
    let mut blobs: Vec<Blob> = image.blobs().into_iter().cloned().collect();
    blobs.push(image.manifest.clone());
    let mut top = image.manifest.clone();
    for _ in 0..10 {
        top = Blob::new(
            OCI_INDEX,
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [top.descriptor()],
            }))
            .unwrap(),
        );
        blobs.push(top.clone());
    }
    let refs: Vec<&Blob> = blobs.iter().collect();
    let layout = write_layout(&[&top], &refs);
    refused_layout(
        layout.path(),
        "is nested more than 8 indexes deep",
        "nesting",
    );
}

// ---------------------------------------------------------------------------------------------
// Blobs: missing, wrong size, wrong bytes, unsupported or unsafe digests

#[test]
fn manifest_referencing_a_missing_blob() {
    let (image, layout) = good_image();
    for blob in [&image.layers[0], &image.config] {
        let path = blob_path(layout.path(), blob);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let run = refused_layout(layout.path(), "is missing", "missing");
        assert_eq!(
            run.error(),
            format!(
                "blob {} is missing: expected {}; the layout is incomplete, rebuild the image",
                blob.digest,
                path.display()
            )
        );
        std::fs::write(&path, bytes).unwrap();
    }
    // The child manifest of an index.
    let a = Image::sized(Types::Oci, 65, 1, 100);
    let index = Index::new(Types::Oci, vec![(a, ("linux", "amd64"))]);
    let layout = index_layout(&index);
    std::fs::remove_file(blob_path(layout.path(), &index.images[0].manifest)).unwrap();
    let run = refused_layout(layout.path(), "is missing", "missing child");
    assert!(
        run.error().contains(&index.images[0].manifest.digest),
        "{}",
        run.stderr
    );
}

#[test]
fn size_mismatches() {
    // A layer longer than its descriptor says.
    let (image, layout) = good_image();
    let path = blob_path(layout.path(), &image.layers[0]);
    let mut bytes = image.layers[0].bytes.clone();
    bytes.push(0);
    std::fs::write(&path, bytes).unwrap();
    refused_layout(
        layout.path(),
        &format!(
            "blob {} has the wrong size: {} is 2049 bytes, its descriptor says 2048",
            image.layers[0].digest,
            path.display()
        ),
        "layer too long",
    );

    // A layer descriptor claiming the largest size there is.
    let config = config_blob();
    let layer = Blob::new(OCI_LAYER, pseudo_random(66, 100));
    let mut descriptor = layer.descriptor();
    descriptor["size"] = serde_json::json!(u64::MAX);
    let (_, layout) = layout_with_manifest(
        &manifest_json(&config.descriptor(), &[descriptor]),
        &[&config, &layer],
    );
    refused_layout(
        layout.path(),
        &format!("its descriptor says {}", u64::MAX),
        "huge size",
    );

    // index.json giving the manifest the wrong size.
    let (image, layout) = good_image();
    let mut descriptor = image.manifest.descriptor();
    descriptor["size"] = serde_json::json!(image.manifest.bytes.len() - 1);
    std::fs::write(
        layout.path().join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [descriptor]}))
            .unwrap(),
    )
    .unwrap();
    refused_layout(
        layout.path(),
        &format!("blob {} has the wrong size", image.manifest.digest),
        "manifest size",
    );
}

#[test]
fn digest_mismatch_of_a_manifest_is_found_offline() {
    let (image, layout) = good_image();
    let path = blob_path(layout.path(), &image.manifest);
    let mut bytes = image.manifest.bytes.clone();
    let at = bytes.len() - 2;
    bytes[at] = b' ';
    std::fs::write(&path, bytes).unwrap();
    refused_layout(
        layout.path(),
        &format!(
            "blob {} is corrupt: {} hashes to sha256:",
            image.manifest.digest,
            path.display()
        ),
        "manifest bytes",
    );
}

#[test]
fn digest_mismatch_of_a_layer_is_refused_by_the_registry_and_by_verify() {
    let (image, layout) = good_image();
    let layer = &image.layers[0];
    let path = blob_path(layout.path(), layer);
    let mut bytes = layer.bytes.clone();
    bytes[1000] ^= 0x55;
    std::fs::write(&path, bytes).unwrap();
    refused_by_registry(
        layout.path(),
        &image.manifest.digest,
        4,
        &format!(
            "blob {} is corrupt: the bytes of {} do not hash to its digest",
            layer.digest,
            path.display()
        ),
    );
    let (verify, _) = run_bounded(
        [os("--verify"), os("--layout"), layout.path().into()],
        LIMIT,
    );
    assert_refusal(
        &verify,
        4,
        &format!(
            "blob {} is corrupt: {} hashes to sha256:",
            layer.digest,
            path.display()
        ),
        "--verify",
    );
}

/// A descriptor with `digest` as the top manifest (in index.json) and as a layer.
fn refused_digest(digest: &str, fragment: &str) {
    let (_, layout) = good_image();
    std::fs::write(
        layout.path().join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest, "size": 100}],
        }))
        .unwrap(),
    )
    .unwrap();
    refused_layout(layout.path(), fragment, &format!("index.json: {digest}"));

    let config = config_blob();
    let layer = serde_json::json!({"mediaType": OCI_LAYER, "digest": digest, "size": 5});
    let (_, layout) =
        layout_with_manifest(&manifest_json(&config.descriptor(), &[layer]), &[&config]);
    refused_layout(layout.path(), fragment, &format!("layer: {digest}"));
}

#[test]
fn unsupported_digest_algorithms() {
    for (digest, algorithm) in [
        (format!("md5:{}", "a".repeat(32)), "md5"),
        (format!("sha1:{}", "a".repeat(40)), "sha1"),
        (format!("blake3:{}", "a".repeat(64)), "blake3"),
        (format!("sha256+b64:{}", "a".repeat(64)), "sha256+b64"),
    ] {
        refused_digest(
            &digest,
            &format!("digest {digest} uses {algorithm}; oci-push supports sha256 and sha512"),
        );
    }
}

#[test]
fn digests_that_are_not_digests() {
    for (digest, fragment) in [
        ("sha256:abc", "Invalid digest length 3 expected 64"),
        (
            &format!("sha512:{}", "a".repeat(64)) as &str,
            "Invalid digest length 64 expected 128",
        ),
        ("", "digest"),
        ("abc", "digest"),
    ] {
        refused_digest(digest, fragment);
    }
}

#[test]
fn digests_that_would_leave_the_layout_are_refused() {
    // A file where `blobs/sha256/../../../secret` would land, with the bytes the descriptor
    // wants: if the digest were used as a path, the push would go through.
    let outer = tempfile::TempDir::new().unwrap();
    let secret = pseudo_random(67, 100);
    std::fs::write(outer.path().join("secret"), &secret).unwrap();
    for hex in [
        "../../../secret",
        "../../../../../../../../etc/passwd",
        "..",
        "aa/../bb",
        "%2e%2e%2fsecret",
        "/etc/passwd",
    ] {
        let digest = format!("sha256:{hex}");
        let (_, layout) = good_image();
        let dir = outer.path().join("layout");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(layout.path(), &dir).unwrap();
        std::fs::write(
            dir.join("index.json"),
            serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest, "size": secret.len()}],
            }))
            .unwrap(),
        )
        .unwrap();
        let run = refused_layout(&dir, "is not a valid OCI index", &digest);
        assert!(
            run.error().contains(hex),
            "the error shows the bad digest: {}",
            run.stderr
        );
    }
}

#[test]
fn uppercase_hex_digest_is_refused_as_not_lower_case() {
    // Upper-case hex is hex: the message must say digests are lower case, not that 'A' is no
    // hexadecimal character.
    let (image, _) = good_image();
    let upper = format!(
        "sha256:{}",
        image.manifest.digest["sha256:".len()..].to_uppercase()
    );
    let (_, layout) = good_image();
    std::fs::write(
        layout.path().join("index.json"),
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": upper, "size": image.manifest.bytes.len()}],
        }))
        .unwrap(),
    )
    .unwrap();
    let run = refused_layout(layout.path(), &upper["sha256:".len()..], "upper case");
    assert!(
        run.error().to_lowercase().contains("lower"),
        "say that digests are lower-case hex:\n{}",
        run.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// The file system: symlink loops, directories where files belong

#[test]
fn symlink_loops_are_errors_not_hangs() {
    use std::os::unix::fs::symlink;
    const LOOP: &str = "Too many levels of symbolic links";
    type Break = fn(&Path, &Image);
    let cases: Vec<(&str, Break)> = vec![
        ("blob links to itself", |dir, image| {
            let path = blob_path(dir, &image.layers[0]);
            std::fs::remove_file(&path).unwrap();
            symlink(&path, &path).unwrap();
        }),
        ("two blob links in a circle", |dir, image| {
            let path = blob_path(dir, &image.layers[0]);
            let other = path.with_extension("other");
            std::fs::remove_file(&path).unwrap();
            symlink(&other, &path).unwrap();
            symlink(&path, &other).unwrap();
        }),
        ("blobs/sha256 links to itself", |dir, _| {
            let sha = dir.join("blobs/sha256");
            std::fs::remove_dir_all(&sha).unwrap();
            symlink(&sha, &sha).unwrap();
        }),
        ("index.json links to itself", |dir, _| {
            let path = dir.join("index.json");
            std::fs::remove_file(&path).unwrap();
            symlink(&path, &path).unwrap();
        }),
        ("oci-layout links to itself", |dir, _| {
            let path = dir.join("oci-layout");
            std::fs::remove_file(&path).unwrap();
            symlink(&path, &path).unwrap();
        }),
    ];
    for (what, break_it) in cases {
        let (image, layout) = good_image();
        break_it(layout.path(), &image);
        refused_layout(layout.path(), LOOP, what);
    }
}

#[test]
fn symlinks_out_of_the_layout_are_followed() {
    // Bazel tree artifacts are symlinks into the output tree: not an error.
    let (image, layout) = good_image();
    let elsewhere = tempfile::TempDir::new().unwrap();
    let path = blob_path(layout.path(), &image.layers[0]);
    let moved = elsewhere.path().join("layer");
    std::fs::rename(&path, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &path).unwrap();
    let (run, _) = run_bounded(
        [os("--verify"), os("--layout"), layout.path().into()],
        LIMIT,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.last_line(), image.manifest.digest);
}

#[test]
fn a_directory_where_a_blob_belongs() {
    let (image, layout) = good_image();
    let path = blob_path(layout.path(), &image.layers[1]);
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    refused_layout(
        layout.path(),
        &format!(
            "blob {}: {} is not a file",
            image.layers[1].digest,
            path.display()
        ),
        "directory",
    );
}

#[test]
fn the_layout_path_is_missing_or_a_file() {
    let work = tempfile::TempDir::new().unwrap();
    let missing = work.path().join("nowhere");
    refused_layout(&missing, "no such directory", "missing");
    let file = write_file(work.path(), "a-file", b"not a layout");
    let run = refused_layout(&file, "is not a directory", "a file");
    assert!(
        !run.error().contains("no such directory"),
        "the file exists: {}",
        run.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// Tags files and tags

/// `--tags-file FILE` with a good layout: refused offline with `fragment`.
fn refused_tags_file(file: &Path, fragment: &str, what: &str) -> Run {
    let (_, layout) = good_image();
    refused_offline(
        vec![
            os("--layout"),
            layout.path().into(),
            os("--tags-file"),
            file.into(),
        ],
        4,
        fragment,
        what,
    )
}

#[test]
fn tags_files() {
    let work = tempfile::TempDir::new().unwrap();
    let dir = work.path();

    // Over 1 MiB, though every line is a good tag.
    let huge = write_file(dir, "huge", &b"a\n".repeat(512 * 1024 + 1));
    refused_tags_file(
        &huge,
        &format!(
            "cannot read tags file {}: larger than 1.0 MiB, more than such a file holds",
            huge.display()
        ),
        "huge",
    );
    // Exactly 1 MiB is read (and its one tag, repeated, is fine).
    let limit = write_file(dir, "limit", &b"a\n".repeat(512 * 1024));
    let (_, layout) = good_image();
    let (run, _) = run_bounded(
        [
            os("--verify"),
            os("--layout"),
            layout.path().into(),
            os("--tags-file"),
            limit.into(),
        ],
        LIMIT,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);

    let binary = write_file(dir, "binary", b"v1\n\xff\xfe\x00\n");
    refused_tags_file(
        &binary,
        &format!(
            "tags file {} is not UTF-8 text (bad byte at offset 3)",
            binary.display()
        ),
        "binary",
    );
    let random = write_file(dir, "random", &pseudo_random(68, 4096));
    refused_tags_file(
        &random,
        &format!("tags file {} is not UTF-8 text", random.display()),
        "random bytes",
    );
    let nul = write_file(dir, "nul", b"v1\nv\x002\n");
    refused_tags_file(
        &nul,
        &format!(
            "{}:2: invalid tag 'v\\02': it has the character '\\0'",
            nul.display()
        ),
        "NUL",
    );
    let crlf = write_file(dir, "crlf", b"v1\r\n\r\n  latest \r\nbad tag\r\n");
    refused_tags_file(
        &crlf,
        &format!(
            "{}:4: invalid tag 'bad tag': it has the character ' '; tags use only A-Z a-z 0-9 _ . -",
            crlf.display()
        ),
        "CRLF",
    );
    let bom = write_file(dir, "bom", "\u{feff}v1\n".as_bytes());
    refused_tags_file(&bom, &format!("{}:1: invalid tag", bom.display()), "BOM");
    refused_tags_file(
        &dir.join("missing"),
        &format!("cannot read tags file {}", dir.join("missing").display()),
        "missing",
    );
    refused_tags_file(
        dir,
        &format!("cannot read tags file {}", dir.display()),
        "a directory",
    );
}

#[test]
fn invalid_tags() {
    let long = "a".repeat(129);
    let cases: Vec<(&str, String)> = vec![
        (
            "bad:tag",
            "it has the character ':'; tags use only A-Z a-z 0-9 _ . -".into(),
        ),
        ("a/b", "it has the character '/'".into()),
        ("with space", "it has the character ' '".into()),
        ("tab\tx", "it has the character '\\t'".into()),
        ("new\nline", "it has the character '\\n'".into()),
        ("esc\u{1b}", "it has the character '\\u{1b}'".into()),
        ("v1+build", "it has the character '+'".into()),
        (
            ".dot",
            "it starts with '.'; a tag starts with a letter, digit or '_'".into(),
        ),
        ("-dash", "it starts with '-'".into()),
        ("é", "it starts with 'é'".into()),
        ("", "invalid tag '': it is empty".into()),
        (
            long.as_str(),
            format!("invalid tag '{long}': it is 129 characters long; tags have at most 128"),
        ),
    ];
    for (tag, fragment) in &cases {
        let (_, layout) = good_image();
        refused_offline(
            vec![
                os("--layout"),
                layout.path().into(),
                os("-t"),
                os("ok"),
                os("-t"),
                os(tag),
            ],
            4,
            fragment,
            &format!("tag {tag:?}"),
        );
    }
    // 128 characters is the most a tag has.
    let (_, layout) = good_image();
    let (run, _) = run_bounded(
        [
            os("--verify"),
            os("--layout"),
            layout.path().into(),
            os("-t"),
            os(&"a".repeat(128)),
        ],
        LIMIT,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn a_long_tag_of_non_ascii_characters_is_refused_for_its_characters() {
    // 100 characters, 200 bytes: the reason is the character, not a length under the limit.
    let tag = "é".repeat(100);
    let (_, layout) = good_image();
    let run = refused_offline(
        vec![os("--layout"), layout.path().into(), os("-t"), os(&tag)],
        4,
        "invalid tag",
        "é x 100",
    );
    assert!(
        run.error().contains("'é'"),
        "name the bad character:\n{}",
        run.stderr
    );
    assert!(
        !run.error()
            .contains("100 characters long; tags have at most 128"),
        "100 is not over 128:\n{}",
        run.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// Repositories

#[test]
fn invalid_repositories() {
    let (_, layout) = good_image();
    let digest = format!("sha256:{}", "a".repeat(64));
    let long = format!("127.0.0.1:5000/{}", "a".repeat(250));
    let cases: Vec<(String, &str)> = vec![
        (
            "127.0.0.1:5000/App".into(),
            "'App' has upper-case letters; repository paths must be lower case",
        ),
        ("127.0.0.1:5000/org/MyApp".into(), "lower case"),
        (
            "127.0.0.1:5000/app:v1".into(),
            "it has a tag; pass tags with --tag or the tags file, not in the repository",
        ),
        (
            format!("127.0.0.1:5000/app@{digest}"),
            "it has a digest; the digest comes from the image, give the repository alone",
        ),
        (format!("127.0.0.1:5000/app:v1@{digest}"), "it has a digest"),
        (
            "https://127.0.0.1:5000/app".into(),
            "remove the 'https://' scheme",
        ),
        (
            "http://127.0.0.1:5000/app".into(),
            "remove the 'http://' scheme",
        ),
        (
            "oci://127.0.0.1:5000/app".into(),
            "remove the 'oci://' scheme",
        ),
        ("".into(), "it is empty"),
        ("app".into(), "no registry host"),
        (
            "127.0.0.1:5000".into(),
            "it names a registry but no repository",
        ),
        (
            "127.0.0.1:99999999/app".into(),
            "'99999999' is not a port number",
        ),
        ("127.0.0.1:5000/a b".into(), "has the character ' '"),
        ("127.0.0.1:5000//app".into(), "empty path component"),
        (long, "it is longer than 255 characters"),
    ];
    for (repository, fragment) in &cases {
        let (run, _) = run_bounded(
            [
                os("--layout"),
                layout.path().into(),
                os("-r"),
                os(repository),
                os("-t"),
                os("v1"),
            ],
            LIMIT,
        );
        assert_refusal(&run, 4, fragment, &format!("repository {repository:?}"));
        assert!(
            run.error().starts_with("invalid repository '"),
            "{}",
            run.stderr
        );
    }
    // --repository-file: the same checks, and the file's own.
    let work = tempfile::TempDir::new().unwrap();
    for (content, fragment) in [
        (&b"127.0.0.1:5000/App\n"[..], "lower case"),
        // Every line is a destination, and each is checked, by its line number.
        (
            b"127.0.0.1:5000/a\n\n127.0.0.1:5000/B\n",
            ":3: invalid repository",
        ),
        (b"\n\n", "is empty"),
    ] {
        let file = write_file(work.path(), "repo", content);
        let (run, _) = run_bounded(
            [
                os("--layout"),
                layout.path().into(),
                os("--repository-file"),
                file.into(),
            ],
            LIMIT,
        );
        assert_refusal(&run, 4, fragment, &format!("{content:?}"));
    }
}

#[test]
fn a_repository_with_a_line_break_gives_a_one_line_error() {
    let (_, layout) = good_image();
    let (run, _) = run_bounded(
        [
            os("--layout"),
            layout.path().into(),
            os("-r"),
            os("127.0.0.1:5000/a\nb"),
        ],
        LIMIT,
    );
    assert_refusal(&run, 4, "invalid repository", "line break");
}

// ---------------------------------------------------------------------------------------------
// Paths and arguments that are not UTF-8

fn non_utf8(dir: &Path, name: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(name))
}

#[test]
fn non_utf8_paths_and_arguments() {
    let work = tempfile::TempDir::new().unwrap();
    let (image, layout) = good_image();

    // A layout path that does not exist.
    let missing = non_utf8(work.path(), b"no\xffwhere");
    refused_layout(&missing, "no such directory", "missing non-UTF-8 layout");

    // A tags file path that does not exist.
    let tags = non_utf8(work.path(), b"tags\xfe");
    refused_tags_file(
        &tags,
        "cannot read tags file",
        "missing non-UTF-8 tags file",
    );

    // Tags and repositories are text.
    refused_offline(
        vec![
            os("--layout"),
            layout.path().into(),
            os("-t"),
            OsString::from_vec(b"v\xff1".to_vec()),
        ],
        4,
        "not valid UTF-8",
        "non-UTF-8 tag",
    );
    let (run, _) = run_bounded(
        [
            os("--layout"),
            layout.path().into(),
            os("-r"),
            OsString::from_vec(b"127.0.0.1:5000/a\xff".to_vec()),
        ],
        LIMIT,
    );
    assert_refusal(&run, 4, "--repository", "non-UTF-8 repository");
    assert!(run.error().contains("not valid UTF-8"), "{}", run.stderr);

    // A good layout (and digest file) at non-UTF-8 paths is simply pushed.
    let dir = non_utf8(work.path(), b"lay\xffout");
    std::fs::rename(layout.path(), &dir).unwrap();
    let digest_file = non_utf8(work.path(), b"digest\xfe");
    let (run, _) = run_bounded(
        [
            os("--verify"),
            os("--layout"),
            dir.clone().into(),
            os("--digest-file"),
            digest_file.clone().into(),
        ],
        LIMIT,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(&digest_file).unwrap(),
        format!("{}\n", image.manifest.digest)
    );
    let registry = Registry::start();
    let (run, _) = run_bounded(
        [
            os("--layout"),
            dir.into(),
            os("-r"),
            os(&registry.repo("app")),
            os("-t"),
            os("v1"),
        ],
        LIMIT,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    registry.assert_manifest("app", "v1", &image.manifest);
}

// ---------------------------------------------------------------------------------------------
// Usage

#[test]
fn usage_errors_exit_1() {
    let (_, layout) = good_image();
    let layout_arg = layout.path().display().to_string();
    for (args, fragment) in [
        (vec![], "--layout DIR is required"),
        (vec!["--layout"], "--layout"),
        (
            vec!["--layout", &layout_arg],
            "--repository REPO is required",
        ),
        (
            vec!["--layout", &layout_arg, "-r", "127.0.0.1:5000/a", "--nope"],
            "invalid option '--nope'",
        ),
        (
            vec!["--layout", &layout_arg, "-r", "127.0.0.1:5000/a", "-j", "0"],
            "--jobs 0",
        ),
        (
            vec![
                "--layout",
                &layout_arg,
                "-r",
                "127.0.0.1:5000/a",
                "-j",
                "65",
            ],
            "--jobs 65",
        ),
        (
            vec![
                "--layout",
                &layout_arg,
                "-r",
                "127.0.0.1:5000/a",
                "--retries",
                "x",
            ],
            "--retries x",
        ),
        (
            vec![
                "--layout",
                &layout_arg,
                "-r",
                "127.0.0.1:5000/a",
                "--timeout",
                "0",
            ],
            "--timeout 0",
        ),
        (
            vec![
                "--layout",
                &layout_arg,
                "-r",
                "127.0.0.1:5000/a",
                "--chunk-size",
                "0",
            ],
            "--chunk-size 0",
        ),
    ] {
        let (run, _) = run_bounded(&args, LIMIT);
        assert_refusal(&run, 1, fragment, &format!("{args:?}"));
    }
}
