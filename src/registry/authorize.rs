//! How each request to the registry is authorized (the credentials and tokens themselves are
//! in [`super::auth`]): the registry's origin gets them, nothing else does; a 401 is answered
//! by learning its challenge, fetching a token, or asking again once the scheme is settled.

use ureq::http::{Method, Response, StatusCode};

use super::auth::{Auth, TokenRequest};
use super::challenge;
use super::error::Refusal;
use super::scheme::Scheme;
use super::url::{self, authority, form_encode, redact, same_origin, with_query};
use super::wire::{transport_error, Payload};
use crate::auth::Secret;
use crate::error::{Error, Kind, Result};

/// A token answer is a JSON object of a few KiB (a JWT and its lifetime).
const MAX_TOKEN_ANSWER: u64 = 1 << 20;

pub struct Authorizing {
    pub auth: Auth,
    pub scheme: Scheme,
    /// The registry's name for messages (`host:port`).
    pub registry: String,
}

impl Authorizing {
    /// One request, authorized when it goes to the registry itself, and sent again when the
    /// registry's challenge says a new token or credentials would do.
    pub fn send(
        &self,
        method: &Method,
        url: &str,
        headers: &[(&str, &str)],
        payload: Payload,
        what: &str,
    ) -> Result<Response<ureq::Body>> {
        self.send_asking(method, url, headers, payload, what, true)
            .map(|(response, _)| response)
    }

    /// As [`Authorizing::send`]; without `ask_again`, a 401 that taught us the registry wants
    /// tokens is the answer, with `true`: the token server took our credentials and the token
    /// for the requests to come is ready, so the caller asks again when it suits it, beside
    /// other requests. Basic credentials are only tried by asking again alone, so that a
    /// wrong password fails once, not once per upload.
    pub fn send_asking(
        &self,
        method: &Method,
        url: &str,
        headers: &[(&str, &str)],
        payload: Payload,
        what: &str,
        ask_again: bool,
    ) -> Result<(Response<ureq::Body>, bool)> {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        // Twice at most: learning the scheme (Basic or Bearer), then a token that expired on
        // the way or lacked a scope.
        let mut challenges_answered = 0;
        loop {
            let to_registry = same_origin(&self.scheme.current(url), &self.scheme.base());
            // Until the scheme is settled, nothing that could be a credential goes out: the
            // plain-HTTP try may be talking to a TLS port.
            let probing = self.scheme.is_unsettled();
            let credentials = match to_registry && !probing {
                true => self.auth_headers(what)?,
                false => Vec::new(),
            };
            let bare = credentials.is_empty();
            let response = self
                .scheme
                .send(method, url, &headers, &credentials, payload, what)?;
            if response.status() == StatusCode::UNAUTHORIZED && to_registry {
                let worth_again = self.auth.refused(&challenges(&response));
                if probing {
                    // Settled now; ask again, with whatever credentials we have (or leave
                    // that to the caller, as below).
                    if self.ready_to_ask_later(ask_again, what)? {
                        return Ok((response, true));
                    }
                    continue;
                }
                // Sent without credentials while the scheme was unknown, and another upload
                // may have learnt it meanwhile (its `refused` then says nothing new): ask
                // again if there is now something to send.
                if bare && !self.auth_headers(what)?.is_empty() {
                    if self.ready_to_ask_later(ask_again, what)? {
                        return Ok((response, true));
                    }
                    continue;
                }
                // Sent with a token that another request has replaced meanwhile (its refusal
                // brought a later destination's scopes, or a renewal): the new one may serve.
                let replaced = !worth_again && !bare && self.auth_headers(what)? != credentials;
                if (worth_again || replaced) && challenges_answered < 2 {
                    challenges_answered += 1;
                    continue;
                }
            }
            return Ok((response, false));
        }
    }

    /// Whether a 401 may be left for the caller to ask again: not asked to ask again, and a
    /// token (which the token server gave for our credentials) is in hand.
    fn ready_to_ask_later(&self, ask_again: bool, what: &str) -> Result<bool> {
        Ok(!ask_again && self.auth.is_bearer() && !self.auth_headers(what)?.is_empty())
    }

    /// The error for a refusal of a request to `url` as it was sent. A refusal of our
    /// credentials names where they came from and what to try.
    pub fn refusal_at(&self, refusal: Refusal, method: &Method, url: &str, what: &str) -> Error {
        let is_auth = refusal.is_auth();
        let error = refusal.into_error(method, url);
        match is_auth {
            true => self.refused_error(error).context(what),
            false => error.context(what),
        }
    }

