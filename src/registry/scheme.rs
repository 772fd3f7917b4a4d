//! The scheme of the registry: HTTPS, except that a loopback registry's first request goes
//! over plain HTTP and again over HTTPS when the registry answers like a TLS server; that
//! settles the scheme for the rest of the run. `--plain-http` goes straight to HTTP.

use std::sync::{Mutex, PoisonError, RwLock};

use ureq::http::{Method, Response, StatusCode};

use super::redirect::Redirects;
use super::resolve::Remembering;
use super::url::authority;
use super::wire::Payload;
use crate::error::Result;

pub struct Scheme {
    /// `http://host:port` or `https://host:port`, no trailing slash; on loopback it starts as
    /// HTTP and the first request may settle it on HTTPS.
    base: RwLock<String>,
    /// A loopback registry whose first request has not yet settled the scheme. Requests wait
    /// on the lock while the first one settles it.
    unsettled: Mutex<bool>,
    pub next: Redirects,
}

impl Scheme {
    /// For the registry at `host` (`host[:port]`): plain HTTP when asked, the loopback try
    /// when `loopback`, else HTTPS.
    pub fn new(host: &str, plain_http: bool, loopback: bool, next: Redirects) -> Scheme {
        let scheme = match plain_http || loopback {
            true => "http",
            false => "https",
        };
        Scheme {
            base: RwLock::new(format!("{scheme}://{host}")),
            unsettled: Mutex::new(loopback),
            next,
        }
    }

    pub fn base(&self) -> String {
        self.base
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `url` on the registry's settled scheme: a URL made before the first request found
    /// HTTPS names HTTP.
    pub fn current(&self, url: &str) -> String {
        let base = self.base();
        match (url.strip_prefix("http://"), base.strip_prefix("https://")) {
            (Some(rest), Some(host)) if authority(url) == host => format!("https://{rest}"),
            _ => url.to_string(),
        }
    }

    pub fn is_unsettled(&self) -> bool {
        self.unsettled.lock().map(|u| *u).unwrap_or(false)
    }

    /// A request to `url` on the current scheme, except that the first request to a
    /// loopback registry also settles the scheme: plain HTTP, unless the registry answers it
    /// like a TLS server (400, or hanging up) and answers HTTPS. While neither answers, it
    /// stays unsettled: the registry may still be starting.
    pub fn send(
        &self,
        method: &Method,
        url: &str,
        headers: &[(String, String)],
        credentials: &[(String, String)],
        payload: Payload,
        what: &str,
    ) -> Result<Response<ureq::Body>> {
        let url = self.current(url);
        let mut unsettled = self
            .unsettled
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(rest) = url.strip_prefix("http://").filter(|_| *unsettled) else {
            drop(unsettled);
            return self
                .next
                .send(method, &url, headers, credentials, payload, what)
                .map_err(|(e, _)| e);
        };
        let plain = self
            .next
            .send(method, &url, headers, credentials, payload, what);
        if matches!(&plain, Ok(r) if r.status() != StatusCode::BAD_REQUEST) {
            *unsettled = false;
            return plain.map_err(|(e, _)| e);
        }
        let https = format!("https://{rest}");
        match self
            .next
            .send(method, &https, headers, credentials, payload, what)
        {
            // An answer, or a TLS server we do not trust (its error says how to trust it).
            outcome @ (Ok(_) | Err((_, true))) => {
                let https = self.base().replacen("http://", "https://", 1);
                *self.base.write().unwrap_or_else(PoisonError::into_inner) = https;
                *unsettled = false;
                outcome.map_err(|(e, _)| e)
            }
            // A plain 400 stands as the answer.
            Err(_) => {
                *unsettled = plain.is_err();
                plain.map_err(|(e, _)| e)
            }
        }
    }
}

/// Whether every address `authority` names is on this machine: only then may a "loopback"
/// registry get plain HTTP. The answer is remembered by `resolver`, so the requests go to the
/// addresses checked. A name that does not resolve is not loopback (and its HTTPS request then
/// says it does not resolve).
pub fn resolves_to_loopback_only(resolver: &Remembering, authority: &str) -> bool {
    resolver
        .addresses(authority)
        .is_some_and(|a| !a.is_empty() && a.iter().all(|a| a.ip().is_loopback()))
}
