/*!
One blob's upload, as registries really take it: every registry quirk of this step is here.

- A mount (`POST ?mount=&from=`) that does not succeed, however the registry says so (a 202
  with a session, 401, 403, 404, 400, a 202 without `Location`), becomes a normal upload.
- `Location` may be absolute, or relative (GHCR, GAR): it is resolved against the registry.
- Every 2xx is success: PATCH 201 (ECR) or 204, blob PUT 200 or 204, whatever a registry uses.
- The strategy is learnt from the registry's answers, never from its host name, and kept for
  the rest of the push ([`Strategy`]): one monolithic `PUT` by default; chunks when the
  registry refuses a body as too large (413, or GHCR's 416 past 4 MiB a PATCH, halving the
  chunk until it passes), announces `OCI-Chunk-Min-Length`, or refuses a body on the final
  `PUT` (Artifactory's 404 `BLOB_UNKNOWN`); monolithic again when it refuses `PATCH` (405 or
  501: Google Artifact Registry, some Quay set-ups).
- After a successful PATCH the next chunk follows what was sent, not the `Range` the registry
  answers: ECR keeps answering the first chunk's end. `Range` is asked for only to resume
  after a failed chunk.
*/

use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use ureq::http::{Method, Response, StatusCode};

use super::{BlobOutcome, Event, Steps};
use crate::error::{Error, Kind, Result};
use crate::layout::{Blob, Source};
use crate::registry::{redact, with_query, BodySource, Payload, Refusal, StreamBody};
use crate::units::human_size;

/// How blobs go up; what the registry's answers taught is kept for the rest of the push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// `POST`, then one `PUT ?digest=` with the whole blob.
    Monolithic,
    /// `POST`, `PATCH` chunks of this many bytes (`u64::MAX`: the whole blob in one), then an
    /// empty `PUT ?digest=`.
    Chunked(u64),
}

/// The chunk size when a registry asks for chunks without saying how large: GHCR's limit.
const FIRST_CHUNK: u64 = 4 << 20;
/// No registry or proxy caps a body below this; refused smaller still, the push fails.
const SMALLEST_CHUNK: u64 = 64 << 10;
/// A blob's upload changes strategy at most this often before its refusal stands.
const MAX_LESSONS: usize = 8;

/// The strategy of a push, shared by its upload threads.
pub struct Strategies {
    current: Mutex<Strategy>,
    /// `OCI-Chunk-Min-Length`, once a registry announced it.
    min_chunk: AtomicU64,
    /// The registry refused PATCH: monolithic for good, whatever else it says.
    no_patch: AtomicBool,
}

impl Strategies {
    /// Monolithic, or chunks of `--chunk-size` when given.
    pub fn new(chunk_size: Option<u64>) -> Strategies {
        Strategies {
            current: Mutex::new(chunk_size.map_or(Strategy::Monolithic, Strategy::Chunked)),
            min_chunk: AtomicU64::new(0),
            no_patch: AtomicBool::new(false),
        }
    }

    fn no_patch(&self) -> bool {
        self.no_patch.load(Ordering::Relaxed)
    }

