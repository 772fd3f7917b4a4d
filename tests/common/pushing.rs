//! What many push tests share: a small image and its layout, the usual arguments, and the
//! assertions that a push landed (read back from the registry) or was refused.

use super::keys::b64;
use super::sandbox::oci_push_with;
use super::token::ALICE;
use super::{image_layout, Image, Registry, RegistryOptions, Run, Types};

pub const ALICE_USER: &str = ALICE.0;
pub const ALICE_PASSWORD: &str = ALICE.1;

/// An image of 5 blobs (config + 4 layers), distinct by `seed`, and its layout.
pub fn image(seed: u64) -> (Image, tempfile::TempDir) {
    let image = Image::sized(Types::Oci, seed, 4, 8 * 1024 + seed as usize);
    let layout = image_layout(&image);
    (image, layout)
}

/// `--layout L -r REPO -t v1 --verbose EXTRA...`
pub fn push_args<'a>(
    layout: &'a tempfile::TempDir,
    repo: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "--layout",
        layout.path().to_str().expect("utf-8 path"),
        "-r",
        repo,
        "-t",
        "v1",
        "--verbose",
    ];
    args.extend_from_slice(extra);
    args
}

/// Asserts the push printed `REPO@DIGEST` and the registry serves the image by digest and
/// under `v1`, every blob included.
pub fn assert_pushed(run: &Run, registry: &Registry, repo: &str, path: &str, image: &Image) {
    assert_eq!(
        run.code, 0,
        "oci-push failed; stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert_eq!(run.last_line(), format!("{repo}@{}", image.manifest.digest));
    assert_served(registry, path, image, &["v1"]);
}

/// The image by digest, exactly `tags` (each naming it) and every blob, read back from the
/// registry itself.
pub fn assert_served(registry: &Registry, path: &str, image: &Image, tags: &[&str]) {
    registry.assert_manifest(path, &image.manifest.digest, &image.manifest);
    for tag in tags {
        registry.assert_manifest(path, tag, &image.manifest);
    }
    let mut expected: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
    expected.sort();
    assert_eq!(registry.tags(path), expected, "tags of {path}");
    for blob in image.blobs() {
        registry.assert_blob(path, blob);
    }
}

/// Asserts a failed push: exit `code`, one error line holding every fragment, nothing on
/// stdout, no tag in the registry.
pub fn assert_refused(run: &Run, registry: &Registry, path: &str, code: i32, fragments: &[&str]) {
    assert_eq!(
        run.code, code,
        "exit code; stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert_eq!(run.error_count(), 1, "one error line:\n{}", run.stderr);
    for fragment in fragments {
        assert!(
            run.error().contains(fragment),
            "expected {fragment:?} in the error line:\n{}",
            run.stderr
        );
    }
    assert!(run.stdout.is_empty(), "stdout: {}", run.stdout);
    assert!(registry.tags(path).is_empty(), "a tag was written");
}

/// The secrets of the htpasswd registry's user.
pub fn alice_secrets() -> Vec<String> {
    vec![
        ALICE_PASSWORD.to_string(),
        b64(format!("{ALICE_USER}:{ALICE_PASSWORD}")),
    ]
}

pub fn basic_registry() -> Registry {
    Registry::start_with(RegistryOptions::htpasswd(ALICE_USER, ALICE_PASSWORD))
}

/// `oci-push` with [`push_args`] and `EXTRA`, logged in as alice with `--password-stdin`.
pub fn push_as_alice(layout: &tempfile::TempDir, repo: &str, extra: &[&str]) -> Run {
    let mut args = push_args(layout, repo, extra);
    args.extend(["--username", ALICE_USER, "--password-stdin"]);
    oci_push_with(&args, &[], Some(&format!("{ALICE_PASSWORD}\n")))
}

/// `--layout L -r REPO EXTRA...` as the arguments of a spawned or bounded run.
pub fn os_args(layout: &std::path::Path, repo: &str, extra: &[&str]) -> Vec<std::ffi::OsString> {
    let mut args = vec!["--layout".into(), layout.into(), "-r".into(), repo.into()];
    args.extend(extra.iter().map(std::ffi::OsString::from));
    args
}
