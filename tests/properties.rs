//! Property tests of the parsers of untrusted text: whatever they are given, they never panic,
//! every error is one line of kind Invalid (Usage for the command line, Auth for credentials
//! and token answers), and what they accept keeps its invariants, checked against
//! straightforward models written here. Cases proptest found are kept as the plain regression
//! tests at the end.
//!
//! What registries and token servers send (`Retry-After`, `WWW-Authenticate`, token answers)
//! is parsed through `registry::parsers`. `WWW-Authenticate` is also exercised end to end:
//! a stub registry (the fault proxy answering 401 to everything) sends generated challenges,
//! and `oci-push` must fail cleanly.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use oci_push::auth::{from_config_text, Secret};
use oci_push::error::Kind;
use oci_push::layout::{Layout, Source};
use oci_push::reference::{strip_tag_and_digest, Repository};
use oci_push::registry::parsers;
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
                // Without oci-push-thin.json every blob is a file of the layout.
                let Source::File(path) = &blob.source else {
                    return Err(TestCaseError::fail(format!("{blob:?} is not a file")));
                };
                prop_assert!(path.starts_with(&blobs), "{:?}", path);
                let meta = std::fs::metadata(path);
                prop_assert!(meta.is_ok(), "{:?}", path);
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
// Retry-After

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// 9999-12-31 23:59:59 GMT, the last second a four-digit year can name.
const LAST_DATE: u64 = 253_402_300_799;

