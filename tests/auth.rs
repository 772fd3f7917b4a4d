//! Authentication, TLS, proxies and redirects (issue 4), against real servers on loopback:
//! the distribution registry with TLS, htpasswd or token auth (tokens from a token server of
//! ours whose RS256 JWTs the registry verifies and enforces itself), a CONNECT proxy, and a
//! front that sends blob uploads to another host. Results are read back with curl.
//!
//! `oci-push` always runs in a [`Sandbox`]: its own HOME, XDG_RUNTIME_DIR and PATH, nothing
//! else from this machine's environment.

mod common;

use common::keys::{b64, b64_decode, base32, libtrust_key_id, openssl, rfc3339};
use common::pushing::*;
use common::*;

// ---------------------------------------------------------------------------------------------
// Helpers

/// `--verbose` printed the requests (one line per request: method, URL, status, time).
/// The push as alice succeeded (read back from the registry), was logged request by request,
/// and showed none of alice's secrets.
fn assert_alice_pushed(run: &Run, registry: &Registry, repo: &str, path: &str, image: &Image) {
    assert_pushed(run, registry, repo, path, image);
    assert_verbose(run);
    run.assert_no_secrets(&alice_secrets());
}

fn assert_verbose(run: &Run) {
    assert!(
        run.stderr
            .lines()
            .any(|l| l.contains("PUT") && l.contains("/v2/")),
        "--verbose shows no PUT request:\n{}",
        run.stderr
    );
}

fn tls_basic_registry() -> Registry {
    Registry::start_with(RegistryOptions {
        tls: Some(Tls::localhost()),
        htpasswd: Some((ALICE_USER.to_string(), ALICE_PASSWORD.to_string())),
        token: None,
        mutual_tls: false,
    })
}

fn token_registry(policy: Policy) -> (TokenServer, Registry) {
    let server = TokenServer::start(policy);
    let registry = Registry::start_with(RegistryOptions::token(server.config()));
    (server, registry)
}

/// `{"auths": {HOST: ENTRY}}`
fn auths(host: &str, entry: serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "auths": { host: entry } })
}

fn auth_entry(user: &str, password: &str) -> serde_json::Value {
    serde_json::json!({ "auth": b64(format!("{user}:{password}")) })
}

/// Lines of a helper's log.
fn helper_calls(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// Pushes `image` as `tag` with curl (the independent client), sending `extra` curl arguments
/// (TLS, `Authorization`). Returns the first refusal: status and `WWW-Authenticate`.
fn curl_push(
    base: &str,
    extra: &[String],
    path: &str,
    image: &Image,
    tag: &str,
) -> Result<(), String> {
    let work = tempfile::TempDir::new().unwrap();
    let refusal = |what: &str, answer: &HttpAnswer| {
        format!(
            "{what}: {} {} {}",
            answer.status,
            answer.header("www-authenticate").unwrap_or_default(),
            answer.text()
        )
    };
    for blob in image.blobs() {
        let start = curl_with(
            "POST",
            &format!("{base}/v2/{path}/blobs/uploads/"),
            "*/*",
            extra,
        );
        if start.status != 202 {
            return Err(refusal("upload POST", &start));
        }
        let location = start.header("location").expect("Location");
        let location = if location.starts_with('/') {
            format!("{base}{location}")
        } else {
            location
        };
        let file = work.path().join("blob");
        std::fs::write(&file, &blob.bytes).unwrap();
        // As a client should: credentials only for the registry's own host.
        let mut args = if location.starts_with(&format!("{base}/")) {
            extra.to_vec()
        } else {
            without_credentials(extra)
        };
        args.extend([
            "-H".to_string(),
            "Content-Type: application/octet-stream".to_string(),
            "--data-binary".to_string(),
            format!("@{}", file.display()),
        ]);
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = curl_with(
            "PUT",
            &format!("{location}{sep}digest={}", blob.digest),
            "*/*",
            &args,
        );
        if put.status != 201 {
            return Err(refusal("blob PUT", &put));
        }
    }
    let file = work.path().join("manifest");
    std::fs::write(&file, &image.manifest.bytes).unwrap();
    let mut args = extra.to_vec();
    args.extend([
        "-H".to_string(),
        format!("Content-Type: {}", image.manifest.media_type),
        "--data-binary".to_string(),
        format!("@{}", file.display()),
    ]);
    let put = curl_with(
        "PUT",
        &format!("{base}/v2/{path}/manifests/{tag}"),
        "*/*",
        &args,
    );
    if put.status != 201 {
        return Err(refusal("manifest PUT", &put));
    }
    Ok(())
}

/// curl arguments without `-u USER:PASS` and `-H "Authorization: ..."`.
fn without_credentials(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let credential = args[i] == "-u"
            || (args[i] == "-H"
                && args
                    .get(i + 1)
                    .is_some_and(|h| h.to_ascii_lowercase().starts_with("authorization:")));
        if credential {
            i += 2;
        } else {
            out.push(args[i].clone());
            i += 1;
        }
    }
    out
}

fn bearer(token: &str) -> Vec<String> {
    vec!["-H".to_string(), format!("Authorization: Bearer {token}")]
}

/// GET the token server with curl; returns (status, JSON body).
fn curl_token(url: &str, extra: &[String]) -> (u16, serde_json::Value) {
    let answer = curl_with("GET", url, "application/json", extra);
    let body = serde_json::from_slice(&answer.body).unwrap_or(serde_json::Value::Null);
    (answer.status, body)
}

// ---------------------------------------------------------------------------------------------
// The test servers themselves, checked with curl (these pass whatever oci-push does)

#[test]
fn infra_encodings_and_key_ids() {
    assert_eq!(b64("alice:s3cret"), "YWxpY2U6czNjcmV0");
    assert_eq!(b64("a"), "YQ==");
    assert_eq!(b64_decode("YWxpY2U6czNjcmV0").unwrap(), b"alice:s3cret");
    assert_eq!(b64_decode("YQ").unwrap(), b"a");
    assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
    // The key id, as the documented shell pipeline computes it.
    let keys = common::keys::TokenKeys::new("kid-check");
    let dir = keys.key.parent().unwrap();
    let spki = openssl(
        dir,
        &["pkey", "-in", "key.pem", "-pubout", "-outform", "DER"],
        None,
    );
    let kid = libtrust_key_id(&spki);
    assert_eq!(kid.len(), 48 + 11);
    let shell = std::process::Command::new("sh")
        .arg("-c")
        .arg("openssl x509 -in cert.pem -pubkey -noout | openssl pkey -pubin -outform DER | openssl dgst -sha256 -binary | head -c 30 | base32 | tr -d = | fold -w4 | paste -sd:")
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        shell.status.success(),
        "{}",
        String::from_utf8_lossy(&shell.stderr)
    );
    let shell_kid = String::from_utf8_lossy(&shell.stdout).trim().to_string();
    assert_eq!(shell_kid, kid);
    // The key id the tokens' headers carry, against the pipeline (from the certificate).
    assert_eq!(keys.kid, shell_kid);
}

#[test]
fn infra_tls_registry_serves_https_with_its_ca_only() {
    let registry = Registry::start_with(RegistryOptions::tls(Tls::localhost()));
    let ca = registry.ca_file().unwrap().display().to_string();
    for host in [registry.host(), format!("localhost:{}", registry.port)] {
        let answer = curl_with(
            "GET",
            &format!("https://{host}/v2/"),
            "*/*",
            &["--cacert".to_string(), ca.clone()],
        );
        assert_eq!(answer.status, 200, "{}", answer.text());
    }
    let untrusted = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .arg(format!("https://{}/v2/", registry.host()))
        .output()
        .unwrap();
    assert_eq!(
        untrusted.status.code(),
        Some(60),
        "curl: certificate not trusted"
    );
    // The Registry helpers read it back over HTTPS.
    let (image, _layout) = image(1);
    curl_push(
        &registry.base_url(),
        &registry.admin_curl_args("/v2/"),
        "infra/tls",
        &image,
        "v1",
    )
    .unwrap();
    registry.assert_manifest("infra/tls", "v1", &image.manifest);
    assert_eq!(registry.tags("infra/tls"), ["v1"]);
}

