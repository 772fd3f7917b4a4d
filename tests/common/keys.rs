//! Keys and certificates made by the tests with the openssl CLI: a private CA and a server
//! certificate for TLS registries, and the RS256 key that signs registry tokens (JWTs the
//! registry verifies itself). Plus the small encodings they need (base64, base32, RFC 3339).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Encodings

const BASE64_STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn base64_with(bytes: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 with padding (`Basic` credentials, Docker's `auth` field, x5c).
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64_with(bytes.as_ref(), BASE64_STD, true)
}

/// URL-safe base64 without padding (JWT segments).
pub fn b64url(bytes: impl AsRef<[u8]>) -> String {
    base64_with(bytes.as_ref(), BASE64_URL, false)
}

/// Decodes standard or URL-safe base64, padded or not. `None` when it is not base64.
pub fn b64_decode(text: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.trim().trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(v);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
}

/// RFC 4648 base32 without padding.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let mut bits = 0u64;
    let mut count = 0;
    for &b in bytes {
        bits = (bits << 8) | u64::from(b);
        count += 8;
        while count >= 5 {
            count -= 5;
            out.push(ALPHABET[((bits >> count) & 31) as usize] as char);
        }
    }
    if count > 0 {
        out.push(ALPHABET[((bits << (5 - count)) & 31) as usize] as char);
    }
    out
}

/// The value of an `Authorization: Basic ...` header for `user:password`.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", b64(format!("{user}:{password}")))
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// `2026-01-31T12:34:56Z` for a Unix time.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A value that differs between calls and processes (JWT ids, file names).
pub fn unique() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

// ---------------------------------------------------------------------------------------------
// openssl

/// Runs `openssl ARGS` in `dir`, feeding `stdin`; returns stdout, panicking with stderr on failure.
pub fn openssl(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl (apt-get install openssl)");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("openssl stdin");
        pipe.write_all(input).expect("write to openssl");
    }
    let out = child.wait_with_output().expect("openssl output");
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

// ---------------------------------------------------------------------------------------------
// TLS

/// A private CA and a server certificate it signed, valid for `localhost`, `127.0.0.1` and any
/// extra DNS names given. The registry serves `cert`/`key`; clients trust `ca`.
pub struct Tls {
    dir: TempDir,
    /// The CA certificate (PEM): what `--ca-file`, `SSL_CERT_FILE` and curl's `--cacert` take.
    pub ca: PathBuf,
    /// The server certificate (PEM), for `localhost`, `127.0.0.1` and the extra names.
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
}

impl Tls {
    /// A certificate for `localhost` and `127.0.0.1`.
    pub fn localhost() -> Tls {
        Tls::new(&[])
    }

    /// A certificate for `localhost`, `127.0.0.1` and `names` (e.g. `registry.test`, reached
    /// only through the test proxy).
    pub fn new(names: &[&str]) -> Tls {
        let dir = TempDir::new().expect("temp dir");
        let d = dir.path();
        std::fs::write(
            d.join("ca.cnf"),
            "[req]\n\
             distinguished_name = dn\n\
             prompt = no\n\
             x509_extensions = v3_ca\n\
             [dn]\n\
             CN = oci-push test CA\n\
             [v3_ca]\n\
             basicConstraints = critical,CA:TRUE\n\
             keyUsage = critical,keyCertSign,cRLSign\n\
             subjectKeyIdentifier = hash\n",
        )
        .expect("ca.cnf");
        let mut san = String::from("IP:127.0.0.1,DNS:localhost");
        for name in names {
            san.push_str(",DNS:");
            san.push_str(name);
        }
        std::fs::write(
            d.join("leaf.cnf"),
            format!(
                "[req]\n\
                 distinguished_name = dn\n\
                 prompt = no\n\
                 [dn]\n\
                 CN = localhost\n\
                 [v3_leaf]\n\
                 basicConstraints = critical,CA:FALSE\n\
                 keyUsage = critical,digitalSignature,keyEncipherment\n\
                 extendedKeyUsage = serverAuth\n\
                 subjectAltName = {san}\n\
                 subjectKeyIdentifier = hash\n\
                 authorityKeyIdentifier = keyid\n"
            ),
        )
        .expect("leaf.cnf");
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        let mut ca_args = vec!["req", "-x509", "-new", "-nodes"];
        ca_args.extend(ec);
        ca_args.extend([
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "7", "-config", "ca.cnf",
        ]);
        openssl(d, &ca_args, None);
        let mut csr_args = vec!["req", "-new", "-nodes"];
        csr_args.extend(ec);
        csr_args.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-config",
            "leaf.cnf",
        ]);
        openssl(d, &csr_args, None);
        sign_with_ca(d, "server.csr", "leaf.cnf", "v3_leaf", "server.pem");
        Tls {
            ca: d.join("ca.pem"),
            cert: d.join("server.pem"),
            key: d.join("server.key"),
            dir,
        }
    }

    /// Docker's "test an insecure registry" recipe, `openssl req -x509 -newkey ...`: one
    /// self-signed certificate, CA:TRUE by openssl's defaults, for `SAN` (`DNS:localhost,...`).
    /// It is its own CA: `ca` and `cert` are the same file.
    pub fn self_signed(san: &str) -> Tls {
        let dir = TempDir::new().expect("temp dir");
        let d = dir.path();
        let subject_alt = format!("subjectAltName={san}");
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-subj",
                "/CN=localhost",
                "-addext",
                &subject_alt,
            ],
            None,
        );
        let text = openssl(d, &["x509", "-in", "server.pem", "-noout", "-text"], None);
        assert!(
            String::from_utf8_lossy(&text).contains("CA:TRUE"),
            "openssl's recipe no longer makes a CA:TRUE certificate"
        );
        Tls {
            ca: d.join("server.pem"),
            cert: d.join("server.pem"),
            key: d.join("server.key"),
            dir,
        }
    }

    /// A client certificate and its key, signed by this CA, for mutual TLS: (cert, key), in
    /// files named after `name`.
    pub fn client(&self, name: &str) -> (PathBuf, PathBuf) {
        let d = self.dir.path();
        std::fs::write(
            d.join("client.cnf"),
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = oci-push test client\n\
             [v3_client]\nbasicConstraints = critical,CA:FALSE\n\
             keyUsage = critical,digitalSignature\nextendedKeyUsage = clientAuth\n",
        )
        .expect("client.cnf");
        let (cert, key, csr) = (
            format!("{name}.pem"),
            format!("{name}.key"),
            format!("{name}.csr"),
        );
        openssl(
            d,
            &[
                "req",
                "-new",
                "-nodes",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-config",
                "client.cnf",
            ],
            None,
        );
        sign_with_ca(d, &csr, "client.cnf", "v3_client", &cert);
        (d.join(cert), d.join(key))
    }

    /// A directory holding only the CA, named by its subject hash (`<hash>.0`) as
    /// `SSL_CERT_DIR` and `c_rehash` expect.
    pub fn ca_dir(&self) -> PathBuf {
        let dir = self.dir.path().join("ca-dir");
        std::fs::create_dir_all(&dir).expect("ca dir");
        let hash = openssl(
            self.dir.path(),
            &["x509", "-hash", "-noout", "-in", "ca.pem"],
            None,
        );
        let hash = String::from_utf8(hash).expect("hash").trim().to_string();
        std::fs::copy(&self.ca, dir.join(format!("{hash}.0"))).expect("copy ca");
        dir
    }
}

