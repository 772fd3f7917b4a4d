//! Registries in the wild (issue 13): each behaviour of another registry, emulated by a front in
//! front of the real distribution registry (tests/common/personalities.rs), with the push read
//! back from the registry itself. docs/registries.md has the table of registries and sources.

mod common;

use common::faults::{Fault, FaultProxy, ProxiedRequest, Rule};
use common::personalities::{self, Immutable, MountRefusal};
use common::pushing::*;
use common::*;

const MIB: usize = 1 << 20;

/// A push of `image` through a front with `rules` to `PATH` on a fresh registry.
struct Through {
    registry: Registry,
    proxy: FaultProxy,
    repo: String,
    run: Run,
}

fn push_through(rules: Vec<Rule>, image: &Image, path: &str, extra: &[&str]) -> Through {
    let registry = Registry::start();
    let proxy = FaultProxy::start(&registry, rules);
    let layout = image_layout(image);
    let repo = proxy.repo(path);
    let run = oci_push_with(&push_args(&layout, &repo, extra), &[], None);
    Through {
        registry,
        proxy,
        repo,
        run,
    }
}

impl Through {
    fn assert_pushed(&self, path: &str, image: &Image) {
        assert_pushed(&self.run, &self.registry, &self.repo, path, image);
    }

    /// The PATCH requests that the front passed on to the registry (not those it refused).
    fn patches_stored(&self) -> Vec<ProxiedRequest> {
        self.proxy
            .matching("PATCH", "/blobs/uploads/")
            .into_iter()
            .filter(|r| r.answered.is_some_and(|s| (200..300).contains(&s)))
            .collect()
    }

    /// The `registry: ...` lines: what the push learnt from the registry's answers.
    fn lessons(&self) -> Vec<&str> {
        self.run
            .stderr
            .lines()
            .filter(|l| l.starts_with("registry: "))
            .collect()
    }
}

/// An image whose one layer is `layer` bytes (and a small config).
fn image_of(seed: u64, layer: usize) -> Image {
    Image::sized(Types::Oci, seed, 1, layer)
}

#[test]
fn relative_upload_locations_are_resolved_against_the_registry() {
    // GHCR and GAR answer the upload POST (and PATCH) with a path, not a URL.
    for (seed, extra) in [(400, &[][..]), (401, &["--chunk-size", "1MiB"][..])] {
        let image = image_of(seed, 3 * MIB);
        let t = push_through(
            personalities::relative_locations(),
            &image,
            "rel/app",
            extra,
        );
        t.assert_pushed("rel/app", &image);
        let posts = t.proxy.matching("POST", "/blobs/uploads/");
        assert!(!posts.is_empty());
        // The Locations really were relative: every POST's answer was rewritten, and (chunked)
        // every PATCH's too.
        assert_eq!(t.proxy.fired(0), posts.len(), "{}", t.proxy.describe());
        if !extra.is_empty() {
            assert!(t.proxy.fired(1) >= 4, "{}", t.proxy.describe());
        }
    }
}

#[test]
fn ghcr_s_4_mib_patch_cap_halves_the_chunk() {
    let image = image_of(402, 10 * MIB);
    let t = push_through(
        personalities::ghcr_patch_cap(),
        &image,
        "cap/app",
        &["--chunk-size", "8MiB"],
    );
    t.assert_pushed("cap/app", &image);
    assert_eq!(
        t.lessons(),
        ["registry: it refused a body of 8.0 MiB (416); uploading blobs in chunks of 4.0 MiB from now on"],
        "{}",
        t.run.stderr
    );
    // The layer in 4, 4 and 2 MiB; the config in one.
    let config = image.config.bytes.len() as u64;
    assert_eq!(
        stored_sizes(&t),
        [config, 2 * MIB as u64, 4 * MIB as u64, 4 * MIB as u64]
    );
}

/// The sizes of the PATCH bodies the registry took, smallest first.
fn stored_sizes(t: &Through) -> Vec<u64> {
    let mut sizes: Vec<u64> = t.patches_stored().iter().map(|r| r.body_len).collect();
    sizes.sort_unstable();
    sizes
}

#[test]
fn ecr_s_patch_201_and_frozen_range_do_not_resend_chunks() {
    // ECR answers PATCH with 201 and a Range stuck at the first chunk's end: trusting that
    // Range sent the second chunk again and again.
    let image = image_of(403, 3 * MIB + 5);
    let t = push_through(
        personalities::ecr_patch(),
        &image,
        "ecr/app",
        &["--chunk-size", "1MiB"],
    );
    t.assert_pushed("ecr/app", &image);
    // 4 chunks for the layer, 1 for the config.
    assert_eq!(t.patches_stored().len(), 5, "{}", t.proxy.describe());
}

