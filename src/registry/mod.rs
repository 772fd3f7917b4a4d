/*!
The one HTTP client every request to a registry goes through.

It owns the connection pool (one `ureq::Agent` per process), picks the scheme, authorizes each
request (see [`auth`]), and turns every failure into an [`Error`] of the right kind: connection
problems are `Network` or `Timeout`, error statuses are `Auth` or `Rejected` with the registry's
own error code and message. The protocol code in `push` never sees schemes, credentials or
tokens.

The scheme: HTTPS with certificate verification. For registries on loopback (`localhost`,
`127.0.0.0/8`, `[::1]`) the first request goes over plain HTTP, and again over HTTPS when the
registry answers like a TLS server; that settles the scheme for the rest of the run.
`--plain-http` goes straight to HTTP. There is no `GET /v2/` ping: the first real request
learns what a ping would (the scheme, and the auth challenge), one round trip sooner.
*/

mod auth;
mod challenge;
mod error;
mod proxy;
mod resolve;
mod retry;
mod tls;
mod url;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use ureq::http::{Method, Request, Response, StatusCode};
use ureq::{Agent, SendBody};

use crate::auth::{Credential, Secret};
use crate::error::{Error, Kind, Result};
use crate::reference::Repository;
use crate::report;

pub use error::Refusal;
use url::{authority, form_encode, same_origin};
pub use url::{is_loopback_host, redact, with_query};

/// How to reach a registry, from the command line.
#[derive(Clone, Debug)]
pub struct Connection {
    /// Speak plain HTTP even to a non-loopback registry.
    pub plain_http: bool,
    /// Accept any TLS certificate.
    pub insecure: bool,
    /// A PEM file of extra trusted CA certificates.
    pub ca_file: Option<PathBuf>,
    /// Log every request on stderr.
    pub verbose: bool,
    /// Retries after the first attempt of a request that failed transiently.
    pub retries: u32,
    /// The whole push must end within this, counted from `started`.
    pub timeout: Duration,
    /// When the run started: credential helpers run before the first request, and count.
    pub started: Instant,
}

impl Connection {
    /// When the whole push must be done.
    pub fn deadline(&self) -> Instant {
        // A --timeout past what the clock can hold is no deadline at all.
        self.started
            .checked_add(self.timeout)
            .unwrap_or_else(|| self.started + Duration::from_secs(100 * 365 * 86_400))
    }
}

impl Default for Connection {
    fn default() -> Connection {
        Connection {
            plain_http: false,
            insecure: false,
            ca_file: None,
            verbose: false,
            retries: DEFAULT_RETRIES,
            timeout: DEFAULT_TIMEOUT,
            started: Instant::now(),
        }
    }
}

/// Enough that a network failing half of all requests still gets a push through
/// (tests/security.rs), as idpbuilder's 10 do; a refusal (401, 403, 404) is never retried.
pub const DEFAULT_RETRIES: u32 = 10;
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

/// What a request carries.
#[derive(Clone, Copy)]
pub enum Payload<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// Part or all of a file, streamed.
    File(FileBody<'a>),
    /// A body that is itself a credential (the token form with a refresh token): it is sent
    /// to its own origin only, never after a redirect elsewhere.
    Secret(&'a [u8]),
}

/// `len` bytes of `file` from `offset`, streamed as a request body; `progress` hears how far
/// into the file the sending has got.
#[derive(Clone, Copy)]
pub struct FileBody<'a> {
    pub file: &'a File,
    pub offset: u64,
    pub len: u64,
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl Payload<'_> {
    /// Whether the client may send it again by itself. A blob is not: a failed upload needs
    /// a new upload session (or the registry's word on where it stands), the caller's step.
    fn replayable(&self) -> bool {
        !matches!(self, Payload::File(_))
    }
}