    fn get(&self) -> Strategy {
        *self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes `next` unless another upload already learnt something else since `seen`.
    fn learn(&self, seen: Strategy, next: Strategy, why: &str) {
        if next == Strategy::Monolithic {
            self.no_patch.store(true, Ordering::Relaxed);
        }
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if *current == seen && next != seen {
            *current = next;
            let how = match next {
                Strategy::Monolithic => "in one request each".to_string(),
                Strategy::Chunked(u64::MAX) => "with PATCH, each in one chunk".to_string(),
                Strategy::Chunked(size) => format!("in chunks of {}", human_size(size)),
            };
            log::warn!("registry: {why}; uploading blobs {how} from now on");
        }
    }

    fn min_chunk(&self) -> u64 {
        self.min_chunk.load(Ordering::Relaxed)
    }
}

/// What an upload attempt's refusal teaches, if anything. `no_patch`: the registry refused
/// PATCH already, so chunks are no way out.
fn lesson(
    strategy: Strategy,
    refusal: &Refusal,
    sent: u64,
    min_chunk: u64,
    no_patch: bool,
) -> Option<(Strategy, String)> {
    let status = refusal.status.as_u16();
    let too_large = status == 413 || (status == 416 && matches!(strategy, Strategy::Chunked(_)));
    match strategy {
        _ if too_large && no_patch => None,
        _ if too_large => {
            // From one body to chunks: start at a size most caps allow (GHCR's 4 MiB).
            let half = match strategy {
                Strategy::Monolithic => (sent / 2).min(FIRST_CHUNK),
                Strategy::Chunked(_) => sent / 2,
            };
            let size = half.max(min_chunk);
            (size >= SMALLEST_CHUNK.max(min_chunk) && size < sent).then(|| {
                let why = format!("it refused a body of {} ({status})", human_size(sent));
                (Strategy::Chunked(size), why)
            })
        }
        Strategy::Monolithic if status == 404 && refusal.has_code("BLOB_UNKNOWN") && !no_patch => {
            Some((
                Strategy::Chunked(u64::MAX),
                "it refused the blob in the final PUT (404 BLOB_UNKNOWN)".to_string(),
            ))
        }
        Strategy::Chunked(_) if matches!(status, 405 | 501) => Some((
            Strategy::Monolithic,
            format!("it does not take PATCH uploads ({status})"),
        )),
        _ => None,
    }
}

/// A refusal of an upload request, kept to learn from or to report.
pub struct Refused {
    refusal: Refusal,
    method: Method,
    url: String,
}

/// An upload request's outcome: done, or the registry's refusal.
type Answer = std::result::Result<(), Refused>;

impl Steps<'_> {
    pub(super) fn push_blob(&self, blob: &Blob) -> Result<BlobOutcome> {
        if self.blob_exists(blob, self.repository.path())? {
            return Ok(BlobOutcome::Exists);
        }
        let what = format!("uploading blob {} ({})", blob.digest, blob.origin());
        // A failed upload starts over in a new session: the old one may hold part of the bytes.
        self.client.retrying(&what, || self.upload(blob, &what))
    }

    /// One upload, in as many sessions as the registry's lessons take. A session that ends
    /// in a failure is closed, so that a re-run or the next lesson leaves none open.
    fn upload(&self, blob: &Blob, what: &str) -> Result<BlobOutcome> {
        let mut last = None;
        for _ in 0..MAX_LESSONS {
            let location = match self.mount_or_start(blob, what)? {
                Session::Mounted => return Ok(BlobOutcome::Mounted),
                Session::Open(location) => location,
            };
            let strategy = self.strategies.get();
            let (answer, sent) = match self.attempt(blob, &location, strategy, what) {
                Ok(outcome) => outcome,
                Err(e) => {
                    self.cancel_upload(&location, what);
                    return Err(e);
                }
            };
            let refused = match answer {
                Ok(()) => return Ok(BlobOutcome::Uploaded),
                Err(refused) => refused,
            };
            self.cancel_upload(&location, what);
            let min_chunk = self.strategies.min_chunk();
            match lesson(
                strategy,
                &refused.refusal,
                sent,
                min_chunk,
                self.strategies.no_patch(),
            ) {
                Some((next, why)) => self.strategies.learn(strategy, next, &why),
                None => return Err(self.refused(blob, refused, what)),
            }
            last = Some(refused);
        }
        Err(match last {
            Some(refused) => self.refused(blob, refused, what),
            None => Error::new(Kind::Rejected, format!("{what}: no upload was attempted")),
        })
    }

    /// One attempt of the upload in the session at `location`: the answer, and the size of
    /// the body it refused (for a lesson).
    fn attempt(
        &self,
        blob: &Blob,
        location: &str,
        strategy: Strategy,
        what: &str,
    ) -> Result<(Answer, u64)> {
        match &blob.source {
            Source::File(path) => {
                let file = File::open(path).map_err(|e| {
                    Error::invalid(format!("{what}: cannot open {}: {e}", path.display()))
                })?;
                self.attempt_from(blob, &file, location, strategy, what)
            }
            Source::Cache => {
                let Some(cache) = &self.options.cache else {
                    return Err(Error::usage(format!(
                        "{what}: the layout leaves it to the remote cache; give --remote-cache URL"
                    )));
                };
                self.attempt_from(blob, &cache.blob(blob), location, strategy, what)
            }
        }
    }

    fn attempt_from(
        &self,
        blob: &Blob,
        source: &dyn BodySource,
        location: &str,
        strategy: Strategy,
        what: &str,
    ) -> Result<(Answer, u64)> {
        Ok(match strategy {
            Strategy::Monolithic => (self.put_blob(blob, source, location, what)?, blob.size),
            Strategy::Chunked(chunk) => {
                let chunk = chunk.min(blob.size.max(1));
                (self.put_chunks(blob, source, location, chunk, what)?, chunk)
            }
        })
    }

