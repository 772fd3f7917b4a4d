//! Bazel's credential helper protocol: `HELPER get`, `{"uri": ...}` on stdin, and
//! `{"headers": {"Name": ["value", ...]}}` on stdout. The same helper a build already uses for
//! remote caches and downloads then serves pushes.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine as _;

use super::{split_user_password, Credential, Secret};
use crate::error::{Error, Kind, Result};
use crate::reference::Repository;

pub fn get(helper: &Path, repository: &Repository) -> Result<Credential> {
    let source = format!("credential helper {}", helper.display());
    let fail = |why: String| Error::new(Kind::Auth, format!("{source}: {why}"));
    let uri = format!("https://{}/v2/", repository.api_host());
    let mut child = Command::new(helper)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let request = serde_json::json!({ "uri": uri }).to_string();
        // A helper that exits without reading its input is judged by its exit status below.
        let _ = stdin.write_all(request.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|e| fail(format!("cannot run it: {e}")))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(fail(format!(
            "it failed ({}): {}",
            output.status,
            stderr.trim().lines().next().unwrap_or("")
        )));
    }
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| fail(format!("its answer is not JSON: {e}")))?;
    let mut headers = Vec::new();
    if let Some(map) = answer.get("headers").and_then(|h| h.as_object()) {
        for (name, values) in map {
            for value in values.as_array().into_iter().flatten() {
                if let Some(value) = value.as_str() {
                    headers.push((name.clone(), value.to_string()));
                }
            }
        }
    }
    // A Basic header carries a user and password that also serve a token server.
    if let [(name, value)] = headers.as_slice() {
        if name.eq_ignore_ascii_case("authorization") {
            if let Some((username, password)) = value
                .strip_prefix("Basic ")
                .and_then(|b| {
                    base64::engine::general_purpose::STANDARD
                        .decode(b.trim())
                        .ok()
                })
                .and_then(|d| String::from_utf8(d).ok())
                .and_then(|d| split_user_password(&d))
            {
                return Ok(Credential {
                    secret: Secret::Basic { username, password },
                    source,
                });
            }
        }
    }
    let secret = if headers.is_empty() {
        Secret::Anonymous
    } else {
        Secret::Headers(headers)
    };
    Ok(Credential { secret, source })
}
