/*!
The command line: lexopt turns `argv` into [`Args`] (close to the flags), which [`Args::plan`]
checks and resolves into a [`Plan`] (validated, ready to run). Later flags win, so the Bazel
run-script can pass the rule's values first and the user's `"$@"` after them.
*/

use std::ffi::OsString;
use std::path::PathBuf;

use crate::artifact;
use crate::auth;
use crate::cache;
use crate::error::{Error, Result};
use crate::reference::Repository;
use crate::registry::Connection;
use crate::report;
use crate::tags;
use crate::units;

pub const HELP: &str = "\
oci-push: push an OCI image layout to a registry, by digest, then its tags

USAGE:
    oci-push --layout DIR --repository REPO [--tags-file FILE] [-t TAG]... [OPTIONS]
    oci-push --verify --layout DIR [--tags-file FILE] [-t TAG]... [--repository REPO]
    oci-push --write-artifact OUT --layout DIR --artifact-type TYPE [--artifact-file FILE]...

Pushes every blob the registry does not have yet, then every manifest by digest (the
children of an index before the index), then the referrers (--referrer), and only then
applies the tags, one at a time,
in order, stopping at the first that fails. Prints REPO@DIGEST as the last line of stdout;
progress and errors go to stderr.

OPTIONS:
    --layout DIR             The OCI image layout to push (oci-layout, index.json, blobs/).
                             index.json must name exactly one image or image index.
    -r, --repository REPO    Where to push: host[:port]/path, without tag or digest,
                             e.g. ghcr.io/org/app or localhost:5000/app. Repeatable: each
                             destination in turn gets the blobs, the manifests, then the
                             tags; the first that fails ends the push. Later destinations
                             on one registry mount the blobs from the first.
    --repository-file FILE   Destinations from FILE, one per line; repeatable, and in order
                             with --repository.
    --default-repository REPO, --default-repository-file FILE
                             Destinations used only when no --repository or
                             --repository-file is given (the run-script passes the rule's).
    --tags-file FILE         Tags to apply, one per line; blank lines are ignored.
    -t, --tag TAG            A tag to apply; repeatable. Tags given with --tag replace
                             those of --tags-file.
    --digest-file FILE       Also write REPO@DIGEST to FILE, a line per destination.
    --referrer DIR           An artifact to push with the image (an SBOM, a signature): an
                             OCI layout of one manifest whose subject is the image, one of
                             its manifests or another referrer, checked before any request.
                             Repeatable; the
                             referrers go up after the image and before its tags, and a
                             registry without the referrers API gets the fallback tag
                             index <alg>-<hex> (docs/referrers.md).

AUTHENTICATION (first found wins; see docs/auth.md):
    --username USER          Log in as USER, with the password read from stdin
                             (--password-stdin) or from OCI_PUSH_PASSWORD.
    --password-stdin         Read the password from stdin (never pass it as an argument).
    Then OCI_PUSH_USERNAME/OCI_PUSH_PASSWORD.
    --credential-helper PATH A Bazel credential helper (the JSON protocol Bazel uses).
    Then Docker's config.json (credHelpers, credsStore, auths), Podman's auth.json
    ($REGISTRY_AUTH_FILE), else anonymous.

CONNECTION:
    --ca-file FILE           Also trust the CA certificates in FILE (PEM); a server's own
                             (self-signed) certificate there is trusted as pinned. The
                             system's store (and SSL_CERT_FILE, SSL_CERT_DIR) is always
                             trusted.
    --cert-file FILE         A client certificate (PEM) for mutual TLS with the registry;
    --key-file FILE          with its private key. The docker and podman directories
                             certs.d/HOST[:PORT]/ (*.crt CAs, NAME.cert with NAME.key) are
                             read too (docs/registries.md).
    --insecure               Use HTTPS but do not verify the registry's certificate: its
                             own host and port only (token realms and storage hosts
                             elsewhere are still verified); also allows a plain-HTTP
                             token realm on the registry's own host.
    --resolve HOST:PORT:ADDR Connect to ADDR for HOST:PORT, as curl's option (the registry,
                             its token service, or any host); repeatable. TLS still
                             checks the certificate against HOST.
    --plain-http             Use plain HTTP. Registries on 127.0.0.0/8 and [::1], and on
                             localhost when it resolves to loopback only, get HTTPS when
                             they speak it and plain HTTP otherwise.
    -j, --jobs N             Upload up to N blobs (and an index's manifests) at once,
                             1 to 64 (default 16).
    --mount-from REPO        Before uploading a blob, try to mount it from REPO, another
                             repository of the same registry; repeatable. The layout's
                             org.opencontainers.image.base.name annotations are tried too.
    --retries N              Retry a request that failed transiently (connection dropped,
                             timeout, 408, 429, 5xx but 501) up to N times (default 10), with
                             exponential backoff and the registry's Retry-After.
    --timeout DURATION       Give up when the whole push takes longer (default 1h;
                             e.g. 30s, 5m, 1h).
    --chunk-size SIZE        Upload blobs in chunks of SIZE (e.g. 5MiB) with PATCH, for
                             proxies that cap request bodies; a failed chunk resumes
                             where the registry says the upload stands.
    --verbose                Log every HTTP request on stderr (secrets are never shown).

REMOTE CACHE (push without the bytes; docs/remote-cache.md):
    --remote-cache URL       Bazel's HTTP remote cache (http:// or https://, the URL Bazel
                             is given for it) holding the blobs a thin layout leaves out:
                             each one the registry lacks is streamed from
                             URL/cas/<sha256 hex>, and no other is fetched. gRPC caches
                             are refused. Credentials: the URL's user:password@, then
                             --remote-cache-header, --credential-helper, ~/.netrc.
    --remote-cache-header NAME=VALUE
                             A header for the remote cache only, as Bazel's remote
                             header flag; repeatable.
    --local-layout DIR       The full layout of the image on this disk, if it is there:
                             blobs found in DIR with their size are read from it, not
                             fetched.
    HTTPS_PROXY (https://), HTTP_PROXY (http://), ALL_PROXY and NO_PROXY are honoured;
    loopback never goes through a proxy.

OUTPUT:
    -q, --quiet              No progress and no summary: the final REPO@DIGEST line only
                             (errors, warnings and retry lines still go to stderr).
    --format FORMAT          text (default) or json: one JSON object on stdout instead of
                             the final line, with the digest, every blob's and tag's
                             outcome, bytes and timing (docs/cli.md has its schema).
                             Progress goes to stderr: live bars on a terminal, one plain
                             line per step otherwise.
    --dry-run                Ask the registry what it has (reads only: HEAD, the tag list)
                             and print what a push would upload, mount, skip and tag;
                             write nothing.

OTHER:
    --verify                 Check the layout offline instead of pushing: every blob and
                             manifest hashed against its digest, every tag checked. Prints
                             the image digest (REPO@DIGEST when a repository is given).
                             A thin layout's blobs left to the remote cache are not there
                             to hash: the registry checks them when they go up.
    --write-thin-layout DIR  With --verify: also write the layout's thin copy to DIR
                             (index.json, manifests, configs and the list of the layers
                             left out, with their sizes), for pushing with --remote-cache.
    --write-artifact DIR     Write a referrer's layout to DIR (new or empty) instead of
                             pushing: one manifest whose subject is --layout's image, with
                             the files below (what the oci_artifact rule runs).
    --artifact-type TYPE     Its artifactType, e.g. application/spdx+json.
    --artifact-file FILE[:MEDIA_TYPE]
                             A file it carries, as a layer of MEDIA_TYPE (default
                             application/octet-stream); repeatable.
    --annotation KEY=VALUE   An annotation of its manifest; repeatable.
    --subject-platform OS/ARCH[/VARIANT]
                             With an index as --layout: refer to that platform's manifest.
    -h, --help               Print this help.
    -V, --version            Print the version.

EXIT CODES:
    0  success
    1  usage error, or another failure
    2  the registry refused our credentials (401/403)
    3  the registry could not be reached (DNS, connection, TLS)
    4  invalid input: layout, blob, manifest, tag or repository
    5  the registry rejected a request (other 4xx/5xx; its error code is shown)
    6  timeout
    7  a tag names another digest and the registry will not move it (immutable)
    8  the remote cache lacks a blob, or cannot be reached or read
    128+N  stopped by signal N while waiting for a credential helper (stopped too)
";

/// Where destinations come from: a name, or a file of them (each flag adds, in order).
#[derive(Debug)]
enum RepositorySource {
    Name(String),
    File(PathBuf),
}

/// The flags as given.
#[derive(Debug, Default)]
struct Args {
    layout: Option<PathBuf>,
    repositories: Vec<RepositorySource>,
    /// The rule's, from the run-script: replaced by any `repositories`.
    default_repositories: Vec<RepositorySource>,
    tags_file: Option<PathBuf>,
    tags: Vec<String>,
    digest_file: Option<PathBuf>,
    connection: Connection,
    username: Option<String>,
    password_stdin: bool,
    credential_helper: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    jobs: Option<String>,
    mount_from: Vec<String>,
    retries: Option<String>,
    timeout: Option<String>,
    chunk_size: Option<String>,
    quiet: bool,
    format: Option<String>,
    dry_run: bool,
    verify: bool,
    remote_cache: Option<String>,
    remote_cache_headers: Vec<String>,
    local_layout: Option<PathBuf>,
    write_thin_layout: Option<PathBuf>,
    referrers: Vec<PathBuf>,
    write_artifact: Option<PathBuf>,
    artifact_type: Option<String>,
    artifact_files: Vec<String>,
    annotations: Vec<String>,
    subject_platform: Option<String>,
}

/// What to do, checked and resolved.
#[derive(Debug)]
pub enum Command {
    Help,
    Version,
    Push(Plan),
    Verify(Plan),
    WriteArtifact(artifact::Spec),
}

#[derive(Debug)]
pub struct Plan {
    pub layout: PathBuf,
    /// The destinations, in order, each once: at least one for a push; any for `--verify`.
    pub repositories: Vec<Repository>,
    /// In the order to apply them, each once.
    pub tags: Vec<String>,
    pub digest_file: Option<PathBuf>,
    pub connection: Connection,
    pub auth: auth::Options,
    pub jobs: usize,
    /// Upload blobs in chunks of this many bytes, when set.
    pub chunk_size: Option<u64>,
    /// No progress, no summary.
    pub quiet: bool,
    /// The result as one JSON object on stdout.
    pub json: bool,
    /// Ask, do not write.
    pub dry_run: bool,
    /// Repositories (`host/path`) to mount blobs from, as given.
    pub mount_from: Vec<Repository>,
    /// The remote cache of a thin layout's blobs.
    pub cache: cache::Options,
    /// The full layout on this disk, whose blobs beat fetching them.
    pub local_layout: Option<PathBuf>,
    /// `--verify` also writes the thin layout here.
    pub write_thin_layout: Option<PathBuf>,
    /// Layouts of artifacts whose subject is the image, pushed after it, before the tags.
    pub referrers: Vec<PathBuf>,
}

/// Enough that the last layers of an image do not go up alone while the registry idles
/// (measured: 5 x 100 MiB in 0.88 s with 8, 1.03 s with 4), at 7.5 MiB peak RSS.
/// Far from the registry a small blob's upload is three round trips and few bytes: more of
/// them at once keep the link busy (bench/README.md, the WAN table).
const DEFAULT_JOBS: usize = 16;
/// The most uploads at once `--jobs` allows (and connections the pool keeps).
pub const MAX_JOBS: usize = 64;

pub fn parse(argv: impl IntoIterator<Item = OsString>) -> Result<Command> {
    use lexopt::prelude::*;

    let mut args = Args::default();
    let mut parser = lexopt::Parser::from_args(argv);
    let usage = |e: lexopt::Error| Error::usage(format!("{e}; see oci-push --help"));
    while let Some(arg) = parser.next().map_err(usage)? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Long("layout") => args.layout = Some(parser.value().map_err(usage)?.into()),
            Short('r') | Long("repository") => {
                let value = string(parser.value().map_err(usage)?, "--repository")?;
                args.repositories.push(RepositorySource::Name(value));
            }
            Long("repository-file") => {
                let path = parser.value().map_err(usage)?.into();
                args.repositories.push(RepositorySource::File(path));
            }
            Long("default-repository") => {
                let value = string(parser.value().map_err(usage)?, "--default-repository")?;
                args.default_repositories
                    .push(RepositorySource::Name(value));
            }
            Long("default-repository-file") => {
                let path = parser.value().map_err(usage)?.into();
                args.default_repositories.push(RepositorySource::File(path));
            }
            Long("tags-file") => args.tags_file = Some(parser.value().map_err(usage)?.into()),
            Short('t') | Long("tag") => {
                args.tags
                    .push(string(parser.value().map_err(usage)?, "--tag")?);
            }
            Long("digest-file") => args.digest_file = Some(parser.value().map_err(usage)?.into()),
            Long("plain-http") => args.connection.plain_http = true,
            Long("insecure") => args.connection.insecure = true,
            Long("ca-file") => {
                args.connection.ca_file = Some(parser.value().map_err(usage)?.into())
            }
            Long("verbose") => args.connection.verbose = true,
            Long("resolve") => {
                let pin = string(parser.value().map_err(usage)?, "--resolve")?;
                args.connection
                    .resolve
                    .push(pin.parse().map_err(Error::usage)?);
            }
            Long("cert-file") => args.cert_file = Some(parser.value().map_err(usage)?.into()),
            Long("key-file") => args.key_file = Some(parser.value().map_err(usage)?.into()),
            Long("username") => {
                args.username = Some(string(parser.value().map_err(usage)?, "--username")?);
            }
            Long("password-stdin") => args.password_stdin = true,
            Short('j') | Long("jobs") => {
                args.jobs = Some(string(parser.value().map_err(usage)?, "--jobs")?)
            }
            Short('q') | Long("quiet") => args.quiet = true,
            Long("format") => {
                args.format = Some(string(parser.value().map_err(usage)?, "--format")?)
            }
            Long("dry-run") => args.dry_run = true,
            Long("retries") => {
                args.retries = Some(string(parser.value().map_err(usage)?, "--retries")?)
            }
            Long("timeout") => {
                args.timeout = Some(string(parser.value().map_err(usage)?, "--timeout")?)
            }
            Long("chunk-size") => {
                args.chunk_size = Some(string(parser.value().map_err(usage)?, "--chunk-size")?);
            }
            Long("mount-from") => {
                args.mount_from
                    .push(string(parser.value().map_err(usage)?, "--mount-from")?);
            }
            Long("credential-helper") => {
                args.credential_helper = Some(parser.value().map_err(usage)?.into());
            }
            Long("verify") => args.verify = true,
            Long("remote-cache") => {
                args.remote_cache = Some(string(parser.value().map_err(usage)?, "--remote-cache")?);
            }
            Long("remote-cache-header") => {
                let header = string(parser.value().map_err(usage)?, "--remote-cache-header")?;
                args.remote_cache_headers.push(header);
            }
            Long("local-layout") => args.local_layout = Some(parser.value().map_err(usage)?.into()),
            Long("write-thin-layout") => {
                args.write_thin_layout = Some(parser.value().map_err(usage)?.into());
            }
            Long("referrer") => args.referrers.push(parser.value().map_err(usage)?.into()),
            Long("write-artifact") => {
                args.write_artifact = Some(parser.value().map_err(usage)?.into());
            }
            Long("artifact-type") => {
                let value = string(parser.value().map_err(usage)?, "--artifact-type")?;
                args.artifact_type = Some(value);
            }
            Long("artifact-file") => {
                let value = string(parser.value().map_err(usage)?, "--artifact-file")?;
                args.artifact_files.push(value);
            }
            Long("annotation") => {
                let value = string(parser.value().map_err(usage)?, "--annotation")?;
                args.annotations.push(value);
            }
            Long("subject-platform") => {
                let value = string(parser.value().map_err(usage)?, "--subject-platform")?;
                args.subject_platform = Some(value);
            }
            _ => return Err(usage(arg.unexpected())),
        }
    }
    if args.write_artifact.is_some() {
        let push_only = [
            (!args.repositories.is_empty(), "--repository"),
            (!args.tags.is_empty() || args.tags_file.is_some(), "--tag"),
            (!args.referrers.is_empty(), "--referrer"),
            (args.dry_run, "--dry-run"),
            (args.verify, "--verify"),
        ];
        if let Some((_, flag)) = push_only.iter().find(|(given, _)| *given) {
            return Err(Error::usage(format!(
                "{flag} does not go with --write-artifact DIR, which writes a layout and pushes \
                 nothing; push it with --referrer DIR"
            )));
        }
        return args.artifact().map(Command::WriteArtifact);
    }
    let artifact_only = [
        (args.artifact_type.is_some(), "--artifact-type"),
        (!args.artifact_files.is_empty(), "--artifact-file"),
        (!args.annotations.is_empty(), "--annotation"),
        (args.subject_platform.is_some(), "--subject-platform"),
    ];
    if let Some((_, flag)) = artifact_only.iter().find(|(given, _)| *given) {
        return Err(Error::usage(format!(
            "{flag} goes with --write-artifact DIR (it describes the artifact to write)"
        )));
    }
    let verify = args.verify;
    let plan = args.plan()?;
    Ok(if verify {
        Command::Verify(plan)
    } else {
        Command::Push(plan)
    })
}

