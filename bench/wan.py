"""The WAN benchmark of bench/run.py (`--wan`): pushes as users make them, to a registry tens of
milliseconds away, over TLS, with bearer tokens.

On loopback a round trip costs nothing and the registry's CPU sets the pace; from CI to
ghcr.io or Docker Hub a push costs its round trips on the critical path plus its bytes over
the link. This puts the real registry (docker-registry, CNCF distribution) behind a link of
bench/link.py (every byte delayed by half the RTT, one bandwidth cap per direction shared by
all connections, a TCP connect costing one RTT) and makes it look remote:

- host names that are not loopback: `registry.wan.test` (127.0.0.2:443) and the token
  service `auth.wan.test` (127.0.0.3:443), from an /etc/hosts of our own bind-mounted in a
  private mount namespace (`unshare --mount`), so that every tool resolves them alike with no
  option of its own;
- TLS on both, with certificates from a test CA that the tools trust through SSL_CERT_FILE
  (honoured by Go's crypto/x509 and by oci-push);
- bearer tokens from bench/token_service.py on the other host name, fetched with the Basic
  credentials of a Docker config.json (DOCKER_CONFIG), as ghcr.io and Docker Hub work.

Each scenario runs every tool `--runs` times, alternated, through the link; then as many runs
through a link of the same bandwidth and no delay. The round trips on the critical path are
(median at RTT - median at 0) / RTT: what the tool waited for in sequence, whoever it is,
TCP and TLS handshakes included. Requests are counted by the registry's access log and the
token service, connections by the link. The floor is the bytes over the bandwidth plus the
fewest round trips the protocol needs for that push (FLOOR_TRIPS).
"""
import base64
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import link as wanlink
import run as bench
from token_service import TokenService

REGISTRY_NAME, REGISTRY_ADDR = "registry.wan.test", "127.0.0.2"
AUTH_NAME, AUTH_ADDR = "auth.wan.test", "127.0.0.3"
USER, PASSWORD = "bench", "bench-password"
NS_MARK = "OCI_PUSH_BENCH_NAMESPACE"

# The fewest round trips a push needs from a new process, with connections opened while the
# token is fetched and the existence checks of a push all at once: TCP + TLS to the registry
# (2), the first request answered by the challenge (1), TCP + TLS to the token service and the
# token (3); then what the push itself needs.
BEFORE_TOKEN = 6
FLOOR_TRIPS = {
    # HEAD of the tag: it names the image.
    "present": BEFORE_TOKEN + 1,
    # HEAD (all at once), POST upload session, PUT blob, PUT manifest.
    "small": BEFORE_TOKEN + 4,
    "large": BEFORE_TOKEN + 4,
    "layers30": BEFORE_TOKEN + 4,
    # ..., PUT the platform manifests, then the index.
    "index": BEFORE_TOKEN + 5,
}

# name -> (title, target ratio to the best peer or None, target ratio to the floor or None)
SCENARIOS = {
    "present": ("the 60 MiB image again, with its tag", 0.6, None),
    "small": ("small image, 3 gzip layers, 5 MB, cold", 0.75, 1.2),
    "index": ("3-platform index, cold", 0.65, None),
    "layers30": ("30 layers, 15 MB, cold", 0.55, None),
    "large": ("60 MiB in 3 layers, cold", None, 1.05),
}
RSS_TARGET_MIB = 8.0


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def make_certificates(d):
    """A test CA, and a certificate it signed for each host name (ECDSA P-256, as most public
    registries serve). Returns the CA's file and {name: (cert, key)}."""
    ca_key, ca = os.path.join(d, "ca-key.pem"), os.path.join(d, "ca.pem")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", ca_key, "-out", ca, "-days", "30", "-subj", "/CN=wan bench CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign")
    certs = {}
    for name in (REGISTRY_NAME, AUTH_NAME):
        key, csr, cert = (os.path.join(d, f"{name}.{x}") for x in ("key", "csr", "pem"))
        ext = os.path.join(d, f"{name}.ext")
        with open(ext, "w") as f:
            f.write(f"subjectAltName=DNS:{name}\nextendedKeyUsage=serverAuth\n")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
        openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
                "-out", cert, "-days", "30", "-extfile", ext)
        certs[name] = (cert, key)
    return ca, certs


def enter_namespace(argv):
    """Re-runs this script in a private mount namespace (once), where /etc/hosts can be ours."""
    if os.environ.get(NS_MARK) == "1":
        return
    if os.geteuid() != 0:
        sys.exit("run.py --wan: needs root, for a private mount namespace with its own "
                 "/etc/hosts and for port 443 on 127.0.0.2 and 127.0.0.3")
    if shutil.which("unshare") is None:
        sys.exit("run.py --wan: needs unshare (Debian package util-linux)")
    os.environ[NS_MARK] = "1"
    os.execvp("unshare", ["unshare", "--mount", "--propagation", "private", "--",
                          sys.executable, *argv])


