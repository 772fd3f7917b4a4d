#!/usr/bin/env python3
"""Times oci-push against crane and oras on the same OCI layouts and a real local registry.

usage: python3 bench/run.py [--quick] [--scenario NAME]... [--runs N] [--peers DIR] [--get-peers]

Builds `cargo build --release` (unless --no-build), generates deterministic layouts with
bench/make-layout.py into a cache directory (kept between runs), starts the CNCF distribution
registry (`docker-registry`) on 127.0.0.1 with its storage on tmpfs, and times each tool, run by
run in rotating order. Wall time is time.perf_counter around the process, CPU time comes from
os.wait4 for that process alone, peak RSS from one more run per tool under GNU time (see
run_timed for why). Every push is checked: the digest the tool reports and the one the registry
holds must be the layout's. Prints markdown tables (median and min-max) and the ratio
oci-push / best peer against the targets of issue 5. Standard library only; crane and oras are
optional (bench/get-peers.sh fetches them). See bench/README.md.
"""
import argparse
import ctypes
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MIB = 1 << 20
MB = 1000 * 1000

MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
])

# Scenario name -> (title, target ratio oci-push / best peer, or None)
SCENARIOS = {
    "small": ("small image, 3 gzip layers, 5 MB, cold", 0.5),
    "large-cold": ("large image, 5 x 100 MiB, cold", 1.0),
    "large-present": ("same large image again (all present)", 0.5),
    "large-mount": ("large image to a new repository, mount hint", 0.1),
    "index": ("3-platform index, cold", 0.5),
    "tags": ("20 tags on an existing image", 0.2),
    "scaling": ("oci-push scaling: total size and layer count", None),
}
RSS_TARGET_MIB = 8.0


class BenchError(Exception):
    pass


