//! A real Bazel HTTP remote cache: nginx with WebDAV, set up the way Bazel's docs set one up
//! (`GET`/`PUT <cache>/cas/<sha256 hex>` served from and written to a directory), on a free
//! loopback port with everything in a temp dir, and its access log read back to see what a
//! client fetched.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{free_port, sha256};

/// Requests under this prefix are the harness's own (readiness, log barriers): answered 204
/// without authentication, and left out of [`Cache::requests`].
const HARNESS_PREFIX: &str = "/.harness/";

/// One line of the access log: a request as nginx answered it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    pub method: String,
    /// `$uri`: decoded and normalized (`//` merged), without the query.
    pub path: String,
    pub status: u16,
    /// `$body_bytes_sent`: what nginx wrote to the socket, which for a transfer the client
    /// abandoned is more than the client read (the socket buffers' worth).
    pub body_bytes: u64,
    /// The request's `Range` header, or "".
    pub range: String,
    /// The request's `Authorization` header, or "": only for tests that check which
    /// credentials reached the cache.
    pub authorization: String,
}

/// How a cache is set up.
#[derive(Default)]
pub struct CacheOptions {
    /// `auth_basic` with this one user (an htpasswd file of apr1 MD5, which every nginx
    /// checks itself, without relying on the system's crypt(3) for bcrypt).
    pub basic_auth: Option<(String, String)>,
    /// Answer every GET whole, `Range` or not (`max_ranges 0`), as bazel-remote's HTTP does.
    pub ignore_ranges: bool,
}

impl CacheOptions {
    pub fn basic_auth(user: &str, password: &str) -> CacheOptions {
        CacheOptions {
            basic_auth: Some((user.to_string(), password.to_string())),
            ..CacheOptions::default()
        }
    }
}

/// nginx in the foreground, one process (`master_process off`): a kill on drop leaves no
/// orphaned worker holding the port, and one event loop makes the access log barrier of
/// [`Cache::requests`] exact.
pub struct Cache {
    child: Child,
    pub port: u16,
    /// `storage/` (the cache's root, blobs under `storage/cas/`), `nginx.conf`, `access.log`,
    /// `error.log`, `temp/`.
    pub dir: TempDir,
    barriers: AtomicU64,
}

impl Cache {
    /// A plain-HTTP cache without authentication.
    pub fn start() -> Cache {
        Cache::start_with(CacheOptions::default())
    }

