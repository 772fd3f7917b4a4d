//! Pushes to a real distribution registry, read back with curl.

mod common;

use common::*;

#[test]
fn image_is_pushed_by_digest_then_tagged_in_order() {
    let registry = Registry::start();
    let image = Image::sized(Types::Oci, 1, 3, 300 * 1024);
    let layout = image_layout(&image);
    let work = tempfile::TempDir::new().unwrap();
    let tags = write_file(work.path(), "tags.txt", b"v1\r\n\n  latest  \nv1\n");
    let digest_file = work.path().join("digest");
    let repo = registry.repo("team/app");

    let run = oci_push([
        "--layout",
        &layout_arg(&layout),
        "-r",
        &repo,
        "--tags-file",
        tags.to_str().unwrap(),
        "--digest-file",
        digest_file.to_str().unwrap(),
    ])
    .ok();

    let expected = format!("{repo}@{}", image.manifest.digest);
    assert_eq!(run.last_line(), expected);
    assert_eq!(
        std::fs::read_to_string(&digest_file).unwrap(),
        format!("{expected}\n")
    );
    registry.assert_manifest("team/app", &image.manifest.digest, &image.manifest);
    registry.assert_manifest("team/app", "v1", &image.manifest);
    registry.assert_manifest("team/app", "latest", &image.manifest);
    assert_eq!(registry.tags("team/app"), ["latest", "v1"]);
    for blob in image.blobs() {
        registry.assert_blob("team/app", blob);
    }
    // Tags are applied in file order, each once, after every blob and manifest.
    let steps: Vec<&str> = run.stderr.lines().map(str::trim).collect();
    let manifest_at = steps
        .iter()
        .position(|l| l.starts_with("manifest     "))
        .unwrap();
    let v1_at = steps.iter().position(|l| *l == "tagged       v1").unwrap();
    let latest_at = steps
        .iter()
        .position(|l| *l == "tagged       latest")
        .unwrap();
    assert!(manifest_at < v1_at && v1_at < latest_at, "{}", run.stderr);
    assert_eq!(run.stderr.matches("tagged       v1\n").count(), 1);
    assert_eq!(run.stderr.matches("  uploaded     ").count(), 4);
}

#[test]
fn second_push_uploads_nothing() {
    let registry = Registry::start();
    let image = Image::sized(Types::Oci, 2, 2, 10 * 1024);
    let layout = image_layout(&image);
    let repo = registry.repo("app");
    oci_push(["--layout", &layout_arg(&layout), "-r", &repo, "-t", "one"]).ok();
    let again = oci_push(["--layout", &layout_arg(&layout), "-r", &repo, "-t", "two"]).ok();
    // The registry has the image: not one blob is looked at, let alone sent.
    again.assert_step("exists", &image.manifest.digest);
    assert_eq!(
        again.stderr.matches("uploading").count() + again.stderr.matches("uploaded").count(),
        0,
        "{}",
        again.stderr
    );
    assert_eq!(registry.tags("app"), ["one", "two"]);
    registry.assert_manifest("app", "two", &image.manifest);
}

#[test]
fn multi_platform_index_pushes_children_first_and_shared_layers_once() {
    let registry = Registry::start();
    let shared = pseudo_random(77, 64 * 1024);
    let amd64 = Image::new(
        Types::Oci,
        ("linux", "amd64"),
        vec![shared.clone(), pseudo_random(1, 1000)],
    );
    let arm64 = Image::new(
        Types::Oci,
        ("linux", "arm64"),
        vec![shared.clone(), pseudo_random(2, 1000)],
    );
    let s390x = Image::new(
        Types::Oci,
        ("linux", "s390x"),
        vec![shared, pseudo_random(3, 1000)],
    );
    let index = Index::new(
        Types::Oci,
        vec![
            (amd64, ("linux", "amd64")),
            (arm64, ("linux", "arm64")),
            (s390x, ("linux", "s390x")),
        ],
    );
    let layout = index_layout(&index);
    let repo = registry.repo("multi/arch");

    let run = oci_push(["--layout", &layout_arg(&layout), "-r", &repo, "-t", "v2"]).ok();

    assert_eq!(run.last_line(), format!("{repo}@{}", index.manifest.digest));
    registry.assert_manifest("multi/arch", "v2", &index.manifest);
    registry.assert_manifest("multi/arch", &index.manifest.digest, &index.manifest);
    for image in &index.images {
        registry.assert_manifest("multi/arch", &image.manifest.digest, &image.manifest);
        for blob in image.blobs() {
            registry.assert_blob("multi/arch", blob);
        }
    }
    let shared_digest = &index.images[0].layers[0].digest;
    let uploaded_shared = format!("uploaded     {shared_digest}");
    assert_eq!(
        run.stderr.matches(&uploaded_shared).count(),
        1,
        "{}",
        run.stderr
    );
    // 3 configs + 3 own layers + 1 shared layer.
    assert_eq!(run.stderr.matches("  uploaded     ").count(), 7);
    let manifest_lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("  manifest     "))
        .collect();
    assert_eq!(manifest_lines.len(), 4);
    assert!(
        manifest_lines[3].contains(&index.manifest.digest),
        "index last: {manifest_lines:?}"
    );
}

