//! Referrers (`--referrer`, `--write-artifact`): artifacts whose subject is the image go up after
//! it and before its tags; distribution 2.8 has no referrers API, so the fallback tag index
//! `sha256-<hex>` is kept. Read back with oras (`oras discover`, a client we did not write) and
//! curl, on the real registry; fronts emulate what it cannot do (`OCI-Subject`, conditional
//! writes, another writer at the wrong moment).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::faults::{spawn_oci_push, Edit, Fault, FaultProxy, Rule};
use common::pushing::image;
use common::sandbox::oci_push_with;
use common::*;
use serde_json::{json, Value};
use tempfile::TempDir;

const SPDX: &str = "application/spdx+json";
const INTOTO: &str = "application/vnd.in-toto+json";

/// oras, from `$ORAS` or where `bench/get-peers.sh` puts it. A missing oras fails the test:
/// a read-back skipped is no read-back.
fn oras() -> PathBuf {
    let path = std::env::var_os("ORAS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/.peers/oras"));
    assert!(
        path.is_file(),
        "oras not found at {}: run `bash bench/get-peers.sh` (tools/setup.sh does), or set ORAS",
        path.display()
    );
    path
}

/// `oras discover --format json` of `reference`: its tree of referrers, as oras reads it.
fn discover_json(reference: &str) -> Value {
    let out = Command::new(oras())
        .args(["discover", "--plain-http", "--format", "json", reference])
        .output()
        .expect("run oras");
    assert!(
        out.status.success(),
        "oras discover {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("oras JSON")
}

/// [`discover_json`]'s first level: (artifactType, digest) of each referrer, sorted.
fn discover(reference: &str) -> Vec<(String, String)> {
    let value = discover_json(reference);
    let mut found: Vec<(String, String)> = value["referrers"]
        .as_array()
        .expect("referrers in oras's JSON")
        .iter()
        .map(|r| {
            (
                r["artifactType"].as_str().unwrap_or("").to_string(),
                r["digest"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    found.sort();
    found
}

/// Writes an artifact layout for the image in `subject` with `oci-push --write-artifact`;
/// returns it and its manifest's digest.
fn artifact(
    subject: &Path,
    artifact_type: &str,
    content: &str,
    extra: &[&str],
) -> (TempDir, String) {
    let dir = TempDir::new().expect("temp dir");
    let file = write_file(dir.path(), "payload.json", content.as_bytes());
    let out = dir.path().join("layout");
    let mut args = vec![
        "--write-artifact".to_string(),
        out.display().to_string(),
        "--layout".to_string(),
        subject.display().to_string(),
        "--artifact-type".to_string(),
        artifact_type.to_string(),
        "--artifact-file".to_string(),
        format!("{}:{artifact_type}", file.display()),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let run = oci_push(&args).ok();
    let digest = run.last_line().to_string();
    assert!(digest.starts_with("sha256:"), "{}", run.stdout);
    (dir, digest)
}

fn layout_of(artifact: &(TempDir, String)) -> String {
    artifact.0.path().join("layout").display().to_string()
}

/// `--layout L -r REPO -t v1 --referrer R...`, run in the sandbox.
fn push(layout: &TempDir, repo: &str, referrers: &[&(TempDir, String)], extra: &[&str]) -> Run {
    let dirs: Vec<String> = referrers.iter().map(|r| layout_of(r)).collect();
    let dirs: Vec<&str> = dirs.iter().map(String::as_str).collect();
    push_dirs(layout, repo, &["v1"], &dirs, extra)
}

/// `--layout L -r REPO [-t TAG]... [--referrer DIR]... EXTRA...`, run in the sandbox.
fn push_dirs(layout: &TempDir, repo: &str, tags: &[&str], dirs: &[&str], extra: &[&str]) -> Run {
    let layout = layout_arg(layout);
    let mut args = vec!["--layout", layout.as_str(), "-r", repo];
    for tag in tags {
        args.extend(["-t", *tag]);
    }
    for dir in dirs {
        args.extend(["--referrer", *dir]);
    }
    args.extend_from_slice(extra);
    oci_push_with(&args, &[], None)
}

fn fallback_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// The fallback index of `subject` in `path`, as curl reads it: (digest, entry) of each.
fn index_entries(registry: &Registry, path: &str, subject: &str) -> Vec<Value> {
    let answer = registry.get(
        &format!("/v2/{path}/manifests/{}", fallback_tag(subject)),
        OCI_INDEX,
    );
    assert_eq!(answer.status, 200, "the fallback index: {}", answer.text());
    assert_eq!(answer.header("content-type").as_deref(), Some(OCI_INDEX));
    let index: Value = serde_json::from_slice(&answer.body).expect("index JSON");
    index["manifests"].as_array().expect("manifests").clone()
}

fn digests(entries: &[Value]) -> Vec<String> {
    let mut list: Vec<String> = entries
        .iter()
        .map(|e| e["digest"].as_str().unwrap_or("").to_string())
        .collect();
    list.sort();
    list
}

fn sorted(mut list: Vec<(String, String)>) -> Vec<(String, String)> {
    list.sort();
    list
}

/// Puts a manifest straight into the registry with curl: another writer.
fn curl_put(url: &str, media_type: &str, bytes: &[u8]) {
    let dir = TempDir::new().expect("temp dir");
    let file = write_file(dir.path(), "body", bytes);
    let answer = curl_with(
        "PUT",
        url,
        "*/*",
        &[
            "-H".to_string(),
            format!("Content-Type: {media_type}"),
            "--data-binary".to_string(),
            format!("@{}", file.display()),
        ],
    );
    assert_eq!(answer.status, 201, "PUT {url}: {}", answer.text());
}

fn index_of(entries: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}))
        .expect("json")
}

#[test]
fn referrers_go_up_after_the_image_and_before_the_tags_and_oras_lists_them() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(&registry, vec![]);
    let (img, layout) = image(1);
    let sbom = artifact(
        layout.path(),
        SPDX,
        r#"{"spdxVersion":"SPDX-2.3"}"#,
        &["--annotation", "org.example.tool=bazel"],
    );
    let provenance = artifact(layout.path(), INTOTO, r#"{"_type":"statement"}"#, &[]);
    let repo = proxy.repo("app");
    let run = push(&layout, &repo, &[&sbom, &provenance], &["--format", "json"]).ok();

    let subject = &img.manifest.digest;
    let json = run.json();
    schema::assert_follows_schema(&json);
    assert_eq!(json["reference"], format!("{repo}@{subject}"));
    let reported: Vec<(String, String, String, bool)> = json["referrers"]
        .as_array()
        .expect("referrers")
        .iter()
        .map(|r| {
            (
                r["digest"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
                r["indexTag"].as_str().unwrap().to_string(),
                r["indexChanged"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        reported,
        [
            (sbom.1.clone(), "pushed".into(), fallback_tag(subject), true),
            (
                provenance.1.clone(),
                "pushed".into(),
                fallback_tag(subject),
                true
            ),
        ]
    );
    // Read back by a client we did not write, through the registry itself.
    assert_eq!(
        discover(&format!("{}@{subject}", registry.repo("app"))),
        sorted(vec![
            (SPDX.to_string(), sbom.1.clone()),
            (INTOTO.to_string(), provenance.1.clone()),
        ])
    );
    let entries = index_entries(&registry, "app", subject);
    let sbom_entry = entries
        .iter()
        .find(|e| e["digest"] == sbom.1.as_str())
        .expect("sbom");
    assert_eq!(sbom_entry["artifactType"], SPDX);
    assert_eq!(sbom_entry["mediaType"], OCI_MANIFEST);
    assert_eq!(sbom_entry["annotations"]["org.example.tool"], "bazel");
    registry.assert_manifest("app", "v1", &img.manifest);
    // Each referrer is there by digest, with the bytes of its layout.
    for (artifact, _) in [(&sbom, SPDX), (&provenance, INTOTO)] {
        let answer = registry.get(&format!("/v2/app/manifests/{}", artifact.1), OCI_MANIFEST);
        assert_eq!(answer.status, 200);
        assert_eq!(sha256(&answer.body), artifact.1);
    }
    // The order: image, then the referrers (both at once: neither waits for the other) and
    // their index, then the tag.
    let mut puts: Vec<String> = proxy
        .matching("PUT", "/manifests/")
        .iter()
        .map(|r| r.path().rsplit('/').next().unwrap_or("").to_string())
        .collect();
    puts[1..3].sort();
    let mut referrers = [sbom.1.clone(), provenance.1.clone()];
    referrers.sort();
    assert_eq!(
        puts,
        [
            subject.clone(),
            referrers[0].clone(),
            referrers[1].clone(),
            fallback_tag(subject),
            "v1".to_string()
        ]
    );
}

#[test]
fn a_second_push_adds_nothing_to_the_index_and_a_new_referrer_keeps_the_old() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(&registry, vec![]);
    let (img, layout) = image(2);
    let sbom = artifact(layout.path(), SPDX, "{}", &[]);
    let signature = artifact(layout.path(), "application/vnd.example.sig", "sig", &[]);
    let repo = proxy.repo("app");
    push(&layout, &repo, &[&sbom], &[]).ok();
    proxy.forget();
    let again = push(&layout, &repo, &[&sbom], &["--format", "json"]).ok();
    assert_eq!(again.json()["referrers"][0]["indexChanged"], false);
    let index = format!("/manifests/{}", fallback_tag(&img.manifest.digest));
    assert_eq!(proxy.count("PUT", &index), 0, "{}", proxy.describe());
    assert_eq!(
        digests(&index_entries(&registry, "app", &img.manifest.digest)),
        [sbom.1.as_str()]
    );
    // Another referrer later: the index keeps the first.
    push(&layout, &repo, &[&signature], &[]).ok();
    let mut both = vec![sbom.1.clone(), signature.1.clone()];
    both.sort();
    assert_eq!(
        digests(&index_entries(&registry, "app", &img.manifest.digest)),
        both
    );
    assert_eq!(
        discover(&format!("{}:v1", registry.repo("app"))).len(),
        2,
        "oras lists both"
    );
}

#[test]
fn a_registry_answering_oci_subject_indexes_the_referrer_itself() {
    let registry = Registry::start();
    let (img, layout) = image(3);
    let sbom = artifact(layout.path(), SPDX, "{}", &[]);
    let subject = Fault::Rewrite(vec![Edit::header("OCI-Subject", &img.manifest.digest)]);
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::every(
            "PUT",
            &format!("/manifests/{}", sbom.1),
            subject,
        )],
    );
    let run = push(&layout, &proxy.repo("app"), &[&sbom], &["--format", "json"]).ok();
    let json = run.json();
    schema::assert_follows_schema(&json);
    assert_eq!(json["referrers"][0]["index"], "registry");
    assert_eq!(json["referrers"][0]["indexTag"], Value::Null);
    // No fallback tag: the registry lists it.
    assert_eq!(registry.tags("app"), ["v1"]);
    assert_eq!(proxy.count("*", &fallback_tag(&img.manifest.digest)), 0);
    let answer = registry.get(&format!("/v2/app/manifests/{}", sbom.1), OCI_MANIFEST);
    assert_eq!(sha256(&answer.body), sbom.1);
    assert!(
        run.stderr.contains("indexed by the registry"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_oci_subject_naming_another_digest_gets_the_fallback_index() {
    let registry = Registry::start();
    let (img, layout) = image(16);
    let sbom = artifact(layout.path(), SPDX, "{}", &[]);
    let wrong = format!("sha256:{}", "0".repeat(64));
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::every(
            "PUT",
            &format!("/manifests/{}", sbom.1),
            Fault::Rewrite(vec![Edit::header("OCI-Subject", &wrong)]),
        )],
    );
    let run = push(&layout, &proxy.repo("app"), &[&sbom], &["--format", "json"]).ok();
    assert_eq!(run.json()["referrers"][0]["index"], "tag");
    assert_eq!(
        digests(&index_entries(&registry, "app", &img.manifest.digest)),
        [sbom.1.as_str()]
    );
}

#[test]
fn a_dry_run_asks_for_the_referrers_api() {
    let registry = Registry::start();
    let (img, layout) = image(17);
    let sbom = artifact(layout.path(), SPDX, "{}", &[]);
    let api = Fault::status(200)
        .with_header("Content-Type", OCI_INDEX)
        .with_body(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#);
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::every(
            "GET",
            &format!("/referrers/{}", img.manifest.digest),
            api,
        )],
    );
    let run = push(
        &layout,
        &proxy.repo("app"),
        &[&sbom],
        &["--dry-run", "--format", "json"],
    )
    .ok();
    let referrer = &run.json()["referrers"][0];
    assert_eq!(referrer["index"], "registry");
    assert_eq!(referrer["outcome"], "wouldPush");
    assert!(
        run.stderr.contains("the registry would index it"),
        "{}",
        run.stderr
    );
    let asked = format!("/v2/app/referrers/{}", img.manifest.digest);
    assert_eq!(proxy.count("GET", &asked), 1, "{}", proxy.describe());
    assert_eq!(proxy.count("*", &fallback_tag(&img.manifest.digest)), 0);
    assert!(registry.catalog().is_empty());
}

#[test]
fn a_referrer_of_a_referrer_goes_up_after_it() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(&registry, vec![]);
    let (img, layout) = image(18);
    let sbom = artifact(layout.path(), SPDX, "{}", &[]);
    // A signature of the SBOM: its subject is the SBOM's manifest.
    let signature = artifact(
        Path::new(&layout_of(&sbom)),
        "application/vnd.example.sig",
        "sig",
        &[],
    );
    // Given before its subject: pushed after it all the same.
    push(&layout, &proxy.repo("app"), &[&signature, &sbom], &[]).ok();
    let puts: Vec<String> = proxy
        .matching("PUT", "/manifests/sha256:")
        .iter()
        .map(|r| r.path().rsplit('/').next().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        puts,
        [
            img.manifest.digest.clone(),
            sbom.1.clone(),
            signature.1.clone()
        ]
    );
    assert_eq!(
        digests(&index_entries(&registry, "app", &sbom.1)),
        [signature.1.as_str()]
    );
    // oras shows the tree: the image, its SBOM, the SBOM's signature.
    let tree = discover_json(&format!("{}:v1", registry.repo("app")));
    assert_eq!(tree["referrers"][0]["digest"], sbom.1.as_str());
    assert_eq!(
        tree["referrers"][0]["referrers"][0]["digest"],
        signature.1.as_str()
    );
    // Without its subject among the referrers, the signature fits no manifest of the image.
    let run = push(&layout, &proxy.repo("app"), &[&signature], &[]);
    assert_eq!(run.code, 4);
    assert!(
        run.error().contains("or another referrer"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_platform_manifest_can_be_the_subject() {
    let registry = Registry::start();
    let amd64 = Image::sized(Types::Oci, 40, 1, 100);
    let arm64 = Image::sized(Types::Oci, 41, 1, 100);
    let arm64_digest = arm64.manifest.digest.clone();
    let index = Index::new(
        Types::Oci,
        vec![(amd64, ("linux", "amd64")), (arm64, ("linux", "arm64"))],
    );
    let layout = index_layout(&index);
    let sbom = artifact(
        layout.path(),
        SPDX,
        "{}",
        &["--subject-platform", "linux/arm64"],
    );
    let run = push(&layout, &registry.repo("multi"), &[&sbom], &[]).ok();
    assert_eq!(
        run.last_line(),
        format!("{}@{}", registry.repo("multi"), index.manifest.digest)
    );
    assert_eq!(
        digests(&index_entries(&registry, "multi", &arm64_digest)),
        [sbom.1.as_str()]
    );
    assert_eq!(
        discover(&format!("{}@{arm64_digest}", registry.repo("multi"))),
        [(SPDX.to_string(), sbom.1.clone())]
    );
    // A platform the index lacks is refused when the artifact is written.
    let dir = TempDir::new().unwrap();
    let run = oci_push([
        "--write-artifact",
        dir.path().join("x").to_str().unwrap(),
        "--layout",
        &layout_arg(&layout),
        "--artifact-type",
        SPDX,
        "--subject-platform",
        "linux/s390x",
    ]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.error()
            .contains("has no manifest for it (it lists linux/amd64, linux/arm64)"),
        "{}",
        run.stderr
    );
}

#[test]
fn referrers_that_do_not_fit_the_image_are_refused_before_any_request() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(&registry, vec![]);
    let (img, layout) = image(4);
    let (_, other) = image(5);
    let foreign = artifact(other.path(), SPDX, "{}", &[]);
    let run = push(&layout, &proxy.repo("app"), &[&foreign], &[]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.error().contains(&format!(
        "is not a manifest of the image {}: the subject must be the image itself",
        img.manifest.digest
    )));
    assert_eq!(proxy.requests().len(), 0, "{}", proxy.describe());

    // The image itself, not an artifact, as a referrer: no subject.
    let run = push_dirs(
        &layout,
        &proxy.repo("app"),
        &[],
        &[&layout_arg(&layout)],
        &[],
    );
    assert_eq!(run.code, 4);
    assert!(run.error().contains("has no subject"), "{}", run.stderr);

    // A subject naming the image's digest with another size.
    let wrong = Blob::new(
        OCI_MANIFEST,
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": SPDX,
            "config": img.config.descriptor(),
            "layers": [img.config.descriptor()],
            "subject": {"mediaType": OCI_MANIFEST, "digest": img.manifest.digest, "size": 1},
        }))
        .unwrap(),
    );
    let dir = write_layout(&[&wrong], &[&img.config]);
    let run = push_dirs(&layout, &proxy.repo("app"), &[], &[&layout_arg(&dir)], &[]);
    assert_eq!(run.code, 4);
    assert!(
        run.error().contains(&format!(
            "its subject names {} as 1 bytes of {OCI_MANIFEST}, but that manifest is {} bytes",
            img.manifest.digest,
            img.manifest.bytes.len()
        )),
        "{}",
        run.stderr
    );
    assert_eq!(proxy.requests().len(), 0);
    // A referrer whose layer is left to a remote cache (a thin layout) cannot go up.
    let thin = TempDir::new().unwrap();
    let copied = Command::new("cp")
        .args([
            "-r",
            &format!("{}/.", layout_of(&foreign)),
            thin.path().to_str().unwrap(),
        ])
        .status()
        .unwrap();
    assert!(copied.success());
    let manifest_digest = &foreign.1;
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(thin.path().join("blobs/sha256").join(&manifest_digest[7..])).unwrap(),
    )
    .unwrap();
    let layer = &manifest["layers"][0];
    let layer_digest = layer["digest"].as_str().unwrap();
    std::fs::remove_file(thin.path().join("blobs/sha256").join(&layer_digest[7..])).unwrap();
    write_file(
        thin.path(),
        "oci-push-thin.json",
        json!({"omitted": [{"digest": layer_digest, "size": layer["size"]}]})
            .to_string()
            .as_bytes(),
    );
    let thin_dir = thin.path().to_str().unwrap();
    let run = push_dirs(&layout, &proxy.repo("app"), &[], &[thin_dir], &[]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.error().contains("it is a thin layout"),
        "{}",
        run.stderr
    );
    assert_eq!(proxy.requests().len(), 0);
    // The build-time check finds the same.
    let run = oci_push([
        "--verify",
        "--layout",
        &layout_arg(&layout),
        "--referrer",
        &layout_of(&foreign),
    ]);
    assert_eq!(run.code, 4);
    assert!(run.error().contains("is not a manifest of the image"));
}

#[test]
fn another_writer_creating_the_index_before_our_put_is_kept_where_conditions_are_honoured() {
    a_writer_during_our_conditional_put(false);
}

#[test]
fn another_writer_changing_the_index_before_our_put_is_kept_where_conditions_are_honoured() {
    a_writer_during_our_conditional_put(true);
}

/// Another writer puts the index while our PUT waits in a front that honours `If-Match` and
/// `If-None-Match: *`: when `index_there`, it adds a third referrer to the index we read;
/// else it creates the index we found missing. Ours is refused with 412, and merged again.
fn a_writer_during_our_conditional_put(index_there: bool) {
    let registry = Registry::start();
    let (img, layout) = image(6);
    let ours = artifact(layout.path(), SPDX, "{}", &[]);
    let theirs = artifact(layout.path(), INTOTO, "{}", &[]);
    let subject = img.manifest.digest.clone();
    let tag_path = format!("/v2/app/manifests/{}", fallback_tag(&subject));
    let tag_url = format!("{}{tag_path}", registry.base_url());
    // Their referrer is in the registry, and in the index.
    push(&layout, &registry.repo("app"), &[&theirs], &[]).ok();
    let mut competing = index_entries(&registry, "app", &subject);
    let mut expected = vec![ours.1.clone(), theirs.1.clone()];
    if index_there {
        // A third referrer, of annotations only (its blobs are the empty one, there already),
        // put by digest: the other writer adds it to the index.
        let dir = TempDir::new().unwrap();
        let out = dir.path().join("third");
        oci_push([
            "--write-artifact",
            out.to_str().unwrap(),
            "--layout",
            &layout_arg(&layout),
            "--artifact-type",
            "application/vnd.example.third",
        ])
        .ok();
        let index: Value =
            serde_json::from_slice(&std::fs::read(out.join("index.json")).unwrap()).unwrap();
        let entry = index["manifests"][0].clone();
        let digest = entry["digest"].as_str().unwrap().to_string();
        let bytes = std::fs::read(out.join("blobs/sha256").join(&digest[7..])).unwrap();
        let url = format!("{}/v2/app/manifests/{digest}", registry.base_url());
        curl_put(&url, OCI_MANIFEST, &bytes);
        competing.push(entry);
        expected.push(digest);
    } else {
        let index_digest = registry
            .head(&tag_path)
            .header("docker-content-digest")
            .unwrap();
        let deleted = curl(
            "DELETE",
            &format!("{}/v2/app/manifests/{index_digest}", registry.base_url()),
            "*/*",
        );
        assert_eq!(deleted.status, 202, "{}", deleted.text());
    }

    let index = format!("/manifests/{}", fallback_tag(&subject));
    let conditional = |wait| Fault::Conditional { wait };
    let proxy = FaultProxy::start(
        &registry,
        vec![
            Rule::nth(1, "PUT", &index, conditional(Duration::from_secs(2))),
            Rule::every("PUT", &index, conditional(Duration::ZERO)),
        ],
    );
    // While our PUT waits, they write the index.
    let run = push_while_they_write(&proxy, &layout, &ours, &tag_url, &competing);
    let puts = proxy.matching("PUT", &index);
    assert_eq!(
        puts.iter().map(|r| r.answered).collect::<Vec<_>>(),
        [Some(412), Some(201)],
        "{}",
        proxy.describe()
    );
    let condition = match index_there {
        true => "if-match",
        false => "if-none-match",
    };
    assert!(puts[0].header(condition).is_some(), "{:?}", puts[0].headers);
    expected.sort();
    assert_eq!(
        digests(&index_entries(&registry, "app", &subject)),
        expected
    );
    assert_eq!(
        discover(&format!("{}:v1", registry.repo("app"))).len(),
        expected.len()
    );
    assert!(run.stderr.contains("unchanged    v1"), "{}", run.stderr);
}

/// Pushes `ours` through `proxy`, whose rule 0 holds a request of the push while another
/// writer puts the index of `entries` at `tag_url`; returns the push, which succeeded.
fn push_while_they_write(
    proxy: &FaultProxy,
    layout: &TempDir,
    ours: &(TempDir, String),
    tag_url: &str,
    entries: &[Value],
) -> Run {
    let layout_path = layout_arg(layout);
    let repo = proxy.repo("app");
    let referrer = layout_of(ours);
    let running = spawn_oci_push([
        "--layout",
        &layout_path,
        "-r",
        &repo,
        "-t",
        "v1",
        "--referrer",
        &referrer,
    ]);
    assert!(
        proxy.wait_fired(0, 1, Duration::from_secs(30)),
        "{}",
        proxy.describe()
    );
    curl_put(tag_url, OCI_INDEX, &index_of(entries));
    let (run, _) = running.wait(Duration::from_secs(60));
    run.ok()
}

#[test]
fn an_index_that_keeps_changing_ends_the_push_after_five_rounds_without_a_tag() {
    let registry = Registry::start();
    let (img, layout) = image(19);
    let sbom = artifact(layout.path(), SPDX, "{}", &[]);
    push(&layout, &registry.repo("app"), &[], &[]).ok();
    let empty = index_of(&[]);
    let tag = fallback_tag(&img.manifest.digest);
    curl_put(
        &format!("{}/v2/app/manifests/{tag}", registry.base_url()),
        OCI_INDEX,
        &empty,
    );
    // Every read shows another ETag, every conditional PUT is refused: another writer at
    // every turn.
    let etag = |value: &str| Fault::Rewrite(vec![Edit::header("Etag", value)]);
    let index = format!("/manifests/{tag}");
    let proxy = FaultProxy::start(
        &registry,
        vec![
            Rule::every(
                "GET",
                &index,
                Fault::OneOf(vec![etag("\"a\""), etag("\"b\"")]),
            ),
            Rule::every("PUT", &index, Fault::status(412)),
        ],
    );
    let run = push(&layout, &proxy.repo("app"), &[&sbom], &["-t", "release"]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(
        run.error()
            .contains("the index kept changing under other writers (5 rounds"),
        "{}",
        run.stderr
    );
    assert_eq!(proxy.count("PUT", &index), 5, "{}", proxy.describe());
    assert!(!registry.tags("app").contains(&"release".to_string()));
}

#[test]
fn a_412_to_a_condition_that_holds_makes_the_next_put_unconditional() {
    let registry = Registry::start();
    let (img, layout) = image(13);
    let sbom = artifact(layout.path(), SPDX, "{}", &[]);
    let index = format!("/manifests/{}", fallback_tag(&img.manifest.digest));
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::first(1, "PUT", &index, Fault::status(412))],
    );
    push(&layout, &proxy.repo("app"), &[&sbom], &[]).ok();
    let puts = proxy.matching("PUT", &index);
    assert_eq!(puts.len(), 2, "{}", proxy.describe());
    assert_eq!(puts[0].header("if-none-match"), Some("*"));
    assert_eq!(puts[1].header("if-none-match"), None);
    assert_eq!(puts[1].header("if-match"), None);
    assert_eq!(
        digests(&index_entries(&registry, "app", &img.manifest.digest)),
        [sbom.1.as_str()]
    );
}

