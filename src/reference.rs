/*!
Repository names (`host[:port]/path`), checked before any request is made.

The grammar is the distribution spec's: a registry host that looks like a host (it has a dot or a
port, or is `localhost`, or is a bracketed IPv6 address), then lower-case path components joined
by `/`. A tag or digest on the repository is refused, because tags come from `--tag` and the tags
file and the digest comes from the layout.
*/

use std::fmt;

use crate::error::{Error, Result};

const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";
const DOCKER_HUB_NAMES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

/// A validated repository: where to push, without tag or digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repository {
    /// `host` or `host:port`, as written (IPv6 in brackets).
    registry: String,
    /// The path inside the registry, e.g. `org/app`.
    path: String,
}

impl Repository {
    pub fn parse(input: &str) -> Result<Repository> {
        let bad = |why: &str| Error::invalid(format!("invalid repository '{input}': {why}"));
        if input.is_empty() {
            return Err(bad(
                "it is empty; give host[:port]/path, e.g. ghcr.io/org/app",
            ));
        }
        if let Some((scheme, _)) = input.split_once("://") {
            return Err(bad(&format!(
                "remove the '{scheme}://' scheme; write host[:port]/path (use --plain-http for a plain HTTP registry)"
            )));
        }
        if input.contains('@') {
            return Err(bad(
                "it has a digest; the digest comes from the image, give the repository alone",
            ));
        }
        let Some((registry, path)) = input.split_once('/') else {
            if looks_like_registry(input) {
                return Err(bad(&format!(
                    "it names a registry but no repository; add a path, e.g. {input}/app"
                )));
            }
            return Err(bad(
                "no registry host; write host[:port]/path, e.g. docker.io/library/app",
            ));
        };
        if path
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'))
        {
            return Err(bad(
                "it has a tag; pass tags with --tag or the tags file, not in the repository",
            ));
        }
        if !looks_like_registry(registry) {
            return Err(bad(&format!(
                "'{registry}' is not a registry host; write host[:port]/path, e.g. docker.io/{input}"
            )));
        }
        check_host(registry).map_err(|why| bad(&why))?;
        if input.len() > 255 {
            return Err(bad("it is longer than 255 characters"));
        }
        for component in path.split('/') {
            check_path_component(component).map_err(|why| bad(&why))?;
        }
        // Docker Hub has several names and puts official images under `library/`.
        if DOCKER_HUB_NAMES.contains(&registry) {
            let path = match path.contains('/') {
                true => path.to_string(),
                false => format!("library/{path}"),
            };
            return Ok(Repository {
                registry: DOCKER_HUB.to_string(),
                path,
            });
        }
        Ok(Repository {
            registry: registry.to_string(),
            path: path.to_string(),
        })
    }

    /// The host (and port) that serves the registry API.
    pub fn api_host(&self) -> &str {
        match self.registry.as_str() {
            DOCKER_HUB => DOCKER_HUB_API,
            other => other,
        }
    }

    /// The keys a Docker or Podman config may file this registry's credentials under,
    /// normalized (no scheme, no `/v1/`).
    pub fn config_keys(&self) -> Vec<&str> {
        match self.registry.as_str() {
            DOCKER_HUB => DOCKER_HUB_NAMES.to_vec(),
            other => vec![other],
        }
    }

    /// The server name docker hands its credential helpers for this registry.
    pub fn config_server(&self) -> &str {
        match self.registry.as_str() {
            DOCKER_HUB => "https://index.docker.io/v1/",
            other => other,
        }
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The host without port or brackets, for decisions such as plain HTTP on loopback.
    pub fn hostname(&self) -> &str {
        let r = self.registry.as_str();
        if let Some(rest) = r.strip_prefix('[') {
            return rest.split(']').next().unwrap_or(rest);
        }
        r.split(':').next().unwrap_or(r)
    }

    /// Registries on the loopback interface speak plain HTTP by default, as docker and crane do.
    /// Only what cannot name another machine counts: an IP literal in 127.0.0.0/8, `::1`, and
    /// `localhost` (whose addresses the client still checks). A DNS name such as
    /// `127.0.0.1.example.com` can resolve anywhere.
    pub fn is_loopback(&self) -> bool {
        crate::registry::is_loopback_host(self.hostname())
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)
    }
}

/// `host/path:tag@digest` without its tag and digest, for names found in annotations.
pub fn strip_tag_and_digest(name: &str) -> &str {
    let name = name.split('@').next().unwrap_or(name);
    match name.rsplit_once(':') {
        Some((before, tag)) if !tag.contains('/') => before,
        _ => name,
    }
}

/// Docker's rule for telling a registry host from the first path component.
fn looks_like_registry(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost" || first.starts_with('[')
}