#[test]
fn infra_htpasswd_registry_wants_basic_credentials() {
    let registry = basic_registry();
    let url = format!("{}/v2/", registry.base_url());
    let anonymous = curl("GET", &url, "*/*");
    assert_eq!(anonymous.status, 401);
    assert_eq!(
        anonymous.header("www-authenticate").as_deref(),
        Some("Basic realm=\"test-realm\"")
    );
    let wrong = curl_with("GET", &url, "*/*", &["-u".into(), "alice:wrong".into()]);
    assert_eq!(wrong.status, 401);
    let right = curl_with("GET", &url, "*/*", &["-u".into(), "alice:s3cret".into()]);
    assert_eq!(right.status, 200);
    let (image, _layout) = image(2);
    curl_push(
        &registry.base_url(),
        &registry.admin_curl_args("/v2/"),
        "infra/basic",
        &image,
        "v1",
    )
    .unwrap();
    registry.assert_manifest("infra/basic", "v1", &image.manifest);
    for blob in image.blobs() {
        registry.assert_blob("infra/basic", blob);
    }
}

#[test]
fn infra_token_server_issues_tokens_the_registry_enforces() {
    let (server, registry) = token_registry(Policy::default());
    let base = registry.base_url();
    let realm = server.realm();

    // The challenge names our realm and service.
    let challenge = curl("GET", &format!("{base}/v2/"), "*/*");
    assert_eq!(challenge.status, 401);
    assert_eq!(
        challenge.header("www-authenticate").unwrap(),
        format!("Bearer realm=\"{realm}\",service=\"test-registry\"")
    );

    // alice: pull and push; her token pushes an image.
    let scope = "scope=repository:infra/app:pull,push";
    let url = format!("{realm}?service=test-registry&{scope}");
    let (status, body) = curl_token(&url, &["-u".into(), "alice:s3cret".into()]);
    assert_eq!(status, 200, "{body}");
    for field in ["token", "access_token", "expires_in", "issued_at"] {
        assert!(!body[field].is_null(), "{field} in {body}");
    }
    let alice = body["token"].as_str().unwrap().to_string();
    assert_eq!(body["access_token"], body["token"]);
    let image = image(3).0;
    curl_push(&base, &bearer(&alice), "infra/app", &image, "v1").unwrap();
    registry.assert_manifest("infra/app", "v1", &image.manifest);

    // Another repository's token does not do.
    let other = server.mint(
        "alice",
        serde_json::json!([{"type": "repository", "name": "other", "actions": ["pull", "push"]}]),
        300,
    );
    let err = curl_push(&base, &bearer(&other), "infra/app", &image, "v2").unwrap_err();
    assert!(err.contains("insufficient_scope"), "{err}");

    // Anonymous: pull only.
    let (status, body) = curl_token(&url, &[]);
    assert_eq!(status, 200);
    let anonymous = body["token"].as_str().unwrap().to_string();
    let pulled = curl_with(
        "GET",
        &format!("{base}/v2/infra/app/manifests/v1"),
        ACCEPT_ALL,
        &bearer(&anonymous),
    );
    assert_eq!(pulled.status, 200);
    let err = curl_push(&base, &bearer(&anonymous), "infra/app", &image, "v2").unwrap_err();
    assert!(
        err.contains("401") && err.contains("insufficient_scope"),
        "{err}"
    );

    // bob: pull only, too; a wrong password gets no token.
    let (status, _) = curl_token(&url, &["-u".into(), "bob:hunter2".into()]);
    assert_eq!(status, 200);
    let (status, _) = curl_token(&url, &["-u".into(), "alice:wrong".into()]);
    assert_eq!(status, 401);

    // An expired token (past the 60 s leeway) is refused as invalid.
    let expired = server.mint(
        "alice",
        serde_json::json!([{"type": "repository", "name": "infra/app", "actions": ["pull"]}]),
        -120,
    );
    let refused = curl_with(
        "GET",
        &format!("{base}/v2/infra/app/manifests/v1"),
        ACCEPT_ALL,
        &bearer(&expired),
    );
    assert_eq!(refused.status, 401);
    assert!(refused
        .header("www-authenticate")
        .unwrap()
        .contains("error=\"invalid_token\""));

    // The identity-token flow: POST grant_type=refresh_token.
    let form = "grant_type=refresh_token&refresh_token=rt-123&service=test-registry&scope=repository%3Ainfra%2Fapp%3Apull%2Cpush&client_id=curl";
    let posted = curl_with(
        "POST",
        &realm,
        "application/json",
        &["--data".into(), form.into()],
    );
    assert_eq!(posted.status, 200, "{}", posted.text());
    let body: serde_json::Value = serde_json::from_slice(&posted.body).unwrap();
    assert_eq!(body["refresh_token"], "rt-123");
    let refreshed = body["token"].as_str().unwrap().to_string();
    curl_push(&base, &bearer(&refreshed), "infra/app", &image, "v3").unwrap();
    let bad = curl_with(
        "POST",
        &realm,
        "application/json",
        &["--data".into(), form.replace("rt-123", "rt-999")],
    );
    assert_eq!(bad.status, 401);
    assert_eq!(registry.tags("infra/app"), ["v1", "v3"]);

    // What the server recorded.
    let requests = server.requests();
    assert_eq!(requests.len(), 6);
    assert_eq!(requests[0].authorization.as_deref(), Some("Basic"));
    assert_eq!(requests[0].user.as_deref(), Some("alice"));
    assert_eq!(requests[0].scopes, ["repository:infra/app:pull,push"]);
    assert_eq!(
        requests[0].granted,
        [(
            "infra/app".to_string(),
            vec!["pull".to_string(), "push".to_string()]
        )]
    );
    assert_eq!(requests[1].authorization, None);
    assert_eq!(
        requests[1].granted,
        [("infra/app".to_string(), vec!["pull".to_string()])]
    );
    assert_eq!(requests[3].status, 401);
    assert_eq!(requests[4].grant_type.as_deref(), Some("refresh_token"));
    assert_eq!(requests[4].user.as_deref(), Some("alice"));
    assert!(server.secrets().contains(&alice));
}

#[test]
fn infra_token_server_can_issue_expired_tokens_first() {
    let (server, registry) = token_registry(Policy {
        expired_first: 1,
        ..Policy::default()
    });
    let url = format!(
        "{}?service=test-registry&scope=repository:infra/exp:pull,push",
        server.realm()
    );
    let image = image(4).0;
    let tokens: Vec<String> = (0..2)
        .map(|_| {
            let (status, body) = curl_token(&url, &["-u".into(), "alice:s3cret".into()]);
            assert_eq!(status, 200);
            assert_eq!(body["expires_in"], 300);
            body["token"].as_str().unwrap().to_string()
        })
        .collect();
    let err = curl_push(
        &registry.base_url(),
        &bearer(&tokens[0]),
        "infra/exp",
        &image,
        "v1",
    )
    .unwrap_err();
    assert!(err.contains("invalid_token"), "{err}");
    curl_push(
        &registry.base_url(),
        &bearer(&tokens[1]),
        "infra/exp",
        &image,
        "v1",
    )
    .unwrap();
    let requests = server.requests();
    assert!(requests[0].expired && !requests[1].expired);
    registry.assert_manifest("infra/exp", "v1", &image.manifest);
}

#[test]
fn infra_connect_proxy_tunnels_to_loopback_names_only() {
    let registry = Registry::start_with(RegistryOptions::tls(Tls::new(&["registry.test"])));
    let proxy = ConnectProxy::start(&[("registry.test", "127.0.0.1".parse().unwrap())]);
    let ca = registry.ca_file().unwrap().display().to_string();
    let target = format!("registry.test:{}", registry.port);
    // registry.test only resolves through the proxy.
    let answer = curl_with(
        "GET",
        &format!("https://{target}/v2/"),
        "*/*",
        &["--cacert".into(), ca.clone(), "--proxy".into(), proxy.url()],
    );
    assert_eq!(answer.status, 200);
    let direct = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20", "--noproxy", "*", "--cacert", &ca])
        .arg(format!("https://{target}/v2/"))
        .output()
        .unwrap();
    assert_eq!(
        direct.status.code(),
        Some(6),
        "registry.test must not resolve"
    );
    // Plain HTTP through a tunnel (-p), as ureq does it, and through forwarding.
    let plain = Registry::start();
    let plain_target = format!("registry.test:{}", plain.port);
    for tunnel in [true, false] {
        let mut args = vec!["--proxy".to_string(), proxy.url()];
        if tunnel {
            args.push("-p".into());
        }
        let answer = curl_with("GET", &format!("http://{plain_target}/v2/"), "*/*", &args);
        assert_eq!(answer.status, 200);
    }
    assert_eq!(
        proxy.uses(),
        [
            ProxyUse::Connect(target.clone()),
            ProxyUse::Connect(plain_target.clone()),
            ProxyUse::Forward(plain_target.clone()),
        ]
    );
    assert_eq!(proxy.uses_of(&plain_target), 2);
    // Anything but loopback is refused.
    let refused = curl_with(
        "GET",
        "http://example.com/",
        "*/*",
        &["--proxy".into(), proxy.url()],
    );
    assert_eq!(refused.status, 502);
}