fn string(value: OsString, flag: &str) -> Result<String> {
    value
        .into_string()
        .map_err(|v| Error::invalid(format!("{flag} {}: not valid UTF-8", v.to_string_lossy())))
}

impl Args {
    /// `--write-artifact`: what the artifact's layout holds.
    fn artifact(self) -> Result<artifact::Spec> {
        let (Some(out), Some(subject_layout)) = (self.write_artifact, self.layout) else {
            return Err(Error::usage(
                "--write-artifact DIR needs --layout DIR, the image the artifact is for",
            ));
        };
        let artifact_type = self.artifact_type.ok_or_else(|| {
            Error::usage("--write-artifact needs --artifact-type TYPE, e.g. application/spdx+json")
        })?;
        artifact::check_media_type("--artifact-type", &artifact_type)?;
        let files = self
            .artifact_files
            .iter()
            .map(|text| artifact::parse_file(text))
            .collect::<Result<Vec<_>>>()?;
        let annotations = self
            .annotations
            .iter()
            .map(|text| artifact::parse_annotation(text))
            .collect::<Result<Vec<_>>>()?;
        artifact::check_annotations(&annotations)?;
        Ok(artifact::Spec {
            out,
            subject_layout,
            subject_platform: self.subject_platform,
            artifact_type,
            files,
            annotations,
        })
    }

