/*!
Where credentials for a registry come from, in this order (the first that has any wins):

1. `--username` with `--password-stdin`, or `OCI_PUSH_USERNAME` / `OCI_PUSH_PASSWORD`;
2. a Bazel credential helper (`--credential-helper`);
3. Docker's config (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`): `credHelpers`,
   `credsStore`, then `auths`;
4. Podman's auth files (`$REGISTRY_AUTH_FILE`, else `$XDG_RUNTIME_DIR/containers/auth.json`);
5. none (anonymous).

The result says where it came from, so that a refusal can name the source to fix. Secrets are
kept out of `Debug` output and every message.
*/

mod bazel_helper;
mod docker_config;
mod helper_process;

pub use bazel_helper::headers as helper_headers;
pub use docker_config::from_config_text;

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use crate::error::{Error, Kind, Result};
use crate::reference::Repository;

/// What to authenticate with.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// A user name and password: Basic auth, or the token server's GET with Basic auth.
    Basic {
        username: String,
        password: String,
    },
    /// An identity (refresh) token, exchanged at the token server with a POST.
    IdentityToken {
        token: String,
    },
    /// Headers a Bazel credential helper gave, sent as they are.
    Headers(Vec<(String, String)>),
    Anonymous,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Secret::Basic { .. } => "Basic(..)",
            Secret::IdentityToken { .. } => "IdentityToken(..)",
            Secret::Headers(_) => "Headers(..)",
            Secret::Anonymous => "Anonymous",
        })
    }
}

/// Credentials and where they came from.
#[derive(Clone, Debug)]
pub struct Credential {
    pub secret: Secret,
    /// Names the source in messages: `--username`, `OCI_PUSH_USERNAME`, a file, a helper.
    pub source: String,
}

impl Credential {
    pub fn anonymous() -> Credential {
        Credential {
            secret: Secret::Anonymous,
            source: "anonymous".to_string(),
        }
    }

    pub fn is_anonymous(&self) -> bool {
        matches!(self.secret, Secret::Anonymous)
    }
}

/// A password from the command line's sources, which `Debug` never shows: a plan or options
/// printed while debugging cannot leak it.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    pub fn new(password: String) -> Password {
        Password(password)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// What the command line and environment say about credentials.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--username` with the password read from stdin (`--password-stdin`).
    pub flags: Option<(String, Password)>,
    pub credential_helper: Option<PathBuf>,
}

/// Finds the credentials for `repository`, following the order in the module docs. Helpers
/// must answer before `deadline` (the push's `--timeout`).
pub fn find(repository: &Repository, options: &Options, deadline: Instant) -> Result<Credential> {
    if let Some((username, password)) = &options.flags {
        return Ok(Credential {
            secret: Secret::Basic {
                username: username.clone(),
                password: password.0.clone(),
            },
            source: "--username".to_string(),
        });
    }
    if let Some((username, password)) = environment_credential() {
        return Ok(Credential {
            secret: Secret::Basic { username, password },
            source: "OCI_PUSH_USERNAME/OCI_PUSH_PASSWORD".to_string(),
        });
    }
    if let Some(helper) = &options.credential_helper {
        if let Some(found) = bazel_helper::get(helper, repository, deadline)? {
            return Ok(found);
        }
    }
    if let Some(found) = docker_config::find_docker(repository, deadline)? {
        return Ok(found);
    }
    if let Some(found) = docker_config::find_podman(repository)? {
        return Ok(found);
    }
    Ok(Credential::anonymous())
}

/// `OCI_PUSH_USERNAME` (not empty) and `OCI_PUSH_PASSWORD`, when both are set.
pub fn environment_credential() -> Option<(String, String)> {
    let username = std::env::var("OCI_PUSH_USERNAME").ok()?;
    let password = std::env::var("OCI_PUSH_PASSWORD").ok()?;
    (!username.is_empty()).then_some((username, password))
}

/// Runs a credential helper as `PROGRAM get` with `input` on stdin and returns its JSON answer,
/// or None when it says it has no credentials for this registry (docker's helpers answer
/// "credentials not found"). Any other failure is an error naming `source`, showing the start
/// of the helper's stderr but never its stdout, where a secret may stand.
fn run_helper(
    program: &std::ffi::OsStr,
    input: &[u8],
    source: &str,
    deadline: Instant,
) -> Result<Option<serde_json::Value>> {
    // A run asks a helper each question once: several destinations on one registry would
    // run it again for the same answer (a helper that prompts, or a rate-limited SSO).
    type Answers = HashMap<(std::ffi::OsString, Vec<u8>), Option<serde_json::Value>>;
    static ANSWERS: OnceLock<Mutex<Answers>> = OnceLock::new();
    let answers = ANSWERS.get_or_init(Default::default);
    let key = (program.to_os_string(), input.to_vec());
    let known = answers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .cloned();
    if let Some(answer) = known {
        return Ok(answer);
    }
    let answer = ask_helper(program, input, source, deadline)?;
    answers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, answer.clone());
    Ok(answer)
}

fn ask_helper(
    program: &std::ffi::OsStr,
    input: &[u8],
    source: &str,
    deadline: Instant,
) -> Result<Option<serde_json::Value>> {
    let fail = |why: String| Error::new(Kind::Auth, format!("{source}: {why}"));
    match helper_process::run(program, input, source, deadline)? {
        helper_process::Outcome::Answered(stdout) => serde_json::from_slice(&stdout)
            .map(Some)
            .map_err(|e| fail(format!("its answer is not JSON: {e}"))),
        helper_process::Outcome::Failed {
            not_found: true, ..
        } => Ok(None),
        helper_process::Outcome::Failed { status, stderr, .. } => {
            Err(fail(format!("it failed ({status}): {stderr}")))
        }
    }
}

/// `Authorization: Basic` for a user and password (RFC 7617).
pub fn basic_header(username: &str, password: &str) -> (String, String) {
    use base64::Engine as _;
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    ("authorization".to_string(), format!("Basic {encoded}"))
}

/// Splits `user:password` as Basic auth and the Docker config's `auth` field encode them.
/// Standard base64 of UTF-8 text (a `user:password`), decoded.
fn decode_base64_text(encoded: &str) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}

fn split_user_password(decoded: &str) -> Option<(String, String)> {
    decoded
        .split_once(':')
        .map(|(u, p)| (u.to_string(), p.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_a_password_or_secret() {
        let options = Options {
            flags: Some(("alice".to_string(), Password::new("pw-s3cret".to_string()))),
            credential_helper: None,
        };
        let credential = Credential {
            secret: Secret::Basic {
                username: "alice".to_string(),
                password: "pw-s3cret".to_string(),
            },
            source: "--username".to_string(),
        };
        let headers = Secret::Headers(vec![("x-api-key".to_string(), "pw-s3cret".to_string())]);
        let token = Secret::IdentityToken {
            token: "pw-s3cret".to_string(),
        };
        for shown in [
            format!("{options:?}"),
            format!("{options:#?}"),
            format!("{credential:?}"),
            format!("{headers:?}"),
            format!("{token:?}"),
        ] {
            assert!(!shown.contains("pw-s3cret"), "{shown}");
        }
        assert!(format!("{options:?}").contains("alice"));
    }
}
