//! The bottom of the client's stack: one request on the wire. It picks the connection pool
//! (plain HTTP, HTTPS, or the unverified one for the registry itself under `--insecure`) and the
//! proxy, streams the body, bounds the request by what is left of `--timeout`, logs it, and
//! turns a failure into an [`Error`] of the right kind.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ureq::http::{Method, Request, Response};
use ureq::{Agent, SendBody};

use super::proxy::Proxies;
use super::resolve::Remembering;
use super::retry::Policy;
use super::url::{redact, same_origin};
use super::{ahead, tls, trust};
use crate::error::{Error, Kind, Result};

/// What a request carries.
#[derive(Clone, Copy)]
pub enum Payload<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// Part or all of a blob, streamed from its source.
    Stream(StreamBody<'a>),
    /// A body that is itself a credential (the token form with a refresh token): it is sent
    /// to its own origin only, never after a redirect elsewhere.
    Secret(&'a [u8]),
}

/// Where a streamed body's bytes come from: a file of the layout, or the remote cache. It is
/// opened afresh for every sending, so a request sent again (after a redirect, a challenge,
/// the scheme's probe) starts from its offset again.
pub trait BodySource: Sync {
    /// `len` bytes from `offset`. A failure while reading them is a [`BodyFailed`] in the
    /// reader's I/O error, so that the request fails with that error rather than as a
    /// broken connection to the registry.
    fn open(&self, offset: u64, len: u64) -> Result<Box<dyn Read + '_>>;
}

impl BodySource for File {
    fn open(&self, offset: u64, len: u64) -> Result<Box<dyn Read + '_>> {
        let mut file = self;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| Error::usage(format!("cannot seek in the file: {e}")))?;
        Ok(Box::new(file.take(len)))
    }
}

/// The error a body source's reader fails with, carried through ureq's I/O error.
#[derive(Debug)]
pub struct BodyFailed(pub Error);

impl std::fmt::Display for BodyFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BodyFailed {}

/// `len` bytes of `source` from `offset`, streamed as a request body; `progress` hears how
/// far into the blob the sending has got.
#[derive(Clone, Copy)]
pub struct StreamBody<'a> {
    pub source: &'a dyn BodySource,
    pub offset: u64,
    pub len: u64,
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl Payload<'_> {
    /// Whether the client may send it again by itself. A blob is not: a failed upload needs
    /// a new upload session (or the registry's word on where it stands), the caller's step.
    pub fn replayable(&self) -> bool {
        !matches!(self, Payload::Stream(_))
    }
}

/// Reads a body, telling `progress` the position reached. A source that ends before the
/// length we declared (a file that shrank since the layout was read) is an error at once:
/// otherwise the registry would wait for the missing bytes, and we for its answer, until
/// `--timeout`.
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

/// An error of ours inside a body's I/O error (the file shrank, the remote cache failed). It
/// reaches us as `ureq::Error::Io`, perhaps wrapped in I/O errors of ureq's own, whose
/// `source()` skips the inner error.
fn body_error<T: std::error::Error + 'static>(e: &ureq::Error) -> Option<&T> {
    let ureq::Error::Io(io) = e else {
        return None;
    };
    let mut error: &(dyn std::error::Error + 'static) = io;
    loop {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        error = match error.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref()?,
            None => error.source()?,
        };
    }
}

/// How TLS is set up, from the command line.
pub struct TlsOptions {
    /// `host[:port]` of the registry: its own agent may present a client certificate, read
    /// certs.d, or (with `insecure`) verify nothing.
    pub host: String,
    pub ca_file: Option<PathBuf>,
    /// `--cert-file` and `--key-file`.
    pub identity: Option<(PathBuf, PathBuf)>,
    pub insecure: bool,
}

/// What the registry's TLS files hold: `--ca-file`, `--cert-file` with `--key-file`, and its
/// certs.d directory.
struct RegistryFiles {
    ca_file: Vec<rustls_pki_types::CertificateDer<'static>>,
    identity: Option<trust::Identity>,
    certs_d: trust::HostFiles,
}

pub struct Wire {
    /// The agent (connection pool) for `http://` URLs: it never speaks TLS.
    plain: Agent,
    /// The agent for the registry's own `https://` origin, built when first needed: loading
    /// the system's trust store takes milliseconds that a plain-HTTP registry never has to pay.
    /// It trusts certs.d's CAs too, presents the client certificate, and under `--insecure`
    /// verifies nothing.
    /// With how it speaks TLS, for the connections opened ahead.
    registry: OnceLock<(Agent, tls::Scope)>,
    /// The agent for every other `https://` URL (a token realm, blob storage): the system's
    /// store and `--ca-file`, verified, no client certificate.
    elsewhere: OnceLock<Agent>,
    /// Connections to the registry opened ahead of need, which its agent takes first.
    ahead: Arc<ahead::Stash>,
    /// The registry's TLS files, read once (before the first request, on loopback).
    files: OnceLock<RegistryFiles>,
    roots: OnceLock<Vec<rustls_pki_types::CertificateDer<'static>>>,
    tls: TlsOptions,
    proxies: Proxies,
    /// Shared by the agents: the loopback check and the requests see the same addresses.
    resolver: Remembering,
    policy: Policy,
    /// Who is at the other end, for the hints of failures.
    peer: Peer,
}