fn leap(year: u64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in(year: u64, month: usize) -> u64 {
    [
        31,
        28 + u64::from(leap(year)),
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ][month]
}

/// The IMF-fixdate of `t` seconds after the epoch. Counted out year by year and month by month:
/// slow, but too plain to share a mistake with the library's closed-form day arithmetic, and
/// the opposite direction (seconds to date) of what the library computes.
fn model_imf_fixdate(t: u64) -> String {
    let (mut days, clock) = (t / 86_400, t % 86_400);
    // 1970-01-01 was a Thursday.
    let weekday = WEEKDAYS[((days + 4) % 7) as usize];
    let mut year = 1970;
    while days >= 365 + u64::from(leap(year)) {
        days -= 365 + u64::from(leap(year));
        year += 1;
    }
    let mut month = 0;
    while days >= days_in(year, month) {
        days -= days_in(year, month);
        month += 1;
    }
    format!(
        "{weekday}, {:02} {} {year} {:02}:{:02}:{:02} GMT",
        days + 1,
        MONTHS[month],
        clock / 3600,
        clock / 60 % 60,
        clock % 60
    )
}

/// Seconds from the epoch to a date whose fields are in range; a day past its month's end
/// runs on into the next month (31 Feb is 3 Mar), the way a lenient reader would count it.
fn model_epoch_seconds(year: u64, month: usize, day: u64, h: u64, m: u64, s: u64) -> u64 {
    let days = (1970..year).map(|y| 365 + u64::from(leap(y))).sum::<u64>()
        + (0..month).map(|mo| days_in(year, mo)).sum::<u64>()
        + day
        - 1;
    days * 86_400 + h * 3600 + m * 60 + s
}

/// How long from `now` until `t` seconds after the epoch; zero once it has passed.
fn until(t: u64, now: SystemTime) -> Duration {
    (SystemTime::UNIX_EPOCH + Duration::from_secs(t))
        .duration_since(now)
        .unwrap_or(Duration::ZERO)
}

/// The clock moves while the parser runs, and the parser may round to whole seconds.
const CLOCK_SLACK: Duration = Duration::from_secs(2);

/// Checks a `Retry-After` the parser read as a date `t` seconds after the epoch.
fn check_wait_until(
    got: Option<Duration>,
    t: u64,
    before: SystemTime,
    after: SystemTime,
) -> Result<(), TestCaseError> {
    prop_assert!(got.is_some(), "a valid date was not read");
    let got = got.unwrap();
    prop_assert!(got <= until(t, before) + CLOCK_SLACK, "{:?} for {}", got, t);
    prop_assert!(got + CLOCK_SLACK >= until(t, after), "{:?} for {}", got, t);
    let now = before.duration_since(SystemTime::UNIX_EPOCH).unwrap();
    if t + CLOCK_SLACK.as_secs() < now.as_secs() {
        // A date in the past means "now", never a wait computed from a wrapped subtraction.
        prop_assert_eq!(got, Duration::ZERO);
    }
    Ok(())
}

/// A date field: mostly in range, sometimes at or just past an edge, sometimes any u64 (where
/// multiplying into seconds would overflow).
fn date_number(
    valid: std::ops::RangeInclusive<u64>,
    edges: &'static [u64],
) -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => valid,
        2 => prop::sample::select(edges),
        1 => any::<u64>(),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn retry_after_never_panics(text in prop_oneof![
        "(?s).{0,64}",
        "[0-9 \t+.eE-]{0,40}",
        "[A-Za-z]{0,4},? [0-9]{0,25} [A-Za-z]{0,4} [0-9]{0,25} [0-9:]{0,30} (GMT|UTC|)",
        prop::collection::vec(any::<u64>(), 6)
            .prop_map(|n| format!("Sun, {} Nov {} {}:{}:{} GMT", n[0], n[1], n[2], n[3], n[4])),
    ]) {
        let _ = parsers::retry_after(&text);
    }

    #[test]
    fn retry_after_in_seconds_is_exactly_that_many_seconds(
        n in prop_oneof![any::<u64>(), 0u64..1000, Just(u64::MAX)],
        blank in prop::sample::select(vec!["", " ", "\t", "  "]),
    ) {
        prop_assert_eq!(
            parsers::retry_after(&format!("{blank}{n}{blank}")),
            Some(Duration::from_secs(n))
        );
    }

    #[test]
    fn retry_after_digits_past_u64_are_refused_not_wrapped(digits in "[0-9]{1,40}") {
        let model = digits.bytes().try_fold(0u64, |n, d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        });
        prop_assert_eq!(parsers::retry_after(&digits), model.map(Duration::from_secs));
        prop_assert_eq!(parsers::retry_after(&format!("-{digits}")), None);
    }

    #[test]
    fn retry_after_a_date_is_the_wait_until_it(t in {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        prop_oneof![
            0..=LAST_DATE,
            now - 3 * 86_400..=now + 3 * 86_400,
            now - 5..=now + 5,
            Just(0),
            Just(LAST_DATE),
        ]
    }) {
        let date = model_imf_fixdate(t);
        let before = SystemTime::now();
        let got = parsers::retry_after(&date);
        let after = SystemTime::now();
        check_wait_until(got, t, before, after).map_err(|e| {
            TestCaseError::fail(format!("{date:?}: {e}"))
        })?;
    }

    #[test]
    fn retry_after_dates_with_any_numbers_never_overflow(
        weekday in prop::sample::select(vec!["Mon", "Sun", "", "Xyz"]),
        day in date_number(1..=31, &[0, 1, 28, 29, 30, 31, 32, 99, u64::MAX]),
        month in prop_oneof![
            8 => (0usize..12).prop_map(Some),
            1 => Just(None),
        ],
        junk_month in prop::sample::select(vec!["jan", "JAN", "Foo", "", "13"]),
        year in date_number(
            1970..=9999,
            &[0, 1969, 1970, 9999, 10_000, 292_277_026_596, u64::MAX / 86_400, u64::MAX],
        ),
        h in date_number(0..=23, &[0, 23, 24, u64::MAX / 3600, u64::MAX]),
        m in date_number(0..=59, &[59, 60, u64::MAX / 60, u64::MAX]),
        s in date_number(0..=60, &[59, 60, 61, u64::MAX]),
    ) {
        let month_name = month.map_or(junk_month, |i| MONTHS[i]);
        let date = format!("{weekday}, {day:02} {month_name} {year} {h}:{m}:{s} GMT");
        let before = SystemTime::now();
        let got = parsers::retry_after(&date);
        let after = SystemTime::now();
        let in_range = (1..=31).contains(&day)
            && (1970..=9999).contains(&year)
            && h <= 23
            && m <= 59
            && s <= 60;
        match month {
            Some(month) if in_range => {
                // A day past its month's end (31 Feb) may be refused, or read as the days it
                // runs over; a real date must be read.
                if got.is_some() || day <= days_in(year, month) {
                    let t = model_epoch_seconds(year, month, day, h, m, s);
                    check_wait_until(got, t, before, after).map_err(|e| {
                        TestCaseError::fail(format!("{date:?}: {e}"))
                    })?;
                }
            }
            _ => prop_assert_eq!(got, None, "{:?}", date),
        }
    }
}

#[test]
fn the_date_model_agrees_with_the_rfc_example() {
    assert_eq!(
        model_imf_fixdate(784_111_777),
        "Sun, 06 Nov 1994 08:49:37 GMT"
    );
    assert_eq!(model_imf_fixdate(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(
        model_imf_fixdate(LAST_DATE),
        "Fri, 31 Dec 9999 23:59:59 GMT"
    );
    assert_eq!(model_epoch_seconds(1994, 10, 6, 8, 49, 37), 784_111_777);
}

// ---------------------------------------------------------------------------------------------
// Token server answers

/// Whether a push can use the answer: a non-empty string under `token` or `access_token`
/// (the distribution spec's two names for it).
fn model_token_answer(value: &Value) -> bool {
    let usable = |name: &str| {
        value
            .get(name)
            .and_then(Value::as_str)
            .is_some_and(|t| !t.is_empty())
    };
    usable("token") || usable("access_token")
}

/// Every generated token starts so; an error that shows one leaks a credential.
const TOKEN_MARK: &str = "tok-";

fn token_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => "tok-[A-Za-z0-9._~+/=-]{8,40}".prop_map(Value::from),
        2 => Just(Value::from("")),
        1 => "tok-(?s).{0,8}".prop_map(Value::from),
        2 => json_value().prop_filter("not a string", |v| !v.is_string()),
    ]
}