/// The front the concurrent-writer tests rely on, checked with curl: it refuses a PUT whose
/// condition fails with 412 and leaves the registry as it was, and forwards one that holds.
#[test]
fn infra_conditional_front_honours_if_match_and_if_none_match() {
    let registry = Registry::start();
    let tag_path = "/v2/cond/manifests/index";
    let first = index_of(&[]);
    curl_put(
        &format!("{}{tag_path}", registry.base_url()),
        OCI_INDEX,
        &first,
    );
    let current = registry
        .head(tag_path)
        .header("docker-content-digest")
        .unwrap();
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::every(
            "PUT",
            "/manifests/",
            Fault::Conditional {
                wait: Duration::ZERO,
            },
        )],
    );
    let dir = TempDir::new().unwrap();
    let other = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [],
        "annotations": {"k": "v"},
    }))
    .unwrap();
    let body = write_file(dir.path(), "body", &other);
    let put = |path: &str, condition: &str| {
        curl_with(
            "PUT",
            &format!("{}{path}", proxy.url()),
            "*/*",
            &[
                "-H".to_string(),
                format!("Content-Type: {OCI_INDEX}"),
                "-H".to_string(),
                condition.to_string(),
                "--data-binary".to_string(),
                format!("@{}", body.display()),
            ],
        )
        .status
    };
    assert_eq!(put(tag_path, "If-None-Match: *"), 412);
    assert_eq!(put(tag_path, "If-Match: \"sha256:0000\""), 412);
    let unchanged = registry.head(tag_path).header("docker-content-digest");
    assert_eq!(unchanged.as_deref(), Some(current.as_str()));
    assert_eq!(put(tag_path, &format!("If-Match: \"{current}\"")), 201);
    let moved = registry.head(tag_path).header("docker-content-digest");
    assert_eq!(moved, Some(sha256(&other)));
    assert_eq!(put("/v2/cond/manifests/new", "If-None-Match: *"), 201);
}