#[test]
fn a_registry_without_patch_gets_monolithic_uploads() {
    // Google Artifact Registry takes no chunked uploads: a 405 (or 501) to PATCH, and the push
    // (asked for chunks) goes on with one PUT a blob.
    for (seed, status, reason) in [(404, 405, "405"), (409, 501, "501")] {
        let image = image_of(seed, 2 * MIB);
        let t = push_through(
            personalities::no_patch(status),
            &image,
            "gar/app",
            &["--chunk-size", "1MiB", "--jobs", "1"],
        );
        t.assert_pushed("gar/app", &image);
        assert_eq!(
            t.lessons(),
            [format!("registry: it does not take PATCH uploads ({reason}); uploading blobs in one request each from now on")]
        );
        assert_eq!(t.proxy.count("PATCH", "/blobs/uploads/"), 1, "learnt once");
        // Every session a refusal ended was closed.
        assert_eq!(
            t.proxy.count("DELETE", "/blobs/uploads/"),
            1,
            "{}",
            t.proxy.describe()
        );
    }
}

#[test]
fn a_body_cap_on_a_registry_without_patch_is_reported_not_looped() {
    // nginx's 1 MiB cap in front of a registry that refuses PATCH: no way to send a 3 MiB
    // layer. The 413 stands, after one lesson each way, not a ping-pong between strategies.
    let mut rules = personalities::no_patch(405);
    rules.extend(personalities::nginx_body_cap());
    let image = image_of(408, 3 * MIB);
    let t = push_through(rules, &image, "stuck/app", &["--jobs", "1"]);
    assert_eq!(t.run.code, 5, "{}", t.run.stderr);
    assert_eq!(
        t.lessons(),
        [
            "registry: it refused a body of 3.0 MiB (413); uploading blobs in chunks of 1.5 MiB from now on",
            "registry: it does not take PATCH uploads (405); uploading blobs in one request each from now on",
        ]
    );
    assert!(
        t.run.error().contains("413 Payload Too Large")
            || t.run.error().contains("413 Request Entity Too Large"),
        "{}",
        t.run.stderr
    );
    let posts = t.proxy.count("POST", "/blobs/uploads/");
    assert!(posts <= 4, "{posts} sessions: {}", t.proxy.describe());
    assert_eq!(
        t.proxy.count("DELETE", "/blobs/uploads/"),
        posts,
        "a session left open"
    );
}

#[test]
fn a_zero_range_after_a_failed_chunk_starts_the_upload_over() {
    // GHCR answers a session's status with `Range: 0-0` whatever it holds: resuming from it
    // would send from byte 1. The upload starts over in a new session instead.
    let mut rules = vec![Rule::nth(
        2,
        "PATCH",
        "/blobs/uploads/",
        common::faults::Fault::drop_body_after(1000),
    )];
    rules.extend(personalities::zero_range_status());
    let image = image_of(425, 3 * MIB);
    let t = push_through(
        rules,
        &image,
        "zero/app",
        &["--chunk-size", "1MiB", "--jobs", "1"],
    );
    t.assert_pushed("zero/app", &image);
    assert!(
        t.run
            .stderr
            .contains("does not say where it stands (Range 0-0)"),
        "{}",
        t.run.stderr
    );
}

#[test]
fn artifactory_gets_patch_then_an_empty_put() {
    let image = image_of(405, 2 * MIB);
    let t = push_through(
        personalities::artifactory_put(),
        &image,
        "art/app",
        &["--jobs", "1"],
    );
    t.assert_pushed("art/app", &image);
    assert_eq!(
        t.lessons(),
        ["registry: it refused the blob in the final PUT (404 BLOB_UNKNOWN); uploading blobs with PATCH, each in one chunk from now on"]
    );
    // One PATCH per blob, whole.
    assert_eq!(t.patches_stored().len(), 2, "{}", t.proxy.describe());
}

#[test]
fn a_proxy_s_413_moves_to_chunks_it_accepts() {
    // nginx's client_max_body_size 1m: the 3 MiB PUT is refused, and so is a 1.5 MiB chunk;
    // 768 KiB chunks pass.
    let image = image_of(406, 3 * MIB);
    let t = push_through(
        personalities::nginx_body_cap(),
        &image,
        "nginx/app",
        &["--jobs", "1"],
    );
    t.assert_pushed("nginx/app", &image);
    assert_eq!(
        t.lessons(),
        [
            "registry: it refused a body of 3.0 MiB (413); uploading blobs in chunks of 1.5 MiB from now on",
            "registry: it refused a body of 1.5 MiB (413); uploading blobs in chunks of 768.0 KiB from now on",
        ]
    );
    // The layer in four chunks of 768 KiB, then the config in one.
    let config = image.config.bytes.len() as u64;
    let chunk = 768 << 10;
    assert_eq!(stored_sizes(&t), [config, chunk, chunk, chunk, chunk]);
}

