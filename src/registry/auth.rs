/*!
How each request to the registry is authorized, following the registry's challenges:

1. The first request (there is no `GET /v2/` ping) is sent without credentials. An answer
   other than 401 means none are needed so far; a 401 names the scheme in `WWW-Authenticate`.
2. `Basic`: every request carries the user and password.
3. `Bearer`: one token is fetched from the realm for every scope the push needs (computed before
   the first request), kept for the whole process and fetched again when it expires, or when
   the registry refuses it (`invalid_token`) or asks for a scope it lacks (`insufficient_scope`).
4. Credentials never go to another host: an upload URL on blob storage gets no `Authorization`.

Headers from a Bazel credential helper (other than Basic) are sent as they are, once the scheme
of a loopback registry is settled (see the `registry` module).
*/

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::challenge::Challenge;
use crate::auth::{Credential, Secret};
use crate::error::{Error, Kind, Result};

/// A token is renewed this long before the expiry the token server gave.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// The distribution spec's default when a token server gives no `expires_in`.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// The longest a token is kept, whatever the token server says.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug)]
enum Mode {
    /// No challenge seen yet (so far the registry let us in without credentials).
    Open,
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

struct Token {
    value: String,
    renew_at: Instant,
}

pub struct Auth {
    pub credential: Credential,
    state: Mutex<State>,
}

struct State {
    mode: Mode,
    /// In the order asked, each once: the push scope first, as some token services read only
    /// the first scope (go-containerregistry puts it first for that reason).
    scopes: Vec<String>,
    token: Option<Token>,
}

/// What the token server should be asked; the caller sends it (through the one client).
pub struct TokenRequest {
    pub realm: String,
    pub service: Option<String>,
    pub scopes: Vec<String>,
}

impl Auth {
    pub fn new(credential: Credential, scopes: &[String]) -> Auth {
        Auth {
            credential,
            state: Mutex::new(State {
                mode: Mode::Open,
                scopes: scopes.iter().fold(Vec::new(), |mut all, s| {
                    add_scope(&mut all, s);
                    all
                }),
                token: None,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the scheme from the first 401.
    fn set_challenge(state: &mut State, challenges: &[Challenge]) {
        if let Some(bearer) = challenges.iter().find(|c| c.is_bearer()) {
            if let Some(realm) = bearer.param("realm") {
                state.mode = Mode::Bearer {
                    realm: realm.to_string(),
                    service: bearer.param("service").map(str::to_string),
                };
                return;
            }
        }
        if challenges.iter().any(|c| c.is_basic()) {
            state.mode = Mode::Basic;
        }
    }

    /// The headers that authorize a request to the registry, or the token request to make
    /// first when there is no valid token.
    pub fn headers(&self) -> std::result::Result<Vec<(String, String)>, TokenRequest> {
        if let Secret::Headers(headers) = &self.credential.secret {
            return Ok(headers.clone());
        }
        let state = self.state();
        match &state.mode {
            Mode::Open => Ok(Vec::new()),
            Mode::Basic => Ok(self.basic_header().into_iter().collect()),
            Mode::Bearer { realm, service } => match &state.token {
                Some(token) if Instant::now() < token.renew_at => Ok(vec![(
                    "authorization".to_string(),
                    format!("Bearer {}", token.value),
                )]),
                _ => Err(TokenRequest {
                    realm: realm.clone(),
                    service: service.clone(),
                    scopes: state.scopes.to_vec(),
                }),
            },
        }
    }

    /// Whether the registry wants bearer tokens: then a token in hand means the token server
    /// accepted our credentials.
    pub fn is_bearer(&self) -> bool {
        matches!(self.state().mode, Mode::Bearer { .. })
    }

    /// `Authorization: Basic` for the user and password, if we have them.
    pub fn basic_header(&self) -> Option<(String, String)> {
        let (username, password) = match &self.credential.secret {
            Secret::Basic { username, password } => (username, password),
            _ => return None,
        };
        Some(crate::auth::basic_header(username, password))
    }

    /// Stores the token server's answer.
    pub fn set_token(&self, answer: &[u8], realm: &str) -> Result<()> {
        let value: serde_json::Value = serde_json::from_slice(answer).map_err(|e| {
            Error::new(
                Kind::Auth,
                format!("token server {realm} answered with invalid JSON: {e}"),
            )
        })?;
        let token = ["token", "access_token"]
            .iter()
            .find_map(|k| {
                value
                    .get(*k)
                    .and_then(|t| t.as_str())
                    .filter(|t| !t.is_empty())
            })
            .ok_or_else(|| {
                Error::new(
                    Kind::Auth,
                    format!("token server {realm} answered without a token"),
                )
            })?;
        // The server's number is clamped: no push outlives a day, and an absurd lifetime must
        // not overflow the clock.
        let lifetime = value
            .get("expires_in")
            .and_then(|e| e.as_u64())
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME)
            .min(MAX_TOKEN_LIFETIME);
        let now = Instant::now();
        self.state().token = Some(Token {
            value: token.to_string(),
            renew_at: now
                .checked_add(lifetime.saturating_sub(EXPIRY_MARGIN))
                .unwrap_or(now),
        });
        Ok(())
    }

    /// After a 401 from the registry: learns what the challenge says and tells whether the
    /// request is worth sending again (a new token can be fetched, or Basic credentials can be
    /// sent where none were). Returns false when our credentials were simply refused.
    pub fn refused(&self, challenges: &[Challenge]) -> bool {
        if matches!(self.credential.secret, Secret::Headers(_)) {
            return false;
        }
        let mut state = self.state();
        match &state.mode {
            Mode::Open => {
                Auth::set_challenge(&mut state, challenges);
                !matches!(state.mode, Mode::Open)
            }
            Mode::Basic => false,
            Mode::Bearer { .. } => {
                let Some(bearer) = challenges.iter().find(|c| c.is_bearer()) else {
                    return false;
                };
                // The scopes the challenge names go first, a push scope before the others: a
                // token service that reads only the first scope then grants what this request
                // needs (a later destination of the same registry; a mount's source is not
                // worth losing the push for). The scopes asked already stay.
                let mut scopes: Vec<String> = Vec::new();
                for scope in bearer.param("scope").unwrap_or_default().split(' ') {
                    if !scope.is_empty() {
                        add_scope(&mut scopes, scope);
                    }
                }
                scopes.sort_by_key(|scope| !scope.ends_with("push"));
                for scope in &state.scopes {
                    add_scope(&mut scopes, scope);
                }
                let new_scope = scopes != state.scopes;
                state.scopes = scopes;
                let expired = bearer.param("error") == Some("invalid_token");
                // A token refused for a scope it already asked for (not expired, nothing new
                // asked) stays: asking again for the same scopes would get the same answer.
                let retry = new_scope || expired || state.token.is_none();
                if retry {
                    state.token = None;
                }
                retry
            }
        }
    }
}

/// Adds `scope` (normalized) unless it is there already.
fn add_scope(scopes: &mut Vec<String>, scope: &str) {
    let scope = normalize_scope(scope);
    if !scopes.contains(&scope) {
        scopes.push(scope);
    }
}

/// `repository:a/b:push,pull` as `repository:a/b:pull,push`: registries list the actions in
/// any order (distribution's come from a Go map), and the same scope must compare equal.
fn normalize_scope(scope: &str) -> String {
    match scope.rsplit_once(':') {
        Some((resource, actions)) => {
            let mut actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
            actions.sort_unstable();
            actions.dedup();
            format!("{resource}:{}", actions.join(","))
        }
        None => scope.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_compare_whatever_the_order_of_actions() {
        assert_eq!(
            normalize_scope("repository:a/b:push,pull"),
            "repository:a/b:pull,push"
        );
        assert_eq!(
            normalize_scope("repository:a/b:pull,push,pull"),
            "repository:a/b:pull,push"
        );
        assert_eq!(normalize_scope("registry:catalog:*"), "registry:catalog:*");
        assert_eq!(normalize_scope("odd"), "odd");
    }

    #[test]
    fn any_expires_in_is_taken_without_panicking() {
        let auth = Auth::new(Credential::anonymous(), &[]);
        for answer in [
            r#"{"token":"t","expires_in":18446744073709551615}"#,
            r#"{"token":"t","expires_in":1e308}"#,
            r#"{"token":"t","expires_in":-5}"#,
            r#"{"token":"t","expires_in":"soon"}"#,
            r#"{"token":"t","expires_in":0}"#,
        ] {
            auth.set_token(answer.as_bytes(), "realm").unwrap();
        }
        for bad in [&b"[]"[..], b"{\"token\":7}", b"\xff", b"{\"token\":\"\"}"] {
            let err = auth.set_token(bad, "realm").unwrap_err();
            assert_eq!(err.kind(), Kind::Auth);
        }
    }

    #[test]
    fn a_refused_token_is_not_fetched_again_for_the_same_scope() {
        let auth = Auth::new(
            Credential::anonymous(),
            &["repository:a/b:pull,push".to_string()],
        );
        let challenge = |extra: &str| {
            super::super::challenge::parse(&format!(
                r#"Bearer realm="http://t/token",service="s"{extra}"#
            ))
        };
        Auth::set_challenge(&mut auth.state(), &challenge(""));
        auth.set_token(br#"{"token":"t1","expires_in":300}"#, "http://t/token")
            .unwrap();
        let refused = challenge(r#",scope="repository:a/b:push,pull",error="insufficient_scope""#);
        assert!(!auth.refused(&refused), "same scope, other order: give up");
        assert!(auth.headers().is_ok(), "and keep the token");
        let expired = challenge(r#",scope="repository:a/b:pull,push",error="invalid_token""#);
        assert!(
            auth.refused(&expired),
            "an expired token is worth one more fetch"
        );
        let more = challenge(r#",scope="repository:c/d:pull",error="insufficient_scope""#);
        assert!(auth.refused(&more), "a new scope is worth a new token");
    }
}