    fn plan(mut self) -> Result<Plan> {
        // What holds for one registry only (see check_one_registry).
        let for_one_registry = [
            (self.username.is_some(), "--username"),
            (
                auth::environment_credential().is_some(),
                "OCI_PUSH_USERNAME",
            ),
            (self.connection.insecure, "--insecure"),
            (self.connection.plain_http, "--plain-http"),
            (
                self.cert_file.is_some() || self.key_file.is_some(),
                "--cert-file",
            ),
        ];
        let layout = self
            .layout
            .ok_or_else(|| Error::usage("--layout DIR is required; see oci-push --help"))?;
        let sources = match self.repositories.is_empty() {
            true => std::mem::take(&mut self.default_repositories),
            false => std::mem::take(&mut self.repositories),
        };
        let mut repositories: Vec<Repository> = Vec::new();
        for source in &sources {
            let found = match source {
                RepositorySource::Name(name) => vec![Repository::parse(name)?],
                RepositorySource::File(path) => read_repository_file(path)?,
            };
            for repository in found {
                if !repositories.contains(&repository) {
                    repositories.push(repository);
                }
            }
        }
        if repositories.is_empty() && !self.verify {
            return Err(Error::usage(
                "--repository REPO is required (e.g. -r ghcr.io/org/app); see oci-push --help",
            ));
        }
        check_one_registry(&repositories, &for_one_registry)?;
        let tags = if !self.tags.is_empty() {
            for tag in &self.tags {
                tags::check_tag(tag)?;
            }
            self.tags
        } else if let Some(file) = &self.tags_file {
            tags::read_tags_file(file)?
        } else {
            Vec::new()
        };
        let flags = match (self.username, self.password_stdin) {
            (Some(username), true) => Some((username, auth::Password::new(read_password_stdin()?))),
            (Some(username), false) => match std::env::var("OCI_PUSH_PASSWORD") {
                Ok(password) => Some((username, auth::Password::new(password))),
                Err(_) => {
                    return Err(Error::usage(
                        "--username needs a password: pipe it in with --password-stdin, or set OCI_PUSH_PASSWORD",
                    ))
                }
            },
            (None, true) => {
                return Err(Error::usage(
                    "--password-stdin needs --username USER",
                ))
            }
            (None, false) => None,
        };
        let jobs = match &self.jobs {
            None => DEFAULT_JOBS,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_JOBS).contains(&n) => n,
                _ => {
                    return Err(Error::usage(format!(
                        "--jobs {text}: give a whole number from 1 to {MAX_JOBS}"
                    )))
                }
            },
        };
        let json = match self.format.as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => {
                return Err(Error::usage(format!("--format {other}: give text or json")))
            }
        };
        let mut connection = self.connection;
        connection.identity = match (self.cert_file, self.key_file) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err(Error::usage(
                "--cert-file and --key-file go together: give the client certificate and its key",
            )),
        };
        if let Some(text) = &self.retries {
            connection.retries = match text.parse::<u32>() {
                Ok(n) if n <= 100 => n,
                _ => {
                    return Err(Error::usage(format!(
                        "--retries {text}: give a whole number from 0 to 100"
                    )))
                }
            };
        }
        if let Some(text) = &self.timeout {
            connection.timeout = units::parse_duration("--timeout", text)?;
        }
        let chunk_size = self
            .chunk_size
            .as_deref()
            .map(|text| units::parse_size("--chunk-size", text))
            .transpose()?;
        let mount_from = self
            .mount_from
            .iter()
            .map(|name| Repository::parse(name).map_err(|e| e.context("--mount-from")))
            .collect::<Result<Vec<_>>>()?;
        if self.write_thin_layout.is_some() && !self.verify {
            return Err(Error::usage(
                "--write-thin-layout DIR goes with --verify (the build-time check writes it)",
            ));
        }
        let headers = self
            .remote_cache_headers
            .iter()
            .map(|header| parse_header(header))
            .collect::<Result<Vec<_>>>()?;
        let url = self.remote_cache.filter(|url| !url.is_empty());
        if let Some(url) = &url {
            cache::check_url(url)?;
        }
        Ok(Plan {
            cache: cache::Options { url, headers },
            local_layout: self.local_layout,
            write_thin_layout: self.write_thin_layout,
            referrers: self.referrers,
            jobs,
            mount_from,
            layout,
            repositories,
            tags: tags::dedup(tags),
            digest_file: self.digest_file,
            connection,
            chunk_size,
            quiet: self.quiet,
            json,
            dry_run: self.dry_run,
            auth: auth::Options {
                flags,
                credential_helper: self.credential_helper,
            },
        })
    }
}

