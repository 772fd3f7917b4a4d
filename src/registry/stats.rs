//! What a push cost on the wire: requests sent, connections opened, and the round trips on
//! its critical path, for `--format json` and the benchmark. Far from the registry, wall time
//! is round trips times the RTT plus bytes over the bandwidth, so these are the numbers to
//! keep small.
//!
//! The critical path is counted per thread: every request, TCP connect and TLS handshake is
//! one round trip the thread waited for. A thread of the upload pool starts from the depth of
//! what it had to wait for (see `push::schedule`), so the deepest thread's count is the
//! longest chain of round trips that waited on each other.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

static REQUESTS: AtomicU64 = AtomicU64::new(0);
static CONNECTIONS: AtomicU64 = AtomicU64::new(0);
static DEEPEST: AtomicU32 = AtomicU32::new(0);

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// The totals so far in this process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    pub connections: u64,
    pub round_trips: u32,
}

pub fn totals() -> Totals {
    Totals {
        requests: REQUESTS.load(Ordering::Relaxed),
        connections: CONNECTIONS.load(Ordering::Relaxed),
        round_trips: DEEPEST.load(Ordering::Relaxed),
    }
}

/// One round trip this thread waited for.
pub fn round_trip() {
    let depth = DEPTH.get().saturating_add(1);
    DEPTH.set(depth);
    DEEPEST.fetch_max(depth, Ordering::Relaxed);
}

/// A request went out and its answer came back.
pub fn request() {
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    round_trip();
}

/// A new connection (its TCP handshake; TLS counts its own round trip).
pub fn connection() {
    CONNECTIONS.fetch_add(1, Ordering::Relaxed);
    round_trip();
}

/// How many round trips this thread has waited for so far.
pub fn depth() -> u32 {
    DEPTH.get()
}

/// This thread goes on after something that was `depth` round trips deep (another thread's
/// work it waited for).
pub fn after(depth: u32) {
    if depth > DEPTH.get() {
        DEPTH.set(depth);
    }
}
