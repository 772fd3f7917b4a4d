/*!
Reading an OCI image layout (`oci-layout`, `index.json`, `blobs/<alg>/<hex>`) into the list of
blobs and manifests to push, without touching the network.

Everything that can be checked cheaply is checked here, before the first request: the layout
version, that `index.json` names exactly one manifest, that every referenced blob exists with the
size its descriptor gives, and that every manifest hashes to its digest (manifests are small, so
this costs nothing). Blob bytes are hashed only by [`Layout::verify_blobs`]: at push time the
registry verifies them anyway, and hashing a large image twice would cost seconds of CPU.
*/

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, Digest, DigestAlgorithm, ImageIndex, ImageManifest};
use sha2::{Digest as _, Sha256, Sha512};

use crate::error::{Error, Result};
use crate::files;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

const BASE_NAME_ANNOTATION: &str = "org.opencontainers.image.base.name";

/// Registries refuse manifests past a few MiB; anything this large is not a manifest.
pub const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;
/// Indexes of indexes exist, but not this deep.
/// `oci-layout` holds one short JSON object.
const MAX_MARKER_BYTES: u64 = 64 * 1024;
const MAX_NESTING: usize = 8;

/// A blob (config or layer) to push, streamed from its source.
#[derive(Clone, Debug)]
pub struct Blob {
    pub digest: String,
    pub size: u64,
    pub source: Source,
    pub kind: BlobKind,
}

/// Where a blob's bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A file: the layout's, or the local full layout's (`--local-layout`).
    File(PathBuf),
    /// Left out of a thin layout: in the remote cache (`--remote-cache`), by its digest.
    Cache,
}

impl Blob {
    /// Where the bytes come from, for messages: the file, or "the remote cache".
    pub fn origin(&self) -> String {
        match &self.source {
            Source::File(path) => path.display().to_string(),
            Source::Cache => "the remote cache".to_string(),
        }
    }
}

/// The file a thin layout holds beside `index.json`: the blobs it leaves out, with their sizes.
pub const THIN_MARKER: &str = "oci-push-thin.json";
/// No layer is this large (1 TiB); a size past it in a thin layout's list is no size.
const MAX_BLOB_BYTES: u64 = 1 << 40;
/// A thin layout's list names each left-out blob in about 100 bytes.
const MAX_THIN_MARKER_BYTES: u64 = 16 * 1024 * 1024;

/// What a blob is to the image: reported to people and in JSON, never used for protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobKind {
    Config,
    Layer,
}

/// A manifest or index to push, with the exact bytes from the layout (its digest never changes).
#[derive(Clone, Debug)]
pub struct Manifest {
    pub digest: String,
    pub media_type: String,
    pub bytes: Vec<u8>,
    /// How deep it sits: 0 for the top, 1 for the manifests an index names, and so on.
    pub depth: usize,
    /// The digests it names (an image's config and layers, an index's manifests): the
    /// registry takes it only once they are all there.
    pub children: Vec<String>,
}

/// What a layout holds, in push order.
#[derive(Debug)]
pub struct Layout {
    /// Every distinct config and layer blob of every manifest, first-seen order.
    pub blobs: Vec<Blob>,
    /// Every manifest, children before the index that names them; the last one is the top.
    pub manifests: Vec<Manifest>,
    /// The platforms of the image (`linux/amd64`, `linux/arm64/v8`): the top index's entries,
    /// or a single image's config. Empty when the layout does not say.
    pub platforms: Vec<String>,
    /// The `org.opencontainers.image.base.name` annotations: where the base image came from,
    /// a hint of where to mount its layers from.
    pub base_names: Vec<String>,
}

impl Layout {
    /// Reads and checks the layout in `dir`: a full one, or a thin one whose left-out blobs
    /// come from the remote cache (see [`Layout::write_thin`]).
    pub fn open(dir: &Path) -> Result<Layout> {
        check_layout_marker(dir)?;
        let top = read_top_descriptor(dir)?;
        let mut reader = Reader {
            dir,
            omitted: read_thin_marker(dir)?,
            blobs: Vec::new(),
            manifests: Vec::new(),
            base_names: Vec::new(),
            platforms: Vec::new(),
            seen: HashSet::new(),
        };
        reader.visit(&top, 0)?;
        Ok(Layout {
            blobs: reader.blobs,
            manifests: reader.manifests,
            base_names: reader.base_names,
            platforms: reader.platforms,
        })
    }