/// The server a wire leads to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    Registry,
    /// Bazel's remote cache: its failures are `Kind::Cache`, with its own hints.
    Cache,
}

impl Wire {
    pub fn new(tls: TlsOptions, resolver: Remembering, policy: Policy, peer: Peer) -> Result<Wire> {
        Ok(Wire {
            peer,
            plain: new_agent(tls::Scope::None, &resolver, None),
            registry: OnceLock::new(),
            elsewhere: OnceLock::new(),
            ahead: ahead::Stash::new(&tls.host),
            files: OnceLock::new(),
            roots: OnceLock::new(),
            tls,
            proxies: Proxies::from_env()?,
            resolver,
            policy,
        })
    }

    /// Reads the registry's TLS files (`--ca-file`, `--cert-file`, certs.d) without loading
    /// the system's store: a loopback registry that may turn out to speak plain HTTP still
    /// has them checked before its first request.
    pub fn check_files(&self) -> Result<()> {
        self.files().map(|_| ())
    }

    fn files(&self) -> Result<&RegistryFiles> {
        if let Some(files) = self.files.get() {
            return Ok(files);
        }
        let ca_file = match &self.tls.ca_file {
            Some(path) => trust::pem_certificates(path, "--ca-file")?,
            None => Vec::new(),
        };
        let identity = match &self.tls.identity {
            Some((cert, key)) => Some(trust::identity(cert, key)?),
            None => None,
        };
        let certs_d = trust::certs_d(&self.tls.host, identity.is_none())?;
        Ok(self.files.get_or_init(|| RegistryFiles {
            ca_file,
            identity,
            certs_d,
        }))
    }

    /// `--insecure`: the registry's own host is not verified.
    pub fn insecure(&self) -> bool {
        self.tls.insecure
    }

    fn roots(&self) -> Result<&[rustls_pki_types::CertificateDer<'static>]> {
        if let Some(roots) = self.roots.get() {
            return Ok(roots);
        }
        let roots = trust::roots(&self.files()?.ca_file);
        Ok(self.roots.get_or_init(|| roots))
    }

    /// The agent for `url`: the plain one, the registry's, or the one for other hosts (each
    /// built on first use). A bad `--ca-file`, certs.d file or client certificate is an error
    /// here, before any request.
    pub fn agent(&self, url: &str) -> Result<Agent> {
        if !url.starts_with("https://") {
            return Ok(self.plain.clone());
        }
        if same_origin(url, &format!("https://{}", self.tls.host)) {
            return self.registry_agent().map(|(agent, _)| agent.clone());
        }
        if let Some(agent) = self.elsewhere.get() {
            return Ok(agent.clone());
        }
        let config = trust::client_config(self.roots()?, None, true)?;
        let agent = new_agent(tls::Scope::Any(config), &self.resolver, None);
        Ok(self.elsewhere.get_or_init(|| agent).clone())
    }

    /// The registry's own agent, and its TLS: certs.d's CAs trusted too, the client
    /// certificate presented, and under `--insecure` nothing verified.
    fn registry_agent(&self) -> Result<&(Agent, tls::Scope)> {
        if let Some(registry) = self.registry.get() {
            return Ok(registry);
        }
        let files = self.files()?;
        let mut roots = self.roots()?.to_vec();
        roots.extend(files.certs_d.cas.iter().cloned());
        let identity = files.identity.as_ref().or(files.certs_d.identity.as_ref());
        let config = trust::client_config(&roots, identity, !self.tls.insecure)?;
        let scope = tls::Scope::Host(self.tls.host.clone(), config);
        let agent = new_agent(scope.clone(), &self.resolver, Some(self.ahead.clone()));
        Ok(self.registry.get_or_init(|| (agent, scope)))
    }

    /// Opens `count` connections to the registry (HTTPS) on other threads, for the requests
    /// to come; none through a proxy.
    pub fn open_ahead(&self, count: usize) {
        let url = format!("https://{}/", self.tls.host);
        if count == 0 || self.proxies.for_url(&url).is_some() {
            return;
        }
        if let Ok((agent, scope)) = self.registry_agent() {
            self.ahead
                .open(count, agent.config(), &self.resolver, scope);
        }
    }

