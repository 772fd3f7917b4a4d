//! Docker's `config.json` (`auths`, `credHelpers`, `credsStore`) and Podman's `auth.json`
//! (the same `auths` format), read the way those tools read them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::{decode_base64_text, run_helper, split_user_password, Credential, Secret};
use crate::error::{Error, Kind, Result};
use crate::reference::Repository;

/// Docker's config: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn find_docker(repository: &Repository, deadline: Instant) -> Result<Option<Credential>> {
    let path = match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => PathBuf::from(dir).join("config.json"),
        None => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(".docker/config.json"),
            None => return Ok(None),
        },
    };
    let Some(config) = read_json(&path)? else {
        return Ok(None);
    };
    let shown = path.display().to_string();
    let helper = config
        .get("credHelpers")
        .and_then(|h| h.as_object())
        .and_then(|helpers| {
            let keys = repository.config_keys();
            helpers
                .iter()
                .find(|(key, _)| keys.contains(&normalize_key(key).as_str()))
                .and_then(|(_, name)| name.as_str())
        })
        .or_else(|| config.get("credsStore").and_then(|v| v.as_str()))
        .filter(|name| !name.is_empty());
    if let Some(name) = helper {
        if let Some(found) = docker_credential_helper(name, repository, &shown, deadline)? {
            return Ok(Some(found));
        }
    }
    from_auths(&config, repository, &shown)
}

/// Podman's and skopeo's auth file: `$REGISTRY_AUTH_FILE`, else
/// `$XDG_RUNTIME_DIR/containers/auth.json`.
pub fn find_podman(repository: &Repository) -> Result<Option<Credential>> {
    let path = match (
        std::env::var_os("REGISTRY_AUTH_FILE"),
        std::env::var_os("XDG_RUNTIME_DIR"),
    ) {
        (Some(file), _) => PathBuf::from(file),
        (None, Some(dir)) => PathBuf::from(dir).join("containers/auth.json"),
        (None, None) => return Ok(None),
    };
    match read_json(&path)? {
        Some(config) => from_auths(&config, repository, &path.display().to_string()),
        None => Ok(None),
    }
}

/// Docker and Podman configs hold a few entries; a large one with many registries and
/// base64 auths stays well under this.
const MAX_CONFIG_BYTES: u64 = 4 << 20;

fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    let bytes = match crate::files::read_bounded(path, MAX_CONFIG_BYTES) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::new(
                Kind::Auth,
                format!("cannot read {}: {e}", path.display()),
            ))
        }
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::new(
            Kind::Auth,
            format!(
                "{} is not valid JSON: {e}; fix or remove it",
                path.display()
            ),
        )
    })
}

/// The credentials a Docker or Podman config's text holds for `repository` in `auths` (no
/// helper is run), as a push reads them: for the property tests.
pub fn from_config_text(
    text: &[u8],
    repository: &Repository,
    source: &str,
) -> Result<Option<Credential>> {
    let config: serde_json::Value = serde_json::from_slice(text)
        .map_err(|e| Error::new(Kind::Auth, format!("{source} is not valid JSON: {e}")))?;
    from_auths(&config, repository, source)
}

/// The `auths` entry for the repository: the longest key that names its registry, or the
/// registry and a leading part of its path (Podman allows `host/org` keys).
fn from_auths(
    config: &serde_json::Value,
    repository: &Repository,
    source: &str,
) -> Result<Option<Credential>> {
    let Some(auths) = config.get("auths").and_then(|a| a.as_object()) else {
        return Ok(None);
    };
    let keys = repository.config_keys();
    let full = format!("{}/{}", repository.registry(), repository.path());
    let entry = auths
        .iter()
        .filter_map(|(key, entry)| {
            let key = normalize_key(key);
            // The registry, or the repository or a namespace of it (as Podman's keys).
            let matches = keys.iter().any(|k| *k == key)
                || full == key
                || (full.starts_with(&key) && full[key.len()..].starts_with('/'));
            matches.then_some((key.len(), entry))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, entry)| entry);
    let Some(entry) = entry else {
        return Ok(None);
    };
    let field = |name: &str| {
        entry
            .get(name)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
    };
    let bad = |why: &str| {
        Error::new(
            Kind::Auth,
            format!(
                "{source}: the entry for {} {why}; run docker login {} again",
                repository.registry(),
                repository.registry()
            ),
        )
    };
    let (username, password) = if let Some(auth) = field("auth") {
        let decoded = decode_base64_text(auth)
            .ok_or_else(|| bad("has an 'auth' that is not base64 of user:password"))?;
        split_user_password(&decoded)
            .ok_or_else(|| bad("has an 'auth' without a ':' between user and password"))?
    } else {
        (
            field("username").unwrap_or_default().to_string(),
            field("password").unwrap_or_default().to_string(),
        )
    };
    let secret = if let Some(token) = field("identitytoken") {
        Secret::IdentityToken {
            token: token.to_string(),
        }
    } else if username.is_empty() && password.is_empty() {
        return Ok(None);
    } else {
        Secret::Basic { username, password }
    };
    Ok(Some(Credential {
        secret,
        source: source.to_string(),
    }))
}

