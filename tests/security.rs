//! The promises of docs/security.md (issue 12), each tried as a security reviewer would: with
//! the real registry on loopback, and fakes of ours where it cannot misbehave (a token realm
//! on plain HTTP, a redirecting front, CONNECT proxies, hostile credential helpers, a network
//! that fails half its requests). Every push is read back from the registry with curl.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::faults::{run_bounded, spawn_oci_push, Fault, FaultProxy, Rule, When};
use common::pushing::*;
use common::*;

// ---------------------------------------------------------------------------------------------
// Credentials go to their own origin only

fn tls_token_registry(server: &TokenServer) -> Registry {
    Registry::start_with(RegistryOptions {
        tls: Some(Tls::localhost()),
        htpasswd: None,
        token: Some(server.config()),
        mutual_tls: false,
    })
}

#[test]
fn an_https_registry_s_plain_http_token_realm_gets_no_credentials() {
    let server = TokenServer::start(Policy::default());
    assert!(server.realm().starts_with("http://"), "{}", server.realm());
    let registry = tls_token_registry(&server);
    let (_image, layout) = image(201);
    let repo = registry.repo("realm/app");
    let ca = registry.ca_file().unwrap().display().to_string();
    let run = push_as_alice(&layout, &repo, &["--ca-file", &ca]);
    assert_refused(
        &run,
        &registry,
        "realm/app",
        2,
        &["plain-HTTP token realm", &server.realm(), "--insecure"],
    );
    assert!(
        server.requests().is_empty(),
        "the plain-HTTP realm was asked: {:?}",
        server.requests()
    );
    run.assert_no_secrets(&alice_secrets());
}

#[test]
fn insecure_allows_a_plain_http_token_realm() {
    let server = TokenServer::start(Policy::default());
    let registry = tls_token_registry(&server);
    let (image, layout) = image(202);
    let repo = registry.repo("realm/app");
    let run = push_as_alice(&layout, &repo, &["--insecure"]);
    assert_pushed(&run, &registry, &repo, "realm/app", &image);
    assert!(!server.granted_requests().is_empty());
}