    /// The error for a refusal nothing was learnt from; DIGEST_INVALID means our file is not
    /// what its digest says.
    fn refused(&self, blob: &Blob, refused: Refused, what: &str) -> Error {
        if refused.refusal.has_code("DIGEST_INVALID") {
            return match &blob.source {
                Source::Cache => Error::new(
                    Kind::Cache,
                    format!(
                        "blob {} is corrupt in the remote cache: its bytes there do not hash to its digest (the registry refused them); delete the cache's entry, then put it back by {}",
                        blob.digest,
                        crate::cache::REBUILD
                    ),
                ),
                Source::File(path) => Error::invalid(format!(
                    "blob {} is corrupt: the bytes of {} do not hash to its digest (the registry refused them); rebuild the image",
                    blob.digest,
                    path.display()
                )),
            };
        }
        self.client
            .refusal_error(refused.refusal, &refused.method, &refused.url, what)
    }

    /// Tries the mount sources in turn, then opens an upload session.
    fn mount_or_start(&self, blob: &Blob, what: &str) -> Result<Session> {
        let sources = &self.options.mount_from;
        for (i, from) in sources.iter().enumerate() {
            match self.mount(blob, from, what)? {
                Mount::Done => return Ok(Session::Mounted),
                // The registry opened a session instead: use it unless another source is
                // left to try, then close it.
                Mount::Session(location) if i + 1 == sources.len() => {
                    return Ok(Session::Open(location))
                }
                Mount::Session(location) => self.cancel_upload(&location, what),
                Mount::Refused => {}
            }
        }
        self.start_upload(what).map(Session::Open)
    }

    /// `POST .../blobs/uploads/?mount=DIGEST&from=REPO`: 201 when the registry linked the blob;
    /// anything else is no mount.
    fn mount(&self, blob: &Blob, from: &str, what: &str) -> Result<Mount> {
        let url = with_query(
            &self.url("blobs/uploads/"),
            &[("mount", blob.digest.as_str()), ("from", from)],
        );
        let mut response = self
            .client
            .send(Method::POST, &url, &[], Payload::Empty, what)?;
        match response.status() {
            StatusCode::CREATED => Ok(Mount::Done),
            StatusCode::ACCEPTED => Ok(match location_of(&response) {
                Some(location) => Mount::Session(location),
                None => Mount::Refused,
            }),
            status => {
                let refusal = Refusal::read(&mut response, &Method::POST);
                log::debug!(
                    "mount of {} from {from} refused ({status}{}); uploading it",
                    blob.digest,
                    refusal.detail()
                );
                Ok(Mount::Refused)
            }
        }
    }

    /// Closes an upload session we will not use. Best effort: the registry expires it anyway.
    fn cancel_upload(&self, location: &str, what: &str) {
        let url = self.client.url(location);
        let _ = self
            .client
            .send(Method::DELETE, &url, &[], Payload::Empty, what);
    }

    /// `POST .../blobs/uploads/`: opens an upload session, returns its Location. An
    /// `OCI-Chunk-Min-Length` in the answer moves the push to chunks at least that large.
    fn start_upload(&self, what: &str) -> Result<String> {
        let url = self.url("blobs/uploads/");
        let response = self
            .client
            .send(Method::POST, &url, &[], Payload::Empty, what)?;
        let response =
            self.client
                .expect(response, &[StatusCode::ACCEPTED], &Method::POST, &url, what)?;
        let announced = header_number(&response, "oci-chunk-min-length");
        if let Some(min) = announced.filter(|_| !self.strategies.no_patch()) {
            let min = min.clamp(1, 1 << 30);
            self.strategies.min_chunk.store(min, Ordering::Relaxed);
            let seen = self.strategies.get();
            let next = match seen {
                Strategy::Chunked(size) if size >= min => seen,
                _ => Strategy::Chunked(min.max(FIRST_CHUNK)),
            };
            let why = format!("it asks for chunks of at least {}", human_size(min));
            self.strategies.learn(seen, next, &why);
        }
        location_of(&response).ok_or_else(|| no_location(&response, &Method::POST, &url, what))
    }

