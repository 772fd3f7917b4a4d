/*!
The push itself, as the steps of the distribution protocol: blobs first (skipping those the
registry has, mounting those another repository has), then manifests by digest (children before
the index that names them), then the tags one at a time. Nothing is tagged unless everything it
points at is in the registry, so a push that stops half-way leaves only untagged content that a
re-run completes.

The first request goes alone (it learns the registry's challenge); then blobs and manifests go
up on a small pool of plain threads sharing the one client, each manifest as soon as what it
names is there ([`schedule`]); tags stay in order on the calling thread. Far from the registry
a push costs its round trips, so none waits for what it does not need. This module reports
what happens through [`Observer`] and never prints.
*/

mod referrers;
mod schedule;
mod upload;

pub use referrers::{ReferrerIndex, ReferrerOutcome};

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};

use ureq::http::{Method, StatusCode};

use crate::error::{Error, Kind, Result};
use crate::layout::{Blob, Layout, Manifest};
use crate::reference::Repository;
use crate::referrer::Referrer;
use crate::registry::{redact, Client, Payload, Refusal};

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
    /// A referrer is pushed (its blobs and manifest), and listed for its subject.
    Referrer {
        referrer: &'a Referrer,
        outcome: ReferrerOutcome,
        index: &'a ReferrerIndex,
    },
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
    /// Only ask (reads: HEAD, the tag list) and report what a push would do; write nothing.
    pub dry_run: bool,
    /// A dry run of a later destination: the first on its registry (`mount_from`'s first)
    /// would have every blob by now, so each one it lacks would be mounted.
    pub dry_run_after_first: bool,
    /// Where the blobs a thin layout leaves out come from.
    pub cache: Option<std::sync::Arc<crate::cache::RemoteCache>>,
}

/// Pushes the layout's blobs and manifests, then its `referrers`, then applies `tags` in order,
/// stopping at the first tag that fails. Returns the digest of the top manifest. With `options.dry_run` it only asks
/// the registry what it has (reads only) and reports, as events, what a push would upload,
/// mount or skip and which tags would change.
pub fn push(
    client: &Client,
    repository: &Repository,
    layout: &Layout,
    referrers: &[Referrer],
    tags: &[String],
    options: &Options,
    observer: &dyn Observer,
) -> Result<String> {
    let strategies = upload::Strategies::new(options.chunk_size);
    Steps::new(client, repository, options, observer, &strategies).run(layout, referrers, tags)
}

/// One step of the content's schedule.
enum Work<'l> {
    /// The top manifest's HEAD.
    CheckTop,
    ListTags,
    Blob(&'l Blob),
    Manifest(&'l Manifest),
}

/// What the top manifest's HEAD said, and the blobs found there before it did.
struct TopCheck<'l> {
    known: bool,
    present: bool,
    unreported: Vec<&'l Blob>,
}

/// A lock that a panicked upload thread cannot make unusable: the data is flags and lists.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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
    /// How blobs go up, as the registry's answers taught (the referrers' steps share them).
    strategies: &'a upload::Strategies,
    /// The manifests whose PUT the registry answered with `OCI-Subject`, with the subject it
    /// named: it lists them as referrers of that subject itself.
    indexed: Mutex<Vec<(String, String)>>,
}

impl<'a> Steps<'a> {
    fn new(
        client: &'a Client,
        repository: &'a Repository,
        options: &'a Options,
        observer: &'a dyn Observer,
        strategies: &'a upload::Strategies,
    ) -> Steps<'a> {
        Steps {
            client,
            repository,
            options,
            observer,
            strategies,
            indexed: Mutex::new(Vec::new()),
        }
    }
}

