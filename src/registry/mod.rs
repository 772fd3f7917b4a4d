/*!
The one HTTP client every request to a registry goes through.

It owns the connection pool (one `ureq::Agent` per process), picks the scheme (plain HTTP for
loopback registries, as docker and crane do; HTTPS with certificate verification elsewhere), and
turns every failure into an [`Error`] of the right kind: connection problems are `Network` or
`Timeout`, error statuses are `Auth` or `Rejected` with the registry's own error code and message.
Authentication and retries belong here too, so the protocol code in `push` never sees them.
*/

mod error;

use std::fs::File;
use std::time::Duration;

use ureq::http::{Method, Request, Response, StatusCode};
use ureq::Agent;

use crate::error::{Error, Kind, Result};
use crate::reference::Repository;

pub use error::Refusal;

/// How to reach a registry, from the command line.
#[derive(Clone, Debug, Default)]
pub struct Connection {
    /// Speak plain HTTP even to a non-loopback registry.
    pub plain_http: bool,
    /// Accept any TLS certificate.
    pub insecure: bool,
}

/// What a request carries.
pub enum Payload<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// A file streamed as the body, with its length known up front.
    File(&'a File, u64),
}

pub struct Client {
    agent: Agent,
    /// `http://host:port` or `https://host:port`, no trailing slash.
    base: String,
}

impl Client {
    pub fn new(repository: &Repository, connection: &Connection) -> Client {
        let scheme = if connection.plain_http || repository.is_loopback() {
            "http"
        } else {
            "https"
        };
        let tls = ureq::tls::TlsConfig::builder()
            .disable_verification(connection.insecure)
            .build();
        let agent: Agent = Agent::config_builder()
            // Error statuses are answers to read (the registry's error body), not failures.
            .http_status_as_error(false)
            .tls_config(tls)
            .user_agent(concat!("oci-push/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(300)))
            // A layer goes out in large writes; the default 128 KiB buffer costs syscalls.
            .output_buffer_size(1 << 20)
            .build()
            .into();
        Client {
            agent,
            base: format!("{scheme}://{}", repository.registry()),
        }
    }

    /// The absolute URL of a registry path (`/v2/...`) or of a `Location` the registry sent,
    /// which may be relative or absolute.
    pub fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.base)
        }
    }

    /// Sends one request. `what` names the step for error messages ("uploading blob sha256:…").
    /// Returns the response whatever its status: callers check it with [`expect`].
    pub fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        payload: Payload,
        what: &str,
    ) -> Result<Response<ureq::Body>> {
        let mut builder = Request::builder().method(method.clone()).uri(url);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let built = |body| {
            builder.body(body).map_err(|e| {
                Error::usage(format!("{what}: cannot build request {method} {url}: {e}"))
            })
        };
        let result = match payload {
            Payload::Empty => self.agent.run(built(())?),
            Payload::Bytes(bytes) => self.agent.run(built(())?.map(|()| bytes)),
            Payload::File(file, len) => {
                let mut request = built(())?.map(|()| file);
                request
                    .headers_mut()
                    .insert("content-length", ureq::http::HeaderValue::from(len));
                self.agent.run(request)
            }
        };
        result.map_err(|e| transport_error(e, &method, url, what))
    }
}

/// Checks that a response has one of the `ok` statuses; otherwise reads the registry's error.
pub fn expect(
    mut response: Response<ureq::Body>,
    ok: &[StatusCode],
    method: &Method,
    url: &str,
    what: &str,
) -> Result<Response<ureq::Body>> {
    if ok.contains(&response.status()) {
        return Ok(response);
    }
    Err(Refusal::read(&mut response, method)
        .into_error(method, url)
        .context(what))
}

fn transport_error(e: ureq::Error, method: &Method, url: &str, what: &str) -> Error {
    let (kind, hint) = match &e {
        ureq::Error::Timeout(_) => (Kind::Timeout, "the registry did not answer in time"),
        ureq::Error::HostNotFound => (Kind::Network, "check the registry host name"),
        ureq::Error::ConnectionFailed => (Kind::Network, "is the registry running and reachable?"),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            (Kind::Network, "is the registry running and reachable?")
        }
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) => (
            Kind::Network,
            "TLS failed; for a registry without TLS use --plain-http, for a self-signed certificate --insecure",
        ),
        _ => (Kind::Network, "the connection to the registry failed"),
    };
    Error::new(kind, format!("{what}: {method} {url} failed: {e} ({hint})"))
}
