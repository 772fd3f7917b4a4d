//! Running a credential helper (docker's `docker-credential-*`, or a Bazel credential helper)
//! as an untrusted program: bounded in time and in output, stopped on either bound, and its
//! stdout, which may hold a secret, never shown in a message.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{Error, Kind, Result};
use crate::files::read_at_most;
use crate::units::{human_duration, human_size};

/// How long one helper may take. Bazel gives its helpers 10 s by default; a helper that asks
/// a cloud's metadata service or refreshes an SSO token can take a few seconds more.
pub const HELPER_TIME_LIMIT: Duration = Duration::from_secs(30);
/// A helper's answer is a small JSON object; this is far more than any real one.
pub const MAX_HELPER_OUTPUT: u64 = 1 << 20;
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
    let (sender, streams) = mpsc::channel();
    for (name, stream) in [
        (
            "stdout",
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ),
        (
            "stderr",
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ),
    ] {
        let Some(stream) = stream else { continue };
        let sender = sender.clone();
        // Not joined: a helper's own child may hold the pipe open after the helper is killed.
        std::thread::spawn(move || {
            let _ = sender.send((name, read_at_most(stream, MAX_HELPER_OUTPUT)));
        });
    }
    drop(sender);
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match streams.recv_timeout(left) {
            Ok((name, Ok(bytes))) => match name {
                "stdout" => stdout = bytes,
                _ => stderr = bytes,
            },
            Ok((name, Err(e))) if e.kind() == std::io::ErrorKind::InvalidData => {
                stop(&mut child);
                return Err(fail(
                    Kind::Auth,
                    format!(
                        "it printed more than {} on {name}, far more than an answer; it was stopped",
                        human_size(MAX_HELPER_OUTPUT)
                    ),
                ));
            }
            Ok((_, Err(_))) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                stop(&mut child);
                return Err(timed_out(source, &limit_name));
            }
        }
    }
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                stop(&mut child);
                return Err(timed_out(source, &limit_name));
            }
            Err(e) => return Err(fail(Kind::Auth, format!("cannot run it: {e}"))),
        }
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

/// Kills and reaps a helper past a limit.
fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}
