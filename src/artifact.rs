/*!
Writing a referrer's layout at build time (`--write-artifact`, behind the `oci_artifact` rule):
one OCI image manifest carrying files Bazel made (an SBOM, an in-toto statement, a signature
bundle), with `artifactType`, the empty config, and `subject` set to the image's manifest,
whose digest the image's layout already knows. The output is byte-for-byte reproducible: no
time stamp, keys in a fixed order.
*/

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::layout::{platform_name, Layout, Manifest, OCI_INDEX, OCI_MANIFEST};

/// The empty config (`{}`) that artifacts without a config of their own carry, per the image
/// spec's guidance for artifacts.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY_JSON: &[u8] = b"{}";
/// Annotations are a few lines each; this many bytes of them is not an annotation.
const MAX_ANNOTATIONS_BYTES: usize = 1 << 20;

/// What `--write-artifact` writes.
#[derive(Debug)]
pub struct Spec {
    /// The directory to write the layout to: absent or empty.
    pub out: PathBuf,
    /// The subject's layout: the image the artifact is for.
    pub subject_layout: PathBuf,
    /// With an index as subject: the platform manifest to refer to instead (`linux/arm64`).
    pub subject_platform: Option<String>,
    pub artifact_type: String,
    /// Each file with its layer's media type.
    pub files: Vec<(PathBuf, String)>,
    pub annotations: Vec<(String, String)>,
}

/// Writes the artifact layout of `spec`, and reads it back as a push would (a referrer of
/// the subject); returns its manifest's digest.
pub fn write(spec: &Spec) -> Result<String> {
    let image = Layout::open(&spec.subject_layout)
        .map_err(|e| e.context("--write-artifact: the subject"))?;
    let subject = subject(&image, spec.subject_platform.as_deref())?;
    // Every file is checked before anything is written: a missing one leaves no half layout.
    for (path, _) in &spec.files {
        open_file(path)?;
    }
    prepare_out(&spec.out)?;
    let blobs = spec.out.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(|e| write_error(&blobs, e))?;

    let empty = store_bytes(&blobs, EMPTY_JSON)?;
    let config = descriptor(EMPTY_MEDIA_TYPE, &empty, EMPTY_JSON.len() as u64);
    let mut layers = Vec::new();
    for (path, media_type) in &spec.files {
        let (digest, size) = store_file(&blobs, path)?;
        let mut layer = descriptor(media_type, &digest, size);
        // What `oras pull` names the file by.
        if let Some(name) = path.file_name() {
            layer["annotations"] =
                json!({"org.opencontainers.image.title": name.to_string_lossy()});
        }
        layers.push(layer);
    }
    // The image spec wants at least one layer: an artifact of annotations only carries the
    // empty blob, as its guidance says.
    if layers.is_empty() {
        layers.push(config.clone());
    }
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": spec.artifact_type,
        "config": config,
        "layers": layers,
        "subject": descriptor(&subject.media_type, &subject.digest, subject.bytes.len() as u64),
    });
    if !spec.annotations.is_empty() {
        let map: Map<String, Value> = spec
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        manifest["annotations"] = Value::Object(map);
    }
    let bytes = serde_json::to_vec(&manifest)
        .map_err(|e| Error::invalid(format!("--write-artifact: the manifest: {e}")))?;
    let digest = store_bytes(&blobs, &bytes)?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": digest,
            "size": bytes.len(),
            "artifactType": spec.artifact_type,
        }],
    });
    write_file(&spec.out.join("index.json"), index.to_string().as_bytes())?;
    write_file(
        &spec.out.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    crate::referrer::open_all(std::slice::from_ref(&spec.out), &image)?;
    Ok(digest)
}

/// The manifest the artifact refers to: the layout's top one, or with `platform` the manifest
/// its top index lists for that platform.
fn subject<'l>(image: &'l Layout, platform: Option<&str>) -> Result<&'l Manifest> {
    let top = image.top();
    let Some(platform) = platform else {
        return Ok(top);
    };
    let value: Value = serde_json::from_slice(&top.bytes)
        .map_err(|e| Error::invalid(format!("the subject's manifest is not JSON: {e}")))?;
    let entries = value
        .get("manifests")
        .and_then(|v| v.as_array())
        .ok_or_else(|| {
            Error::invalid(format!(
                "--subject-platform {platform}: the subject {} is a single image, not an index; \
                 leave the platform out",
                top.digest
            ))
        })?;
    let field = |entry: &Value, name: &str| {
        entry
            .pointer(&format!("/platform/{name}"))
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string()
    };
    let mut listed = Vec::new();
    for entry in entries {
        let name = platform_name(
            field(entry, "os"),
            field(entry, "architecture"),
            Some(field(entry, "variant")),
        );
        let digest = entry.get("digest").and_then(|v| v.as_str()).unwrap_or("");
        if name == platform {
            if let Some(manifest) = image.manifests.iter().find(|m| m.digest == digest) {
                return Ok(manifest);
            }
        }
        listed.push(name);
    }
    Err(Error::invalid(format!(
        "--subject-platform {platform}: the index {} has no manifest for it (it lists {}); give \
         one of those",
        top.digest,
        listed.join(", ")
    )))
}

fn descriptor(media_type: &str, digest: &str, size: u64) -> Value {
    json!({"mediaType": media_type, "digest": digest, "size": size})
}

/// The output directory must be new or empty: Bazel creates it empty, and anything else
/// there would be left in the layout.
fn prepare_out(out: &Path) -> Result<()> {
    match fs::read_dir(out).map(|mut entries| entries.next().is_some()) {
        Ok(true) => Err(Error::usage(format!(
            "--write-artifact {}: the directory is not empty; give a new or empty one",
            out.display()
        ))),
        Ok(false) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(out).map_err(|e| write_error(out, e))
        }
        Err(e) => Err(write_error(out, e)),
    }
}

