//! What people and scripts see: the plain progress lines, --quiet, --format json (checked
//! against docs/push-result.schema.json), --dry-run, and the bars under a pseudo-terminal.

mod common;

use common::*;
use serde_json::Value;

/// Stderr with the times (which vary) taken out: `... in 12 ms` and `time:   0.3 s`.
fn without_times(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .map(|line| match line.find(" in ") {
            Some(at) if line.ends_with(" ms") || line.ends_with(" s") => line[..at].to_string(),
            _ if line.starts_with("  time:   ") => "  time:   T".to_string(),
            _ => line.to_string(),
        })
        .collect()
}

#[test]
fn plain_progress_lines_in_order() {
    let registry = Registry::start();
    // Sizes tell the blobs apart: with one job they go largest first.
    let image = Image::new(
        Types::Oci,
        ("linux", "amd64"),
        vec![pseudo_random(1, 3000), pseudo_random(2, 2000)],
    );
    let layout = image_layout(&image);
    let repo = registry.repo("lines");
    let run = oci_push([
        "--layout",
        &layout_arg(&layout),
        "-r",
        &repo,
        "-j",
        "1",
        "-t",
        "v1",
        "-t",
        "v2",
    ])
    .ok();
    let (config, big, small) = (&image.config, &image.layers[0], &image.layers[1]);
    let total = format!("{:.1} KiB", (5000 + config.bytes.len()) as f64 / 1024.0);
    let expected = vec![
        format!("pushing to {repo}: 3 blob(s) ({total}), 1 manifest(s)"),
        format!("  uploading    {} 2.9 KiB", big.digest),
        format!("  uploaded     {} 2.9 KiB", big.digest),
        format!("  uploading    {} 2.0 KiB", small.digest),
        format!("  uploaded     {} 2.0 KiB", small.digest),
        format!("  uploading    {} {} B", config.digest, config.bytes.len()),
        format!("  uploaded     {} {} B", config.digest, config.bytes.len()),
        format!("  manifest     {} {OCI_MANIFEST}", image.manifest.digest),
        "  tagged       v1".to_string(),
        "  tagged       v2".to_string(),
        format!("pushed {repo}@{}", image.manifest.digest),
        format!("  image:  OCI image, linux/amd64, 2 layer(s), {total}"),
        format!("  blobs:  sent {total} (3), mounted 0 B (0), already there 0 B (0)"),
        "  tags:   applied v1, v2".to_string(),
        "  time:   T".to_string(),
    ];
    assert_eq!(
        without_times(&run.stderr),
        expected,
        "stderr:\n{}",
        run.stderr
    );
    assert!(!run.stderr.contains('\r'), "no carriage returns in a log");
    assert_eq!(run.stdout, format!("{repo}@{}\n", image.manifest.digest));
    // What the lines say, read back from the registry.
    assert_eq!(registry.tags("lines"), ["v1", "v2"]);
    registry.assert_manifest("lines", &image.manifest.digest, &image.manifest);
    for blob in image.blobs() {
        registry.assert_blob("lines", blob);
    }

    // Again: the registry has it all; one tag is new.
    let again = oci_push([
        "--layout",
        &layout_arg(&layout),
        "-r",
        &repo,
        "-t",
        "v2",
        "-t",
        "v3",
    ])
    .ok();
    let expected = vec![
        format!("pushing to {repo}: 3 blob(s) ({total}), 1 manifest(s)"),
        format!(
            "  exists       {} {OCI_MANIFEST} (the registry has the image: no blob is sent)",
            image.manifest.digest
        ),
        "  unchanged    v2 (already points at the image)".to_string(),
        "  tagged       v3".to_string(),
        format!("pushed {repo}@{}", image.manifest.digest),
        format!("  image:  OCI image, linux/amd64, 2 layer(s), {total}"),
        format!("  blobs:  none sent: the registry has the image ({total})"),
        "  tags:   applied v3; unchanged v2".to_string(),
        "  time:   T".to_string(),
    ];
    assert_eq!(
        without_times(&again.stderr),
        expected,
        "stderr:\n{}",
        again.stderr
    );
    assert_eq!(registry.tags("lines"), ["v1", "v2", "v3"]);
    for tag in ["v1", "v2", "v3"] {
        registry.assert_manifest("lines", tag, &image.manifest);
    }
}

