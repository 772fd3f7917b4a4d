#!/usr/bin/env python3
"""What the registry itself spends per request and per megabyte, whoever the client is.

usage: python3 bench/registry-cost.py [--requests N] [--tmpfs DIR]

Starts docker-registry as bench/run.py does (127.0.0.1, storage on tmpfs, logs off), sends it
requests of each kind a push makes, from one keep-alive connection of this script, and reads
the registry's CPU time (user + system, /proc/PID/stat) before and after each batch. Then it
prints the least CPU the registry needs for the bench's small image and 3-platform index, given
the requests any pusher must make (for each blob an existence check, a session and the upload;
the manifests; the check of the top manifest), and the least wall time that is on this
machine's cores: what no client can go below, however little it does itself.
"""
import argparse
import hashlib
import importlib.util
import os
import shutil
import socket
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("bench_run", os.path.join(HERE, "run.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


class Connection:
    """One keep-alive HTTP/1.1 connection, reading each answer whole."""

    def __init__(self, host):
        address, port = host.rsplit(":", 1)
        self.host = host
        self.sock = socket.create_connection((address, int(port)))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")

    def request(self, method, path, body=b"", headers=()):
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}",
                f"Content-Length: {len(body)}", *headers, "", ""]
        self.sock.sendall("\r\n".join(head).encode() + body)
        status = int(self.file.readline().split()[1])
        length = 0
        while (line := self.file.readline().strip()):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
            if name.lower() == "location":
                location = value.strip()
        if method != "HEAD" and length:
            self.file.read(length)
        return status, locals().get("location")


def per_request(registry, n, send):
    """Registry CPU seconds per call of send(i), over n calls."""
    before = registry.cpu()
    for i in range(n):
        send(i)
    return (registry.cpu() - before) / n


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per kind")
    parser.add_argument("--tmpfs", default="/dev/shm")
    args = parser.parse_args()
    n = args.requests
    workdir = tempfile.mkdtemp(prefix=f"oci-push-bench-{os.getpid()}-")
    registry = bench.Registry(workdir, args.tmpfs)
    try:
        registry.start()
        c = Connection(registry.host)
        zero = "sha256:" + "0" * 64
        costs = {}
        costs["GET /v2/ (the API's base)"] = per_request(
            registry, n, lambda i: c.request("GET", "/v2/"))
        costs["GET /nothing (404 outside the API)"] = per_request(
            registry, n, lambda i: c.request("GET", "/nothing"))
        costs["HEAD blob, absent"] = per_request(
            registry, n, lambda i: c.request("HEAD", f"/v2/cost/r{i}/blobs/{zero}"))
        sessions = []
        costs["POST upload session"] = per_request(
            registry, n, lambda i: sessions.append(c.request("POST", f"/v2/cost/s{i}/blobs/uploads/")[1]))

        def upload(location, data):
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            path = location.split(registry.host, 1)[-1]
            sep = "&" if "?" in path else "?"
            status, _ = c.request("PUT", f"{path}{sep}digest={digest.replace(':', '%3A')}", data,
                                  ["Content-Type: application/octet-stream"])
            if status != 201:
                raise SystemExit(f"upload answered {status}")

        small = [os.urandom(1000) for _ in range(n)]
        costs["PUT 1 KB blob"] = per_request(registry, n, lambda i: upload(sessions[i], small[i]))
        big_n = max(n // 20, 10)
        big = [os.urandom(5 * bench.MB // 3) for _ in range(big_n)]
        sessions.clear()
        for i in range(big_n):
            sessions.append(c.request("POST", f"/v2/cost/b{i}/blobs/uploads/")[1])
        put_big = per_request(registry, big_n, lambda i: upload(sessions[i], big[i]))
        per_mb = (put_big - costs["PUT 1 KB blob"]) / (len(big[0]) / bench.MB)
    finally:
        registry.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"Registry CPU per request ({n} of each, one keep-alive connection, "
          f"{os.cpu_count()} cores, 10 ms ticks averaged):\n")
    print("| request | registry CPU |")
    print("|---|---|")
    for name, cost in costs.items():
        print(f"| {name} | {cost * 1000:.2f} ms |")
    print(f"| each MB of blob bytes received | {per_mb * 1000:.2f} ms |")

    request = (costs["HEAD blob, absent"] + costs["POST upload session"]
               + costs["PUT 1 KB blob"]) / 3
    cores = os.cpu_count() or 1
    print("\nThe least a cold push costs the registry, whoever sends it:\n")
    print("| scenario | requests | MB | registry CPU | / cores = least wall time |")
    print("|---|---|---|---|---|")
    # Blobs: HEAD, POST, PUT each; manifests: PUT each; the top manifest: one HEAD first.
    for name, blobs, manifests, mb in (("small image", 4, 1, 5.0), ("3-platform index", 10, 4, 11.7)):
        requests = 3 * blobs + manifests + 1
        cpu = requests * request + mb * per_mb
        print(f"| {name} | {requests} | {mb} | {cpu * 1000:.0f} ms | {cpu / cores * 1000:.0f} ms |")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
