#!/usr/bin/env python3
"""A far-away network link between a client and loopback servers, as TCP pass-throughs.

usage: python3 bench/link.py --listen 127.0.0.2:8443 --to 127.0.0.1:5000 [--listen .. --to ..]
                             [--rtt MS] [--bandwidth MBIT] [--handshake]
       python3 bench/link.py --self-test

On loopback every registry client looks alike: a round trip costs ~50 µs and bandwidth is
free, so what tells clients apart over a WAN (round trips per push, parallelism, connection
reuse) does not show. A Link puts that distance back. Each byte is delayed by half the round-
trip time in each direction, and each direction has ONE bandwidth cap shared by every
connection through the link, the way a home uplink is shared: opening more connections does
not buy more bandwidth, it only splits it.

The model, per direction (up = client -> server, down = server -> client): the wire is free
again at `free_at`. A chunk of n bytes read at time t departs at max(t, free_at), occupies the
wire for n / bandwidth, and arrives at departure + n / bandwidth + rtt / 2. Readers stop reading
while the wire's backlog exceeds the bottleneck buffer (default: one RTT of queueing, at least
20 ms), so the sender's own TCP flow control pushes back on it as a real bottleneck would;
without that a sender's writes would complete at loopback speed and the queue would grow
without bound. bandwidth 0 or None is unlimited, rtt 0 no delay: Link(0, None) is the
no-delay baseline with the forwarding cost alone.

Not modelled: loss, jitter, TCP slow start and congestion windows (the sender's TCP talks to
this process over loopback), and by default the TCP handshake: a connect completes at once.
With handshake=True (--handshake) a connection's first byte cannot leave before one RTT after
the accept, as after a real SYN / SYN-ACK. Only loopback addresses (127.0.0.0/8) are accepted.
Standard library only.
"""
import argparse
import collections
import hashlib
import ipaddress
import os
import signal
import socket
import struct
import sys
import threading
import time

KIB = 1 << 10
MIB = 1 << 20
MB = 1000 * 1000
CHUNK = 64 * KIB
# Per connection and direction, at most this much read but not yet written; 2 x the
# bandwidth-delay product keeps a lone connection's pipe full. The bounds matter when the
# product is tiny (rtt 0) or infinite (unlimited bandwidth with a delay).
QUEUE_MIN, QUEUE_MAX = 1 * MIB, 16 * MIB


def loopback(addr, what):
    """addr as (host, port) if host is a literal 127.0.0.0/8 address, else ValueError."""
    host, port = addr
    try:
        ok = ipaddress.ip_address(host) in ipaddress.ip_network("127.0.0.0/8")
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{what} {host}:{port}: only 127.0.0.0/8 addresses are allowed")
    return host, int(port)


class _Direction:
    """One direction of the link (the uplink or the downlink), shared by all connections."""

    def __init__(self, rtt, bandwidth, buffer):
        self.delay = rtt / 2
        self.bandwidth = bandwidth or None
        self.buffer = buffer
        self.lock = threading.Lock()
        self.free_at = 0.0
        self.bytes = 0

    def send(self, n, now, not_before=0.0):
        """Puts n bytes on the wire at `now`: the time they arrive at the other end."""
        with self.lock:
            depart = max(now, self.free_at, not_before)
            self.free_at = depart + (n / self.bandwidth if self.bandwidth else 0.0)
            return self.free_at + self.delay

    def backlog(self, now):
        """Seconds of data queued for the wire beyond the bottleneck buffer (0 if none)."""
        with self.lock:
            return max(0.0, self.free_at - now - self.buffer)

    def delivered(self, n):
        with self.lock:
            self.bytes += n