#[test]
fn insecure_allows_a_plain_http_realm_on_the_registry_s_host_only() {
    let server = TokenServer::start(Policy::default());
    let mut config = server.config();
    config.realm = config.realm.replace("127.0.0.1", "localhost");
    let registry = Registry::start_with(RegistryOptions {
        tls: Some(Tls::localhost()),
        htpasswd: None,
        token: Some(config),
        mutual_tls: false,
    });
    let (_image, layout) = image(223);
    let run = push_as_alice(&layout, &registry.repo("realm/app"), &["--insecure"]);
    assert_refused(
        &run,
        &registry,
        "realm/app",
        2,
        &["plain-HTTP token realm", "on the registry's own host only"],
    );
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

/// The port of a `http://127.0.0.1:PORT/...` URL.
fn port_of(url: &str) -> u16 {
    let authority = url.split('/').nth(2).expect("an absolute URL");
    authority
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .expect("a port")
}

#[test]
fn a_refresh_token_is_not_sent_after_a_redirect_to_another_origin() {
    // The realm answers the token POST with a 307 elsewhere: following it would send the
    // body, which holds the identity (refresh) token, to another host.
    let server = TokenServer::start(Policy::default());
    let token_port = port_of(&server.realm());
    let elsewhere = FaultProxy::start_to(token_port, vec![]);
    let moved = Fault::status(307).with_header("Location", &format!("{}/token", elsewhere.url()));
    let front = FaultProxy::start_to(token_port, vec![Rule::every("POST", "/token", moved)]);
    let mut config = server.config();
    config.realm = format!("{}/token", front.url());
    let registry = Registry::start_with(RegistryOptions::token(config));
    let sandbox = Sandbox::new();
    sandbox.home_docker_config(&serde_json::json!({
        "auths": { registry.host(): { "identitytoken": REFRESH_TOKEN } }
    }));
    let (_image, layout) = image(224);
    let run = sandbox.run(
        &push_args(&layout, &registry.repo("rt/app"), &[]),
        &[],
        None,
    );
    assert_refused(
        &run,
        &registry,
        "rt/app",
        2,
        &[&format!(
            "redirected the request to {}/token, another origin; its body holds a credential",
            elsewhere.url()
        )],
    );
    assert_eq!(front.count("POST", "/token"), 1, "{}", front.describe());
    assert!(elsewhere.requests().is_empty(), "{}", elsewhere.describe());
    run.assert_no_secrets(&[REFRESH_TOKEN]);
}

#[test]
fn a_helper_s_headers_do_not_follow_a_redirect_to_another_origin() {
    // The front answers the HEAD of one blob with a 307 to another origin (a second proxy in
    // front of the same registry, as a CDN or storage host would be): the request is followed
    // there, without the Bazel helper's header, which ureq would have carried along.
    let registry = Registry::start();
    let (image, layout) = image(203);
    let storage = FaultProxy::start(&registry, vec![]);
    let blob = &image.config.digest;
    let elsewhere = format!("http://{}/v2/redirected/app/blobs/{blob}", storage.host());
    let redirect = Fault::status(307).with_header("Location", &elsewhere);
    let front = FaultProxy::start(
        &registry,
        vec![Rule::every("HEAD", &format!("/blobs/{blob}"), redirect)],
    );
    let sandbox = Sandbox::new();
    let token = "eng-s3cret-token";
    let (helper, _) = sandbox.bazel_credential_helper(
        "engflow-helper",
        &serde_json::json!({ "x-engflow-auth-token": [token] }),
    );
    let helper = helper.display().to_string();
    let repo = front.repo("redirected/app");
    let run = sandbox.run(
        &push_args(&layout, &repo, &["--credential-helper", &helper]),
        &[],
        None,
    );
    assert_pushed(&run, &registry, &repo, "redirected/app", &image);
    let followed = storage.requests();
    assert!(
        followed.iter().any(|r| r.method == "HEAD"),
        "the redirect was not followed: {}",
        front.describe()
    );
    for request in &followed {
        assert_eq!(
            request.header("x-engflow-auth-token"),
            None,
            "the helper's header went to {}: {} {}",
            storage.host(),
            request.method,
            request.target
        );
    }
    assert!(
        front
            .requests()
            .iter()
            .any(|r| r.header("x-engflow-auth-token") == Some(token)),
        "the registry itself never got the helper's header"
    );
    assert!(run.stderr.contains("redirected to"), "{}", run.stderr);
    run.assert_no_secrets(&[token]);
}

#[test]
fn https_proxy_alone_does_not_carry_a_loopback_push() {
    // With only HTTPS_PROXY set, ureq sent plain HTTP to localhost through it, Basic
    // credentials included. Loopback never goes through a proxy.
    let registry = basic_registry();
    let proxy = ConnectProxy::start(&[]);
    let (image, layout) = image(204);
    let repo = format!("localhost:{}/direct/app", registry.port);
    let run = oci_push_with(
        &push_args(
            &layout,
            &repo,
            &["--username", ALICE_USER, "--password-stdin"],
        ),
        &[("HTTPS_PROXY", &proxy.url()), ("ALL_PROXY", &proxy.url())],
        Some("s3cret\n"),
    );
    assert_pushed(&run, &registry, &repo, "direct/app", &image);
    assert_eq!(proxy.uses(), [], "loopback went through the proxy");
}

#[test]
fn http_urls_take_http_proxy_and_never_https_proxy() {
    // registry.test resolves only in the proxy; HTTPS_PROXY is a dead port. A plain-HTTP
    // push succeeds only through HTTP_PROXY.
    let registry = Registry::start();
    let proxy = ConnectProxy::start(&[("registry.test", "127.0.0.1".parse().unwrap())]);
    let dead = format!("http://127.0.0.1:{}", free_port());
    let (image, layout) = image(205);
    let authority = format!("registry.test:{}", registry.port);
    let repo = format!("{authority}/proxied/app");
    let run = oci_push_with(
        &push_args(&layout, &repo, &["--plain-http"]),
        &[("HTTPS_PROXY", &dead), ("http_proxy", &proxy.url())],
        None,
    );
    assert_pushed(&run, &registry, &repo, "proxied/app", &image);
    assert!(proxy.uses_of(&authority) >= 1, "{:?}", proxy.uses());
}

#[test]
fn a_name_that_starts_with_127_is_not_loopback() {
    // Such a DNS name can resolve anywhere: it gets HTTPS, never the plain-HTTP try (which
    // would carry credentials in clear once the scheme settled).
    let (_image, layout) = image(206);
    let host = format!("127.0.0.1.invalid:{}", free_port());
    let repo = format!("{host}/app");
    let run = oci_push_with(&push_args(&layout, &repo, &["--retries", "0"]), &[], None);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.error().contains(&format!("https://{host}/v2/")),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("http://127"), "{}", run.stderr);
}