#[test]
fn docker_schema2_types_are_kept() {
    let registry = Registry::start();
    let a = Image::new(
        Types::Docker,
        ("linux", "amd64"),
        vec![pseudo_random(5, 2000)],
    );
    let b = Image::new(
        Types::Docker,
        ("linux", "arm64"),
        vec![pseudo_random(6, 2000)],
    );
    let list = Index::new(
        Types::Docker,
        vec![(a, ("linux", "amd64")), (b, ("linux", "arm64"))],
    );
    let layout = index_layout(&list);
    oci_push([
        "--layout",
        &layout_arg(&layout),
        "-r",
        &registry.repo("docker/list"),
        "-t",
        "latest",
    ])
    .ok();
    // assert_manifest checks the Content-Type the registry serves: the Docker types, unchanged.
    registry.assert_manifest("docker/list", "latest", &list.manifest);
    for image in &list.images {
        registry.assert_manifest("docker/list", &image.manifest.digest, &image.manifest);
    }
}

#[test]
fn no_tags_pushes_by_digest_only() {
    let registry = Registry::start();
    let image = Image::sized(Types::Oci, 8, 1, 100);
    let layout = image_layout(&image);
    let work = tempfile::TempDir::new().unwrap();
    let empty = write_file(work.path(), "tags", b"\n\n");
    let repo = registry.repo("untagged");
    let run = oci_push([
        "--layout",
        &layout_arg(&layout),
        "-r",
        &repo,
        "--tags-file",
        empty.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(run.last_line(), format!("{repo}@{}", image.manifest.digest));
    registry.assert_manifest("untagged", &image.manifest.digest, &image.manifest);
    assert!(registry.tags("untagged").is_empty());
}

#[test]
fn many_tags_and_tag_flags_override_the_file() {
    let registry = Registry::start();
    let image = Image::sized(Types::Oci, 9, 1, 100);
    let layout = image_layout(&image);
    let work = tempfile::TempDir::new().unwrap();
    let many: Vec<String> = (0..40).map(|i| format!("t{i:02}")).collect();
    let file = write_file(work.path(), "tags", many.join("\n").as_bytes());
    oci_push([
        "--layout",
        &layout_arg(&layout),
        "-r",
        &registry.repo("many"),
        "--tags-file",
        file.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(registry.tags("many"), many);

    let run = oci_push([
        "--layout",
        &layout_arg(&layout),
        "-r",
        &registry.repo("override"),
        "--tags-file",
        file.to_str().unwrap(),
        "--tag",
        "only",
        "-t",
        "this",
    ])
    .ok();
    assert_eq!(registry.tags("override"), ["only", "this"]);
    assert!(!run.stderr.contains("t00"));
}

#[test]
fn blobs_reached_through_symlinks_are_pushed() {
    // Bazel tree artifacts are often symlinks into the output tree.
    let registry = Registry::start();
    let image = Image::sized(Types::Oci, 10, 2, 1000);
    let real = image_layout(&image);
    let linked = tempfile::TempDir::new().unwrap();
    let layout = linked.path().join("layout");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    for name in ["oci-layout", "index.json"] {
        std::os::unix::fs::symlink(real.path().join(name), layout.join(name)).unwrap();
    }
    for blob in image.blobs().into_iter().chain([&image.manifest]) {
        std::os::unix::fs::symlink(blob_path(real.path(), blob), blob_path(&layout, blob)).unwrap();
    }
    oci_push([
        "--layout",
        layout.to_str().unwrap(),
        "-r",
        &registry.repo("linked"),
        "-t",
        "x",
    ])
    .ok();
    registry.assert_manifest("linked", "x", &image.manifest);
    for blob in image.blobs() {
        registry.assert_blob("linked", blob);
    }
}

#[test]
fn repository_flags_and_files_are_destinations_in_order_and_replace_the_defaults() {
    let registry = Registry::start();
    let image = Image::sized(Types::Oci, 11, 1, 100);
    let layout = image_layout(&image);
    let work = tempfile::TempDir::new().unwrap();
    let file = write_file(
        work.path(),
        "repo",
        format!(
            "{}\n\n{}\n",
            registry.repo("from/file-1"),
            registry.repo("from/file-2")
        )
        .as_bytes(),
    );
    let run = oci_push([
        "--layout",
        &layout_arg(&layout),
        "--default-repository",
        &registry.repo("from/default"),
        "-r",
        &registry.repo("from/flag"),
        "--repository-file",
        file.to_str().unwrap(),
        "-t",
        "a",
    ])
    .ok();
    for path in ["from/flag", "from/file-1", "from/file-2"] {
        registry.assert_manifest(path, "a", &image.manifest);
    }
    registry.assert_nothing_tagged("from/default", &[&image.manifest.digest]);
    let references: Vec<String> = ["from/flag", "from/file-1", "from/file-2"]
        .iter()
        .map(|path| format!("{}@{}", registry.repo(path), image.manifest.digest))
        .collect();
    assert_eq!(run.last_line(), references.join(" "));
    // Without --repository, the defaults (the rule's) serve.
    oci_push([
        "--layout",
        &layout_arg(&layout),
        "--default-repository",
        &registry.repo("from/default"),
        "-t",
        "b",
    ])
    .ok();
    registry.assert_manifest("from/default", "b", &image.manifest);
}

#[test]
fn verify_checks_every_blob_offline() {
    let image = Image::sized(Types::Oci, 12, 2, 5000);
    let layout = image_layout(&image);
    let work = tempfile::TempDir::new().unwrap();
    let out = work.path().join("digest");
    let run = oci_push([
        "--verify",
        "--layout",
        &layout_arg(&layout),
        "--digest-file",
        out.to_str().unwrap(),
    ])
    .ok();
    // With a digest file success is silent, for quiet build logs.
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr, "");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        format!("{}\n", image.manifest.digest)
    );
    let run = oci_push([
        "--verify",
        "--layout",
        &layout_arg(&layout),
        "-r",
        "ghcr.io/org/app",
    ])
    .ok();
    assert_eq!(
        run.last_line(),
        format!("ghcr.io/org/app@{}", image.manifest.digest)
    );

    // Same size, different bytes: only hashing finds it.
    let layer = &image.layers[1];
    let path = blob_path(layout.path(), layer);
    let mut bytes = layer.bytes.clone();
    bytes[100] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let run = oci_push(["--verify", "--layout", &layout_arg(&layout)]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.error().starts_with(&format!(
            "blob {} is corrupt: {} hashes to sha256:",
            layer.digest,
            path.display()
        )),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
}

#[test]
fn blobs_the_registry_has_are_not_sent_again() {
    let registry = Registry::start();
    let base = Image::sized(Types::Oci, 20, 2, 50_000);
    let mut layers: Vec<Vec<u8>> = base.layers.iter().map(|l| l.bytes.clone()).collect();
    layers.push(pseudo_random(21, 1000));
    let app = Image::new(Types::Oci, ("linux", "arm64"), layers);
    oci_push([
        "--layout",
        &layout_arg(&image_layout(&base)),
        "-r",
        &registry.repo("app"),
        "-t",
        "base",
    ])
    .ok();
    let run = oci_push([
        "--layout",
        &layout_arg(&image_layout(&app)),
        "-r",
        &registry.repo("app"),
        "-t",
        "app",
    ])
    .ok();
    for layer in &base.layers {
        run.assert_step("exists", &layer.digest);
    }
    run.assert_step("uploaded", &app.layers[2].digest);
    run.assert_step("uploaded", &app.config.digest);
    registry.assert_manifest("app", "app", &app.manifest);
    registry.assert_manifest("app", "base", &base.manifest);
}

#[test]
fn a_tag_already_on_the_image_is_not_rewritten() {
    let registry = Registry::start();
    let image = Image::sized(Types::Oci, 22, 1, 100);
    let layout = image_layout(&image);
    let repo = registry.repo("immutable");
    oci_push(["--layout", &layout_arg(&layout), "-r", &repo, "-t", "v1"]).ok();
    let run = oci_push([
        "--layout",
        &layout_arg(&layout),
        "-r",
        &repo,
        "-t",
        "v1",
        "-t",
        "v2",
    ])
    .ok();
    assert!(run.stderr.contains("unchanged    v1"), "{}", run.stderr);
    assert!(run.stderr.contains("tagged       v2"), "{}", run.stderr);
    assert_eq!(registry.tags("immutable"), ["v1", "v2"]);
    registry.assert_manifest("immutable", "v2", &image.manifest);
}

#[test]
fn missing_blobs_are_mounted_from_another_repository() {
    let registry = Registry::start();
    let base = Image::sized(Types::Oci, 23, 3, 20_000);
    oci_push([
        "--layout",
        &layout_arg(&image_layout(&base)),
        "-r",
        &registry.repo("lib/base"),
    ])
    .ok();
    let layout = image_layout(&base);
    let run = oci_push([
        "--layout",
        &layout_arg(&layout),
        "-r",
        &registry.repo("team/app"),
        "-t",
        "v1",
        "--mount-from",
        &registry.repo("nothing/here"),
        "--mount-from",
        &registry.repo("lib/base"),
    ])
    .ok();
    for blob in base.blobs() {
        run.assert_step("mounted", &blob.digest);
        registry.assert_blob("team/app", blob);
    }
    registry.assert_manifest("team/app", "v1", &base.manifest);
}

#[test]
fn the_base_image_annotation_is_a_mount_hint() {
    let registry = Registry::start();
    let base = Image::sized(Types::Oci, 24, 2, 20_000);
    oci_push([
        "--layout",
        &layout_arg(&image_layout(&base)),
        "-r",
        &registry.repo("base"),
        "-t",
        "3.18",
    ])
    .ok();
    // An image on top of base, naming it as its base the way image builders do.
    let mut layers: Vec<Blob> = base.layers.clone();
    layers.push(Blob::new(OCI_LAYER, pseudo_random(25, 3000)));
    let config = Blob::new(
        OCI_CONFIG,
        b"{\"architecture\":\"amd64\",\"os\":\"linux\"}".to_vec(),
    );
    let manifest = Blob::new(
        OCI_MANIFEST,
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
            "annotations": {"org.opencontainers.image.base.name": format!("{}:3.18", registry.repo("base"))},
        }))
        .unwrap(),
    );
    let mut blobs: Vec<&Blob> = layers.iter().collect();
    blobs.extend([&config, &manifest]);
    let layout = write_layout(&[&manifest], &blobs);
    let run = oci_push([
        "--layout",
        &layout_arg(&layout),
        "-r",
        &registry.repo("app"),
        "-t",
        "x",
    ])
    .ok();
    for layer in &base.layers {
        run.assert_step("mounted", &layer.digest);
    }
    run.assert_step("uploaded", &layers[2].digest);
    registry.assert_manifest("app", "x", &manifest);
    for blob in &blobs[..3] {
        registry.assert_blob("app", blob);
    }
}

