/*!
The one HTTP client every request to a registry goes through, as a stack of layers, one
concern each (as go-containerregistry's `transport` is), built in one place,
[`Client::connect`]:

1. [`Client::send`]: retries a request the client may send again by itself while it fails
   transiently ([`retry`]);
2. [`authorize`]: the registry's credentials for its own origin, and its challenges answered
   (tokens from the realm, whose state is in [`auth`]);
3. [`scheme`]: HTTPS, or on loopback plain HTTP first and HTTPS when the registry speaks it;
4. [`redirect`]: redirects followed, credentials dropped on a change of origin;
5. [`wire`]: one request on the wire (pool, proxy, TLS, body, deadline), logged.

Every failure becomes an [`Error`] of the right kind: connection problems are `Network` or
`Timeout`, error statuses are `Auth` or `Rejected` with the registry's own error code and
message. The protocol code in `push` never sees schemes, credentials or tokens. Diagnostics
go through the `log` facade (`retry:` lines at warn, `--verbose` lines at debug); the front end
installs the logger.

There is no `GET /v2/` ping: the first real request learns what a ping would (the scheme, and
the auth challenge), one round trip sooner.
*/

mod ahead;
mod auth;
mod authorize;
mod challenge;
mod error;
mod proxy;
mod redirect;
mod resolve;
mod retry;
mod scheme;
pub mod stats;
mod tls;
mod trust;
mod url;
mod wire;
mod x509;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ureq::http::{Method, Response, StatusCode};

use crate::auth::Credential;
use crate::error::{Error, Result};
use crate::reference::Repository;

pub use error::Refusal;
pub use resolve::Pin;
pub use url::{is_loopback_host, redact, split_authority, with_query};
pub use wire::{BodyFailed, BodySource, Payload, StreamBody};

/// How to reach a registry, from the command line.
#[derive(Clone, Debug)]
pub struct Connection {
    /// Speak plain HTTP even to a non-loopback registry.
    pub plain_http: bool,
    /// Accept any TLS certificate from the registry's own host and port.
    pub insecure: bool,
    /// A PEM file of extra trusted CA certificates (or pinned server certificates).
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key (PEM), for mutual TLS with the registry.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Log every request on stderr (the front end's logger shows debug lines).
    pub verbose: bool,
    /// `--resolve`: addresses for host names, instead of the system's.
    pub resolve: Vec<Pin>,
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
            identity: None,
            verbose: false,
            resolve: Vec::new(),
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

/// GETs from a server that is not the registry (Bazel's remote cache), on its own wire: the
/// system's trust store and the server's own `certs.d` directory (not `--ca-file`, which is
/// the registry's), the same proxies, `--resolve` and deadline, and none of the registry's
/// credentials. Its connection failures are `Kind::Cache` (the wire's `Peer::Cache`).
pub struct Fetcher {
    wire: wire::Wire,
}

impl Fetcher {
    /// For the server at `authority` (`host[:port]`).
    pub fn new(authority: &str, connection: &Connection) -> Result<Fetcher> {
        let policy = retry::Policy::new(
            connection.retries,
            connection.timeout,
            connection.deadline(),
        );
        let tls = wire::TlsOptions {
            host: authority.to_string(),
            ca_file: None,
            identity: None,
            insecure: false,
        };
        let resolver = resolve::Remembering::pinned(&connection.resolve);
        let wire = wire::Wire::new(tls, resolver, policy, wire::Peer::Cache)?;
        Ok(Fetcher { wire })
    }

    /// One GET, whatever the answer's status; sent once (the caller's step retries).
    pub fn get(
        &self,
        url: &str,
        headers: &[(String, String)],
        what: &str,
    ) -> Result<Response<ureq::Body>> {
        self.wire
            .send(&Method::GET, url, headers, Payload::Empty, what)
            .map_err(|(e, _)| e)
    }
}

pub struct Client {
    authorizing: authorize::Authorizing,
    opened_ahead: std::sync::atomic::AtomicBool,
    policy: retry::Policy,
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
        let policy = retry::Policy::new(
            connection.retries,
            connection.timeout,
            connection.deadline(),
        );
        let resolver = resolve::Remembering::pinned(&connection.resolve);
        let loopback = repository.is_loopback()
            && !connection.plain_http
            && scheme::resolves_to_loopback_only(&resolver, host);
        let tls = wire::TlsOptions {
            host: host.to_string(),
            ca_file: connection.ca_file.clone(),
            identity: connection.identity.clone(),
            insecure: connection.insecure,
        };
        let wire = wire::Wire::new(tls, resolver, policy.clone(), wire::Peer::Registry)?;
        let scheme = scheme::Scheme::new(
            host,
            connection.plain_http,
            loopback,
            redirect::Redirects { wire },
        );
        // A bad --ca-file, certs.d file or client certificate is an error before any request.
        if loopback {
            scheme.next.wire.check_files()?;
        } else if !connection.plain_http {
            scheme.next.wire.agent(&scheme.base())?;
        }
        let authorizing = authorize::Authorizing {
            auth: auth::Auth::new(credential, scopes),
            scheme,
            registry: repository.registry().to_string(),
        };
        Ok(Client {
            authorizing,
            opened_ahead: std::sync::atomic::AtomicBool::new(false),
            policy,
        })
    }

    /// The absolute URL of a registry path (`/v2/...`) or of a `Location` the registry sent,
    /// which may be relative or absolute.
    pub fn url(&self, path_or_url: &str) -> String {
        url::resolve(&self.authorizing.scheme.base(), path_or_url)
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
            return self.authorizing.send(&method, url, headers, payload, what);
        }
        self.retrying(what, || {
            let response = self
                .authorizing
                .send(&method, url, headers, payload, what)?;
            self.not_transient(response, &method, url, what)
        })
    }