    /// `PUT LOCATION?digest=...` with the whole file as the body, streamed.
    fn put_blob(
        &self,
        blob: &Blob,
        source: &dyn BodySource,
        location: &str,
        what: &str,
    ) -> Result<Answer> {
        let url = with_digest(&self.client.url(location), &blob.digest);
        let headers = [("content-type", "application/octet-stream")];
        self.observer.event(Event::BlobUploading(blob));
        let progress = |at| self.observer.event(Event::BlobProgress(blob, at));
        let body = StreamBody {
            source,
            offset: 0,
            len: blob.size,
            progress: Some(&progress),
        };
        let response =
            self.client
                .send(Method::PUT, &url, &headers, Payload::Stream(body), what)?;
        self.answer(response, &Method::PUT, &url, what)
    }

    /// Any 2xx is done; a transient refusal is an error (retried by the caller); any other
    /// refusal is the registry's answer to learn from.
    fn answer(
        &self,
        mut response: Response<ureq::Body>,
        method: &Method,
        url: &str,
        what: &str,
    ) -> Result<Answer> {
        if response.status().is_success() {
            return Ok(Ok(()));
        }
        let refusal = Refusal::read(&mut response, method);
        if refusal.is_transient() || refusal.is_auth() {
            return Err(self.client.refusal_error(refusal, method, url, what));
        }
        Ok(Err(Refused {
            refusal,
            method: method.clone(),
            url: url.to_string(),
        }))
    }

    /// Chunked upload: `PATCH` each chunk with its `Content-Range`, then `PUT ?digest=`. After
    /// a failed chunk, asks the registry where the upload stands and goes on from there; when
    /// it cannot say, the error goes up and the upload starts over in a new session.
    fn put_chunks(
        &self,
        blob: &Blob,
        source: &dyn BodySource,
        location: &str,
        chunk: u64,
        what: &str,
    ) -> Result<Answer> {
        let mut location = location.to_string();
        let mut offset = 0;
        let mut attempt = 1;
        self.observer.event(Event::BlobUploading(blob));
        while offset < blob.size {
            let len = chunk.min(blob.size - offset);
            match self.patch_chunk(blob, source, &location, offset, len, what) {
                Ok(Ok(next)) => {
                    location = next.unwrap_or(location);
                    offset += len;
                }
                Ok(Err(refusal)) => return Ok(Err(refusal)),
                Err(e) if e.is_transient() => {
                    if !self
                        .client
                        .again(attempt, e.retry_after(), what, &e.to_string())?
                    {
                        return Err(e.spent());
                    }
                    attempt += 1;
                    (location, offset) = self.upload_status(&location, offset, len, what)?;
                }
                Err(e) => return Err(e),
            }
        }
        let url = with_digest(&self.client.url(&location), &blob.digest);
        let response = self
            .client
            .send(Method::PUT, &url, &[], Payload::Empty, what)?;
        self.answer(response, &Method::PUT, &url, what)
    }

    /// Sends `len` bytes from `offset`; returns the next Location, if the registry gave one.
    fn patch_chunk(
        &self,
        blob: &Blob,
        source: &dyn BodySource,
        location: &str,
        offset: u64,
        len: u64,
        what: &str,
    ) -> Result<std::result::Result<Option<String>, Refused>> {
        let url = self.client.url(location);
        let range = format!("{offset}-{}", offset + len - 1);
        let headers = [
            ("content-type", "application/octet-stream"),
            ("content-range", range.as_str()),
        ];
        let progress = |at| self.observer.event(Event::BlobProgress(blob, at));
        let body = StreamBody {
            source,
            offset,
            len,
            progress: Some(&progress),
        };
        let response =
            self.client
                .send(Method::PATCH, &url, &headers, Payload::Stream(body), what)?;
        let next = location_of(&response);
        Ok(self
            .answer(response, &Method::PATCH, &url, what)?
            .map(|()| next))
    }

    /// `GET` an upload session: its Location and how many bytes it holds (`Range: 0-N`),
    /// after a failed chunk of `len` bytes from `confirmed`. The registry holds from
    /// `confirmed` (the chunk lost) to `confirmed + len` (only its answer lost); anything else
    /// (GHCR's `0-0`, ECR's frozen `Range`) cannot be resumed from, and a session the registry
    /// cannot report on neither: the error is transient, so the upload starts over.
    fn upload_status(
        &self,
        location: &str,
        confirmed: u64,
        len: u64,
        what: &str,
    ) -> Result<(String, u64)> {
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
        let next = location_of(&response).unwrap_or_else(|| location.to_string());
        // `0-0` is 0 or 1 byte: only with nothing confirmed yet does it say where to go on.
        let stored = stored_bytes(&response).or((confirmed == 0).then_some(0));
        match stored {
            Some(stored) if (confirmed..=confirmed + len).contains(&stored) => Ok((next, stored)),
            _ => Err(Error::new(
                Kind::Rejected,
                format!(
                    "{what}: the registry's upload session does not say where it stands \
                     (Range {}); starting over",
                    response
                        .headers()
                        .get("range")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("missing")
                ),
            )
            .transient(None)),
        }
    }
}