/// `expires_in` as JSON text: what serde reads as u64, i64 or f64, what it refuses (out of
/// range, NaN), and other types.
fn expires_in_literal() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(|f| Value::from(f).to_string()),
        prop::sample::select(vec![
            "0",
            "-0",
            "300.5",
            "1e19",
            "1e400",
            "-1e400",
            "18446744073709551616",
            "9007199254740993",
            "1.7976931348623157e308",
            "5e-324",
            "NaN",
            "Infinity",
            "null",
            "true",
            "\"3600\"",
            "\"\"",
            "[]",
            "{}",
        ])
        .prop_map(String::from),
        ".{0,8}".prop_map(|s| Value::from(s).to_string()),
    ]
}

/// An answer's JSON text: `token`, `access_token`, `expires_in` each there or not, and other
/// fields a token server may add.
fn token_answer_text() -> impl Strategy<Value = String> {
    (
        prop::option::of(token_value()),
        prop::option::of(token_value()),
        prop::option::of(expires_in_literal()),
        prop::collection::btree_map(
            prop_oneof![
                Just("scope".to_string()),
                Just("issued_at".to_string()),
                Just("refresh_token".to_string()),
                "[a-z_]{1,12}",
            ]
            .prop_filter("not a token field", |k| {
                !["token", "access_token", "expires_in"].contains(&k.as_str())
            }),
            json_value(),
            0..3,
        ),
    )
        .prop_map(|(token, access_token, expires_in, extra)| {
            let mut object: serde_json::Map<String, Value> = extra.into_iter().collect();
            if let Some(token) = token {
                object.insert("token".into(), token);
            }
            if let Some(token) = access_token {
                object.insert("access_token".into(), token);
            }
            let rest = Value::Object(object).to_string();
            // Spliced in as text, so that numbers serde would never write are sent too.
            match (expires_in, rest.as_str()) {
                (None, _) => rest,
                (Some(lit), "{}") => format!("{{\"expires_in\":{lit}}}"),
                (Some(lit), _) => format!("{{\"expires_in\":{lit},{}", &rest[1..]),
            }
        })
}

fn check_token_answer(answer: &[u8]) -> Result<(), TestCaseError> {
    let value = serde_json::from_slice::<Value>(answer).ok();
    let expected = value.as_ref().is_some_and(model_token_answer);
    match parsers::token_answer(answer) {
        Ok(()) => prop_assert!(expected, "took an answer without a token"),
        Err(e) => {
            prop_assert!(!expected, "refused a usable answer: {}", e);
            prop_assert_eq!(e.kind(), Kind::Auth, "{}", e);
            let message = e.to_string();
            prop_assert!(one_line(&message), "{:?}", message);
            prop_assert!(
                !message.contains(TOKEN_MARK),
                "the token is shown: {}",
                message
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn token_answer_needs_a_non_empty_token(text in token_answer_text()) {
        check_token_answer(text.as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
    }

    #[test]
    fn token_answer_on_any_bytes(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        // A good answer cut short or with one byte changed: JSON broken mid-token.
        (token_answer_text(), any::<prop::sample::Index>(), any::<u8>(), any::<bool>())
            .prop_map(|(text, at, byte, cut)| {
                let mut bytes = text.into_bytes();
                let at = at.index(bytes.len());
                match cut {
                    true => bytes.truncate(at),
                    false => bytes[at] = byte,
                }
                bytes
            }),
        // Nesting past serde's recursion limit must be an error, not a stack overflow.
        (prop::sample::select(vec!["[", "{\"token\":", "{\"a\":["]), 1usize..20_000, any::<bool>())
            .prop_map(|(open, depth, closed)| {
                let mut text = open.repeat(depth);
                if closed {
                    text.push_str(&"]".repeat(depth));
                }
                text.into_bytes()
            }),
    ]) {
        check_token_answer(&bytes)?;
    }
}

// ---------------------------------------------------------------------------------------------
// WWW-Authenticate, parsed directly

/// Pieces of headers that stress the lexer: quotes, escapes, separators, non-ASCII.
fn header_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "Bearer",
            "Basic",
            "bearer",
            " ",
            "\t",
            ",",
            "=",
            "\"",
            "\\",
            "\\\"",
            "realm",
            "realm=",
            "=\"",
            "é",
            "\u{0}",
            "\u{10ffff}",
            "\u{feff}",
            "dG9rZW4=",
            "==",
            "\r\n",
        ])
        .prop_map(String::from),
        "(?s).{0,8}",
    ]
}