def bind_hosts(workdir):
    hosts = os.path.join(workdir, "hosts")
    with open("/etc/hosts") as f:
        original = f.read()
    with open(hosts, "w") as f:
        f.write(f"{REGISTRY_ADDR} {REGISTRY_NAME}\n{AUTH_ADDR} {AUTH_NAME}\n" + original)
    subprocess.run(["mount", "--bind", hosts, "/etc/hosts"], check=True)


class RemoteRegistry:
    """docker-registry with TLS and token auth on 127.0.0.1, its access log counted, reached
    through the link as https://registry.wan.test."""

    def __init__(self, workdir, tmpfs, certs, tokens):
        self.workdir, self.tmpfs, self.certs, self.tokens = workdir, tmpfs, certs, tokens
        self.log_path = os.path.join(workdir, "registry-access.log")
        self.proc, self.storage = None, None
        self.host = REGISTRY_NAME

    def start(self):
        self.storage = tempfile.mkdtemp(prefix=f"oci-push-bench-{os.getpid()}-", dir=self.tmpfs)
        self.port = bench.free_port()
        cert, key = self.certs[REGISTRY_NAME]
        config = os.path.join(self.workdir, "registry-wan.yml")
        with open(config, "w") as f:
            f.write(f"""version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {self.storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{self.port}
  tls:
    certificate: {cert}
    key: {key}
{self.tokens.registry_config(f"https://{AUTH_NAME}/token")}""")
        # The access log (Apache combined format, one line per request, 401s included) goes
        # to stdout: it counts every tool's requests alike.
        self.proc = bench.serve_registry(config, self.log_path)
        bench.Registry.live.add(self)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise bench.BenchError("could not start docker-registry with TLS and tokens:\n"
                               + open(self.log_path, errors="replace").read()[-2000:])

    def stop(self):
        bench.Registry.stop(self)

    def cpu(self):
        return bench.Registry.cpu(self)

    def requests(self):
        """Requests answered so far, by the access log's request lines."""
        with open(self.log_path, errors="replace") as f:
            return sum(1 for line in f if re.search(r'"(GET|HEAD|POST|PUT|PATCH|DELETE) /', line))

    def manifest_digest(self, repo, reference):
        """The digest the registry holds for repo:reference, asked with curl (a client of no
        tool measured here), with the registry's own token."""
        out = subprocess.run(
            ["curl", "-sS", "--resolve", f"{REGISTRY_NAME}:443:{REGISTRY_ADDR}",
             "--resolve", f"{AUTH_NAME}:443:{AUTH_ADDR}", "--cacert", os.environ["SSL_CERT_FILE"],
             "-u", f"{USER}:{PASSWORD}",
             f"https://{AUTH_NAME}/token?service=bench-registry&scope=repository:{repo}:pull"],
            capture_output=True, text=True, env=bench.child_env())
        try:
            token = json.loads(out.stdout)["token"]
        except (ValueError, KeyError):
            raise bench.BenchError(f"no token to check {repo}: {out.stdout}{out.stderr}")
        head = subprocess.run(
            ["curl", "-sS", "-I", "--resolve", f"{REGISTRY_NAME}:443:{REGISTRY_ADDR}",
             "--cacert", os.environ["SSL_CERT_FILE"], "-H", f"Authorization: Bearer {token}",
             "-H", f"Accept: {bench.MANIFEST_TYPES}",
             f"https://{REGISTRY_NAME}/v2/{repo}/manifests/{reference}"],
            capture_output=True, text=True, env=bench.child_env())
        m = re.search(r"^docker-content-digest:\s*(\S+)", head.stdout, re.I | re.M)
        return m.group(1) if m and head.stdout.split()[1] == "200" else None