#[test]
fn another_writer_replacing_our_index_after_our_put_is_merged_back() {
    let registry = Registry::start();
    let (img, layout) = image(7);
    let ours = artifact(layout.path(), SPDX, "{}", &[]);
    let theirs = artifact(layout.path(), INTOTO, "{}", &[]);
    let subject = img.manifest.digest.clone();
    push(&layout, &registry.repo("app"), &[&theirs], &[]).ok();
    let their_entry = index_entries(&registry, "app", &subject);
    let tag_url = format!(
        "{}/v2/app/manifests/{}",
        registry.base_url(),
        fallback_tag(&subject)
    );

    // Our second read of the index (the check after our PUT) waits while they put theirs,
    // made from what they read before our PUT: ours is gone from it.
    let index = format!("/manifests/{}", fallback_tag(&subject));
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::nth(
            2,
            "GET",
            &index,
            Fault::Stall {
                wait: Duration::from_secs(2),
                forward: true,
            },
        )],
    );
    push_while_they_write(&proxy, &layout, &ours, &tag_url, &their_entry);
    assert_eq!(proxy.count("PUT", &index), 2, "{}", proxy.describe());
    let mut both = vec![ours.1.clone(), theirs.1.clone()];
    both.sort();
    assert_eq!(digests(&index_entries(&registry, "app", &subject)), both);
}

