//! One image, several destinations (`-r A -r B`): each in turn, read back from the real
//! registries with curl; later destinations on one registry mount from the first; one token
//! exchange per registry; the first failure ends the run and says what was not attempted.

mod common;

use common::pushing::{image, ALICE_PASSWORD, ALICE_USER};
use common::token::{Policy, TokenServer};
use common::*;
use std::time::Duration;

use common::faults::{Fault, FaultProxy, Rule};
use serde_json::{json, Value};

/// `--layout L -r REPO... -t v1 EXTRA...`
fn args<'a>(layout: &'a str, repos: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--layout", layout, "-t", "v1"];
    for repo in repos {
        args.extend(["-r", *repo]);
    }
    args.extend_from_slice(extra);
    args
}

/// [`args`], run in the sandbox.
fn push_to(layout: &tempfile::TempDir, repos: &[&str], extra: &[&str]) -> Run {
    let layout = layout_arg(layout);
    oci_push_with(&args(&layout, repos, extra), &[], None)
}

/// [`push_to`] with `stdin` piped in, succeeding.
fn push_with_stdin(layout: &tempfile::TempDir, repos: &[&str], extra: &[&str], stdin: &str) {
    let layout = layout_arg(layout);
    oci_push_with(&args(&layout, repos, extra), &[], Some(stdin)).ok();
}

/// Each destination's (repository, outcome), from a JSON result held to its schema.
fn outcomes(json: &Value) -> Vec<(String, String)> {
    schema::assert_follows_schema(json);
    json["destinations"]
        .as_array()
        .expect("destinations")
        .iter()
        .map(|d| {
            let field = |name: &str| d[name].as_str().expect(name).to_string();
            (field("repository"), field("outcome"))
        })
        .collect()
}

#[test]
fn each_destination_gets_the_image_and_later_ones_on_a_registry_mount_from_the_first() {
    let registry = Registry::start();
    // A recording front: what went over the wire, as the registry saw it.
    let front = FaultProxy::start(&registry, vec![]);
    let (image, layout) = image(60);
    let (a, b) = (front.repo("dest/app"), front.repo("dest/mirror"));
    let work = tempfile::TempDir::new().expect("temp dir");
    let digest_file = work.path().join("digests");
    let run = push_to(
        &layout,
        &[&a, &b],
        &[
            "--format",
            "json",
            "--digest-file",
            digest_file.to_str().expect("utf-8"),
        ],
    )
    .ok();
    for path in ["dest/app", "dest/mirror"] {
        registry.assert_manifest(path, "v1", &image.manifest);
        for blob in image.blobs() {
            registry.assert_blob(path, blob);
        }
    }
    let json = run.json();
    assert_eq!(
        outcomes(&json),
        [
            (a.clone(), "pushed".to_string()),
            (b.clone(), "pushed".to_string())
        ]
    );
    let second = &json["destinations"][1];
    let blob_outcomes: Vec<&str> = second["blobs"]
        .as_array()
        .expect("blobs")
        .iter()
        .map(|b| b["outcome"].as_str().expect("outcome"))
        .collect();
    assert_eq!(blob_outcomes, vec!["mounted"; image.blobs().len()]);
    assert_eq!(second["bytes"]["sent"], 0, "{second}");
    // On the wire: a mount from the first per blob, answered 201, and no upload to the mirror.
    let mirror = front.matching("*", "/v2/dest/mirror/blobs/uploads/");
    assert_eq!(mirror.len(), image.blobs().len(), "{}", front.describe());
    for request in &mirror {
        assert_eq!(request.method, "POST");
        assert!(
            request.target.contains("mount=sha256"),
            "{}",
            request.target
        );
        assert!(request.target.contains("from=dest"), "{}", request.target);
        assert_eq!(request.answered, Some(201), "{}", request.target);
    }
    assert_eq!(
        json["repository"],
        a.as_str(),
        "the top describes the first"
    );
    let references = [a.as_str(), b.as_str()].map(|r| format!("{r}@{}", image.manifest.digest));
    assert_eq!(
        std::fs::read_to_string(&digest_file).expect("digest file"),
        format!("{}\n", references.join("\n"))
    );

    // Plain output: the last line names every destination.
    let run = push_to(&layout, &[&a, &b], &[]).ok();
    assert_eq!(run.last_line(), references.join(" "));
    assert!(
        run.stderr
            .contains(&format!("destinations: pushed {a}, {b}\n")),
        "{}",
        run.stderr
    );
}

