//! A token server for a registry in token-auth mode (`auth: token:`): the Docker registry
//! token protocol, issuing real RS256 JWTs that the registry verifies and enforces itself.
//!
//! - `GET /token?service=S&scope=repository:NAME:ACTIONS[&scope=...]`, anonymous or with Basic
//!   auth, answers `{"token","access_token","expires_in","issued_at"}`.
//! - `POST /token` (form: `grant_type=refresh_token|password`, `refresh_token`, `username`,
//!   `password`, `service`, `scope`, `client_id`) answers the same plus `refresh_token`.
//!
//! A [`Policy`] decides what each caller gets (the requested actions it is allowed, per scope);
//! every request is recorded (never with its secrets) for the tests' assertions.

use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::keys::{b64_decode, rfc3339, unix_now, TokenConfig, TokenKeys};
use super::servers::{accept, bind_loopback, parse_form, respond, HttpRequest, Server};

pub const SERVICE: &str = "test-registry";
pub const ISSUER: &str = "test-issuer";

/// May pull and push everywhere.
pub const ALICE: (&str, &str) = ("alice", "s3cret");
/// May only pull.
pub const BOB: (&str, &str) = ("bob", "hunter2");
/// Alice's identity (refresh) token, as `docker login` stores it in `identitytoken`.
pub const REFRESH_TOKEN: &str = "rt-123";

/// A user of the token server.
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub password: String,
    /// The actions granted on every repository (`"*"`: all).
    pub actions: Vec<String>,
}

/// Who gets what.
#[derive(Clone, Debug)]
pub struct Policy {
    pub users: Vec<User>,
    /// Actions granted to anonymous callers on every repository.
    pub anonymous: Vec<String>,
    /// Refresh (identity) tokens and the user each stands for.
    pub refresh_tokens: Vec<(String, String)>,
    /// The first this-many access tokens issued are already expired (exp = now - 120 s, past
    /// the registry's 60 s leeway) while `expires_in` claims they are fresh: a token that
    /// expires in the middle of a push.
    pub expired_first: usize,
    /// `expires_in` of the answers, and the lifetime of the tokens that are not expired.
    pub expires_in: u64,
    /// Grant the first scope asked for only, as some token services do.
    pub first_scope_only: bool,
}

impl Default for Policy {
    /// alice/s3cret: pull and push; bob/hunter2: pull; anonymous: pull; `rt-123` is alice's.
    fn default() -> Policy {
        let user = |(name, password): (&str, &str), actions: &[&str]| User {
            name: name.to_string(),
            password: password.to_string(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        };
        Policy {
            users: vec![user(ALICE, &["pull", "push"]), user(BOB, &["pull"])],
            anonymous: vec!["pull".to_string()],
            refresh_tokens: vec![(REFRESH_TOKEN.to_string(), ALICE.0.to_string())],
            expired_first: 0,
            expires_in: 300,
            first_scope_only: false,
        }
    }
}

/// One request to the token server, without its secrets.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub method: String,
    /// Path and query as received (a GET's query holds no secret).
    pub target: String,
    /// The scheme of the `Authorization` header (`Basic`, `Bearer`), if there was one.
    pub authorization: Option<String>,
    /// Who the request authenticated as (`None`: anonymous or refused).
    pub user: Option<String>,
    /// A POST's `grant_type`.
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub service: Option<String>,
    /// Every `scope` asked for, as sent.
    pub scopes: Vec<String>,
    pub status: u16,
    /// The access granted: `(repository, actions)`.
    pub granted: Vec<(String, Vec<String>)>,
    /// Whether the token issued was one of the already-expired ones.
    pub expired: bool,
}

struct State {
    config: TokenConfig,
    policy: Policy,
    expired_left: AtomicUsize,
    requests: Mutex<Vec<TokenRequest>>,
    /// Every token and refresh token handed out.
    issued: Mutex<Vec<String>>,
}

/// The token server on 127.0.0.1; stops when dropped.
pub struct TokenServer {
    server: Server,
    state: Arc<State>,
}

