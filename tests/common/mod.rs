//! Test harness: a real CNCF distribution registry on 127.0.0.1, deterministic OCI layouts,
//! the `oci-push` binary, and curl to read the registry back with a client we did not write.

#![allow(dead_code, unused_imports)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

pub mod cache;
pub mod faults;
pub mod http;
pub mod keys;
pub mod personalities;
pub mod pushing;
pub mod sandbox;
pub mod schema;
pub mod servers;
pub mod token;

pub use keys::{b64, basic_auth, Tls, TokenConfig};
pub use sandbox::{oci_push_with, Sandbox};
pub use servers::{ConnectProxy, ProxyUse, RedirectFront, Seen, Side};
pub use token::{Policy, TokenRequest, TokenServer, User, ALICE, BOB, REFRESH_TOKEN};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Every manifest type, for reading back whatever was pushed.
pub const ACCEPT_ALL: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

pub fn sha256(bytes: &[u8]) -> String {
    let sum = Sha256::digest(bytes);
    format!(
        "sha256:{}",
        sum.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}

/// Deterministic, incompressible-looking bytes (xorshift), so layers differ by seed.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

// ---------------------------------------------------------------------------------------------
// The registry

/// `docker-registry serve` on a free loopback port with its storage in a temp dir; killed on drop.
pub struct Registry {
    child: Child,
    pub port: u16,
    pub dir: TempDir,
    tls: Option<Tls>,
    admin: AdminAuth,
    /// With mutual TLS, the client certificate and key curl reads the registry back with.
    admin_identity: Option<(PathBuf, PathBuf)>,
}

/// How a registry is set up: TLS, and basic (htpasswd) or token authentication.
#[derive(Default)]
pub struct RegistryOptions {
    /// Serve HTTPS with this certificate.
    pub tls: Option<Tls>,
    /// `auth: htpasswd:` with this one user (a bcrypt file made by `htpasswd -Bbn`).
    pub htpasswd: Option<(String, String)>,
    /// `auth: token:` trusting this token server's key.
    pub token: Option<TokenConfig>,
    /// `http.tls.clientcas`: mutual TLS, client certificates signed by the TLS CA required.
    pub mutual_tls: bool,
}

impl RegistryOptions {
    pub fn tls(tls: Tls) -> RegistryOptions {
        RegistryOptions {
            tls: Some(tls),
            ..RegistryOptions::default()
        }
    }

    pub fn htpasswd(user: &str, password: &str) -> RegistryOptions {
        RegistryOptions {
            htpasswd: Some((user.to_string(), password.to_string())),
            ..RegistryOptions::default()
        }
    }

    pub fn token(config: TokenConfig) -> RegistryOptions {
        RegistryOptions {
            token: Some(config),
            ..RegistryOptions::default()
        }
    }
}

/// How the tests themselves (curl, the redirect front) get past a registry's authentication.
#[derive(Clone)]
pub enum AdminAuth {
    None,
    Basic(String, String),
    /// Mints a token with every action on the repository a path names.
    Token(TokenConfig),
}

impl AdminAuth {
    /// The `Authorization` value for a request to `path` (`/v2/...`), if one is needed.
    pub fn authorization(&self, path: &str) -> Option<String> {
        match self {
            AdminAuth::None => None,
            AdminAuth::Basic(user, password) => Some(basic_auth(user, password)),
            AdminAuth::Token(config) => Some(format!(
                "Bearer {}",
                config.mint("admin", access_for_path(path), 300)
            )),
        }
    }
}

/// The token access a registry path needs, all actions: the repository it names, or the
/// catalog.
pub fn access_for_path(path: &str) -> serde_json::Value {
    let path = path.split('?').next().unwrap_or("");
    if path.starts_with("/v2/_catalog") {
        return serde_json::json!([{"type": "registry", "name": "catalog", "actions": ["*"]}]);
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return serde_json::json!([]);
    };
    let end = ["/manifests/", "/blobs/", "/tags/"]
        .iter()
        .filter_map(|m| rest.find(m))
        .min();
    match end {
        Some(end) => {
            serde_json::json!([{"type": "repository", "name": &rest[..end], "actions": ["*"]}])
        }
        None => serde_json::json!([]),
    }
}

impl Registry {
    /// A plain-HTTP registry without authentication.
    pub fn start() -> Registry {
        Registry::start_with(RegistryOptions::default())
    }

    pub fn start_with(options: RegistryOptions) -> Registry {
        let dir = TempDir::new().expect("temp dir");
        let port = free_port();
        let plain = options.tls.is_none() && options.htpasswd.is_none() && options.token.is_none();
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: {}\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            if plain { "warn" } else { "info" },
            dir.path().join("storage").display()
        );
        if let Some(tls) = &options.tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                tls.cert.display(),
                tls.key.display()
            ));
            if options.mutual_tls {
                config.push_str(&format!("    clientcas:\n      - {}\n", tls.ca.display()));
            }
        }
        let mut admin = AdminAuth::None;
        assert!(
            options.htpasswd.is_none() || options.token.is_none(),
            "one authentication method"
        );
        if let Some((user, password)) = &options.htpasswd {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("run htpasswd (apt-get install apache2-utils)");
            assert!(out.status.success(), "htpasswd failed");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).expect("htpasswd file");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: test-realm\n    path: {}\n",
                file.display()
            ));
            admin = AdminAuth::Basic(user.clone(), password.clone());
        }
        if let Some(token) = &options.token {
            config.push_str(&format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                token.realm,
                token.service,
                token.issuer,
                token.keys.cert.display()
            ));
            admin = AdminAuth::Token(token.clone());
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("registry log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry (apt-get install docker-registry)");
        let mut registry = Registry {
            child,
            port,
            dir,
            admin_identity: match options.mutual_tls {
                true => options.tls.as_ref().map(|tls| tls.client("admin")),
                false => None,
            },
            tls: options.tls,
            admin,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry did not start; log:\n{}",
                registry.log()
            );
            if let Ok(Some(status)) = registry.child.try_wait() {
                panic!("registry exited ({status}); log:\n{}", registry.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        registry
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// `http(s)://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.host())
    }

    /// The CA that signed a TLS registry's certificate (for `--ca-file`).
    pub fn ca_file(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.ca.as_path())
    }

    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
    }

    /// How the tests get past this registry's authentication.
    pub fn admin_auth(&self) -> AdminAuth {
        self.admin.clone()
    }

    /// curl arguments to reach `path` as an administrator: `--cacert` for TLS, and the
    /// `Authorization` (basic credentials, or a freshly minted token for that path).
    pub fn admin_curl_args(&self, path: &str) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(ca) = self.ca_file() {
            args.push("--cacert".to_string());
            args.push(ca.display().to_string());
        }
        if let Some((cert, key)) = &self.admin_identity {
            args.extend(["--cert".to_string(), cert.display().to_string()]);
            args.extend(["--key".to_string(), key.display().to_string()]);
        }
        if let Some(authorization) = self.admin.authorization(path) {
            args.push("-H".to_string());
            args.push(format!("Authorization: {authorization}"));
        }
        args
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn repo(&self, path: &str) -> String {
        format!("{}/{path}", self.host())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// GET (or HEAD) a registry path with curl, past its TLS and authentication.
    pub fn get(&self, path: &str, accept: &str) -> HttpAnswer {
        curl_with(
            "GET",
            &format!("{}{path}", self.base_url()),
            accept,
            &self.admin_curl_args(path),
        )
    }

    pub fn head(&self, path: &str) -> HttpAnswer {
        curl_with(
            "HEAD",
            &format!("{}{path}", self.base_url()),
            ACCEPT_ALL,
            &self.admin_curl_args(path),
        )
    }

    /// The tags of a repository as the registry lists them (empty when it has none).
    pub fn tags(&self, repo_path: &str) -> Vec<String> {
        let answer = self.get(&format!("/v2/{repo_path}/tags/list"), "application/json");
        if answer.status == 404 {
            return Vec::new();
        }
        assert_eq!(answer.status, 200, "tags/list: {}", answer.text());
        let value: serde_json::Value = serde_json::from_slice(&answer.body).expect("tags json");
        let mut tags: Vec<String> = value["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort();
        tags
    }

    /// Repositories the registry knows, i.e. that received at least a manifest or blob.
    pub fn catalog(&self) -> Vec<String> {
        let answer = self.get("/v2/_catalog", "application/json");
        assert_eq!(answer.status, 200, "catalog: {}", answer.text());
        let value: serde_json::Value = serde_json::from_slice(&answer.body).expect("catalog json");
        value["repositories"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asserts that the registry serves `manifest` under `reference` with its exact bytes.
    pub fn assert_manifest(&self, repo_path: &str, reference: &str, manifest: &Blob) {
        let answer = self.get(
            &format!("/v2/{repo_path}/manifests/{reference}"),
            ACCEPT_ALL,
        );
        assert_eq!(
            answer.status,
            200,
            "manifest {reference}: {}",
            answer.text()
        );
        assert_eq!(
            answer.header("docker-content-digest").as_deref(),
            Some(manifest.digest.as_str()),
            "digest of {repo_path}:{reference}"
        );
        assert_eq!(sha256(&answer.body), manifest.digest);
        assert_eq!(
            answer.body, manifest.bytes,
            "bytes of {repo_path}:{reference}"
        );
        assert_eq!(
            answer.header("content-type").as_deref(),
            Some(manifest.media_type.as_str()),
            "media type of {repo_path}:{reference}"
        );
    }

    /// Asserts that a failed or refused push left nothing behind to pull: the repository at
    /// `repo_path` has no tag, and no manifest answers under any of `digests` (the top
    /// manifests the test knows; none when it knows none).
    pub fn assert_nothing_tagged(&self, repo_path: &str, digests: &[&str]) {
        let tags = self.tags(repo_path);
        assert!(
            tags.is_empty(),
            "tags were written to {repo_path}: {tags:?}"
        );
        for digest in digests {
            let head = self.head(&format!("/v2/{repo_path}/manifests/{digest}"));
            assert_eq!(
                head.status, 404,
                "the manifest {digest} of a failed push is in {repo_path}"
            );
        }
    }

    /// Asserts that the registry holds `blob` byte for byte.
    pub fn assert_blob(&self, repo_path: &str, blob: &Blob) {
        let answer = self.get(&format!("/v2/{repo_path}/blobs/{}", blob.digest), "*/*");
        assert_eq!(
            answer.status,
            200,
            "blob {}: {}",
            blob.digest,
            answer.text()
        );
        assert_eq!(sha256(&answer.body), blob.digest);
        assert!(answer.body == blob.bytes, "bytes of blob {}", blob.digest);
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request with curl, the independent client: status, headers and body.
pub fn curl(method: &str, url: &str, accept: &str) -> HttpAnswer {
    curl_with(method, url, accept, &[])
}

/// [`curl`] with more arguments (`--cacert FILE`, `-u USER:PASS`, `-H HEADER`, ...).
pub fn curl_with(method: &str, url: &str, accept: &str, extra: &[String]) -> HttpAnswer {
    let dir = TempDir::new().expect("temp dir");
    let headers_path = dir.path().join("headers");
    let body_path = dir.path().join("body");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "60", "-H"])
        .arg(format!("Accept: {accept}"))
        .arg("-D")
        .arg(&headers_path)
        .arg("-o")
        .arg(&body_path);
    if method == "HEAD" {
        cmd.arg("-I");
    } else {
        cmd.args(["-X", method, "-L"]);
    }
    let out = cmd.args(extra).arg(url).output().expect("run curl");
    assert!(
        out.status.success(),
        "curl {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = std::fs::read_to_string(&headers_path).expect("curl headers");
    // With -L there may be several header blocks; the last one is the final answer.
    let block = raw
        .split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .last()
        .unwrap_or("");
    let mut lines = block.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let body = std::fs::read(&body_path).unwrap_or_default();
    HttpAnswer {
        status,
        headers,
        body,
    }
}

// ---------------------------------------------------------------------------------------------
// Layouts

/// A blob or manifest as written into a layout.
#[derive(Clone, Debug)]
pub struct Blob {
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Blob {
        Blob {
            digest: sha256(&bytes),
            media_type: media_type.to_string(),
            bytes,
        }
    }

    pub fn descriptor(&self) -> serde_json::Value {
        serde_json::json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.bytes.len(),
        })
    }

    fn json(media_type: &str, value: &serde_json::Value) -> Blob {
        Blob::new(media_type, serde_json::to_vec(value).expect("json"))
    }
}

/// An image: its manifest, config and layers.
#[derive(Clone, Debug)]
pub struct Image {
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

/// Which media types an image or index uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Types {
    Oci,
    Docker,
}

impl Image {
    /// An image whose layers hold the given bytes; `platform` lands in the config.
    pub fn new(types: Types, platform: (&str, &str), layers: Vec<Vec<u8>>) -> Image {
        let (manifest_type, config_type, layer_type) = match types {
            Types::Oci => (OCI_MANIFEST, OCI_CONFIG, OCI_LAYER),
            Types::Docker => (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER),
        };
        let layers: Vec<Blob> = layers
            .into_iter()
            .map(|b| Blob::new(layer_type, b))
            .collect();
        let config = Blob::json(
            config_type,
            &serde_json::json!({
                "architecture": platform.1,
                "os": platform.0,
                "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| &l.digest).collect::<Vec<_>>()},
                "config": {},
            }),
        );
        let manifest = Blob::json(
            manifest_type,
            &serde_json::json!({
                "schemaVersion": 2,
                "mediaType": manifest_type,
                "config": config.descriptor(),
                "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
            }),
        );
        Image {
            manifest,
            config,
            layers,
        }
    }

    /// An image of `count` layers of `size` bytes each, distinct by `seed`.
    pub fn sized(types: Types, seed: u64, count: usize, size: usize) -> Image {
        let layers = (0..count)
            .map(|i| pseudo_random(seed * 1000 + i as u64, size))
            .collect();
        Image::new(types, ("linux", "amd64"), layers)
    }

    pub fn blobs(&self) -> Vec<&Blob> {
        std::iter::once(&self.config).chain(&self.layers).collect()
    }
}

/// An index over images, with each image's platform in its descriptor.
pub struct Index {
    pub manifest: Blob,
    pub images: Vec<Image>,
}

impl Index {
    pub fn new(types: Types, images: Vec<(Image, (&str, &str))>) -> Index {
        let media_type = match types {
            Types::Oci => OCI_INDEX,
            Types::Docker => DOCKER_LIST,
        };
        let manifests: Vec<serde_json::Value> = images
            .iter()
            .map(|(image, (os, arch))| {
                let mut d = image.manifest.descriptor();
                d["platform"] = serde_json::json!({"os": os, "architecture": arch});
                d
            })
            .collect();
        let manifest = Blob::json(
            media_type,
            &serde_json::json!({
                "schemaVersion": 2,
                "mediaType": media_type,
                "manifests": manifests,
            }),
        );
        Index {
            manifest,
            images: images.into_iter().map(|(i, _)| i).collect(),
        }
    }
}

/// Writes an OCI layout to a fresh temp dir: every blob given, and an index.json naming `top`.
pub fn write_layout(top: &[&Blob], blobs: &[&Blob]) -> TempDir {
    let dir = TempDir::new().expect("temp dir");
    write_layout_in(dir.path(), top, blobs);
    dir
}

pub fn write_layout_in(dir: &Path, top: &[&Blob], blobs: &[&Blob]) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).expect("blobs dir");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("oci-layout");
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": top.iter().map(|b| b.descriptor()).collect::<Vec<_>>(),
    });
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("json"),
    )
    .expect("index.json");
    for blob in top.iter().chain(blobs) {
        std::fs::write(blob_path(dir, blob), &blob.bytes).expect("blob");
    }
}