#[test]
fn a_fallback_tag_holding_an_image_is_refused_and_left_alone() {
    let (img, layout) = image(8);
    a_fallback_tag_holding(
        &layout,
        &img.manifest.digest,
        &img.manifest.digest,
        OCI_MANIFEST,
    );
}

#[test]
fn a_fallback_tag_holding_a_multi_platform_index_is_refused_and_left_alone() {
    let (img, layout) = image(14);
    // The index of other platforms, tagged with the name of the image's fallback tag.
    let amd64 = Image::sized(Types::Oci, 42, 1, 100);
    let other = Index::new(Types::Oci, vec![(amd64, ("linux", "amd64"))]);
    let other_layout = index_layout(&other);
    let registry = Registry::start();
    let tag = fallback_tag(&img.manifest.digest);
    push(&other_layout, &registry.repo("app"), &[], &["-t", &tag]).ok();
    a_fallback_tag_holding_in(
        &registry,
        &layout,
        &img.manifest.digest,
        &other.manifest.digest,
        OCI_INDEX,
    );
}

/// Someone tagged `held` (of `media_type`) with the name the referrers tag schema keeps for
/// the index of `subject`: the push refuses to overwrite it, applies no tag, and leaves it.
fn a_fallback_tag_holding(layout: &TempDir, subject: &str, held: &str, media_type: &str) {
    let registry = Registry::start();
    push(
        layout,
        &registry.repo("app"),
        &[],
        &["-t", &fallback_tag(subject)],
    )
    .ok();
    a_fallback_tag_holding_in(&registry, layout, subject, held, media_type);
}