#[test]
fn quiet_prints_only_the_reference() {
    let registry = Registry::start();
    let image = Image::sized(Types::Oci, 3, 2, 1000);
    let layout = image_layout(&image);
    let repo = registry.repo("quiet");
    let run = oci_push([
        "--layout",
        &layout_arg(&layout),
        "-r",
        &repo,
        "-q",
        "-t",
        "x",
    ])
    .ok();
    assert_eq!(run.stderr, "");
    assert_eq!(run.stdout, format!("{repo}@{}\n", image.manifest.digest));
    registry.assert_manifest("quiet", "x", &image.manifest);
}

#[test]
fn json_result_follows_its_schema() {
    let registry = Registry::start();
    let shared = pseudo_random(40, 4000);
    let a = Image::new(
        Types::Oci,
        ("linux", "amd64"),
        vec![shared.clone(), pseudo_random(41, 100)],
    );
    let b = Image::new(
        Types::Oci,
        ("linux", "arm64"),
        vec![shared, pseudo_random(42, 100)],
    );
    let index = Index::new(
        Types::Oci,
        vec![(a, ("linux", "amd64")), (b, ("linux", "arm64"))],
    );
    let layout = index_layout(&index);
    let repo = registry.repo("json");
    oci_push([
        "--layout",
        &layout_arg(&layout),
        "-r",
        &repo,
        "-t",
        "old",
        "-q",
    ])
    .ok();
    // Point `moved` somewhere else first, to see its previous digest reported.
    let other = Image::sized(Types::Oci, 43, 1, 10);
    oci_push([
        "--layout",
        &layout_arg(&image_layout(&other)),
        "-r",
        &repo,
        "-t",
        "moved",
        "-q",
    ])
    .ok();

    let run = oci_push([
        "--layout",
        &layout_arg(&layout),
        "-r",
        &repo,
        "--format",
        "json",
        "-t",
        "old",
        "-t",
        "moved",
    ])
    .ok();
    let result: Value = serde_json::from_str(&run.stdout).expect("stdout is one JSON object");
    schema::assert_follows_schema(&result);
    assert_eq!(result["repository"], repo);
    assert_eq!(result["digest"], index.manifest.digest);
    assert_eq!(
        result["reference"],
        format!("{repo}@{}", index.manifest.digest)
    );
    assert_eq!(result["mediaType"], OCI_INDEX);
    assert_eq!(
        result["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    assert_eq!(result["imageExisted"], true);
    assert_eq!(result["error"], Value::Null);
    assert_eq!(
        result["tags"],
        serde_json::json!([
            {"tag": "old", "outcome": "unchanged", "previous": index.manifest.digest},
            {"tag": "moved", "outcome": "applied", "previous": other.manifest.digest},
        ])
    );
    registry.assert_manifest("json", "moved", &index.manifest);

    // A cold push: every blob with its outcome, once.
    let run = oci_push([
        "--layout",
        &layout_arg(&layout),
        "-r",
        &registry.repo("json2"),
        "--format",
        "json",
        "-j",
        "1",
    ])
    .ok();
    let result: Value = serde_json::from_str(&run.stdout).unwrap();
    schema::assert_follows_schema(&result);
    let blobs = result["blobs"].as_array().unwrap();
    assert_eq!(blobs.len(), 5, "2 configs, 1 shared and 2 own layers");
    assert!(blobs
        .iter()
        .all(|b| b["outcome"] == "uploaded" && b["seconds"].is_number()));
    assert_eq!(blobs.iter().filter(|b| b["kind"] == "config").count(), 2);
    let total: u64 = blobs.iter().map(|b| b["size"].as_u64().unwrap()).sum();
    assert_eq!(result["bytes"]["sent"].as_u64(), Some(total));
    assert_eq!(result["bytes"]["total"].as_u64(), Some(total));
}

#[test]
fn json_on_failure_has_the_error_and_the_exit_code_is_unchanged() {
    let registry = Registry::start();
    let image = Image::sized(Types::Oci, 44, 2, 1000);
    let layout = image_layout(&image);
    let path = blob_path(layout.path(), &image.layers[0]);
    let mut bytes = image.layers[0].bytes.clone();
    bytes[0] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let run = oci_push([
        "--layout",
        &layout_arg(&layout),
        "-r",
        &registry.repo("bad"),
        "--format",
        "json",
        "-t",
        "a",
        "-t",
        "b",
    ]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    let result: Value = serde_json::from_str(&run.stdout).expect("stdout is one JSON object");
    schema::assert_follows_schema(&result);
    assert_eq!(result["error"]["exitCode"], 4);
    assert_eq!(result["error"]["message"].as_str(), Some(run.error()));
    assert_eq!(
        result["tags"],
        serde_json::json!([
            {"tag": "a", "outcome": "notAttempted", "previous": null},
            {"tag": "b", "outcome": "notAttempted", "previous": null},
        ])
    );
}

#[test]
fn dry_run_writes_nothing_and_says_what_would_happen() {
    let registry = Registry::start();
    let base = Image::sized(Types::Oci, 45, 2, 3000);
    oci_push([
        "--layout",
        &layout_arg(&image_layout(&base)),
        "-r",
        &registry.repo("base"),
        "-q",
    ])
    .ok();
    let mut layers: Vec<Vec<u8>> = base.layers.iter().map(|l| l.bytes.clone()).collect();
    layers.push(pseudo_random(46, 500));
    let app = Image::new(Types::Oci, ("linux", "amd64"), layers);
    let layout = image_layout(&app);
    oci_push([
        "--layout",
        &layout_arg(&image_layout(&Image::sized(Types::Oci, 47, 1, 10))),
        "-r",
        &registry.repo("app"),
        "-t",
        "live",
        "-q",
    ])
    .ok();
    let catalog_before = registry.catalog();
    let tags_before = registry.tags("app");

    let repo = registry.repo("app");
    let run = oci_push([
        "--layout",
        &layout_arg(&layout),
        "-r",
        &repo,
        "--dry-run",
        "--mount-from",
        &registry.repo("base"),
        "-t",
        "live",
        "-t",
        "new",
    ])
    .ok();
    assert_eq!(registry.catalog(), catalog_before);
    assert_eq!(registry.tags("app"), tags_before);
    let status = registry
        .head(&format!("/v2/app/manifests/{}", app.manifest.digest))
        .status;
    assert_eq!(status, 404, "the manifest must not be pushed");
    for layer in &base.layers {
        run.assert_step("would mount", &layer.digest);
    }
    run.assert_step("would upload", &app.layers[2].digest);
    run.assert_step("would upload", &app.config.digest);
    run.assert_step("would push", &app.manifest.digest);
    assert!(
        run.stderr.contains("  would move   live from sha256:"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("  would tag    new (new tag)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .starts_with(&format!("dry run: nothing will be written to {repo}")),
        "{}",
        run.stderr
    );
    assert_eq!(run.last_line(), format!("{repo}@{}", app.manifest.digest));

    let run = oci_push([
        "--layout",
        &layout_arg(&layout),
        "-r",
        &repo,
        "--dry-run",
        "--format",
        "json",
        "-t",
        "live",
    ])
    .ok();
    let result: Value = serde_json::from_str(&run.stdout).unwrap();
    schema::assert_follows_schema(&result);
    assert_eq!(result["dryRun"], true);
    // Without --mount-from, every blob would be sent: the base's are in another repository.
    assert_eq!(result["bytes"]["sent"], result["bytes"]["total"]);
    let blobs = result["blobs"].as_array().unwrap();
    assert!(
        blobs.iter().all(|b| b["outcome"] == "uploaded"),
        "{blobs:?}"
    );
    // Every blob of the image is in the report, once, and the bytes add up to the image's.
    assert_eq!(blobs.len(), app.blobs().len(), "{blobs:?}");
    let mut reported: Vec<&str> = blobs
        .iter()
        .map(|b| b["digest"].as_str().unwrap())
        .collect();
    reported.sort_unstable();
    let mut expected: Vec<&str> = app.blobs().iter().map(|b| b.digest.as_str()).collect();
    expected.sort_unstable();
    assert_eq!(reported, expected);
    let image_bytes: u64 = app.blobs().iter().map(|b| b.bytes.len() as u64).sum();
    assert_eq!(result["bytes"]["total"].as_u64(), Some(image_bytes));
    assert_eq!(result["bytes"]["sent"].as_u64(), Some(image_bytes));
    assert_eq!(registry.catalog(), catalog_before);
}

/// `oci-push ARGS` under a pseudo-terminal (`script`), as a person at a shell runs it: what
/// the terminal got. The run must succeed.
fn on_a_terminal(args: &str) -> String {
    let command = format!("{} {args}", env!("CARGO_BIN_EXE_oci-push"));
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .output()
        .expect("run script (util-linux)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("\u{1b}["),
        "bars draw with terminal escapes:\n{text}"
    );
    // --verbose lines are printed whole above the bars, each on a line of its own.
    let requests: Vec<&str> = text
        .split(['\n', '\r'])
        .filter(|l| l.contains("http: PUT "))
        .collect();
    assert!(!requests.is_empty(), "{text}");
    for line in requests {
        let at = line.find("http: PUT ").unwrap();
        assert!(
            line[at..].ends_with(" ms)"),
            "a request line cut by a bar: {line:?}"
        );
    }
    // No plain progress lines on a terminal: the bars replace them.
    assert!(!text.contains("  uploading    "), "{text}");
    text
}

#[test]
fn bars_on_a_terminal_then_the_summary() {
    let registry = Registry::start();
    let image = Image::sized(Types::Oci, 48, 3, 200_000);
    let layout = image_layout(&image);
    let repo = registry.repo("tty");
    let text = on_a_terminal(&format!(
        "--layout {} -r {repo} -t tty --verbose",
        layout_arg(&layout)
    ));
    assert!(
        text.contains(&format!("pushed {repo}@{}", image.manifest.digest)),
        "{text}"
    );
    assert!(text.contains("  tags:   applied tty"), "{text}");
    registry.assert_manifest("tty", "tty", &image.manifest);
}

#[test]
fn bars_for_two_destinations_and_a_referrer() {
    let registry = Registry::start();
    let image = Image::sized(Types::Oci, 49, 3, 200_000);
    let layout = image_layout(&image);
    let sbom = tempfile::TempDir::new().unwrap();
    let sbom_layout = sbom.path().join("sbom");
    let sbom_digest = oci_push([
        "--write-artifact",
        sbom_layout.to_str().unwrap(),
        "--layout",
        &layout_arg(&layout),
        "--artifact-type",
        "application/spdx+json",
    ])
    .ok()
    .last_line()
    .to_string();
    let (a, b) = (registry.repo("tty/a"), registry.repo("tty/b"));
    let text = on_a_terminal(&format!(
        "--layout {} -r {a} -r {b} -t tty --referrer {} --verbose",
        layout_arg(&layout),
        sbom_layout.display()
    ));
    for repo in [&a, &b] {
        assert!(
            text.contains(&format!("pushed {repo}@{}", image.manifest.digest)),
            "{text}"
        );
    }
    assert_eq!(
        text.matches("  refs:   1 (application/spdx+json), listed in the index tag sha256-")
            .count(),
        2,
        "{text}"
    );
    assert!(
        text.contains(&format!("destinations: pushed {a}, {b}")),
        "{text}"
    );
    let fallback = image.manifest.digest.replacen(':', "-", 1);
    for path in ["tty/a", "tty/b"] {
        registry.assert_manifest(path, "tty", &image.manifest);
        // Each destination's fallback index lists the SBOM, as the refs line says.
        let index = registry.get(&format!("/v2/{path}/manifests/{fallback}"), OCI_INDEX);
        assert_eq!(index.status, 200, "{path}: {}", index.text());
        assert!(
            index.text().contains(&sbom_digest),
            "{path}: {}",
            index.text()
        );
    }
}