impl TokenServer {
    pub fn start(policy: Policy) -> TokenServer {
        let listener = bind_loopback();
        let port = listener.local_addr().expect("addr").port();
        let config = TokenConfig {
            realm: format!("http://127.0.0.1:{port}/token"),
            service: SERVICE.to_string(),
            issuer: ISSUER.to_string(),
            keys: TokenKeys::new(ISSUER),
        };
        let state = Arc::new(State {
            config,
            expired_left: AtomicUsize::new(policy.expired_first),
            policy,
            requests: Mutex::new(Vec::new()),
            issued: Mutex::new(Vec::new()),
        });
        let serving = state.clone();
        let server = Server::start(listener, move |stream| handle(stream, &serving));
        TokenServer { server, state }
    }

    /// What the registry's `auth: token:` section needs (and what mints admin tokens).
    pub fn config(&self) -> TokenConfig {
        self.state.config.clone()
    }

    pub fn realm(&self) -> String {
        self.state.config.realm.clone()
    }

    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The requests that got a token.
    pub fn granted_requests(&self) -> Vec<TokenRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.status == 200)
            .collect()
    }

    /// Every token and refresh token issued so far.
    pub fn issued(&self) -> Vec<String> {
        self.state.issued.lock().unwrap().clone()
    }

    /// Mints a token directly (not recorded), e.g. for curl.
    pub fn mint(&self, subject: &str, access: serde_json::Value, lifetime: i64) -> String {
        self.state.config.mint(subject, access, lifetime)
    }

    /// Every secret this server knows or handed out: passwords, `user:password` in base64,
    /// refresh tokens and issued tokens. None may appear in a client's output.
    pub fn secrets(&self) -> Vec<String> {
        let mut secrets = Vec::new();
        for user in &self.state.policy.users {
            secrets.push(user.password.clone());
            secrets.push(super::keys::b64(format!("{}:{}", user.name, user.password)));
        }
        for (token, _) in &self.state.policy.refresh_tokens {
            secrets.push(token.clone());
        }
        secrets.extend(self.issued());
        secrets
    }
}

fn json_response(
    stream: &mut TcpStream,
    status: u16,
    extra: &[(&str, &str)],
    body: serde_json::Value,
) {
    let mut headers = vec![("Content-Type", "application/json")];
    headers.extend_from_slice(extra);
    let _ = respond(
        stream,
        status,
        &headers,
        serde_json::to_vec(&body).expect("json").as_slice(),
    );
}

fn handle(mut stream: TcpStream, state: &State) {
    let Some((request, _)) = accept(&mut stream, true) else {
        return;
    };
    let mut record = TokenRequest {
        method: request.method.clone(),
        target: request.target.clone(),
        authorization: request
            .header("authorization")
            .map(|v| v.split(' ').next().unwrap_or("").to_string()),
        user: None,
        grant_type: None,
        client_id: None,
        service: None,
        scopes: Vec::new(),
        status: 0,
        granted: Vec::new(),
        expired: false,
    };
    let (status, body) = answer(&request, state, &mut record);
    record.status = status;
    state.requests.lock().unwrap().push(record);
    let challenge = [("WWW-Authenticate", "Basic realm=\"token\"")];
    let extra: &[(&str, &str)] = if status == 401 { &challenge } else { &[] };
    json_response(&mut stream, status, extra, body);
}

fn error(code: &str, message: &str) -> serde_json::Value {
    serde_json::json!({
        "errors": [{"code": code, "message": message}],
        "error": code.to_ascii_lowercase(),
        "error_description": message,
    })
}

