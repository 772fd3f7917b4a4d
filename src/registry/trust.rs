/*!
What TLS trusts, and what the client presents, as self-hosted registries are really set up:

- the system's store (honouring `SSL_CERT_FILE` and `SSL_CERT_DIR`) and `--ca-file`, for every
  `https://` URL; the Mozilla roots on a machine without a store;
- for the registry's own host, the directories docker and podman read,
  `certs.d/HOST[:PORT]/` under `$DOCKER_CONFIG` (`~/.docker`), `$XDG_CONFIG_HOME/docker`
  (rootless docker), `/etc/docker`, `$XDG_CONFIG_HOME/containers` (rootless podman) and
  `/etc/containers`: `*.crt` are CAs, `NAME.cert` with `NAME.key` a client certificate;
- `--cert-file` with `--key-file`: a client certificate for mutual TLS (before any certs.d);
- a trusted certificate that is the server's own certificate is accepted (pinned), even when
  it says CA:TRUE as `openssl req -x509` makes it, with its names and dates still checked:
  webpki refuses a CA as an end entity (`CaUsedAsEndEntity`), curl and docker take it.
*/

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::error::{Error, Result};
use crate::files::read_bounded;

/// A CA bundle or a certificate file: the whole Mozilla set is about 200 KiB.
const MAX_PEM_FILE_BYTES: u64 = 16 << 20;

/// A client certificate chain and its key, for mutual TLS.
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// Where it came from, for messages.
    pub source: String,
}

/// The certificates in a PEM file; `what` names it in errors.
pub fn pem_certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    certificates_in(&read_pem(path, what)?, path, what)
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>> {
    read_bounded(path, MAX_PEM_FILE_BYTES)
        .map_err(|e| Error::usage(format!("cannot read {what} {}: {e}", path.display())))
}