    /// The image or index this layout is: the manifest pushed last and tagged.
    pub fn top(&self) -> &Manifest {
        // `open` fails unless it read the top manifest, so the list is never empty.
        &self.manifests[self.manifests.len() - 1]
    }

    /// Hashes every blob at hand and checks it against its digest: the offline check behind
    /// `--verify`. Blobs a thin layout left out are the remote cache's, checked by the
    /// registry when they go up.
    pub fn verify_blobs(&self) -> Result<()> {
        for blob in &self.blobs {
            if let Source::File(path) = &blob.source {
                let actual = hash_file(path, &blob.digest)?;
                if actual != blob.digest {
                    return Err(corrupt(&blob.digest, path, &actual));
                }
            }
        }
        Ok(())
    }

    /// The blobs left for the remote cache.
    pub fn in_cache(&self) -> impl Iterator<Item = &Blob> {
        self.blobs.iter().filter(|b| b.source == Source::Cache)
    }

    /// Takes the blobs a thin layout left out from `dir`, the full layout, where they are on
    /// this disk with their size: reading them here beats fetching them. (A file there that
    /// does not hash to its digest is refused by the registry, as any corrupt blob.)
    pub fn take_local(&mut self, dir: &Path) {
        for blob in self.blobs.iter_mut().filter(|b| b.source == Source::Cache) {
            let Some(path) = path_in(dir, &blob.digest) else {
                continue;
            };
            if fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() == blob.size) {
                blob.source = Source::File(path);
            }
        }
    }

    /// Writes the thin layout of this (full) layout to `out`: `oci-layout`, `index.json`,
    /// every manifest and config, and [`THIN_MARKER`] listing the layers left out with
    /// their sizes. That is all a push needs at hand; the layers come from the remote cache,
    /// where Bazel stores each file of an output directory by its SHA-256.
    pub fn write_thin(&self, dir: &Path, out: &Path) -> Result<()> {
        let write_error = |path: &Path, e: std::io::Error| {
            Error::usage(format!("cannot write {}: {e}", path.display()))
        };
        let blobs = out.join("blobs");
        fs::create_dir_all(&blobs).map_err(|e| write_error(&blobs, e))?;
        for name in ["oci-layout", "index.json"] {
            let to = out.join(name);
            fs::copy(dir.join(name), &to).map_err(|e| write_error(&to, e))?;
        }
        let mut kept = Vec::new();
        let mut omitted = Vec::new();
        for blob in &self.blobs {
            // Bazel's cache keys blobs by SHA-256: a layer of another algorithm stays here.
            let cached = blob.kind == BlobKind::Layer && blob.digest.starts_with("sha256:");
            match (&blob.source, cached) {
                (Source::File(path), false) => kept.push((&blob.digest, path.clone())),
                _ => omitted.push(serde_json::json!({"digest": blob.digest, "size": blob.size})),
            }
        }
        let place = |digest: &str| -> Result<Option<PathBuf>> {
            let Some(to) = path_in(out, digest) else {
                return Ok(None);
            };
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent).map_err(|e| write_error(parent, e))?;
            }
            Ok(Some(to))
        };
        for (digest, from) in kept {
            if let Some(to) = place(digest)? {
                fs::copy(&from, &to).map_err(|e| write_error(&to, e))?;
            }
        }
        // The manifests' bytes were read and hashed already: written from memory.
        for manifest in &self.manifests {
            if let Some(to) = place(&manifest.digest)? {
                fs::write(&to, &manifest.bytes).map_err(|e| write_error(&to, e))?;
            }
        }
        let marker = out.join(THIN_MARKER);
        let text = serde_json::json!({ "omitted": omitted }).to_string();
        fs::write(&marker, text + "\n").map_err(|e| write_error(&marker, e))
    }
}

/// `dir/blobs/ALG/HEX` for a digest the layout's reading checked.
fn path_in(dir: &Path, digest: &str) -> Option<PathBuf> {
    let (algorithm, hex) = digest.split_once(':')?;
    Some(dir.join("blobs").join(algorithm).join(hex))
}