fn answer(
    request: &HttpRequest,
    state: &State,
    record: &mut TokenRequest,
) -> (u16, serde_json::Value) {
    if request.path() != "/token" {
        return (404, error("NOT_FOUND", "no such endpoint; use /token"));
    }
    let policy = &state.policy;
    let check_password = |user: &str, password: &str| {
        policy
            .users
            .iter()
            .any(|u| u.name == user && u.password == password)
    };
    let (params, user, refresh_token) = match request.method.as_str() {
        "GET" => {
            let params = request.query();
            let user = match request.header("authorization") {
                None => None,
                Some(value) => {
                    let Some(encoded) = value.strip_prefix("Basic ") else {
                        return (
                            401,
                            error("UNAUTHORIZED", "only Basic credentials are accepted"),
                        );
                    };
                    let decoded = b64_decode(encoded)
                        .and_then(|b| String::from_utf8(b).ok())
                        .unwrap_or_default();
                    let (name, password) = decoded.split_once(':').unwrap_or(("", ""));
                    if !check_password(name, password) {
                        return (401, error("UNAUTHORIZED", "invalid username or password"));
                    }
                    Some(name.to_string())
                }
            };
            (params, user, None)
        }
        "POST" => {
            let params = parse_form(&String::from_utf8_lossy(&request.body));
            let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            record.grant_type = get("grant_type");
            record.client_id = get("client_id");
            if record.client_id.as_deref().unwrap_or("").is_empty() {
                return (400, error("INVALID_REQUEST", "client_id is required"));
            }
            let (user, refresh_token) = match record.grant_type.as_deref() {
                Some("refresh_token") => {
                    let token = get("refresh_token").unwrap_or_default();
                    let Some((_, user)) = policy.refresh_tokens.iter().find(|(t, _)| *t == token)
                    else {
                        return (401, error("UNAUTHORIZED", "invalid refresh token"));
                    };
                    (user.clone(), token)
                }
                Some("password") => {
                    let name = get("username").unwrap_or_default();
                    if !check_password(&name, &get("password").unwrap_or_default()) {
                        return (401, error("UNAUTHORIZED", "invalid username or password"));
                    }
                    let token = policy
                        .refresh_tokens
                        .iter()
                        .find(|(_, u)| *u == name)
                        .map(|(t, _)| t.clone())
                        .unwrap_or_else(|| format!("rt-{name}-{:x}", super::keys::unique()));
                    (name, token)
                }
                _ => {
                    return (
                        400,
                        error(
                            "UNSUPPORTED_GRANT_TYPE",
                            "grant_type must be refresh_token or password",
                        ),
                    )
                }
            };
            (params, Some(user), Some(refresh_token))
        }
        _ => return (405, error("UNSUPPORTED", "GET or POST /token")),
    };
    record.user = user.clone();
    record.service = params
        .iter()
        .find(|(n, _)| n == "service")
        .map(|(_, v)| v.clone());
    record.scopes = params
        .iter()
        .filter(|(n, _)| n == "scope")
        .flat_map(|(_, v)| v.split(' ').map(String::from).collect::<Vec<_>>())
        .filter(|s| !s.is_empty())
        .collect();
    if record.service.as_deref() != Some(state.config.service.as_str()) {
        return (
            400,
            error(
                "INVALID_REQUEST",
                &format!(
                    "service must be {:?} (from the challenge)",
                    state.config.service
                ),
            ),
        );
    }

    let allowed: Vec<String> = match &user {
        Some(name) => policy
            .users
            .iter()
            .find(|u| &u.name == name)
            .map(|u| u.actions.clone())
            .unwrap_or_default(),
        None => policy.anonymous.clone(),
    };
    let mut access = Vec::new();
    let considered = match policy.first_scope_only {
        true => record.scopes.len().min(1),
        false => record.scopes.len(),
    };
    for scope in &record.scopes[..considered] {
        // type:name:actions, the name may hold colons (a port): split at the first and last.
        let Some((kind, rest)) = scope.split_once(':') else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        if kind != "repository" {
            continue;
        }
        let granted: Vec<String> = actions
            .split(',')
            .filter(|a| !a.is_empty())
            .filter(|a| allowed.iter().any(|g| g == "*" || g == a))
            .map(String::from)
            .collect();
        if !granted.is_empty() {
            record.granted.push((name.to_string(), granted.clone()));
            access
                .push(serde_json::json!({"type": "repository", "name": name, "actions": granted}));
        }
    }

    let expired = state
        .expired_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    record.expired = expired;
    let lifetime = if expired {
        -120
    } else {
        policy.expires_in as i64
    };
    let token = state.config.mint(
        user.as_deref().unwrap_or(""),
        serde_json::Value::Array(access),
        lifetime,
    );
    let mut body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": policy.expires_in,
        "issued_at": rfc3339(unix_now()),
    });
    let mut issued = state.issued.lock().unwrap();
    issued.push(token);
    if let Some(refresh_token) = refresh_token {
        issued.push(refresh_token.clone());
        body["refresh_token"] = serde_json::Value::String(refresh_token);
    }
    (200, body)
}