class _Pipe:
    """One direction of one connection: src is read by a reader thread, chunks wait in a
    queue until their arrival time, and a writer thread writes them to dst.

    A reset travels like data, behind what was sent before it: an answer the server sent just
    before it reset the connection still reaches the client, rtt / 2 later, as over a wire.
    """
    EOF, RESET = b"", None

    def __init__(self, conn, src, dst, direction, limit, not_before=0.0):
        self.conn, self.src, self.dst, self.dir = conn, src, dst, direction
        self.limit = limit
        self.not_before = not_before
        self.queue = collections.deque()   # (arrival time, bytes or EOF or RESET)
        self.queued = 0                    # bytes in the queue
        self.cond = threading.Condition()
        self.sending = False               # the writer may be blocked in sendall
        self.done = False                  # the writer takes nothing more from the queue
        self.broken = False                # dst's peer is gone: what is left is dropped

    def push(self, data):
        """Queues data (or EOF, RESET) as read now; False if the writer is gone."""
        n = len(data) if data else 0
        at = self.dir.send(n, time.monotonic(), self.not_before)
        with self.cond:
            if self.done:
                return False
            self.queue.append((at, data))
            self.queued += n
            self.cond.notify_all()
            return True

    def read_loop(self):
        while not self.conn.aborted:
            with self.cond:
                while self.queued > self.limit and not self.conn.aborted:
                    self.cond.wait()
            wait = self.dir.backlog(time.monotonic())
            if wait > 0:
                # Sleeping instead of reading is what makes the sender's TCP window close.
                with self.cond:
                    self.cond.wait(wait)
                continue
            try:
                data = self.src.recv(CHUNK)
            except OSError:
                data = self.RESET
            if not self.push(data) and data is self.RESET:
                self.conn.abort()
            if not data:
                return

    def write_loop(self):
        while True:
            with self.cond:
                while not self.queue and not self.conn.aborted:
                    self.cond.wait()
                if self.conn.aborted:
                    self.done = True
                    return
                at, data = self.queue[0]
                # Sleep here, woken early by an abort (a notify for a newer chunk just
                # re-enters the wait: the chunk at the head arrives first anyway).
                while (not self.broken and not self.conn.aborted
                       and (left := at - time.monotonic()) > 0):
                    self.cond.wait(left)
                if self.conn.aborted:
                    self.done = True
                    return
                self.queue.popleft()
                self.queued -= len(data) if data else 0
                self.cond.notify_all()
                if not data:
                    self.done = True
                elif self.broken:
                    continue
                else:
                    # abort() sees this flag under the same lock: no sendall can start
                    # unseen after an abort, and a blocked one is woken.
                    self.sending = True
            try:
                if data is self.RESET:
                    self.conn.abort()
                    return
                if not data:
                    if not self.broken:
                        # The FIN, behind all data: a half-close, the other way carries on.
                        self.dst.shutdown(socket.SHUT_WR)
                    return
                self.dst.sendall(data)
                self.dir.delivered(len(data))
            except OSError:
                # dst's peer reset: that reset travels back to the sender through the other
                # direction; until then, what the sender still sends is dropped.
                self.broken = True
                self.conn.reset_from(self)
            finally:
                with self.cond:
                    self.sending = False

    def wake(self):
        with self.cond:
            if self.sending:
                try:
                    # Wakes a sendall blocked on a full window. The FIN queues behind the
                    # unsent data, so the peer sees the RST of the close first.
                    self.dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            self.cond.notify_all()


class _Connection:
    """A client socket and its upstream socket, joined by four threads (a reader and a writer
    per direction). The last thread out closes both sockets."""

    def __init__(self, forwarder, client, upstream):
        self.forwarder = forwarder
        self.client, self.upstream = client, upstream
        self.aborted = False
        self.lock = threading.Lock()
        link = forwarder.link
        not_before = time.monotonic() + link.rtt if link.handshake else 0.0
        self.pipes = [_Pipe(self, client, upstream, link.up, link.queue_limit, not_before),
                      _Pipe(self, upstream, client, link.down, link.queue_limit)]
        self.threads = [threading.Thread(target=self._run, args=(fn,), daemon=True,
                                         name=f"link-{fn.__name__}")
                        for p in self.pipes for fn in (p.read_loop, p.write_loop)]
        self.running = len(self.threads)

    def start(self):
        for t in self.threads:
            t.start()

    def _run(self, fn):
        try:
            fn()
        finally:
            with self.lock:
                self.running -= 1
                last = self.running == 0
            if last:
                self.client.close()
                self.upstream.close()
                self.forwarder._finished(self)

    def reset_from(self, pipe):
        """pipe's destination reset: tell the other end, behind what is already under way."""
        other = self.pipes[1] if pipe is self.pipes[0] else self.pipes[0]
        if not other.push(_Pipe.RESET):
            self.abort()

    def abort(self):
        """Resets both sides (the peers get an RST) and stops the four threads."""
        with self.lock:
            if self.aborted:
                return
            self.aborted = True
        for s in (self.client, self.upstream):
            try:
                # Linger 0: the close sends an RST, as the reset that caused this did.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # Wakes a thread blocked in recv (close alone would not) and, unlike
                # SHUT_RDWR, sends no FIN, which would make the reset look like a clean end.
                s.shutdown(socket.SHUT_RD)
            except OSError:
                pass
        for p in self.pipes:
            p.wake()

    def join(self):
        for t in self.threads:
            t.join()


