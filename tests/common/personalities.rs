//! Other registries' manners, as fault-proxy rules in front of the real distribution registry:
//! what GHCR, ECR, Google Artifact Registry, ACR, Harbor, Artifactory, Docker Hub, Quay and
//! nginx in front of a registry answer differently (docs/registries.md names the sources).
//! Each is the smallest set of rules that shows one behaviour; the registry behind still
//! stores what the client sends, so every push is read back from it.

use super::faults::{Edit, Fault, Rule};

const MIB: u64 = 1 << 20;
const UPLOADS: &str = "/blobs/uploads/";

fn json_error(code: &str, message: &str) -> String {
    serde_json::json!({"errors": [{"code": code, "message": message, "detail": null}]}).to_string()
}

/// GHCR and GAR: the upload session's `Location` is a path, not a URL.
pub fn relative_locations() -> Vec<Rule> {
    let relative = || Fault::Rewrite(vec![Edit::RelativeLocation]);
    vec![
        Rule::every("POST", UPLOADS, relative()),
        Rule::every("PATCH", UPLOADS, relative()),
    ]
}

/// GHCR: a PATCH body over 4 MiB is refused with 416 (its monolithic PUT is not capped).
pub fn ghcr_patch_cap() -> Vec<Rule> {
    let refused = Fault::status(416).with_body(&json_error(
        "REQUESTED_RANGE_NOT_SATISFIABLE",
        "chunk size exceeds the maximum permissible limit of 4.00MiB",
    ));
    vec![Rule::every("PATCH", UPLOADS, refused).body_over(4 * MIB)]
}

/// ECR: a PATCH is answered 201, and `Range` stays at the end of the first 1 MiB chunk.
pub fn ecr_patch() -> Vec<Rule> {
    let answer = Fault::Rewrite(vec![Edit::Status(201), Edit::header("Range", "0-1048575")]);
    vec![Rule::every("PATCH", UPLOADS, answer)]
}

/// Google Artifact Registry (and Quay set-ups): no chunked uploads, refused with `status`
/// (405, or 501 Not Implemented).
pub fn no_patch(status: u16) -> Vec<Rule> {
    vec![Rule::every("PATCH", UPLOADS, Fault::status(status))]
}

/// A registry (or a proxy) that does not send `Docker-Content-Digest` with a manifest.
pub fn no_digest_header() -> Vec<Rule> {
    let strip = Fault::Rewrite(vec![Edit::RemoveHeader("Docker-Content-Digest".into())]);
    vec![Rule::every("*", "/manifests/", strip)]
}

/// GHCR: an upload session's status answers `Range: 0-0`, whatever it holds.
pub fn zero_range_status() -> Vec<Rule> {
    let zero = Fault::Rewrite(vec![Edit::header("Range", "0-0")]);
    vec![Rule::every("GET", UPLOADS, zero)]
}

/// Artifactory: a final `PUT` that carries the blob is refused; it wants `PATCH` first.
pub fn artifactory_put() -> Vec<Rule> {
    let refused = Fault::status(404).with_body(&json_error("BLOB_UNKNOWN", "blob unknown"));
    vec![Rule::every("PUT", UPLOADS, refused).body_over(0)]
}

/// nginx in front of a registry with `client_max_body_size 1m`.
pub fn nginx_body_cap() -> Vec<Rule> {
    let html = "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n\
                <body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n\
                <hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";
    let refused = || {
        Fault::status(413)
            .with_header("Content-Type", "text/html")
            .with_body(html)
    };
    vec![
        Rule::every("PUT", UPLOADS, refused()).body_over(MIB),
        Rule::every("PATCH", UPLOADS, refused()).body_over(MIB),
    ]
}

/// The distribution spec's `OCI-Chunk-Min-Length`, announced on the upload POST.
pub fn chunk_min_length(bytes: u64) -> Vec<Rule> {
    let announce = Fault::Rewrite(vec![Edit::header(
        "OCI-Chunk-Min-Length",
        &bytes.to_string(),
    )]);
    vec![Rule::every("POST", UPLOADS, announce)]
}