/// Reads a file body, telling `progress` the position reached. A file that ends before the
/// length we declared (it shrank since the layout was read) is an error at once: otherwise
/// the registry would wait for the missing bytes, and we for its answer, until `--timeout`.
struct Progressing<'a, R> {
    inner: R,
    at: u64,
    end: u64,
    progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

/// The error a [`Progressing`] body fails with when its file ends early.
#[derive(Debug)]
struct Shrunk {
    at: u64,
    expected: u64,
}

impl std::fmt::Display for Shrunk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the file ended at byte {} of {}", self.at, self.expected)
    }
}

impl std::error::Error for Shrunk {}

impl<R: Read> Read for Progressing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && self.at < self.end {
            let shrunk = Shrunk {
                at: self.at,
                expected: self.end,
            };
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                shrunk,
            ));
        }
        self.at += n as u64;
        if let Some(progress) = self.progress {
            progress(self.at);
        }
        Ok(n)
    }
}

/// Where a redirect answer sends the request: its `Location`, made absolute.
fn redirect_target(response: &Response<ureq::Body>, url: &str) -> Option<String> {
    if !matches!(response.status().as_u16(), 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = response.headers().get("location")?.to_str().ok()?.trim();
    Some(url::resolve(url, location))
}

/// The blob file shrank under an upload: the layout changed while it was pushed. The body's
/// I/O error reaches us as `ureq::Error::Io`, perhaps wrapped in I/O errors of ureq's own,
/// whose `source()` skips the inner error.
fn shrunk_file(e: &ureq::Error) -> Option<&Shrunk> {
    let ureq::Error::Io(io) = e else {
        return None;
    };
    let mut error: &(dyn std::error::Error + 'static) = io;
    loop {
        if let Some(shrunk) = error.downcast_ref::<Shrunk>() {
            return Some(shrunk);
        }
        error = match error.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref()?,
            None => error.source()?,
        };
    }
}

pub struct Client {
    /// `http://host:port` or `https://host:port`, no trailing slash; on loopback it starts as
    /// HTTP and the first request may settle it on HTTPS.
    base: RwLock<String>,
    /// A loopback registry whose first request has not yet settled the scheme. Requests wait
    /// on the lock while the first one settles it.
    unsettled: Mutex<bool>,
    /// The agent (connection pool) for `http://` URLs: it never speaks TLS.
    plain: Agent,
    /// The agent for `https://` URLs (the registry, a token realm, blob storage), built when
    /// first needed: loading the system's trust store takes milliseconds that a plain-HTTP
    /// registry never has to pay.
    https: OnceLock<Agent>,
    /// With `--insecure`, the agent for the registry's own host and port, which verifies no
    /// certificate. Token realms and storage hosts elsewhere still go through `https`.
    unverified: Option<Agent>,
    tls: Tls,
    proxies: proxy::Proxies,
    /// Shared by the agents: the loopback check and the requests see the same addresses.
    resolver: resolve::Remembering,
    /// The registry's name for messages (`host:port`).
    registry: String,
    auth: auth::Auth,
    verbose: bool,
    policy: retry::Policy,
}

/// The TLS settings from the command line.
struct Tls {
    ca_file: Option<PathBuf>,
    insecure: bool,
}

impl Client {
    /// Builds the client, sending nothing yet: the first request learns how the registry wants
    /// to be authenticated (and, on loopback, its scheme). `scopes` are the token scopes the
    /// whole run needs.
    pub fn connect(
        repository: &Repository,
        connection: &Connection,
        credential: Credential,
        scopes: &[String],
    ) -> Result<Client> {
        let host = repository.api_host();
        let resolver = resolve::Remembering::default();
        let loopback = repository.is_loopback()
            && !connection.plain_http
            && resolves_to_loopback_only(&resolver, host);
        let scheme = match connection.plain_http || loopback {
            true => "http",
            false => "https",
        };
        let client = Client {
            base: RwLock::new(format!("{scheme}://{host}")),
            unsettled: Mutex::new(loopback),
            plain: new_agent(tls::without_system_roots(), &resolver),
            https: OnceLock::new(),
            unverified: connection
                .insecure
                .then(|| new_agent(tls::without_verification(), &resolver)),
            tls: Tls {
                ca_file: connection.ca_file.clone(),
                insecure: connection.insecure,
            },
            proxies: proxy::Proxies::from_env()?,
            resolver,
            registry: repository.registry().to_string(),
            auth: auth::Auth::new(credential, scopes),
            verbose: connection.verbose,
            policy: retry::Policy::new(
                connection.retries,
                connection.timeout,
                connection.deadline(),
            ),
        };
        if scheme == "https" {
            // A bad --ca-file is a usage error before any request.
            client.agent("https://")?;
        }
        Ok(client)
    }

    fn base(&self) -> String {
        self.base
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The agent for `url`: the plain one, the unverified one for the registry itself under
    /// `--insecure`, or the HTTPS one (built on first use).
    fn agent(&self, url: &str) -> Result<Agent> {
        if !url.starts_with("https://") {
            return Ok(self.plain.clone());
        }
        if let Some(unverified) = &self.unverified {
            if same_origin(url, &self.base().replacen("http://", "https://", 1)) {
                return Ok(unverified.clone());
            }
        }
        if let Some(agent) = self.https.get() {
            return Ok(agent.clone());
        }
        let agent = new_agent(tls::config(self.tls.ca_file.as_deref())?, &self.resolver);
        Ok(self.https.get_or_init(|| agent).clone())
    }

    /// `url` on the registry's settled scheme: a URL made before the first request found
    /// HTTPS names HTTP.
    fn current(&self, url: &str) -> String {
        let base = self.base();
        match (url.strip_prefix("http://"), base.strip_prefix("https://")) {
            (Some(rest), Some(host)) if authority(url) == host => format!("https://{rest}"),
            _ => url.to_string(),
        }
    }

    /// The absolute URL of a registry path (`/v2/...`) or of a `Location` the registry sent,
    /// which may be relative or absolute.
    pub fn url(&self, path_or_url: &str) -> String {
        url::resolve(&self.base(), path_or_url)
    }

    /// Sends one request, authorized when it goes to the registry itself. `what` names the
    /// step for error messages ("uploading blob sha256:…"). Returns the response whatever its
    /// status (callers check it with [`Client::expect`]), except that a request the client may
    /// send again by itself is retried while it fails transiently, and then fails.
    pub fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        payload: Payload,
        what: &str,
    ) -> Result<Response<ureq::Body>> {
        if !payload.replayable() {
            return self.send_authorized(&method, url, headers, payload, what);
        }
        self.retrying(what, || {
            let mut response = self.send_authorized(&method, url, headers, payload, what)?;
            if error::is_transient(response.status()) {
                let refusal = Refusal::read(&mut response, &method);
                return Err(self.refusal_error(refusal, &method, url, what));
            }
            Ok(response)
        })
    }

    /// Runs a step (one request, or a whole blob upload) again while it fails transiently.
    /// A failure the retries did not cure comes back spent, so that an enclosing step does not
    /// retry it again: `--retries N` is N retries of a request, not N of each layer.
    pub fn retrying<T>(&self, what: &str, mut step: impl FnMut() -> Result<T>) -> Result<T> {
        let mut attempt = 1;
        loop {
            match step() {
                Err(e) if e.is_transient() => {
                    if !self.again(attempt, e.retry_after(), what, &e.to_string())? {
                        return Err(e.spent());
                    }
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    /// One request, authorized when it goes to the registry itself, and sent again when the
    /// registry's challenge says a new token or credentials would do.
    fn send_authorized(
        &self,
        method: &Method,
        url: &str,
        headers: &[(&str, &str)],
        payload: Payload,
        what: &str,
    ) -> Result<Response<ureq::Body>> {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        // Twice at most: learning the scheme (Basic or Bearer), then a token that expired on
        // the way or lacked a scope.
        let mut challenges_answered = 0;
        loop {
            let to_registry = same_origin(&self.current(url), &self.base());
            // Until the scheme is settled, nothing that could be a credential goes out: the
            // plain-HTTP try may be talking to a TLS port.
            let probing = self.is_unsettled();
            let credentials = match to_registry && !probing {
                true => self.auth_headers(what)?,
                false => Vec::new(),
            };
            let bare = credentials.is_empty();
            rewind(payload, what)?;
            let response = self.settling(method, url, &headers, &credentials, payload, what)?;
            if response.status() == StatusCode::UNAUTHORIZED && to_registry {
                let worth_again = self.auth.refused(&challenges(&response));
                if probing {
                    // Settled now; ask again, with whatever credentials we have.
                    continue;
                }
                // Sent without credentials while the scheme was unknown, and another upload
                // may have learnt it meanwhile (its `refused` then says nothing new): ask
                // again if there is now something to send.
                if bare && !self.auth_headers(what)?.is_empty() {
                    continue;
                }
                if worth_again && challenges_answered < 2 {
                    challenges_answered += 1;
                    continue;
                }
            }
            return Ok(response);
        }
    }

    fn is_unsettled(&self) -> bool {
        self.unsettled.lock().map(|u| *u).unwrap_or(false)
    }

    /// [`Client::raw`] to `url` on the current scheme, except that the first request to a
    /// loopback registry also settles the scheme: plain HTTP, unless the registry answers it
    /// like a TLS server (400, or hanging up) and answers HTTPS. While neither answers, it
    /// stays unsettled: the registry may still be starting.
    fn settling(
        &self,
        method: &Method,
        url: &str,
        headers: &[(String, String)],
        credentials: &[(String, String)],
        payload: Payload,
        what: &str,
    ) -> Result<Response<ureq::Body>> {
        let url = self.current(url);
        let mut unsettled = self
            .unsettled
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(rest) = url.strip_prefix("http://").filter(|_| *unsettled) else {
            drop(unsettled);
            return self
                .raw(method, &url, headers, credentials, payload, what)
                .map_err(|(e, _)| e);
        };
        let plain = self.raw(method, &url, headers, credentials, payload, what);
        if matches!(&plain, Ok(r) if r.status() != StatusCode::BAD_REQUEST) {
            *unsettled = false;
            return plain.map_err(|(e, _)| e);
        }
        rewind(payload, what)?;
        let https = format!("https://{rest}");
        match self.raw(method, &https, headers, credentials, payload, what) {
            // An answer, or a TLS server we do not trust (its error says how to trust it).
            outcome @ (Ok(_) | Err((_, true))) => {
                let https = self.base().replacen("http://", "https://", 1);
                *self.base.write().unwrap_or_else(PoisonError::into_inner) = https;
                *unsettled = false;
                outcome.map_err(|(e, _)| e)
            }
            // A plain 400 stands as the answer.
            Err(_) => {
                *unsettled = plain.is_err();
                plain.map_err(|(e, _)| e)
            }
        }
    }

    /// Checks that a response has one of the `ok` statuses; otherwise reads the registry's
    /// error. A refusal of our credentials names where they came from and what to try.
    pub fn expect(
        &self,
        mut response: Response<ureq::Body>,
        ok: &[StatusCode],
        method: &Method,
        url: &str,
        what: &str,
    ) -> Result<Response<ureq::Body>> {
        if ok.contains(&response.status()) {
            return Ok(response);
        }
        let refusal = Refusal::read(&mut response, method);
        Err(self.refusal_error(refusal, method, url, what))
    }

    /// The error for a registry's refusal of a request.
    pub fn refusal_error(&self, refusal: Refusal, method: &Method, url: &str, what: &str) -> Error {
        self.refusal_at(refusal, method, &self.current(url), what)
    }

    /// [`Client::refusal_error`] for a request to `url` as it was sent (a token realm, which
    /// the registry's scheme says nothing about).
    fn refusal_at(&self, refusal: Refusal, method: &Method, url: &str, what: &str) -> Error {
        let is_auth = refusal.is_auth();
        let error = refusal.into_error(method, url);
        match is_auth {
            true => self.refused_error(error).context(what),
            false => error.context(what),
        }
    }

    fn refused_error(&self, cause: Error) -> Error {
        let registry = &self.registry;
        let source = &self.auth.credential.source;
        let message = if self.auth.credential.is_anonymous() {
            format!(
                "{registry} wants credentials to push (tried anonymous): {cause}; \
                 log in with `docker login {registry}`, or pass --username with --password-stdin"
            )
        } else {
            format!(
                "{registry} refused the credentials from {source}: {cause}; check that they \
                 are current and allowed to push here (see docs/auth.md)"
            )
        };
        Error::new(Kind::Auth, message)
    }

    /// The authorization headers for a request to the registry, fetching a token first when
    /// there is none or it expired.
    fn auth_headers(&self, what: &str) -> Result<Vec<(String, String)>> {
        for _ in 0..2 {
            match self.auth.headers() {
                Ok(headers) => return Ok(headers),
                Err(request) => self.fetch_token(request, what)?,
            }
        }
        Err(Error::new(
            Kind::Auth,
            format!("{what}: the token from {} expired at once", self.registry),
        ))
    }

    /// Asks the token server for a token covering every scope (GET with Basic credentials,
    /// or POST with an identity token).
    fn fetch_token(&self, request: auth::TokenRequest, what: &str) -> Result<()> {
        let realm = &request.realm;
        let is_url = (realm.starts_with("https://") || realm.starts_with("http://"))
            && !authority(realm).is_empty()
            && !realm.contains(char::is_whitespace);
        if !is_url {
            return Err(Error::new(
                Kind::Rejected,
                format!(
                    "{what}: {} asks for a token from realm '{}', which is not an http(s) URL; \
                     the registry's token auth is misconfigured",
                    self.registry,
                    redact(realm)
                ),
            ));
        }
        let has_secret = matches!(
            self.auth.credential.secret,
            Secret::Basic { .. } | Secret::IdentityToken { .. }
        );
        // --insecure says the user trusts the registry's host as it is, not other hosts.
        let trusted_anyway = self.tls.insecure && url::host(realm) == url::host(&self.base());
        if realm.starts_with("http://")
            && self.base().starts_with("https://")
            && has_secret
            && !trusted_anyway
        {
            let way_out = match self.tls.insecure {
                true => "(--insecure allows one on the registry's own host only)",
                false => "or pass --insecure to allow it on the registry's own host",
            };
            return Err(Error::new(
                Kind::Auth,
                format!(
                    "{what}: {} speaks HTTPS but names a plain-HTTP token realm, {}; the \
                     credentials from {} are not sent there in clear: fix the registry's token \
                     realm, {way_out}",
                    self.registry,
                    redact(realm),
                    self.auth.credential.source
                ),
            ));
        }
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = &request.service {
            query.push(("service", service));
        }
        let (method, response) = match &self.auth.credential.secret {
            Secret::IdentityToken { token, .. } => {
                let scopes = request.scopes.join(" ");
                query.extend([
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                    ("client_id", "oci-push"),
                    ("scope", scopes.as_str()),
                ]);
                let form = form_encode(&query);
                let headers = [(
                    "content-type".to_string(),
                    "application/x-www-form-urlencoded".to_string(),
                )];
                let body = Payload::Secret(form.as_bytes());
                (
                    Method::POST,
                    self.raw(&Method::POST, realm, &headers, &[], body, what),
                )
            }
            _ => {
                for scope in &request.scopes {
                    query.push(("scope", scope));
                }
                let url = with_query(realm, &query);
                let basic: Vec<_> = self.auth.basic_header().into_iter().collect();
                let response = self.raw(&Method::GET, &url, &[], &basic, Payload::Empty, what);
                (Method::GET, response)
            }
        };
        let mut response =
            response.map_err(|(e, _)| e.context(format!("token server {}", redact(realm))))?;
        if response.status() != StatusCode::OK {
            // As any refusal (detail, Retry-After, transient for 429 and 5xx), named by the
            // realm without its query.
            let refusal = Refusal::read(&mut response, &method);
            return Err(self.refusal_at(refusal, &method, realm, what));
        }
        let body = crate::files::read_at_most(response.body_mut().as_reader(), MAX_TOKEN_ANSWER)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidData => Error::new(
                    Kind::Auth,
                    format!(
                        "{what}: token server {} answered more than {}, which is no token",
                        redact(realm),
                        crate::units::human_size(MAX_TOKEN_ANSWER)
                    ),
                ),
                _ => transport_error(ureq::Error::Io(e), &method, realm, what).0,
            })?;
        self.auth.set_token(&body, &redact(realm))
    }

    /// One request, following redirects here rather than in ureq, so that `credentials` go
    /// only to the scheme, host and port of `url`: ureq would carry headers other than
    /// `Authorization` (a Bazel helper's `x-api-key`) to whatever host a redirect names. A
    /// failure comes with whether it was about certificates (the peer speaks TLS but is not
    /// trusted, or `--ca-file` is unusable).
    fn raw(
        &self,
        method: &Method,
        url: &str,
        headers: &[(String, String)],
        credentials: &[(String, String)],
        payload: Payload,
        what: &str,
    ) -> std::result::Result<Response<ureq::Body>, (Error, bool)> {
        let first = url;
        let (mut method, mut url, mut payload) = (method.clone(), url.to_string(), payload);
        let mut all = headers.to_vec();
        all.extend_from_slice(credentials);
        for hop in 0..=MAX_REDIRECTS {
            if hop > 0 {
                rewind(payload, what).map_err(|e| (e, false))?;
            }
            let home = same_origin(&url, first);
            if matches!(payload, Payload::Secret(_)) && !home {
                let message = format!(
                    "{what}: {} redirected the request to {}, another origin; its body holds \
                     a credential and is not sent there",
                    redact(first),
                    redact(&url)
                );
                return Err((Error::new(Kind::Auth, message), false));
            }
            let sent = match home {
                true => &all[..],
                false => headers,
            };
            let response = self.raw_once(&method, &url, sent, payload, what)?;
            let Some(next) = redirect_target(&response, &url) else {
                return Ok(response);
            };
            if hop == MAX_REDIRECTS {
                break;
            }
            // As browsers and Go's client do: 303, and 301/302 of anything but GET and HEAD,
            // become a GET without a body; 307 and 308 send the same request again.
            let status = response.status().as_u16();
            if status == 303 || (matches!(status, 301 | 302) && !is_get_or_head(&method)) {
                if method != Method::HEAD {
                    method = Method::GET;
                }
                payload = Payload::Empty;
            }
            if self.verbose {
                report::log(&format!(
                    "http: {} redirected to {}",
                    redact(&url),
                    redact(&next)
                ));
            }
            url = next;
        }
        Err((
            Error::new(
                Kind::Rejected,
                format!(
                    "{what}: {method} {} was redirected more than {MAX_REDIRECTS} times; \
                     check the registry's URL and its proxies",
                    redact(&url)
                ),
            ),
            false,
        ))
    }

    /// One request on the wire, logged with `--verbose`.
    fn raw_once(
        &self,
        method: &Method,
        url: &str,
        headers: &[(String, String)],
        payload: Payload,
        what: &str,
    ) -> std::result::Result<Response<ureq::Body>, (Error, bool)> {
        let mut builder = Request::builder().method(method.clone()).uri(url);
        for (name, value) in headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let agent = self.agent(url).map_err(|e| (e, true))?;
        let proxy = self.proxies.for_url(url);
        let started = Instant::now();
        let Some(remaining) = self.policy.remaining() else {
            return Err((self.policy.timed_out(what), false));
        };
        let bad_request = |e: ureq::http::Error| {
            let message = format!("{what}: cannot build request {method} {}: {e}", redact(url));
            (Error::usage(message), false)
        };
        let result = match payload {
            // An empty body still gets `Content-Length: 0`: without it ureq sends a POST's
            // nothing as a chunked body, one more packet for the registry to wait for.
            Payload::Empty if [Method::POST, Method::PUT, Method::PATCH].contains(method) => run(
                &agent,
                builder.body(&[][..]).map_err(bad_request)?,
                remaining,
                proxy,
            ),
            Payload::Empty => run(
                &agent,
                builder.body(()).map_err(bad_request)?,
                remaining,
                proxy,
            ),
            Payload::Bytes(bytes) | Payload::Secret(bytes) => run(
                &agent,
                builder.body(bytes).map_err(bad_request)?,
                remaining,
                proxy,
            ),
            // Through ureq's buffer, not by sendfile(2): measured on loopback, the registry
            // (the bottleneck of a cold push) spent ~10 % less CPU taking in the same bytes
            // this way, which more than pays for the copy (bench/README.md).
            Payload::File(body) => {
                let mut reader = Progressing {
                    inner: body.file.take(body.len),
                    at: body.offset,
                    end: body.offset + body.len,
                    progress: body.progress,
                };
                let builder = builder.header("content-length", body.len);
                let body = SendBody::from_reader(&mut reader);
                run(
                    &agent,
                    builder.body(body).map_err(bad_request)?,
                    remaining,
                    proxy,
                )
            }
        };
        if self.verbose {
            let took = started.elapsed().as_millis();
            let outcome = match &result {
                Ok(r) => r.status().to_string(),
                Err(e) => e.to_string(),
            };
            report::log(&format!(
                "http: {method} {} -> {outcome} ({took} ms)",
                redact(url)
            ));
        }
        result.map_err(|e| {
            if matches!(e, ureq::Error::Timeout(_)) && self.policy.remaining().is_none() {
                return (self.policy.timed_out(what), false);
            }
            if let Some(shrunk) = shrunk_file(&e) {
                let message = format!(
                    "{what}: the file changed while uploading ({shrunk}); something rewrote the \
                     layout during the push: rebuild the image and push again"
                );
                return (Error::invalid(message), false);
            }
            transport_error(e, method, url, what)
        })
    }

    /// After failed attempt `attempt` of a step the caller retries itself: whether to try
    /// again (having waited), by the same policy as every request.
    pub fn again(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        what: &str,
        why: &str,
    ) -> Result<bool> {
        self.policy.again(attempt, retry_after, what, why)
    }
}

/// Runs a request that may take what is left of the whole push, and no more.
fn run(
    agent: &Agent,
    request: Request<impl ureq::AsSendBody>,
    remaining: Duration,
    proxy: Option<ureq::Proxy>,
) -> std::result::Result<Response<ureq::Body>, ureq::Error> {
    let request = agent
        .configure_request(request)
        .timeout_global(Some(remaining))
        .proxy(proxy)
        .build();
    agent.run(request)
}

fn challenges(response: &Response<ureq::Body>) -> Vec<challenge::Challenge> {
    response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(challenge::parse)
        .collect()
}

const USER_AGENT: &str = concat!("oci-push/", env!("CARGO_PKG_VERSION"));

/// The parsers of what registries and token servers send, for the property tests.
pub mod parsers {
    pub use super::challenge::{parse as challenges, Challenge};
    pub use super::error::parse_retry_after as retry_after;

    /// Takes a token server's answer as a push would.
    pub fn token_answer(answer: &[u8]) -> crate::error::Result<()> {
        super::auth::Auth::new(crate::auth::Credential::anonymous(), &[]).set_token(answer, "realm")
    }
}

/// The one agent (connection pool) of a client.
fn new_agent(tls: ureq::tls::TlsConfig, resolver: &resolve::Remembering) -> Agent {
    let config = Agent::config_builder()
        // Error statuses are answers to read (the registry's error body), not failures.
        .http_status_as_error(false)
        .tls_config(tls)
        .user_agent(USER_AGENT)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(300)))
        // Redirects are followed by `Client::raw`, which decides where credentials go, and
        // the proxy is chosen per request (see the `proxy` module): ureq's own choice
        // would send loopback traffic and plain HTTP through HTTPS_PROXY.
        .max_redirects(0)
        .proxy(None)
        // Few syscalls per layer, yet eight uploads at once stay within a few MiB.
        .output_buffer_size(256 << 10)
        .build();
    Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::new(),
        resolver.clone(),
    )
}

