#!/usr/bin/env python3
"""A bearer-token service for the CNCF distribution registry's `auth.token` mode, over HTTPS.

usage: python3 bench/token_service.py --self-test

A registry on the Internet (Docker Hub, GHCR, ECR...) makes every client fetch a bearer
token before it may push: a 401 challenge, a request to the token service, then the request
again with the token. Over a WAN those are round trips, and how a client pays them (one token
per repository or per blob, token reuse, a new TLS connection each time) is part of what a
WAN benchmark must show. This service lets the loopback registry (`docker-registry`, 2.8.2)
do the same (distribution's `auth.token`: `iss`, a string `aud`, an integer `exp`,
the `access` claims; every refusal is a 401):

- `GET /token?service=..&scope=..` with optional Basic auth (the Docker token protocol), and
  the OAuth2 form `POST /token` (grant_type=password or refresh_token), which also returns a
  refresh_token. A known user gets every action it asks for, "*" included; no credentials
  give an anonymous token with pull only; wrong credentials a 401.
- Tokens are JWTs signed RS256 with the service's own RSA key, named by its certificate in
  the x5c header; the registry trusts that certificate through `rootcertbundle`. Signing is
  pure Python (RSASSA-PKCS1-v1_5 with CRT), checked once against openssl at construction, so
  a signing bug fails there and not as invalid_token in the middle of a benchmark.
- HTTPS (TLS 1.2+) with HTTP/1.1 keep-alive, as real token services offer.

Standard library only, plus the openssl command to make the signing key.
"""
import argparse
import base64
import ctypes
import hashlib
import hmac
import http.client
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN_LIFETIME = 300
# DER of DigestInfo{sha256, NULL} up to the digest: RFC 8017, section 9.2, note 1.
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")


def openssl(*args):
    r = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{r.stderr}")
    return r.stdout


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# ---------------------------------------------------------------------------------------------
# RS256 without third-party packages