// ---------------------------------------------------------------------------------------------
// Token signing

/// The RS256 key that signs registry tokens, its self-signed certificate (the registry's
/// `rootcertbundle`) and the libtrust key id the JWT header names.
pub struct TokenKeys {
    dir: TempDir,
    pub key: PathBuf,
    pub cert: PathBuf,
    pub kid: String,
}

impl TokenKeys {
    pub fn new(issuer: &str) -> Arc<TokenKeys> {
        let dir = TempDir::new().expect("temp dir");
        let d = dir.path();
        let subject = format!("/CN={issuer}");
        openssl(
            d,
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out",
                "cert.pem", "-days", "7", "-subj", &subject,
            ],
            None,
        );
        let spki = openssl(
            d,
            &["pkey", "-in", "key.pem", "-pubout", "-outform", "DER"],
            None,
        );
        let kid = libtrust_key_id(&spki);
        Arc::new(TokenKeys {
            key: d.join("key.pem"),
            cert: d.join("cert.pem"),
            kid,
            dir,
        })
    }

    /// A signed JWT (`header.claims.signature`) carrying `claims`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": self.kid});
        let input = format!(
            "{}.{}",
            b64url(serde_json::to_vec(&header).expect("json")),
            b64url(serde_json::to_vec(claims).expect("json"))
        );
        let signature = openssl(
            self.dir.path(),
            &["dgst", "-sha256", "-sign", "key.pem"],
            Some(input.as_bytes()),
        );
        format!("{input}.{}", b64url(signature))
    }
}

/// libtrust's key id: SHA-256 of the DER SubjectPublicKeyInfo, its first 240 bits in base32,
/// in groups of four joined by `:`.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    let sum = Sha256::digest(spki_der);
    let encoded = base32(&sum[..30]);
    encoded
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Signs `csr` in `dir` with its `ca.pem`/`ca.key`, the extensions from `section` of
/// `ext_file`, into `out` (7 days, a unique serial).
fn sign_with_ca(dir: &Path, csr: &str, ext_file: &str, section: &str, out: &str) {
    let serial = format!("0x{:016x}", unique());
    let args = [
        "x509",
        "-req",
        "-in",
        csr,
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-set_serial",
        &serial,
        "-days",
        "7",
        "-extfile",
        ext_file,
        "-extensions",
        section,
        "-out",
        out,
    ];
    openssl(dir, &args, None);
}

/// What a token-mode registry is configured with, and what signs its tokens.
#[derive(Clone)]
pub struct TokenConfig {
    /// The token server's URL, e.g. `http://127.0.0.1:PORT/token`.
    pub realm: String,
    pub service: String,
    pub issuer: String,
    pub keys: Arc<TokenKeys>,
}

impl TokenConfig {
    /// A token for `subject` granting `access` (`[{"type","name","actions"}]`), expiring
    /// `lifetime` seconds from now (negative: already expired).
    pub fn mint(&self, subject: &str, access: serde_json::Value, lifetime: i64) -> String {
        let now = unix_now() as i64;
        self.keys.sign(&serde_json::json!({
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + lifetime,
            "nbf": now - 10,
            "iat": now,
            "jti": format!("{:016x}", unique()),
            "access": access,
        }))
    }
}