/// Puts a file body at its start before (re)sending it.
fn rewind(payload: Payload, what: &str) -> Result<()> {
    let Payload::File(body) = payload else {
        return Ok(());
    };
    let mut file = body.file;
    file.seek(SeekFrom::Start(body.offset))
        .map(|_| ())
        .map_err(|e| Error::usage(format!("{what}: cannot seek in the file: {e}")))
}

/// A token answer is a JSON object of a few KiB (a JWT and its lifetime).
const MAX_TOKEN_ANSWER: u64 = 1 << 20;

/// Redirects followed for one request: a registry sends one at most (to its storage).
const MAX_REDIRECTS: usize = 5;

fn is_get_or_head(method: &Method) -> bool {
    *method == Method::GET || *method == Method::HEAD
}

/// Whether every address `authority` names is on this machine: only then may a "loopback"
/// registry get plain HTTP. The answer is remembered by `resolver`, so the requests go to the
/// addresses checked. A name that does not resolve is not loopback (and its HTTPS request then
/// says it does not resolve).
fn resolves_to_loopback_only(resolver: &resolve::Remembering, authority: &str) -> bool {
    resolver
        .addresses(authority)
        .is_some_and(|a| !a.is_empty() && a.iter().all(|a| a.ip().is_loopback()))
}

