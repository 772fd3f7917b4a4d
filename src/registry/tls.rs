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
        .chain(CountedTcp(TcpConnector::default()))
        .chain(Handshake::new(scope))
}

/// ureq's TCP connector, counting each connection it makes: only a connector asked with no
/// transport yet makes one (a proxy's tunnel and a connection opened ahead pass through).
#[derive(Debug)]
pub struct CountedTcp(pub TcpConnector);

impl<In: Transport> Connector<In> for CountedTcp {
    type Out = <TcpConnector as Connector<In>>::Out;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let fresh = chained.is_none();
        let connection = self.0.connect(details, chained)?;
        if fresh && connection.is_some() {
            super::stats::connection();
        }
        Ok(connection)
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

impl TlsTransport {
    /// Whether a connection that waited unused (opened ahead) can carry a request. What the
    /// server sent meanwhile goes through TLS first: TLS 1.3 session tickets, which OpenSSL
    /// and nginx send after the handshake (and Go when it asks for a client certificate),
    /// are taken, where ureq's own check would call any unread byte a broken connection. A
    /// close, or data nobody asked for, is not usable. Waits `wait` for bytes at most.
    pub fn usable(&mut self, wait: std::time::Duration) -> bool {
        use ureq::unversioned::transport::time::Duration as Limit;
        let sock = self.stream.get_mut();
        sock.set_timeout(NextTimeout {
            after: Limit::Exact(wait),
            reason: ureq::Timeout::RecvResponse,
            per_read: None,
            per_write: None,
        });
        let StreamOwned { conn, sock } = &mut self.stream;
        match conn.read_tls(sock) {
            Ok(0) => false,
            Ok(_) => conn.process_new_packets().is_ok_and(|state| {
                state.plaintext_bytes_to_read() == 0 && !state.peer_has_closed()
            }),
            // Nothing came (ureq's timeout, wrapped): open, as far as anyone can tell.
            Err(e) => e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<ureq::Error>())
                .is_some_and(|inner| matches!(inner, ureq::Error::Timeout(_))),
        }
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
