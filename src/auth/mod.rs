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

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Kind, Result};
use crate::reference::Repository;

/// What to authenticate with.
#[derive(Clone)]
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

/// What the command line and environment say about credentials.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--username` with the password read from stdin (`--password-stdin`).
    pub flags: Option<(String, String)>,
    pub credential_helper: Option<PathBuf>,
}

/// Finds the credentials for `repository`, following the order in the module docs.
pub fn find(repository: &Repository, options: &Options) -> Result<Credential> {
    if let Some((username, password)) = &options.flags {
        return Ok(Credential {
            secret: Secret::Basic {
                username: username.clone(),
                password: password.clone(),
            },
            source: "--username".to_string(),
        });
    }
    if let (Ok(username), Ok(password)) = (
        std::env::var("OCI_PUSH_USERNAME"),
        std::env::var("OCI_PUSH_PASSWORD"),
    ) {
        if !username.is_empty() {
            return Ok(Credential {
                secret: Secret::Basic { username, password },
                source: "OCI_PUSH_USERNAME/OCI_PUSH_PASSWORD".to_string(),
            });
        }
    }
    if let Some(helper) = &options.credential_helper {
        if let Some(found) = bazel_helper::get(helper, repository)? {
            return Ok(found);
        }
    }
    if let Some(found) = docker_config::find_docker(repository)? {
        return Ok(found);
    }
    if let Some(found) = docker_config::find_podman(repository)? {
        return Ok(found);
    }
    Ok(Credential::anonymous())
}

/// Runs a credential helper as `PROGRAM get` with `input` on stdin and returns its JSON answer,
/// or None when it says it has no credentials for this registry (docker's helpers answer
/// "credentials not found"). Any other failure is an error naming `source`.
fn run_helper(
    program: &std::ffi::OsStr,
    input: &[u8],
    source: &str,
) -> Result<Option<serde_json::Value>> {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let fail = |why: String| Error::new(Kind::Auth, format!("{source}: {why}"));
    let mut child = Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run it ({e}); is it installed and on PATH?")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading its input is judged by its exit status below.
        let _ = stdin.write_all(input);
    }
    let output = child
        .wait_with_output()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    if !output.status.success() {
        // Helpers report errors, never secrets, on a failed `get`.
        let said = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        if said.to_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        return Err(fail(format!(
            "it failed ({}): {}",
            output.status,
            said.trim().lines().next().unwrap_or("")
        )));
    }
    serde_json::from_slice(&output.stdout)
        .map(Some)
        .map_err(|e| fail(format!("its answer is not JSON: {e}")))
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