#[test]
fn infra_redirect_front_moves_uploads_to_another_host() {
    let registry = basic_registry();
    let front = RedirectFront::start(&registry);
    let base = format!("http://{}", front.host());
    let alice = vec!["-u".to_string(), "alice:s3cret".to_string()];
    let image = image(5).0;
    // curl_push sends no credentials to another host: the storage host adds its own.
    curl_push(&base, &alice, "infra/redirect", &image, "v1").unwrap();
    registry.assert_manifest("infra/redirect", "v1", &image.manifest);
    for blob in image.blobs() {
        registry.assert_blob("infra/redirect", blob);
    }
    let storage = front.seen_on(Side::Storage);
    assert_eq!(storage.len(), 5, "{storage:?}");
    assert!(storage.iter().all(|s| s.method == "PUT" && s.status == 201));
    assert!(storage.iter().all(|s| s.header("authorization").is_none()));
    assert!(storage
        .iter()
        .all(|s| s.header("host") == Some(front.storage_host().as_str())));
    let uploads: Vec<Seen> = front
        .seen_on(Side::Front)
        .into_iter()
        .filter(|s| s.method == "POST")
        .collect();
    assert_eq!(uploads.len(), 5);
    assert!(uploads.iter().all(|s| s.header("authorization").is_some()));
    // A TLS client hello is refused at once (clients trying HTTPS first fail fast).
    let tls = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "-k"])
        .arg(format!("https://{}/v2/", front.host()))
        .output()
        .unwrap();
    assert_eq!(tls.status.code(), Some(35), "TLS handshake error");
}

#[test]
fn infra_sandbox_runs_credential_helpers() {
    let sandbox = Sandbox::new();
    let log = sandbox.docker_credential_helper("test", &[("127.0.0.1:5000", "alice", "s3cret")]);
    let run = |input: &str| {
        let out = std::process::Command::new(sandbox.bin().join("docker-credential-test"))
            .arg("get")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(input.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = run("127.0.0.1:5000");
    assert_eq!(code, Some(0));
    let value: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        value,
        serde_json::json!({"ServerURL": "127.0.0.1:5000", "Username": "alice", "Secret": "s3cret"})
    );
    let (code, out) = run("127.0.0.1:5001");
    assert_eq!(code, Some(1));
    assert!(out.contains("credentials not found"));
    assert_eq!(
        helper_calls(&log),
        ["get\t127.0.0.1:5000", "get\t127.0.0.1:5001"]
    );

    let (helper, log) = sandbox.bazel_credential_helper(
        "bazel-helper",
        &serde_json::json!({"Authorization": [basic_auth("alice", "s3cret")]}),
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo '{{\"uri\":\"https://x/v2/\"}}' | {} get",
            helper.display()
        ))
        .output()
        .unwrap();
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        value["headers"]["Authorization"][0],
        "Basic YWxpY2U6czNjcmV0"
    );
    assert_eq!(helper_calls(&log), ["get\t{\"uri\":\"https://x/v2/\"}"]);
}

// ---------------------------------------------------------------------------------------------
// TLS

#[test]
fn tls_registry_with_ca_file() {
    let registry = Registry::start_with(RegistryOptions::tls(Tls::localhost()));
    let (image, layout) = image(10);
    let repo = registry.repo("tls/app");
    let ca = registry.ca_file().unwrap().display().to_string();
    let run = oci_push_with(&push_args(&layout, &repo, &["--ca-file", &ca]), &[], None);
    assert_pushed(&run, &registry, &repo, "tls/app", &image);
    assert!(!run.stderr.contains("--insecure"), "{}", run.stderr);
}

#[test]
fn tls_registry_down_at_the_first_request_is_found_over_https_once_up() {
    // Nothing answers plain HTTP or HTTPS at first: the scheme stays open, and the retries ask
    // both again instead of settling on plain HTTP (which a TLS registry would refuse).
    let mut registry = Registry::start_with(RegistryOptions::tls(Tls::localhost()));
    registry.stop();
    let (image, layout) = image(13);
    let repo = registry.repo("tls/app");
    let ca = registry.ca_file().unwrap().display().to_string();
    let args = push_args(&layout, &repo, &["--ca-file", &ca, "--retries", "6"]);
    let running = faults::spawn_oci_push(&args);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    registry.start_again();
    let (run, _) = running.wait(std::time::Duration::from_secs(60));
    assert_pushed(&run, &registry, &repo, "tls/app", &image);
    assert!(
        run.stderr.contains(&format!(
            "HEAD https://{}/v2/tls/app/manifests/",
            registry.host()
        )),
        "{}",
        run.stderr
    );
}

#[test]
fn tls_registry_named_localhost_with_ca_file() {
    let registry = Registry::start_with(RegistryOptions::tls(Tls::localhost()));
    let (image, layout) = image(11);
    let repo = format!("localhost:{}/tls/app", registry.port);
    let ca = registry.ca_file().unwrap().display().to_string();
    let run = oci_push_with(&push_args(&layout, &repo, &["--ca-file", &ca]), &[], None);
    assert_pushed(&run, &registry, &repo, "tls/app", &image);
}

#[test]
fn tls_registry_without_ca_file_fails_with_exit_3() {
    let registry = Registry::start_with(RegistryOptions::tls(Tls::localhost()));
    let (_image, layout) = image(12);
    let repo = registry.repo("tls/app");
    let run = oci_push_with(&push_args(&layout, &repo, &[]), &[], None);
    assert_refused(
        &run,
        &registry,
        "tls/app",
        3,
        &[&registry.host(), "--ca-file"],
    );
}

#[test]
fn tls_registry_with_insecure_warns() {
    let registry = Registry::start_with(RegistryOptions::tls(Tls::localhost()));
    let (image, layout) = image(13);
    let repo = registry.repo("tls/app");
    let run = oci_push_with(&push_args(&layout, &repo, &["--insecure"]), &[], None);
    assert_pushed(&run, &registry, &repo, "tls/app", &image);
    assert!(
        run.stderr
            .lines()
            .any(|l| l.contains("--insecure") && !l.starts_with("oci-push: error")),
        "no --insecure warning:\n{}",
        run.stderr
    );
}

#[test]
fn tls_registry_trusted_through_ssl_cert_file() {
    let registry = Registry::start_with(RegistryOptions::tls(Tls::localhost()));
    let (image, layout) = image(14);
    let repo = registry.repo("tls/app");
    let ca = registry.ca_file().unwrap().display().to_string();
    let run = oci_push_with(
        &push_args(&layout, &repo, &[]),
        &[("SSL_CERT_FILE", &ca)],
        None,
    );
    assert_pushed(&run, &registry, &repo, "tls/app", &image);
}

#[test]
fn tls_registry_trusted_through_ssl_cert_dir() {
    let registry = Registry::start_with(RegistryOptions::tls(Tls::localhost()));
    let (image, layout) = image(15);
    let repo = registry.repo("tls/app");
    let dir = registry.tls().unwrap().ca_dir().display().to_string();
    let run = oci_push_with(
        &push_args(&layout, &repo, &[]),
        &[("SSL_CERT_DIR", &dir)],
        None,
    );
    assert_pushed(&run, &registry, &repo, "tls/app", &image);
}