fn a_fallback_tag_holding_in(
    registry: &Registry,
    layout: &TempDir,
    subject: &str,
    held: &str,
    media_type: &str,
) {
    let sbom = artifact(layout.path(), SPDX, "{}", &[]);
    let proxy = FaultProxy::start(registry, vec![]);
    let run = push_dirs(
        layout,
        &proxy.repo("app"),
        &["release"],
        &[&layout_of(&sbom)],
        &["--format", "json"],
    );
    assert_eq!(run.code, 5, "{}", run.stderr);
    let error = run.error();
    for fragment in [
        "not all its referrers, so no tag was applied (not attempted: release)",
        &format!("holds a {media_type}, not the OCI index of referrers"),
        "delete that tag",
    ] {
        assert!(error.contains(fragment), "{fragment}: {error}");
    }
    let tag = fallback_tag(subject);
    assert_eq!(proxy.count("PUT", &format!("/manifests/{tag}")), 0);
    let still = registry.head(&format!("/v2/app/manifests/{tag}"));
    assert_eq!(still.header("docker-content-digest").as_deref(), Some(held));
    assert!(!registry.tags("app").contains(&"release".to_string()));
    let json = run.json();
    schema::assert_follows_schema(&json);
    assert_eq!(json["tags"][0]["outcome"], "notAttempted");
    // The referrer went up (read back), and is reported as not listed.
    let pushed = registry.get(&format!("/v2/app/manifests/{}", sbom.1), OCI_MANIFEST);
    assert_eq!(pushed.status, 200, "{}", pushed.text());
    assert_eq!(sha256(&pushed.body), sbom.1);
    assert_eq!(json["referrers"][0]["digest"], sbom.1.as_str());
    assert_eq!(json["referrers"][0]["index"], "notListed");
}