/// The blobs a thin layout leaves out, by digest, with their sizes; none for a full layout.
fn read_thin_marker(dir: &Path) -> Result<HashMap<String, u64>> {
    let path = dir.join(THIN_MARKER);
    if !path.exists() {
        return Ok(HashMap::new());
    }
    let bytes = files::read_bounded(&path, MAX_THIN_MARKER_BYTES)
        .map_err(|e| Error::invalid(format!("cannot read {} ({e})", path.display())))?;
    let bad = |why: &str| {
        Error::invalid(format!(
            "{} is not a thin layout's list of blobs ({why}); rebuild the image",
            path.display()
        ))
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| bad(&e.to_string()))?;
    let entries = value
        .get("omitted")
        .and_then(|v| v.as_array())
        .ok_or_else(|| bad("no \"omitted\" list"))?;
    let mut omitted = HashMap::new();
    for entry in entries {
        let digest = entry.get("digest").and_then(|v| v.as_str());
        let size = entry
            .get("size")
            .and_then(|v| v.as_u64())
            .filter(|&size| size <= MAX_BLOB_BYTES);
        match (digest, size) {
            (Some(digest), Some(size)) => omitted.insert(digest.to_string(), size),
            _ => return Err(bad("an entry without a digest, or a size up to 1 TiB")),
        };
    }
    Ok(omitted)
}

fn corrupt(digest: &str, path: &Path, actual: &str) -> Error {
    Error::invalid(format!(
        "blob {digest} is corrupt: {} hashes to {actual}; rebuild the image",
        path.display()
    ))
}

struct Reader<'a> {
    dir: &'a Path,
    /// A thin layout's left-out blobs and their sizes.
    omitted: HashMap<String, u64>,
    blobs: Vec<Blob>,
    manifests: Vec<Manifest>,
    base_names: Vec<String>,
    platforms: Vec<String>,
    seen: HashSet<String>,
}

impl Reader<'_> {
    fn visit(&mut self, desc: &Descriptor, depth: usize) -> Result<()> {
        let digest = desc.digest().to_string();
        if !self.seen.insert(digest.clone()) {
            return Ok(());
        }
        if depth > MAX_NESTING {
            return Err(Error::invalid(format!(
                "manifest {digest} is nested more than {MAX_NESTING} indexes deep"
            )));
        }
        let path = self.blob_path(desc)?;
        if desc.size() > MAX_MANIFEST_BYTES {
            return Err(Error::invalid(format!(
                "manifest {digest} is {} bytes, too large for a manifest",
                desc.size()
            )));
        }
        let bytes = read_manifest(&path, &digest, desc.size())?;
        let media_type = media_type_of(desc, &bytes, &path)?;
        let mut children = Vec::new();
        let parse_error = |e: serde_json::Error| {
            Error::invalid(format!(
                "manifest {digest} ({}) is not a valid {media_type}: {e}{}",
                path.display(),
                digest_hint(&e)
            ))
        };
        match media_type.as_str() {
            OCI_INDEX | DOCKER_MANIFEST_LIST => {
                let index: ImageIndex = serde_json::from_slice(&bytes).map_err(parse_error)?;
                for child in index.manifests() {
                    if depth == 0 {
                        if let Some(platform) = child.platform() {
                            self.platforms.push(platform_name(
                                platform.os().to_string(),
                                platform.architecture().to_string(),
                                platform.variant().clone(),
                            ));
                        }
                    }
                    children.push(child.digest().to_string());
                    self.visit(child, depth + 1)?;
                }
            }
            OCI_MANIFEST | DOCKER_MANIFEST => {
                let manifest: ImageManifest =
                    serde_json::from_slice(&bytes).map_err(parse_error)?;
                self.add_blob(manifest.config(), BlobKind::Config)?;
                children.push(manifest.config().digest().to_string());
                for layer in manifest.layers() {
                    self.add_blob(layer, BlobKind::Layer)?;
                    children.push(layer.digest().to_string());
                }
                if depth == 0 && self.present(manifest.config()) {
                    self.platforms
                        .extend(config_platform(&self.blob_path(manifest.config())?));
                }
                let base = manifest
                    .annotations()
                    .as_ref()
                    .and_then(|a| a.get(BASE_NAME_ANNOTATION));
                if let Some(base) = base {
                    if !self.base_names.contains(base) {
                        self.base_names.push(base.clone());
                    }
                }
            }
            other => {
                return Err(Error::invalid(format!(
                    "manifest {digest} ({}) has media type {other}, which oci-push cannot push; \
                     expected an OCI or Docker schema 2 manifest or index",
                    path.display()
                )))
            }
        }
        self.manifests.push(Manifest {
            digest,
            media_type,
            bytes,
            depth,
            children,
        });
        Ok(())
    }

    fn add_blob(&mut self, desc: &Descriptor, kind: BlobKind) -> Result<()> {
        let digest = desc.digest().to_string();
        if !self.seen.insert(digest.clone()) {
            return Ok(());
        }
        let source = match self.omitted.get(&digest) {
            Some(_) if !digest.starts_with("sha256:") => {
                return Err(Error::invalid(format!(
                    "blob {digest} is left to the remote cache in {}, which keeps SHA-256 blobs only; rebuild the image",
                    self.dir.join(THIN_MARKER).display()
                )))
            }
            Some(&size) if size == desc.size() && !self.present(desc) => Source::Cache,
            Some(&size) if size != desc.size() => {
                return Err(Error::invalid(format!(
                "blob {digest} is {size} bytes in {}, its descriptor says {}; rebuild the image",
                self.dir.join(THIN_MARKER).display(),
                desc.size()
            )))
            }
            _ => Source::File(self.blob_path(desc)?),
        };
        self.blobs.push(Blob {
            digest,
            size: desc.size(),
            source,
            kind,
        });
        Ok(())
    }

    /// Whether the layout holds a descriptor's file (a thin layout holds its configs).
    fn present(&self, desc: &Descriptor) -> bool {
        path_in(self.dir, desc.digest().as_ref()).is_some_and(|path| path.is_file())
    }

    /// The file of a descriptor, checked to exist with the descriptor's size. The digest was
    /// validated by parsing (algorithm and hex only), so the path cannot leave `blobs/`.
    fn blob_path(&self, desc: &Descriptor) -> Result<PathBuf> {
        let digest = desc.digest();
        check_algorithm(digest)?;
        let Some(path) = path_in(self.dir, digest.as_ref()) else {
            return Err(Error::invalid(format!("{digest} is not a digest")));
        };
        let meta = fs::metadata(&path).map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::NotFound => "is missing".to_string(),
                _ => format!("cannot be read ({e})"),
            };
            Error::invalid(format!(
                "blob {digest} {why}: expected {}; the layout is incomplete, rebuild the image",
                path.display()
            ))
        })?;
        if !meta.is_file() {
            return Err(Error::invalid(format!(
                "blob {digest}: {} is not a file",
                path.display()
            )));
        }
        if meta.len() != desc.size() {
            return Err(Error::invalid(format!(
                "blob {digest} has the wrong size: {} is {} bytes, its descriptor says {}; rebuild the image",
                path.display(),
                meta.len(),
                desc.size()
            )));
        }
        Ok(path)
    }
}

