/*!
Referrers (OCI 1.1): artifacts that ship with the image, such as an SBOM, a provenance
statement or a signature, each an OCI layout of one image manifest whose `subject` names the
image or one of its platform manifests. They are read and checked here, offline, before any
request: a referrer of another image would otherwise be found out only after the image was
pushed.
*/

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::layout::{Layout, Manifest, OCI_MANIFEST};

/// One referrer to push after the image, before its tags.
#[derive(Debug)]
pub struct Referrer {
    /// Where it was read from, for messages.
    pub dir: PathBuf,
    /// Its blobs and its one manifest.
    pub layout: Layout,
    /// The digest of the manifest it refers to.
    pub subject: String,
    /// Its `artifactType`, else its config's media type (what the referrers API lists).
    pub artifact_type: String,
    /// Its manifest's annotations, copied into the referrers index.
    pub annotations: serde_json::Map<String, serde_json::Value>,
}

impl Referrer {
    /// The referrer's manifest.
    pub fn manifest(&self) -> &Manifest {
        self.layout.top()
    }

    /// Its descriptor in a referrers index: with its artifact type and every annotation, as
    /// the distribution spec says the registry (or the client keeping the fallback tag) lists it.
    pub fn descriptor(&self) -> serde_json::Value {
        let manifest = self.manifest();
        let mut descriptor = serde_json::json!({
            "mediaType": manifest.media_type,
            "digest": manifest.digest,
            "size": manifest.bytes.len(),
            "artifactType": self.artifact_type,
        });
        if !self.annotations.is_empty() {
            descriptor["annotations"] = serde_json::Value::Object(self.annotations.clone());
        }
        descriptor
    }
}

/// Reads every referrer layout and checks that its subject is a manifest of `image`, with the
/// subject descriptor's size and media type.
pub fn open_all(dirs: &[PathBuf], image: &Layout) -> Result<Vec<Referrer>> {
    let mut referrers: Vec<Referrer> = Vec::new();
    for dir in dirs {
        let referrer = open(dir, image)?;
        if !referrers
            .iter()
            .any(|r| r.manifest().digest == referrer.manifest().digest)
        {
            referrers.push(referrer);
        }
    }
    Ok(referrers)
}

fn open(dir: &Path, image: &Layout) -> Result<Referrer> {
    let layout = Layout::open(dir).map_err(|e| e.context(format!("referrer {}", dir.display())))?;
    let bad = |why: String| {
        Error::invalid(format!(
            "referrer {}: {why}; a referrer is an OCI image manifest whose subject is the pushed \
             image (oci_artifact builds one)",
            dir.display()
        ))
    };
    if let Some(blob) = layout.in_cache().next() {
        return Err(bad(format!(
            "it is a thin layout (blob {} is left to the remote cache); give its full layout",
            blob.digest
        )));
    }
    let manifest = layout.top();
    if manifest.media_type != OCI_MANIFEST {
        return Err(bad(format!(
            "its manifest {} is a {}",
            manifest.digest, manifest.media_type
        )));
    }
    // Layout::open parsed it as a manifest already: only the fields it does not keep.
    let value: serde_json::Value = serde_json::from_slice(&manifest.bytes)
        .map_err(|e| bad(format!("its manifest is not JSON ({e})")))?;
    let Some(subject) = value.get("subject") else {
        return Err(bad(format!(
            "its manifest {} has no subject",
            manifest.digest
        )));
    };
    let field = |name: &str| subject.get(name).and_then(|v| v.as_str()).unwrap_or("");
    let digest = field("digest").to_string();
    let Some(target) = image.manifests.iter().find(|m| m.digest == digest) else {
        return Err(Error::invalid(format!(
            "referrer {}: its subject {digest} is not a manifest of the image {}: the subject \
             must be {}; build the referrer for this image (oci_artifact's subject)",
            dir.display(),
            image.top().digest,
            image_manifests(image)
        )));
    };
    let size = subject.get("size").and_then(|v| v.as_u64());
    if size != Some(target.bytes.len() as u64) || field("mediaType") != target.media_type {
        return Err(bad(format!(
            "its subject names {digest} as {} bytes of {}, but that manifest is {} bytes of {}",
            size.map_or("?".to_string(), |s| s.to_string()),
            field("mediaType"),
            target.bytes.len(),
            target.media_type
        )));
    }
    let config_type = value
        .pointer("/config/mediaType")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let artifact_type = match value.get("artifactType").and_then(|v| v.as_str()) {
        Some(own) if !own.is_empty() => own,
        _ => config_type,
    }
    .to_string();
    let annotations = value
        .get("annotations")
        .and_then(|v| v.as_object())
        .cloned()
        .unwrap_or_default();
    Ok(Referrer {
        dir: dir.to_path_buf(),
        layout,
        subject: digest,
        artifact_type,
        annotations,
    })
}

/// The digests a subject may be, for the message when it is none of them.
fn image_manifests(image: &Layout) -> String {
    match image.manifests.len() {
        1 => "the image itself".to_string(),
        n => format!(
            "the index itself or one of its {} manifests ({})",
            n - 1,
            image.manifests[..n - 1]
                .iter()
                .map(|m| m.digest.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The fallback tag of a subject, as the distribution spec's referrers tag schema has it:
/// `<alg>-<ref>`, the digest's hex cut to 64 characters (a sha512 one is longer).
pub fn fallback_tag(subject: &str) -> String {
    let (algorithm, hex) = subject.split_once(':').unwrap_or((subject, ""));
    let hex: String = hex.chars().take(64).collect();
    format!("{algorithm}-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_tag_is_alg_dash_hex_within_a_tag_s_length() {
        let sha256 = format!("sha256:{}", "a".repeat(64));
        assert_eq!(fallback_tag(&sha256), format!("sha256-{}", "a".repeat(64)));
        let sha512 = format!("sha512:{}", "b".repeat(128));
        assert_eq!(fallback_tag(&sha512), format!("sha512-{}", "b".repeat(64)));
    }
}