#[test]
fn a_fallback_tag_kept_immutable_is_exit_7_with_the_way_out() {
    let registry = Registry::start();
    let (img, layout) = image(15);
    let first = artifact(layout.path(), SPDX, "{}", &[]);
    let second = artifact(layout.path(), INTOTO, "{}", &[]);
    push(&layout, &registry.repo("app"), &[&first], &[]).ok();
    let tag = fallback_tag(&img.manifest.digest);
    let refused = Fault::status(409).with_body(
        &json!({"errors": [{"code": "DENIED", "message": "the tag is immutable", "detail": null}]})
            .to_string(),
    );
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::every("PUT", &format!("/manifests/{tag}"), refused)],
    );
    let run = push(&layout, &proxy.repo("app"), &[&second], &["-t", "release"]);
    assert_eq!(run.code, 7, "{}", run.stderr);
    for fragment in [
        "no tag was applied",
        "its tags are immutable, so the referrers tag schema cannot add to the index",
        "exempt tags matching sha256-*",
    ] {
        assert!(run.error().contains(fragment), "{fragment}: {}", run.stderr);
    }
    assert!(!registry.tags("app").contains(&"release".to_string()));
}

#[test]
fn a_refused_index_update_leaves_no_tag_and_a_re_run_finishes() {
    let registry = Registry::start();
    let (img, layout) = image(9);
    let sbom = artifact(layout.path(), SPDX, "{}", &[]);
    let index = format!("/manifests/{}", fallback_tag(&img.manifest.digest));
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::nth(1, "PUT", &index, Fault::status(403))],
    );
    let run = push(&layout, &proxy.repo("app"), &[&sbom], &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.error().contains("no tag was applied"), "{}", run.stderr);
    assert!(registry.tags("app").is_empty());
    push(&layout, &proxy.repo("app"), &[&sbom], &[]).ok();
    assert_eq!(
        digests(&index_entries(&registry, "app", &img.manifest.digest)),
        [sbom.1.as_str()]
    );
    registry.assert_manifest("app", "v1", &img.manifest);
}