/// Config keys are written as `host`, `https://host`, or `https://host/v1/`.
fn normalize_key(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let key = key.trim_end_matches('/');
    key.strip_suffix("/v1")
        .or_else(|| key.strip_suffix("/v2"))
        .unwrap_or(key)
        .to_string()
}

/// Runs `docker-credential-NAME get` with the server on stdin, as docker does. "Not found" is
/// no answer (the config's `auths` may still have one); any other failure is an error.
fn docker_credential_helper(
    name: &str,
    repository: &Repository,
    config: &str,
    deadline: Instant,
) -> Result<Option<Credential>> {
    check_helper_name(name, config)?;
    let program = format!("docker-credential-{name}");
    let source = format!("{program} (from {config})");
    let server = repository.config_server();
    let Some(answer) = run_helper(program.as_ref(), server.as_bytes(), &source, deadline)? else {
        return Ok(None);
    };
    let text = |name: &str| {
        answer
            .get(name)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let (username, secret) = (text("Username"), text("Secret"));
    if secret.is_empty() {
        return Ok(None);
    }
    // Docker's convention: the user name `<token>` marks an identity token.
    let secret = if username == "<token>" {
        Secret::IdentityToken { token: secret }
    } else {
        Secret::Basic {
            username,
            password: secret,
        }
    };
    Ok(Some(Credential { secret, source }))
}

/// A helper is named, not given as a path: docker looks `docker-credential-NAME` up on PATH.
/// A name that could reach a file elsewhere (`x/../payload.sh` runs `./payload.sh` from the
/// working directory, under `bazel run` the user's checkout) is refused, so that a config file
/// can only name a program the user installed.
fn check_helper_name(name: &str, config: &str) -> Result<()> {
    let path_like = name.contains(['/', '\\'])
        || name.contains("..")
        || name.starts_with('.')
        || name.chars().any(char::is_control);
    if !path_like {
        return Ok(());
    }
    Err(Error::new(
        Kind::Auth,
        format!(
            "{config}: credential helper '{name}' is not a plain name (docker runs \
             docker-credential-NAME from PATH); fix its credHelpers or credsStore entry"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys_are_normalized() {
        assert_eq!(
            normalize_key("https://index.docker.io/v1/"),
            "index.docker.io"
        );
        assert_eq!(normalize_key("http://localhost:5000"), "localhost:5000");
        assert_eq!(normalize_key("ghcr.io"), "ghcr.io");
        assert_eq!(normalize_key("quay.io/org/"), "quay.io/org");
    }

    fn repo(name: &str) -> Repository {
        Repository::parse(name).unwrap()
    }

    fn user_of(config: serde_json::Value, name: &str) -> Option<String> {
        match from_auths(&config, &repo(name), "cfg").unwrap()?.secret {
            Secret::Basic { username, .. } => Some(username),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn auths_entries() {
        let config = serde_json::json!({"auths": {
            "https://index.docker.io/v1/": {"auth": "aHViOnB3"},
            "quay.io": {"username": "a", "password": "b"},
            "quay.io/team": {"username": "team", "password": "c"},
            "localhost:5000": {"auth": "bG9jYWw6cHc="},
        }});
        assert_eq!(
            user_of(config.clone(), "docker.io/library/x").as_deref(),
            Some("hub")
        );
        assert_eq!(
            user_of(config.clone(), "quay.io/other/x").as_deref(),
            Some("a")
        );
        assert_eq!(
            user_of(config.clone(), "quay.io/team/x").as_deref(),
            Some("team")
        );
        assert_eq!(
            user_of(config.clone(), "quay.io/teamx/y").as_deref(),
            Some("a")
        );
        assert_eq!(
            user_of(config.clone(), "localhost:5000/x").as_deref(),
            Some("local")
        );
        assert_eq!(user_of(config, "ghcr.io/x"), None);
    }

    #[test]
    fn helper_names_that_are_paths_are_refused() {
        for bad in [
            "x/../payload.sh",
            "../x",
            ".hidden",
            "a\\b",
            "/bin/sh",
            "a..b",
            "x\ny",
        ] {
            let err = check_helper_name(bad, "cfg").unwrap_err();
            assert_eq!(err.kind(), Kind::Auth, "{bad}");
            assert!(
                err.to_string().starts_with("cfg: credential helper '"),
                "{err}"
            );
        }
        for good in [
            "ecr-login",
            "gcloud",
            "osxkeychain",
            "pass",
            "desktop.exe",
            "acr_env",
        ] {
            check_helper_name(good, "cfg").unwrap();
        }
    }

    #[test]
    fn bad_auth_field_names_the_file() {
        let config = serde_json::json!({"auths": {"ghcr.io": {"auth": "!!!"}}});
        let err =
            from_auths(&config, &repo("ghcr.io/x"), "/home/u/.docker/config.json").unwrap_err();
        assert_eq!(err.kind(), Kind::Auth);
        assert!(err
            .to_string()
            .starts_with("/home/u/.docker/config.json: the entry for ghcr.io"));
    }
}