#[test]
fn destinations_on_two_registries_each_get_the_blobs() {
    let (one, two) = (Registry::start(), Registry::start());
    let (image, layout) = image(61);
    let (a, b) = (one.repo("two/app"), two.repo("two/app"));
    let run = push_to(&layout, &[&a, &b], &[]).ok();
    for registry in [&one, &two] {
        registry.assert_manifest("two/app", "v1", &image.manifest);
        for blob in image.blobs() {
            registry.assert_blob("two/app", blob);
        }
    }
    assert_eq!(
        run.last_line(),
        format!("{a}@{d} {b}@{d}", d = image.manifest.digest)
    );
}

#[test]
fn a_registry_s_destinations_share_one_token_exchange() {
    let server = TokenServer::start(Policy::default());
    let registry = Registry::start_with(RegistryOptions::token(server.config()));
    let (image, layout) = image(62);
    let alone = registry.repo("tok/alone");
    let login = ["--username", ALICE_USER, "--password-stdin"];
    let password = format!("{ALICE_PASSWORD}\n");
    push_with_stdin(&layout, &[&alone], &login, &password);
    let for_one = server.requests().len();
    assert!(for_one >= 1, "a token registry asked for no token");

    let (a, b, c) = (
        registry.repo("tok/a"),
        registry.repo("tok/b"),
        registry.repo("tok/c"),
    );
    push_with_stdin(&layout, &[&a, &b, &c], &login, &password);
    let requests = &server.requests()[for_one..];
    assert_eq!(
        requests.len(),
        for_one,
        "three destinations asked for tokens as often as one: {requests:#?}"
    );
    for request in requests {
        for path in ["tok/a", "tok/b", "tok/c"] {
            let scope = format!("repository:{path}:pull,push");
            assert!(request.scopes.contains(&scope), "{scope}: {request:?}");
        }
    }
    for path in ["tok/a", "tok/b", "tok/c"] {
        registry.assert_manifest(path, "v1", &image.manifest);
    }
}

#[test]
fn the_first_failure_ends_the_run_and_says_what_was_not_attempted() {
    let registry = Registry::start();
    let (image, layout) = image(63);
    let a = registry.repo("fail/first");
    let dead = "127.0.0.1:1/fail/dead".to_string();
    let c = registry.repo("fail/third");
    let run = push_to(
        &layout,
        &[&a, &dead, &c],
        &["--format", "json", "--retries", "0"],
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    registry.assert_manifest("fail/first", "v1", &image.manifest);
    registry.assert_nothing_tagged("fail/third", &[&image.manifest.digest]);
    // Not attempted: not even a blob went there.
    assert!(!registry.catalog().contains(&"fail/third".to_string()));
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines[lines.len() - 2],
        format!("destinations: pushed {a}; failed {dead}; not attempted {c}")
    );
    assert!(
        lines[lines.len() - 1].starts_with("oci-push: error: "),
        "{}",
        run.stderr
    );
    let json = run.json();
    assert_eq!(
        outcomes(&json),
        [
            (a, "pushed".to_string()),
            (dead, "failed".to_string()),
            (c.clone(), "notAttempted".to_string()),
        ]
    );
    assert_eq!(json["error"]["exitCode"], 3, "{json}");
    assert_eq!(
        json["destinations"][2]["reference"],
        format!("{c}@{}", image.manifest.digest).as_str()
    );
}