#[test]
fn a_dry_run_reports_the_referrers_and_writes_nothing() {
    let registry = Registry::start();
    let (img, layout) = image(10);
    let sbom = artifact(layout.path(), SPDX, "{}", &[]);
    let repo = registry.repo("app");
    let run = push(&layout, &repo, &[&sbom], &["--dry-run", "--format", "json"]).ok();
    schema::assert_follows_schema(&run.json());
    let referrer = &run.json()["referrers"][0];
    assert_eq!(referrer["outcome"], "wouldPush");
    assert_eq!(referrer["index"], "tag");
    assert_eq!(referrer["indexChanged"], true);
    assert!(
        run.stderr.contains("would be added to the index tag"),
        "{}",
        run.stderr
    );
    assert!(registry.catalog().is_empty(), "{:?}", registry.catalog());
    push(&layout, &repo, &[&sbom], &[]).ok();
    let run = push(&layout, &repo, &[&sbom], &["--dry-run", "--format", "json"]).ok();
    let referrer = &run.json()["referrers"][0];
    assert_eq!(referrer["outcome"], "exists");
    assert_eq!(referrer["indexChanged"], false);
    assert_eq!(
        digests(&index_entries(&registry, "app", &img.manifest.digest)),
        [sbom.1.as_str()]
    );
}