    /// The answer, or a transient status (429, 5xx) as the error the retry policy retries.
    fn not_transient(
        &self,
        mut response: Response<ureq::Body>,
        method: &Method,
        url: &str,
        what: &str,
    ) -> Result<Response<ureq::Body>> {
        if error::is_transient(response.status()) {
            let refusal = Refusal::read(&mut response, method);
            return Err(self.refusal_error(refusal, method, url, what));
        }
        Ok(response)
    }

    /// Opens up to `count` connections to the registry ahead of the requests that will need
    /// them (see [`ahead`]), when it speaks HTTPS; a plain-HTTP connection costs too little.
    pub fn open_ahead(&self, count: usize) {
        // Once per client: for a later destination, the pool holds the first's connections.
        if self
            .opened_ahead
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        if self.authorizing.scheme.base().starts_with("https://") {
            self.authorizing.scheme.next.wire.open_ahead(count);
        }
    }

    /// Sends the run's first request as [`Client::send`] does, except that when the registry
    /// answers it with the challenge that says it wants tokens, the answer is None: the token
    /// is fetched, and the caller asks again beside the requests that follow, instead of
    /// alone first.
    pub fn send_first(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        what: &str,
    ) -> Result<Option<Response<ureq::Body>>> {
        self.retrying(what, || {
            let (response, later) =
                self.authorizing
                    .send_asking(&method, url, headers, Payload::Empty, what, false)?;
            if later {
                return Ok(None);
            }
            self.not_transient(response, &method, url, what).map(Some)
        })
    }

    /// Runs a step (one request, or a whole blob upload) again while it fails transiently,
    /// by the same policy as every request (see [`retry::Policy::retrying`]).
    pub fn retrying<T>(&self, what: &str, step: impl FnMut() -> Result<T>) -> Result<T> {
        self.policy.retrying(what, step)
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

    /// The error for a registry's refusal of a request (to a URL made before the scheme was
    /// settled, shown on the settled one).
    pub fn refusal_error(&self, refusal: Refusal, method: &Method, url: &str, what: &str) -> Error {
        let shown = self.authorizing.scheme.current(url);
        self.authorizing.refusal_at(refusal, method, &shown, what)
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

/// The parsers of what registries and token servers send, for the property tests.
pub mod parsers {
    pub use super::challenge::{parse as challenges, Challenge};
    pub use super::error::parse_retry_after as retry_after;

    /// Takes a token server's answer as a push would.
    pub fn token_answer(answer: &[u8]) -> crate::error::Result<()> {
        super::auth::Auth::new(crate::auth::Credential::anonymous(), &[]).set_token(answer, "realm")
    }
}
