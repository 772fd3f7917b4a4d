/*!
Pushing referrers (SBOMs, signatures: manifests whose `subject` is the image) after the image
and before its tags, and keeping them findable.

A registry with the referrers API answers the manifest's PUT with `OCI-Subject` and lists the
referrer itself. Any other (distribution 2.8, GHCR, Docker Hub) gets the distribution spec's
fallback: the tag `<alg>-<hex>` of the subject names an index of its referrers, which we read,
add to and put back. That read-modify-write races with other writers (a second pipeline, a
`cosign attach`). Two things keep their additions:
- the PUT is conditional, `If-Match` on the ETag the read returned (`If-None-Match: *` when
  there was no index), so a registry that honours conditions refuses it with 412 when the
  index changed meanwhile, and we read and merge again;
- after the PUT we read the index back, and when another writer's PUT replaced ours (no
  registry here honours conditions on manifests), we merge again.

A writer whose PUT lands between our read and our PUT, on a registry that ignores
conditions, can still lose its entry unless it checks as we do; a re-run of either push puts
it back (docs/referrers.md).
*/

use serde_json::{json, Value};
use ureq::http::{Method, StatusCode};

use super::{Event, Observer, Steps};
use crate::error::{Error, Kind, Result};
use crate::layout::{MAX_MANIFEST_BYTES, OCI_INDEX};
use crate::referrer::{fallback_tag, Referrer};
use crate::registry::{redact, Payload, Refusal};

/// Rounds of read, merge, put and check before giving up on an index others keep changing.
const MAX_ROUNDS: usize = 5;

/// What happened to a referrer. In a dry run, what would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReferrerOutcome {
    Pushed,
    /// A dry run found it in the registry already.
    Exists,
    /// A dry run: it would be pushed.
    WouldPush,
}

/// Who lists a referrer for its subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReferrerIndex {
    /// The registry's referrers API (it answered the PUT with `OCI-Subject`).
    Registry,
    /// The fallback tag's index; `changed` when this push added the referrer to it.
    Tag { tag: String, changed: bool },
    /// Pushed, but not listed anywhere yet: the push failed before its index was written.
    NotListed { tag: String },
}

/// The index a fallback tag names, as read.
struct TagIndex {
    /// The whole index, to put back with every field it had.
    value: Value,
    /// The ETag of the read, for a conditional PUT; None when the registry sent none.
    etag: Option<String>,
    exists: bool,
}

impl TagIndex {
    fn entries(&self) -> Vec<&Value> {
        self.value
            .get("manifests")
            .and_then(|v| v.as_array())
            .map(|list| list.iter().collect())
            .unwrap_or_default()
    }

    fn lists(&self, digest: &str) -> bool {
        self.entries()
            .iter()
            .any(|e| e.get("digest").and_then(|d| d.as_str()) == Some(digest))
    }
}

/// An observer for a referrer's own blobs and manifest: the image's report shows one line per
/// referrer instead.
struct Unreported;

impl Observer for Unreported {
    fn event(&self, _: Event) {}
}