/// Checks what parsing can return: nothing bigger than the header, nothing not in it.
fn check_challenges(header: &str) -> Result<(), TestCaseError> {
    let parsed = parsers::challenges(header);
    let chars = header.chars().count();
    // Each challenge is named by at least one character of the header.
    prop_assert!(parsed.len() <= chars, "{} challenges", parsed.len());
    let lower = header.to_ascii_lowercase();
    for challenge in &parsed {
        prop_assert!(!challenge.scheme.is_empty());
        prop_assert!(lower.contains(&challenge.scheme), "{:?}", challenge.scheme);
        prop_assert!(!(challenge.is_bearer() && challenge.is_basic()));
        for name in ["realm", "service", "scope", "error"] {
            if let Some(value) = challenge.param(name) {
                prop_assert!(
                    value.chars().count() <= chars,
                    "{}: {} chars",
                    name,
                    value.len()
                );
            }
        }
    }
    Ok(())
}

/// A parameter value as a server would quote it: `"` and `\` escaped.
fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The characters a token value may hold unquoted (RFC 7230 tchar, plus `/` and `:` for URLs).
fn is_token(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~/:".contains(c))
}

/// `Bearer realm=..,service=..,scope=..` with the freedom RFC 7235 gives a server: any case in
/// the scheme and names, any parameter order, blanks around `=` and `,`, empty list elements,
/// token or quoted values, and other challenges around it. Returns the header and the three
/// values.
fn bearer_header(
    value: impl Strategy<Value = String> + Clone,
) -> impl Strategy<Value = (String, [String; 3])> {
    let blank = || prop::sample::select(vec!["", " ", "\t", "  "]);
    let separator = (
        blank(),
        prop::sample::select(vec![",", ", ,", ",,"]),
        blank(),
    )
        .prop_map(|(a, c, b)| format!("{a}{c}{b}"));
    let name_case = |name: &'static str| {
        prop_oneof![
            Just(name.to_string()),
            Just(name.to_ascii_uppercase()),
            Just(format!("{}{}", name[..1].to_ascii_uppercase(), &name[1..])),
        ]
    };
    let params = (
        name_case("realm"),
        name_case("service"),
        name_case("scope"),
        [value.clone(), value.clone(), value],
        [any::<bool>(), any::<bool>(), any::<bool>()],
        [blank(), blank(), blank()],
        Just([0usize, 1, 2]).prop_shuffle(),
        [separator.clone(), separator.clone()],
    );
    (
        prop::sample::select(vec!["Bearer", "bearer", "BEARER", "BeArEr"]),
        prop::sample::select(vec![" ", "  ", "\t"]),
        params,
        prop::sample::select(vec![
            "",
            "Basic realm=\"registry\", ",
            "Negotiate, ",
            "Digest realm=\"x\", nonce=abc, ",
        ]),
        prop::sample::select(vec!["", ", Basic realm=\"other\"", ", Negotiate"]),
    )
        .prop_map(|(scheme, gap, params, before, after)| {
            let (realm, service, scope, values, quoted, blanks, order, seps) = params;
            let names = [realm, service, scope];
            let rendered: Vec<String> = order
                .iter()
                .map(|&i| {
                    let value = match quoted[i] || !is_token(&values[i]) {
                        true => quote(&values[i]),
                        false => values[i].clone(),
                    };
                    format!("{}{b}={b}{value}", names[i], b = blanks[i])
                })
                .collect();
            let header = format!(
                "{before}{scheme}{gap}{}{}{}{}{}{after}",
                rendered[0], seps[0], rendered[1], seps[1], rendered[2]
            );
            (header, values)
        })
}