#[test]
fn tls_and_basic_auth_together() {
    let registry = tls_basic_registry();
    let (image, layout) = image(16);
    let repo = registry.repo("tls/basic");
    let ca = registry.ca_file().unwrap().display().to_string();
    let run = push_as_alice(&layout, &repo, &["--ca-file", &ca]);
    assert_alice_pushed(&run, &registry, &repo, "tls/basic", &image);
}

// ---------------------------------------------------------------------------------------------
// Basic auth (htpasswd): every credential source

#[test]
fn basic_username_and_password_stdin() {
    let registry = basic_registry();
    let (image, layout) = image(20);
    let repo = registry.repo("basic/app");
    // The trailing newline of `echo` is not part of the password.
    let run = oci_push_with(
        &push_args(
            &layout,
            &repo,
            &["--username", ALICE_USER, "--password-stdin"],
        ),
        &[],
        Some("s3cret\n"),
    );
    assert_alice_pushed(&run, &registry, &repo, "basic/app", &image);
}

#[test]
fn basic_environment_variables() {
    let registry = basic_registry();
    let (image, layout) = image(21);
    let repo = registry.repo("basic/app");
    let run = oci_push_with(
        &push_args(&layout, &repo, &[]),
        &[
            ("OCI_PUSH_USERNAME", ALICE_USER),
            ("OCI_PUSH_PASSWORD", ALICE_PASSWORD),
        ],
        None,
    );
    assert_alice_pushed(&run, &registry, &repo, "basic/app", &image);
}

#[test]
fn basic_docker_config_auth_in_docker_config_dir() {
    let registry = basic_registry();
    let (image, layout) = image(22);
    let repo = registry.repo("basic/app");
    let sandbox = Sandbox::new();
    let (dir, _file) = sandbox.docker_config_dir(&auths(
        &registry.host(),
        auth_entry(ALICE_USER, ALICE_PASSWORD),
    ));
    let run = sandbox.run(
        &push_args(&layout, &repo, &[]),
        &[("DOCKER_CONFIG", dir.to_str().unwrap())],
        None,
    );
    assert_alice_pushed(&run, &registry, &repo, "basic/app", &image);
}

#[test]
fn basic_docker_config_username_and_password_in_home() {
    let registry = basic_registry();
    let (image, layout) = image(23);
    let repo = registry.repo("basic/app");
    let sandbox = Sandbox::new();
    sandbox.home_docker_config(&auths(
        &registry.host(),
        serde_json::json!({"username": ALICE_USER, "password": ALICE_PASSWORD}),
    ));
    let run = sandbox.run(&push_args(&layout, &repo, &[]), &[], None);
    assert_alice_pushed(&run, &registry, &repo, "basic/app", &image);
}

#[test]
fn basic_docker_config_cred_helpers() {
    let registry = basic_registry();
    let (image, layout) = image(24);
    let repo = registry.repo("basic/app");
    let sandbox = Sandbox::new();
    let log =
        sandbox.docker_credential_helper("test", &[(&registry.host(), ALICE_USER, ALICE_PASSWORD)]);
    sandbox.home_docker_config(&serde_json::json!({
        "credHelpers": { registry.host(): "test" },
    }));
    let run = sandbox.run(&push_args(&layout, &repo, &[]), &[], None);
    assert_pushed(&run, &registry, &repo, "basic/app", &image);
    // Called as docker does: `get`, the server on stdin; once per process.
    assert_eq!(helper_calls(&log), [format!("get\t{}", registry.host())]);
    assert_verbose(&run);
    run.assert_no_secrets(&alice_secrets());
}

#[test]
fn basic_docker_config_creds_store() {
    let registry = basic_registry();
    let (image, layout) = image(25);
    let repo = registry.repo("basic/app");
    let sandbox = Sandbox::new();
    let log =
        sandbox.docker_credential_helper("test", &[(&registry.host(), ALICE_USER, ALICE_PASSWORD)]);
    sandbox.home_docker_config(&serde_json::json!({
        "auths": { registry.host(): {} },
        "credsStore": "test",
    }));
    let run = sandbox.run(&push_args(&layout, &repo, &[]), &[], None);
    assert_pushed(&run, &registry, &repo, "basic/app", &image);
    assert_eq!(helper_calls(&log), [format!("get\t{}", registry.host())]);
    assert_verbose(&run);
    run.assert_no_secrets(&alice_secrets());
}

#[test]
fn basic_podman_registry_auth_file() {
    let registry = basic_registry();
    let (image, layout) = image(26);
    let repo = registry.repo("basic/app");
    let sandbox = Sandbox::new();
    let file = sandbox.write_json(
        "podman/auth.json",
        &auths(&registry.host(), auth_entry(ALICE_USER, ALICE_PASSWORD)),
    );
    let run = sandbox.run(
        &push_args(&layout, &repo, &[]),
        &[("REGISTRY_AUTH_FILE", file.to_str().unwrap())],
        None,
    );
    assert_alice_pushed(&run, &registry, &repo, "basic/app", &image);
}

#[test]
fn basic_podman_auth_json_in_xdg_runtime_dir() {
    let registry = basic_registry();
    let (image, layout) = image(27);
    let repo = registry.repo("basic/app");
    let sandbox = Sandbox::new();
    sandbox.runtime_auth_json(&auths(
        &registry.host(),
        auth_entry(ALICE_USER, ALICE_PASSWORD),
    ));
    let run = sandbox.run(&push_args(&layout, &repo, &[]), &[], None);
    assert_alice_pushed(&run, &registry, &repo, "basic/app", &image);
}

#[test]
fn basic_bazel_credential_helper() {
    let registry = basic_registry();
    let (image, layout) = image(28);
    let repo = registry.repo("basic/app");
    let sandbox = Sandbox::new();
    let (helper, log) = sandbox.bazel_credential_helper(
        "bazel-credential-helper",
        &serde_json::json!({"Authorization": [basic_auth(ALICE_USER, ALICE_PASSWORD)]}),
    );
    let run = sandbox.run(
        &push_args(
            &layout,
            &repo,
            &["--credential-helper", helper.to_str().unwrap()],
        ),
        &[],
        None,
    );
    assert_pushed(&run, &registry, &repo, "basic/app", &image);
    let calls = helper_calls(&log);
    assert!(!calls.is_empty(), "the helper was not called");
    for call in &calls {
        let (args, input) = call.split_once('\t').unwrap();
        assert_eq!(args, "get");
        let request: serde_json::Value = serde_json::from_str(input).expect("JSON on stdin");
        let uri = request["uri"].as_str().expect("uri");
        assert!(
            uri.starts_with(&format!("http://{}/", registry.host()))
                || uri.starts_with(&format!("https://{}/", registry.host())),
            "{uri}"
        );
    }
    assert_verbose(&run);
    run.assert_no_secrets(&alice_secrets());
}

#[test]
fn no_credentials_in_the_plain_http_try_of_a_loopback_port() {
    // A TLS port answers plain HTTP as Go's TLS server does; every request is recorded.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorder = seen.clone();
    let server = servers::Server::start(servers::bind_loopback(), move |mut stream| {
        if let Some((request, _)) = servers::accept(&mut stream, false) {
            recorder.lock().unwrap().push(request);
            let answer = b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";
            let _ = std::io::Write::write_all(&mut stream, answer);
        }
    });
    let (_, layout) = image(31);
    let repo = format!("127.0.0.1:{}/app", server.port());
    let sandbox = Sandbox::new();
    let (helper, _) = sandbox.bazel_credential_helper(
        "bazel-credential-helper",
        &serde_json::json!({"Authorization": ["Bearer helper-token"], "X-Api-Key": ["k"]}),
    );
    let mut args = push_args(&layout, &repo, &["--retries", "0"]);
    args.extend(["--credential-helper", helper.to_str().unwrap()]);
    let run = sandbox.run(&args, &[], None);
    assert_eq!(run.code, 5, "{}", run.stderr);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "one plain-HTTP request: {seen:#?}");
    // The first tag's HEAD: it tells whether the image is there and the tag names it.
    assert!(seen[0].path().ends_with("/manifests/v1"), "{seen:#?}");
    assert!(!seen[0].has_header("authorization"), "{seen:#?}");
    assert!(!seen[0].has_header("x-api-key"), "{seen:#?}");
}