impl Steps<'_> {
    /// The push, or with `dry_run` only its questions.
    fn run(&self, layout: &Layout, referrers: &[Referrer], tags: &[String]) -> Result<String> {
        let observer = self.observer;
        let dry_run = self.options.dry_run;
        observer.event(Event::Start { dry_run });
        let top = layout.top();
        // The connections of the steps that run at once after the first request, opened
        // while it and the token exchange are under way; it leaves its own for one of them.
        // (Wasted only when the registry turns out to have the image.)
        // At once: the blobs, the top manifest's second HEAD (after a first tag's, or after a
        // challenge), and the tag listing for a second tag.
        let at_once = layout.blobs.len() + 1 + usize::from(tags.len() > 1);
        self.client
            .open_ahead(self.options.jobs.min(at_once).saturating_sub(1));
        // The first request goes alone: it learns the registry's challenge, and the token it
        // brings serves every request after it. The first tag's HEAD answers both whether the
        // registry has the image and whether the tag names it already, so an image the
        // registry has with its tag costs one request. A registry holds a manifest only once
        // everything it references is there, so when the top manifest exists, so does the rest.
        let first = match tags.first() {
            Some(tag) => Some(self.manifest_digest(tag, &top.digest)?),
            None => None,
        };
        let mut listed = None;
        let mut listing_asked = false;
        let present = match &first {
            Some(previous) if previous.as_deref() == Some(top.digest.as_str()) => true,
            Some(_) => {
                listing_asked = tags.len() > 1;
                let (present, list) = self.push_content(layout, true, listing_asked)?;
                listed = list;
                present
            }
            None => match self.first_manifest_digest(top)? {
                Some(Some(_)) => true,
                Some(None) => self.push_content(layout, false, false)?.0,
                None => self.push_content(layout, true, false)?.0,
            },
        };
        if present {
            observer.event(Event::ImageExists(top));
            if tags.len() > 1 && !listing_asked {
                listed = self.listed_tags();
            }
        }
        // A tag never names an image whose referrers (its SBOM, its signature) are missing.
        if !referrers.is_empty() {
            self.push_referrers(referrers).map_err(|e| {
                e.context(format!(
                    "the image is pushed as {}@{} but not all its referrers, so no tag was \
                     applied (not attempted: {}); a re-run finishes",
                    self.repository,
                    top.digest,
                    list(tags)
                ))
            })?;
        }
        for (done, tag) in tags.iter().enumerate() {
            // One listing instead of a HEAD per tag, when the registry gives it whole: a tag it
            // does not list is new, and only listed ones are asked where they point.
            let previous = match (&first, &listed) {
                (Some(first), _) if done == 0 => Ok(first.clone()),
                (_, Some(listed)) if !listed.contains(tag) => Ok(None),
                _ => self.manifest_digest(tag, &top.digest),
            };
            let applied = previous.and_then(|previous| {
                let outcome = if previous.as_deref() == Some(top.digest.as_str()) {
                    TagOutcome::Unchanged
                } else {
                    if !dry_run {
                        self.put_tag(top, tag, previous.as_deref())?;
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

    /// Pushes the blobs and manifests (or in a dry run, asks what their push would do) as one
    /// schedule on `--jobs` threads: each manifest by digest as soon as what it names is
    /// there, children before the index; blobs largest first so the long ones start early.
    /// With `check_top`, the top manifest's HEAD goes at once with the blobs' (a first tag's
    /// HEAD did not tell whether the image is there), and when it is there nothing else is
    /// sent. With `list_tags`, the repository's tags are listed meanwhile. Returns whether the
    /// registry had the image, and the tags listed.
    fn push_content(
        &self,
        layout: &Layout,
        check_top: bool,
        list_tags: bool,
    ) -> Result<(bool, Option<HashSet<String>>)> {
        let mut steps: Vec<schedule::Step<Work>> = Vec::new();
        let check = check_top.then(|| {
            steps.push(schedule::Step {
                item: Work::CheckTop,
                needs: Vec::new(),
            });
            steps.len() - 1
        });
        if list_tags {
            steps.push(schedule::Step {
                item: Work::ListTags,
                needs: Vec::new(),
            });
        }
        // Manifests before blobs in the list: one that is ready goes before waiting blobs, as
        // it is all that stands between its blobs and the index.
        let first_manifest = steps.len();
        let first_blob = first_manifest + layout.manifests.len();
        let mut blobs: Vec<&Blob> = layout.blobs.iter().collect();
        blobs.sort_by_key(|b| std::cmp::Reverse(b.size));
        let step_of = |digest: &str| {
            blobs
                .iter()
                .position(|b| b.digest == digest)
                .map(|i| first_blob + i)
                .or_else(|| {
                    layout
                        .manifests
                        .iter()
                        .position(|m| m.digest == digest)
                        .map(|i| first_manifest + i)
                })
        };
        for manifest in &layout.manifests {
            let mut needs: Vec<usize> = manifest
                .children
                .iter()
                .filter_map(|d| step_of(d))
                .collect();
            needs.extend(check);
            steps.push(schedule::Step {
                item: Work::Manifest(manifest),
                needs,
            });
        }
        for blob in &blobs {
            steps.push(schedule::Step {
                item: Work::Blob(blob),
                needs: Vec::new(),
            });
        }
        let top = Mutex::new(TopCheck {
            known: !check_top,
            present: false,
            unreported: Vec::new(),
        });
        let listed = Mutex::new(None);
        schedule::run(&steps, self.options.jobs, |work| {
            match *work {
                Work::CheckTop => {
                    let top_manifest = layout.top();
                    let present = self
                        .manifest_digest(&top_manifest.digest, &top_manifest.digest)?
                        .is_some();
                    let unreported = {
                        let mut top = lock(&top);
                        top.known = true;
                        top.present = present;
                        std::mem::take(&mut top.unreported)
                    };
                    if !present {
                        for blob in unreported {
                            self.observer.event(Event::Blob(blob, BlobOutcome::Exists));
                        }
                    }
                }
                Work::ListTags => *lock(&listed) = self.listed_tags(),
                Work::Blob(blob) => {
                    if lock(&top).present {
                        return Ok(());
                    }
                    let outcome = match self.options.dry_run {
                        true => self.blob_plan(blob)?,
                        false => self.push_blob(blob)?,
                    };
                    // Until the top's HEAD has answered, a blob that is there may be part of
                    // an image that is there: reported only if the image is not.
                    if outcome == BlobOutcome::Exists {
                        let mut top = lock(&top);
                        if top.present {
                            return Ok(());
                        }
                        if !top.known {
                            top.unreported.push(blob);
                            return Ok(());
                        }
                    }
                    self.observer.event(Event::Blob(blob, outcome));
                }
                Work::Manifest(manifest) => {
                    if lock(&top).present {
                        return Ok(());
                    }
                    if !self.options.dry_run {
                        self.put_manifest(manifest, &manifest.digest)?;
                    }
                    self.observer.event(Event::Manifest(manifest));
                }
            }
            Ok(())
        })?;
        let present = lock(&top).present;
        let listed = lock(&listed).take();
        Ok((present, listed))
    }

    /// `GET .../tags/list`: every tag of the repository, or None when the registry does not
    /// give the whole list in one answer (paginated, refused, failed); callers then ask tag
    /// by tag. A repository that does not exist has no tags.
    fn listed_tags(&self) -> Option<HashSet<String>> {
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
        if self.options.dry_run_after_first {
            return Ok(BlobOutcome::Mounted);
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

    /// `HEAD .../manifests/REFERENCE`: the digest it resolves to, or None when it does not exist.
    /// `like`: a digest of the algorithm to hash a manifest with when the registry names none.
    fn manifest_digest(&self, reference: &str, like: &str) -> Result<Option<String>> {
        let (url, what) = self.manifest_question(reference);
        let response =
            self.client
                .send(Method::HEAD, &url, &MANIFEST_ACCEPT, Payload::Empty, &what)?;
        self.manifest_answer(response, reference, &url, &what, like)
    }

    /// The run's first request, the top manifest's HEAD, when no tag is to be applied: as
    /// [`Steps::manifest_digest`], or None when the registry's challenge answered it (the
    /// token is ready, and the question goes again beside the blobs').
    fn first_manifest_digest(&self, top: &Manifest) -> Result<Option<Option<String>>> {
        let (url, what) = self.manifest_question(&top.digest);
        match self
            .client
            .send_first(Method::HEAD, &url, &MANIFEST_ACCEPT, &what)?
        {
            None => Ok(None),
            Some(response) => self
                .manifest_answer(response, &top.digest, &url, &what, &top.digest)
                .map(Some),
        }
    }

    fn manifest_question(&self, reference: &str) -> (String, String) {
        (
            self.url(&format!("manifests/{reference}")),
            format!("checking manifest {reference}"),
        )
    }

    /// What a manifest's HEAD at `url` (of `reference`) says: None when absent.
    fn manifest_answer(
        &self,
        response: ureq::http::Response<ureq::Body>,
        reference: &str,
        url: &str,
        what: &str,
        like: &str,
    ) -> Result<Option<String>> {
        // Harbor answers 412 when a policy (vulnerabilities, signatures) blocks reading the
        // manifest: whether it is there is then unknown, and pushing it again is harmless.
        if [StatusCode::NOT_FOUND, StatusCode::PRECONDITION_FAILED].contains(&response.status()) {
            return Ok(None);
        }
        let response = self
            .client
            .expect(response, &[StatusCode::OK], &Method::HEAD, url, what)?;
        if let Some(digest) = content_digest(&response) {
            return Ok(Some(digest));
        }
        // Asked by digest, what is there is that digest (a tag holds no colon).
        if reference.contains(':') {
            return Ok(Some(reference.to_string()));
        }
        // No Docker-Content-Digest (a proxy stripped it; some registries omit it): the
        // manifest's own bytes say, so that a tag naming our image is still seen as such.
        let mut response =
            self.client
                .send(Method::GET, url, &MANIFEST_ACCEPT, Payload::Empty, what)?;
        if response.status() != StatusCode::OK {
            return Ok(Some(String::new()));
        }
        let bytes = crate::files::read_at_most(
            response.body_mut().as_reader(),
            crate::layout::MAX_MANIFEST_BYTES,
        )
        .map_err(|e| Error::new(Kind::Rejected, format!("{what}: GET {}: {e}", redact(url))))?;
        Ok(Some(crate::layout::hash_bytes(&bytes, like)))
    }

    /// `PUT` a manifest under its digest.
    fn put_manifest(&self, manifest: &Manifest, reference: &str) -> Result<()> {
        let (url, what, answer) = self.put_manifest_answer(manifest, reference)?;
        answer.map_err(|refusal| {
            self.client
                .refusal_error(refusal, &Method::PUT, &url, &what)
        })
    }

    /// `PUT` the top manifest under `tag`, which named `previous` before. A registry that will
    /// not move a tag from another digest (ECR's, Harbor's, GAR's immutable tags, ACR's locked
    /// ones, Artifactory's forbidden overwrite) says so in many ways; each gets one plain
    /// message and its own exit code.
    fn put_tag(&self, top: &Manifest, tag: &str, previous: Option<&str>) -> Result<()> {
        let (url, what, answer) = self.put_manifest_answer(top, tag)?;
        let refusal = match answer {
            Ok(()) => return Ok(()),
            Err(refusal) => refusal,
        };
        // `previous` was read before the uploads (the first tag's HEAD, the listing): a tag
        // another writer made meanwhile is asked again, so that its refusal is judged too.
        let asked_again;
        let previous = match previous {
            Some(previous) => Some(previous),
            None => {
                asked_again = self.manifest_digest(tag, &top.digest).ok().flatten();
                asked_again.as_deref()
            }
        };
        let moving = previous.filter(|p| !p.is_empty() && *p != top.digest);
        match moving {
            Some(previous) if keeps_its_tag(&refusal) => Err(Error::new(
                Kind::Immutable,
                format!(
                    "{} will not move tag '{tag}' from {previous} to {} ({}{}): its tags are \
                     immutable, or this account may not overwrite them; push a new tag, or \
                     delete the old one first",
                    self.repository,
                    top.digest,
                    refusal.status,
                    refusal.detail()
                ),
            )),
            _ => Err(self
                .client
                .refusal_error(refusal, &Method::PUT, &url, &what)),
        }
    }

    /// `PUT` a manifest under `reference` (its digest, or a tag): any 2xx is done (201 in the
    /// spec; 200 and 202 from registries that answer so), a refusal is for the caller to
    /// judge.
    fn put_manifest_answer(
        &self,
        manifest: &Manifest,
        reference: &str,
    ) -> Result<(String, String, std::result::Result<(), Refusal>)> {
        let url = self.url(&format!("manifests/{reference}"));
        let what = if reference == manifest.digest {
            format!("pushing manifest {}", manifest.digest)
        } else {
            format!("tagging {} as '{reference}'", manifest.digest)
        };
        let headers = [("content-type", manifest.media_type.as_str())];
        let mut response = self.client.send(
            Method::PUT,
            &url,
            &headers,
            Payload::Bytes(&manifest.bytes),
            &what,
        )?;
        if !response.status().is_success() {
            let refusal = Refusal::read(&mut response, &Method::PUT);
            return Ok((url, what, Err(refusal)));
        }
        if let Some(subject) = header(&response, "oci-subject") {
            lock(&self.indexed).push((manifest.digest.clone(), subject));
        }
        // A registry that stored other bytes than ours would make every signature wrong.
        if let Some(stored) = content_digest(&response) {
            if stored != manifest.digest {
                return Err(Error::new(
                    Kind::Rejected,
                    format!(
                        "{what}: the registry says it stored the manifest as {}, not {}; \
                         something between us and the registry (a proxy, a converting \
                         registry) changed it, so signatures of {} would not match",
                        stored, manifest.digest, manifest.digest
                    ),
                ));
            }
        }
        Ok((url, what, Ok(())))
    }
}

/// What a manifest's HEAD or GET accepts: every manifest and index type we push.
const MANIFEST_ACCEPT: [(&str, &str); 1] = [(
    "accept",
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json",
)];

/// Whether a registry's refusal to write a tag that names another digest says the tag is
/// kept (immutable, locked, not to be overwritten). A 403 is as often a role without the right
/// to push tags: only one that says why (Harbor's "immutable", Artifactory's MANIFEST_INVALID)
/// is a kept tag.
fn keeps_its_tag(refusal: &Refusal) -> bool {
    let detail = refusal.detail().to_lowercase();
    let says_kept = [
        "immutable",
        "overwrit",
        "already exists",
        "locked",
        "disallowed",
    ]
    .iter()
    .any(|word| detail.contains(word))
        || refusal.has_code("MANIFEST_INVALID")
        || refusal.has_code("TAG_INVALID");
    match refusal.status.as_u16() {
        400 | 405 | 409 | 412 => true,
        403 => says_kept,
        _ => false,
    }
}

/// A header of an answer, trimmed, when it is there and not empty.
fn header(response: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    let value = response.headers().get(name)?.to_str().ok()?.trim();
    (!value.is_empty()).then(|| value.to_string())
}

/// The `Docker-Content-Digest` of an answer, when it has a usable one.
fn content_digest(response: &ureq::http::Response<ureq::Body>) -> Option<String> {
    header(response, "docker-content-digest")
}