def _der(data, i=0):
    """(tag, contents, next offset) of the DER element at data[i]."""
    tag, n = data[i], data[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7F
        n = int.from_bytes(data[i:i + k], "big")
        i += k
    return tag, data[i:i + n], i + n


def _der_items(data):
    items, i = [], 0
    while i < len(data):
        tag, body, i = _der(data, i)
        items.append((tag, body))
    return items


class RsaKey:
    """An RSA private key's numbers, read from a PEM file (PKCS#8 or PKCS#1)."""

    def __init__(self, pem_path):
        with open(pem_path) as f:
            pem = f.read()
        kind = pem.split("-----BEGIN ", 1)[1].split("-----", 1)[0]
        body = pem.split("-----", 2)[2].split("-----END", 1)[0]
        der = base64.b64decode("".join(body.split()))
        _, seq, _ = _der(der)
        items = _der_items(seq)
        if kind == "PRIVATE KEY":
            # PKCS#8: version, AlgorithmIdentifier (rsaEncryption), OCTET STRING{PKCS#1 key}
            _, seq, _ = _der(items[2][1])
            items = _der_items(seq)
        elif kind != "RSA PRIVATE KEY":
            raise ValueError(f"{pem_path}: not an RSA private key ({kind})")
        # RSAPrivateKey: version, n, e, d, p, q, dP, dQ, qInv
        nums = [int.from_bytes(body, "big") for tag, body in items[1:9]]
        self.n, self.e, self.d, self.p, self.q, self.dp, self.dq, self.qinv = nums
        self.size = (self.n.bit_length() + 7) // 8

    def sign_sha256(self, message):
        """RSASSA-PKCS1-v1_5 signature of message with SHA-256 (RFC 8017, 8.2.1)."""
        t = SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
        em = b"\x00\x01" + b"\xff" * (self.size - len(t) - 3) + b"\x00" + t
        m = int.from_bytes(em, "big")
        # CRT: two half-size exponentiations, ~4x faster than pow(m, d, n).
        m1, m2 = pow(m, self.dp, self.p), pow(m, self.dq, self.q)
        s = m2 + (self.qinv * (m1 - m2) % self.p) * self.q
        if pow(s, self.e, self.n) != m:
            # A fault in a CRT signature can leak the key; cheap to rule out (e is small).
            raise RuntimeError("RSA signature self-check failed")
        return s.to_bytes(self.size, "big")


# ---------------------------------------------------------------------------------------------
# Scopes

def parse_scopes(values):
    """{(type, name): [actions]} of `scope` values: repeated, and/or space-separated inside one
    (oras), `type:name:actions` with the actions after the last colon (a name may hold a
    colon, e.g. a registry host with a port)."""
    wanted = {}
    for value in values:
        for scope in value.split():
            rest, sep, actions = scope.rpartition(":")
            typ, sep2, name = rest.partition(":")
            if not sep or not sep2 or not name:
                continue
            # `repository(plugin)`: the class is not part of the access claim.
            acts = wanted.setdefault((typ.split("(", 1)[0], name), [])
            for a in actions.split(","):
                if a and a not in acts:
                    acts.append(a)
    return wanted


def grant(wanted, user):
    """The access claim: all that was asked for a user, pull only for anonymous."""
    access = []
    for (typ, name), acts in wanted.items():
        if user is None:
            acts = ["pull"] if typ == "repository" and ("pull" in acts or "*" in acts) else []
        if acts:
            access.append({"type": typ, "name": name, "actions": list(acts)})
    return access


# ---------------------------------------------------------------------------------------------
# The service

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive; every answer carries a Content-Length
    server_version = "bench-token-service/1"
    timeout = 60                    # an idle keep-alive connection is dropped after that

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        self.server.service._serve(self, "GET")

    def do_POST(self):
        self.server.service._serve(self, "POST")

    def answer(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    """TLS per connection in its own thread: a slow handshake does not hold up accept."""
    daemon_threads = True
    block_on_close = True   # server_close() joins the connection threads

    def __init__(self, address, service, context):
        self.service, self.context = service, context
        self.live = set()
        self.live_lock = threading.Lock()
        super().__init__(address, _Handler)

    def finish_request(self, request, client_address):
        request.settimeout(30)
        # Headers and body go out as two writes: with Nagle, the second waits for the
        # client's delayed ACK, 40 ms per answer on a keep-alive connection.
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            conn = self.context.wrap_socket(request, server_side=True)
        except OSError:
            return
        with self.live_lock:
            self.live.add(conn)
        try:
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            with self.live_lock:
                self.live.discard(conn)
            conn.close()

    def handle_error(self, request, client_address):
        pass   # a client gone mid-answer is no news

    def drop_connections(self):
        with self.live_lock:
            conns = list(self.live)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class TokenService:
    """The token service on `listen` (HTTPS with cert_file/key_file), for these users
    ({name: password}). Makes its signing key and certificate in workdir at once:
    self.signing_cert is the registry's rootcertbundle."""

    def __init__(self, workdir, listen, cert_file, key_file, users, issuer="bench-issuer",
                 service="bench-registry"):
        host, port = listen
        if ipaddress.ip_address(host) not in ipaddress.ip_network("127.0.0.0/8"):
            raise ValueError(f"listen {host}:{port}: only 127.0.0.0/8 addresses are allowed")
        self.listen = (host, int(port))
        self.cert_file, self.key_file = cert_file, key_file
        self.users = dict(users)
        self.issuer, self.service = issuer, service
        self.signing_key = os.path.join(workdir, "token-signing-key.pem")
        self.signing_cert = os.path.join(workdir, "token-signing-cert.pem")
        # CN = issuer only for the reader; the registry checks the chain and the dates, and the
        # 10 years keep a long benchmark clear of the dates.
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.signing_key,
                "-out", self.signing_cert, "-days", "3650", "-subj", f"/CN={issuer}")
        self.key = RsaKey(self.signing_key)
        with open(self.signing_cert) as f:
            der = ssl.PEM_cert_to_DER_cert(f.read())
        # x5c is standard base64, padded (RFC 7515, 4.1.6), unlike the rest of the JWT.
        self.header = b64url(json.dumps({"typ": "JWT", "alg": "RS256",
                                         "x5c": [base64.b64encode(der).decode()]},
                                        separators=(",", ":")).encode())
        self._check_signing(workdir)
        self.refresh_tokens = {}   # refresh token -> user
        self.lock = threading.Lock()
        self._requests = 0
        self.server = None
        self.thread = None
        self.address = None

    def _check_signing(self, workdir):
        msg = os.path.join(workdir, "token-signing-check.msg")
        sig = os.path.join(workdir, "token-signing-check.sig")
        pub = os.path.join(workdir, "token-signing-pub.pem")
        data = b"token-service signing check " + secrets.token_bytes(16)
        with open(msg, "wb") as f:
            f.write(data)
        with open(sig, "wb") as f:
            f.write(self.key.sign_sha256(data))
        with open(pub, "w") as f:
            f.write(openssl("x509", "-in", self.signing_cert, "-pubkey", "-noout"))
        try:
            openssl("dgst", "-sha256", "-verify", pub, "-signature", sig, msg)
        except RuntimeError as e:
            raise RuntimeError(f"the pure-Python RS256 signature does not verify: {e}")
        finally:
            for p in (msg, sig, pub):
                os.remove(p)

    @property
    def requests(self):
        """Token requests served so far, whatever their outcome."""
        with self.lock:
            return self._requests

    @property
    def realm(self):
        """https://HOST:PORT/token on the listening address (after start())."""
        host, port = self.address or self.listen
        return f"https://{host}:{port}/token"

    def start(self):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        self.server = _Server(self.listen, self, context)
        self.address = self.server.server_address[:2]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True, name="token-service")
        self.thread.start()
        return self

    def stop(self):
        if self.server is None:
            return
        self.server.shutdown()
        # Idle keep-alive connections would hold server_close() for the handler's timeout.
        self.server.drop_connections()
        self.server.server_close()
        self.thread.join()
        self.server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def registry_config(self, realm):
        """The registry's top-level `auth:` block for this service, as YAML."""
        q = json.dumps   # a JSON string is a YAML double-quoted scalar
        return (f"auth:\n  token:\n    realm: {q(realm)}\n    service: {q(self.service)}\n"
                f"    issuer: {q(self.issuer)}\n    rootcertbundle: {q(self.signing_cert)}\n")

    # -- requests

    def _serve(self, h, method):
        url = urllib.parse.urlsplit(h.path)
        if url.path != "/token":
            if method == "POST":
                h.rfile.read(int(h.headers.get("Content-Length") or 0))
            return h.answer(404, {"errors": [{"code": "NOT_FOUND", "message": "not found"}]})
        with self.lock:
            self._requests += 1
        if h.headers.get("Transfer-Encoding"):
            h.close_connection = True   # no chunked bodies here: do not read one as a request
        if method == "GET":
            self._get(h, urllib.parse.parse_qs(url.query, keep_blank_values=True))
        else:
            length = int(h.headers.get("Content-Length") or 0)
            body = h.rfile.read(length).decode(errors="replace")
            self._post(h, urllib.parse.parse_qs(body, keep_blank_values=True))

    def _user(self, name, password):
        """name if the password is right, else None (compared in constant time by habit)."""
        known = self.users.get(name)
        if known is not None and hmac.compare_digest(known.encode(), password.encode()):
            return name
        return None

    def _wrong_service(self, h, form):
        service = form.get("service", [self.service])[0]
        if service != self.service:
            # The registry would refuse the token (aud): say so here, where it is clear.
            h.answer(400, {"errors": [{"code": "DENIED",
                                       "message": f"unknown service {service!r}"}]})
            return True
        return False

    def _get(self, h, query):
        """The Docker token protocol: Basic auth or none."""
        if self._wrong_service(h, query):
            return
        user = None
        auth = h.headers.get("Authorization", "")
        if auth:
            scheme, _, cred = auth.partition(" ")
            try:
                name, _, password = base64.b64decode(cred.strip(), validate=True) \
                    .decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                name = password = None
            user = (self._user(name, password)
                    if scheme.lower() == "basic" and name is not None else None)
            if user is None:
                return h.answer(401, {"errors": [{"code": "UNAUTHORIZED",
                                                  "message": "invalid username or password"}]},
                                [("WWW-Authenticate", f'Basic realm="{self.service}"')])
        body = self._token(user, parse_scopes(query.get("scope", [])))
        if user and query.get("offline_token", [""])[0].lower() == "true":
            body["refresh_token"] = self._new_refresh_token(user)
        h.answer(200, body)

    def _post(self, h, form):
        """The OAuth2 form: grant_type password or refresh_token."""
        if self._wrong_service(h, form):
            return
        kind = form.get("grant_type", [""])[0]
        if kind == "password":
            user = self._user(form.get("username", [""])[0], form.get("password", [""])[0])
            refresh = self._new_refresh_token(user) if user else None
        elif kind == "refresh_token":
            refresh = form.get("refresh_token", [""])[0]
            with self.lock:
                user = self.refresh_tokens.get(refresh)
        else:
            return h.answer(400, {"error": "unsupported_grant_type",
                                  "error_description": f"grant_type {kind!r}"})
        if user is None:
            return h.answer(401, {"error": "invalid_grant",
                                  "error_description": "invalid credentials"})
        body = self._token(user, parse_scopes(form.get("scope", [])))
        body["refresh_token"] = refresh
        h.answer(200, body)

    def _new_refresh_token(self, user):
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.refresh_tokens[token] = user
        return token

    def _token(self, user, wanted):
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": user or "", "aud": self.service,
                  "exp": now + TOKEN_LIFETIME, "nbf": now, "iat": now,
                  "jti": secrets.token_hex(16), "access": grant(wanted, user)}
        signed = self.header + "." + b64url(json.dumps(claims, separators=(",", ":")).encode())
        token = signed + "." + b64url(self.key.sign_sha256(signed.encode()))
        return {"token": token, "access_token": token, "expires_in": TOKEN_LIFETIME,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}


