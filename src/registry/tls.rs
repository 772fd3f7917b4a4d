//! TLS trust: the system's certificates (honouring `SSL_CERT_FILE` and `SSL_CERT_DIR`), plus a
//! private CA from `--ca-file`; or, with `--insecure`, no verification for the registry's own
//! host and port only.

use std::path::Path;
use std::sync::Arc;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::error::{Error, Result};

/// A CA bundle: the whole Mozilla set is about 200 KiB.
const MAX_CA_FILE_BYTES: u64 = 16 << 20;

/// For the agent that sends only `http://` URLs (every `https://` one goes to the agent built
/// with [`config`]): the compiled-in Mozilla roots, which cost nothing to set up.
pub fn without_system_roots() -> TlsConfig {
    TlsConfig::builder().root_certs(RootCerts::WebPki).build()
}

/// For the registry's own host and port under `--insecure`: no verification at all.
pub fn without_verification() -> TlsConfig {
    TlsConfig::builder().disable_verification(true).build()
}

/// For every other `https://` URL (the registry without `--insecure`, a token realm, blob
/// storage): the system's store and `--ca-file`.
pub fn config(ca_file: Option<&Path>) -> Result<TlsConfig> {
    let mut roots: Vec<Certificate<'static>> = rustls_native_certs::load_native_certs()
        .certs
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    if let Some(path) = ca_file {
        let bytes = crate::files::read_bounded(path, MAX_CA_FILE_BYTES)
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