class Forwarder:
    """A listening TCP pass-through on `listen` to `upstream`, through a Link."""

    def __init__(self, link, listen, upstream):
        self.link = link
        self.listen = loopback(listen, "listen")
        self.upstream = loopback(upstream, "upstream")
        self.connections = 0
        self.live = set()
        self.lock = threading.Lock()
        self.closed = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind(self.listen)
            self.sock.listen(128)
        except OSError:
            self.sock.close()
            raise
        self.address = self.sock.getsockname()   # the real port when listen's port was 0
        self.thread = threading.Thread(target=self._accept_loop, daemon=True,
                                       name=f"link-accept-{self.address[1]}")
        self.thread.start()

    def _accept_loop(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                if self.closed:
                    return
                time.sleep(0.01)   # e.g. EMFILE: do not spin
                continue
            try:
                # Connected here, before any byte is read: a refused upstream resets the client.
                upstream = socket.create_connection(self.upstream, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, client, upstream)
            with self.lock:
                if self.closed:
                    client.close()
                    upstream.close()
                    return
                self.connections += 1
                self.live.add(conn)
            self.link._count_connection()
            conn.start()

    def _finished(self, conn):
        with self.lock:
            self.live.discard(conn)

    def close(self):
        """Stops listening, resets every open connection and joins all threads."""
        with self.lock:
            self.closed = True
            conns = list(self.live)
        try:
            # On Linux, shutdown wakes the thread blocked in accept; close alone does not.
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.thread.join()
        self.sock.close()
        for c in conns:
            c.abort()
        for c in conns:
            c.join()


class Link:
    """A link of round-trip time `rtt` (seconds) and `bandwidth` (bytes/s per direction, 0 or
    None: unlimited), shared by all forwarders made with forward()."""

    def __init__(self, rtt, bandwidth, *, handshake=False, buffer=None):
        self.rtt = float(rtt)
        self.bandwidth = float(bandwidth) if bandwidth else None
        self.handshake = handshake
        # The bottleneck buffer in seconds of queueing: one RTT is the classic router sizing.
        self.buffer = max(self.rtt, 0.02) if buffer is None else float(buffer)
        bdp = (self.bandwidth * self.rtt if self.bandwidth else
               float("inf") if self.rtt else 0.0)
        self.queue_limit = int(min(QUEUE_MAX, max(QUEUE_MIN, 2 * bdp)))
        self.up = _Direction(self.rtt, self.bandwidth, self.buffer)
        self.down = _Direction(self.rtt, self.bandwidth, self.buffer)
        self.forwarders = []
        self.lock = threading.Lock()
        self._connections = 0

    def forward(self, listen, upstream):
        """A started pass-through listening on `listen`, forwarding to `upstream`."""
        f = Forwarder(self, listen, upstream)
        with self.lock:
            self.forwarders.append(f)
        return f

    def _count_connection(self):
        with self.lock:
            self._connections += 1

    def counters(self):
        """Connections accepted and bytes delivered per direction, since creation."""
        with self.lock:
            conns = self._connections
        with self.up.lock, self.down.lock:
            return {"connections": conns, "up_bytes": self.up.bytes,
                    "down_bytes": self.down.bytes}

    def close(self):
        with self.lock:
            forwarders, self.forwarders = self.forwarders, []
        for f in forwarders:
            f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------------------------
# Self-test: an echo server behind the link, timed from this process (one clock for both ends)

class _Echo:
    """Echoes every connection; notes per connection when its last byte arrived."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.address = self.sock.getsockname()
        self.received = {}   # client port -> (bytes, time of the last byte)
        self.lock = threading.Lock()
        self.threads = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._echo, args=(s,), daemon=True)
            self.threads.append(t)
            t.start()

    def _echo(self, s):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        key, n = None, 0
        with s:
            try:
                # The first 2 bytes name the client, so that its figures can be found.
                while len(head := s.recv(2, socket.MSG_PEEK)) < 2 and head:
                    time.sleep(0.001)
                key = struct.unpack("!H", head)[0] if head else None
                while data := s.recv(CHUNK):
                    n += len(data)
                    with self.lock:
                        self.received[key] = (n, time.monotonic())
                    s.sendall(data)
            except OSError:
                pass

    def close(self):
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for t in self.threads:
            t.join(5)


def _client(address, key):
    s = socket.create_connection(address)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(struct.pack("!H", key))
    got = b""
    while len(got) < 2:
        data = s.recv(2 - len(got))
        if not data:
            raise AssertionError("the echo server closed the connection")
        got += data
    return s


def _roundtrip(s):
    start = time.monotonic()
    s.sendall(b"x")
    if s.recv(1) != b"x":
        raise AssertionError("wrong echo")
    return time.monotonic() - start


def _upload(address, key, data, results):
    """Sends data on a new connection, drains the echo, half-closes and waits for the echo's
    EOF; results[key] = (time of the first byte sent, digest of what came back)."""
    s = _client(address, key)
    echoed = hashlib.sha256()

    def drain():
        while chunk := s.recv(CHUNK):
            echoed.update(chunk)
    t = threading.Thread(target=drain, daemon=True)
    t.start()
    start = time.monotonic()
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    t.join(30)
    s.close()
    results[key] = (start, echoed.hexdigest())


def _uploads(echo, address, sizes, key0):
    """Uploads of these sizes at once, one connection each: seconds from the first byte sent
    to the echo server's last byte received; checks that each echo came back intact."""
    results, threads, blobs = {}, [], {}
    for i, size in enumerate(sizes):
        key = key0 + i
        blobs[key] = os.urandom(size)
        threads.append(threading.Thread(target=_upload, args=(address, key, blobs[key], results)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for key, blob in blobs.items():
        if results.get(key, (0, ""))[1] != hashlib.sha256(blob).hexdigest():
            raise AssertionError(f"connection {key}: the echo is not what was sent")
    start = min(results[k][0] for k in blobs)
    with echo.lock:
        end = max(echo.received[k][1] for k in blobs)
    return end - start


def self_test():
    rtt, mbit = 0.040, 200
    bw = mbit * MB / 8
    failures = []

    def check(what, got, want, tol_abs, tol_rel):
        ok = abs(got - want) <= tol_abs + tol_rel * want
        print(f"{'ok  ' if ok else 'FAIL'} {what}: {got * 1000:8.1f} ms "
              f"(expected {want * 1000:.1f} ms ± {tol_abs * 1000:.0f} ms + {tol_rel:.0%})",
              flush=True)
        if not ok:
            failures.append(what)

    threads_before = threading.active_count()
    echo = _Echo()
    print(f"link: rtt {rtt * 1000:.0f} ms, {mbit} Mbit/s per direction; echo server behind it")
    link = Link(rtt, bw)
    try:
        fwd = link.forward(("127.0.0.1", 0), echo.address)
        s = _client(fwd.address, 1)
        times = sorted(_roundtrip(s) for _ in range(5))
        s.close()
        check("1-byte request/answer (median of 5)", times[2], rtt, 0.005, 0.2)

        size = 10 * MB
        check("10 MB up, 1 connection", _uploads(echo, fwd.address, [size], 10),
              size / bw + rtt / 2, 0.010, 0.10)
        check("2 x 5 MB up at once, 2 connections (shared cap)",
              _uploads(echo, fwd.address, [size // 2] * 2, 20), size / bw + rtt / 2, 0.010, 0.10)
        check("5 MB up, 1 connection", _uploads(echo, fwd.address, [size // 2], 30),
              size / 2 / bw + rtt / 2, 0.010, 0.10)
        c = link.counters()
        print(f"     counters: {c}")
        if c["connections"] != 5 or c["up_bytes"] != c["down_bytes"] or c["up_bytes"] < 2 * size:
            failures.append("counters")
            print("FAIL counters")
    finally:
        link.close()

    with Link(0, None) as base:
        fwd = base.forward(("127.0.0.1", 0), echo.address)
        s = _client(fwd.address, 2)
        times = sorted(_roundtrip(s) for _ in range(21))
        s.close()
        ok = times[10] < 0.005
        print(f"{'ok  ' if ok else 'FAIL'} rtt 0, unlimited: 1-byte request/answer "
              f"{times[10] * 1000:.2f} ms (median of 21, expected < 5 ms)")
        if not ok:
            failures.append("rtt 0 round trip")
        t = _uploads(echo, fwd.address, [50 * MB], 40)
        print(f"ok   rtt 0, unlimited: 50 MB up and echoed back intact, "
              f"{50 * MB / t / MB:.0f} MB/s")

    with Link(rtt, bw, handshake=True) as hs:
        fwd = hs.forward(("127.0.0.1", 0), echo.address)
        start = time.monotonic()
        s = _client(fwd.address, 3)   # connect, then the first answer
        check("handshake=True: connect + first answer", time.monotonic() - start,
              2 * rtt, 0.005, 0.2)
        s.close()

    echo.close()
    time.sleep(0.05)
    leaked = threading.active_count() - threads_before
    print(f"{'ok  ' if leaked <= 0 else 'FAIL'} threads left after close(): {max(leaked, 0)}")
    if leaked > 0:
        failures.append("threads")
    if failures:
        print(f"self-test FAILED: {', '.join(failures)}")
        return 1
    print("self-test passed")
    return 0


def parse_addr(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", type=parse_addr, action="append", default=[],
                   help="address to listen on, HOST:PORT in 127.0.0.0/8 (repeatable)")
    p.add_argument("--to", type=parse_addr, action="append", default=[],
                   help="upstream of the --listen of the same rank, HOST:PORT in 127.0.0.0/8")
    p.add_argument("--rtt", type=float, default=40, help="round-trip time in ms (default 40)")
    p.add_argument("--bandwidth", type=float, default=200,
                   help="Mbit/s per direction, shared by all connections; 0: unlimited "
                        "(default 200)")
    p.add_argument("--handshake", action="store_true",
                   help="charge one RTT before a connection's first byte leaves (TCP handshake)")
    p.add_argument("--self-test", action="store_true", help="check the model on loopback")
    args = p.parse_args()
    if args.self_test:
        sys.exit(self_test())
    if not args.listen or len(args.listen) != len(args.to):
        p.error("give one --to per --listen")
    link = Link(args.rtt / 1000, args.bandwidth * MB / 8, handshake=args.handshake)

    def on_signal(signum, frame):
        raise KeyboardInterrupt
    # kill and a closed terminal stop it as Ctrl-C does: connections reset, counters printed.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        for listen, to in zip(args.listen, args.to):
            f = link.forward(listen, to)
            print(f"{f.address[0]}:{f.address[1]} -> {to[0]}:{to[1]}", flush=True)
        print(f"rtt {args.rtt:g} ms, "
              + (f"{args.bandwidth:g} Mbit/s" if args.bandwidth else "unlimited bandwidth")
              + " per direction; Ctrl-C stops", flush=True)
        while True:
            time.sleep(3600)
    except (ValueError, OSError) as e:
        sys.exit(f"link.py: {e}")
    except KeyboardInterrupt:
        pass
    finally:
        link.close()
        print(f"link.py: {link.counters()}", file=sys.stderr)


if __name__ == "__main__":
    main()