fn transport_error(e: ureq::Error, method: &Method, url: &str, what: &str) -> (Error, bool) {
    // rustls failures reach us directly or wrapped in the I/O error of the TLS stream.
    let tls_error = match &e {
        ureq::Error::Rustls(tls) => Some(tls),
        ureq::Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    let certificate = matches!(
        tls_error,
        Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
    );
    let (kind, hint) = match &e {
        ureq::Error::Timeout(_) => (Kind::Timeout, "the registry did not answer in time"),
        ureq::Error::HostNotFound => (Kind::Network, "check the registry host name"),
        ureq::Error::ConnectionFailed => (Kind::Network, "is the registry running and reachable?"),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            (Kind::Network, "is the registry running and reachable?")
        }
        _ if certificate => (
            Kind::Network,
            "the registry's certificate is not trusted; pass its CA with --ca-file, or --insecure to skip verification",
        ),
        _ if tls_error.is_some() || matches!(e, ureq::Error::Tls(_)) => (
            Kind::Network,
            "TLS failed; for a registry without TLS use --plain-http, for a private CA --ca-file",
        ),
        _ => (Kind::Network, "the connection to the registry failed"),
    };
    // Worth another try: the network or the registry may be back; a name that does not
    // resolve or a certificate that is not trusted will not change.
    let transient = tls_error.is_none()
        && matches!(
            &e,
            ureq::Error::Timeout(_)
                | ureq::Error::ConnectionFailed
                | ureq::Error::Io(_)
                | ureq::Error::Protocol(_)
        );
    let message = format!("{what}: {method} {} failed: {e} ({hint})", redact(url));
    let error = Error::new(kind, message);
    let error = if transient {
        error.transient(None)
    } else {
        error
    };
    (error, certificate)
}