#[test]
fn a_destination_given_twice_is_pushed_once() {
    let registry = Registry::start();
    let front = FaultProxy::start(&registry, vec![]);
    let (image, layout) = image(64);
    let a = front.repo("twice/app");
    let run = push_to(&layout, &[&a, &a], &[]).ok();
    assert_eq!(run.last_line(), format!("{a}@{}", image.manifest.digest));
    assert!(!run.stderr.contains("destinations:"), "{}", run.stderr);
    registry.assert_manifest("twice/app", "v1", &image.manifest);
    // Once on the wire: the manifest by digest and the tag, each blob's upload once.
    assert_eq!(
        front.count("PUT", "/v2/twice/app/manifests/"),
        2,
        "{}",
        front.describe()
    );
    assert_eq!(
        front.count("POST", "/v2/twice/app/blobs/uploads/"),
        image.blobs().len(),
        "{}",
        front.describe()
    );
}

#[test]
fn a_dry_run_counts_the_blobs_a_later_destination_would_mount_and_writes_nothing() {
    let registry = Registry::start();
    let (image, layout) = image(65);
    let (a, b) = (registry.repo("dry/app"), registry.repo("dry/mirror"));
    let run = push_to(&layout, &[&a, &b], &["--dry-run", "--format", "json"]).ok();
    let json = run.json();
    let outcomes_of = |i: usize| -> Vec<String> {
        json["destinations"][i]["blobs"]
            .as_array()
            .expect("blobs")
            .iter()
            .map(|b| b["outcome"].as_str().expect("outcome").to_string())
            .collect()
    };
    let count = image.blobs().len();
    assert_eq!(outcomes_of(0), vec!["uploaded"; count]);
    assert_eq!(outcomes_of(1), vec!["mounted"; count]);
    assert!(
        run.stderr
            .contains(&format!("destinations: would push {a}, {b}\n")),
        "{}",
        run.stderr
    );
    for path in ["dry/app", "dry/mirror"] {
        registry.assert_nothing_tagged(path, &[&image.manifest.digest]);
    }
    assert!(registry.catalog().is_empty(), "{:?}", registry.catalog());
}

#[test]
fn verify_names_every_destination() {
    let (image, layout) = image(66);
    let work = tempfile::TempDir::new().expect("temp dir");
    let digest_file = work.path().join("digests");
    let layout_path = layout_arg(&layout);
    let args = [
        "--verify",
        "--layout",
        &layout_path,
        "-r",
        "r.example.com/a",
        "-r",
        "r.example.com/b",
    ];
    let run = oci_push_with(&args, &[], None).ok();
    let d = &image.manifest.digest;
    assert_eq!(
        run.stdout,
        format!("r.example.com/a@{d} r.example.com/b@{d}\n")
    );
    let mut with_file = args.to_vec();
    with_file.extend(["--digest-file", digest_file.to_str().expect("utf-8")]);
    oci_push_with(&with_file, &[], None).ok();
    assert_eq!(
        std::fs::read_to_string(&digest_file).expect("digest file"),
        format!("r.example.com/a@{d}\nr.example.com/b@{d}\n")
    );
}

/// A password or `--insecure` given for the run would go to every registry: refused when the
/// destinations are on more than one, before any request.
#[test]
fn run_wide_credentials_and_tls_overrides_are_refused_across_registries() {
    let (one, two) = (Registry::start(), Registry::start());
    let (image, layout) = image(67);
    let (a, b) = (one.repo("wide/app"), two.repo("wide/app"));
    let registries = format!("{}, {}", one.host(), two.host());
    for (extra, env, flag) in [
        (
            &["--username", ALICE_USER, "--password-stdin"][..],
            &[][..],
            "--username",
        ),
        (
            &[][..],
            &[
                ("OCI_PUSH_USERNAME", ALICE_USER),
                ("OCI_PUSH_PASSWORD", "x"),
            ][..],
            "OCI_PUSH_USERNAME",
        ),
        (&["--insecure"][..], &[][..], "--insecure"),
        (&["--plain-http"][..], &[][..], "--plain-http"),
        (
            &["--cert-file", "c.pem", "--key-file", "k.pem"][..],
            &[][..],
            "--cert-file",
        ),
    ] {
        let layout_path = layout_arg(&layout);
        let args = args(&layout_path, &[&a, &b], extra);
        let run = oci_push_with(&args, env, Some("pw\n"));
        assert_eq!(run.code, 1, "{flag}: {}", run.stderr);
        assert_eq!(
            run.error(),
            format!(
                "{flag} is for one registry, and the destinations are on 2 ({registries}); push to each registry in its own run, or log in to each (docker login, a credential helper)"
            )
        );
    }
    for registry in [&one, &two] {
        registry.assert_nothing_tagged("wide/app", &[&image.manifest.digest]);
        assert!(registry.catalog().is_empty(), "{:?}", registry.catalog());
    }
}