#[test]
fn any_number_of_upload_threads_gives_the_same_image() {
    let registry = Registry::start();
    let image = Image::sized(Types::Oci, 26, 6, 30_000);
    let layout = image_layout(&image);
    for (jobs, repo) in [("1", "one"), ("3", "three"), ("64", "many")] {
        let run = oci_push([
            "--layout",
            &layout_arg(&layout),
            "-r",
            &registry.repo(repo),
            "-j",
            jobs,
            "-t",
            "t",
        ])
        .ok();
        assert_eq!(
            run.stderr.matches("  uploaded     ").count(),
            7,
            "{}",
            run.stderr
        );
        registry.assert_manifest(repo, "t", &image.manifest);
        for blob in image.blobs() {
            registry.assert_blob(repo, blob);
        }
    }
    let run = oci_push([
        "--layout",
        &layout_arg(&layout),
        "-r",
        &registry.repo("x"),
        "--jobs",
        "0",
    ]);
    assert_eq!(run.code, 1);
    assert_eq!(run.error(), "--jobs 0: give a whole number from 1 to 64");
}

#[test]
fn a_registry_named_localhost_is_found_on_every_address_it_resolves_to() {
    // `localhost` may resolve to ::1 before 127.0.0.1 (as in Debian testing's /etc/hosts),
    // where this registry does not listen: every address must be tried.
    let registry = Registry::start();
    let image = Image::sized(Types::Oci, 27, 2, 300_000);
    let layout = image_layout(&image);
    let repo = format!("localhost:{}/named", registry.port);
    let run = oci_push(["--layout", &layout_arg(&layout), "-r", &repo, "-t", "x"]).ok();
    assert_eq!(run.last_line(), format!("{repo}@{}", image.manifest.digest));
    registry.assert_manifest("named", "x", &image.manifest);
    for blob in image.blobs() {
        registry.assert_blob("named", blob);
    }
}