#[test]
fn oci_chunk_min_length_is_honoured() {
    let image = image_of(407, 9 * MIB);
    let t = push_through(
        personalities::chunk_min_length(5 * MIB as u64),
        &image,
        "min/app",
        &["--jobs", "1"],
    );
    t.assert_pushed("min/app", &image);
    assert_eq!(
        t.lessons(),
        ["registry: it asks for chunks of at least 5.0 MiB; uploading blobs in chunks of 5.0 MiB from now on"]
    );
    // The config went first or last; the layer in a 5 MiB chunk and the rest.
    let sizes: Vec<u64> = t.patches_stored().iter().map(|r| r.body_len).collect();
    assert!(sizes.contains(&(5 * MIB as u64)), "{sizes:?}");
    assert!(sizes.contains(&(4 * MIB as u64)), "{sizes:?}");
}

#[test]
fn a_refused_mount_however_said_becomes_an_upload() {
    for (i, how) in [
        MountRefusal::HarborNoProject,
        MountRefusal::Forbidden,
        MountRefusal::NotFound,
        MountRefusal::DockerHubForeign,
        MountRefusal::SessionWithoutLocation,
    ]
    .into_iter()
    .enumerate()
    {
        let image = image_of(410 + i as u64, 64 << 10);
        let registry = Registry::start();
        let proxy = FaultProxy::start(&registry, personalities::mount_refused(how));
        let layout = image_layout(&image);
        let repo = proxy.repo("mounted/app");
        let base = proxy.repo("base/app");
        let run = oci_push_with(
            &push_args(&layout, &repo, &["--mount-from", &base]),
            &[],
            None,
        );
        assert_pushed(&run, &registry, &repo, "mounted/app", &image);
        assert!(
            proxy.count("POST", "mount=") >= 2,
            "{how:?}: {}",
            proxy.describe()
        );
    }
}

#[test]
fn every_success_status_a_registry_uses_is_success() {
    for (seed, manifest, blob) in [(420, 200, 204), (421, 202, 200)] {
        let image = image_of(seed, 64 << 10);
        let t = push_through(
            personalities::other_success_statuses(manifest, blob),
            &image,
            "ok/app",
            &[],
        );
        t.assert_pushed("ok/app", &image);
    }
}

#[test]
fn a_registry_that_stored_other_bytes_is_an_error_naming_both_digests() {
    let image = image_of(422, 64 << 10);
    let t = push_through(personalities::other_digest(), &image, "lie/app", &[]);
    assert_refused(
        &t.run,
        &t.registry,
        "lie/app",
        5,
        &[
            &format!(
                "the registry says it stored the manifest as sha256:{}",
                "0".repeat(64)
            ),
            &format!("not {}", image.manifest.digest),
        ],
    );
}

#[test]
fn harbor_s_412_to_a_manifest_head_is_not_knowing() {
    let image = image_of(423, 64 << 10);
    let t = push_through(
        personalities::harbor_policy_head(),
        &image,
        "harbor/app",
        &[],
    );
    t.assert_pushed("harbor/app", &image);
}

#[test]
fn docker_hub_s_text_429_is_waited_out() {
    let image = image_of(424, 64 << 10);
    let t = push_through(personalities::docker_hub_429(), &image, "hub/app", &[]);
    t.assert_pushed("hub/app", &image);
    assert!(
        t.run.stderr.contains(
            "answered 429 Too Many Requests: Too Many Requests (HAP429).; attempt 2 of 11 in 1.0 s"
        ),
        "{}",
        t.run.stderr
    );
}

