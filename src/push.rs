/*!
The push itself, as the steps of the distribution protocol: blobs first (skipping those the
registry has, mounting those another repository has), then manifests by digest (children before
the index that names them), then the tags one at a time. Nothing is tagged unless everything it
points at is in the registry, so a push that stops half-way leaves only untagged content that a
re-run completes.

Blobs go up on a small pool of plain threads sharing the one client, and so do the manifests of
one level of an index (its platform images), a level only after the one it names; tags stay in
order on the calling thread. This module reports what happens through [`Observer`] and never
prints.
*/

use std::fs::File;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use ureq::http::{Method, StatusCode};

use crate::error::{Error, Kind, Result};
use crate::layout::{Blob, Layout, Manifest};
use crate::reference::Repository;
use crate::registry::{redact, with_query, Client, FileBody, Payload, Refusal};

/// What happened to a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The registry had it already; nothing was sent.
    Exists,
    /// Linked from another repository of the registry; nothing was sent.
    Mounted,
    Uploaded,
}

/// What happened to a tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TagOutcome {
    Applied,
    /// It already pointed at the image; not written again (safe with immutable tags).
    Unchanged,
}

/// What happens, in order. In a dry run the outcomes are what would happen.
pub enum Event<'a> {
    Start {
        dry_run: bool,
    },
    /// The registry has the whole image already: no blob or manifest is sent.
    ImageExists(&'a Manifest),
    /// A blob's bytes start going out.
    BlobUploading(&'a Blob),
    /// How far into the blob the upload is (bytes); it goes back when an upload starts over.
    BlobProgress(&'a Blob, u64),
    Blob(&'a Blob, BlobOutcome),
    Manifest(&'a Manifest),
    Tag {
        tag: &'a str,
        outcome: TagOutcome,
        /// The digest the tag pointed at before, if it existed.
        previous: Option<&'a str>,
    },
    TagFailed(&'a str),
}

/// Receives events, possibly from several upload threads at once.
pub trait Observer: Sync {
    fn event(&self, event: Event);
}

/// How to push, beyond what to push.
#[derive(Clone, Debug)]
pub struct Options {
    /// Blob uploads at once.
    pub jobs: usize,
    /// Repository paths on the same registry to mount missing blobs from, in order.
    pub mount_from: Vec<String>,
    /// Upload in chunks of this many bytes (`PATCH`), instead of one `PUT`.
    pub chunk_size: Option<u64>,
    /// Only ask (HEAD requests) and report what a push would do; write nothing.
    pub dry_run: bool,
}

/// Pushes the layout's blobs and manifests, then applies `tags` in order, stopping at the first
/// tag that fails. Returns the digest of the top manifest. With `options.dry_run` it only asks
/// the registry what it has (HEAD requests) and reports, as events, what a push would upload,
/// mount or skip and which tags would change.
pub fn push(
    client: &Client,
    repository: &Repository,
    layout: &Layout,
    tags: &[String],
    options: &Options,
    observer: &dyn Observer,
) -> Result<String> {
    let steps = Steps {
        client,
        repository,
        options,
        observer,
    };
    steps.run(layout, tags)
}

/// Runs `step` on every item, on up to `jobs` threads (the calling one included), taking the
/// items in order. After the first failure no new item is started, and that failure is the
/// result.
fn in_parallel<T: Sync>(
    items: &[T],
    jobs: usize,
    step: impl Fn(&T) -> Result<()> + Sync,
) -> Result<()> {
    let next = AtomicUsize::new(0);
    let failure: Mutex<Option<Error>> = Mutex::new(None);
    let failed = || failure.lock().map(|f| f.is_some()).unwrap_or(true);
    let work = || {
        while !failed() {
            let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) else {
                return;
            };
            if let Err(e) = step(item) {
                if let Ok(mut first) = failure.lock() {
                    first.get_or_insert(e);
                }
                return;
            }
        }
    };
    let threads = jobs.clamp(1, items.len().max(1));
    std::thread::scope(|scope| {
        for _ in 1..threads {
            scope.spawn(work);
        }
        work();
    });
    match failure.into_inner() {
        Ok(None) => Ok(()),
        Ok(Some(e)) => Err(e),
        Err(poisoned) => Err(poisoned
            .into_inner()
            .unwrap_or_else(|| Error::usage("an upload thread panicked"))),
    }
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
    options: &'a Options,
    observer: &'a dyn Observer,
}

impl Steps<'_> {
    /// The push, or with `dry_run` only its questions.
    fn run(&self, layout: &Layout, tags: &[String]) -> Result<String> {
        let observer = self.observer;
        let dry_run = self.options.dry_run;
        observer.event(Event::Start { dry_run });
        let top = layout.top();
        // A registry holds a manifest only once everything it references is there, so when the
        // top manifest exists, so does the rest.
        if self.manifest_digest(&top.digest)?.is_some() {
            observer.event(Event::ImageExists(top));
        } else {
            self.push_blobs(&layout.blobs)?;
            self.push_manifests(&layout.manifests)?;
        }
        // One listing instead of a HEAD per tag, when the registry gives it whole: a tag it
        // does not list is new, and only listed ones are asked where they point.
        let listed = if tags.is_empty() {
            None
        } else {
            self.listed_tags()
        };
        for (done, tag) in tags.iter().enumerate() {
            let previous = match &listed {
                Some(listed) if !listed.contains(tag) => Ok(None),
                _ => self.manifest_digest(tag),
            };
            let applied = previous.and_then(|previous| {
                let outcome = if previous.as_deref() == Some(top.digest.as_str()) {
                    TagOutcome::Unchanged
                } else {
                    if !dry_run {
                        self.put_manifest(top, tag)?;
                    }
                    TagOutcome::Applied
                };
                observer.event(Event::Tag {
                    tag,
                    outcome,
                    previous: previous.as_deref(),
                });
                Ok(())
            });
            if let Err(e) = applied {
                observer.event(Event::TagFailed(tag));
                let applied = list(&tags[..done]);
                let skipped = list(&tags[done + 1..]);
                return Err(e.context(format!(
                    "tag '{tag}' failed (the image is pushed as {}@{}; tags applied: {applied}; not attempted: {skipped})",
                    self.repository, top.digest
                )));
            }
        }
        Ok(top.digest.clone())
    }

    /// Uploads the blobs (or in a dry run, asks what their upload would do) on `--jobs`
    /// threads, largest first so the long ones start early.
    fn push_blobs(&self, blobs: &[Blob]) -> Result<()> {
        let mut order: Vec<&Blob> = blobs.iter().collect();
        order.sort_by_key(|b| std::cmp::Reverse(b.size));
        in_parallel(&order, self.options.jobs, |blob| {
            let outcome = match self.options.dry_run {
                true => self.blob_plan(blob)?,
                false => self.push_blob(blob)?,
            };
            self.observer.event(Event::Blob(blob, outcome));
            Ok(())
        })
    }

    /// Puts the manifests by digest, deepest first: an index only once every manifest it names
    /// is there. The manifests of one level (an index's platform images) name none of each
    /// other, so they go at once; their events come in the layout's order.
    fn push_manifests(&self, manifests: &[Manifest]) -> Result<()> {
        let deepest = manifests.iter().map(|m| m.depth).max().unwrap_or(0);
        for depth in (0..=deepest).rev() {
            let level: Vec<&Manifest> = manifests.iter().filter(|m| m.depth == depth).collect();
            if !self.options.dry_run {
                in_parallel(&level, self.options.jobs, |m| {
                    self.put_manifest(m, &m.digest)
                })?;
            }
            for manifest in level {
                self.observer.event(Event::Manifest(manifest));
            }
        }
        Ok(())
    }

    /// `GET .../tags/list`: every tag of the repository, or None when the registry does not
    /// give the whole list in one answer (paginated, refused, failed); callers then ask tag
    /// by tag. A repository that does not exist has no tags.
    fn listed_tags(&self) -> Option<std::collections::HashSet<String>> {
        let url = self.url("tags/list");
        let what = "listing tags";
        let mut response = self
            .client
            .send(Method::GET, &url, &[], Payload::Empty, what)
            .ok()?;
        match response.status() {
            StatusCode::NOT_FOUND => return Some(Default::default()),
            StatusCode::OK if !response.headers().contains_key("link") => {}
            _ => return None,
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_vec()
            .ok()?;
        let value: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let tags = match value.get("tags")? {
            serde_json::Value::Null => Vec::new(),
            list => list.as_array()?.iter().filter_map(|t| t.as_str()).collect(),
        };
        Some(tags.into_iter().map(str::to_string).collect())
    }

    /// What a push would do with a blob, asked with HEAD requests only.
    fn blob_plan(&self, blob: &Blob) -> Result<BlobOutcome> {
        if self.blob_exists(blob, self.repository.path())? {
            return Ok(BlobOutcome::Exists);
        }
        for from in &self.options.mount_from {
            if self.blob_exists(blob, from)? {
                return Ok(BlobOutcome::Mounted);
            }
        }
        Ok(BlobOutcome::Uploaded)
    }

    fn url(&self, rest: &str) -> String {
        self.client
            .url(&format!("/v2/{}/{rest}", self.repository.path()))
    }

    fn push_blob(&self, blob: &Blob) -> Result<BlobOutcome> {
        if self.blob_exists(blob, self.repository.path())? {
            return Ok(BlobOutcome::Exists);
        }
        let what = format!("uploading blob {} ({})", blob.digest, blob.path.display());
        // A failed upload starts over in a new session: the old one may hold part of the bytes.
        self.client.retrying(&what, || self.upload(blob, &what))
    }

    fn upload(&self, blob: &Blob, what: &str) -> Result<BlobOutcome> {
        let mount_from = &self.options.mount_from;
        let mut session = None;
        for (i, from) in mount_from.iter().enumerate() {
            match self.mount(blob, from, what)? {
                None => return Ok(BlobOutcome::Mounted),
                // The registry opened an upload session instead: use it unless another source
                // is left to try, then close it.
                Some(location) if i + 1 == mount_from.len() => session = Some(location),
                Some(location) => self.cancel_upload(&location, what),
            }
        }
        let location = match session {
            Some(location) => location,
            None => self.start_upload(what)?,
        };
        let file = File::open(&blob.path).map_err(|e| {
            Error::invalid(format!("{what}: cannot open {}: {e}", blob.path.display()))
        })?;
        match self.options.chunk_size {
            Some(chunk) => self.put_chunks(blob, &file, &location, chunk, what)?,
            None => self.put_blob(blob, &file, &location, what)?,
        }
        Ok(BlobOutcome::Uploaded)
    }

    /// `HEAD /v2/REPO/blobs/DIGEST` in `repository_path`.
    fn blob_exists(&self, blob: &Blob, repository_path: &str) -> Result<bool> {
        let url = self
            .client
            .url(&format!("/v2/{repository_path}/blobs/{}", blob.digest));
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

    /// `POST .../blobs/uploads/?mount=DIGEST&from=REPO`: 201 when the registry linked the blob
    /// (returns None), 202 with an upload session when it could not (returns its Location).
    fn mount(&self, blob: &Blob, from: &str, what: &str) -> Result<Option<String>> {
        let url = with_query(
            &self.url("blobs/uploads/"),
            &[("mount", blob.digest.as_str()), ("from", from)],
        );
        let response = self
            .client
            .send(Method::POST, &url, &[], Payload::Empty, what)?;
        if response.status() == StatusCode::CREATED {
            return Ok(None);
        }
        let response =
            self.client
                .expect(response, &[StatusCode::ACCEPTED], &Method::POST, &url, what)?;
        location_of(&response, &Method::POST, &url, what).map(Some)
    }

    /// Closes an upload session we will not use. Best effort: the registry expires it anyway.
    fn cancel_upload(&self, location: &str, what: &str) {
        let url = self.client.url(location);
        let _ = self
            .client
            .send(Method::DELETE, &url, &[], Payload::Empty, what);
    }

    /// `POST .../blobs/uploads/`: opens an upload session, returns its Location.
    fn start_upload(&self, what: &str) -> Result<String> {
        let url = self.url("blobs/uploads/");
        let response = self
            .client
            .send(Method::POST, &url, &[], Payload::Empty, what)?;
        let response =
            self.client
                .expect(response, &[StatusCode::ACCEPTED], &Method::POST, &url, what)?;
        location_of(&response, &Method::POST, &url, what)
    }

    /// `PUT LOCATION?digest=...` with the whole file as the body, streamed.
    fn put_blob(&self, blob: &Blob, file: &File, location: &str, what: &str) -> Result<()> {
        let url = with_digest(&self.client.url(location), &blob.digest);
        let headers = [("content-type", "application/octet-stream")];
        self.observer.event(Event::BlobUploading(blob));
        let progress = |at| self.observer.event(Event::BlobProgress(blob, at));
        let body = FileBody {
            file,
            offset: 0,
            len: blob.size,
            progress: Some(&progress),
        };
        let response = self
            .client
            .send(Method::PUT, &url, &headers, Payload::File(body), what)?;
        self.check_blob_put(response, blob, &url, what)
    }

    /// 201 ends an upload; DIGEST_INVALID means our file is not what its digest says.
    fn check_blob_put(
        &self,
        mut response: ureq::http::Response<ureq::Body>,
        blob: &Blob,
        url: &str,
        what: &str,
    ) -> Result<()> {
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
        Err(self.client.refusal_error(refusal, &Method::PUT, url, what))
    }

    /// Chunked upload: `PATCH` each chunk with its `Content-Range`, then `PUT ?digest=`. After
    /// a failed chunk, asks the registry where the upload stands and goes on from there; when
    /// it cannot say, the error goes up and the upload starts over in a new session.
    fn put_chunks(
        &self,
        blob: &Blob,
        file: &File,
        location: &str,
        chunk: u64,
        what: &str,
    ) -> Result<()> {
        let mut location = location.to_string();
        let mut offset = 0;
        let mut attempt = 1;
        self.observer.event(Event::BlobUploading(blob));
        while offset < blob.size {
            let len = chunk.min(blob.size - offset);
            match self.patch_chunk(blob, file, &location, offset, len, what) {
                Ok((next, stored)) => {
                    location = next;
                    offset = stored.unwrap_or(offset + len);
                }
                Err(e) if e.is_transient() => {
                    if !self
                        .client
                        .again(attempt, e.retry_after(), what, &e.to_string())?
                    {
                        return Err(e.spent());
                    }
                    attempt += 1;
                    (location, offset) = self.upload_status(&location, offset, what)?;
                }
                Err(e) => return Err(e),
            }
        }
        let url = with_digest(&self.client.url(&location), &blob.digest);
        let response = self
            .client
            .send(Method::PUT, &url, &[], Payload::Empty, what)?;
        self.check_blob_put(response, blob, &url, what)
    }

    /// Sends `len` bytes from `offset`; returns the next Location and, when the registry
    /// says, how many bytes it now holds.
    fn patch_chunk(
        &self,
        blob: &Blob,
        file: &File,
        location: &str,
        offset: u64,
        len: u64,
        what: &str,
    ) -> Result<(String, Option<u64>)> {
        let url = self.client.url(location);
        let range = format!("{offset}-{}", offset + len - 1);
        let headers = [
            ("content-type", "application/octet-stream"),
            ("content-range", range.as_str()),
        ];
        let progress = |at| self.observer.event(Event::BlobProgress(blob, at));
        let body = FileBody {
            file,
            offset,
            len,
            progress: Some(&progress),
        };
        let response =
            self.client
                .send(Method::PATCH, &url, &headers, Payload::File(body), what)?;
        let response = self.client.expect(
            response,
            &[StatusCode::ACCEPTED],
            &Method::PATCH,
            &url,
            what,
        )?;
        Ok((
            location_of(&response, &Method::PATCH, &url, what)?,
            stored_bytes(&response),
        ))
    }

    /// `GET` an upload session: its Location and how many bytes it holds (`Range: 0-N`),
    /// `confirmed` being what the registry last acknowledged. A session the registry cannot
    /// report on is given up: the error is transient, so the upload starts over.
    fn upload_status(&self, location: &str, confirmed: u64, what: &str) -> Result<(String, u64)> {
        let url = self.client.url(location);
        let response = self
            .client
            .send(Method::GET, &url, &[], Payload::Empty, what)?;
        let response = self
            .client
            .expect(
                response,
                &[StatusCode::NO_CONTENT],
                &Method::GET,
                &url,
                what,
            )
            .map_err(|e| match e.kind() {
                Kind::Rejected => e.transient(None),
                _ => e,
            })?;
        let next = location_of(&response, &Method::GET, &url, what)
            .unwrap_or_else(|_| location.to_string());
        // `0-0` is 0 or 1 byte: what we last confirmed tells which.
        let stored = stored_bytes(&response).unwrap_or(confirmed.min(1));
        Ok((next, stored))
    }

    /// `HEAD .../manifests/REFERENCE`: the digest it resolves to, or None when it does not exist.
    fn manifest_digest(&self, reference: &str) -> Result<Option<String>> {
        let url = self.url(&format!("manifests/{reference}"));
        let what = format!("checking manifest {reference}");
        let accept = [(
            "accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
             application/vnd.docker.distribution.manifest.v2+json, \
             application/vnd.docker.distribution.manifest.list.v2+json",
        )];
        let response = self
            .client
            .send(Method::HEAD, &url, &accept, Payload::Empty, &what)?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response =
            self.client
                .expect(response, &[StatusCode::OK], &Method::HEAD, &url, &what)?;
        Ok(Some(
            response
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string(),
        ))
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

/// `URL?digest=...` (or `&digest=` when the URL has a query already).
fn with_digest(url: &str, digest: &str) -> String {
    with_query(url, &[("digest", digest)])
}

/// How many bytes an upload session holds, from its `Range: 0-N` (N the last byte's index).
/// `0-0` says nothing: registries send it for an empty session and for one byte alike.
fn stored_bytes(response: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    let range = response.headers().get("range")?.to_str().ok()?;
    let (_, last) = range.trim().trim_start_matches("bytes=").split_once('-')?;
    match last.parse::<i64>().ok()? {
        last if last < 0 => Some(0),
        0 => None,
        last => Some(last as u64 + 1),
    }
}

/// The `Location` of an upload session.
fn location_of(
    response: &ureq::http::Response<ureq::Body>,
    method: &Method,
    url: &str,
    what: &str,
) -> Result<String> {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| {
            Error::new(
                Kind::Rejected,
                format!(
                    "{what}: {method} {} answered {} without a Location header",
                    redact(url),
                    response.status()
                ),
            )
        })
}