// ---------------------------------------------------------------------------------------------
// Upload URLs

#[test]
fn upload_urls_never_show_their_query() {
    // distribution's `_state` (an HMAC'd upload state) stands for S3 signatures and GCS upload
    // ids: in errors, retry lines, --verbose and the JSON, no query of an upload URL appears.
    let registry = Registry::start();
    for (status, retries) in [(503, "1"), (400, "0")] {
        let proxy = FaultProxy::start(
            &registry,
            vec![Rule::every("PUT", "/blobs/uploads/", Fault::status(status))],
        );
        let (_image, layout) = image(207);
        let repo = proxy.repo("upload/app");
        let mut args = push_args(&layout, &repo, &["--retries", retries, "--format", "json"]);
        args.extend(["--jobs", "1"]);
        let run = oci_push_with(&args, &[], None);
        assert_eq!(run.code, 5, "{}", run.stderr);
        let puts = proxy.matching("PUT", "/blobs/uploads/");
        assert!(
            puts.iter().all(|r| r.target.contains("_state=")),
            "the registry's Location has no _state query to hide: {puts:?}"
        );
        assert!(run.error().contains("/blobs/uploads/"), "{}", run.stderr);
        for (name, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
            for secret in ["_state", "digest=sha256"] {
                assert!(!text.contains(secret), "{secret} in {name}:\n{text}");
            }
        }
        let json: serde_json::Value = serde_json::from_str(run.last_line()).expect("JSON");
        assert!(json["error"]["message"].as_str().is_some(), "{json}");
        if retries == "1" {
            assert!(run.stderr.contains("retry: "), "{}", run.stderr);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Credential helpers: bounded, silent about secrets, named not pathed

/// A Docker config whose `credsStore` is `NAME` (so `docker-credential-NAME` runs).
fn with_creds_store(sandbox: &Sandbox, name: &str) {
    sandbox.home_docker_config(&serde_json::json!({ "credsStore": name }));
}

fn alive(pid: &str) -> bool {
    // A zombie has been killed but not reaped; it holds nothing but its entry.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.contains(") Z "))
        .unwrap_or(false)
}

#[test]
fn a_helper_that_answered_is_not_waited_for_by_what_it_left_running() {
    // A helper that answers and exits, leaving a child of its own holding its output open:
    // its answer is taken, not timed out 30 s later.
    let registry = Registry::start();
    let sandbox = Sandbox::new();
    let helper = sandbox.script(
        "forking-helper",
        "#!/bin/sh\ncat >/dev/null\nprintf '%s\\n' '{\"headers\":{\"x-api-key\":[\"k-1\"]}}'\n\
         sleep 20 &\nexit 0\n",
    );
    let (image, layout) = image(222);
    let repo = registry.repo("forking/app");
    let helper = helper.display().to_string();
    let started = Instant::now();
    let run = sandbox.run(
        &push_args(&layout, &repo, &["--credential-helper", &helper]),
        &[],
        None,
    );
    assert_pushed(&run, &registry, &repo, "forking/app", &image);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_hanging_credential_helper_is_stopped_within_timeout() {
    let sandbox = Sandbox::new();
    let pid_file = sandbox.hanging_docker_helper("hang");
    let (_image, layout) = image(208);
    let repo = format!("127.0.0.1:{}/app", free_port());
    let started = Instant::now();
    let run = sandbox.run(
        &push_args(&layout, &repo, &["--timeout", "2s", "--format", "json"]),
        &[],
        None,
    );
    let took = started.elapsed();
    assert_eq!(run.code, 6, "{}", run.stderr);
    assert!(
        run.error().starts_with("docker-credential-hang (from ")
            && run
                .error()
                .contains("gave no answer within --timeout and was stopped"),
        "{}",
        run.stderr
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
    let pid = std::fs::read_to_string(&pid_file).expect("the helper ran");
    assert!(
        !alive(pid.trim()),
        "the helper {} is still running",
        pid.trim()
    );
    let json: serde_json::Value = serde_json::from_str(run.last_line()).expect("JSON");
    assert_eq!(json["error"]["exitCode"], 6, "{json}");
}

#[test]
fn a_signal_to_the_pusher_stops_its_helper_too() {
    // SIGTERM to the pusher alone (a CI runner cancelling the job): the helper it waits for
    // goes with it, instead of running on.
    let sandbox = Sandbox::new();
    let pid_file = sandbox.hanging_docker_helper("hang");
    let (_image, layout) = image(225);
    let repo = format!("127.0.0.1:{}/app", free_port());
    let layout_dir = layout.path().display().to_string();
    let mut pusher = sandbox
        .command(&["--layout", &layout_dir, "-r", &repo], &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start oci-push");
    let deadline = Instant::now() + Duration::from_secs(20);
    let helper = loop {
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            if !pid.trim().is_empty() {
                break pid.trim().to_string();
            }
        }
        assert!(Instant::now() < deadline, "the helper never ran");
        std::thread::sleep(Duration::from_millis(20));
    };
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pusher.id().to_string()])
        .status();
    assert!(signalled.is_ok_and(|s| s.success()), "kill -TERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Ok(Some(status)) = pusher.try_wait() {
            break status;
        }
        assert!(Instant::now() < deadline, "the pusher did not stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(128 + 15), "{status:?}");
    assert!(!alive(&helper), "the helper {helper} outlived the pusher");
}

#[test]
fn an_endless_credential_helper_is_stopped_at_1_mib() {
    // `yes` grew the pusher past 1.8 GB in 6 s: the answer is read to 1 MiB, no further.
    let sandbox = Sandbox::new();
    let helper = sandbox.script("endless", "#!/bin/sh\nexec yes '{\"headers\":{}}'\n");
    let (_image, layout) = image(209);
    let repo = format!("127.0.0.1:{}/app", free_port());
    let helper = helper.display().to_string();
    let run = sandbox.run(
        &push_args(&layout, &repo, &["--credential-helper", &helper]),
        &[],
        None,
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        run.error(),
        format!(
            "credential helper {helper}: it printed more than 1.0 MiB on stdout, far more than \
             an answer; it was stopped"
        )
    );
}

#[test]
fn a_failed_helper_s_stdout_is_never_shown() {
    // A helper that printed its answer and then failed: only its stderr is shown.
    let sandbox = Sandbox::new();
    let secret = "helper-s3cret-42";
    sandbox.script(
        "docker-credential-leaky",
        &format!(
            "#!/bin/sh\ncat >/dev/null\n\
             printf '%s\\n' '{{\"ServerURL\":\"h\",\"Username\":\"u\",\"Secret\":\"{secret}\"}}'\n\
             echo 'keychain locked' >&2\nexit 1\n"
        ),
    );
    with_creds_store(&sandbox, "leaky");
    let (_image, layout) = image(210);
    let repo = format!("127.0.0.1:{}/app", free_port());
    let run = sandbox.run(&push_args(&layout, &repo, &["--format", "json"]), &[], None);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.error()
            .ends_with("it failed (exit status: 1): keychain locked"),
        "{}",
        run.stderr
    );
    run.assert_no_secrets(&[secret]);
}

#[test]
fn a_helper_name_from_a_config_file_cannot_be_a_path() {
    // `x/../payload.sh` in credHelpers would run ./payload.sh from the working directory
    // (under `bazel run`, the user's checkout).
    let sandbox = Sandbox::new();
    let checkout = sandbox.path("checkout");
    std::fs::create_dir_all(checkout.join("docker-credential-x")).unwrap();
    let marker = sandbox.path("payload-ran");
    sandbox.write(
        "checkout/payload.sh",
        format!("#!/bin/sh\ntouch {}\necho '{{}}'\n", marker.display()).as_bytes(),
    );
    make_executable(&checkout.join("payload.sh"));
    let registry = Registry::start();
    sandbox.home_docker_config(&serde_json::json!({
        "credHelpers": { registry.host(): "x/../payload.sh" }
    }));
    let (_image, layout) = image(211);
    let repo = registry.repo("app");
    let run = sandbox.run_from(Some(&checkout), &push_args(&layout, &repo, &[]), &[], None);
    assert_refused(
        &run,
        &registry,
        "app",
        2,
        &["credential helper 'x/../payload.sh' is not a plain name"],
    );
    assert!(!marker.exists(), "the config file ran a program by path");
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

// ---------------------------------------------------------------------------------------------
// --insecure is the registry's own host and port only

/// `openssl s_server` on 127.0.0.1 with a certificate nobody here trusts: a TLS token realm
/// on another origin than the registry. Killed on drop.
struct UntrustedTlsServer {
    child: std::process::Child,
    port: u16,
    _tls: Tls,
}

impl UntrustedTlsServer {
    fn start() -> UntrustedTlsServer {
        let tls = Tls::localhost();
        let port = free_port();
        let child = std::process::Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(&tls.cert)
            .arg("-key")
            .arg(&tls.key)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut child = child;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s_server did not start");
            // Exited: the port was taken meanwhile (the test would then talk to someone else).
            assert!(
                matches!(child.try_wait(), Ok(None)),
                "openssl s_server exited"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        UntrustedTlsServer {
            child,
            port,
            _tls: tls,
        }
    }
}

impl Drop for UntrustedTlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn insecure_does_not_cover_a_token_realm_on_another_origin() {
    let realm = UntrustedTlsServer::start();
    let server = TokenServer::start(Policy::default());
    let mut config = server.config();
    config.realm = format!("https://127.0.0.1:{}/token", realm.port);
    let registry = Registry::start_with(RegistryOptions {
        tls: Some(Tls::localhost()),
        htpasswd: None,
        token: Some(config),
        mutual_tls: false,
    });
    let (_image, layout) = image(212);
    let repo = registry.repo("insecure/app");
    let run = push_as_alice(&layout, &repo, &["--insecure"]);
    assert!(run.stderr.contains("warning: --insecure"), "{}", run.stderr);
    assert_refused(
        &run,
        &registry,
        "insecure/app",
        3,
        &[
            &format!("token server https://127.0.0.1:{}/token", realm.port),
            "certificate is not trusted",
        ],
    );
    run.assert_no_secrets(&alice_secrets());
}

// ---------------------------------------------------------------------------------------------
// Bounded reads

fn offline(args: &[&str], stdin: Option<&str>) -> Run {
    Sandbox::new().run(args, &[], stdin)
}

#[test]
fn files_that_are_not_regular_or_too_large_are_refused() {
    let (_image, layout) = image(213);
    let dir = layout.path().display().to_string();
    let run = offline(
        &["--verify", "--layout", &dir, "--tags-file", "/dev/zero"],
        None,
    );
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert_eq!(
        run.error(),
        "cannot read tags file /dev/zero: not a regular file; give the path of a file"
    );
    let run = offline(
        &[
            "--verify",
            "--layout",
            &dir,
            "--repository-file",
            "/dev/zero",
        ],
        None,
    );
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.error().contains("not a regular file"), "{}", run.stderr);
    // A FIFO nobody writes to: opening it would wait for a writer forever.
    let fifo = layout.path().join("tags.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let fifo = fifo.display().to_string();
    let run = offline(&["--verify", "--layout", &dir, "--tags-file", &fifo], None);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(run.error().contains("not a regular file"), "{}", run.stderr);
    // --ca-file is read before any request.
    let run = offline(
        &[
            "--layout",
            &dir,
            "-r",
            "registry.invalid/app",
            "--ca-file",
            "/dev/zero",
        ],
        None,
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.error(),
        "cannot read --ca-file /dev/zero: not a regular file; give the path of a file"
    );

    // index.json over 16 MiB (valid JSON all the same).
    let (_image, big_index) = image(214);
    let index = big_index.path().join("index.json");
    let mut text = std::fs::read(&index).unwrap();
    text.extend(std::iter::repeat_n(b' ', 17 << 20));
    std::fs::write(&index, text).unwrap();
    let big = big_index.path().display().to_string();
    let run = offline(&["--verify", "--layout", &big], None);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.error().contains("index.json (larger than 16.0 MiB"),
        "{}",
        run.stderr
    );

    // A --repository-file over 64 KiB and a --ca-file over 16 MiB, regular files both.
    let big_name = layout.path().join("repository.txt");
    std::fs::write(&big_name, "r".repeat(65 << 10)).unwrap();
    let big_name = big_name.display().to_string();
    let run = offline(
        &["--verify", "--layout", &dir, "--repository-file", &big_name],
        None,
    );
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.error().contains("larger than 64.0 KiB"),
        "{}",
        run.stderr
    );
    let big_ca = layout.path().join("ca.pem");
    std::fs::write(&big_ca, vec![b'#'; (16 << 20) + 1]).unwrap();
    let big_ca = big_ca.display().to_string();
    let run = offline(
        &[
            "--layout",
            &dir,
            "-r",
            "registry.invalid/app",
            "--ca-file",
            &big_ca,
        ],
        None,
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.error().contains("larger than 16.0 MiB"),
        "{}",
        run.stderr
    );

    // A Docker config over 4 MiB, read before any request.
    let sandbox = Sandbox::new();
    let mut config = b"{\"auths\":{}}".to_vec();
    config.extend(std::iter::repeat_n(b' ', 5 << 20));
    sandbox.write("home/.docker/config.json", &config);
    let repo = format!("127.0.0.1:{}/app", free_port());
    let run = sandbox.run(&["--layout", &dir, "-r", &repo], &[], None);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.error().contains("config.json: larger than 4.0 MiB"),
        "{}",
        run.stderr
    );

    // A password of 100 KiB on stdin.
    let password = "p".repeat(100 << 10);
    let run = offline(
        &[
            "--layout",
            &dir,
            "-r",
            &repo,
            "--username",
            "u",
            "--password-stdin",
        ],
        Some(&password),
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.error(),
        "--password-stdin: cannot read stdin: larger than 64.0 KiB, more than such a file holds"
    );
}

// ---------------------------------------------------------------------------------------------
// Hostile numbers and a layout that changes under the push

#[test]
fn a_blob_that_shrinks_during_the_push_fails_at_once() {
    // The layer's HEAD is held for a while; meanwhile the file is cut to half. Its upload then
    // declares the old size and finds the file short: exit 4 at once, not a hang until
    // --timeout with both sides waiting for the missing bytes.
    let registry = Registry::start();
    let image = Image::sized(Types::Oci, 215, 1, 1 << 20);
    let layout = image_layout(&image);
    let layer = &image.layers[0];
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::first(
            1,
            "HEAD",
            &format!("/blobs/{}", layer.digest),
            Fault::stall(Duration::from_secs(10)),
        )],
    );
    let repo = proxy.repo("shrink/app");
    let running = spawn_oci_push(os_args(
        layout.path(),
        &repo,
        &["-t", "v1", "--timeout", "60s"],
    ));
    assert!(proxy.wait_fired(0, 1, Duration::from_secs(20)), "no HEAD");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(blob_path(layout.path(), layer))
        .unwrap();
    file.set_len(512 << 10).unwrap();
    let (run, took) = running.wait(Duration::from_secs(50));
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.error()
            .contains(&format!("uploading blob {}", layer.digest))
            && run.error().contains(
                "the file changed while uploading (the file ended at byte 524288 of 1048576)"
            ),
        "{}",
        run.stderr
    );
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(registry.tags("shrink/app").is_empty());
}