#[test]
fn a_tag_pushed_where_the_registry_sends_no_digest_header_is_still_seen_unchanged() {
    // Without Docker-Content-Digest the manifest's own bytes tell where a tag points: a
    // re-push does not write the tag again (which ECR's immutable tags refuse even for the
    // same digest).
    let registry = Registry::start();
    let image = image_of(426, 64 << 10);
    let layout = image_layout(&image);
    let path = "nodigest/app";
    oci_push_with(&push_args(&layout, &registry.repo(path), &[]), &[], None).ok();
    let mut rules = personalities::no_digest_header();
    rules.extend(personalities::immutable_tag(Immutable::Ecr, "v1"));
    let proxy = FaultProxy::start(&registry, rules);
    let run = oci_push_with(&push_args(&layout, &proxy.repo(path), &[]), &[], None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(proxy.count("PUT", "/manifests/"), 0, "{}", proxy.describe());
}

#[test]
fn a_refused_tag_that_is_not_immutability_keeps_its_exit_code() {
    // A plain 403 to moving a tag is a role that may not push tags: exit 2, not 7.
    let registry = Registry::start();
    let first = image_of(427, 64 << 10);
    let second = image_of(428, 64 << 10);
    let path = "perm/app";
    oci_push_with(
        &push_args(&image_layout(&first), &registry.repo(path), &[]),
        &[],
        None,
    )
    .ok();
    let proxy = FaultProxy::start(
        &registry,
        personalities::immutable_tag(Immutable::Permission, "v1"),
    );
    let run = oci_push_with(
        &push_args(&image_layout(&second), &proxy.repo(path), &[]),
        &[],
        None,
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(!run.error().contains("immutable"), "{}", run.stderr);
    // The tag is as it was; the new image is in, by digest.
    registry.assert_manifest(path, "v1", &first.manifest);
    registry.assert_manifest(path, &second.manifest.digest, &second.manifest);
}

#[test]
fn a_tag_made_by_another_writer_during_the_push_is_judged_as_immutable_too() {
    // v1 names another image, but the first HEAD (before the uploads) saw no v1, as if
    // another writer made it meanwhile; the registry then refuses to move it.
    let registry = Registry::start();
    let first = image_of(440, 64 << 10);
    let second = image_of(441, 64 << 10);
    let path = "race/app";
    oci_push_with(
        &push_args(&image_layout(&first), &registry.repo(path), &[]),
        &[],
        None,
    )
    .ok();
    let mut rules = vec![Rule::nth(1, "HEAD", "/manifests/v1", Fault::status(404))];
    rules.extend(personalities::immutable_tag(Immutable::Ecr, "v1"));
    let proxy = FaultProxy::start(&registry, rules);
    let layout = image_layout(&second);
    let dir = layout.path().display().to_string();
    let repo = proxy.repo(path);
    let run = oci_push_with(&["--layout", &dir, "-r", &repo, "-t", "v1"], &[], None);
    assert_eq!(run.code, 7, "{}", run.stderr);
    assert!(
        run.error().contains(&format!(
            "will not move tag 'v1' from {} to {}",
            first.manifest.digest, second.manifest.digest
        )),
        "{}",
        run.stderr
    );
    registry.assert_manifest(path, &second.manifest.digest, &second.manifest);
    registry.assert_manifest(path, "v1", &first.manifest);
}

#[test]
fn an_immutable_tag_is_said_plainly_with_exit_7() {
    for (i, registry_kind) in [
        Immutable::Ecr,
        Immutable::Harbor,
        Immutable::Acr,
        Immutable::Artifactory,
    ]
    .into_iter()
    .enumerate()
    {
        let registry = Registry::start();
        let first = image_of(430 + 2 * i as u64, 64 << 10);
        let second = image_of(431 + 2 * i as u64, 64 << 10);
        let first_layout = image_layout(&first);
        let path = "immutable/app";
        oci_push_with(
            &push_args(&first_layout, &registry.repo(path), &[]),
            &[],
            None,
        )
        .ok();
        let proxy = FaultProxy::start(&registry, personalities::immutable_tag(registry_kind, "v1"));
        let layout = image_layout(&second);
        let dir = layout.path().display().to_string();
        let repo = proxy.repo(path);
        let run = oci_push_with(
            &["--layout", &dir, "-r", &repo, "-t", "v1", "-t", "v2"],
            &[],
            None,
        );
        assert_eq!(run.code, 7, "{registry_kind:?}: {}", run.stderr);
        assert!(
            run.error().contains(&format!(
                "will not move tag 'v1' from {} to {}",
                first.manifest.digest, second.manifest.digest
            )) && run.error().contains("its tags are immutable")
                && run.error().contains("not attempted: v2"),
            "{registry_kind:?}: {}",
            run.stderr
        );
        // The image itself is in, by digest; the tags are as they were.
        registry.assert_manifest(path, &second.manifest.digest, &second.manifest);
        registry.assert_manifest(path, "v1", &first.manifest);
        assert_eq!(registry.tags(path), ["v1"]);
        // A push of what v1 already names writes no tag, so an immutable v1 is no obstacle.
        let run = oci_push_with(
            &[
                "--layout",
                &first_layout.path().display().to_string(),
                "-r",
                &repo,
                "-t",
                "v1",
            ],
            &[],
            None,
        );
        assert_eq!(run.code, 0, "{registry_kind:?}: {}", run.stderr);
    }
}