impl Steps<'_> {
    /// Pushes each referrer (its blobs, then its manifest by digest), then makes sure the
    /// fallback index of each subject lists those the registry did not index itself. Every
    /// referrer pushed is reported, also when a later step fails.
    pub(super) fn push_referrers(&self, referrers: &[Referrer]) -> Result<()> {
        let mut reports: Vec<Option<Report>> = vec![None; referrers.len()];
        let result = self.push_and_index(referrers, &mut reports);
        for (referrer, report) in referrers.iter().zip(reports) {
            let Some((outcome, index)) = report else {
                continue;
            };
            let index = index.unwrap_or_else(|| ReferrerIndex::NotListed {
                tag: fallback_tag(&referrer.subject),
            });
            self.observer.event(Event::Referrer {
                referrer,
                outcome,
                index: &index,
            });
        }
        result
    }

    /// Pushes the referrers, those of one level at once (up to `--jobs`): far from the
    /// registry each costs its round trips, and none waits for another but the one it refers
    /// to. Then the fallback indexes. `reports` gets each one pushed, by position.
    fn push_and_index(&self, referrers: &[Referrer], reports: &mut [Option<Report>]) -> Result<()> {
        let levels = levels(referrers);
        for level in 0..=levels.iter().copied().max().unwrap_or(0) {
            let at: Vec<usize> = (0..referrers.len())
                .filter(|&i| levels[i] == level)
                .collect();
            for batch in at.chunks(self.options.jobs.max(1)) {
                let results: Vec<Result<(ReferrerOutcome, bool)>> = std::thread::scope(|scope| {
                    let pushes: Vec<_> = batch
                        .iter()
                        .map(|&i| scope.spawn(move || self.push_referrer(&referrers[i])))
                        .collect();
                    pushes
                        .into_iter()
                        .map(|push| {
                            push.join().unwrap_or_else(|_| {
                                Err(Error::new(Kind::Usage, "a referrer's push thread panicked"))
                            })
                        })
                        .collect()
                });
                let mut failure = None;
                for (&i, result) in batch.iter().zip(results) {
                    match result {
                        Ok((outcome, indexed)) => {
                            reports[i] = Some((outcome, indexed.then_some(ReferrerIndex::Registry)))
                        }
                        Err(e) => {
                            failure.get_or_insert(e.context(describe(&referrers[i])));
                        }
                    }
                }
                if let Some(e) = failure {
                    return Err(e);
                }
            }
        }
        // One update of each subject's index, for all its referrers together.
        let unlisted = |report: &Option<Report>| matches!(report, Some((_, None)));
        let mut subjects: Vec<&str> = Vec::new();
        for (i, referrer) in referrers.iter().enumerate() {
            if unlisted(&reports[i]) && !subjects.contains(&referrer.subject.as_str()) {
                subjects.push(&referrer.subject);
            }
        }
        for subject in subjects {
            let (ours, at): (Vec<&Referrer>, Vec<usize>) = referrers
                .iter()
                .enumerate()
                .filter(|&(i, r)| r.subject == subject && unlisted(&reports[i]))
                .map(|(i, r)| (r, i))
                .unzip();
            let tag = fallback_tag(subject);
            let added = self.update_index(&tag, &ours).map_err(|e| {
                e.context(format!(
                    "keeping the referrers index {}:{tag} of {subject}",
                    self.repository
                ))
            })?;
            for (referrer, i) in ours.iter().zip(at) {
                if let Some(report) = &mut reports[i] {
                    report.1 = Some(ReferrerIndex::Tag {
                        tag: tag.clone(),
                        changed: added.contains(&referrer.manifest().digest),
                    });
                }
            }
        }
        Ok(())
    }

    /// One referrer's blobs and manifest; returns what happened, and whether the registry
    /// indexed it (in a dry run: whether it has the referrers API).
    fn push_referrer(&self, referrer: &Referrer) -> Result<(ReferrerOutcome, bool)> {
        let steps = Steps::new(
            self.client,
            self.repository,
            self.options,
            &Unreported,
            self.strategies,
        );
        let digest = &referrer.manifest().digest;
        // A dry run asks whether it is there; a push puts its manifest again anyway (one
        // small request), as only the PUT's answer says whether the registry indexes it.
        let (present, _) = steps.push_content(&referrer.layout, self.options.dry_run, false)?;
        if self.options.dry_run {
            let outcome = match present {
                true => ReferrerOutcome::Exists,
                false => ReferrerOutcome::WouldPush,
            };
            return Ok((outcome, self.has_referrers_api(&referrer.subject)));
        }
        // `OCI-Subject` names the subject the registry indexed it under; another value is a
        // registry (or a proxy) that does not say what the spec means, and gets the fallback.
        let indexed = super::lock(&steps.indexed)
            .iter()
            .any(|(pushed, subject)| pushed == digest && *subject == referrer.subject);
        Ok((ReferrerOutcome::Pushed, indexed))
    }

    /// Whether the registry answers `GET /v2/REPO/referrers/DIGEST` with an index (a dry run's
    /// guess of what the PUT's `OCI-Subject` would say).
    fn has_referrers_api(&self, subject: &str) -> bool {
        let url = self.url(&format!("referrers/{subject}"));
        let answer = self.client.send(
            Method::GET,
            &url,
            &[("accept", OCI_INDEX)],
            Payload::Empty,
            "asking for the referrers API",
        );
        answer.is_ok_and(|response| {
            response.status() == StatusCode::OK
                && response
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|t| t.starts_with(OCI_INDEX))
        })
    }

    /// Makes the index of `tag` list every one of `ours`, keeping what it lists already;
    /// returns the digests this call added (in a dry run: would add).
    fn update_index(&self, tag: &str, ours: &[&Referrer]) -> Result<Vec<String>> {
        let mut added: Vec<String> = Vec::new();
        // Whether to make the PUT conditional. A registry that refuses a condition that holds
        // (412 for an index that did not change) is sent none after that.
        let mut conditional = true;
        let mut index = self.read_index(tag)?;
        for round in 0..=MAX_ROUNDS {
            let missing: Vec<&&Referrer> = ours
                .iter()
                .filter(|r| !index.lists(&r.manifest().digest))
                .collect();
            if missing.is_empty() {
                return Ok(added);
            }
            for referrer in &missing {
                let digest = &referrer.manifest().digest;
                if !added.contains(digest) {
                    added.push(digest.clone());
                }
            }
            if self.options.dry_run {
                return Ok(added);
            }
            if round == MAX_ROUNDS {
                break;
            }
            let mut merged = index.value.clone();
            if let Some(list) = merged["manifests"].as_array_mut() {
                list.extend(missing.iter().map(|r| r.descriptor()));
            }
            let stored = self.put_index(tag, &index, &merged, conditional)?;
            // Read back: after a 412, what changed; after a PUT, whether another writer's
            // replaced ours.
            let now = self.read_index(tag)?;
            if !stored && now.exists == index.exists && now.etag == index.etag {
                conditional = false;
            }
            index = now;
        }
        Err(Error::new(
            Kind::Rejected,
            format!(
                "the index kept changing under other writers ({MAX_ROUNDS} rounds of read, add, \
                 put and check); re-run the push"
            ),
        ))
    }

    /// `GET .../manifests/TAG`: the fallback index, or an empty one when the tag does not exist.
    fn read_index(&self, tag: &str) -> Result<TagIndex> {
        let url = self.url(&format!("manifests/{tag}"));
        let what = format!("reading the referrers index '{tag}'");
        // Every manifest type: asked for an index only, a registry answers 404 for an image
        // someone tagged so, and that tag would be overwritten.
        let response = self.client.send(
            Method::GET,
            &url,
            &super::MANIFEST_ACCEPT,
            Payload::Empty,
            &what,
        )?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(TagIndex {
                value: json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}),
                etag: None,
                exists: false,
            });
        }
        let mut response =
            self.client
                .expect(response, &[StatusCode::OK], &Method::GET, &url, &what)?;
        let etag = super::header(&response, "etag");
        let media_type = super::header(&response, "content-type").unwrap_or_default();
        let bytes = crate::files::read_at_most(response.body_mut().as_reader(), MAX_MANIFEST_BYTES)
            .map_err(|e| {
                Error::new(Kind::Rejected, format!("{what}: GET {}: {e}", redact(&url)))
            })?;
        let value: Option<Value> = serde_json::from_slice(&bytes).ok();
        // An image index someone tagged so lists platforms; a referrers index never does.
        let is_index = value.as_ref().is_some_and(|v| {
            let entries = v.get("manifests").and_then(Value::as_array);
            entries.is_some_and(|list| list.iter().all(|e| e.get("platform").is_none()))
                && v.get("mediaType")
                    .and_then(|t| t.as_str())
                    .unwrap_or(OCI_INDEX)
                    == OCI_INDEX
        });
        match value {
            Some(value) if is_index && media_type.starts_with(OCI_INDEX) => Ok(TagIndex {
                value,
                etag,
                exists: true,
            }),
            _ => Err(Error::new(
                Kind::Rejected,
                format!(
                    "the tag '{tag}' of {} holds a {}, not the OCI index of referrers the \
                     referrers tag schema keeps there; delete that tag, or push to another \
                     repository",
                    self.repository,
                    if media_type.is_empty() {
                        "manifest of no media type"
                    } else {
                        &media_type
                    }
                ),
            )),
        }
    }

    /// `PUT .../manifests/TAG` of `merged`, conditional on `read` being what is there when
    /// `conditional`: true when stored, false when the registry answered 412 to the
    /// condition.
    fn put_index(
        &self,
        tag: &str,
        read: &TagIndex,
        merged: &Value,
        conditional: bool,
    ) -> Result<bool> {
        let url = self.url(&format!("manifests/{tag}"));
        let what = format!("updating the referrers index '{tag}'");
        let bytes = serde_json::to_vec(merged)
            .map_err(|e| Error::new(Kind::Usage, format!("{what}: {e}")))?;
        let mut headers = vec![("content-type", OCI_INDEX)];
        match (&read.etag, read.exists) {
            (Some(etag), _) if conditional => headers.push(("if-match", etag.as_str())),
            (None, false) if conditional => headers.push(("if-none-match", "*")),
            _ => {}
        }
        let mut response =
            self.client
                .send(Method::PUT, &url, &headers, Payload::Bytes(&bytes), &what)?;
        let status = response.status();
        if status.is_success() {
            return Ok(true);
        }
        if status == StatusCode::PRECONDITION_FAILED && headers.len() > 1 {
            return Ok(false);
        }
        let refusal = Refusal::read(&mut response, &Method::PUT);
        // The index's tag names the old index: a registry that keeps tags (immutable tags,
        // Harbor's and ECR's rules) will not move it, now or on a re-run.
        if read.exists && super::keeps_its_tag(&refusal) {
            return Err(Error::new(
                Kind::Immutable,
                format!(
                    "{what}: {} will not move the tag ({}{}): its tags are immutable, so the \
                     referrers tag schema cannot add to the index; exempt tags matching \
                     sha256-* from the immutability rule, or push the referrers where the \
                     registry has the referrers API",
                    self.repository,
                    refusal.status,
                    refusal.detail()
                ),
            ));
        }
        Err(self
            .client
            .refusal_error(refusal, &Method::PUT, &url, &what))
    }
}

/// What happened to a referrer, and who lists it (None: not yet known).
type Report = (ReferrerOutcome, Option<ReferrerIndex>);

/// Each referrer's level: 0 for one of the image, one more than its subject's for one of
/// another referrer (`open_all` put each after the one it refers to).
fn levels(referrers: &[Referrer]) -> Vec<usize> {
    let mut levels: Vec<usize> = Vec::with_capacity(referrers.len());
    for referrer in referrers {
        let parent = referrers[..levels.len()]
            .iter()
            .position(|r| r.manifest().digest == referrer.subject);
        levels.push(parent.map_or(0, |at| levels[at] + 1));
    }
    levels
}

/// `referrer DIR (TYPE, DIGEST)`, for messages.
fn describe(referrer: &Referrer) -> String {
    format!(
        "referrer {} ({} {})",
        referrer.dir.display(),
        referrer.artifact_type,
        referrer.manifest().digest
    )
}
