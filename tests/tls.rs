//! TLS as self-hosted registries are really set up (issue 13), against the real registry with
//! TLS: Docker's self-signed recipe pinned with --ca-file, the docker and podman certs.d
//! directories, and mutual TLS (`http.tls.clientcas`) with --cert-file/--key-file or certs.d.
//! Every push is read back from the registry with curl.

mod common;

use common::pushing::*;
use common::*;

fn tls_registry(tls: Tls, mutual_tls: bool) -> Registry {
    Registry::start_with(RegistryOptions {
        tls: Some(tls),
        htpasswd: None,
        token: None,
        mutual_tls,
    })
}

fn path_arg(path: &std::path::Path) -> String {
    path.display().to_string()
}

#[test]
fn docker_s_self_signed_recipe_is_pinned_with_ca_file() {
    // `openssl req -x509` makes a CA:TRUE certificate, which webpki refuses as a server's
    // (CaUsedAsEndEntity); given with --ca-file or SSL_CERT_FILE, it is the server's own, and
    // trusted as curl and docker trust it.
    let registry = tls_registry(Tls::self_signed("DNS:localhost,IP:127.0.0.1"), false);
    let cert = path_arg(registry.ca_file().unwrap());
    let (image, layout) = image(500);
    for repo in [
        registry.repo("pinned/app"),
        format!("localhost:{}/pinned/app", registry.port),
    ] {
        let run = oci_push_with(&push_args(&layout, &repo, &["--ca-file", &cert]), &[], None);
        assert_pushed(&run, &registry, &repo, "pinned/app", &image);
    }
    let repo = registry.repo("pinned/env");
    let run = oci_push_with(
        &push_args(&layout, &repo, &[]),
        &[("SSL_CERT_FILE", &cert)],
        None,
    );
    assert_pushed(&run, &registry, &repo, "pinned/env", &image);
    // Not given: not trusted.
    let run = oci_push_with(
        &push_args(&layout, &registry.repo("pinned/no"), &[]),
        &[],
        None,
    );
    assert_refused(
        &run,
        &registry,
        "pinned/no",
        3,
        &["certificate is not trusted"],
    );
}

#[test]
fn a_pinned_certificate_for_another_name_is_refused() {
    // For 127.0.0.1 only (as curl reads it back), pushed to as localhost.
    let registry = tls_registry(Tls::self_signed("IP:127.0.0.1"), false);
    let cert = path_arg(registry.ca_file().unwrap());
    let (_image, layout) = image(501);
    let repo = format!("localhost:{}/pinned/app", registry.port);
    let run = oci_push_with(&push_args(&layout, &repo, &["--ca-file", &cert]), &[], None);
    assert_refused(&run, &registry, "pinned/app", 3, &["NotValidForName"]);
}

#[test]
fn certs_d_cas_are_trusted_for_their_registry_only() {
    let registry = tls_registry(Tls::localhost(), false);
    let ca = std::fs::read(registry.ca_file().unwrap()).unwrap();
    let (image, layout) = image(502);
    // docker's ~/.docker/certs.d/HOST:PORT/*.crt
    let sandbox = Sandbox::new();
    sandbox.write(
        &format!("home/.docker/certs.d/{}/ca.crt", registry.host()),
        &ca,
    );
    let repo = registry.repo("certsd/docker");
    let run = sandbox.run(&push_args(&layout, &repo, &[]), &[], None);
    assert_pushed(&run, &registry, &repo, "certsd/docker", &image);
    // podman's rootless ~/.config/containers/certs.d/HOST:PORT/*.crt
    let sandbox = Sandbox::new();
    let localhost = format!("localhost:{}", registry.port);
    sandbox.write(
        &format!("home/.config/containers/certs.d/{localhost}/ca.crt"),
        &ca,
    );
    let repo = format!("{localhost}/certsd/podman");
    let run = sandbox.run(&push_args(&layout, &repo, &[]), &[], None);
    assert_pushed(&run, &registry, &repo, "certsd/podman", &image);
    // The directory names a host: another name for the same registry is not covered.
    let repo = registry.repo("certsd/other");
    let run = sandbox.run(&push_args(&layout, &repo, &[]), &[], None);
    assert_refused(
        &run,
        &registry,
        "certsd/other",
        3,
        &["certificate is not trusted"],
    );
}