/// The certificates in the PEM text `bytes` of `path`.
fn certificates_in(bytes: &[u8], path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(bytes)
        .filter_map(|c| c.ok())
        .collect();
    if certs.is_empty() {
        return Err(Error::usage(format!(
            "{what} {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// The system's store and `--ca-file`'s certificates: trusted for every `https://` URL.
pub fn roots(ca_file: &[CertificateDer<'static>]) -> Vec<CertificateDer<'static>> {
    let mut roots: Vec<CertificateDer<'static>> = rustls_native_certs::load_native_certs()
        .certs
        .into_iter()
        .collect();
    roots.extend(ca_file.iter().cloned());
    roots
}

/// `--cert-file` with `--key-file`.
pub fn identity(cert_file: &Path, key_file: &Path) -> Result<Identity> {
    let chain = pem_certificates(cert_file, "--cert-file")?;
    let key = pem_key(key_file, "--key-file")?;
    Ok(Identity {
        chain,
        key,
        source: format!("--cert-file {}", cert_file.display()),
    })
}

fn pem_key(path: &Path, what: &str) -> Result<PrivateKeyDer<'static>> {
    key_in(&read_pem(path, what)?, path, what)
}

fn key_in(bytes: &[u8], path: &Path, what: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|_| {
        Error::usage(format!(
            "{what} {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
            path.display()
        ))
    })
}

/// What the docker and podman certificate directories hold for one registry.
#[derive(Default)]
pub struct HostFiles {
    pub cas: Vec<CertificateDer<'static>>,
    pub identity: Option<Identity>,
}

/// The certs.d directories, most specific first, from the environment's variables.
fn certs_d_roots(var: impl Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let home = var("HOME").map(PathBuf::from);
    let config_home = var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".config")));
    let docker_config = var("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| home.as_ref().map(|h| h.join(".docker")));
    let mut dirs: Vec<PathBuf> = Vec::new();
    dirs.extend(docker_config.map(|d| d.join("certs.d")));
    dirs.extend(config_home.as_ref().map(|c| c.join("docker/certs.d")));
    dirs.push(PathBuf::from("/etc/docker/certs.d"));
    dirs.extend(config_home.map(|c| c.join("containers/certs.d")));
    dirs.push(PathBuf::from("/etc/containers/certs.d"));
    dirs
}

/// The CAs and client certificate the certs.d directories hold for `host` (`host[:port]`, as
/// the directory is named): every directory's CAs, and (when `identity`: no `--cert-file`)
/// the first client certificate found. A file this user may not read (a root-only
/// `/etc/docker/certs.d/HOST/client.key`) is passed over with a warning; one that is not what
/// its name says is an error.
pub fn certs_d(host: &str, identity: bool) -> Result<HostFiles> {
    let mut found = HostFiles::default();
    // A host name cannot name a directory elsewhere: `..` or a `/` is no registry host.
    if host.contains(['/', '\\']) || host.contains("..") {
        return Ok(found);
    }
    for root in certs_d_roots(|name| std::env::var(name).ok()) {
        let dir = root.join(host);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        for path in names {
            let what = "certs.d file";
            let wanted = match path.extension().and_then(|e| e.to_str()) {
                Some("crt") => true,
                Some("cert") => identity && found.identity.is_none(),
                _ => false,
            };
            if !wanted {
                continue;
            }
            let Some(bytes) = read_or_skip(&path) else {
                continue;
            };
            if path.extension().is_some_and(|e| e == "crt") {
                found.cas.extend(certificates_in(&bytes, &path, what)?);
                continue;
            }
            let key = path.with_extension("key");
            if std::fs::symlink_metadata(&key).is_err() {
                return Err(Error::usage(format!(
                    "{} has no {} beside it; a client certificate needs its key",
                    path.display(),
                    key.display()
                )));
            }
            if let Some(key_bytes) = read_or_skip(&key) {
                found.identity = Some(Identity {
                    chain: certificates_in(&bytes, &path, what)?,
                    key: key_in(&key_bytes, &key, what)?,
                    source: path.display().to_string(),
                });
            }
        }
    }
    Ok(found)
}

/// A certs.d file's bytes, or None with a warning when this user cannot read it: a root-only
/// key, a link to nothing, a FIFO (refused before it is opened, as the open would block).
fn read_or_skip(path: &Path) -> Option<Vec<u8>> {
    read_bounded(path, MAX_PEM_FILE_BYTES)
        .map_err(|e| log::warn!("warning: skipping {}: {e}", path.display()))
        .ok()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A rustls configuration: verifying against `roots` (pinning those that are server
/// certificates), or with `verify` false verifying nothing; presenting `identity` if given.
pub fn client_config(
    roots: &[CertificateDer<'static>],
    identity: Option<&Identity>,
    verify: bool,
) -> Result<Arc<ClientConfig>> {
    let provider = provider();
    let tls_error = |e: rustls::Error| Error::usage(format!("cannot set up TLS: {e}"));
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(tls_error)?;
    let verifier = Arc::new(match verify {
        true => Verifier::pinning(roots, provider.clone())?,
        false => Verifier::unverified(provider),
    });
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match identity {
        Some(identity) => builder
            .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(|e| {
                Error::usage(format!(
                    "the client certificate from {} cannot be used: {e}",
                    identity.source
                ))
            })?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// webpki's verification, except that a server certificate which is itself one of the trusted
/// certificates is accepted when its names and dates fit; or, without `webpki` (`--insecure`
/// for the registry's own host), any certificate. Either way the handshake's signatures are
/// checked against the certificate presented.
#[derive(Debug)]
struct Verifier {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    pinned: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

impl Verifier {
    fn pinning(
        roots: &[CertificateDer<'static>],
        provider: Arc<CryptoProvider>,
    ) -> Result<Verifier> {
        let mut store = RootCertStore::empty();
        store.add_parsable_certificates(roots.iter().cloned());
        if store.is_empty() {
            // A machine without a trust store (a bare container) still gets the Mozilla roots.
            store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
            .build()
            .map_err(|e| Error::usage(format!("cannot set up TLS verification: {e}")))?;
        Ok(Verifier {
            webpki: Some(webpki),
            pinned: roots.to_vec(),
            provider,
        })
    }

    fn unverified(provider: Arc<CryptoProvider>) -> Verifier {
        Verifier {
            webpki: None,
            pinned: Vec::new(),
            provider,
        }
    }

    /// A pinned certificate still has to name the server and be within its dates.
    fn check_pinned(
        &self,
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> std::result::Result<(), rustls::Error> {
        use rustls::CertificateError::{BadEncoding, Expired, NotValidForName, NotValidYet};
        let invalid = rustls::Error::InvalidCertificate;
        let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|_| invalid(BadEncoding))?;
        cert.verify_is_valid_for_subject_name(server_name)
            .map_err(|_| invalid(NotValidForName))?;
        let (not_before, not_after) =
            crate::registry::x509::validity(end_entity.as_ref()).ok_or(invalid(BadEncoding))?;
        match now.as_secs() {
            t if t < not_before => Err(invalid(NotValidYet)),
            t if t > not_after => Err(invalid(Expired)),
            _ => Ok(()),
        }
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let Some(webpki) = &self.webpki else {
            return Ok(ServerCertVerified::assertion());
        };
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(_)
                if self
                    .pinned
                    .iter()
                    .any(|p| p.as_ref() == end_entity.as_ref()) =>
            {
                self.check_pinned(end_entity, server_name, now)?;
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl req -x509` as Docker's "test an insecure registry" recipe makes it: self-signed,
    /// CA:TRUE, for localhost and 127.0.0.1, valid from 2026-12-01 09:57:24 for a day.
    const SELF_SIGNED: &str = "-----BEGIN CERTIFICATE-----
MIIBmDCCAT+gAwIBAgIUc5u3IdFzpE2M0nljl1wMHmT9Z0YwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MB4XDTI2MTIwMTA5NTcyNFoXDTI2MTIwMjA5
NTcyNFowFDESMBAGA1UEAwwJbG9jYWxob3N0MFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAE/GU2LPkue9VUzCkTxVEPMTX4Q47PuKj/khyyWINf8rhosFSQNMoKI7mO
VJ9XX9GL/EIrGki7VW5aqmCMGvtTsqNvMG0wHQYDVR0OBBYEFOv+De+ltx2oAhYg
cXictMTMsCn/MB8GA1UdIwQYMBaAFOv+De+ltx2oAhYgcXictMTMsCn/MA8GA1Ud
EwEB/wQFMAMBAf8wGgYDVR0RBBMwEYIJbG9jYWxob3N0hwR/AAABMAoGCCqGSM49
BAMCA0cAMEQCIDyhvs9I9vlB+X92dF63sJ+sKzPwLK+N4Ycr1T10hEVTAiAWu5Pb
SfKbAqrKlShcmPkEbH12XA8ybSLdyDE+8bbmgQ==
-----END CERTIFICATE-----";

    #[test]
    fn a_pinned_certificate_still_has_its_names_and_dates_checked() {
        let cert = CertificateDer::from_pem_slice(SELF_SIGNED.as_bytes()).unwrap();
        let pinning = Verifier::pinning(std::slice::from_ref(&cert), provider()).unwrap();
        let at = |secs: u64| UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs));
        let name = |n: &str| ServerName::try_from(n.to_string()).unwrap();
        let noon = at(1_796_126_400);
        let verify = |n: &str, now| {
            pinning
                .verify_server_cert(&cert, &[], &name(n), &[], now)
                .map(|_| ())
        };
        assert_eq!(verify("localhost", noon), Ok(()));
        assert_eq!(verify("127.0.0.1", noon), Ok(()));
        let invalid = |e| Err(rustls::Error::InvalidCertificate(e));
        assert_eq!(
            verify("registry.example", noon),
            invalid(rustls::CertificateError::NotValidForName)
        );
        assert_eq!(
            verify("localhost", at(1_796_000_000)),
            invalid(rustls::CertificateError::NotValidYet)
        );
        assert_eq!(
            verify("localhost", at(1_796_300_000)),
            invalid(rustls::CertificateError::Expired)
        );
        // Not pinned: webpki's own answer (a CA is no end entity).
        let other = Verifier::pinning(&[], provider()).unwrap();
        assert!(other
            .verify_server_cert(&cert, &[], &name("localhost"), &[], noon)
            .is_err());
    }

    #[test]
    fn certs_d_in_the_order_the_engines_read_them() {
        let vars = |name: &str| match name {
            "HOME" => Some("/home/u".to_string()),
            _ => None,
        };
        assert_eq!(
            certs_d_roots(vars),
            [
                "/home/u/.docker/certs.d",
                "/home/u/.config/docker/certs.d",
                "/etc/docker/certs.d",
                "/home/u/.config/containers/certs.d",
                "/etc/containers/certs.d",
            ]
            .map(PathBuf::from)
        );
        let vars = |name: &str| match name {
            "DOCKER_CONFIG" => Some("/cfg/docker".to_string()),
            "XDG_CONFIG_HOME" => Some("/xdg".to_string()),
            _ => None,
        };
        let dirs = certs_d_roots(vars);
        assert_eq!(dirs[0], PathBuf::from("/cfg/docker/certs.d"));
        assert_eq!(dirs[1], PathBuf::from("/xdg/docker/certs.d"));
        assert_eq!(dirs[3], PathBuf::from("/xdg/containers/certs.d"));
    }
}
