//! `oci-push`: push an OCI image layout to a registry, by digest, then its tags.
//!
//! `main` parses the command line, runs it, and is the only place an error is printed.

#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use oci_push::cache::RemoteCache;
use oci_push::cli::{self, Command, Plan};
use oci_push::error::{Error, Result};
use oci_push::layout::Layout;
use oci_push::{destinations, referrer, report};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oci-push: error: {e}");
            ExitCode::from(e.kind().exit_code())
        }
    }
}

fn run() -> Result<()> {
    let command = cli::parse(std::env::args_os().skip(1))?;
    if let Command::Push(plan) = &command {
        report::install_logger(plan.connection.verbose);
    }
    match command {
        Command::Help => print(cli::HELP.trim_end()),
        Command::Version => print(&format!(
            "oci-push {} (commit {})",
            env!("CARGO_PKG_VERSION"),
            env!("OCI_PUSH_GIT_COMMIT")
        )),
        Command::Verify(plan) => verify(plan),
        Command::Push(plan) => push(plan),
        Command::WriteArtifact(spec) => write_artifact(&spec),
    }
}

fn verify(plan: Plan) -> Result<()> {
    let layout = Layout::open(&plan.layout)?;
    layout.verify_blobs()?;
    for referrer in referrer::open_all(&plan.referrers, &layout)? {
        referrer
            .layout
            .verify_blobs()
            .map_err(|e| e.context(format!("referrer {}", referrer.dir.display())))?;
    }
    if let Some(out) = &plan.write_thin_layout {
        if let Some(blob) = layout.in_cache().next() {
            return Err(Error::invalid(format!(
                "--write-thin-layout: {} is a thin layout already (blob {} is left to the remote cache); give the full layout",
                plan.layout.display(),
                blob.digest
            )));
        }
        layout.write_thin(&plan.layout, out)?;
    }
    let digest = &layout.top().digest;
    let references: Vec<String> = match plan.repositories.as_slice() {
        [] => vec![digest.clone()],
        repositories => repositories
            .iter()
            .map(|repository| format!("{repository}@{digest}"))
            .collect(),
    };
    // With a digest file (as in the Bazel build-time check) success is silent: build logs
    // show only what failed. As a push writes it: a line per destination.
    if let Some(path) = &plan.digest_file {
        return write_digest_file(path, &references.join("\n"));
    }
    let left = layout.in_cache().count();
    eprintln!(
        "verified {} blob(s) and {} manifest(s) in {}{}",
        layout.blobs.len() - left,
        layout.manifests.len(),
        plan.layout.display(),
        match left {
            0 => String::new(),
            n => format!(" ({n} left to the remote cache)"),
        }
    );
    print(&references.join(" "))
}

fn push(plan: Plan) -> Result<()> {
    let mut layout = Layout::open(&plan.layout)?;
    if let Some(local) = &plan.local_layout {
        layout.take_local(local);
    }
    let referrers = referrer::open_all(&plan.referrers, &layout)?;
    // Only a push that may fetch from the cache asks a helper or netrc for its credentials.
    let fetching = layout.in_cache().next().filter(|_| !plan.dry_run);
    let cache = match (&plan.cache.url, fetching) {
        (Some(url), Some(_)) => Some(std::sync::Arc::new(RemoteCache::new(
            url,
            &plan.cache,
            plan.auth.credential_helper.as_deref(),
            &plan.connection,
        )?)),
        (None, Some(blob)) => {
            return Err(Error::usage(format!(
                "{} is a thin layout: {} blob(s), {} first, are left to the remote cache; give \
                 --remote-cache URL (the build setting @rules_oci_push//settings:remote_cache sets it for bazel run)",
                plan.layout.display(),
                layout.in_cache().count(),
                blob.digest
            )))
        }
        (_, None) => None,
    };
    if plan.connection.insecure {
        for registry in cli::registries(&plan.repositories) {
            eprintln!(
                "warning: --insecure: the TLS certificate of {registry} is not verified (other hosts' still are)"
            );
        }
    }
    let content = destinations::Content {
        layout: &layout,
        referrers: &referrers,
        cache,
    };
    let outcomes = destinations::push_all(&plan, &content);
    let lines: Vec<&str> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref()?.as_ref().ok())
        .map(String::as_str)
        .collect();
    let mut failure = outcomes
        .iter()
        .find_map(|o| o.result.as_ref()?.as_ref().err())
        .cloned();
    // A dry run pushed nothing and writes no digest file.
    if let (Some(path), None, false) = (&plan.digest_file, &failure, plan.dry_run) {
        failure = write_digest_file(path, &lines.join("\n")).err();
    }
    if outcomes.len() > 1 && (!plan.quiet || failure.is_some()) {
        eprintln!("{}", report::destinations_line(&outcomes, plan.dry_run));
    }
    if plan.json {
        let error = failure
            .as_ref()
            .map(|e| (e.message(), e.kind().exit_code()));
        let json = report::json(&outcomes, &layout.top().digest, &plan.tags, error);
        print(&json.to_string())?;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    match plan.json {
        true => Ok(()),
        false => print(&lines.join(" ")),
    }
}

/// `--write-artifact`: prints the referrer's manifest digest.
fn write_artifact(spec: &oci_push::artifact::Spec) -> Result<()> {
    print(&oci_push::artifact::write(spec)?)
}

fn write_digest_file(path: &std::path::Path, line: &str) -> Result<()> {
    std::fs::write(path, format!("{line}\n"))
        .map_err(|e| Error::usage(format!("cannot write digest file {}: {e}", path.display())))
}

fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        // A closed pipe (`oci-push ... | head -0`) is the reader's choice, not our failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::usage(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}