/// What a digest must look like, when the JSON parser refused one.
fn digest_hint(e: &serde_json::Error) -> &'static str {
    if e.to_string().to_lowercase().contains("digest") {
        " (a digest is ALGORITHM:HEX with lower-case hex, e.g. sha256:9f86d0...)"
    } else {
        ""
    }
}

/// `os/arch` or `os/arch/variant`.
pub fn platform_name(os: String, architecture: String, variant: Option<String>) -> String {
    match variant {
        Some(variant) if !variant.is_empty() => format!("{os}/{architecture}/{variant}"),
        _ => format!("{os}/{architecture}"),
    }
}

/// The platform an image config names, for reports; a config that does not say is no error.
fn config_platform(path: &Path) -> Option<String> {
    const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;
    let bytes = files::read_bounded(path, MAX_CONFIG_BYTES).ok()?;
    let config: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let text = |key: &str| config.get(key).and_then(|v| v.as_str()).map(str::to_string);
    Some(platform_name(
        text("os")?,
        text("architecture")?,
        text("variant"),
    ))
}

fn check_layout_marker(dir: &Path) -> Result<()> {
    let path = dir.join("oci-layout");
    let bytes = files::read_bounded(&path, MAX_MARKER_BYTES).map_err(|e| {
        let hint = if dir.is_dir() {
            "not an OCI image layout"
        } else if dir.exists() {
            "not a directory"
        } else {
            "no such directory"
        };
        Error::invalid(format!(
            "cannot read {} ({e}): {} is {hint}; pass the directory an oci_image target builds",
            path.display(),
            dir.display()
        ))
    })?;
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid(format!("{} is not valid JSON: {e}", path.display())))?;
    match value.get("imageLayoutVersion").and_then(|v| v.as_str()) {
        Some("1.0.0") => Ok(()),
        Some(other) => Err(Error::invalid(format!(
            "{} has imageLayoutVersion {other}; oci-push reads version 1.0.0",
            path.display()
        ))),
        None => Err(Error::invalid(format!(
            "{} has no imageLayoutVersion",
            path.display()
        ))),
    }
}