fn check_bearer_round_trip(header: &str, values: &[String; 3]) -> Result<(), TestCaseError> {
    let parsed = parsers::challenges(header);
    let bearer = parsed.iter().find(|c| c.is_bearer());
    prop_assert!(
        bearer.is_some(),
        "no bearer challenge in {:?}: {:?}",
        header,
        parsed
    );
    let bearer = bearer.unwrap();
    prop_assert!(!bearer.is_basic());
    for (name, value) in ["realm", "service", "scope"].iter().zip(values) {
        prop_assert_eq!(
            bearer.param(name),
            Some(value.as_str()),
            "{} in {:?}",
            name,
            header
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn challenges_never_panic(header in prop_oneof![
        any::<String>(),
        "(?s).{0,64}",
        prop::collection::vec(header_piece(), 0..24).prop_map(|p| p.concat()),
        challenge(),
    ]) {
        check_challenges(&header)?;
    }

    #[test]
    fn bearer_challenge_params_round_trip(
        (header, values) in bearer_header(
            prop_oneof![
                // URLs, service names and scopes as registries send them: no quote or
                // backslash, but ',' '=' and ' ' that must not end a quoted value.
                "[A-Za-z0-9:/._~%?&=+@-]{0,40}",
                // Token characters only, so that some values go unquoted, as `realm=https://..`.
                "(https://)?[A-Za-z0-9:/._~%+-]{1,40}",
                "[A-Za-z0-9 !#$%&'()*+,./:;<=>?@^_`{|}~\\[\\]-]{0,40}",
                ("[a-z0-9/._-]{1,20}", "[a-z0-9/._-]{1,20}")
                    .prop_map(|(a, b)| format!("repository:{a}:pull repository:{b}:pull,push")),
            ]
        )
    ) {
        check_bearer_round_trip(&header, &values)?;
    }

    #[test]
    fn bearer_challenge_escaped_values_round_trip(
        (header, values) in bearer_header(
            prop_oneof!["[\"\\\\a ,=]{0,12}", "(?s).{0,24}"]
        )
    ) {
        // Any value a server quotes and escapes comes back exactly, quotes and backslashes in
        // it included.
        check_bearer_round_trip(&header, &values)?;
    }
}

proptest! {
    // Each case is up to 64 KiB: few cases, enough to catch work or memory that grows faster
    // than the header.
    #![proptest_config(config(24))]

    #[test]
    fn challenges_on_long_headers_stay_bounded(
        pieces in prop::collection::vec(header_piece(), 1..8),
        size in 1usize..=64 << 10,
    ) {
        let unit = pieces.concat();
        let mut header = unit.repeat(size / unit.len().max(1) + 1);
        let mut end = size.min(header.len());
        while !header.is_char_boundary(end) {
            end -= 1;
        }
        header.truncate(end);
        let started = Instant::now();
        check_challenges(&header)?;
        // Generous enough for a loaded debug build; quadratic work on 64 KiB takes far longer.
        prop_assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }
}

// ---------------------------------------------------------------------------------------------
// Docker config.json / Podman auth.json `auths`

/// What a config gives for a repository.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Found {
    Nothing,
    Basic(String, String),
    IdentityToken(String),
    Refused,
}

/// A secret no message or `Debug` output may show; distinctive, so a match is never chance.
fn secret(prefix: &'static str) -> impl Strategy<Value = String> {
    "[a-zA-Z0-9]{8,16}".prop_map(move |s| format!("{prefix}{s}"))
}

/// An `auth` field's text, by what it decodes to.
#[derive(Clone, Debug)]
enum AuthText {
    /// base64 of `user:password` (the password may hold more ':').
    UserPassword(String, String),
    /// base64 without its `=` padding, which Docker's decoder refuses.
    Unpadded(String, String),
    /// base64 of a password alone.
    NoColon(String),
    /// A character base64 does not have.
    NotBase64(String),
    /// base64 of bytes that are not UTF-8.
    NotUtf8(String),
}

impl AuthText {
    fn text(&self) -> String {
        match self {
            AuthText::UserPassword(u, p) => common::b64(format!("{u}:{p}")),
            AuthText::Unpadded(u, p) => common::b64(format!("{u}:{p}")).replace('=', ""),
            AuthText::NoColon(p) => common::b64(p),
            AuthText::NotBase64(p) => format!("*{p}"),
            AuthText::NotUtf8(p) => common::b64([&[0xff, 0xfe][..], b"u:", p.as_bytes()].concat()),
        }
    }

    fn decoded(&self) -> Option<(String, String)> {
        match self {
            AuthText::UserPassword(u, p) => Some((u.clone(), p.clone())),
            AuthText::Unpadded(u, p) if (u.len() + 1 + p.len()) % 3 == 0 => {
                Some((u.clone(), p.clone()))
            }
            _ => None,
        }
    }

    fn password(&self) -> &str {
        match self {
            AuthText::UserPassword(_, p) | AuthText::Unpadded(_, p) => p,
            AuthText::NoColon(p) | AuthText::NotBase64(p) | AuthText::NotUtf8(p) => p,
        }
    }
}

/// A field of an entry: absent, a string, or another JSON type (which counts as absent).
#[derive(Clone, Debug)]
enum Field<T> {
    Absent,
    Text(T),
    NotAString(Value),
}

impl<T> Field<T> {
    fn json(&self, text: impl Fn(&T) -> String) -> Option<Value> {
        match self {
            Field::Absent => None,
            Field::Text(t) => Some(Value::from(text(t))),
            Field::NotAString(v) => Some(v.clone()),
        }
    }
}

#[derive(Clone, Debug)]
struct EntryFields {
    /// None: an empty string, which counts as absent.
    auth: Field<Option<AuthText>>,
    username: Field<String>,
    password: Field<String>,
    identitytoken: Field<String>,
    email: Option<Value>,
}

#[derive(Clone, Debug)]
enum Entry {
    Fields(Box<EntryFields>),
    NotAnObject(Value),
}

impl Entry {
    fn json(&self) -> Value {
        let fields = match self {
            Entry::Fields(fields) => fields,
            Entry::NotAnObject(v) => return v.clone(),
        };
        let mut object = serde_json::Map::new();
        let auth = fields
            .auth
            .json(|a| a.as_ref().map(AuthText::text).unwrap_or_default());
        let text = [
            ("auth", auth),
            ("username", fields.username.json(String::clone)),
            ("password", fields.password.json(String::clone)),
            ("identitytoken", fields.identitytoken.json(String::clone)),
            ("email", fields.email.clone()),
        ];
        for (name, value) in text {
            if let Some(value) = value {
                object.insert(name.to_string(), value);
            }
        }
        Value::Object(object)
    }

    /// What Docker makes of the entry: `auth` first (a bad one is an error), else `username`
    /// and `password`; an `identitytoken` replaces either; empty strings count as absent.
    fn model(&self) -> Found {
        let Entry::Fields(fields) = self else {
            return Found::Nothing;
        };
        let text = |field: &Field<String>| match field {
            Field::Text(t) if !t.is_empty() => Some(t.clone()),
            _ => None,
        };
        let (username, password) = match &fields.auth {
            Field::Text(Some(auth)) => match auth.decoded() {
                Some(pair) => pair,
                None => return Found::Refused,
            },
            _ => (
                text(&fields.username).unwrap_or_default(),
                text(&fields.password).unwrap_or_default(),
            ),
        };
        match text(&fields.identitytoken) {
            Some(token) => Found::IdentityToken(token),
            None if username.is_empty() && password.is_empty() => Found::Nothing,
            None => Found::Basic(username, password),
        }
    }

    fn secrets(&self) -> Vec<String> {
        let Entry::Fields(fields) = self else {
            return Vec::new();
        };
        let mut secrets = Vec::new();
        if let Field::Text(Some(auth)) = &fields.auth {
            secrets.push(auth.text());
            secrets.push(auth.password().to_string());
        }
        for field in [&fields.password, &fields.identitytoken] {
            if let Field::Text(t) = field {
                secrets.push(t.clone());
            }
        }
        secrets.retain(|s| s.len() >= 8);
        secrets
    }
}

fn not_a_string() -> impl Strategy<Value = Value> {
    json_value().prop_filter("not a string", |v| !v.is_string())
}

fn entry() -> impl Strategy<Value = Entry> {
    let user = || "[a-z0-9._@-]{0,12}";
    let password = || {
        prop_oneof![
            secret("pw-"),
            (secret("pw-"), secret(":")).prop_map(|(a, b)| a + &b)
        ]
    };
    let auth_text = prop_oneof![
        4 => (user(), password()).prop_map(|(u, p)| AuthText::UserPassword(u, p)),
        1 => (user(), password()).prop_map(|(u, p)| AuthText::Unpadded(u, p)),
        1 => secret("pw-").prop_map(AuthText::NoColon),
        1 => secret("pw-").prop_map(AuthText::NotBase64),
        1 => secret("pw-").prop_map(AuthText::NotUtf8),
    ];
    let fields = (
        prop_oneof![
            2 => Just(Field::Absent),
            4 => auth_text.prop_map(|a| Field::Text(Some(a))),
            1 => Just(Field::Text(None)),
            1 => not_a_string().prop_map(Field::NotAString),
        ],
        prop_oneof![
            2 => Just(Field::Absent),
            3 => user().prop_map(|u| Field::Text(u.to_string())),
            1 => not_a_string().prop_map(Field::NotAString),
        ],
        prop_oneof![
            2 => Just(Field::Absent),
            3 => secret("pw-").prop_map(Field::Text),
            1 => Just(Field::Text(String::new())),
            1 => not_a_string().prop_map(Field::NotAString),
        ],
        prop_oneof![
            4 => Just(Field::Absent),
            2 => secret("it-").prop_map(Field::Text),
            1 => Just(Field::Text(String::new())),
            1 => not_a_string().prop_map(Field::NotAString),
        ],
        prop::option::of(json_value()),
    )
        .prop_map(|(auth, username, password, identitytoken, email)| {
            Entry::Fields(Box::new(EntryFields {
                auth,
                username,
                password,
                identitytoken,
                email,
            }))
        });
    prop_oneof![
        8 => fields,
        1 => json_value().prop_filter("not an object", |v| !v.is_object()).prop_map(Entry::NotAnObject),
    ]
}

/// Keys as `docker login`, Podman and people write them, for this repository and near misses.
fn config_key(repository: &Repository) -> impl Strategy<Value = String> {
    let registry = repository.registry().to_string();
    let components: Vec<&str> = repository.path().split('/').collect();
    let full = format!("{registry}/{}", repository.path());
    let mut keys = vec![
        registry.clone(),
        format!("https://{registry}"),
        format!("http://{registry}"),
        format!("{registry}/"),
        format!("{registry}/v1/"),
        format!("https://{registry}/v1/"),
        format!("https://{registry}/v2/"),
        format!("{registry}:1"),
        format!("x{registry}"),
        format!("{registry}x"),
        registry.to_uppercase(),
        full[..full.len() - 1].to_string(),
        format!("{full}x"),
        "https://index.docker.io/v1/".to_string(),
        "registry-1.docker.io".to_string(),
        "docker.io".to_string(),
        "quay.io".to_string(),
        String::new(),
        "/".to_string(),
        "https://".to_string(),
    ];
    for n in 1..=components.len() {
        let prefix = format!("{registry}/{}", components[..n].join("/"));
        keys.push(format!("https://{prefix}"));
        keys.push(format!("{prefix}/"));
        keys.push(prefix);
    }
    prop_oneof![
        8 => prop::sample::select(keys),
        1 => "[a-z0-9.:/-]{0,24}",
        1 => ".{0,16}",
    ]
}

#[derive(Clone, Debug)]
enum Auths {
    Absent,
    NotAnObject(Value),
    Entries(BTreeMap<String, Entry>),
}

#[derive(Clone, Debug)]
struct ConfigCase {
    repository: String,
    auths: Auths,
    /// Other top-level fields (credHelpers and the like), which the `auths` reading ignores.
    other: Option<Value>,
}

impl ConfigCase {
    fn json(&self) -> Value {
        let mut config = serde_json::Map::new();
        match &self.auths {
            Auths::Absent => {}
            Auths::NotAnObject(v) => {
                config.insert("auths".into(), v.clone());
            }
            Auths::Entries(entries) => {
                let entries = entries.iter().map(|(k, e)| (k.clone(), e.json()));
                config.insert("auths".into(), Value::Object(entries.collect()));
            }
        }
        if let Some(other) = &self.other {
            config.insert("credHelpers".into(), other.clone());
        }
        Value::Object(config)
    }

    fn secrets(&self) -> Vec<String> {
        match &self.auths {
            Auths::Entries(entries) => entries.values().flat_map(Entry::secrets).collect(),
            _ => Vec::new(),
        }
    }

    /// What the config may give: the most specific entry's outcome. Keys that are spelt
    /// differently but name the same place (`ghcr.io`, `https://ghcr.io/`) tie, and then any of
    /// theirs will do.
    /// A key naming the repository itself matches too, as containers-auth.json(5) documents
    /// (its example key is `quay.io/user/image`).
    fn model(&self, repository: &Repository) -> Vec<Found> {
        let Auths::Entries(entries) = &self.auths else {
            return vec![Found::Nothing];
        };
        let registry = repository.registry();
        let names: Vec<&str> = match registry {
            "docker.io" => vec!["docker.io", "index.docker.io", "registry-1.docker.io"],
            other => vec![other],
        };
        let full = format!("{registry}/{}", repository.path());
        let matching: Vec<(usize, &Entry)> = entries
            .iter()
            .filter_map(|(key, entry)| {
                let key = model_config_key(key);
                let names_it = names.contains(&key)
                    || full == key
                    || full
                        .strip_prefix(key)
                        .is_some_and(|rest| rest.starts_with('/'));
                names_it.then_some((key.len(), entry))
            })
            .collect();
        let Some(longest) = matching.iter().map(|(len, _)| *len).max() else {
            return vec![Found::Nothing];
        };
        matching
            .iter()
            .filter(|(len, _)| *len == longest)
            .map(|(_, entry)| entry.model())
            .collect()
    }
}

/// The place a key names: without `https://` or `http://`, trailing `/`, or the `/v1` or `/v2`
/// API suffix `docker login` once wrote.
fn model_config_key(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key)
        .trim_end_matches('/');
    key.strip_suffix("/v1")
        .or_else(|| key.strip_suffix("/v2"))
        .unwrap_or(key)
}