    /// One request on the wire, logged (at debug level: `--verbose`). A failure comes with
    /// whether it was about certificates (the peer speaks TLS but is not trusted, or
    /// `--ca-file` is unusable).
    pub fn send(
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
            Payload::Stream(body) => {
                let inner = body
                    .source
                    .open(body.offset, body.len)
                    .map_err(|e| (e, false))?;
                let mut reader = Progressing {
                    inner,
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
        super::stats::request();
        if log::log_enabled!(log::Level::Debug) {
            let took = started.elapsed().as_millis();
            let outcome = match &result {
                Ok(r) => r.status().to_string(),
                Err(e) => e.to_string(),
            };
            log::debug!("http: {method} {} -> {outcome} ({took} ms)", redact(url));
        }
        result.map_err(|e| {
            if matches!(e, ureq::Error::Timeout(_)) && self.policy.remaining().is_none() {
                return (self.policy.timed_out(what), false);
            }
            if let Some(BodyFailed(error)) = body_error::<BodyFailed>(&e) {
                return (error.clone(), false);
            }
            if let Some(shrunk) = body_error::<Shrunk>(&e) {
                let message = format!(
                    "{what}: the file changed while uploading ({shrunk}); something rewrote the \
                     layout during the push: rebuild the image and push again"
                );
                return (Error::invalid(message), false);
            }
            transport_error_of(self.peer, e, method, url, what)
        })
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

const USER_AGENT: &str = concat!("oci-push/", env!("CARGO_PKG_VERSION"));

/// One agent (connection pool) of a client.
fn new_agent(tls: tls::Scope, resolver: &Remembering, ahead: Option<Arc<ahead::Stash>>) -> Agent {
    // Answers are small: 32 KiB holds any registry's headers. A TLS connection holds two sets
    // of buffers, the TLS transport's (plaintext) and the TCP one's beneath it (records), and
    // records are 16 KiB at most: 256 KiB of each per upload made eight uploads cost 6 MiB.
    // Plain HTTP keeps large writes: few syscalls per layer.
    let output = match tls {
        tls::Scope::None => 256 << 10,
        _ => 64 << 10,
    };
    let config = Agent::config_builder()
        // Error statuses are answers to read (the registry's error body), not failures.
        .http_status_as_error(false)
        .user_agent(USER_AGENT)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(300)))
        // Redirects are followed by `Redirects::send`, which decides where credentials go, and
        // the proxy is chosen per request (see the `proxy` module): ureq's own choice
        // would send loopback traffic and plain HTTP through HTTPS_PROXY.
        .max_redirects(0)
        .proxy(None)
        .input_buffer_size(32 << 10)
        // Every upload of `--jobs` hands its connection back between its requests: with
        // ureq's default of 3 idle per host, the others would be closed and opened again.
        .max_idle_connections_per_host(crate::cli::MAX_JOBS + 1)
        .max_idle_connections(2 * (crate::cli::MAX_JOBS + 1))
        .output_buffer_size(output)
        .build();
    Agent::with_parts(config, tls::connector(tls, ahead), resolver.clone())
}

/// The error for a failed request, and whether the peer spoke TLS (a certificate it sent we do
/// not trust, or an alert it sent): a loopback registry answering so is a TLS one.
pub fn transport_error(e: ureq::Error, method: &Method, url: &str, what: &str) -> (Error, bool) {
    transport_error_of(Peer::Registry, e, method, url, what)
}

fn transport_error_of(
    peer: Peer,
    e: ureq::Error,
    method: &Method,
    url: &str,
    what: &str,
) -> (Error, bool) {
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
    // A TLS alert: the peer speaks TLS. A certificate alert is its refusal of ours (mutual
    // TLS), or of none.
    let alert = match tls_error {
        Some(rustls::Error::AlertReceived(alert)) => Some(*alert),
        _ => None,
    };
    let client_certificate = matches!(
        alert,
        Some(
            rustls::AlertDescription::BadCertificate
                | rustls::AlertDescription::CertificateRequired
                | rustls::AlertDescription::UnknownCA
                | rustls::AlertDescription::CertificateExpired
                | rustls::AlertDescription::CertificateUnknown
                | rustls::AlertDescription::AccessDenied
        )
    );
    let (kind, hint) = match &e {
        _ if peer == Peer::Cache => (Kind::Cache, cache_hint(&e, tls_error, certificate)),
        ureq::Error::Timeout(_) => (Kind::Timeout, "the registry did not answer in time"),
        ureq::Error::HostNotFound => (Kind::Network, "check the registry host name"),
        ureq::Error::ConnectionFailed => (Kind::Network, "is the registry running and reachable?"),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            (Kind::Network, "is the registry running and reachable?")
        }
        _ if client_certificate => (
            Kind::Network,
            "the registry wants a client certificate it trusts (mutual TLS): pass --cert-file and --key-file, or put NAME.cert and NAME.key in its certs.d directory",
        ),
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
    (error, certificate || alert.is_some())
}

/// What to check when the remote cache cannot be reached or read.
fn cache_hint(
    e: &ureq::Error,
    tls_error: Option<&rustls::Error>,
    certificate: bool,
) -> &'static str {
    match e {
        ureq::Error::Timeout(_) => "the remote cache did not answer in time",
        ureq::Error::HostNotFound => "check the host name of --remote-cache",
        _ if certificate => {
            "the remote cache's certificate is not trusted; add its CA to the system's store or SSL_CERT_FILE"
        }
        _ if tls_error.is_some() || matches!(e, ureq::Error::Tls(_)) => {
            "TLS failed; check the scheme of --remote-cache (http:// or https://)"
        }
        _ => "is the remote cache running and reachable at the --remote-cache URL?",
    }
}