fn read_top_descriptor(dir: &Path) -> Result<Descriptor> {
    let path = dir.join("index.json");
    let bytes = files::read_bounded(&path, MAX_MANIFEST_BYTES)
        .map_err(|e| Error::invalid(format!("cannot read {} ({e})", path.display())))?;
    let index: ImageIndex = serde_json::from_slice(&bytes).map_err(|e| {
        Error::invalid(format!(
            "{} is not a valid OCI index: {e}{}",
            path.display(),
            digest_hint(&e)
        ))
    })?;
    match index.manifests().as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::invalid(format!(
            "{} lists no manifest; the layout holds no image to push",
            path.display()
        ))),
        many => Err(Error::invalid(format!(
            "{} lists {} manifests ({}); oci-push pushes one image or index per layout, \
             so wrap them in an image index (oci_image_index) first",
            path.display(),
            many.len(),
            many.iter()
                .map(|d| d.digest().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The algorithms we hash with. (The length of the hex is oci-spec's check, when the digest
/// is parsed.)
fn check_algorithm(digest: &Digest) -> Result<()> {
    match digest.algorithm() {
        DigestAlgorithm::Sha256 | DigestAlgorithm::Sha512 => Ok(()),
        algorithm => Err(Error::invalid(format!(
            "digest {digest} uses {algorithm}; oci-push supports sha256 and sha512"
        ))),
    }
}

fn read_manifest(path: &Path, digest: &str, size: u64) -> Result<Vec<u8>> {
    let bytes = files::read_bounded(path, size)
        .map_err(|e| Error::invalid(format!("cannot read manifest {}: {e}", path.display())))?;
    // blob_path checked the size already; a file that changed since is a broken build.
    if bytes.len() as u64 != size {
        return Err(Error::invalid(format!(
            "manifest {digest} changed while being read: {}",
            path.display()
        )));
    }
    let actual = hash_bytes(&bytes, digest);
    if actual != digest {
        return Err(corrupt(digest, path, &actual));
    }
    Ok(bytes)
}

/// The media type to push a manifest with: the manifest's own `mediaType` field (what the
/// registry checks the Content-Type against), else the descriptor's, else what its fields show.
fn media_type_of(desc: &Descriptor, bytes: &[u8], path: &Path) -> Result<String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        Error::invalid(format!(
            "manifest {} ({}) is not valid JSON: {e}",
            desc.digest(),
            path.display()
        ))
    })?;
    if let Some(own) = value.get("mediaType").and_then(|v| v.as_str()) {
        return Ok(own.to_string());
    }
    let from_descriptor = desc.media_type().to_string();
    if !from_descriptor.is_empty() {
        return Ok(from_descriptor);
    }
    Ok(if value.get("manifests").is_some() {
        OCI_INDEX
    } else {
        OCI_MANIFEST
    }
    .to_string())
}

/// A running hash of the algorithm of a digest that `check_algorithm` accepted.
enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    fn like(digest: &str) -> Hasher {
        if digest.starts_with("sha512:") {
            Hasher::Sha512(Sha512::new())
        } else {
            Hasher::Sha256(Sha256::new())
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => format!("sha256:{:x}", h.finalize()),
            Hasher::Sha512(h) => format!("sha512:{:x}", h.finalize()),
        }
    }
}

/// The digest of `bytes` in the algorithm of the digest `like` (`sha256:...`, `sha512:...`).
pub fn hash_bytes(bytes: &[u8], like: &str) -> String {
    let mut hasher = Hasher::like(like);
    hasher.update(bytes);
    hasher.finish()
}

/// Streams a file through the hash of `like`'s algorithm, never holding it in memory.
fn hash_file(path: &Path, like: &str) -> Result<String> {
    let read_error = |e: std::io::Error| {
        Error::invalid(format!(
            "cannot read blob {like} at {}: {e}",
            path.display()
        ))
    };
    let mut file = File::open(path).map_err(read_error)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut hasher = Hasher::like(like);
    loop {
        let n = file.read(&mut buf).map_err(read_error)?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buf[..n]);
    }
}
