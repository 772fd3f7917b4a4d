//! Redirects, followed here rather than in ureq, so that credentials go only to the origin
//! (scheme, host and port) they were given for, and a body that is itself a credential is never
//! sent on elsewhere.

use ureq::http::{Method, Response};

use super::url::{self, redact, same_origin};
use super::wire::{Payload, Wire};
use crate::error::{Error, Kind};

/// Redirects followed for one request: a registry sends one at most (to its storage).
const MAX_REDIRECTS: usize = 5;

fn is_get_or_head(method: &Method) -> bool {
    *method == Method::GET || *method == Method::HEAD
}

/// The wire, with redirects followed.
pub struct Redirects {
    pub wire: Wire,
}

impl Redirects {
    /// One request, following redirects here rather than in ureq, so that `credentials` go
    /// only to the scheme, host and port of `url`: ureq would carry headers other than
    /// `Authorization` (a Bazel helper's `x-api-key`) to whatever host a redirect names. A
    /// failure comes with whether it was about certificates (the peer speaks TLS but is not
    /// trusted, or `--ca-file` is unusable).
    pub fn send(
        &self,
        method: &Method,
        url: &str,
        headers: &[(String, String)],
        credentials: &[(String, String)],
        payload: Payload,
        what: &str,
    ) -> std::result::Result<Response<ureq::Body>, (Error, bool)> {
        let first = url;
        let (mut method, mut url, mut payload) = (method.clone(), url.to_string(), payload);
        let mut all = headers.to_vec();
        all.extend_from_slice(credentials);
        for hop in 0..=MAX_REDIRECTS {
            let home = same_origin(&url, first);
            if matches!(payload, Payload::Secret(_)) && !home {
                let message = format!(
                    "{what}: {} redirected the request to {}, another origin; its body holds \
                     a credential and is not sent there",
                    redact(first),
                    redact(&url)
                );
                return Err((Error::new(Kind::Auth, message), false));
            }
            let sent = match home {
                true => &all[..],
                false => headers,
            };
            let response = self.wire.send(&method, &url, sent, payload, what)?;
            let Some(next) = redirect_target(&response, &url) else {
                return Ok(response);
            };
            if hop == MAX_REDIRECTS {
                break;
            }
            // As browsers and Go's client do: 303, and 301/302 of anything but GET and HEAD,
            // become a GET without a body; 307 and 308 send the same request again.
            let status = response.status().as_u16();
            if status == 303 || (matches!(status, 301 | 302) && !is_get_or_head(&method)) {
                if method != Method::HEAD {
                    method = Method::GET;
                }
                payload = Payload::Empty;
            }
            log::debug!("http: {} redirected to {}", redact(&url), redact(&next));
            url = next;
        }
        Err((
            Error::new(
                Kind::Rejected,
                format!(
                    "{what}: {method} {} was redirected more than {MAX_REDIRECTS} times; \
                     check the registry's URL and its proxies",
                    redact(&url)
                ),
            ),
            false,
        ))
    }
}

/// Where a redirect answer sends the request: its `Location`, made absolute.
fn redirect_target(response: &Response<ureq::Body>, url: &str) -> Option<String> {
    if !matches!(response.status().as_u16(), 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = response.headers().get("location")?.to_str().ok()?.trim();
    Some(url::resolve(url, location))
}