/// A token service that grants only the first scope asked for: the token of the first
/// destination does not cover the second, whose refusal puts its scope first and asks again.
#[test]
fn a_later_destination_s_scope_goes_first_for_a_token_service_that_reads_only_the_first() {
    let server = TokenServer::start(Policy {
        first_scope_only: true,
        ..Policy::default()
    });
    let registry = Registry::start_with(RegistryOptions::token(server.config()));
    let (image, layout) = image(68);
    let (a, b) = (registry.repo("first/a"), registry.repo("first/b"));
    let login = ["--username", ALICE_USER, "--password-stdin"];
    push_with_stdin(&layout, &[&a, &b], &login, &format!("{ALICE_PASSWORD}\n"));
    for path in ["first/a", "first/b"] {
        registry.assert_manifest(path, "v1", &image.manifest);
    }
    let firsts: Vec<String> = server
        .requests()
        .iter()
        .filter_map(|r| r.scopes.first().cloned())
        .collect();
    assert!(
        firsts.contains(&"repository:first/b:pull,push".to_string()),
        "no token asked with first/b's scope first: {firsts:?}"
    );
}

/// Each destination's JSON `seconds` is its own: the first's ends when it is done, not when
/// the run is (here the second waits 2 s for the registry's first answer).
#[test]
fn each_destination_s_seconds_are_its_own() {
    let (one, two) = (Registry::start(), Registry::start());
    // The second registry's first request waits 2 s before it is forwarded.
    let stall = Fault::stall(Duration::from_millis(2000));
    let slow = FaultProxy::start(&two, vec![Rule::nth(1, "*", "/v2/", stall)]);
    let (_, layout) = image(69);
    let (a, b) = (one.repo("time/app"), format!("{}/time/app", slow.host()));
    let run = push_to(&layout, &[&a, &b], &["--format", "json"]).ok();
    let json = run.json();
    let seconds = |i: usize| {
        json["destinations"][i]["seconds"]
            .as_f64()
            .expect("seconds")
    };
    assert!(seconds(1) >= 2.0, "{json}");
    assert!(
        seconds(0) < 1.0,
        "the first's time includes the second's: {json}"
    );
}

/// Podman's `auths` keys may name a namespace: two destinations on one registry, each with its
/// own entry, each get their own credentials (a client is shared only for the same secret).
#[test]
fn a_namespace_s_own_credentials_go_to_its_destination_only() {
    let registry = Registry::start();
    let basic = Fault::status(401).with_header("www-authenticate", "Basic realm=\"registry\"");
    let front = FaultProxy::start(
        &registry,
        vec![Rule::every("*", "/v2/", basic).without_credentials()],
    );
    let (image, layout) = image(70);
    let (a, b) = (
        format!("{}/team-a/app", front.host()),
        format!("{}/team-b/app", front.host()),
    );
    let entry = |user: &str| json!({ "auth": common::keys::b64(format!("{user}:{user}-pw")) });
    let sandbox = Sandbox::new();
    let config = json!({ "auths": {
        format!("{}/team-a", front.host()): entry("robot-a"),
        format!("{}/team-b", front.host()): entry("robot-b"),
    }});
    sandbox.home_docker_config(&config);
    let layout_path = layout_arg(&layout);
    sandbox
        .run(&args(&layout_path, &[&a, &b], &[]), &[], None)
        .ok();
    for path in ["team-a/app", "team-b/app"] {
        registry.assert_manifest(path, "v1", &image.manifest);
    }
    let basic_of = |user: &str| format!("Basic {}", common::keys::b64(format!("{user}:{user}-pw")));
    for request in front.requests() {
        let sent = request
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
            .map(|(_, value)| value.clone());
        let Some(sent) = sent else { continue };
        let own = match request.target.contains("/team-a/") {
            true => basic_of("robot-a"),
            false => basic_of("robot-b"),
        };
        assert_eq!(sent, own, "{} {}", request.method, request.target);
    }
    // Each namespace's requests carried credentials at all (the loop above skips bare ones).
    for (namespace, robot) in [("/team-a/", "robot-a"), ("/team-b/", "robot-b")] {
        let carried = front.requests().iter().any(|r| {
            r.target.contains(namespace)
                && r.headers
                    .iter()
                    .any(|(n, v)| n.eq_ignore_ascii_case("authorization") && *v == basic_of(robot))
        });
        assert!(
            carried,
            "no request to {namespace} carried {robot}'s credentials"
        );
    }
}

