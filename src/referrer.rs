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

/// Reads every referrer layout and checks that its subject is a manifest of `image`, or
/// another of the referrers (a signature of the SBOM), with the subject descriptor's size and
/// media type. Returns them in push order: each after the referrer it refers to.
pub fn open_all(dirs: &[PathBuf], image: &Layout) -> Result<Vec<Referrer>> {
    let mut opened: Vec<(Referrer, Subject)> = Vec::new();
    for dir in dirs {
        let (referrer, subject) = open(dir)?;
        if !opened
            .iter()
            .any(|(r, _)| r.manifest().digest == referrer.manifest().digest)
        {
            opened.push((referrer, subject));
        }
    }
    for (referrer, subject) in &opened {
        let among_referrers = opened
            .iter()
            .map(|(r, _)| r.manifest())
            .filter(|m| m.digest != referrer.manifest().digest);
        let target = image
            .manifests
            .iter()
            .chain(among_referrers)
            .find(|m| m.digest == subject.digest);
        let Some(target) = target else {
            return Err(Error::invalid(format!(
                "referrer {}: its subject {} is not a manifest of the image {}: the subject \
                 must be {}, or another referrer; build the referrer for this image \
                 (oci_artifact's subject)",
                referrer.dir.display(),
                subject.digest,
                image.top().digest,
                image_manifests(image)
            )));
        };
        if subject.size != Some(target.bytes.len() as u64)
            || subject.media_type != target.media_type
        {
            return Err(invalid(
                &referrer.dir,
                format!(
                    "its subject names {} as {} bytes of {}, but that manifest is {} bytes of {}",
                    subject.digest,
                    subject.size.map_or("?".to_string(), |s| s.to_string()),
                    subject.media_type,
                    target.bytes.len(),
                    target.media_type
                ),
            ));
        }
    }
    // Push order: those of the image first, then those of a referrer already placed.
    let mut ordered: Vec<Referrer> = Vec::new();
    while !opened.is_empty() {
        let ready = opened.iter().position(|(r, _)| {
            image.manifests.iter().any(|m| m.digest == r.subject)
                || ordered.iter().any(|o| o.manifest().digest == r.subject)
        });
        // Digests cannot form a cycle; a set that does not resolve is kept as given.
        let (referrer, _) = opened.remove(ready.unwrap_or(0));
        ordered.push(referrer);
    }
    Ok(ordered)
}

/// A referrer's subject descriptor, as its manifest gives it.
struct Subject {
    digest: String,
    size: Option<u64>,
    media_type: String,
}

fn invalid(dir: &Path, why: String) -> Error {
    Error::invalid(format!(
        "referrer {}: {why}; a referrer is an OCI image manifest whose subject is the pushed \
         image (oci_artifact builds one)",
        dir.display()
    ))
}

fn open(dir: &Path) -> Result<(Referrer, Subject)> {
    let layout = Layout::open(dir).map_err(|e| e.context(format!("referrer {}", dir.display())))?;
    let bad = |why: String| invalid(dir, why);
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
    let subject = Subject {
        digest: field("digest").to_string(),
        size: subject.get("size").and_then(|v| v.as_u64()),
        media_type: field("mediaType").to_string(),
    };
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
    let referrer = Referrer {
        dir: dir.to_path_buf(),
        layout,
        subject: subject.digest.clone(),
        artifact_type,
        annotations,
    };
    Ok((referrer, subject))
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