#[test]
fn a_retry_after_date_past_the_clock_does_not_panic() {
    let registry = Registry::start();
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::first(
            1,
            "HEAD",
            "/manifests/",
            Fault::retry_after(503, "Mon, 01 Jan 300000000000 00:00:00 GMT"),
        )],
    );
    let (image, layout) = image(216);
    let repo = proxy.repo("date/app");
    let run = oci_push_with(&push_args(&layout, &repo, &[]), &[], None);
    assert_pushed(&run, &registry, &repo, "date/app", &image);
    assert!(run.stderr.contains("retry: "), "{}", run.stderr);
}

#[test]
fn a_token_that_never_expires_does_not_panic() {
    // A stub registry that wants a token for everything, and a realm (the same stub) that
    // answers `expires_in: u64::MAX`; the token then does not pass either.
    let stub = FaultProxy::start_to(free_port(), vec![]);
    stub.add(Rule::every(
        "GET",
        "/token",
        Fault::status(200).with_body(r#"{"token":"t","expires_in":18446744073709551615}"#),
    ));
    let challenge = format!(r#"Bearer realm="{}/token",service="s""#, stub.url());
    stub.add(Rule::every(
        "*",
        "/v2/",
        Fault::status(401).with_header("WWW-Authenticate", &challenge),
    ));
    let (_image, layout) = image(217);
    let repo = stub.repo("app");
    let (run, _) = run_bounded(
        os_args(layout.path(), &repo, &["--format", "json"]),
        Duration::from_secs(30),
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let json: serde_json::Value = serde_json::from_str(run.last_line()).expect("JSON");
    assert_eq!(json["error"]["exitCode"], 2, "{json}");
    assert!(stub.count("GET", "/token") >= 1, "{}", stub.describe());
}

// ---------------------------------------------------------------------------------------------
// Retries: a bad network is outlasted, a refusal is not retried

#[test]
fn a_network_that_fails_half_the_requests_does_not_fail_the_push() {
    // Twelve pushes at once, each through its own front that fails about half of all
    // requests (its own seed): resets, bodies cut either way, 5xx, 429 with Retry-After,
    // answers lost after the registry acted, hangs. The default retries must get at least 11
    // of 12 through on the first run (crane: 0 of 12; oci-push with 4 retries: 5 of 12).
    let registry = Registry::start();
    let faults = vec![
        Fault::Reset,
        Fault::drop_body_after(100),
        Fault::Truncate,
        Fault::DropResponse,
        Fault::status(500),
        Fault::status(502),
        Fault::status(503),
        Fault::retry_after(429, "1"),
        Fault::hang(Duration::from_secs(1)),
    ];
    let pushes: Vec<_> = (0..12u64)
        .map(|seed| {
            let rule = Rule::new(
                "*",
                "/v2/",
                When::Chance {
                    percent: 50,
                    seed: seed + 1,
                },
                Fault::OneOf(faults.clone()),
            );
            let proxy = FaultProxy::start(&registry, vec![rule]);
            let image = Image::sized(Types::Oci, 300 + seed, 3, 64 << 10);
            let layout = image_layout(&image);
            let path = format!("chaos/app{seed}");
            // One upload at a time: the requests come in the same order every run, so each
            // seed's coin falls on the same ones. A push slower than --timeout counts as failed.
            let args = ["-t", "v1", "--timeout", "200s", "--jobs", "1"];
            let running = spawn_oci_push(os_args(layout.path(), &proxy.repo(&path), &args));
            (proxy, image, layout, path, running)
        })
        .collect();
    let mut failed = Vec::new();
    let mut faults_fired = 0;
    for (proxy, image, _layout, path, running) in pushes {
        let (run, _) = running.wait(Duration::from_secs(280));
        faults_fired += proxy.fired(0);
        if run.code == 0 {
            registry.assert_manifest(&path, "v1", &image.manifest);
            for blob in image.blobs() {
                registry.assert_blob(&path, blob);
            }
        } else {
            failed.push(format!(
                "{path}: exit {}: {}\n{}",
                run.code,
                run.stderr,
                proxy.describe()
            ));
        }
    }
    assert!(
        faults_fired >= 100,
        "only {faults_fired} faults were injected"
    );
    assert!(
        failed.len() <= 1,
        "{} of 12 failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

#[test]
fn refusals_are_not_retried() {
    let registry = Registry::start();
    for (seed, status, method, path, code) in [
        (218, 403, "PUT", "/manifests/", 2),
        (219, 404, "POST", "/blobs/uploads/", 5),
        (220, 401, "HEAD", "/manifests/", 2),
    ] {
        let proxy = FaultProxy::start(
            &registry,
            vec![Rule::every(method, path, Fault::status(status))],
        );
        let (_image, layout) = image(seed);
        let repo = proxy.repo("refused/app");
        // --plain-http: no loopback probe, so every request is counted once.
        let extra = ["--jobs", "1", "--plain-http"];
        let run = oci_push_with(&push_args(&layout, &repo, &extra), &[], None);
        assert_eq!(run.code, code, "{status}: {}", run.stderr);
        assert_eq!(
            proxy.count(method, path),
            1,
            "{status}: {}",
            proxy.describe()
        );
        assert!(!run.stderr.contains("retry: "), "{}", run.stderr);
    }
}

#[test]
fn huge_answers_are_read_only_as_far_as_their_bound() {
    // An error body of 8 MiB is read to 64 KiB and shown as 200 characters; a token answer of
    // 2 MiB is refused, not parsed.
    let registry = Registry::start();
    let huge = "x".repeat(8 << 20);
    let proxy = FaultProxy::start(
        &registry,
        vec![Rule::every(
            "POST",
            "/blobs/uploads/",
            Fault::status(400).with_body(&huge),
        )],
    );
    let (_image, layout) = image(221);
    let run = oci_push_with(&push_args(&layout, &proxy.repo("huge/app"), &[]), &[], None);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(run.error().len() < 1000, "{}", run.error().len());
    assert!(run.error().ends_with("xxx…"), "{}", run.error());

    let stub = FaultProxy::start_to(free_port(), vec![]);
    let answer = format!(r#"{{"token":"t","pad":"{}"}}"#, "p".repeat(2 << 20));
    stub.add(Rule::every(
        "GET",
        "/token",
        Fault::status(200).with_body(&answer),
    ));
    let challenge = format!(r#"Bearer realm="{}/token",service="s""#, stub.url());
    stub.add(Rule::every(
        "*",
        "/v2/",
        Fault::status(401).with_header("WWW-Authenticate", &challenge),
    ));
    let run = oci_push_with(&push_args(&layout, &stub.repo("app"), &[]), &[], None);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.error().ends_with(&format!(
            "token server {}/token answered more than 1.0 MiB, which is no token",
            stub.url()
        )),
        "{}",
        run.error()
    );
}

#[test]
fn connections_opened_ahead_never_go_around_the_proxy() {
    // registry.test names a TLS registry through HTTPS_PROXY; --resolve sends direct
    // connections to 127.0.0.2, where a listener counts them. Every connection, the uploads'
    // included, must go through the proxy.
    let tls = Tls::new(&["registry.test"]);
    let ca = tls.ca.display().to_string();
    let registry = Registry::start_with(RegistryOptions::tls(tls));
    let direct = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = direct.clone();
    let listener = std::net::TcpListener::bind(("127.0.0.2", registry.port)).expect("127.0.0.2");
    let _direct = servers::Server::start(listener, move |_| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    });
    let proxy = ConnectProxy::start(&[("registry.test", "127.0.0.1".parse().unwrap())]);
    let (image, layout) = image(207);
    let authority = format!("registry.test:{}", registry.port);
    let pin = format!("{authority}:127.0.0.2");
    let repo = format!("{authority}/proxied/app");
    let run = oci_push_with(
        &push_args(&layout, &repo, &["--ca-file", &ca, "--resolve", &pin]),
        &[("HTTPS_PROXY", &proxy.url())],
        None,
    );
    assert_pushed(&run, &registry, &repo, "proxied/app", &image);
    assert!(proxy.uses_of(&authority) >= 1, "{:?}", proxy.uses());
    assert_eq!(direct.load(std::sync::atomic::Ordering::SeqCst), 0);
}
