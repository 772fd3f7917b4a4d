//! TLS on the wire, with our rustls configuration (see [`super::trust`]): ureq's own TLS
//! connector takes no certificate verifier, so the agents are built from ureq's TCP and
//! CONNECT-proxy connectors and this one.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::{ClientConfig, ClientConnection, StreamOwned};

use super::ahead::{Reuse, Stash};
use rustls_pki_types::ServerName;
use ureq::unversioned::transport::{
    Buffers, ConnectProxyConnector, ConnectionDetails, Connector, Either, LazyBuffers, NextTimeout,
    TcpConnector, Transport, TransportAdapter,
};

/// Which hosts an agent speaks TLS to, and how.
#[derive(Clone, Debug)]
pub enum Scope {
    /// No TLS: the plain-HTTP agent.
    None,
    /// The registry's own `host:port` only: its configuration may hold a client certificate
    /// or verify nothing (`--insecure`), so no other host (an `https://` proxy) gets it.
    Host(String, Arc<ClientConfig>),
    /// Any host.
    Any(Arc<ClientConfig>),
}

/// The connector chain of an agent: a connection opened ahead (`ahead`, for the registry's
/// own origin), or TCP, a CONNECT proxy when the request names one, then TLS as `scope` says.
/// ureq runs the chain for the hop to an `https://` proxy too.
pub fn connector(scope: Scope, ahead: Option<Arc<Stash>>) -> impl Connector<Out = impl Transport> {
    ().chain(Reuse(ahead))
        .chain(ConnectProxyConnector::default())
        .chain(TcpConnector::default())
        .chain(Counted)
        .chain(Handshake::new(scope))
}

/// Counts each TCP connection the chain made (connectors run only for new connections; one
/// that is TLS already was opened ahead, and counted there).
#[derive(Debug)]
struct Counted;

impl<In: Transport> Connector<In> for Counted {
    type Out = In;

    fn connect(
        &self,
        _: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        if chained.as_ref().is_some_and(|t| !t.is_tls()) {
            super::stats::connection();
        }
        Ok(chained)
    }
}

/// The TLS handshake over a new connection, as `scope` allows.
#[derive(Debug)]
pub struct Handshake {
    scope: Scope,
}

impl Handshake {
    pub fn new(scope: Scope) -> Handshake {
        Handshake { scope }
    }
}

impl<In: Transport> Connector<In> for Handshake {
    type Out = Either<In, TlsTransport>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(transport) = chained else {
            return Ok(None);
        };
        if !details.needs_tls() || transport.is_tls() {
            return Ok(Some(Either::A(transport)));
        }
        let authority = details
            .uri
            .authority()
            .map(|a| a.as_str())
            .unwrap_or_default();
        let config =
            match &self.scope {
                Scope::Any(config) => config,
                Scope::Host(host, config)
                    if super::url::same_origin(
                        &format!("https://{authority}"),
                        &format!("https://{host}"),
                    ) =>
                {
                    config
                }
                _ => return Err(ureq::Error::Tls(
                    "no TLS to this host through this connection: give the proxy as an http:// URL",
                )),
            };
        let host = details
            .uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| ureq::Error::Tls("the host is not a valid TLS server name"))?;
        let mut conn = ClientConnection::new(config.clone(), name).map_err(ureq::Error::Rustls)?;
        let mut sock = TransportAdapter::new(transport.boxed(), details.current_time.clone());
        // The handshake shares the connection's budget, which started at `details.now`.
        sock.set_timeout(left_of(details));
        conn.complete_io(&mut sock)?;
        super::stats::round_trip();
        let buffers = LazyBuffers::new(
            details.config.input_buffer_size(),
            details.config.output_buffer_size(),
        );
        Ok(Some(Either::B(TlsTransport {
            buffers,
            stream: StreamOwned { conn, sock },
        })))
    }
}

/// What is left of the connection's timeout, measured from when the connection began.
fn left_of(details: &ConnectionDetails) -> NextTimeout {
    use ureq::unversioned::transport::time::{Duration as Limit, Instant as At};
    let spent = match ((details.current_time)(), details.now) {
        (At::Exact(now), At::Exact(began)) => now.saturating_duration_since(began),
        _ => std::time::Duration::ZERO,
    };
    let mut timeout = details.timeout;
    if let Limit::Exact(limit) = timeout.after {
        timeout.after = Limit::Exact(limit.saturating_sub(spent));
    }
    timeout
}

pub struct TlsTransport {
    buffers: LazyBuffers,
    stream: StreamOwned<ClientConnection, TransportAdapter>,
}

impl std::fmt::Debug for TlsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsTransport")
    }
}

impl Transport for TlsTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let output = &self.buffers.output()[..amount];
        self.stream.write_all(output)?;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.stream.get_mut().set_timeout(timeout);
        let input = self.buffers.input_append_buf();
        let amount = self.stream.read(input)?;
        self.buffers.input_appended(amount);
        Ok(amount > 0)
    }

    fn is_open(&mut self) -> bool {
        self.stream.get_mut().get_mut().is_open()
    }

    fn is_tls(&self) -> bool {
        true
    }
}
