//! TLS trust: the system's certificates (honouring `SSL_CERT_FILE` and `SSL_CERT_DIR`), plus a
//! private CA from `--ca-file`; or no verification at all with `--insecure`.

use std::path::Path;
use std::sync::Arc;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::error::{Error, Result};

/// For the agent that sends only `http://` URLs (every `https://` one goes to the agent built
/// with [`config`]): the compiled-in Mozilla roots, which cost nothing to set up.
pub fn without_system_roots(insecure: bool) -> TlsConfig {
    TlsConfig::builder()
        .root_certs(RootCerts::WebPki)
        .disable_verification(insecure)
        .build()
}

/// For every `https://` URL (registry, token realm, blob storage): the system's store,
/// `--ca-file`, or no verification.
pub fn config(ca_file: Option<&Path>, insecure: bool) -> Result<TlsConfig> {
    if insecure {
        return Ok(TlsConfig::builder().disable_verification(true).build());
    }
    let mut roots: Vec<Certificate<'static>> = rustls_native_certs::load_native_certs()
        .certs
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    if let Some(path) = ca_file {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::usage(format!("cannot read --ca-file {}: {e}", path.display())))?;
        let before = roots.len();
        for item in ureq::tls::parse_pem(&bytes) {
            if let Ok(PemItem::Certificate(cert)) = item {
                roots.push(cert);
            }
        }
        if roots.len() == before {
            return Err(Error::usage(format!(
                "--ca-file {} holds no PEM certificate",
                path.display()
            )));
        }
    }
    // A machine without a trust store (a bare container) still gets the Mozilla roots.
    let roots = if roots.is_empty() {
        RootCerts::WebPki
    } else {
        RootCerts::Specific(Arc::new(roots))
    };
    Ok(TlsConfig::builder().root_certs(roots).build())
}