#[test]
fn every_destination_gets_the_referrers() {
    let registry = Registry::start();
    let (img, layout) = image(11);
    let sbom = artifact(layout.path(), SPDX, "{}", &[]);
    let mirror = registry.repo("mirror");
    let run = push(&layout, &registry.repo("app"), &[&sbom], &["-r", &mirror]).ok();
    assert!(
        run.stderr.contains("destinations: pushed"),
        "{}",
        run.stderr
    );
    for path in ["app", "mirror"] {
        assert_eq!(
            digests(&index_entries(&registry, path, &img.manifest.digest)),
            [sbom.1.as_str()],
            "{path}"
        );
        registry.assert_manifest(path, "v1", &img.manifest);
    }
}

#[test]
fn write_artifact_is_reproducible_and_refuses_bad_input() {
    let (_, layout) = image(12);
    let a = artifact(layout.path(), SPDX, "same", &["--annotation", "k=v"]);
    let b = artifact(layout.path(), SPDX, "same", &["--annotation", "k=v"]);
    assert_eq!(a.1, b.1, "the same inputs give the same digest");
    let out = TempDir::new().unwrap();
    let into = out.path().join("a");
    let into = into.to_str().unwrap();
    let layout = layout_arg(&layout);
    // `--write-artifact INTO --layout L --artifact-type SPDX`, and more.
    let base = [
        "--write-artifact",
        into,
        "--layout",
        &layout,
        "--artifact-type",
        SPDX,
    ];
    let with = |more: &[&'static str]| [&base[..], more].concat();
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            base[..4].to_vec(),
            1,
            "--write-artifact needs --artifact-type TYPE",
        ),
        (
            [&base[..5], &["json"]].concat(),
            1,
            "--artifact-type json: not a media type",
        ),
        (
            with(&["--artifact-file", "/nonexistent/sbom.json:application/json"]),
            4,
            "--artifact-file /nonexistent/sbom.json: cannot read it",
        ),
        (
            with(&["--annotation", "k=1", "--annotation", "k=2"]),
            1,
            "--annotation k: given twice",
        ),
        (
            with(&["--subject-platform", "linux/amd64"]),
            4,
            "is a single image, not an index",
        ),
        (
            vec!["--layout", &layout, "-r", "h.io/x", "--artifact-type", SPDX],
            1,
            "--artifact-type goes with --write-artifact DIR",
        ),
        (
            with(&["-r", "h.io/x"]),
            1,
            "--repository does not go with --write-artifact DIR",
        ),
    ];
    for (args, code, message) in cases {
        let run = oci_push(&args);
        assert_eq!(run.code, code, "{args:?}: {}", run.stderr);
        assert!(run.error().contains(message), "{args:?}: {}", run.stderr);
        // Nothing half written, where the command names the layout to write.
        if args.contains(&into) {
            assert!(!Path::new(into).exists(), "{args:?} left {into}");
        }
    }
    // And there, once fixed, the same command writes it.
    let fixed = oci_push(base);
    assert_eq!(fixed.code, 0, "{}", fixed.stderr);
    assert!(Path::new(into).join("index.json").is_file());
    std::fs::remove_dir_all(into).unwrap();
    // Annotations past 1 MiB in all (an argument holds at most 128 KiB).
    let big: Vec<String> = (0..10)
        .map(|i| format!("k{i}={}", "v".repeat(120 * 1024)))
        .collect();
    let mut args = base.to_vec();
    for annotation in &big {
        args.extend(["--annotation", annotation.as_str()]);
    }
    let run = oci_push(&args);
    assert_eq!(run.code, 1, "{}", run.error());
    assert!(run
        .error()
        .contains("bytes of annotations; registries refuse manifests that large"));
    // A directory with something in it is not written over.
    let full = write_file(out.path(), "keep", b"x");
    let run = oci_push([
        "--write-artifact",
        out.path().to_str().unwrap(),
        "--layout",
        &layout,
        "--artifact-type",
        SPDX,
    ]);
    assert_eq!(run.code, 1);
    assert!(run.error().contains("the directory is not empty"));
    assert_eq!(std::fs::read(full).unwrap(), b"x");
}