/// Credentials and TLS settings given for the run belong to one registry: with destinations
/// on several, they would go to each (a GHCR token to ECR, `--insecure` to ghcr.io), so they
/// are refused; each registry's own credentials come from its login (docs/auth.md).
fn check_one_registry(repositories: &[Repository], given: &[(bool, &str)]) -> Result<()> {
    let registries = registries(repositories);
    if registries.len() < 2 {
        return Ok(());
    }
    let flag = given
        .iter()
        .find_map(|&(given, name)| given.then_some(name));
    match flag {
        None => Ok(()),
        Some(flag) => Err(Error::usage(format!(
            "{flag} is for one registry, and the destinations are on {} ({}); push to each \
             registry in its own run, or log in to each (docker login, a credential helper)",
            registries.len(),
            registries.join(", ")
        ))),
    }
}

/// Each registry of `repositories`, once, in order.
pub fn registries(repositories: &[Repository]) -> Vec<&str> {
    let mut registries: Vec<&str> = Vec::new();
    for repository in repositories {
        if !registries.contains(&repository.registry()) {
            registries.push(repository.registry());
        }
    }
    registries
}

/// `NAME=VALUE`, as Bazel's `--remote_header`. The value may be a secret: never shown.
fn parse_header(text: &str) -> Result<(String, String)> {
    let valid_name = |name: &str| {
        !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    match text.split_once('=') {
        Some((name, value))
            if valid_name(name) && !value.chars().any(|c| c.is_control() && c != '\t') =>
        {
            Ok((name.to_ascii_lowercase(), value.to_string()))
        }
        Some((name, _)) if valid_name(name) => Err(Error::usage(format!(
            "--remote-cache-header {name}=...: the value holds a line break or control character"
        ))),
        _ => Err(Error::usage(
            "--remote-cache-header: expected NAME=VALUE with a header name before the =",
        )),
    }
}

/// A repository file holds one name of at most 255 characters; room for comments and blanks.
const MAX_REPOSITORY_FILE_BYTES: u64 = 64 * 1024;
/// Registry passwords and tokens are a few KiB at most (a GAR access token, a JWT).
const MAX_PASSWORD_BYTES: u64 = 64 * 1024;

/// The password piped in, without the line end `echo` or a heredoc adds.
fn read_password_stdin() -> Result<String> {
    let bytes = crate::files::read_at_most(std::io::stdin().lock(), MAX_PASSWORD_BYTES)
        .map_err(|e| Error::usage(format!("--password-stdin: cannot read stdin: {e}")))?;
    let password = String::from_utf8(bytes)
        .map_err(|_| Error::usage("--password-stdin: the password is not UTF-8 text"))?;
    let trimmed = password.strip_suffix('\n').unwrap_or(&password);
    let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Err(Error::usage("--password-stdin: stdin held no password"));
    }
    Ok(trimmed.to_string())
}