/// How registries refuse a cross-repository mount.
pub fn mount_refused(how: MountRefusal) -> Vec<Rule> {
    let fault = match how {
        MountRefusal::HarborNoProject => {
            Fault::status(401).with_body(&json_error("UNAUTHORIZED", "project base not found"))
        }
        MountRefusal::Forbidden => Fault::status(403),
        MountRefusal::NotFound => Fault::status(404),
        MountRefusal::DockerHubForeign => {
            Fault::status(400).with_body(r#"{"details":"invalid repository name"}"#)
        }
        MountRefusal::SessionWithoutLocation => Fault::Rewrite(vec![
            Edit::Status(202),
            Edit::RemoveHeader("Location".into()),
        ]),
    };
    vec![Rule::every("POST", "mount=", fault)]
}

#[derive(Clone, Copy, Debug)]
pub enum MountRefusal {
    HarborNoProject,
    Forbidden,
    NotFound,
    DockerHubForeign,
    SessionWithoutLocation,
}

/// Old Quay and distribution: a manifest PUT answered 202 (or 200); a blob PUT answered 204.
pub fn other_success_statuses(manifest: u16, blob: u16) -> Vec<Rule> {
    vec![
        Rule::every(
            "PUT",
            "/manifests/",
            Fault::Rewrite(vec![Edit::Status(manifest)]),
        ),
        Rule::every("PUT", UPLOADS, Fault::Rewrite(vec![Edit::Status(blob)])),
    ]
}

/// A registry (or a converting proxy) that says it stored other bytes than ours.
pub fn other_digest() -> Vec<Rule> {
    let other = format!("sha256:{}", "0".repeat(64));
    let lie = Fault::Rewrite(vec![Edit::header("Docker-Content-Digest", &other)]);
    vec![Rule::every("PUT", "/manifests/sha256:", lie)]
}

/// Harbor with a policy (vulnerabilities, signatures) that blocks reading manifests.
pub fn harbor_policy_head() -> Vec<Rule> {
    vec![Rule::every(
        "HEAD",
        "/manifests/",
        Fault::status(412).with_body(""),
    )]
}

/// How registries refuse to move an immutable tag; `tag` is the one refused.
pub fn immutable_tag(registry: Immutable, tag: &str) -> Vec<Rule> {
    let fault = match registry {
        Immutable::Permission => Fault::status(403).with_body(&json_error(
            "DENIED",
            "requested access to the resource is denied",
        )),
        Immutable::Ecr => Fault::status(400).with_body(&json_error(
            "TAG_INVALID",
            &format!("The image tag '{tag}' already exists in the repository and cannot be overwritten because the repository is immutable."),
        )),
        Immutable::Harbor => Fault::status(412).with_body(&json_error(
            "DENIED",
            &format!("The tag:app:{tag} is immutable, cannot be overwrite."),
        )),
        Immutable::Acr => Fault::status(405).with_body(&json_error(
            "REGISTRY_DISALLOWED_OPERATION",
            "The operation is disallowed on this registry, repository or image.",
        )),
        Immutable::Artifactory => Fault::status(403).with_body(&json_error(
            "MANIFEST_INVALID",
            "manifest invalid",
        )),
    };
    vec![Rule::every("PUT", &format!("/manifests/{tag}"), fault)]
}

#[derive(Clone, Copy, Debug)]
pub enum Immutable {
    /// Not immutability: a role that may not push tags, refused with a plain 403.
    Permission,
    Ecr,
    Harbor,
    Acr,
    Artifactory,
}

/// Docker Hub's edge rate limit: 429 with a text body and `Retry-After`, once (on the first
/// upload POST, whose answer has a body to show).
pub fn docker_hub_429() -> Vec<Rule> {
    let limited = Fault::retry_after(429, "1")
        .with_header("Content-Type", "text/plain")
        .with_body("Too Many Requests (HAP429).\n");
    vec![Rule::first(1, "POST", UPLOADS, limited)]
}