fn write_error(path: &Path, e: std::io::Error) -> Error {
    Error::usage(format!("cannot write {}: {e}", path.display()))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).map_err(|e| write_error(path, e))
}

/// Stores `bytes` as a blob; returns its digest.
fn store_bytes(blobs: &Path, bytes: &[u8]) -> Result<String> {
    let hex = format!("{:x}", Sha256::digest(bytes));
    write_file(&blobs.join(&hex), bytes)?;
    Ok(format!("sha256:{hex}"))
}

/// Copies a file in as a blob, hashing it on the way (never whole in memory); returns its
/// digest and size.
fn store_file(blobs: &Path, path: &Path) -> Result<(String, u64)> {
    let mut input = open_file(path)?;
    let read_error = |e: std::io::Error| {
        Error::invalid(format!(
            "--artifact-file {}: cannot read it ({e})",
            path.display()
        ))
    };
    let partial = blobs.join(".partial");
    let mut output = File::create(&partial).map_err(|e| write_error(&partial, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(read_error)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        output
            .write_all(&buf[..n])
            .map_err(|e| write_error(&partial, e))?;
        size += n as u64;
    }
    drop(output);
    let hex = format!("{:x}", hasher.finalize());
    let to = blobs.join(&hex);
    fs::rename(&partial, &to).map_err(|e| write_error(&to, e))?;
    Ok((format!("sha256:{hex}"), size))
}

/// An artifact file, opened: a regular file.
fn open_file(path: &Path) -> Result<File> {
    let read_error = |e: std::io::Error| {
        Error::invalid(format!(
            "--artifact-file {}: cannot read it ({e})",
            path.display()
        ))
    };
    let input = File::open(path).map_err(read_error)?;
    if !input.metadata().map_err(read_error)?.is_file() {
        return Err(Error::invalid(format!(
            "--artifact-file {}: not a file",
            path.display()
        )));
    }
    Ok(input)
}

/// `PATH:MEDIA_TYPE` of `--artifact-file` (oras's form), split at the last colon; a bare path
/// carries `application/octet-stream`.
pub fn parse_file(text: &str) -> Result<(PathBuf, String)> {
    match text.rsplit_once(':') {
        Some((path, media_type)) if !path.is_empty() => {
            check_media_type("--artifact-file", media_type)?;
            Ok((PathBuf::from(path), media_type.to_string()))
        }
        _ if !text.is_empty() && !text.contains(':') => {
            Ok((PathBuf::from(text), "application/octet-stream".to_string()))
        }
        _ => Err(Error::usage(format!(
            "--artifact-file {text}: expected PATH or PATH:MEDIA_TYPE"
        ))),
    }
}

/// `KEY=VALUE` of `--annotation`.
pub fn parse_annotation(text: &str) -> Result<(String, String)> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() && key.trim() == key => {
            Ok((key.to_string(), value.to_string()))
        }
        _ => Err(Error::usage(format!(
            "--annotation {text}: expected KEY=VALUE with a key before the ="
        ))),
    }
}

/// Checks the annotations as a whole: each key once, and a sane size.
pub fn check_annotations(annotations: &[(String, String)]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for (key, _) in annotations {
        if !seen.insert(key) {
            return Err(Error::usage(format!(
                "--annotation {key}: given twice; give each key once"
            )));
        }
    }
    let bytes: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if bytes > MAX_ANNOTATIONS_BYTES {
        return Err(Error::usage(format!(
            "--annotation: {bytes} bytes of annotations; registries refuse manifests that large, \
             put the data in a file (--artifact-file)"
        )));
    }
    Ok(())
}

/// `type/subtype`, with the characters RFC 6838 allows (and `+` suffixes).
pub fn check_media_type(flag: &str, text: &str) -> Result<()> {
    let part_ok = |part: &str| {
        !part.is_empty()
            && part.len() <= 127
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match text.split_once('/') {
        Some((kind, subtype)) if part_ok(kind) && part_ok(subtype) => Ok(()),
        _ => Err(Error::usage(format!(
            "{flag} {text}: not a media type; expected type/subtype, e.g. application/spdx+json"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_files_split_at_the_last_colon() {
        let (path, media_type) = parse_file("out/sbom.json:application/spdx+json").unwrap();
        assert_eq!(path, PathBuf::from("out/sbom.json"));
        assert_eq!(media_type, "application/spdx+json");
        let (path, media_type) = parse_file("a:b/sbom.json:text/plain").unwrap();
        assert_eq!(path, PathBuf::from("a:b/sbom.json"));
        assert_eq!(media_type, "text/plain");
        assert_eq!(
            parse_file("sbom.json").unwrap().1,
            "application/octet-stream"
        );
        assert!(parse_file("a:b").is_err());
        assert!(parse_file(":text/plain").is_err());
        assert!(parse_file("").is_err());
    }

    #[test]
    fn annotations_need_a_key_once() {
        assert_eq!(
            parse_annotation("org.example=a=b").unwrap(),
            ("org.example".to_string(), "a=b".to_string())
        );
        assert!(parse_annotation("=v").is_err());
        assert!(parse_annotation("novalue").is_err());
        let twice = vec![
            ("k".to_string(), "1".to_string()),
            ("k".to_string(), "2".to_string()),
        ];
        assert!(check_annotations(&twice).is_err());
    }

    #[test]
    fn media_types_are_type_slash_subtype() {
        assert!(check_media_type("f", "application/vnd.in-toto+json").is_ok());
        for bad in ["", "json", "application/", "a/b c", "a/b;x=y"] {
            assert!(check_media_type("f", bad).is_err(), "{bad}");
        }
    }
}