/// Where a blob's upload stands after the mounts were tried.
enum Session {
    Mounted,
    Open(String),
}

enum Mount {
    Done,
    /// The registry opened an upload session instead of mounting.
    Session(String),
    /// No mount and no session.
    Refused,
}

/// `URL?digest=...` (or `&digest=` when the URL has a query already).
fn with_digest(url: &str, digest: &str) -> String {
    with_query(url, &[("digest", digest)])
}

/// How many bytes an upload session holds, from its `Range: 0-N` (N the last byte's index).
/// `0-0` says nothing: registries send it for an empty session and for one byte alike.
fn stored_bytes(response: &Response<ureq::Body>) -> Option<u64> {
    let range = response.headers().get("range")?.to_str().ok()?;
    let (_, last) = range.trim().trim_start_matches("bytes=").split_once('-')?;
    match last.trim().parse::<i64>().ok()? {
        last if last < 0 => Some(0),
        0 => None,
        last => Some(last as u64 + 1),
    }
}

fn header_number(response: &Response<ureq::Body>, name: &str) -> Option<u64> {
    response
        .headers()
        .get(name)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The `Location` of an upload session, when the answer has one.
fn location_of(response: &Response<ureq::Body>) -> Option<String> {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
}

fn no_location(response: &Response<ureq::Body>, method: &Method, url: &str, what: &str) -> Error {
    Error::new(
        Kind::Rejected,
        format!(
            "{what}: {method} {} answered {} without a Location header",
            redact(url),
            response.status()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(status: u16, code: &str) -> Refusal {
        Refusal::new(StatusCode::from_u16(status).unwrap(), &[code])
    }

    /// The strategy a refusal teaches, as a push that has seen PATCH refused (`no_patch`) or not.
    fn learnt(
        strategy: Strategy,
        status: u16,
        code: &str,
        sent: u64,
        min: u64,
        no_patch: bool,
    ) -> Option<Strategy> {
        lesson(strategy, &refusal(status, code), sent, min, no_patch).map(|l| l.0)
    }

    #[test]
    fn lessons_from_refusals() {
        use Strategy::{Chunked, Monolithic};
        let mib = 1 << 20;
        let learn = |s, status, code, sent, min| learnt(s, status, code, sent, min, false);
        assert_eq!(
            learn(Monolithic, 413, "", 10 * mib, 0),
            Some(Chunked(4 * mib))
        );
        assert_eq!(learn(Monolithic, 413, "", 2 * mib, 0), Some(Chunked(mib)));
        assert_eq!(
            learn(Chunked(8 * mib), 416, "RANGE_INVALID", 8 * mib, 0),
            Some(Chunked(4 * mib))
        );
        // Not below the registry's minimum, nor below the floor.
        assert_eq!(
            learn(Chunked(6 * mib), 413, "", 6 * mib, 5 * mib),
            Some(Chunked(5 * mib))
        );
        assert_eq!(learn(Chunked(5 * mib), 413, "", 5 * mib, 5 * mib), None);
        assert_eq!(learn(Chunked(100 << 10), 413, "", 100 << 10, 0), None);
        assert_eq!(
            learn(Monolithic, 404, "BLOB_UNKNOWN", mib, 0),
            Some(Chunked(u64::MAX))
        );
        assert_eq!(
            learn(Chunked(mib), 405, "UNSUPPORTED", mib, 0),
            Some(Monolithic)
        );
        assert_eq!(learn(Chunked(mib), 501, "", mib, 0), Some(Monolithic));
        // A monolithic PUT's 416 or 405 teaches nothing; nor does a plain 400.
        assert_eq!(learn(Monolithic, 416, "", mib, 0), None);
        assert_eq!(learn(Monolithic, 405, "", mib, 0), None);
        assert_eq!(
            learn(Chunked(mib), 400, "BLOB_UPLOAD_INVALID", mib, 0),
            None
        );
        // Once PATCH was refused, chunks are no way out: no ping-pong.
        assert_eq!(learnt(Monolithic, 413, "", 10 * mib, 0, true), None);
        assert_eq!(learnt(Monolithic, 404, "BLOB_UNKNOWN", mib, 0, true), None);
    }
}