#[test]
fn credentials_asked_for_only_by_writes_reach_every_upload() {
    // Anonymous reads, Basic for writes: several uploads go without credentials, and the 401s
    // come back after all of them went (slow), so that all but the first find the scheme
    // already learnt by another.
    let registry = Registry::start();
    let challenge = || {
        faults::Fault::status(401)
            .with_header("WWW-Authenticate", "Basic realm=\"push\"")
            .with_body(r#"{"errors":[{"code":"UNAUTHORIZED","message":"push needs a login"}]}"#)
            .delayed(std::time::Duration::from_millis(300))
    };
    let proxy = faults::FaultProxy::start(
        &registry,
        vec![
            faults::Rule::every("POST", "/blobs/uploads/", challenge()).without_credentials(),
            faults::Rule::every("PUT", "/v2/", challenge()).without_credentials(),
        ],
    );
    let (image, layout) = image(32);
    let repo = proxy.repo("app");
    let sandbox = Sandbox::new();
    let args = push_args(
        &layout,
        &repo,
        &["--username", ALICE_USER, "--password-stdin"],
    );
    let run = sandbox.run(&args, &[], Some(ALICE_PASSWORD));
    assert_alice_pushed(&run, &registry, &repo, "app", &image);
    let challenged = proxy.count("POST", "/blobs/uploads/") - image.blobs().len();
    assert!(
        challenged >= 2,
        "uploads challenged: {challenged}\n{}",
        proxy.describe()
    );
}

#[test]
fn basic_docker_config_key_with_scheme_and_path() {
    // `docker login https://HOST/v2/` keys are normalised to the host, as docker does.
    let registry = basic_registry();
    let (image, layout) = image(29);
    let repo = registry.repo("basic/app");
    let sandbox = Sandbox::new();
    sandbox.home_docker_config(&auths(
        &format!("https://{}/v2/", registry.host()),
        auth_entry(ALICE_USER, ALICE_PASSWORD),
    ));
    let run = sandbox.run(&push_args(&layout, &repo, &[]), &[], None);
    assert_pushed(&run, &registry, &repo, "basic/app", &image);
    run.assert_no_secrets(&alice_secrets());
}

// ---------------------------------------------------------------------------------------------
// Precedence: flags/env > --credential-helper > docker config > podman auth files > anonymous

/// A docker config (in HOME) with a wrong password for `registry`.
fn wrong_docker_config(sandbox: &Sandbox, registry: &Registry) -> std::path::PathBuf {
    sandbox.home_docker_config(&auths(
        &registry.host(),
        auth_entry(ALICE_USER, "wrong-docker"),
    ))
}

#[test]
fn precedence_flags_beat_a_wrong_docker_config() {
    let registry = basic_registry();
    let (image, layout) = image(30);
    let repo = registry.repo("prec/app");
    let sandbox = Sandbox::new();
    wrong_docker_config(&sandbox, &registry);
    let run = sandbox.run(
        &push_args(
            &layout,
            &repo,
            &["--username", ALICE_USER, "--password-stdin"],
        ),
        &[],
        Some("s3cret\n"),
    );
    assert_pushed(&run, &registry, &repo, "prec/app", &image);
    run.assert_no_secrets(&alice_secrets());
}

#[test]
fn precedence_environment_beats_credential_helper_and_docker_config() {
    let registry = basic_registry();
    let (image, layout) = image(31);
    let repo = registry.repo("prec/app");
    let sandbox = Sandbox::new();
    wrong_docker_config(&sandbox, &registry);
    let (helper, _log) = sandbox.bazel_credential_helper(
        "helper",
        &serde_json::json!({"Authorization": [basic_auth(ALICE_USER, "wrong-helper")]}),
    );
    let run = sandbox.run(
        &push_args(
            &layout,
            &repo,
            &["--credential-helper", helper.to_str().unwrap()],
        ),
        &[
            ("OCI_PUSH_USERNAME", ALICE_USER),
            ("OCI_PUSH_PASSWORD", ALICE_PASSWORD),
        ],
        None,
    );
    assert_pushed(&run, &registry, &repo, "prec/app", &image);
    run.assert_no_secrets(&alice_secrets());
}

#[test]
fn precedence_credential_helper_beats_docker_config() {
    let registry = basic_registry();
    let (image, layout) = image(32);
    let repo = registry.repo("prec/app");
    let sandbox = Sandbox::new();
    wrong_docker_config(&sandbox, &registry);
    let (helper, _log) = sandbox.bazel_credential_helper(
        "helper",
        &serde_json::json!({"Authorization": [basic_auth(ALICE_USER, ALICE_PASSWORD)]}),
    );
    let run = sandbox.run(
        &push_args(
            &layout,
            &repo,
            &["--credential-helper", helper.to_str().unwrap()],
        ),
        &[],
        None,
    );
    assert_pushed(&run, &registry, &repo, "prec/app", &image);
    run.assert_no_secrets(&alice_secrets());
}

#[test]
fn precedence_a_credential_helper_without_credentials_passes_on_to_docker_config() {
    let registry = basic_registry();
    let (image, layout) = image(34);
    let repo = registry.repo("prec/app");
    let sandbox = Sandbox::new();
    sandbox.home_docker_config(&auths(
        &registry.host(),
        auth_entry(ALICE_USER, ALICE_PASSWORD),
    ));
    let (helper, log) = sandbox.bazel_credential_helper("helper", &serde_json::json!({}));
    let run = sandbox.run(
        &push_args(
            &layout,
            &repo,
            &["--credential-helper", helper.to_str().unwrap()],
        ),
        &[],
        None,
    );
    assert_alice_pushed(&run, &registry, &repo, "prec/app", &image);
    assert_eq!(helper_calls(&log).len(), 1, "the helper was asked first");
}

#[test]
fn precedence_docker_config_beats_podman_auth_files() {
    let registry = basic_registry();
    let (image, layout) = image(33);
    let repo = registry.repo("prec/app");
    let sandbox = Sandbox::new();
    sandbox.home_docker_config(&auths(
        &registry.host(),
        auth_entry(ALICE_USER, ALICE_PASSWORD),
    ));
    sandbox.runtime_auth_json(&auths(
        &registry.host(),
        auth_entry(ALICE_USER, "wrong-podman"),
    ));
    let file = sandbox.write_json(
        "podman/auth.json",
        &auths(&registry.host(), auth_entry(ALICE_USER, "wrong-podman")),
    );
    let run = sandbox.run(
        &push_args(&layout, &repo, &[]),
        &[("REGISTRY_AUTH_FILE", file.to_str().unwrap())],
        None,
    );
    assert_pushed(&run, &registry, &repo, "prec/app", &image);
    run.assert_no_secrets(&alice_secrets());
}

#[test]
fn precedence_docker_config_env_dir_beats_home() {
    let registry = basic_registry();
    let (image, layout) = image(34);
    let repo = registry.repo("prec/app");
    let sandbox = Sandbox::new();
    wrong_docker_config(&sandbox, &registry);
    let (dir, _file) = sandbox.docker_config_dir(&auths(
        &registry.host(),
        auth_entry(ALICE_USER, ALICE_PASSWORD),
    ));
    let run = sandbox.run(
        &push_args(&layout, &repo, &[]),
        &[("DOCKER_CONFIG", dir.to_str().unwrap())],
        None,
    );
    assert_pushed(&run, &registry, &repo, "prec/app", &image);
    run.assert_no_secrets(&alice_secrets());
}

#[test]
fn precedence_cred_helpers_beat_auths() {
    let registry = basic_registry();
    let (image, layout) = image(35);
    let repo = registry.repo("prec/app");
    let sandbox = Sandbox::new();
    let log =
        sandbox.docker_credential_helper("test", &[(&registry.host(), ALICE_USER, ALICE_PASSWORD)]);
    sandbox.home_docker_config(&serde_json::json!({
        "auths": { registry.host(): auth_entry(ALICE_USER, "wrong-auths") },
        "credHelpers": { registry.host(): "test" },
    }));
    let run = sandbox.run(&push_args(&layout, &repo, &[]), &[], None);
    assert_pushed(&run, &registry, &repo, "prec/app", &image);
    assert_eq!(helper_calls(&log).len(), 1);
    run.assert_no_secrets(&alice_secrets());
}

#[test]
fn precedence_registry_auth_file_beats_xdg_runtime_dir() {
    let registry = basic_registry();
    let (image, layout) = image(36);
    let repo = registry.repo("prec/app");
    let sandbox = Sandbox::new();
    sandbox.runtime_auth_json(&auths(
        &registry.host(),
        auth_entry(ALICE_USER, "wrong-runtime"),
    ));
    let file = sandbox.write_json(
        "podman/auth.json",
        &auths(&registry.host(), auth_entry(ALICE_USER, ALICE_PASSWORD)),
    );
    let run = sandbox.run(
        &push_args(&layout, &repo, &[]),
        &[("REGISTRY_AUTH_FILE", file.to_str().unwrap())],
        None,
    );
    assert_pushed(&run, &registry, &repo, "prec/app", &image);
    run.assert_no_secrets(&alice_secrets());
}

#[test]
fn precedence_a_wrong_password_in_flags_is_not_retried_with_the_docker_config() {
    let registry = basic_registry();
    let (_image, layout) = image(37);
    let repo = registry.repo("prec/app");
    let sandbox = Sandbox::new();
    sandbox.home_docker_config(&auths(
        &registry.host(),
        auth_entry(ALICE_USER, ALICE_PASSWORD),
    ));
    let run = sandbox.run(
        &push_args(
            &layout,
            &repo,
            &["--username", ALICE_USER, "--password-stdin"],
        ),
        &[],
        Some("wrong-flag\n"),
    );
    assert_refused(
        &run,
        &registry,
        "prec/app",
        2,
        &[&registry.host(), "--username"],
    );
    run.assert_no_secrets(&["wrong-flag", &b64("alice:wrong-flag")]);
}

// ---------------------------------------------------------------------------------------------
// Refusals: exit 2, naming the registry and the credential source used

#[test]
fn refused_credentials_name_their_source() {
    let registry = basic_registry();
    let (_image, layout) = image(40);
    let repo = registry.repo("refused/app");
    let host = registry.host();
    let wrong = "not-the-password";
    let secrets = [wrong.to_string(), b64(format!("{ALICE_USER}:{wrong}"))];
    let check = |source: &str, run: Run, fragment: &str| {
        eprintln!("-- source: {source}");
        assert_refused(&run, &registry, "refused/app", 2, &[&host, fragment]);
        run.assert_no_secrets(&secrets);
    };

    // --username / --password-stdin
    let run = oci_push_with(
        &push_args(
            &layout,
            &repo,
            &["--username", ALICE_USER, "--password-stdin"],
        ),
        &[],
        Some(&format!("{wrong}\n")),
    );
    check("flags", run, "--username");

    // OCI_PUSH_USERNAME / OCI_PUSH_PASSWORD
    let run = oci_push_with(
        &push_args(&layout, &repo, &[]),
        &[
            ("OCI_PUSH_USERNAME", ALICE_USER),
            ("OCI_PUSH_PASSWORD", wrong),
        ],
        None,
    );
    check("environment", run, "OCI_PUSH_USERNAME");

    // --credential-helper PATH
    let sandbox = Sandbox::new();
    let (helper, _log) = sandbox.bazel_credential_helper(
        "bazel-helper",
        &serde_json::json!({"Authorization": [basic_auth(ALICE_USER, wrong)]}),
    );
    let helper = helper.to_str().unwrap();
    let run = sandbox.run(
        &push_args(&layout, &repo, &["--credential-helper", helper]),
        &[],
        None,
    );
    check("bazel helper", run, &format!("credential helper {helper}"));

    // $DOCKER_CONFIG/config.json
    let sandbox = Sandbox::new();
    let (dir, file) = sandbox.docker_config_dir(&auths(&host, auth_entry(ALICE_USER, wrong)));
    let run = sandbox.run(
        &push_args(&layout, &repo, &[]),
        &[("DOCKER_CONFIG", dir.to_str().unwrap())],
        None,
    );
    check("DOCKER_CONFIG", run, file.to_str().unwrap());

    // ~/.docker/config.json
    let sandbox = Sandbox::new();
    let file = sandbox.home_docker_config(&auths(&host, auth_entry(ALICE_USER, wrong)));
    let run = sandbox.run(&push_args(&layout, &repo, &[]), &[], None);
    check("home docker config", run, file.to_str().unwrap());

    // credHelpers / credsStore: docker-credential-test
    for key in ["credHelpers", "credsStore"] {
        let sandbox = Sandbox::new();
        sandbox.docker_credential_helper("test", &[(&host, ALICE_USER, wrong)]);
        let config = if key == "credHelpers" {
            serde_json::json!({ "credHelpers": { host.clone(): "test" } })
        } else {
            serde_json::json!({ "credsStore": "test" })
        };
        sandbox.home_docker_config(&config);
        let run = sandbox.run(&push_args(&layout, &repo, &[]), &[], None);
        check(key, run, "docker-credential-test");
    }

    // $REGISTRY_AUTH_FILE and $XDG_RUNTIME_DIR/containers/auth.json
    let sandbox = Sandbox::new();
    let file = sandbox.write_json(
        "podman/auth.json",
        &auths(&host, auth_entry(ALICE_USER, wrong)),
    );
    let run = sandbox.run(
        &push_args(&layout, &repo, &[]),
        &[("REGISTRY_AUTH_FILE", file.to_str().unwrap())],
        None,
    );
    check("REGISTRY_AUTH_FILE", run, file.to_str().unwrap());
    let sandbox = Sandbox::new();
    let file = sandbox.runtime_auth_json(&auths(&host, auth_entry(ALICE_USER, wrong)));
    let run = sandbox.run(&push_args(&layout, &repo, &[]), &[], None);
    check("XDG_RUNTIME_DIR", run, file.to_str().unwrap());
}

#[test]
fn no_credentials_is_refused_as_anonymous() {
    let registry = basic_registry();
    let (_image, layout) = image(41);
    let repo = registry.repo("refused/app");
    let run = oci_push_with(&push_args(&layout, &repo, &[]), &[], None);
    assert_refused(
        &run,
        &registry,
        "refused/app",
        2,
        &[&registry.host(), "anonymous"],
    );
}

#[test]
fn credentials_for_another_registry_are_not_sent() {
    let registry = basic_registry();
    let (_image, layout) = image(42);
    let repo = registry.repo("refused/app");
    let sandbox = Sandbox::new();
    // Right credentials, but for another port of the same address, and for `localhost`.
    sandbox.home_docker_config(&serde_json::json!({
        "auths": {
            format!("127.0.0.1:{}", registry.port + 1): auth_entry(ALICE_USER, ALICE_PASSWORD),
            format!("localhost:{}", registry.port): auth_entry(ALICE_USER, ALICE_PASSWORD),
        }
    }));
    let run = sandbox.run(&push_args(&layout, &repo, &[]), &[], None);
    assert_refused(
        &run,
        &registry,
        "refused/app",
        2,
        &[&registry.host(), "anonymous"],
    );
    run.assert_no_secrets(&alice_secrets());
}

// ---------------------------------------------------------------------------------------------
// Token authentication

/// Whether a granted request gave both pull and push on `repo`.
fn granted_push(request: &TokenRequest, repo: &str) -> bool {
    request
        .granted
        .iter()
        .any(|(name, actions)| name == repo && actions.iter().any(|a| a == "push"))
}

#[test]
fn token_alice_pushes_with_one_token_fetch_per_scope() {
    let (server, registry) = token_registry(Policy::default());
    let (image, layout) = image(50);
    let repo = registry.repo("tok/app");
    let run = oci_push_with(
        &push_args(
            &layout,
            &repo,
            &["--username", ALICE_USER, "--password-stdin"],
        ),
        &[],
        Some("s3cret\n"),
    );
    assert_pushed(&run, &registry, &repo, "tok/app", &image);
    assert_verbose(&run);
    run.assert_no_secrets(&server.secrets());

    let requests = server.requests();
    // Five blobs, a manifest and a tag, yet one handshake: one token per scope.
    assert!(
        (1..=3).contains(&requests.len()),
        "token requests: {requests:#?}"
    );
    for request in &requests {
        assert_eq!(request.status, 200, "{request:?}");
        assert_eq!(request.service.as_deref(), Some("test-registry"));
        assert_eq!(
            request.authorization.as_deref(),
            Some("Basic"),
            "{request:?}"
        );
        assert_eq!(request.user.as_deref(), Some("alice"));
    }
    assert!(
        requests.iter().any(|r| granted_push(r, "tok/app")),
        "no token with push on tok/app: {requests:#?}"
    );
}

#[test]
fn token_with_environment_credentials() {
    let (server, registry) = token_registry(Policy::default());
    let (image, layout) = image(51);
    let repo = registry.repo("tok/env");
    let run = oci_push_with(
        &push_args(&layout, &repo, &[]),
        &[
            ("OCI_PUSH_USERNAME", ALICE_USER),
            ("OCI_PUSH_PASSWORD", ALICE_PASSWORD),
        ],
        None,
    );
    assert_pushed(&run, &registry, &repo, "tok/env", &image);
    run.assert_no_secrets(&server.secrets());
    assert!(server.requests().len() <= 3, "{:#?}", server.requests());
}

#[test]
fn token_anonymous_gets_pull_only_and_the_push_is_refused() {
    let (server, registry) = token_registry(Policy::default());
    let (_image, layout) = image(52);
    let repo = registry.repo("tok/app");
    let run = oci_push_with(&push_args(&layout, &repo, &[]), &[], None);
    assert_refused(
        &run,
        &registry,
        "tok/app",
        2,
        &[&registry.host(), "anonymous"],
    );
    let requests = server.requests();
    assert!(!requests.is_empty(), "the token server was not asked");
    assert!(requests.iter().all(|r| r.authorization.is_none()));
    assert!(!requests.iter().any(|r| granted_push(r, "tok/app")));
    // Refused once is enough: not a new token for every blob.
    assert!(requests.len() <= 3, "token requests: {requests:#?}");
    run.assert_no_secrets(&server.issued());
}

#[test]
fn token_pull_only_user_is_refused() {
    let (server, registry) = token_registry(Policy::default());
    let (_image, layout) = image(53);
    let repo = registry.repo("tok/app");
    let run = oci_push_with(
        &push_args(&layout, &repo, &["--username", BOB.0, "--password-stdin"]),
        &[],
        Some("hunter2\n"),
    );
    assert_refused(
        &run,
        &registry,
        "tok/app",
        2,
        &[&registry.host(), "--username"],
    );
    let requests = server.requests();
    assert!(requests.iter().any(|r| r.user.as_deref() == Some("bob")));
    assert!(requests.len() <= 3, "token requests: {requests:#?}");
    run.assert_no_secrets(&server.secrets());
}

#[test]
fn token_cross_repository_mount_asks_pull_on_the_source() {
    let (server, registry) = token_registry(Policy::default());
    let (image, layout) = image(58);
    let base = registry.repo("tok/base");
    let login = ["--username", ALICE_USER, "--password-stdin"];
    let first = oci_push_with(&push_args(&layout, &base, &login), &[], Some("s3cret\n"));
    assert_pushed(&first, &registry, &base, "tok/base", &image);
    let before = server.requests().len();

    let repo = registry.repo("tok/zapp");
    let mut args = push_args(&layout, &repo, &login);
    args.extend(["--mount-from", base.as_str()]);
    let run = oci_push_with(&args, &[], Some("s3cret\n"));
    assert_pushed(&run, &registry, &repo, "tok/zapp", &image);
    // Every blob reported as mounted (a progress line naming it), none uploaded.
    for blob in image.blobs() {
        assert!(
            run.stderr.lines().any(|l| !l.starts_with("http:")
                && l.contains("mounted")
                && l.contains(&blob.digest)),
            "{} not mounted:\n{}",
            blob.digest,
            run.stderr
        );
    }
    assert!(!run.stderr.contains("uploaded"), "{}", run.stderr);
    let requests = server.requests()[before..].to_vec();
    assert!(!requests.is_empty() && requests.len() <= 3, "{requests:#?}");
    // One token holds push on the target and pull on the source.
    assert!(
        requests.iter().any(|r| granted_push(r, "tok/zapp")
            && r.granted
                .iter()
                .any(|(name, actions)| name == "tok/base" && actions.iter().any(|a| a == "pull"))),
        "no token with push on tok/zapp and pull on tok/base: {requests:#?}"
    );
    // The push scope first, though the source sorts before it: some token services read
    // only the first scope.
    for request in &requests {
        assert_eq!(
            request.scopes.first().map(String::as_str),
            Some("repository:tok/zapp:pull,push"),
            "{request:#?}"
        );
    }
    run.assert_no_secrets(&server.secrets());
}

#[test]
fn token_wrong_password_is_refused() {
    let (server, registry) = token_registry(Policy::default());
    let (_image, layout) = image(54);
    let repo = registry.repo("tok/app");
    let run = oci_push_with(
        &push_args(
            &layout,
            &repo,
            &["--username", ALICE_USER, "--password-stdin"],
        ),
        &[],
        Some("wrong-token-password\n"),
    );
    assert_refused(
        &run,
        &registry,
        "tok/app",
        2,
        &[&registry.host(), "--username"],
    );
    assert!(server.requests().iter().any(|r| r.status == 401));
    run.assert_no_secrets(&["wrong-token-password", &b64("alice:wrong-token-password")]);
}

#[test]
fn token_identity_token_from_docker_config_uses_the_refresh_flow() {
    let (server, registry) = token_registry(Policy::default());
    let (image, layout) = image(55);
    let repo = registry.repo("tok/id");
    let sandbox = Sandbox::new();
    // What `docker login` writes when the registry returns an identity token.
    sandbox.home_docker_config(&auths(
        &registry.host(),
        serde_json::json!({"auth": b64(format!("{ALICE_USER}:")), "identitytoken": REFRESH_TOKEN}),
    ));
    let run = sandbox.run(&push_args(&layout, &repo, &[]), &[], None);
    assert_pushed(&run, &registry, &repo, "tok/id", &image);
    let requests = server.requests();
    assert!(!requests.is_empty());
    for request in &requests {
        assert_eq!(request.method, "POST", "{request:?}");
        assert_eq!(request.grant_type.as_deref(), Some("refresh_token"));
        assert!(request.client_id.as_deref().is_some_and(|c| !c.is_empty()));
        assert_eq!(request.user.as_deref(), Some("alice"));
        assert_eq!(request.status, 200);
    }
    assert!(requests.len() <= 3, "{requests:#?}");
    assert!(requests.iter().any(|r| granted_push(r, "tok/id")));
    run.assert_no_secrets(&server.secrets());
    // A revoked identity token: exit 2 naming the config file.
    let revoked = Sandbox::new();
    let config_revoked = revoked.home_docker_config(&auths(
        &registry.host(),
        serde_json::json!({"identitytoken": "rt-revoked"}),
    ));
    let run = revoked.run(
        &push_args(&layout, &registry.repo("tok/revoked"), &[]),
        &[],
        None,
    );
    assert_refused(
        &run,
        &registry,
        "tok/revoked",
        2,
        &[&registry.host(), config_revoked.to_str().unwrap()],
    );
    run.assert_no_secrets(&["rt-revoked"]);
    // The revoked token was offered, in the refresh flow, and refused; nothing was granted.
    let after = server.requests();
    let revoked_requests = &after[requests.len()..];
    assert!(
        revoked_requests
            .iter()
            .any(|r| r.grant_type.as_deref() == Some("refresh_token") && r.status == 401),
        "{revoked_requests:#?}"
    );
    assert!(
        !revoked_requests
            .iter()
            .any(|r| granted_push(r, "tok/revoked")),
        "{revoked_requests:#?}"
    );
}

#[test]
fn token_identity_token_from_creds_store() {
    let (server, registry) = token_registry(Policy::default());
    let (image, layout) = image(56);
    let repo = registry.repo("tok/store");
    let sandbox = Sandbox::new();
    let log =
        sandbox.docker_credential_helper("test", &[(&registry.host(), "<token>", REFRESH_TOKEN)]);
    sandbox.home_docker_config(&serde_json::json!({"credsStore": "test"}));
    let run = sandbox.run(&push_args(&layout, &repo, &[]), &[], None);
    assert_pushed(&run, &registry, &repo, "tok/store", &image);
    assert_eq!(helper_calls(&log), [format!("get\t{}", registry.host())]);
    let requests = server.requests();
    assert!(!requests.is_empty() && requests.len() <= 3, "{requests:#?}");
    assert!(requests
        .iter()
        .all(|r| r.grant_type.as_deref() == Some("refresh_token") && r.status == 200));
    run.assert_no_secrets(&server.secrets());
}

#[test]
fn token_bazel_credential_helper_basic_header_logs_in_at_the_token_server() {
    let (server, registry) = token_registry(Policy::default());
    let (image, layout) = image(59);
    let repo = registry.repo("tok/bazel");
    let sandbox = Sandbox::new();
    let (helper, log) = sandbox.bazel_credential_helper(
        "helper",
        &serde_json::json!({"Authorization": [basic_auth(ALICE_USER, ALICE_PASSWORD)]}),
    );
    let run = sandbox.run(
        &push_args(
            &layout,
            &repo,
            &["--credential-helper", helper.to_str().unwrap()],
        ),
        &[],
        None,
    );
    assert_pushed(&run, &registry, &repo, "tok/bazel", &image);
    assert!(!helper_calls(&log).is_empty());
    let requests = server.requests();
    assert!(!requests.is_empty() && requests.len() <= 3, "{requests:#?}");
    assert!(requests
        .iter()
        .all(|r| r.user.as_deref() == Some("alice") && r.status == 200));
    run.assert_no_secrets(&server.secrets());
}

#[test]
fn token_expiring_mid_push_is_fetched_again() {
    let (server, registry) = token_registry(Policy {
        expired_first: 1,
        ..Policy::default()
    });
    let (image, layout) = image(57);
    let repo = registry.repo("tok/exp");
    let run = oci_push_with(
        &push_args(
            &layout,
            &repo,
            &["--username", ALICE_USER, "--password-stdin"],
        ),
        &[],
        Some("s3cret\n"),
    );
    assert_pushed(&run, &registry, &repo, "tok/exp", &image);
    let requests = server.granted_requests();
    assert!(
        requests.len() >= 2,
        "no new token after the expired one: {requests:#?}"
    );
    assert!(requests[0].expired);
    assert!(requests[1..].iter().all(|r| !r.expired));
    // Fetched again when refused, not once per blob.
    assert!(requests.len() <= 5, "{requests:#?}");
    run.assert_no_secrets(&server.secrets());
}

// ---------------------------------------------------------------------------------------------
// Proxies

/// A name that only the test proxy resolves (to 127.0.0.1).
const PROXIED_NAME: &str = "registry.test";

fn proxy() -> ConnectProxy {
    ConnectProxy::start(&[(PROXIED_NAME, "127.0.0.1".parse().unwrap())])
}

#[test]
fn https_proxy_carries_the_push() {
    // registry.test is not a loopback name, so it is spoken to over HTTPS only, and it
    // resolves nowhere but in the proxy: the push can only succeed through the proxy.
    let registry = Registry::start_with(RegistryOptions::tls(Tls::new(&[PROXIED_NAME])));
    let proxy = proxy();
    let (image, layout) = image(60);
    let authority = format!("{PROXIED_NAME}:{}", registry.port);
    let repo = format!("{authority}/proxied/app");
    let ca = registry.ca_file().unwrap().display().to_string();
    let run = oci_push_with(
        &push_args(&layout, &repo, &["--ca-file", &ca]),
        &[("HTTPS_PROXY", &proxy.url())],
        None,
    );
    assert_pushed(&run, &registry, &repo, "proxied/app", &image);
    assert!(proxy.uses_of(&authority) >= 1, "{:?}", proxy.uses());
    assert!(
        proxy.uses().iter().all(|u| u.authority() == authority),
        "{:?}",
        proxy.uses()
    );
}

#[test]
fn tls_failure_on_a_named_host_exits_3() {
    // Not loopback, so HTTPS only (no fallback to plain HTTP): an untrusted certificate is a
    // TLS failure, exit 3, and the message points at --ca-file.
    let registry = Registry::start_with(RegistryOptions::tls(Tls::new(&[PROXIED_NAME])));
    let proxy = proxy();
    let (_image, layout) = image(65);
    let authority = format!("{PROXIED_NAME}:{}", registry.port);
    let repo = format!("{authority}/proxied/app");
    let run = oci_push_with(
        &push_args(&layout, &repo, &[]),
        &[("HTTPS_PROXY", &proxy.url())],
        None,
    );
    assert_refused(
        &run,
        &registry,
        "proxied/app",
        3,
        &[&authority, "--ca-file"],
    );
    assert!(proxy.uses_of(&authority) >= 1, "{:?}", proxy.uses());
}

#[test]
fn lowercase_https_proxy_carries_the_push() {
    let registry = Registry::start_with(RegistryOptions::tls(Tls::new(&[PROXIED_NAME])));
    let proxy = proxy();
    let (image, layout) = image(61);
    let authority = format!("{PROXIED_NAME}:{}", registry.port);
    let repo = format!("{authority}/proxied/app");
    let ca = registry.ca_file().unwrap().display().to_string();
    let run = oci_push_with(
        &push_args(&layout, &repo, &["--ca-file", &ca]),
        &[("https_proxy", &proxy.url())],
        None,
    );
    assert_pushed(&run, &registry, &repo, "proxied/app", &image);
    assert!(proxy.uses_of(&authority) >= 1, "{:?}", proxy.uses());
}

#[test]
fn http_proxy_carries_a_plain_http_push() {
    let registry = Registry::start();
    let proxy = proxy();
    let (image, layout) = image(62);
    let authority = format!("{PROXIED_NAME}:{}", registry.port);
    let repo = format!("{authority}/proxied/app");
    let run = oci_push_with(
        &push_args(&layout, &repo, &["--plain-http"]),
        &[("HTTP_PROXY", &proxy.url())],
        None,
    );
    assert_pushed(&run, &registry, &repo, "proxied/app", &image);
    assert!(proxy.uses_of(&authority) >= 1, "{:?}", proxy.uses());
}

#[test]
fn no_proxy_bypasses_the_proxy() {
    let registry = Registry::start();
    let proxy = proxy();
    let (image, layout) = image(63);
    let repo = registry.repo("direct/app");
    let run = oci_push_with(
        &push_args(&layout, &repo, &[]),
        &[
            ("HTTPS_PROXY", &proxy.url()),
            ("HTTP_PROXY", &proxy.url()),
            ("NO_PROXY", "example.com,127.0.0.1"),
        ],
        None,
    );
    assert_pushed(&run, &registry, &repo, "direct/app", &image);
    assert_eq!(proxy.uses(), [], "NO_PROXY ignored");
}

#[test]
fn no_proxy_bypasses_a_dead_proxy() {
    // A proxy that is not there: the push works only if NO_PROXY is honoured.
    let registry = Registry::start();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let (image, layout) = image(64);
    let repo = registry.repo("direct/app");
    let run = oci_push_with(
        &push_args(&layout, &repo, &[]),
        &[
            ("HTTPS_PROXY", &dead),
            ("HTTP_PROXY", &dead),
            ("no_proxy", "127.0.0.1"),
        ],
        None,
    );
    assert_pushed(&run, &registry, &repo, "direct/app", &image);
}

// ---------------------------------------------------------------------------------------------
// Redirects

#[test]
fn upload_redirected_to_another_host_gets_no_authorization() {
    let registry = basic_registry();
    let front = RedirectFront::start(&registry);
    let (image, layout) = image(70);
    let repo = front.repo("redirect/app");
    let run = oci_push_with(
        &push_args(
            &layout,
            &repo,
            &["--username", ALICE_USER, "--password-stdin"],
        ),
        &[],
        Some("s3cret\n"),
    );
    assert_pushed(&run, &registry, &repo, "redirect/app", &image);
    let storage = front.seen_on(Side::Storage);
    assert!(
        storage.len() >= 5,
        "the uploads did not go to the other host: {:#?}",
        front.seen()
    );
    for seen in &storage {
        assert!(
            seen.header("authorization").is_none(),
            "Authorization sent to {}: {} {}",
            front.storage_host(),
            seen.method,
            seen.target
        );
    }
    assert!(
        front
            .seen_on(Side::Front)
            .iter()
            .any(|s| s.header("authorization").is_some()),
        "the registry host never got the credentials"
    );
    assert_verbose(&run);
    run.assert_no_secrets(&alice_secrets());
}