def log(*args):
    print(*args, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Processes

# What a scenario adds to every tool's environment alike (the WAN one: its CA and credentials).
EXTRA_ENV = {}


def child_env():
    """The tools' environment: no proxy may come between them and the loopback registry."""
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(EXTRA_ENV)
    return env


def die_with_parent():
    """preexec_fn: the child gets SIGTERM if this script dies, even by SIGKILL (Linux)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Result:
    def __init__(self, wall, cpu, rss_kib, code, out, err):
        self.wall, self.cpu, self.rss_kib, self.code = wall, cpu, rss_kib, code
        self.out, self.err = out, err


GNU_TIME = "/usr/bin/time"


def run_timed(cmd, probe=False, timeout=600):
    """Runs cmd and measures it.

    A timed run starts cmd directly (vfork, ~1 ms): wall time is time.perf_counter around the
    process, CPU time (user + system) comes from os.wait4 for that child alone. Its ru_maxrss is
    useless though: Linux counts the RSS of the process that forked it (this Python, ~25 MiB)
    into the child's peak. So with probe=True, cmd runs under GNU time, a 30 KB C program that
    forks the tool itself and reports the tool's own ru_maxrss from its wait4; such a run
    measures peak RSS only (its wall time carries GNU time's overhead and is not used).
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as rss_file:
        if probe:
            cmd = [GNU_TIME, "-f", "%M", "-o", rss_file.name, *cmd]
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                env=child_env())
        killer = threading.Timer(timeout, lambda: os.kill(proc.pid, signal.SIGKILL))
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        rss = None
        if probe:
            lines = rss_file.read().split()
            rss = int(lines[-1]) if lines and lines[-1].isdigit() else None
        out.seek(0)
        err.seek(0)
        return Result(wall, usage.ru_utime + usage.ru_stime, rss, proc.returncode,
                      out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def check(result, what):
    if result.code != 0:
        raise BenchError(f"{what} failed (exit {result.code}):\n{result.out}{result.err}")
    return result


# ---------------------------------------------------------------------------------------------
# The registry

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, headers=None):
    """(status, headers) of a request to the loopback registry, never through a proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with opener.open(req, timeout=30) as r:
            return r.status, r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.headers


def serve_registry(config, log_path):
    """Starts `docker-registry serve config`, its output appended to log_path."""
    # The registry reads REGISTRY_* variables as configuration overrides.
    env = {k: v for k, v in child_env().items() if not k.startswith("REGISTRY_")}
    with open(log_path, "ab") as log_file:
        return subprocess.Popen(["docker-registry", "serve", config], env=env,
                                stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                                preexec_fn=die_with_parent)


class Registry:
    """docker-registry on 127.0.0.1 with a fresh storage directory on tmpfs at each start."""
    live = set()

    def __init__(self, workdir, tmpfs):
        self.workdir, self.tmpfs = workdir, tmpfs
        self.proc = None
        self.storage = None
        self.starts = 0

    def start(self):
        self.stop()
        for _ in range(5):
            self.starts += 1
            self.storage = tempfile.mkdtemp(prefix=f"oci-push-bench-{os.getpid()}-",
                                            dir=self.tmpfs)
            port = free_port()
            config = os.path.join(self.workdir, "registry.yml")
            with open(config, "w") as f:
                f.write(f"""version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {self.storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
""")
            self.proc = serve_registry(config, os.path.join(self.workdir, "registry.log"))
            Registry.live.add(self)
            self.host = f"127.0.0.1:{port}"
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if http("GET", f"http://{self.host}/v2/")[0] == 200:
                        return self
                except OSError:
                    pass
                time.sleep(0.05)
            self.stop()
        with open(os.path.join(self.workdir, "registry.log"), errors="replace") as f:
            raise BenchError("could not start docker-registry:\n" + f.read()[-2000:])

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
        Registry.live.discard(self)
        if self.storage:
            shutil.rmtree(self.storage, ignore_errors=True)
            self.storage = None

    def cpu(self):
        """CPU seconds (user + system) the registry has used so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def manifest_digest(self, repo, reference):
        status, headers = http("HEAD", f"http://{self.host}/v2/{repo}/manifests/{reference}",
                               {"Accept": MANIFEST_TYPES})
        return headers.get("Docker-Content-Digest") if status == 200 else None


def remove_stale(tmpfs):
    """Removes registry storage and work directories a killed run (SIGKILL) left behind."""
    for parent, pattern in ((tmpfs, r"oci-push-bench-(\d+)-"),
                            (tempfile.gettempdir(), r"oci-push-bench-(\d+)-")):
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        for name in names:
            m = re.match(pattern, name)
            if m and not os.path.exists(f"/proc/{m.group(1)}"):
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def stop_all_registries():
    for registry in list(Registry.live):
        registry.stop()


# ---------------------------------------------------------------------------------------------
# Layouts

class Layout:
    def __init__(self, path):
        self.path = path
        with open(os.path.join(path, "index.json")) as f:
            self.digest = json.load(f)["manifests"][0]["digest"]
        self.bytes = sum(os.path.getsize(os.path.join(path, "blobs", "sha256", b))
                         for b in os.listdir(os.path.join(path, "blobs", "sha256")))


def layout(cache, layers, size, seed=1, platforms=1):
    """The layout of these parameters from the cache, generated (atomically) when missing."""
    name = f"l{layers}x{size}-s{seed}-p{platforms}"
    path = os.path.join(cache, name)
    if not os.path.exists(os.path.join(path, "index.json")):
        total = layers * size * platforms
        log(f"generating layout {name} ({total / MB:.0f} MB) ...")
        tmp = path + ".partial"
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run([sys.executable, os.path.join(HERE, "make-layout.py"), tmp,
                        "--layers", str(layers), "--size", str(size), "--seed", str(seed),
                        "--platforms", str(platforms)], check=True, stdout=subprocess.DEVNULL)
        shutil.rmtree(path, ignore_errors=True)
        os.rename(tmp, path)
    return Layout(path)


def warm_page_cache(lay):
    """Reads every blob once so that no tool pays for the first read from disk."""
    d = os.path.join(lay.path, "blobs", "sha256")
    for b in os.listdir(d):
        with open(os.path.join(d, b), "rb") as f:
            while f.read(8 * MIB):
                pass


# ---------------------------------------------------------------------------------------------
# The tools

class Tool:
    name = ""

    def __init__(self, exe):
        self.exe = exe

    def push_cmd(self, lay, ref_repo, mount_from=None):
        raise NotImplementedError

    def reported_digest(self, out):
        raise NotImplementedError

    def push(self, lay, registry, repo, mount_from=None, probe=False):
        """One push, checked: the tool must report the layout's digest and the registry must
        hold it under that digest."""
        if mount_from:
            mount_from = f"{registry.host}/{mount_from}"
        result = run_timed(self.push_cmd(lay, f"{registry.host}/{repo}", mount_from), probe)
        check(result, f"{self.name} push of {lay.path} to {repo}")
        reported = self.reported_digest(result.out)  # all three print it on stdout
        held = registry.manifest_digest(repo, lay.digest)
        if reported != lay.digest or held != lay.digest:
            raise BenchError(
                f"{self.name} pushed something else than the layout's {lay.digest}: it "
                f"reported {reported}, the registry holds {held} for {repo}@{lay.digest}\n"
                f"{result.out}{result.err}")
        return result


class OciPush(Tool):
    name = "oci-push"

    def __init__(self, exe, extra=()):
        super().__init__(exe)
        self.extra = list(extra)   # --oci-push-args, to measure an option

    def push_cmd(self, lay, ref_repo, mount_from=None):
        cmd = [self.exe, "--layout", lay.path, "--repository", ref_repo, *self.extra]
        if mount_from:
            cmd += ["--mount-from", mount_from]
        return cmd

    def tag_cmd(self, lay, ref_repo, tags):
        cmd = self.push_cmd(lay, ref_repo)
        for t in tags:
            cmd += ["-t", t]
        return cmd

    def reported_digest(self, out):
        lines = [ln for ln in out.splitlines() if "@sha256:" in ln]
        m = re.search(r"@(sha256:[0-9a-f]{64})$", lines[-1].strip()) if lines else None
        return m.group(1) if m else None

    def version(self):
        v = subprocess.run([self.exe, "--version"], capture_output=True, text=True).stdout.strip()
        try:
            git = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                                 capture_output=True, text=True).stdout.strip()
        except OSError:
            git = ""
        return f"{v} ({git})" if git else v


class Crane(Tool):
    name = "crane"

    def push_cmd(self, lay, ref_repo, mount_from=None):
        # By digest, as rules_oci's push does. A layout whose index.json names one index is
        # pushed as that index without --index (--index would wrap index.json itself).
        return [self.exe, "push", "--insecure", lay.path, f"{ref_repo}@{lay.digest}"]

    def tag_cmd(self, lay, ref_repo, tag):
        return [self.exe, "tag", "--insecure", f"{ref_repo}@{lay.digest}", tag]

    def reported_digest(self, out):
        m = re.findall(r"^\S+@(sha256:[0-9a-f]{64})$", out, re.M)
        return m[-1] if m else None


class Oras(Tool):
    name = "oras"

    def push_cmd(self, lay, ref_repo, mount_from=None):
        return [self.exe, "cp", "--from-oci-layout", f"{lay.path}@{lay.digest}", ref_repo,
                "--to-plain-http", "--no-tty"]

    def tag_cmd(self, lay, ref_repo, tags):
        return [self.exe, "tag", "--plain-http", f"{ref_repo}@{lay.digest}", *tags]

    def reported_digest(self, out):
        m = re.findall(r"^Digest: (sha256:[0-9a-f]{64})$", out, re.M)
        return m[-1] if m else None


def peer_versions(peers):
    versions = {}
    try:
        with open(os.path.join(peers, "versions.txt")) as f:
            for line in f:
                name, _, v = line.strip().partition(" ")
                versions[name] = v
    except OSError:
        pass
    return versions


# ---------------------------------------------------------------------------------------------
# Measurements

class Sample:
    def __init__(self, wall, cpu, registry_cpu):
        self.wall, self.cpu, self.registry_cpu = wall, cpu, registry_cpu


def measure(registry, fn):
    """Runs fn() -> Result (or a list of Results, summed) and the registry CPU it caused."""
    before = registry.cpu()
    r = fn()
    results = r if isinstance(r, list) else [r]
    return (Sample(sum(x.wall for x in results), sum(x.cpu for x in results),
                   registry.cpu() - before),
            max((x.rss_kib or 0) for x in results) or None)


def rotated(tools, i):
    k = i % len(tools)
    return tools[k:] + tools[:k]


class Bench:
    def __init__(self, args, tools, workdir):
        self.args, self.tools, self.workdir = args, tools, workdir
        self.registry = Registry(workdir, args.tmpfs)
        self.samples = {}      # scenario -> tool name -> [Sample]
        self.rss = {}          # scenario -> tool name -> peak RSS in KiB (probe runs)
        self.scaling = []      # rows of the scaling tables
        self.notes = []
        self.probe = os.access(GNU_TIME, os.X_OK)
        if not self.probe:
            self.notes.append(f"no GNU time at {GNU_TIME} (Debian package `time`): peak RSS "
                              "not measured")
        q = args.quick
        self.small = layout(args.cache, 3, 5 * MB // 3, seed=1)
        self.large = layout(args.cache, 5, (10 if q else 100) * MIB, seed=2)
        self.index = layout(args.cache, 3, 5 * MB // 3, seed=3, platforms=3)

    def title(self, scenario):
        """The scenario's title, with the large image's real size (--quick makes it small)."""
        title = SCENARIOS[scenario][0]
        if self.args.quick:
            title = title.replace("100 MiB", f"{self.large.bytes // 5 // MIB} MiB")
        return title

    def drive(self, scenario, one, fresh_registry=False):
        """Runs one(tool, run, probe) -> (Sample, rss) for every tool, --runs times in rotating
        order, then once more per tool under GNU time for the peak RSS. With fresh_registry,
        every run gets a new registry on new tmpfs storage; otherwise the caller started one."""
        runs = self.args.runs
        for i in range(runs + (1 if self.probe else 0)):
            probe = i == runs
            for tool in rotated(self.tools, i):
                if fresh_registry:
                    self.registry.start()
                sample, rss = one(tool, i, probe)
                if probe:
                    self.rss.setdefault(scenario, {})[tool.name] = rss
                    log(f"  {scenario:14} {tool.name:9} peak RSS {rss / 1024:.1f} MiB")
                    continue
                self.samples.setdefault(scenario, {}).setdefault(tool.name, []).append(sample)
                log(f"  {scenario:14} {tool.name:9} {sample.wall:8.3f} s  cpu {sample.cpu:6.3f} s"
                    f"  registry cpu {sample.registry_cpu:6.3f} s")
        self.registry.stop()

    def cold(self, scenario, lay, fresh_registry):
        """A cold push: a fresh repository per run on one registry, or a fresh registry."""
        warm_page_cache(lay)
        if not fresh_registry:
            self.registry.start()

        def one(tool, i, probe):
            repo = f"bench/{scenario}-{tool.name}-{i}"
            return measure(self.registry, lambda: tool.push(lay, self.registry, repo,
                                                            probe=probe))
        self.drive(scenario, one, fresh_registry)

    def scenario_small(self):
        self.cold("small", self.small, fresh_registry=False)

    def scenario_index(self):
        self.cold("index", self.index, fresh_registry=False)

    def scenario_large_cold(self):
        # A fresh registry (and tmpfs storage) per run: nothing of the image is anywhere.
        self.cold("large-cold", self.large, fresh_registry=True)

    def scenario_large_present(self):
        warm_page_cache(self.large)
        self.registry.start()

        def one(tool, i, probe):
            repo = f"bench/present-{tool.name}"
            tool.push(self.large, self.registry, repo)  # untimed: now all is present
            return measure(self.registry, lambda: tool.push(self.large, self.registry, repo,
                                                            probe=probe))
        self.drive("large-present", one)

    def scenario_large_mount(self):
        warm_page_cache(self.large)
        self.registry.start()
        ours = self.tools[0]
        ours.push(self.large, self.registry, "bench/base")  # untimed: the repository to mount from

        def one(tool, i, probe):
            repo = f"bench/mount-{tool.name}-{i}"
            # Only oci-push has a mount option; the peers do their normal push.
            mount = "bench/base" if tool is ours else None
            return measure(self.registry, lambda: tool.push(self.large, self.registry, repo,
                                                            mount, probe))
        self.drive("large-mount", one)

    def scenario_tags(self):
        lay = self.small
        tags = [f"t{n}" for n in range(1, 21)]
        self.registry.start()
        reg = self.registry

        def tag(tool, repo, probe):
            ref = f"{reg.host}/{repo}"
            if isinstance(tool, OciPush):
                return check(run_timed(tool.tag_cmd(lay, ref, tags), probe), "oci-push tags")
            if isinstance(tool, Crane):  # what rules_oci does: one `crane tag` per tag
                return [check(run_timed(tool.tag_cmd(lay, ref, t), probe), f"crane tag {t}")
                        for t in tags]
            return check(run_timed(tool.tag_cmd(lay, ref, tags), probe), "oras tag")

        def one(tool, i, probe):
            repo = f"bench/tags-{tool.name}-{i}"
            tool.push(lay, reg, repo)  # untimed: the existing image, no tags yet
            result = measure(reg, lambda: tag(tool, repo, probe))
            for t in tags:
                held = reg.manifest_digest(repo, t)
                if held != lay.digest:
                    raise BenchError(f"{tool.name}: tag {t} of {repo} is {held}, "
                                     f"not {lay.digest}")
            return result
        self.drive("tags", one)

    def scaling_cases(self):
        """(kind, layers, layer size): 5 layers of growing total size, then one total size
        cut into 1, 10 and 100 layers."""
        if self.args.quick:
            sizes, count_total = [10 * MB, 20 * MB, 50 * MB], 20 * MB
        else:
            sizes, count_total = [50 * MB, 200 * MB, 500 * MB, 1000 * MB, 2000 * MB], 200 * MB
        return ([("size", 5, total // 5) for total in sizes]
                + [("layers", n, count_total // n) for n in (1, 10, 100)])

    def scenario_scaling(self):
        ours = self.tools[0]
        runs = self.args.scale_runs
        for kind, layers, size in self.scaling_cases():
            lay = layout(self.args.cache, layers, size, seed=10 + layers)
            warm_page_cache(lay)
            cold, present, rss = [], [], None
            for i in range(runs + (1 if self.probe else 0)):
                probe = i == runs
                self.registry.start()
                repo = f"bench/scale-{i}"
                c, c_rss = measure(self.registry,
                                   lambda: ours.push(lay, self.registry, repo, probe=probe))
                # The same image again on the same registry: everything is present.
                p, p_rss = measure(self.registry,
                                   lambda: ours.push(lay, self.registry, repo, probe=probe))
                if probe:
                    rss = max(c_rss, p_rss)
                    log(f"  scaling {layers:3} x {size / MB:7.1f} MB  peak RSS {rss / 1024:.1f} MiB")
                    continue
                cold.append(c)
                present.append(p)
                log(f"  scaling {layers:3} x {size / MB:7.1f} MB  cold {c.wall:7.3f} s"
                    f"  present {p.wall:6.3f} s  cpu {c.cpu:.3f} s  registry {c.registry_cpu:.2f} s")
            self.registry.stop()
            self.scaling.append((kind, layers, size, lay.bytes, cold, present, rss))


# ---------------------------------------------------------------------------------------------
# Reporting

def fmt_time(samples):
    w = [s.wall for s in samples]
    return f"{statistics.median(w):.3f} s ({min(w):.3f}–{max(w):.3f})"


def median_wall(samples):
    return statistics.median(s.wall for s in samples)


def report(bench, info):
    lines = []
    add = lines.append
    names = [t.name for t in bench.tools]
    peers = names[1:]
    runs = {sc: min(len(v) for v in by_tool.values()) for sc, by_tool in bench.samples.items()}
    if bench.samples:
        add("| scenario | " + " | ".join(names) + " | ours / best peer | target | result |")
        add("|---|" + "---|" * len(names) + "---|---|---|")
    verdicts = []
    for sc, by_tool in bench.samples.items():
        title, target = bench.title(sc), SCENARIOS[sc][1]
        cells = []
        for n in names:
            s = by_tool.get(n)
            cell = fmt_time(s) if s else "–"
            if sc == "tags" and n == "crane" and s:
                cell += " (20 runs)"
            if sc == "large-mount" and s:
                cell += " (--mount-from)" if n == "oci-push" else " (no mount)"
            cells.append(cell)
        ours = by_tool.get("oci-push")
        # For the tags, the baseline is rules_oci's 20 `crane tag` runs.
        base_names = ["crane"] if sc == "tags" else peers
        base = [(median_wall(by_tool[n]), n) for n in base_names if n in by_tool]
        if ours and base:
            best, best_name = min(base)
            ratio = median_wall(ours) / best
            ok = ratio <= target
            verdict = "met" if ok else "MISSED"
            verdicts.append((title, ratio, target, ok))
            rcell = f"{ratio:.2f}x ({best_name})"
        else:
            rcell, verdict = "n/a (no peer)", "n/a"
        add(f"| {title} | " + " | ".join(cells) + f" | {rcell} | ≤ {target}x | {verdict} |")
    big = bench.rss.get("large-cold")
    if big:
        rss = {n: v / 1024 for n, v in big.items() if v}
        ours_rss = rss.get("oci-push")
        peer_rss = [v for n, v in rss.items() if n != "oci-push"]
        ratio = f"{ours_rss / min(peer_rss):.2f}x" if peer_rss and ours_rss else "n/a"
        ok = ours_rss is not None and ours_rss <= RSS_TARGET_MIB
        verdicts.append(("peak RSS, large image", ours_rss, RSS_TARGET_MIB, ok))
        add(f"| peak RSS, {bench.title('large-cold')} | "
            + " | ".join(f"{rss[n]:.1f} MiB" if n in rss else "–" for n in names)
            + f" | {ratio} | ≤ {RSS_TARGET_MIB:.0f} MiB | {'met' if ok else 'MISSED'} |")
    if bench.samples:
        add("")
        add(f"Wall time: median (min–max) of {', '.join(sorted(set(map(str, runs.values()))))} "
            "runs per tool, tools alternated run by run; cold runs push to a new repository "
            "(the large image: to a new registry on new tmpfs storage).")
        add("")
        add("Per process: peak RSS (one more run under GNU time) · CPU user+system of the "
            "tool (median) · CPU the registry used meanwhile (median):")
        add("")
        add("| scenario | " + " | ".join(names) + " |")
        add("|---|" + "---|" * len(names))
        for sc, by_tool in bench.samples.items():
            cells = []
            for n in names:
                s = by_tool.get(n)
                if not s:
                    cells.append("–")
                    continue
                r = bench.rss.get(sc, {}).get(n)
                cells.append((f"{r / 1024:.1f} MiB" if r else "n/a")
                             + f" · {statistics.median(x.cpu for x in s):.3f} s"
                             + f" · {statistics.median(x.registry_cpu for x in s):.3f} s")
            add(f"| {bench.title(sc)} | " + " | ".join(cells) + " |")
    for kind, title in (("size", "oci-push against total size (5 layers each), cold: a fresh "
                         "registry per run"),
                        ("layers", "oci-push against layer count (same total), cold")):
        rows = [r for r in bench.scaling if r[0] == kind]
        if not rows:
            continue
        add("")
        add(f"{title}; then the same push again (all present):")
        add("")
        add("| total | layers | cold | throughput | all present | oci-push CPU | registry CPU "
            "| peak RSS |")
        add("|---|---|---|---|---|---|---|---|")
        for _, layers, size, total, cold, present, rss in rows:
            add(f"| {total / MB:.0f} MB | {layers} x {size / MB:.1f} MB | {fmt_time(cold)} | "
                f"{total / MB / median_wall(cold):.0f} MB/s | {fmt_time(present)} | "
                f"{statistics.median(s.cpu for s in cold):.2f} s | "
                f"{statistics.median(s.registry_cpu for s in cold):.2f} s | "
                + (f"{rss / 1024:.1f} MiB |" if rss else "n/a |"))
    add("")
    add("Run: " + "; ".join(f"{k}: {v}" for k, v in info.items()))
    for note in bench.notes:
        add("")
        add(f"Note: {note}")
    if verdicts:
        add("")
        for title, ratio, target, ok in verdicts:
            unit = " MiB" if title.startswith("peak RSS") else "x"
            add(f"- {title}: {ratio:.2f}{unit} (target ≤ {target}{unit}): "
                f"{'met' if ok else 'MISSED'}")
    return "\n".join(lines) + "\n"


def machine_info(tools, peers_dir):
    info = {}
    info["date"] = time.strftime("%Y-%m-%d %H:%M %Z")
    info["nproc"] = str(os.cpu_count())
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
        info["memory"] = f"{kib / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")),
                         "")
        if model:
            info["cpu"] = model
    except OSError:
        pass
    info["kernel"] = platform.release()
    try:
        with open("/etc/os-release") as f:
            info["os"] = next(ln.split("=", 1)[1].strip().strip('"') for ln in f
                              if ln.startswith("PRETTY_NAME="))
    except (OSError, StopIteration):
        pass
    try:
        info["rustc"] = subprocess.run(["rustc", "--version"], capture_output=True,
                                       text=True).stdout.split()[1]
    except (OSError, IndexError):
        pass
    versions = peer_versions(peers_dir)
    for t in tools:
        if t.name == "oci-push":
            info["oci-push"] = t.version()
        else:
            info[t.name] = versions.get(t.name, "?")
    reg = subprocess.run(["docker-registry", "--version"], capture_output=True, text=True)
    info["registry"] = reg.stdout.strip().split()[-1] if reg.stdout.strip() else "?"
    return info


# ---------------------------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", action="append", default=[],
                   help="run only these (repeatable, or comma-separated): "
                        + ", ".join(SCENARIOS))
    p.add_argument("--runs", type=int, help="runs per tool and scenario (default 5; 3 with --quick)")
    p.add_argument("--scale-runs", type=int, help="runs per scaling point (default 3; 2 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="small sizes (large image 5 x 10 MiB, scaling up to 50 MB), for development")
    p.add_argument("--no-build", action="store_true", help="do not run cargo build --release")
    p.add_argument("--oci-push", default=os.path.join(ROOT, "target", "release", "oci-push"),
                   help="the oci-push binary (default: target/release/oci-push)")
    p.add_argument("--peers", default=os.path.join(HERE, ".peers"),
                   help="directory holding crane and oras (default bench/.peers)")
    p.add_argument("--get-peers", action="store_true",
                   help="fetch crane and oras into --peers first (bench/get-peers.sh)")
    p.add_argument("--no-peers", action="store_true", help="time oci-push alone")
    p.add_argument("--cache", default=os.path.join(HERE, ".cache"),
                   help="where generated layouts are kept (default bench/.cache)")
    p.add_argument("--tmpfs", default="/dev/shm", help="where registry storage goes (tmpfs)")
    p.add_argument("--out", help="also write the markdown report to this file")
    p.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                   help="first wait up to SECONDS for the 1-minute load average to fall below "
                        "half the cores (other work on the machine distorts the timings)")
    p.add_argument("--wan", action="store_true",
                   help="the WAN benchmark instead (bench/wan.py): TLS, tokens and host names "
                        "through a link of --rtt and --bandwidth; needs root")
    p.add_argument("--oci-push-args", default="", metavar="ARGS",
                   help="more arguments for oci-push, e.g. '-j 16' (to measure an option)")
    p.add_argument("--rtt", type=float, default=40, metavar="MS",
                   help="the WAN link's round-trip time (default 40 ms)")
    p.add_argument("--bandwidth", type=float, default=200, metavar="MBIT",
                   help="the WAN link's bandwidth each way (default 200 Mbit/s)")
    p.add_argument("--prepare", action="store_true",
                   help="only generate the layouts of the chosen scenarios into the cache")
    args = p.parse_args()
    if args.wan:
        import wan
        wan.enter_namespace(sys.argv)
    scenarios = [s for arg in args.scenario for s in arg.split(",") if s] or list(SCENARIOS)
    for s in scenarios if not args.wan else []:
        if s not in SCENARIOS:
            p.error(f"unknown scenario {s!r}; one of: {', '.join(SCENARIOS)}")
    args.runs = args.runs or (3 if args.quick else 5)
    args.scale_runs = args.scale_runs or (2 if args.quick else 3)
    if shutil.which("docker-registry") is None:
        sys.exit("run.py: needs docker-registry (Debian: apt-get install docker-registry; "
                 "or bash tools/setup.sh)")

    if not args.no_build:
        log("cargo build --release ...")
        if subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT).returncode:
            sys.exit("run.py: cargo build --release failed (use --no-build to time the "
                     "binary already built)")
    if not os.access(args.oci_push, os.X_OK):
        sys.exit(f"run.py: no oci-push at {args.oci_push}")
    if args.get_peers:
        subprocess.run(["bash", os.path.join(HERE, "get-peers.sh"), args.peers], check=True)
    tools = [OciPush(args.oci_push, shlex.split(args.oci_push_args))]
    notes = []
    if not args.no_peers:
        for cls in (Crane, Oras):
            exe = os.path.join(args.peers, cls.name)
            if os.access(exe, os.X_OK):
                tools.append(cls(exe))
            else:
                notes.append(f"{cls.name} not found in {args.peers}: skipped "
                             "(fetch it with --get-peers or bench/get-peers.sh)")
    for n in notes:
        log("note: " + n)

    if args.wait_idle and not args.prepare:
        deadline = time.monotonic() + args.wait_idle
        while os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1) and time.monotonic() < deadline:
            log(f"waiting for the machine to calm down: load average {os.getloadavg()[0]:.2f}")
            time.sleep(min(30, max(1, deadline - time.monotonic())))
    load_before = os.getloadavg()
    if load_before[0] > 0.5 * (os.cpu_count() or 1):
        log(f"warning: load average {load_before[0]:.2f} on {os.cpu_count()} cores: "
            "other work will distort the timings")
    os.makedirs(args.cache, exist_ok=True)
    remove_stale(args.tmpfs)
    workdir = tempfile.mkdtemp(prefix=f"oci-push-bench-{os.getpid()}-")
    started = time.monotonic()

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        if args.wan:
            import wan
            text = wan.main(args, tools, workdir)
            print(text)
            if args.out:
                with open(args.out, "w") as f:
                    f.write(text)
            return
        bench = Bench(args, tools, workdir)
        bench.notes = notes
        info = machine_info(tools, args.peers)
        if args.prepare:
            if "scaling" in scenarios:
                for _, layers, size in bench.scaling_cases():
                    layout(args.cache, layers, size, seed=10 + layers)
            log(f"layouts are in {args.cache}")
            return
        for s in scenarios:
            log(f"== {s}: {bench.title(s)}")
            getattr(bench, "scenario_" + s.replace("-", "_"))()
    except BenchError as e:
        stop_all_registries()
        sys.exit(f"run.py: FAILED: {e}")
    except KeyboardInterrupt:
        stop_all_registries()
        sys.exit("run.py: interrupted")
    finally:
        stop_all_registries()
        shutil.rmtree(workdir, ignore_errors=True)
    load_after = os.getloadavg()
    info["load average (1 min) before / after"] = f"{load_before[0]:.2f} / {load_after[0]:.2f}"
    info["duration"] = f"{time.monotonic() - started:.0f} s"
    info["options"] = " ".join(sys.argv[1:]) or "(none)"
    text = report(bench, info)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