# ---------------------------------------------------------------------------------------------
# Self-test against docker-registry

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent():
    """preexec_fn: the child gets SIGTERM if this process dies, even by SIGKILL (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def request(method, url, headers=None, data=None, context=None):
    """(status, headers, body) of a request, never through a proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=context))
    req = urllib.request.Request(url, method=method, headers=headers or {}, data=data)
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def self_test():
    tmp = tempfile.mkdtemp(prefix="token-service-test-")
    registry, service, log = None, None, None
    failures = []

    def check(what, ok, detail=""):
        print(f"{'ok  ' if ok else 'FAIL'} {what}" + (f": {detail}" if detail else ""),
              flush=True)
        if not ok:
            failures.append(what)

    try:
        cert, key = os.path.join(tmp, "server-cert.pem"), os.path.join(tmp, "server-key.pem")
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1")
        started = time.monotonic()
        service = TokenService(tmp, ("127.0.0.1", 0), cert, key, {"bench": "s3cret"}).start()
        print(f"token service at {service.realm} (key, certificate and signature check "
              f"{time.monotonic() - started:.2f} s)")
        tls = ssl.create_default_context(cafile=cert)

        reg_port = free_port()
        config = os.path.join(tmp, "registry.yml")
        with open(config, "w") as f:
            f.write(f"version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\n"
                    f"storage:\n  filesystem:\n    rootdirectory: {os.path.join(tmp, 'data')}\n"
                    f"http:\n  addr: 127.0.0.1:{reg_port}\n" + service.registry_config(service.realm))
        # The registry reads REGISTRY_* variables as configuration overrides.
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        log = open(os.path.join(tmp, "registry.log"), "wb")
        registry = subprocess.Popen(["docker-registry", "serve", config], env=env,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    preexec_fn=die_with_parent)
        base = f"http://127.0.0.1:{reg_port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                status, headers, _ = request("GET", f"{base}/v2/")
                break
            except OSError:
                if registry.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("docker-registry did not start")
                time.sleep(0.05)

        challenge = headers.get("WWW-Authenticate", "")
        check("GET /v2/ without a token: 401 with a Bearer challenge",
              status == 401 and challenge.startswith(f'Bearer realm="{service.realm}"')
              and f'service="{service.service}"' in challenge, f"{status} {challenge}")

        def token(scopes, user=None, password=None):
            q = urllib.parse.urlencode([("service", service.service)]
                                       + [("scope", s) for s in scopes])
            headers = {}
            if user:
                headers["Authorization"] = "Basic " + base64.b64encode(
                    f"{user}:{password}".encode()).decode()
            status, _, body = request("GET", f"{service.realm}?{q}", headers, context=tls)
            return status, json.loads(body)

        def upload(tok, repo="t/x"):
            status, headers, _ = request("POST", f"{base}/v2/{repo}/blobs/uploads/",
                                         {"Authorization": f"Bearer {tok}"}, data=b"")
            return status, headers.get("WWW-Authenticate", "")

        t0 = time.monotonic()
        status, body = token(["repository:t/x:pull,push"], "bench", "s3cret")
        took = time.monotonic() - t0
        check("token with Basic auth for repository:t/x:pull,push",
              status == 200 and body.get("token") == body.get("access_token")
              and body.get("expires_in") == TOKEN_LIFETIME and "issued_at" in body,
              f"{status}, {took * 1000:.1f} ms (new TLS connection)")
        tok = body.get("token", "")
        claims = json.loads(base64.urlsafe_b64decode(tok.split(".")[1] + "=="))
        print(f"     claims: {json.dumps(claims)}")
        status, _, _ = request("GET", f"{base}/v2/", {"Authorization": f"Bearer {tok}"})
        check("GET /v2/ with it: 200", status == 200, str(status))
        status, chal = upload(tok)
        check("POST /v2/t/x/blobs/uploads/ with it: 202", status == 202, str(status))

        status, body = token(["repository:t/y:pull,push"], "bench", "s3cret")
        status, chal = upload(body.get("token", ""))
        check("a token for t/y on t/x: 401 insufficient_scope",
              status == 401 and 'error="insufficient_scope"' in chal, f"{status} {chal}")

        status, body = token(["repository:t/y:pull repository:t/x:push,pull",
                              "registry:catalog:*"], "bench", "s3cret")
        status, chal = upload(body.get("token", ""))
        check("scopes space-separated in one param and repeated: 202", status == 202,
              str(status))
        status, _, _ = request("GET", f"{base}/v2/_catalog",
                               {"Authorization": f"Bearer {body.get('token', '')}"})
        check("registry:catalog:* grants the catalog: 200", status == 200, str(status))

        status, body = token(["repository:t/x:pull,push"], "bench", "wrong")
        check("wrong password: 401 with a JSON error", status == 401 and "errors" in body,
              f"{status} {body}")

        status, body = token(["repository:t/x:pull,push"])
        claims = json.loads(base64.urlsafe_b64decode(body["token"].split(".")[1] + "=="))
        status, chal = upload(body["token"])
        check("anonymous: pull only, push refused (401 insufficient_scope)",
              claims["access"] == [{"type": "repository", "name": "t/x", "actions": ["pull"]}]
              and status == 401 and 'error="insufficient_scope"' in chal, f"{status}")

        form = urllib.parse.urlencode({"grant_type": "password", "username": "bench",
                                       "password": "s3cret", "service": service.service,
                                       "client_id": "self-test",
                                       "scope": "repository:t/x:pull,push"}).encode()
        status, _, raw = request("POST", service.realm, {
            "Content-Type": "application/x-www-form-urlencoded"}, form, tls)
        body = json.loads(raw)
        refresh = body.get("refresh_token")
        check("POST grant_type=password: token and refresh_token",
              status == 200 and refresh and upload(body["token"])[0] == 202, str(status))
        form = urllib.parse.urlencode({"grant_type": "refresh_token", "refresh_token": refresh,
                                       "service": service.service, "client_id": "self-test",
                                       "scope": "repository:t/x:pull,push"}).encode()
        status, _, raw = request("POST", service.realm, {
            "Content-Type": "application/x-www-form-urlencoded"}, form, tls)
        body = json.loads(raw)
        check("POST grant_type=refresh_token: a token that pushes",
              status == 200 and upload(body.get("token", ""))[0] == 202, str(status))

        # Keep-alive: many tokens on one TLS connection, as a client reusing it would.
        conn = http.client.HTTPSConnection(*service.address, context=tls, timeout=10)
        q = urllib.parse.urlencode({"service": service.service,
                                    "scope": "repository:t/x:pull,push"})
        auth = {"Authorization": "Basic " + base64.b64encode(b"bench:s3cret").decode()}
        t0 = time.monotonic()
        for _ in range(20):
            conn.request("GET", f"/token?{q}", headers=auth)
            r = conn.getresponse()
            r.read()
        took = (time.monotonic() - t0) / 20
        conn.close()
        check("20 tokens on one keep-alive connection", r.status == 200,
              f"{took * 1000:.1f} ms per token")
        check("requests counted", service.requests == 27, str(service.requests))
    except Exception as e:
        failures.append(repr(e))
        print(f"FAIL {e!r}")
    finally:
        if registry is not None:
            registry.terminate()
            try:
                registry.wait(5)
            except subprocess.TimeoutExpired:
                registry.kill()
                registry.wait()
        if log is not None:
            log.close()
        if service is not None:
            service.stop()
        if failures and os.path.exists(os.path.join(tmp, "registry.log")):
            with open(os.path.join(tmp, "registry.log"), errors="replace") as f:
                print("registry log (end):\n" + f.read()[-3000:])
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print(f"self-test FAILED: {', '.join(failures)}")
        return 1
    print("self-test passed")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--self-test", action="store_true",
                   help="check the service against docker-registry on loopback")
    args = p.parse_args()

    def on_signal(signum, frame):
        raise KeyboardInterrupt   # so that the registry is stopped on the way out
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    if not args.self_test:
        p.error("nothing to do: the service is a module (TokenService); try --self-test")
    sys.exit(self_test())


if __name__ == "__main__":
    main()