fn config_repository() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "ghcr.io/org/app",
            "ghcr.io/org/team/app",
            "localhost:5000/a/b/c",
            "docker.io/library/busybox",
            "index.docker.io/team/app",
            "[::1]:5000/app",
            "quay.io/o",
        ])
        .prop_map(String::from),
        valid_repository().prop_map(|(host, path)| format!("{host}/{path}")),
    ]
}

fn config_case() -> impl Strategy<Value = ConfigCase> {
    config_repository()
        .prop_flat_map(|name| {
            let repository = Repository::parse(&name).unwrap();
            let auths = prop_oneof![
                1 => Just(Auths::Absent),
                1 => json_value()
                    .prop_filter("not an object", |v| !v.is_object())
                    .prop_map(Auths::NotAnObject),
                8 => prop::collection::btree_map(config_key(&repository), entry(), 0..6)
                    .prop_map(Auths::Entries),
            ];
            (Just(name), auths, prop::option::of(json_value()))
        })
        .prop_map(|(repository, auths, other)| ConfigCase {
            repository,
            auths,
            other,
        })
}

const CONFIG_SOURCE: &str = "/home/u/.docker/config.json";

/// Reads `text` for the repository and checks what must hold whatever the text: errors are
/// one line of kind Auth, and no secret is shown by them or by `Debug`. Returns the outcome.
fn read_config(
    text: &[u8],
    repository: &Repository,
    secrets: &[String],
) -> Result<Found, TestCaseError> {
    let result = from_config_text(text, repository, CONFIG_SOURCE);
    let shown = match &result {
        Ok(found) => format!("{found:?}"),
        Err(e) => format!("{e} {e:?}"),
    };
    for secret in secrets {
        prop_assert!(
            !shown.contains(secret.as_str()),
            "{:?} shows {:?}",
            shown,
            secret
        );
    }
    Ok(match result {
        Ok(None) => Found::Nothing,
        Ok(Some(credential)) => {
            prop_assert_eq!(&credential.source, CONFIG_SOURCE);
            match credential.secret {
                Secret::Basic { username, password } => Found::Basic(username, password),
                Secret::IdentityToken { token } => Found::IdentityToken(token),
                other => {
                    return Err(TestCaseError::fail(format!(
                        "a config's auths gave {other:?}"
                    )))
                }
            }
        }
        Err(e) => {
            prop_assert_eq!(e.kind(), Kind::Auth, "{}", e);
            prop_assert!(one_line(&e.to_string()), "{:?}", e.to_string());
            prop_assert!(e.to_string().starts_with(CONFIG_SOURCE), "{}", e);
            Found::Refused
        }
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn config_auths_give_the_most_specific_entry(case in config_case()) {
        let repository = Repository::parse(&case.repository).unwrap();
        let text = serde_json::to_vec(&case.json()).unwrap();
        let found = read_config(&text, &repository, &case.secrets())?;
        let expected = case.model(&repository);
        prop_assert!(
            expected.contains(&found),
            "{} in {}: got {:?}, expected one of {:?}",
            case.repository, String::from_utf8_lossy(&text), found, expected
        );
    }

    #[test]
    fn config_text_on_any_bytes(
        (bytes, repository, secrets) in prop_oneof![
            (prop::collection::vec(any::<u8>(), 0..256), config_repository())
                .prop_map(|(bytes, repository)| (bytes, repository, Vec::new())),
            // A config cut short or with one byte changed: broken JSON around the secrets.
            (config_case(), any::<prop::sample::Index>(), any::<u8>(), any::<bool>())
                .prop_map(|(case, at, byte, cut)| {
                    let mut bytes = serde_json::to_vec(&case.json()).unwrap();
                    let at = at.index(bytes.len());
                    match cut {
                        true => bytes.truncate(at),
                        false => bytes[at] = byte,
                    }
                    (bytes, case.repository.clone(), case.secrets())
                }),
        ]
    ) {
        let repository = Repository::parse(&repository).unwrap();
        read_config(&bytes, &repository, &secrets)?;
    }

    #[test]
    fn an_auth_entry_for_the_registry_gives_its_user_and_password(
        repository in config_repository(),
        username in "[a-zA-Z0-9._@-]{1,16}",
        // Anything at all after the first ':' is the password, more ':' included.
        password in "(?s).{0,24}",
    ) {
        let repository = Repository::parse(&repository).unwrap();
        let config = serde_json::json!({"auths": {
            repository.registry(): {"auth": common::b64(format!("{username}:{password}"))},
        }});
        let text = serde_json::to_vec(&config).unwrap();
        let credential = from_config_text(&text, &repository, CONFIG_SOURCE);
        prop_assert!(credential.is_ok(), "{}", credential.unwrap_err());
        let credential = credential.unwrap();
        prop_assert!(credential.is_some(), "no credential for {}", repository);
        match credential.unwrap().secret {
            Secret::Basic { username: u, password: p } => {
                prop_assert_eq!(u, username);
                prop_assert_eq!(p, password);
            }
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
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

// Found by token_answer_needs_a_non_empty_token: Docker's client takes `access_token` whenever
// it is non-empty (the two names mean the same); oci-push stopped at the empty `token`.
#[test]
fn regression_an_empty_token_beside_an_access_token_is_usable() {
    let answer = br#"{"access_token":"tok-+0AA+~a_","token":""}"#;
    assert!(parsers::token_answer(answer).is_ok());
}

// Found by config_auths_give_the_most_specific_entry: containers-auth.json(5) documents keys
// naming a namespace or the repository itself (its example is `quay.io/user/image`); oci-push
// matched only keys that are a strict prefix of the repository, and went anonymous.
#[test]
fn regression_an_auths_key_naming_the_whole_repository_matches() {
    let repository = Repository::parse("quay.io/user/image").unwrap();
    for key in ["quay.io/user/image", "https://quay.io/user/image/"] {
        let config = format!(
            r#"{{"auths":{{"{key}":{{"auth":"{}"}}}}}}"#,
            common::b64("u:p")
        );
        let credential = from_config_text(config.as_bytes(), &repository, "auth.json").unwrap();
        match credential.map(|c| c.secret) {
            Some(Secret::Basic { username, password }) => {
                assert_eq!((username.as_str(), password.as_str()), ("u", "p"), "{key}")
            }
            other => panic!("{key}: {other:?}"),
        }
    }
}