pub fn blob_path(dir: &Path, blob: &Blob) -> PathBuf {
    dir.join("blobs/sha256")
        .join(blob.digest.trim_start_matches("sha256:"))
}

/// A layout directory as the `--layout` argument.
pub fn layout_arg(dir: &TempDir) -> String {
    dir.path().display().to_string()
}

pub fn image_layout(image: &Image) -> TempDir {
    let mut blobs = image.blobs();
    blobs.push(&image.manifest);
    write_layout(&[&image.manifest], &blobs)
}

pub fn index_layout(index: &Index) -> TempDir {
    let mut blobs = Vec::new();
    for image in &index.images {
        blobs.extend(image.blobs());
        blobs.push(&image.manifest);
    }
    write_layout(&[&index.manifest], &blobs)
}

// ---------------------------------------------------------------------------------------------
// The binary

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout as the one JSON object of `--format json`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{}", self.stdout))
    }

    pub fn last_line(&self) -> &str {
        self.stdout.lines().last().unwrap_or("")
    }

    /// Asserts success, showing stderr when it was not.
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "oci-push failed:\n{}", self.stderr);
        self
    }

    /// Asserts a progress line `  WORD         WHAT...` (e.g. `uploaded`, a digest) on stderr.
    pub fn assert_step(&self, word: &str, what: &str) {
        let line = format!("  {word:<12} {what}");
        assert!(
            self.stderr.contains(&line),
            "no '{line}' in:\n{}",
            self.stderr
        );
    }

    /// The one error line `oci-push: error: ...`, without the prefix.
    pub fn error(&self) -> &str {
        self.stderr
            .lines()
            .find_map(|l| l.strip_prefix("oci-push: error: "))
            .unwrap_or_else(|| panic!("no error line in stderr:\n{}", self.stderr))
    }

    /// How many `oci-push: error:` lines stderr holds.
    pub fn error_count(&self) -> usize {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("oci-push: error:"))
            .count()
    }

    /// Asserts that no secret appears anywhere in stdout or stderr.
    pub fn assert_no_secrets<S: AsRef<str>>(&self, secrets: &[S]) {
        for secret in secrets {
            let secret = secret.as_ref();
            assert!(!secret.is_empty(), "an empty secret cannot be checked");
            for (name, text) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
                assert!(
                    !text.contains(secret),
                    "a secret ({} chars, starting {:?}) appears in {name}:\n{text}",
                    secret.len(),
                    &secret[..secret.len().min(3)]
                );
            }
        }
    }
}

pub fn oci_push<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let out: Output = Command::new(env!("CARGO_BIN_EXE_oci-push"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run oci-push");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn write_file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).expect("create");
    f.write_all(content).expect("write");
    path
}