#[test]
fn mutual_tls_with_cert_file_and_key_file() {
    let tls = Tls::localhost();
    let (cert, key) = tls.client("alice");
    let registry = tls_registry(tls, true);
    let ca = path_arg(registry.ca_file().unwrap());
    let (image, layout) = image(503);
    let repo = registry.repo("mtls/app");
    // Without a client certificate the registry ends the handshake.
    let run = oci_push_with(&push_args(&layout, &repo, &["--ca-file", &ca]), &[], None);
    assert_refused(
        &run,
        &registry,
        "mtls/app",
        3,
        &["--cert-file and --key-file"],
    );
    let (cert, key) = (path_arg(&cert), path_arg(&key));
    let extra = ["--ca-file", &ca, "--cert-file", &cert, "--key-file", &key];
    let run = oci_push_with(&push_args(&layout, &repo, &extra), &[], None);
    assert_pushed(&run, &registry, &repo, "mtls/app", &image);
    // One without the other is a usage error.
    let run = oci_push_with(
        &push_args(&layout, &repo, &["--cert-file", &cert]),
        &[],
        None,
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.error(),
        "--cert-file and --key-file go together: give the client certificate and its key"
    );
}

#[test]
fn mutual_tls_from_a_certs_d_client_certificate() {
    let tls = Tls::localhost();
    let (cert, key) = tls.client("bob");
    let registry = tls_registry(tls, true);
    let ca = std::fs::read(registry.ca_file().unwrap()).unwrap();
    let (image, layout) = image(504);
    let sandbox = Sandbox::new();
    let dir = format!("home/.docker/certs.d/{}", registry.host());
    sandbox.write(&format!("{dir}/ca.crt"), &ca);
    sandbox.write(
        &format!("{dir}/client.cert"),
        &std::fs::read(&cert).unwrap(),
    );
    let repo = registry.repo("mtls/certsd");
    // A certificate without its key is named, before any request.
    let run = sandbox.run(&push_args(&layout, &repo, &[]), &[], None);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.error().contains("client.cert has no ") && run.error().contains("client.key beside it"),
        "{}",
        run.stderr
    );
    sandbox.write(&format!("{dir}/client.key"), &std::fs::read(&key).unwrap());
    let run = sandbox.run(&push_args(&layout, &repo, &[]), &[], None);
    assert_pushed(&run, &registry, &repo, "mtls/certsd", &image);
}

#[test]
fn certs_d_files_that_cannot_be_read_are_passed_over_and_flags_win() {
    // A file this user cannot open (here a link to nothing; a root-only client.key for
    // others) is passed over with a warning; --cert-file makes certs.d's client certificates
    // irrelevant, even a broken one.
    let tls = Tls::localhost();
    let (cert, key) = tls.client("carol");
    let registry = tls_registry(tls, true);
    let ca = std::fs::read(registry.ca_file().unwrap()).unwrap();
    let (image, layout) = image(505);
    let sandbox = Sandbox::new();
    let dir = format!("home/.docker/certs.d/{}", registry.host());
    sandbox.write(&format!("{dir}/ca.crt"), &ca);
    sandbox.write(&format!("{dir}/client.cert"), b"not a certificate");
    std::os::unix::fs::symlink(
        "/nonexistent/ca.crt",
        sandbox.path(&format!("{dir}/gone.crt")),
    )
    .unwrap();
    // A FIFO would block the open until something wrote to it.
    let fifo = sandbox.path(&format!("{dir}/pipe.crt"));
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo");
    let repo = registry.repo("mtls/flags");
    let (cert, key) = (path_arg(&cert), path_arg(&key));
    let run = sandbox.run(
        &push_args(&layout, &repo, &["--cert-file", &cert, "--key-file", &key]),
        &[],
        None,
    );
    assert_pushed(&run, &registry, &repo, "mtls/flags", &image);
    assert!(
        run.stderr.contains("gone.crt: No such file")
            && run.stderr.contains("pipe.crt: not a regular file"),
        "{}",
        run.stderr
    );
}