/// Destinations on one registry ask each credential helper once: a Bazel helper, and a
/// docker helper of `credHelpers`.
#[test]
fn a_helper_is_asked_once_for_destinations_on_one_registry() {
    let registry = Registry::start();
    let (image, layout) = image(72);
    let (a, b) = (registry.repo("once/a"), registry.repo("once/b"));
    let layout_path = layout_arg(&layout);
    let sandbox = Sandbox::new();
    let (helper, bazel_log) =
        sandbox.bazel_credential_helper("bazel-helper", &json!({"x-registry-key": ["k1"]}));
    let helper = helper.display().to_string();
    sandbox
        .run(
            &args(&layout_path, &[&a, &b], &["--credential-helper", &helper]),
            &[],
            None,
        )
        .ok();
    let asked = std::fs::read_to_string(&bazel_log).unwrap();
    assert_eq!(asked.lines().count(), 1, "{asked}");

    let sandbox = Sandbox::new();
    let docker_log = sandbox.docker_credential_helper("once", &[(&registry.host(), "u", "p")]);
    sandbox.home_docker_config(&json!({ "credHelpers": { registry.host(): "once" } }));
    sandbox
        .run(&args(&layout_path, &[&a, &b], &[]), &[], None)
        .ok();
    let asked = std::fs::read_to_string(&docker_log).unwrap();
    assert_eq!(asked.lines().count(), 1, "{asked}");
    for path in ["once/a", "once/b"] {
        registry.assert_manifest(path, "v1", &image.manifest);
    }
}

/// Every destination's credentials are found before the first push: a helper that fails for
/// the second registry ends the run with nothing pushed to the first.
#[test]
fn a_later_registry_s_failing_helper_ends_the_run_before_any_push() {
    let (one, two) = (Registry::start(), Registry::start());
    let (image, layout) = image(71);
    let (a, b) = (one.repo("setup/app"), two.repo("setup/app"));
    let sandbox = Sandbox::new();
    sandbox.script(
        "docker-credential-broken",
        "#!/bin/sh\necho 'the keychain is locked' >&2\nexit 3\n",
    );
    sandbox.home_docker_config(&json!({ "credHelpers": { two.host(): "broken" } }));
    let layout_path = layout_arg(&layout);
    let run = sandbox.run(
        &args(&layout_path, &[&a, &b], &["--format", "json"]),
        &[],
        None,
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.error().contains("the keychain is locked"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(&format!("destinations: failed {b}; not attempted {a}\n")),
        "{}",
        run.stderr
    );
    one.assert_nothing_tagged("setup/app", &[&image.manifest.digest]);
    assert!(one.catalog().is_empty(), "{:?}", one.catalog());
    let json = run.json();
    assert_eq!(
        json["destinations"][0]["reference"],
        format!("{a}@{}", image.manifest.digest).as_str(),
        "a destination not attempted is named with the image's digest"
    );
    assert_eq!(
        outcomes(&json),
        [(a, "notAttempted".to_string()), (b, "failed".to_string())]
    );
}
