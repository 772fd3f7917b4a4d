//! Property tests of the parsers: whatever they are given, they never panic, every error is one
//! line of kind Invalid (or Usage for the command line), and what they accept keeps its
//! invariants, checked against straightforward models written here. Cases proptest found are
//! kept as the plain regression tests at the end.
//!
//! The `WWW-Authenticate` parser (`registry::challenge`) is private, so it is exercised through
//! the binary: a stub registry (the fault proxy answering 401 to everything) sends generated
//! challenges, and `oci-push` must fail cleanly.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use oci_push::error::Kind;
use oci_push::layout::Layout;
use oci_push::reference::{strip_tag_and_digest, Repository};
use oci_push::tags::{check_tag, read_tags_file};
use oci_push::{cli, units};
use proptest::prelude::*;
use serde_json::Value;

use common::faults::{run_bounded, Fault, FaultProxy, Rule};
use common::{free_port, sha256, Image, Types};

/// Failures are kept below as regression tests, not in proptest-regressions/ files.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        // Shrinking stays quick even where every step writes files or runs the binary.
        max_shrink_iters: 300,
        max_shrink_time: 5_000,
        ..ProptestConfig::default()
    }
}

fn one_line(message: &str) -> bool {
    !message.contains('\n') && !message.contains('\r')
}

// ---------------------------------------------------------------------------------------------
// Models

/// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`, character by character.
fn model_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    !bytes.is_empty()
        && bytes.len() <= 128
        && word(bytes[0])
        && bytes[1..]
            .iter()
            .all(|&b| word(b) || b == b'.' || b == b'-')
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`: runs of letters and digits, joined by separators.
fn model_component(component: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut runs: Vec<(bool, String)> = Vec::new();
    for c in component.chars() {
        match runs.last_mut() {
            Some((kind, run)) if *kind == alnum(c) => run.push(c),
            _ => runs.push((alnum(c), c.to_string())),
        }
    }
    match (runs.first(), runs.last()) {
        (Some((true, _)), Some((true, _))) => {
            runs.iter().filter(|(kind, _)| !kind).all(|(_, sep)| {
                sep == "." || sep == "_" || sep == "__" || sep.chars().all(|c| c == '-')
            })
        }
        _ => false,
    }
}

/// The tags a tags file holds, or None when it must be refused.
fn model_tags_file(bytes: &[u8]) -> Option<Vec<String>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let tags: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    tags.iter().all(|t| model_tag(t)).then_some(tags)
}

// ---------------------------------------------------------------------------------------------
// Strategies

fn tag_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_][A-Za-z0-9._-]{0,130}",
        "[A-Za-z0-9._:/@+ \t\n\r\u{0}é\u{feff}-]{0,140}",
        ".{0,140}",
        (125usize..132, "[a-z]").prop_map(|(n, c)| c.repeat(n)),
        (60usize..132, "[a-zé_.-]").prop_map(|(n, c)| format!("a{}", c.repeat(n))),
    ]
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("localhost".to_string()),
        Just("localhost:5000".to_string()),
        Just("127.0.0.1:5000".to_string()),
        Just("[::1]:5000".to_string()),
        Just("[fe80::1]".to_string()),
        Just("ghcr.io".to_string()),
        "[a-z0-9]{1,8}(-[a-z0-9]{1,4})?\\.[a-z]{2,5}(:[0-9]{1,5})?",
    ]
}

fn component() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,6}((\\.|_|__|-{1,3})[a-z0-9]{1,6}){0,2}"
}

/// A repository the grammar accepts: host and 1 to 4 path components.
fn valid_repository() -> impl Strategy<Value = (String, String)> {
    (host(), prop::collection::vec(component(), 1..5))
        .prop_map(|(host, parts)| (host, parts.join("/")))
        .prop_filter("at most 255 characters", |(h, p)| {
            h.len() + 1 + p.len() <= 255
        })
}

fn hex64() -> impl Strategy<Value = String> {
    "[0-9a-f]{64}"
}

/// Strings a JSON document might hold where a digest, media type or name goes.
fn interesting_string() -> impl Strategy<Value = String> {
    prop_oneof![
        hex64().prop_map(|h| format!("sha256:{h}")),
        "[0-9a-f]{32}".prop_map(|h| format!("md5:{h}")),
        "[0-9a-f]{128}".prop_map(|h| format!("sha512:{h}")),
        hex64().prop_map(|h| format!("sha256:{}", h.to_uppercase())),
        Just("sha256:../../../../etc/passwd".to_string()),
        Just("sha256:a\nb".to_string()),
        Just(String::new()),
        Just(OCI_MANIFEST.to_string()),
        Just(OCI_INDEX.to_string()),
        Just("application/vnd.docker.distribution.manifest.v2+json".to_string()),
        Just("application/vnd.docker.distribution.manifest.list.v2+json".to_string()),
        Just("text/plain\nsecond line".to_string()),
        ".{0,24}",
    ]
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("schemaVersion".to_string()),
        Just("mediaType".to_string()),
        Just("config".to_string()),
        Just("layers".to_string()),
        Just("manifests".to_string()),
        Just("digest".to_string()),
        Just("size".to_string()),
        Just("annotations".to_string()),
        Just("platform".to_string()),
        Just("urls".to_string()),
        Just("subject".to_string()),
        Just("artifactType".to_string()),
        Just("imageLayoutVersion".to_string()),
        "[a-zA-Z.]{0,10}",
    ]
}

/// Any JSON value, leaning towards the shapes and names of OCI documents.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        Just(Value::from(2)),
        interesting_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(json_key(), inner, 0..7)
                .prop_map(|m: BTreeMap<String, Value>| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A descriptor for `bytes` as the layout holds them, its fields each right or mutated.
fn descriptor_for(bytes: Vec<u8>) -> impl Strategy<Value = Value> {
    let digest = sha256(&bytes);
    let size = bytes.len() as u64;
    (
        prop_oneof![
            4 => Just(Value::from(digest)),
            1 => interesting_string().prop_map(Value::from),
            1 => json_value(),
        ],
        prop_oneof![
            4 => Just(Value::from(size)),
            1 => any::<u64>().prop_map(Value::from),
            1 => Just(Value::from(-1)),
            1 => Just(Value::from(1.5)),
            1 => Just(Value::from("12")),
        ],
        prop_oneof![
            2 => Just(Value::from(OCI_MANIFEST)),
            1 => Just(Value::from("application/vnd.oci.image.layer.v1.tar+gzip")),
            1 => interesting_string().prop_map(Value::from),
        ],
        prop::option::of(json_value()),
    )
        .prop_map(|(digest, size, media_type, extra)| {
            let mut d =
                serde_json::json!({"mediaType": media_type, "digest": digest, "size": size});
            if let Some(extra) = extra {
                d["annotations"] = extra;
            }
            d
        })
}

/// The three files of a layout: `oci-layout`, `index.json`, and one manifest blob (written
/// under its own digest), plus a config and a layer the manifest may name.
#[derive(Debug, Clone)]
struct LayoutFiles {
    marker: Vec<u8>,
    index: Vec<u8>,
    manifest: Vec<u8>,
}

fn config_bytes() -> Vec<u8> {
    br#"{"architecture":"amd64","os":"linux"}"#.to_vec()
}

fn layer_bytes() -> Vec<u8> {
    common::pseudo_random(90, 1000)
}

fn layout_files() -> impl Strategy<Value = LayoutFiles> {
    let marker = prop_oneof![
        6 => Just(br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ];
    let manifest = prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..256),
        2 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        4 => (
            descriptor_for(config_bytes()),
            prop::collection::vec(descriptor_for(layer_bytes()), 0..3),
            prop_oneof![
                Just(Value::from(OCI_MANIFEST)),
                Just(Value::from(OCI_INDEX)),
                interesting_string().prop_map(Value::from),
            ],
        )
            .prop_map(|(config, layers, media_type)| {
                serde_json::to_vec(&serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": media_type,
                    "config": config,
                    "layers": layers,
                    "manifests": [],
                }))
                .unwrap()
            }),
    ];
    (marker, manifest)
        .prop_flat_map(|(marker, manifest)| {
            let index = prop_oneof![
                1 => prop::collection::vec(any::<u8>(), 0..128),
                1 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
                4 => prop::collection::vec(descriptor_for(manifest.clone()), 0..3).prop_map(
                    |descriptors| {
                        serde_json::to_vec(
                            &serde_json::json!({"schemaVersion": 2, "manifests": descriptors}),
                        )
                        .unwrap()
                    }
                ),
            ];
            (Just(marker), index, Just(manifest))
        })
        .prop_map(|(marker, index, manifest)| LayoutFiles {
            marker,
            index,
            manifest,
        })
}

/// Writes the files into `dir` (emptied first).
fn write_layout_files(dir: &Path, files: &LayoutFiles) {
    let _ = std::fs::remove_dir_all(dir);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(dir.join("oci-layout"), &files.marker).unwrap();
    std::fs::write(dir.join("index.json"), &files.index).unwrap();
    for bytes in [&files.manifest, &config_bytes(), &layer_bytes()] {
        let digest = sha256(bytes);
        std::fs::write(blobs.join(&digest["sha256:".len()..]), bytes).unwrap();
    }
}

/// Opens the layout in `dir` and checks the invariants; returns the error message, if any.
fn check_layout(dir: &Path) -> Result<(), TestCaseError> {
    match Layout::open(dir) {
        Err(e) => {
            prop_assert_eq!(e.kind(), Kind::Invalid, "{}", e);
            prop_assert!(
                one_line(&e.to_string()),
                "a multi-line error: {:?}",
                e.to_string()
            );
        }
        Ok(layout) => {
            prop_assert!(!layout.manifests.is_empty());
            let blobs = dir.join("blobs");
            for manifest in &layout.manifests {
                prop_assert_eq!(&sha256(&manifest.bytes), &manifest.digest);
            }
            for blob in &layout.blobs {
                prop_assert!(blob.path.starts_with(&blobs), "{:?}", blob.path);
                let meta = std::fs::metadata(&blob.path);
                prop_assert!(meta.is_ok(), "{:?}", blob.path);
                prop_assert_eq!(meta.unwrap().len(), blob.size);
            }
            let index: Value =
                serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
            prop_assert_eq!(
                Some(layout.top().digest.as_str()),
                index["manifests"][0]["digest"].as_str()
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Tags

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn check_tag_accepts_exactly_the_grammar(tag in tag_like()) {
        match check_tag(&tag) {
            Ok(()) => prop_assert!(model_tag(&tag), "accepted {:?}", tag),
            Err(e) => {
                prop_assert!(!model_tag(&tag), "refused {:?}: {}", tag, e);
                prop_assert_eq!(e.kind(), Kind::Invalid);
                let message = e.to_string();
                prop_assert!(one_line(&message), "{:?}", message);
                prop_assert!(message.starts_with("invalid tag '"), "{}", message);
                // A length given as the reason is over the limit.
                if let Some(at) = message.find(" characters long") {
                    let n: usize = message[..at]
                        .rsplit(' ')
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                    prop_assert!(n > 128, "{}", message);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn read_tags_file_on_any_bytes(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..256),
            prop::collection::vec(
                prop_oneof![
                    "[A-Za-z0-9_][A-Za-z0-9._-]{0,20}",
                    "[ \t]{0,3}[A-Za-z0-9_.:-]{0,10}[ \t\r]{0,3}",
                    Just(String::new()),
                    ".{0,12}",
                ],
                0..12,
            )
            .prop_flat_map(|lines| {
                (Just(lines), prop_oneof![Just("\n"), Just("\r\n")])
            })
            .prop_map(|(lines, end)| lines.join(end).into_bytes()),
        ]
    ) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, &bytes).unwrap();
        let expected = model_tags_file(&bytes);
        match read_tags_file(file.path()) {
            Ok(tags) => {
                prop_assert_eq!(Some(tags.clone()), expected);
                for tag in &tags {
                    prop_assert!(check_tag(tag).is_ok());
                }
            }
            Err(e) => {
                prop_assert!(expected.is_none(), "refused a good file: {}", e);
                prop_assert_eq!(e.kind(), Kind::Invalid);
                prop_assert!(one_line(&e.to_string()), "{:?}", e.to_string());
                let shown = file.path().display().to_string();
                prop_assert!(e.to_string().contains(&shown), "{}", e);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Repositories

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn valid_repositories_round_trip((host, path) in valid_repository()) {
        let input = format!("{host}/{path}");
        let repo = Repository::parse(&input);
        prop_assert!(repo.is_ok(), "{}: {}", input, repo.unwrap_err());
        let repo = repo.unwrap();
        prop_assert_eq!(repo.to_string(), input.clone());
        prop_assert_eq!(repo.registry(), host.as_str());
        prop_assert_eq!(repo.path(), path.as_str());
        prop_assert_eq!(Repository::parse(&repo.to_string()).unwrap(), repo);
        prop_assert_eq!(strip_tag_and_digest(&input), input.as_str());
    }

    #[test]
    fn a_tag_or_digest_on_a_repository_is_refused(
        (host, path) in valid_repository(),
        tag in "[A-Za-z0-9_][A-Za-z0-9._-]{0,20}",
        hex in hex64(),
        form in 0..3usize,
    ) {
        let base = format!("{host}/{path}");
        let (input, reason) = match form {
            0 => (format!("{base}:{tag}"), "it has a tag"),
            1 => (format!("{base}@sha256:{hex}"), "it has a digest"),
            _ => (format!("{base}:{tag}@sha256:{hex}"), "it has a digest"),
        };
        let err = Repository::parse(&input);
        prop_assert!(err.is_err(), "accepted {}", input);
        let err = err.unwrap_err();
        prop_assert_eq!(err.kind(), Kind::Invalid);
        prop_assert!(err.to_string().contains(reason), "{}: {}", input, err);
        prop_assert_eq!(strip_tag_and_digest(&input), base.as_str());
    }

    #[test]
    fn upper_case_or_a_scheme_is_refused(
        (host, path) in valid_repository(),
        at in any::<prop::sample::Index>(),
        scheme in prop_oneof![Just("https"), Just("http"), Just("oci"), Just("docker")],
    ) {
        let letters: Vec<usize> = path
            .char_indices()
            .filter(|(_, c)| c.is_ascii_lowercase())
            .map(|(i, _)| i)
            .collect();
        if !letters.is_empty() {
            let i = letters[at.index(letters.len())];
            let mut upper = path.clone();
            upper.replace_range(i..i + 1, &path[i..i + 1].to_uppercase());
            let err = Repository::parse(&format!("{host}/{upper}"));
            prop_assert!(err.is_err(), "accepted {}/{}", host, upper);
            prop_assert!(err.unwrap_err().to_string().contains("lower case"));
        }
        let err = Repository::parse(&format!("{scheme}://{host}/{path}"));
        prop_assert!(err.is_err());
        prop_assert!(err.unwrap_err().to_string().contains("scheme"));
    }

    #[test]
    fn any_string_as_a_repository(
        input in prop_oneof![
            ".{0,80}",
            "[a-zA-Z0-9.:/@_\\[\\] \n-]{0,60}",
            (host(), "[a-zA-Z0-9._/:@ -]{0,40}").prop_map(|(h, p)| format!("{h}/{p}")),
        ]
    ) {
        let _ = strip_tag_and_digest(&input);
        match Repository::parse(&input) {
            Ok(repo) => {
                prop_assert!(!input.contains('@'), "{}", input);
                prop_assert!(input.len() <= 255);
                for component in repo.path().split('/') {
                    prop_assert!(model_component(component), "{:?} in {:?}", component, input);
                }
                prop_assert_eq!(Repository::parse(&repo.to_string()).unwrap(), repo);
            }
            Err(e) => {
                prop_assert_eq!(e.kind(), Kind::Invalid);
                prop_assert!(one_line(&e.to_string()), "{:?}", e.to_string());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Layouts

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn layout_open_on_any_files(files in layout_files()) {
        let dir = tempfile::TempDir::new().unwrap();
        let root = dir.path().join("layout");
        write_layout_files(&root, &files);
        check_layout(&root)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Durations, sizes and the command line

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn durations_and_sizes(text in prop_oneof![
        "[0-9.]{0,25}(ms|s|m|h|d|MiB|KiB|M|k|G|B|b|x)?",
        ".{0,12}",
    ]) {
        match units::parse_duration("--timeout", &text) {
            Ok(d) => prop_assert!(d >= Duration::from_millis(1), "{:?}: {:?}", text, d),
            Err(e) => {
                prop_assert_eq!(e.kind(), Kind::Usage);
                prop_assert!(one_line(&e.to_string()), "{:?}", e.to_string());
            }
        }
        match units::parse_size("--chunk-size", &text) {
            Ok(n) => prop_assert!(n >= 1, "{:?}", text),
            Err(e) => {
                prop_assert_eq!(e.kind(), Kind::Usage);
                prop_assert!(one_line(&e.to_string()), "{:?}", e.to_string());
            }
        }
    }

    #[test]
    fn whole_numbers_with_units(n in 1u64..100_000, unit in 0..4usize) {
        let (suffix, millis) = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000)][unit];
        prop_assert_eq!(
            units::parse_duration("--timeout", &format!("{n}{suffix}")).unwrap(),
            Duration::from_millis(n * millis)
        );
        prop_assert_eq!(
            units::parse_duration("--timeout", &n.to_string()).unwrap(),
            Duration::from_secs(n)
        );
        let (suffix, scale) = [("", 1), ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30)][unit];
        prop_assert_eq!(units::parse_size("--chunk-size", &format!("{n}{suffix}")).unwrap(), n * scale);
    }

    #[test]
    fn the_command_line_never_panics(
        args in prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec![
                    "--layout", "-r", "--repository", "--repository-file", "--tags-file", "-t",
                    "--tag", "--digest-file", "--plain-http", "--insecure", "--ca-file",
                    "--verbose", "--username", "-j", "--jobs", "--retries", "--timeout",
                    "--chunk-size", "--mount-from", "--verify", "-q", "--quiet", "--format",
                    "--dry-run", "--nope", "-", "--", "-tj", "--tag=", "--jobs=3",
                ])
                .prop_map(String::from),
                "[a-zA-Z0-9.:@_ -]{0,16}",
                Just("127.0.0.1:5000/app".to_string()),
            ],
            0..10,
        )
    ) {
        let argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        if let Err(e) = cli::parse(argv) {
            prop_assert!(
                matches!(e.kind(), Kind::Usage | Kind::Invalid),
                "{:?}: {:?} {}", args, e.kind(), e
            );
            prop_assert!(one_line(&e.to_string()), "{:?}: {:?}", args, e.to_string());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// WWW-Authenticate, through the binary

/// Where the stub's token URL goes in a generated challenge.
const REALM: &str = "REALM";

/// A challenge header built from pieces real and broken. No piece has '/' or ':', so no piece
/// is a URL but the realm, which is replaced by the stub's own URL.
fn challenge() -> impl Strategy<Value = String> {
    let scheme = prop_oneof![
        Just("Bearer"),
        Just("Basic"),
        Just("bearer"),
        Just("Digest"),
        Just("Negotiate"),
        Just(""),
        Just("=")
    ];
    let value = prop_oneof![
        Just(format!("\"{REALM}\"")),
        Just(REALM.to_string()),
        "\"[a-zA-Z0-9 ,=\\\\\"é-]{0,12}\"",
        "\"[a-zA-Z0-9 ,=-]{0,12}",
        "[a-zA-Z0-9,=\" -]{0,8}",
    ];
    let key = prop_oneof![
        Just("realm"),
        Just("service"),
        Just("scope"),
        Just("error"),
        Just("charset"),
        Just(""),
        Just("Realm"),
    ];
    let param = (key, value).prop_map(|(k, v)| format!("{k}={v}"));
    let challenge = (scheme, prop::collection::vec(param, 0..4))
        .prop_map(|(scheme, params)| format!("{scheme} {}", params.join(", ")));
    prop::collection::vec(challenge, 1..3).prop_map(|c| c.join(", "))
}

proptest! {
    #![proptest_config(config(40))]

    #[test]
    fn any_challenge_fails_cleanly(header in challenge()) {
        prop_assert!(!header.contains('/') && !header.contains(':'), "{}", header);
        let stub = FaultProxy::start_to(free_port(), vec![]);
        let header = header.replace(REALM, &format!("{}/token", stub.url()));
        stub.add(Rule::every(
            "*",
            "",
            Fault::status(401).with_header("WWW-Authenticate", &header),
        ));
        let image = Image::sized(Types::Oci, 91, 1, 100);
        let layout = common::image_layout(&image);
        let (run, took) = run_bounded(
            [
                OsString::from("--layout"),
                layout.path().into(),
                OsString::from("-r"),
                OsString::from(stub.repo("app")),
                OsString::from("-t"),
                OsString::from("v1"),
            ],
            Duration::from_secs(20),
        );
        prop_assert!(!run.stderr.contains("panicked"), "{}: {}", header, run.stderr);
        prop_assert!(
            run.code == 2 || run.code == 5,
            "{:?}: exit {}\n{}", header, run.code, run.stderr
        );
        prop_assert_eq!(run.error_count(), 1, "{:?}: {}", header, run.stderr);
        prop_assert!(run.stderr.lines().all(|l| !l.is_empty()), "{}", run.stderr);
        prop_assert!(took < Duration::from_secs(10), "{:?}", took);
        // Nothing but what the stub serves was asked: the registry API, and the token URL that
        // the challenge's realm names. A realm misread into another path (a piece of another
        // parameter, the challenge's rest) would show here.
        let requests = stub.requests();
        prop_assert!(!requests.is_empty(), "{:?}: no request reached the stub", header);
        for seen in &requests {
            prop_assert!(seen.header("host") == Some(stub.host().as_str()), "{:?}", seen);
            prop_assert!(
                seen.path().starts_with("/v2/") || seen.path() == "/token",
                "{:?}: a request to {:?}:\n{}", header, seen.target, stub.describe()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Regression cases (found by the properties above)

#[test]
fn regression_long_non_ascii_tag_names_the_character() {
    // 65 characters in 129 bytes: refused for 'é', not for a length under the limit.
    let tag = format!("a{}", "é".repeat(64));
    let message = check_tag(&tag).unwrap_err().to_string();
    assert!(message.contains("'é'"), "{message}");
    assert!(!message.contains("65 characters long"), "{message}");
}

#[test]
fn regression_repository_with_a_line_break_is_a_one_line_error() {
    let message = Repository::parse("ghcr.io/a\nb").unwrap_err().to_string();
    assert!(one_line(&message), "{message:?}");
}

#[test]
fn regression_digest_with_a_line_break_is_a_one_line_error() {
    let dir = tempfile::TempDir::new().unwrap();
    let files = LayoutFiles {
        marker: br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        index: serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": "sha256:a\nb", "size": 1}],
        }))
        .unwrap(),
        manifest: b"{}".to_vec(),
    };
    write_layout_files(dir.path(), &files);
    let message = Layout::open(dir.path()).unwrap_err().to_string();
    assert!(one_line(&message), "{message:?}");
}

#[test]
fn regression_media_type_with_a_line_break_is_a_one_line_error() {
    let dir = tempfile::TempDir::new().unwrap();
    let manifest = br#"{"schemaVersion":2,"mediaType":"text/plain\nsecond line"}"#.to_vec();
    let files = LayoutFiles {
        marker: br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        index: serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(&manifest), "size": manifest.len()}],
        }))
        .unwrap(),
        manifest,
    };
    write_layout_files(dir.path(), &files);
    let message = Layout::open(dir.path()).unwrap_err().to_string();
    assert!(one_line(&message), "{message:?}");
}

#[test]
fn regression_flag_value_with_a_line_break_is_a_one_line_error() {
    let message = units::parse_duration("--timeout", "x\ny")
        .unwrap_err()
        .to_string();
    assert!(one_line(&message), "{message:?}");
}

/// Pushes a small image to a stub that answers every request 401 with this challenge.
fn push_against_challenge(header: &str) -> common::Run {
    let stub = FaultProxy::start_to(free_port(), vec![]);
    let header = header.replace(REALM, &format!("{}/token", stub.url()));
    stub.add(Rule::every(
        "*",
        "",
        Fault::status(401).with_header("WWW-Authenticate", &header),
    ));
    let image = Image::sized(Types::Oci, 92, 1, 100);
    let layout = common::image_layout(&image);
    run_bounded(
        [
            OsString::from("--layout"),
            layout.path().into(),
            OsString::from("-r"),
            OsString::from(stub.repo("app")),
        ],
        Duration::from_secs(20),
    )
    .0
}

#[test]
fn regression_a_bearer_challenge_without_a_usable_realm_is_the_registry_s_fault() {
    // Found by any_challenge_fails_cleanly: an empty realm gave exit 1 and
    // "token server : ...: cannot build request GET ?…: invalid format".
    for (header, says_realm) in [
        ("Bearer realm=\"\"", true),
        ("Bearer realm=\"not a url\",service=\"x\"", true),
        ("Bearer service=\"x\"", false),
    ] {
        let run = push_against_challenge(header);
        assert!(
            run.code == 2 || run.code == 5,
            "{header}: exit {}\n{}",
            run.code,
            run.stderr
        );
        assert_eq!(run.error_count(), 1, "{}", run.stderr);
        assert!(
            !says_realm || run.error().contains("realm"),
            "{header}: say what is wrong:\n{}",
            run.stderr
        );
    }
    // A working realm (the stub refuses the token too): a clean refusal.
    let run = push_against_challenge(&format!("Bearer realm=\"{REALM}\",service=\"stub\""));
    assert_eq!(run.code, 2, "{}", run.stderr);
}
