//! Running a credential helper (docker's `docker-credential-*`, or a Bazel credential helper)
//! as an untrusted program: bounded in time and in output, stopped on either bound, and its
//! stdout, which may hold a secret, never shown in a message.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Kind, Result};
use crate::units::{human_duration, human_size};

/// How long one helper may take. Bazel gives its helpers 10 s by default; a helper that asks
/// a cloud's metadata service or refreshes an SSO token can take a few seconds more.
pub const HELPER_TIME_LIMIT: Duration = Duration::from_secs(30);
/// A helper's answer is a small JSON object; this is far more than any real one.
pub const MAX_HELPER_OUTPUT: u64 = 1 << 20;
/// How long the output of a helper that exited may take to end (see `run`).
const EXIT_GRACE: Duration = Duration::from_millis(500);
/// How much of a failed helper's stderr a message shows.
const SHOWN_STDERR_CHARS: usize = 200;

/// What a helper did.
pub enum Outcome {
    /// It exited with success; its stdout.
    Answered(Vec<u8>),
    /// It exited with failure; whether it said "credentials not found" (on either stream, as
    /// docker's helpers do), and the start of its stderr, cut to one short line.
    Failed {
        not_found: bool,
        status: String,
        stderr: String,
    },
}

/// Runs `program get` with `input` on stdin, until it exits, `deadline` passes (or
/// [`HELPER_TIME_LIMIT`], whichever is sooner), or it prints more than [`MAX_HELPER_OUTPUT`]
/// on a stream; on either limit it is killed. `source` names it in errors.
pub fn run(
    program: &std::ffi::OsStr,
    input: &[u8],
    source: &str,
    deadline: Instant,
) -> Result<Outcome> {
    let fail = |kind: Kind, why: String| Error::new(kind, format!("{source}: {why}"));
    let own_limit = Instant::now() + HELPER_TIME_LIMIT;
    let (deadline, limit_name) = match deadline < own_limit {
        true => (deadline, "within --timeout".to_string()),
        false => (
            own_limit,
            format!("within {}", human_duration(HELPER_TIME_LIMIT)),
        ),
    };
    stop_helpers_on_signals();
    let mut child = Command::new(program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            fail(
                Kind::Auth,
                format!("cannot run it ({e}); is it installed and on PATH?"),
            )
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A few hundred bytes fit in any pipe; a helper that exits without reading its input
        // is judged by its exit status.
        let _ = stdin.write_all(input);
    }
    // The streams arrive in chunks over a bounded channel, so that a helper printing without
    // end is stopped at the limit and never buffered past it.
    let (sender, chunks) = mpsc::sync_channel::<(usize, Option<Vec<u8>>)>(16);
    let streams: [Option<Box<dyn Read + Send>>; 2] = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ];
    let mut done = [false; 2];
    for (index, stream) in streams.into_iter().enumerate() {
        let Some(mut stream) = stream else {
            done[index] = true;
            continue;
        };
        let sender = sender.clone();
        // Not joined: a helper's own child may hold the pipe open after the helper is gone.
        std::thread::spawn(move || {
            let mut buffer = vec![0; 8192];
            loop {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if sender.send((index, Some(buffer[..n].to_vec()))).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = sender.send((index, None));
        });
    }
    drop(sender);
    let child = Running::register(child);
    let mut output = [Vec::new(), Vec::new()];
    let mut exited: Option<(std::process::ExitStatus, Instant)> = None;
    while done != [true, true] {
        // A helper that exited may have left a child of its own holding its output open:
        // what it printed is all there, so wait no longer than a moment for the end.
        if exited.is_some_and(|(_, at)| at.elapsed() > EXIT_GRACE) {
            break;
        }
        if Instant::now() >= deadline {
            child.stop();
            return Err(timed_out(source, &limit_name));
        }
        match chunks.recv_timeout(Duration::from_millis(10)) {
            Ok((index, Some(bytes))) => {
                output[index].extend_from_slice(&bytes);
                if output[index].len() as u64 > MAX_HELPER_OUTPUT {
                    child.stop();
                    let name = ["stdout", "stderr"][index];
                    return Err(fail(
                        Kind::Auth,
                        format!(
                            "it printed more than {} on {name}, far more than an answer; it was stopped",
                            human_size(MAX_HELPER_OUTPUT)
                        ),
                    ));
                }
            }
            Ok((index, None)) => done[index] = true,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if exited.is_none() {
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some((status, Instant::now()));
            }
        }
    }
    let [stdout, stderr] = output;
    let status = match exited {
        Some((status, _)) => status,
        None => loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) => {
                    child.stop();
                    return Err(timed_out(source, &limit_name));
                }
                Err(e) => return Err(fail(Kind::Auth, format!("cannot run it: {e}"))),
            }
        },
    };
    if status.success() {
        return Ok(Outcome::Answered(stdout));
    }
    let said = |bytes: &[u8]| String::from_utf8_lossy(bytes).to_lowercase();
    let not_found = [&stdout, &stderr]
        .iter()
        .any(|b| said(b).contains("credentials not found"));
    let stderr = String::from_utf8_lossy(&stderr);
    let first = stderr.trim().lines().next().unwrap_or("");
    let mut shown: String = first.chars().take(SHOWN_STDERR_CHARS).collect();
    if shown.len() < first.len() {
        shown.push('…');
    }
    Ok(Outcome::Failed {
        not_found,
        status: status.to_string(),
        stderr: shown,
    })
}

fn timed_out(source: &str, limit: &str) -> Error {
    Error::new(
        Kind::Timeout,
        format!(
            "{source}: it gave no answer {limit} and was stopped; is it waiting for a prompt, \
             a login or the network?"
        ),
    )
}

/// The helpers running now, to stop when the pusher is told to stop.
static RUNNING: Mutex<Vec<Arc<Mutex<Child>>>> = Mutex::new(Vec::new());

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running helper, known to the signal handler until it is done.
struct Running(Arc<Mutex<Child>>);

impl Running {
    fn register(child: Child) -> Running {
        let child = Arc::new(Mutex::new(child));
        lock(&RUNNING).push(child.clone());
        Running(child)
    }

    fn try_wait(&self) -> std::io::Result<Option<std::process::ExitStatus>> {
        lock(&self.0).try_wait()
    }

    /// Kills and reaps a helper past a limit.
    fn stop(&self) {
        let mut child = lock(&self.0);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        lock(&RUNNING).retain(|c| !Arc::ptr_eq(c, &self.0));
    }
}

/// Once a helper runs: SIGINT, SIGTERM or SIGHUP to the pusher alone (a CI runner stopping a
/// job, `kill PID`) stops the helpers still running before the pusher exits as the signal
/// would have it (128 + its number). Without this, a hanging helper outlived the pusher.
#[cfg(unix)]
fn stop_helpers_on_signals() {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            return;
        };
        std::thread::spawn(move || {
            if let Some(signal) = signals.forever().next() {
                for child in lock(&RUNNING).drain(..) {
                    let mut child = lock(&child);
                    let _ = child.kill();
                    let _ = child.wait();
                }
                std::process::exit(128 + signal);
            }
        });
    });
}

#[cfg(not(unix))]
fn stop_helpers_on_signals() {}