    pub fn start_with(options: CacheOptions) -> Cache {
        let nginx = nginx();
        let dir = TempDir::new().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("storage/cas")).expect("cache storage dir");
        std::fs::create_dir_all(dir.path().join("temp")).expect("nginx temp dir");
        if let Some((user, password)) = &options.basic_auth {
            let out = Command::new("htpasswd")
                .args(["-nbm", user, password])
                .output()
                .expect("run htpasswd (apache2-utils; run tools/setup.sh)");
            assert!(
                out.status.success(),
                "htpasswd failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::write(dir.path().join("htpasswd"), &out.stdout).expect("htpasswd file");
        }
        // free_port() releases the port before nginx binds it, so another test may take it in
        // between: nginx then cannot bind it, and another port is tried.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let port = free_port();
            std::fs::write(
                dir.path().join("nginx.conf"),
                config(dir.path(), port, &options),
            )
            .expect("write nginx.conf");
            let _ = std::fs::remove_file(dir.path().join("error.log"));
            let output = std::fs::File::create(dir.path().join("nginx.out")).expect("nginx.out");
            let mut child = Command::new(&nginx)
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(dir.path().join("nginx.conf"))
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .stdin(Stdio::null())
                .stdout(output.try_clone().expect("nginx.out"))
                .stderr(output)
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", nginx.display()));
            match wait_ready(&mut child, port, dir.path()) {
                Ok(()) => {
                    return Cache {
                        child,
                        port,
                        dir,
                        barriers: AtomicU64::new(0),
                    }
                }
                Err(log) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    if !(log.contains("Address already in use") && attempts < 5) {
                        panic!("nginx did not start as a cache; its log:\n{log}");
                    }
                }
            }
        }
    }

    /// `http://127.0.0.1:PORT`, the cache's base URL (blobs under `/cas/`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    fn cas_path(&self, hex: &str) -> PathBuf {
        assert!(
            !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "not a sha256 hex (without `sha256:`): {hex:?}"
        );
        self.storage().join("cas").join(hex)
    }

    /// Stores `bytes` under the blob `hex`, whatever they hash to (a corrupt entry), straight
    /// into the storage.
    pub fn put_as(&self, hex: &str, bytes: &[u8]) {
        std::fs::write(self.cas_path(hex), bytes).expect("write a cached blob");
    }

    /// Stores `bytes` as a cached blob, straight into the storage (no request logged);
    /// returns its sha256 hex.
    pub fn put(&self, bytes: &[u8]) -> String {
        let hex = sha256(bytes)
            .strip_prefix("sha256:")
            .expect("sha256: prefix")
            .to_string();
        self.put_as(&hex, bytes);
        hex
    }

    /// Stores every blob of the OCI layout at `layout_dir` (`blobs/sha256/*`) under its name.
    pub fn put_layout(&self, layout_dir: &Path) {
        let blobs = layout_dir.join("blobs/sha256");
        let entries =
            std::fs::read_dir(&blobs).unwrap_or_else(|e| panic!("read {}: {e}", blobs.display()));
        for entry in entries {
            let entry = entry.expect("layout blob entry");
            let name = entry.file_name().into_string().expect("blob name");
            std::fs::copy(entry.path(), self.cas_path(&name))
                .unwrap_or_else(|e| panic!("copy blob {name} into the cache: {e}"));
        }
    }

    /// Removes a blob, as a cache evicts one: a GET of it answers 404 afterwards.
    pub fn evict(&self, hex: &str) {
        let path = self.cas_path(hex);
        std::fs::remove_file(&path).unwrap_or_else(|e| panic!("evict {}: {e}", path.display()));
    }

    /// Whether the cache holds the blob (put here, or PUT by a client).
    pub fn has(&self, hex: &str) -> bool {
        self.cas_path(hex).is_file()
    }

    /// Every request nginx answered, in order, the harness's own left out.
    ///
    /// nginx logs a request once it has sent the answer, which on a kept-alive connection may
    /// be after the client read it. So this first sends a request of its own on a new
    /// connection and reads its answer to the end (nginx logs before it closes): the one event
    /// loop has by then logged every request whose answer a client finished reading before.
    /// A transfer a client abandoned is logged when nginx notices the close (status 200 or
    /// 206 still, with the bytes it had sent); one still in flight is not logged yet.
    pub fn requests(&self) -> Vec<Access> {
        let marker = format!("barrier/{}", self.barriers.fetch_add(1, Ordering::Relaxed));
        let status = harness_get(self.port, &marker, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("the cache's barrier request: {e}"));
        assert_eq!(status, 204, "the cache's barrier request");
        let all = self.access_log();
        let marker_path = format!("{HARNESS_PREFIX}{marker}");
        assert!(
            all.iter().any(|a| a.path == marker_path),
            "nginx did not log {marker_path} before closing its connection; access log:\n{all:#?}"
        );
        all.into_iter()
            .filter(|a| !a.path.starts_with(HARNESS_PREFIX))
            .collect()
    }

    /// How many GETs of `/cas/<hex>` were answered with content (200 or 206).
    pub fn fetches(&self, hex: &str) -> usize {
        let path = format!("/cas/{hex}");
        self.requests()
            .iter()
            .filter(|a| a.method == "GET" && a.path == path && answered(a))
            .count()
    }

    /// The body bytes of every GET answered with content (200 or 206): what a client fetched,
    /// without the error pages of 401s, 404s and 416s.
    pub fn bytes_sent(&self) -> u64 {
        self.requests()
            .iter()
            .filter(|a| a.method == "GET" && answered(a))
            .map(|a| a.body_bytes)
            .sum()
    }

    /// nginx's error log, which also has a line for every 404 (`open() ... failed`) and 401.
    pub fn error_log(&self) -> String {
        nginx_log(self.dir.path())
    }

    /// The access log as it is now, without a barrier.
    fn access_log(&self) -> Vec<Access> {
        let raw = std::fs::read(self.dir.path().join("access.log")).unwrap_or_default();
        String::from_utf8_lossy(&raw)
            .lines()
            .map(|line| {
                parse_access(line).unwrap_or_else(|| panic!("unexpected access log line: {line:?}"))
            })
            .collect()
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn answered(access: &Access) -> bool {
    access.status == 200 || access.status == 206
}

/// Waits until nginx answers the harness's own path; its log when it exits or never listens.
fn wait_ready(child: &mut Child, port: u16, dir: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("(nginx exited: {status})\n{}", nginx_log(dir)));
        }
        let log = nginx_log(dir);
        // nginx retries a taken port for 2.5 s before it exits; no need to wait for that.
        if log.contains("Address already in use") {
            return Err(log);
        }
        // Whatever took the port first may accept and never answer, hence the short timeout.
        if harness_get(port, "ready", Duration::from_millis(500)) == Ok(204) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("(not listening after 10 s)\n{}", nginx_log(dir)));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn nginx_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        + &std::fs::read_to_string(dir.join("nginx.out")).unwrap_or_default()
}

