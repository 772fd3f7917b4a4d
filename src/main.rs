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
use oci_push::{auth, push, reference, registry, report};

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
    }
}

fn verify(plan: Plan) -> Result<()> {
    let layout = Layout::open(&plan.layout)?;
    layout.verify_blobs()?;
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
    let line = match &plan.repository {
        Some(repository) => format!("{repository}@{digest}"),
        None => digest.clone(),
    };
    // With a digest file (as in the Bazel build-time check) success is silent: build logs
    // show only what failed.
    if let Some(path) = &plan.digest_file {
        return write_digest_file(path, &line);
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
    print(&line)
}

fn push(plan: Plan) -> Result<()> {
    let Some(repository) = &plan.repository else {
        return Err(Error::usage(
            "--repository REPO is required; see oci-push --help",
        ));
    };
    let mut layout = Layout::open(&plan.layout)?;
    if let Some(local) = &plan.local_layout {
        layout.take_local(local);
    }
    // Only a push that may fetch from the cache asks a helper or netrc for its credentials.
    let needed = layout.in_cache().next().is_some() && !plan.dry_run;
    let cache = match (&plan.cache.url, needed) {
        (Some(url), true) => Some(std::sync::Arc::new(RemoteCache::new(
            url,
            &plan.cache,
            plan.auth.credential_helper.as_deref(),
            &plan.connection,
        )?)),
        _ => None,
    };
    if let (Some(blob), None, false) = (layout.in_cache().next(), &cache, plan.dry_run) {
        return Err(Error::usage(format!(
            "{} is a thin layout: {} blob(s), {} first, are left to the remote cache; give \
             --remote-cache URL (the build setting @rules_oci_push//settings:remote_cache sets it for bazel run)",
            plan.layout.display(),
            layout.in_cache().count(),
            blob.digest
        )));
    }
    if plan.connection.insecure {
        eprintln!(
            "warning: --insecure: the TLS certificate of {} is not verified (other hosts' still are)",
            repository.registry()
        );
    }
    let reporter = report::Reporter::new(plan.style(), &repository.to_string(), &layout);
    // The digest file is part of the outcome: written before the summary and the JSON, so
    // that they report its failure too. A dry run pushed nothing and writes none.
    let result =
        connect_and_push(&plan, repository, &layout, cache, &reporter).and_then(|digest| {
            let line = format!("{repository}@{digest}");
            if let (Some(path), false) = (&plan.digest_file, plan.dry_run) {
                write_digest_file(path, &line)?;
            }
            Ok(line)
        });
    reporter.finish(result.is_ok());
    if plan.json {
        if result.is_err() {
            reporter.not_attempted(&plan.tags);
        }
        let error = result.as_ref().err();
        let json = reporter.json(error.map(|e| (e.message(), e.kind().exit_code())));
        print(&json.to_string())?;
    }
    let line = result?;
    match plan.json {
        true => Ok(()),
        false => print(&line),
    }
}

fn connect_and_push(
    plan: &Plan,
    repository: &reference::Repository,
    layout: &Layout,
    cache: Option<std::sync::Arc<RemoteCache>>,
    reporter: &report::Reporter,
) -> Result<String> {
    let credential = auth::find(repository, &plan.auth, plan.connection.deadline())?;
    let options = push::Options {
        jobs: plan.jobs,
        mount_from: mount_sources(repository, &plan.mount_from, &layout.base_names),
        chunk_size: plan.chunk_size,
        dry_run: plan.dry_run,
        cache,
    };
    // Every scope the run needs, asked for before the first request: one token serves all.
    let mut scopes = vec![format!("repository:{}:pull,push", repository.path())];
    scopes.extend(
        options
            .mount_from
            .iter()
            .map(|from| format!("repository:{from}:pull")),
    );
    let client = registry::Client::connect(repository, &plan.connection, credential, &scopes)?;
    push::push(&client, repository, layout, &plan.tags, &options, reporter)
}

/// The repository paths to mount blobs from: `--mount-from` first, then the layout's base image
/// names; only those on the registry we push to (a mount cannot cross registries), each once.
fn mount_sources(
    target: &reference::Repository,
    flags: &[reference::Repository],
    base_names: &[String],
) -> Vec<String> {
    let hinted = base_names.iter().filter_map(|name| {
        reference::Repository::parse(reference::strip_tag_and_digest(name)).ok()
    });
    let mut sources: Vec<String> = Vec::new();
    for repo in flags.iter().cloned().chain(hinted) {
        let path = repo.path().to_string();
        if repo.registry() == target.registry() && path != target.path() && !sources.contains(&path)
        {
            sources.push(path);
        }
    }
    sources
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
