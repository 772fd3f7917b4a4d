//! Connections to the registry opened ahead of need.
//!
//! A push's first request goes alone (it learns the registry's challenge, and the token it
//! brings serves every request after it); only then do the uploads start, each on a
//! connection of its own, as ureq speaks HTTP/1.1. Over TLS a new connection is a TCP and a
//! TLS handshake: two round trips at the head of every upload's chain, tens of milliseconds
//! each far from the registry. Opened on other threads while the first request and the token
//! exchange are under way, they are ready when the uploads start. (HTTP/2 clients, crane and
//! oras, get the same from one multiplexed connection.)

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::Resolver;
use ureq::unversioned::transport::time::{Duration as Limit, Instant as At};
use ureq::unversioned::transport::{
    ConnectionDetails, Connector, Either, NextTimeout, TcpConnector,
};

use super::resolve::Remembering;
use super::tls;

/// Connections to one origin (`host:port`, HTTPS), opened and not yet used, with when.
#[derive(Debug)]
pub struct Stash {
    authority: String,
    ready: Mutex<Vec<(Instant, tls::TlsTransport)>>,
}

/// A connection opened ahead and idle longer is not used: a NAT or load balancer may have
/// dropped it without a word (ureq's own pool keeps idle ones 15 s).
const MAX_IDLE: Duration = Duration::from_secs(10);
/// How long the check of a connection opened ahead waits for bytes that may have arrived.
const USABLE_WAIT: Duration = Duration::from_millis(1);

impl Stash {
    pub fn new(authority: &str) -> Arc<Stash> {
        Arc::new(Stash {
            authority: authority.to_string(),
            ready: Mutex::new(Vec::new()),
        })
    }

    /// A connection still open, if one is ready; those the registry closed meanwhile are
    /// dropped. Each is checked outside the lock, so that uploads starting together do not
    /// wait for each other's checks.
    fn take(&self) -> Option<tls::TlsTransport> {
        loop {
            let (opened, mut connection) = self.ready.lock().ok()?.pop()?;
            if opened.elapsed() < MAX_IDLE && connection.usable(USABLE_WAIT) {
                return Some(connection);
            }
        }
    }

    /// Opens `count` connections to the stash's origin on new threads, through the agent's
    /// own TCP and TLS connectors (`scope`), resolving as the agent does. A connection that
    /// fails is no error: the request that would have used it opens its own.
    pub fn open(
        self: &Arc<Stash>,
        count: usize,
        config: &Config,
        resolver: &Remembering,
        scope: &tls::Scope,
    ) {
        let Ok(uri) = format!("https://{}/", self.authority).parse::<Uri>() else {
            return;
        };
        // Once here, so that the threads (and the first request) find it remembered.
        if resolver
            .resolve(&uri, config, connect_timeout(config))
            .is_err()
        {
            return;
        }
        for _ in 0..count {
            let (stash, uri, config) = (self.clone(), uri.clone(), config.clone());
            let (resolver, scope) = (resolver.clone(), scope.clone());
            let spawned = std::thread::Builder::new()
                .name("connect-ahead".to_string())
                .spawn(move || {
                    if let Some(connection) = connect(&uri, &config, &resolver, scope) {
                        if let Ok(mut ready) = stash.ready.lock() {
                            ready.push((Instant::now(), connection));
                        }
                    }
                });
            if spawned.is_err() {
                return;
            }
        }
    }
}

/// One new connection to `uri`'s origin, TLS handshake done.
fn connect(
    uri: &Uri,
    config: &Config,
    resolver: &Remembering,
    scope: tls::Scope,
) -> Option<tls::TlsTransport> {
    let timeout = connect_timeout(config);
    let addrs = resolver.resolve(uri, config, timeout).ok()?;
    let details = ConnectionDetails {
        uri,
        addrs,
        config,
        request_level: false,
        resolver,
        now: At::now(),
        timeout,
        current_time: Arc::new(At::now),
        // Only a CONNECT proxy runs the chain again, and no proxy is in the way here.
        run_connector: Arc::new(|_| Err(ureq::Error::ConnectionFailed)),
        register_shutdown: Arc::new(|_| Ok(())),
    };
    let chain =
        ().chain(tls::CountedTcp(TcpConnector::default()))
            .chain(tls::Handshake::new(scope));
    match chain.connect(&details, None).ok()?? {
        Either::B(tls) => Some(tls),
        Either::A(_) => None,
    }
}

/// The agent's connect timeout, as a connector takes it.
fn connect_timeout(config: &Config) -> NextTimeout {
    NextTimeout {
        after: config
            .timeouts()
            .connect
            .map(Limit::Exact)
            .unwrap_or(Limit::NotHappening),
        reason: ureq::Timeout::Connect,
        per_read: None,
        per_write: None,
    }
}

/// First in an agent's chain: a new connection to the stash's origin that goes through no
/// proxy is taken from the stash when one is ready.
#[derive(Debug)]
pub struct Reuse(pub Option<Arc<Stash>>);

impl Connector<()> for Reuse {
    type Out = tls::TlsTransport;

    fn connect(
        &self,
        details: &ConnectionDetails,
        _: Option<()>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(stash) = &self.0 else {
            return Ok(None);
        };
        let ours = details.needs_tls()
            && details.config.proxy().is_none()
            && details.uri.authority().map(|a| a.as_str()) == Some(stash.authority.as_str());
        Ok(if ours { stash.take() } else { None })
    }
}