    fn refused_error(&self, cause: Error) -> Error {
        let registry = &self.registry;
        let source = &self.auth.credential.source;
        let message = if self.auth.credential.is_anonymous() {
            format!(
                "{registry} wants credentials to push (tried anonymous): {cause}; \
                 log in with `docker login {registry}`, or pass --username with --password-stdin"
            )
        } else {
            format!(
                "{registry} refused the credentials from {source}: {cause}; check that they \
                 are current and allowed to push here (see docs/auth.md)"
            )
        };
        Error::new(Kind::Auth, message)
    }

    /// The authorization headers for a request to the registry, fetching a token first when
    /// there is none or it expired.
    fn auth_headers(&self, what: &str) -> Result<Vec<(String, String)>> {
        for _ in 0..2 {
            match self.auth.headers() {
                Ok(headers) => return Ok(headers),
                Err(request) => self.fetch_token(request, what)?,
            }
        }
        Err(Error::new(
            Kind::Auth,
            format!("{what}: the token from {} expired at once", self.registry),
        ))
    }

    /// Asks the token server for a token covering every scope (GET with Basic credentials,
    /// or POST with an identity token).
    fn fetch_token(&self, request: TokenRequest, what: &str) -> Result<()> {
        let realm = &request.realm;
        let is_url = (realm.starts_with("https://") || realm.starts_with("http://"))
            && !authority(realm).is_empty()
            && !realm.contains(char::is_whitespace);
        if !is_url {
            return Err(Error::new(
                Kind::Rejected,
                format!(
                    "{what}: {} asks for a token from realm '{}', which is not an http(s) URL; \
                     the registry's token auth is misconfigured",
                    self.registry,
                    redact(realm)
                ),
            ));
        }
        let has_secret = matches!(
            self.auth.credential.secret,
            Secret::Basic { .. } | Secret::IdentityToken { .. }
        );
        // --insecure says the user trusts the registry's host as it is, not other hosts.
        let insecure = self.scheme.next.wire.insecure();
        let trusted_anyway = insecure && url::host(realm) == url::host(&self.scheme.base());
        if realm.starts_with("http://")
            && self.scheme.base().starts_with("https://")
            && has_secret
            && !trusted_anyway
        {
            let way_out = match insecure {
                true => "(--insecure allows one on the registry's own host only)",
                false => "or pass --insecure to allow it on the registry's own host",
            };
            return Err(Error::new(
                Kind::Auth,
                format!(
                    "{what}: {} speaks HTTPS but names a plain-HTTP token realm, {}; the \
                     credentials from {} are not sent there in clear: fix the registry's token \
                     realm, {way_out}",
                    self.registry,
                    redact(realm),
                    self.auth.credential.source
                ),
            ));
        }
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = &request.service {
            query.push(("service", service));
        }
        let (method, response) = match &self.auth.credential.secret {
            Secret::IdentityToken { token, .. } => {
                let scopes = request.scopes.join(" ");
                query.extend([
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.as_str()),
                    ("client_id", "oci-push"),
                    ("scope", scopes.as_str()),
                ]);
                let form = form_encode(&query);
                let headers = [(
                    "content-type".to_string(),
                    "application/x-www-form-urlencoded".to_string(),
                )];
                let body = Payload::Secret(form.as_bytes());
                (
                    Method::POST,
                    self.scheme
                        .next
                        .send(&Method::POST, realm, &headers, &[], body, what),
                )
            }
            _ => {
                for scope in &request.scopes {
                    query.push(("scope", scope));
                }
                let url = with_query(realm, &query);
                let basic: Vec<_> = self.auth.basic_header().into_iter().collect();
                let response =
                    self.scheme
                        .next
                        .send(&Method::GET, &url, &[], &basic, Payload::Empty, what);
                (Method::GET, response)
            }
        };
        let mut response =
            response.map_err(|(e, _)| e.context(format!("token server {}", redact(realm))))?;
        if response.status() != StatusCode::OK {
            // As any refusal (detail, Retry-After, transient for 429 and 5xx), named by the
            // realm without its query.
            let refusal = Refusal::read(&mut response, &method);
            return Err(self.refusal_at(refusal, &method, realm, what));
        }
        let body = crate::files::read_at_most(response.body_mut().as_reader(), MAX_TOKEN_ANSWER)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::InvalidData => Error::new(
                    Kind::Auth,
                    format!(
                        "{what}: token server {} answered more than {}, which is no token",
                        redact(realm),
                        crate::units::human_size(MAX_TOKEN_ANSWER)
                    ),
                ),
                _ => transport_error(ureq::Error::Io(e), &method, realm, what).0,
            })?;
        self.auth.set_token(&body, &redact(realm))
    }
}

fn challenges(response: &Response<ureq::Body>) -> Vec<challenge::Challenge> {
    response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(challenge::parse)
        .collect()
}