impl Plan {
    /// How to show progress: nothing when quiet, bars on a terminal, lines elsewhere.
    pub fn style(&self) -> report::Style {
        use std::io::IsTerminal;
        if self.quiet {
            report::Style::Quiet
        } else if std::io::stderr().is_terminal() {
            report::Style::Bars
        } else {
            report::Style::Lines
        }
    }
}

/// The destinations a repository file names, one per line (blank lines ignored).
fn read_repository_file(path: &std::path::Path) -> Result<Vec<Repository>> {
    let bytes = crate::files::read_bounded(path, MAX_REPOSITORY_FILE_BYTES).map_err(|e| {
        Error::invalid(format!(
            "cannot read repository file {}: {e}",
            path.display()
        ))
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        Error::invalid(format!(
            "repository file {} is not UTF-8 text",
            path.display()
        ))
    })?;
    let names: Vec<(usize, &str)> = text
        .lines()
        .map(str::trim)
        .enumerate()
        .filter(|(_, line)| !line.is_empty())
        .collect();
    if names.is_empty() {
        return Err(Error::invalid(format!(
            "repository file {} is empty",
            path.display()
        )));
    }
    names
        .iter()
        .map(|(i, name)| {
            Repository::parse(name)
                .map_err(|e| e.context(format!("repository file {}:{}", path.display(), i + 1)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Kind;

    fn run(args: &[&str]) -> Result<Command> {
        parse(args.iter().map(OsString::from))
    }

    fn plan(args: &[&str]) -> Plan {
        match run(args) {
            Ok(Command::Push(plan)) | Ok(Command::Verify(plan)) => plan,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn repositories_add_up_in_order_each_once_and_replace_the_defaults() {
        let shown = |p: Plan| {
            p.repositories
                .iter()
                .map(|r| r.to_string())
                .collect::<Vec<_>>()
        };
        let p = plan(&[
            "--default-repository",
            "h.io/rule",
            "--layout",
            "a",
            "-r",
            "h.io/one",
            "--repository",
            "h.io/two",
            "-r",
            "h.io/one",
        ]);
        assert_eq!(shown(p), ["h.io/one", "h.io/two"]);
        let p = plan(&["--default-repository", "h.io/rule", "--layout", "a"]);
        assert_eq!(shown(p), ["h.io/rule"]);
    }

    #[test]
    fn later_flags_win() {
        let p = plan(&["--layout", "a", "--layout=b", "-r", "h.io/x"]);
        assert_eq!(p.layout, PathBuf::from("b"));
    }

    #[test]
    fn tag_flags_replace_the_tags_file_and_dedup() {
        let p = plan(&[
            "--layout",
            "a",
            "-r",
            "h.io/x",
            "--tags-file",
            "/nonexistent",
            "-t",
            "v1",
            "--tag",
            "v2",
            "-t",
            "v1",
        ]);
        assert_eq!(p.tags, ["v1", "v2"]);
    }

    #[test]
    fn usage_errors() {
        let err = run(&["--layout", "a"]).unwrap_err();
        assert_eq!(err.kind(), Kind::Usage);
        assert!(err.to_string().contains("--repository REPO is required"));
        let err = run(&["-r", "h.io/x"]).unwrap_err();
        assert!(err.to_string().contains("--layout DIR is required"));
        let err = run(&["--layout", "a", "-r", "h.io/x", "--bogus"]).unwrap_err();
        assert_eq!(err.kind(), Kind::Usage);
        assert_eq!(
            err.to_string(),
            "invalid option '--bogus'; see oci-push --help"
        );
        let err = run(&["--layout", "a", "-r", "h.io/x", "-t", "bad tag"]).unwrap_err();
        assert_eq!(err.kind(), Kind::Invalid);
        assert!(matches!(run(&["-r", "x", "--help"]), Ok(Command::Help)));
    }

    #[test]
    fn verify_needs_no_repository() {
        assert!(matches!(
            run(&["--verify", "--layout", "a"]),
            Ok(Command::Verify(_))
        ));
    }
}