/// GET `/.harness/<what>` on a connection of its own, read to the end; the status.
fn harness_get(port: u16, what: &str, timeout: Duration) -> Result<u16, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    // One write: pieces would wait out Nagle and delayed ACKs, 40 ms a request.
    let request = format!(
        "GET {HARNESS_PREFIX}{what} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).map_err(|e| e.to_string())?;
    let answer = String::from_utf8_lossy(&answer);
    answer
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP answer: {answer:?}"))
}

/// nginx on PATH, or Debian's /usr/sbin/nginx (not on a non-root user's PATH).
fn nginx() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file());
    let sbin = PathBuf::from("/usr/sbin/nginx");
    on_path
        .or_else(|| sbin.is_file().then_some(sbin))
        .expect("nginx is not installed: run tools/setup.sh (it installs nginx-light)")
}

/// The cache's nginx.conf: tools/lib/cache-nginx.conf (the shell scripts' too), filled in.
fn config(dir: &Path, port: u16, options: &CacheOptions) -> String {
    const TEMPLATE: &str = include_str!("../../tools/lib/cache-nginx.conf");
    let path = |name: &str| dir.join(name).display().to_string();
    // As root, nginx otherwise makes its temp dirs nobody's, and would run a master's workers
    // as nobody, who cannot enter the 0700 temp dir.
    let root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    let mut extra = String::new();
    if options.basic_auth.is_some() {
        extra.push_str(&format!(
            "        auth_basic \"cache\";\n        auth_basic_user_file \"{}\";\n",
            path("htpasswd")
        ));
    }
    if options.ignore_ranges {
        extra.push_str("        max_ranges 0;\n");
    }
    TEMPLATE
        .replace("@USER@", if root { "user root;" } else { "" })
        .replace("@PID@", &path("nginx.pid"))
        .replace("@LOCK@", &path("nginx.lock"))
        .replace("@ERROR_LOG@", &path("error.log"))
        .replace("@TEMP@", &path("temp"))
        .replace("@ACCESS_LOG@", &path("access.log"))
        .replace("@PORT@", &port.to_string())
        .replace("@ROOT@", &path("storage"))
        .replace("@SERVER_EXTRA@\n", &extra)
}

fn parse_access(line: &str) -> Option<Access> {
    let fields: Vec<String> = line.split('\t').map(unescape_json).collect();
    let [method, path, status, body_bytes, range, authorization] =
        <[String; 6]>::try_from(fields).ok()?;
    Some(Access {
        method,
        path,
        status: status.parse().ok()?,
        body_bytes: body_bytes.parse().ok()?,
        range,
        authorization,
    })
}

/// Undoes nginx's `escape=json`: `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f` and `\u00XX`.
fn unescape_json(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(c) => out.push(c),
                    None => panic!("bad \\u escape in the access log: {field:?}"),
                }
            }
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}
