/*!
The push itself, as the steps of the distribution protocol: blobs first (skipping those the
registry has), then manifests by digest (children before the index that names them), then the tags
one at a time. Nothing is tagged unless everything it points at is in the registry, so a push that
stops half-way leaves only untagged content that a re-run completes.

This module reports what happens through [`Observer`] and never prints.
*/

use std::fs::File;

use ureq::http::{Method, StatusCode};

use crate::error::{Error, Kind, Result};
use crate::layout::{Blob, Layout, Manifest};
use crate::reference::Repository;
use crate::registry::{Client, Payload, Refusal};

/// What happened to a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The registry had it already; nothing was sent.
    Exists,
    Uploaded,
}

pub enum Event<'a> {
    Start {
        blobs: usize,
        manifests: usize,
        bytes: u64,
    },
    Blob(&'a Blob, BlobOutcome),
    Manifest(&'a Manifest),
    Tagged(&'a str),
}

pub trait Observer {
    fn event(&self, event: Event);
}

/// Pushes the layout's blobs and manifests, then applies `tags` in order, stopping at the first
/// tag that fails. Returns the digest of the top manifest.
pub fn push(
    client: &Client,
    repository: &Repository,
    layout: &Layout,
    tags: &[String],
    observer: &dyn Observer,
) -> Result<String> {
    let steps = Steps { client, repository };
    observer.event(Event::Start {
        blobs: layout.blobs.len(),
        manifests: layout.manifests.len(),
        bytes: layout.blobs.iter().map(|b| b.size).sum(),
    });
    for blob in &layout.blobs {
        let outcome = if steps.blob_exists(blob)? {
            BlobOutcome::Exists
        } else {
            steps.upload_blob(blob)?;
            BlobOutcome::Uploaded
        };
        observer.event(Event::Blob(blob, outcome));
    }
    for manifest in &layout.manifests {
        steps.put_manifest(manifest, &manifest.digest)?;
        observer.event(Event::Manifest(manifest));
    }
    let top = layout.top();
    for (done, tag) in tags.iter().enumerate() {
        steps.put_manifest(top, tag).map_err(|e| {
            let applied = list(&tags[..done]);
            let skipped = list(&tags[done + 1..]);
            e.context(format!(
                "tag '{tag}' failed (the image is pushed as {repository}@{}; tags applied: {applied}; not attempted: {skipped})",
                top.digest
            ))
        })?;
        observer.event(Event::Tagged(tag));
    }
    Ok(top.digest.clone())
}

fn list(tags: &[String]) -> String {
    if tags.is_empty() {
        "none".to_string()
    } else {
        tags.join(", ")
    }
}

/// The protocol steps, each one request or two, named as in the distribution spec.
struct Steps<'a> {
    client: &'a Client,
    repository: &'a Repository,
}

impl Steps<'_> {
    fn url(&self, rest: &str) -> String {
        self.client
            .url(&format!("/v2/{}/{rest}", self.repository.path()))
    }

    fn blob_exists(&self, blob: &Blob) -> Result<bool> {
        let url = self.url(&format!("blobs/{}", blob.digest));
        let what = format!("checking blob {}", blob.digest);
        let response = self
            .client
            .send(Method::HEAD, &url, &[], Payload::Empty, &what)?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => self
                .client
                .expect(response, &[], &Method::HEAD, &url, &what)
                .map(|_| false),
        }
    }

    /// `POST` an upload session, then `PUT` the whole file into it with the digest.
    fn upload_blob(&self, blob: &Blob) -> Result<()> {
        let what = format!("uploading blob {} ({})", blob.digest, blob.path.display());
        let start_url = self.url("blobs/uploads/");
        let response = self
            .client
            .send(Method::POST, &start_url, &[], Payload::Empty, &what)?;
        let response = self.client.expect(
            response,
            &[StatusCode::ACCEPTED],
            &Method::POST,
            &start_url,
            &what,
        )?;
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Error::new(
                    Kind::Rejected,
                    format!("{what}: POST {start_url} answered 202 without a Location header"),
                )
            })?;
        let separator = if location.contains('?') { '&' } else { '?' };
        let put_url = format!(
            "{}{separator}digest={}",
            self.client.url(location),
            blob.digest.replace(':', "%3A")
        );
        let file = File::open(&blob.path).map_err(|e| {
            Error::invalid(format!("{what}: cannot open {}: {e}", blob.path.display()))
        })?;
        let headers = [("content-type", "application/octet-stream")];
        let mut response = self.client.send(
            Method::PUT,
            &put_url,
            &headers,
            Payload::File(&file, blob.size),
            &what,
        )?;
        if response.status() == StatusCode::CREATED {
            return Ok(());
        }
        let refusal = Refusal::read(&mut response, &Method::PUT);
        if refusal.has_code("DIGEST_INVALID") {
            return Err(Error::invalid(format!(
                "blob {} is corrupt: the bytes of {} do not hash to its digest (the registry refused them); rebuild the image",
                blob.digest,
                blob.path.display()
            )));
        }
        Err(self
            .client
            .refusal_error(refusal, &Method::PUT, &put_url, &what))
    }

    /// `PUT` a manifest under `reference`: its digest, or a tag.
    fn put_manifest(&self, manifest: &Manifest, reference: &str) -> Result<()> {
        let url = self.url(&format!("manifests/{reference}"));
        let what = if reference == manifest.digest {
            format!("pushing manifest {}", manifest.digest)
        } else {
            format!("tagging {} as '{reference}'", manifest.digest)
        };
        let headers = [("content-type", manifest.media_type.as_str())];
        let response = self.client.send(
            Method::PUT,
            &url,
            &headers,
            Payload::Bytes(&manifest.bytes),
            &what,
        )?;
        let response =
            self.client
                .expect(response, &[StatusCode::CREATED], &Method::PUT, &url, &what)?;
        // A registry that stored other bytes than ours would make every signature wrong.
        if let Some(stored) = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            if stored != manifest.digest {
                return Err(Error::new(
                    Kind::Rejected,
                    format!(
                        "{what}: the registry stored the manifest as {stored}, not {}",
                        manifest.digest
                    ),
                ));
            }
        }
        Ok(())
    }
}