fn check_host(registry: &str) -> std::result::Result<(), String> {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return Err(format!("'{registry}' has an unclosed '['"));
        };
        if inside.is_empty() || !inside.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
            return Err(format!("'{inside}' is not an IPv6 address"));
        }
        match after {
            "" => (inside, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (inside, Some(port)),
                None => return Err(format!("unexpected '{after}' after the IPv6 address")),
            },
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || port.len() > 5 {
            return Err(format!("'{port}' is not a port number"));
        }
    }
    if registry.starts_with('[') {
        return Ok(());
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!("'{host}' is not a valid host name"));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn check_path_component(component: &str) -> std::result::Result<(), String> {
    if component.is_empty() {
        return Err("it has an empty path component ('//' or a trailing '/')".into());
    }
    if component.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "'{component}' has upper-case letters; repository paths must be lower case"
        ));
    }
    let bytes = component.as_bytes();
    let is_alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    let mut after_alnum = false;
    while i < bytes.len() {
        let b = bytes[i];
        if is_alnum(b) {
            after_alnum = true;
            i += 1;
            continue;
        }
        let sep_len = match b {
            b'.' => 1,
            b'_' if bytes.get(i + 1) == Some(&b'_') => 2,
            b'_' => 1,
            b'-' => bytes[i..].iter().take_while(|&&c| c == b'-').count(),
            other => {
                let shown = char::from(other).escape_default();
                return Err(format!(
                    "'{component}' has the character '{shown}'; use a-z, 0-9 and . _ __ -"
                ));
            }
        };
        let next = bytes.get(i + sep_len).copied();
        if !after_alnum || !next.is_some_and(is_alnum) {
            return Err(format!(
                "'{component}' must start and end with a letter or digit, with single separators between"
            ));
        }
        after_alnum = false;
        i += sep_len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_an_ip_literal_or_localhost() {
        for name in [
            "127.0.0.1:5000/a",
            "127.1.2.3/a",
            "[::1]:5000/a",
            "localhost:5000/a",
        ] {
            assert!(Repository::parse(name).unwrap().is_loopback(), "{name}");
        }
        for name in [
            "127.0.0.1.nip.io/a",
            "127.evil.example/a",
            "127.0.0.1x:5000/a",
            "localhost.example.com/a",
            "ghcr.io/a",
            "[::2]/a",
            "10.0.0.1:5000/a",
        ] {
            assert!(!Repository::parse(name).unwrap().is_loopback(), "{name}");
        }
    }

    #[test]
    fn accepts_common_names() {
        for ok in [
            "ghcr.io/org/app",
            "localhost:5000/app",
            "127.0.0.1:5000/a/b/c",
            "[::1]:5000/app",
            "registry.example.com/my_org/my-app.v2",
            "gcr.io/a__b/c---d",
        ] {
            let repo = Repository::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(repo.to_string(), ok);
        }
    }

    #[test]
    fn tags_and_digests_are_stripped_from_annotations() {
        assert_eq!(
            strip_tag_and_digest("ghcr.io/org/base:3.18"),
            "ghcr.io/org/base"
        );
        assert_eq!(
            strip_tag_and_digest("localhost:5000/base@sha256:ab"),
            "localhost:5000/base"
        );
        assert_eq!(
            strip_tag_and_digest("localhost:5000/base:1@sha256:ab"),
            "localhost:5000/base"
        );
        assert_eq!(
            strip_tag_and_digest("localhost:5000/base"),
            "localhost:5000/base"
        );
    }

    #[test]
    fn docker_hub_names_are_normalized() {
        for name in [
            "docker.io/app",
            "index.docker.io/app",
            "registry-1.docker.io/library/app",
        ] {
            let repo = Repository::parse(name).unwrap();
            assert_eq!(repo.to_string(), "docker.io/library/app");
            assert_eq!(repo.api_host(), "registry-1.docker.io");
            assert_eq!(repo.config_server(), "https://index.docker.io/v1/");
        }
        let repo = Repository::parse("docker.io/org/app").unwrap();
        assert_eq!(repo.path(), "org/app");
        assert_eq!(
            repo.config_keys(),
            ["docker.io", "index.docker.io", "registry-1.docker.io"]
        );
        assert_eq!(
            Repository::parse("ghcr.io/a").unwrap().config_keys(),
            ["ghcr.io"]
        );
    }

    #[test]
    fn splits_host_and_path() {
        let repo = Repository::parse("[::1]:5000/org/app").unwrap();
        assert_eq!(repo.registry(), "[::1]:5000");
        assert_eq!(repo.hostname(), "::1");
        assert_eq!(repo.path(), "org/app");
        assert!(repo.is_loopback());
        assert!(!Repository::parse("ghcr.io/a").unwrap().is_loopback());
    }

    fn reason(input: &str) -> String {
        Repository::parse(input).unwrap_err().to_string()
    }

    #[test]
    fn refuses_tag_digest_scheme_case() {
        assert!(reason("ghcr.io/org/app:v1").contains("it has a tag"));
        assert!(reason("localhost:5000/app:v1").contains("it has a tag"));
        assert!(reason("ghcr.io/org/app@sha256:abcd").contains("it has a digest"));
        assert!(reason("https://ghcr.io/org/app").contains("remove the 'https://' scheme"));
        assert!(reason("ghcr.io/Org/app").contains("lower case"));
        assert!(reason("app").contains("no registry host"));
        assert!(reason("org/app").contains("is not a registry host"));
        assert!(reason("ghcr.io/org//app").contains("empty path component"));
        assert!(reason("ghcr.io/org/app/").contains("empty path component"));
        assert!(reason("ghcr.io/-app").contains("must start and end"));
        assert!(reason("ghcr.io/a..b").contains("must start and end"));
        assert!(reason("ghcr.io/a b").contains("the character ' '"));
        assert!(reason("host:port/app").contains("not a port number"));
        assert!(reason("").contains("it is empty"));
        assert!(reason("localhost:5000").contains("add a path, e.g. localhost:5000/app"));
    }

    #[test]
    fn error_is_invalid_input() {
        let err = Repository::parse("ghcr.io/org/app:v1").unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::Invalid);
        assert_eq!(
            err.to_string(),
            "invalid repository 'ghcr.io/org/app:v1': it has a tag; pass tags with --tag or the tags file, not in the repository"
        );
    }
}