class Skopeo(bench.Tool):
    """skopeo copy, the containers/image engine of podman and buildah. It pushes to a tag
    (a digest is no destination for it), one manifest PUT as the others' by digest, and
    reports the digest through --digestfile. Its blob-info cache (for root in
    /var/lib/containers/cache) remembers where it pushed each blob and mounts it from there
    the next time: a tmpfs of this namespace holds it, emptied before each push, so that a
    cold push is cold for skopeo too."""
    name = "skopeo"
    CACHE = "/var/lib/containers/cache"

    @classmethod
    def isolate_cache(cls):
        os.makedirs(cls.CACHE, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", cls.CACHE], check=True)

    def forget(self):
        for name in os.listdir(self.CACHE):
            os.remove(os.path.join(self.CACHE, name))

    def __init__(self, exe, workdir):
        super().__init__(exe)
        self.digest_file = os.path.join(workdir, "skopeo-digest")

    def command(self, lay, ref, tag):
        return [self.exe, "copy", "--all", "--preserve-digests", "--quiet",
                "--digestfile", self.digest_file, f"oci:{lay.path}",
                f"docker://{ref}:{tag or 'bench'}"]

    def reported_digest(self, out):
        try:
            with open(self.digest_file) as f:
                return f.read().strip()
        except OSError:
            return None

    def version(self):
        out = subprocess.run([self.exe, "--version"], capture_output=True, text=True).stdout
        return out.split()[-1] if out.split() else "?"


def layouts(args):
    """The scenarios' layouts, generated into the cache when missing."""
    q, cache = args.quick, args.cache
    return {
        "present": bench.layout(cache, 3, (2 if q else 20) * bench.MIB, seed=21),
        "small": bench.layout(cache, 3, 5 * bench.MB // 3, seed=1),
        "index": bench.layout(cache, 3, 5 * bench.MB // 3, seed=3, platforms=3),
        "layers30": bench.layout(cache, 30, bench.MB // 2, seed=22),
        "large": bench.layout(cache, 3, (2 if q else 20) * bench.MIB, seed=21),
    }


class Wan:
    def __init__(self, args, tools, workdir):
        self.args, self.tools, self.workdir = args, tools, workdir
        self.rtt = args.rtt / 1000
        self.bandwidth = args.bandwidth * 1e6 / 8
        ca, self.certs = make_certificates(workdir)
        config_dir = os.path.join(workdir, "docker")
        os.makedirs(config_dir)
        auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        with open(os.path.join(config_dir, "config.json"), "w") as f:
            json.dump({"auths": {REGISTRY_NAME: {"auth": auth}}}, f)
        # Every tool alike: the system's trust store with the test CA added (so each loads a
        # whole store, as in the field), the credentials (Docker's config.json, and the same
        # file as containers' auth.json for skopeo), no proxy.
        bundle = os.path.join(workdir, "trust.pem")
        with open(bundle, "w") as out:
            for path in ("/etc/ssl/certs/ca-certificates.crt", ca):
                if os.path.exists(path):
                    with open(path) as f:
                        out.write(f.read())
        os.environ["SSL_CERT_FILE"] = bundle
        os.environ["DOCKER_CONFIG"] = config_dir
        bench.EXTRA_ENV.update(SSL_CERT_FILE=bundle, DOCKER_CONFIG=config_dir,
                               REGISTRY_AUTH_FILE=os.path.join(config_dir, "config.json"),
                               HOME=os.path.join(workdir, "home"))
        os.makedirs(os.path.join(workdir, "home"))
        cert, key = self.certs[AUTH_NAME]
        self.tokens = TokenService(workdir, ("127.0.0.1", bench.free_port()), cert, key,
                                   {USER: PASSWORD}).start()
        self.registry = RemoteRegistry(workdir, args.tmpfs, self.certs, self.tokens).start()
        self.link = None
        self.layouts = layouts(args)
        self.rows = {}   # scenario -> rtt (s) -> tool -> [sample dict]
        self.rss = {}    # tool -> peak RSS KiB (large, cold)
        self.runs = 0

    def through(self, rtt):
        """Puts up a link of this RTT (and the set bandwidth) in front of both hosts."""
        if self.link is not None:
            self.link.close()
        self.link = wanlink.Link(rtt, self.bandwidth, handshake=True)
        self.link.forward((REGISTRY_ADDR, 443), ("127.0.0.1", self.registry.port))
        self.link.forward((AUTH_ADDR, 443), self.tokens.address)

    def close(self):
        if self.link is not None:
            self.link.close()
        self.registry.stop()
        self.tokens.stop()

    def command(self, tool, lay, repo, tag):
        ref = f"{REGISTRY_NAME}/{repo}"
        if tool.name == "oci-push":
            cmd = [tool.exe, "--layout", lay.path, "-r", ref, "--format", "json"]
            cmd += tool.extra
            return cmd + (["-t", tag] if tag else [])
        if tool.name == "skopeo":
            return tool.command(lay, ref, tag)
        if tool.name == "crane":
            # By digest as rules_oci does; with a tag, to the tag in the same process.
            return [tool.exe, "push", lay.path, f"{ref}:{tag}" if tag else f"{ref}@{lay.digest}"]
        return [tool.exe, "cp", "--from-oci-layout", f"{lay.path}@{lay.digest}",
                f"{ref}:{tag}" if tag else ref, "--no-tty"]

    def reported_digest(self, tool, out):
        if tool.name == "oci-push":
            try:
                return json.loads(out)["digest"]
            except (ValueError, KeyError):
                return None
        return tool.reported_digest(out)

    def push(self, tool, lay, repo, tag=None, probe=False):
        if tool.name == "skopeo":
            tool.forget()
        before = (self.registry.requests(), self.tokens.requests, self.link.counters())
        result = bench.run_timed(self.command(tool, lay, repo, tag), probe)
        bench.check(result, f"{tool.name} push of {lay.path} to {repo}")
        time.sleep(0.05)   # the access log line of the last answer
        link = self.link.counters()
        sample = {
            "wall": result.wall, "cpu": result.cpu, "rss": result.rss_kib,
            "requests": self.registry.requests() - before[0] + self.tokens.requests - before[1],
            "connections": link["connections"] - before[2]["connections"],
            "up": link["up_bytes"] - before[2]["up_bytes"],
        }
        if tool.name == "oci-push":
            sample["json"] = json.loads(result.out).get("wire")
        reported = self.reported_digest(tool, result.out)
        held = self.registry.manifest_digest(repo, tag or lay.digest)
        if reported != lay.digest or held != lay.digest:
            raise bench.BenchError(
                f"{tool.name} pushed something else than {lay.digest}: it reported {reported}, "
                f"the registry holds {held} for {repo}:{tag or lay.digest}\n"
                f"{result.out}{result.err}")
        return sample

    def scenario(self, name, rtt, runs):
        lay = self.layouts[name]
        bench.warm_page_cache(lay)
        for i in range(runs):
            for tool in bench.rotated(self.tools, i):
                self.runs += 1
                repo = f"wan/{name}-{tool.name}-{self.runs}"
                tag = None
                if name == "present":
                    tag = "v1"
                    self.push(tool, lay, repo, tag)   # untimed: the registry has it now
                sample = self.push(tool, lay, repo, tag)
                self.rows.setdefault(name, {}).setdefault(rtt, {}).setdefault(
                    tool.name, []).append(sample)
                bench.log(f"  {name:9} rtt {rtt * 1000:3.0f} ms {tool.name:9}"
                          f" {sample['wall']:7.3f} s  {sample['requests']:3} requests"
                          f"  {sample['connections']:2} connections"
                          + (f"  json {sample['json']}" if "json" in sample else ""))

    def peak_rss(self):
        lay = self.layouts["large"]
        for tool in self.tools:
            self.runs += 1
            sample = self.push(tool, lay, f"wan/rss-{tool.name}-{self.runs}", probe=True)
            self.rss[tool.name] = sample["rss"]

    def run(self, scenarios):
        for name in scenarios:
            bench.log(f"== wan {name}: {SCENARIOS[name][0]}")
            self.through(self.rtt)
            self.scenario(name, self.rtt, self.args.runs)
            self.through(0)
            self.scenario(name, 0, self.args.runs)
        if os.access(bench.GNU_TIME, os.X_OK):
            self.through(self.rtt)
            self.peak_rss()

    # -- the report

    def floor(self, name):
        lay = self.layouts[name]
        sent = 0 if name == "present" else lay.bytes
        return sent / self.bandwidth + FLOOR_TRIPS[name] * self.rtt

    def report(self, info):
        names = [t.name for t in self.tools]
        med = statistics.median
        lines = []
        add = lines.append
        rtt_ms, mbit = self.args.rtt, self.args.bandwidth
        add(f"| scenario | " + " | ".join(names) + " | ours / best peer | target | floor | "
            "ours / floor | target | result |")
        add("|---|" + "---|" * len(names) + "---|---|---|---|---|---|")
        verdicts = []
        for name, by_rtt in self.rows.items():
            title, peer_target, floor_target = SCENARIOS[name]
            at = by_rtt.get(self.rtt, {})
            walls = {n: [s["wall"] for s in at[n]] for n in names if n in at}
            cells = [f"{med(walls[n]):.3f} s ({min(walls[n]):.3f}–{max(walls[n]):.3f})"
                     if n in walls else "–" for n in names]
            ours = med(walls["oci-push"])
            peers = [(med(w), n) for n, w in walls.items() if n != "oci-push"]
            checks = []   # each target that could be judged: met or not
            ratio_cell = "–"
            if peers:
                best, best_name = min(peers)
                ratio_cell = f"{ours / best:.2f}x ({best_name})"
                if peer_target:
                    checks.append(ours / best <= peer_target)
            target_cell = f"≤ {peer_target}x" if peer_target else "–"
            floor = self.floor(name)
            if floor_target:
                checks.append(ours / floor <= floor_target)
            ftarget = f"≤ {floor_target}x" if floor_target else "–"
            judged = bool(checks) and not (peer_target and not peers)
            verdict = ("met" if all(checks) else "MISSED") if judged else "n/a (no peer)"
            verdicts.append((title, verdict))
            add(f"| {title} | " + " | ".join(cells) + f" | {ratio_cell} | {target_cell} | "
                f"{floor:.3f} s | {ours / floor:.2f}x | {ftarget} | {verdict} |")
        add("")
        add(f"Wall time: median (min–max) of {self.args.runs} runs per tool, alternated, "
            f"through a link of {rtt_ms:g} ms RTT and {mbit:g} Mbit/s each way; floor: the "
            "bytes sent over the bandwidth plus the fewest round trips the push needs "
            "(bench/wan.py, FLOOR_TRIPS).")
        add("")
        add("Per push (medians): requests (token requests included) · connections · round "
            "trips on the critical path, (wall at RTT − wall at 0 RTT) / RTT; for oci-push, "
            "also its own `--format json` count:")
        add("")
        add("| scenario | " + " | ".join(names) + " | floor round trips |")
        add("|---|" + "---|" * len(names) + "---|")
        for name, by_rtt in self.rows.items():
            cells = []
            for n in names:
                at, zero = by_rtt.get(self.rtt, {}).get(n), by_rtt.get(0, {}).get(n)
                if not at:
                    cells.append("–")
                    continue
                trips = ((med(s["wall"] for s in at) - med(s["wall"] for s in zero)) / self.rtt
                         if zero else float("nan"))
                cell = (f"{med(s['requests'] for s in at):.0f} · "
                        f"{med(s['connections'] for s in at):.0f} · {trips:.1f}")
                own = [s["json"]["roundTrips"] for s in at if s.get("json")]
                if own:
                    cell += f" (own count {med(own):.0f})"
                cells.append(cell)
            add(f"| {SCENARIOS[name][0]} | " + " | ".join(cells) + f" | {FLOOR_TRIPS[name]} |")
        # A cold push sends every byte: one that sent less reused blobs from somewhere.
        for name, by_rtt in self.rows.items():
            if name == "present":
                continue
            for n, samples in by_rtt.get(self.rtt, {}).items():
                sent = med(x["up"] for x in samples)
                if sent < 0.95 * self.layouts[name].bytes:
                    add("")
                    add(f"Note: {n} sent {sent / bench.MB:.1f} MB of the "
                        f"{self.layouts[name].bytes / bench.MB:.1f} MB of {SCENARIOS[name][0]}: "
                        "it reused blobs, so that push was not cold.")
        if self.rss:
            add("")
            add("Peak RSS, 60 MiB cold over TLS (GNU time): " + ", ".join(
                f"{n} {v / 1024:.1f} MiB" for n, v in self.rss.items() if v)
                + f" (target ≤ {RSS_TARGET_MIB:.0f} MiB for oci-push)")
            ours = self.rss.get("oci-push")
            verdicts.append(("peak RSS", "met" if ours and ours / 1024 <= RSS_TARGET_MIB
                             else "MISSED"))
        add("")
        add("Run: " + "; ".join(f"{k}: {v}" for k, v in info.items()))
        add("")
        for title, verdict in verdicts:
            add(f"- {title}: {verdict}")
        return "\n".join(lines) + "\n"


def main(args, tools, workdir):
    if args.prepare:
        layouts(args)
        return f"layouts are in {args.cache}\n"
    bind_hosts(workdir)
    skopeo = shutil.which("skopeo")
    if skopeo and not args.no_peers:
        Skopeo.isolate_cache()
        tools = tools + [Skopeo(skopeo, workdir)]
    scenarios = [s for a in args.scenario for s in a.split(",") if s] or list(SCENARIOS)
    for s in scenarios:
        if s not in SCENARIOS:
            sys.exit(f"run.py --wan: unknown scenario {s!r}; one of: {', '.join(SCENARIOS)}")
    wan = Wan(args, tools, workdir)
    try:
        wan.run(scenarios)
    finally:
        wan.close()
    info = bench.machine_info(tools, args.peers)
    for tool in tools:
        if tool.name == "skopeo":
            info["skopeo"] = tool.version()
    info["link"] = f"{args.rtt:g} ms RTT, {args.bandwidth:g} Mbit/s each way, TCP connect 1 RTT"
    return wan.report(info)
