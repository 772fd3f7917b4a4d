//! Bazel's credential helper protocol: `HELPER get`, `{"uri": ...}` on stdin, and
//! `{"headers": {"Name": ["value", ...]}}` on stdout. The same helper a build already uses for
//! remote caches and downloads then serves pushes.

use std::path::Path;
use std::time::Instant;

use super::{decode_base64_text, run_helper, split_user_password, Credential, Secret};
use crate::error::Result;
use crate::reference::Repository;

/// The helper's credentials for `repository`, or None when it has none (no answer, or no
/// headers): the lookup then goes on to the next source.
pub fn get(
    helper: &Path,
    repository: &Repository,
    deadline: Instant,
) -> Result<Option<Credential>> {
    let source = format!("credential helper {}", helper.display());
    let uri = format!("https://{}/v2/", repository.api_host());
    let headers = headers(helper, &uri, deadline)?;
    // A Basic header carries a user and password that also serve a token server.
    if let [(name, value)] = headers.as_slice() {
        if name.eq_ignore_ascii_case("authorization") {
            if let Some((username, password)) = value
                .strip_prefix("Basic ")
                .and_then(decode_base64_text)
                .and_then(|d| split_user_password(&d))
            {
                return Ok(Some(Credential {
                    secret: Secret::Basic { username, password },
                    source,
                }));
            }
        }
    }
    if headers.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credential {
        secret: Secret::Headers(headers),
        source,
    }))
}

/// The headers the helper gives for `uri` (none when it has no credentials for it), to be
/// sent to that URI's origin only.
pub fn headers(helper: &Path, uri: &str, deadline: Instant) -> Result<Vec<(String, String)>> {
    let source = format!("credential helper {}", helper.display());
    let request = serde_json::json!({ "uri": uri }).to_string();
    let Some(answer) = run_helper(helper.as_os_str(), request.as_bytes(), &source, deadline)?
    else {
        return Ok(Vec::new());
    };
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
    Ok(headers)
}
