/*!
One image, several destinations (`-r A -r B`, the rule's `repositories`): each in turn gets the
blobs, the manifests by digest, then its tags, and the first that fails ends the run; the rest
are not attempted, so a mirror is never ahead of the destination before it.

Destinations on one registry with the same credentials share one client, whose token covers
all their scopes: one token exchange per registry. A later one mounts the blobs from the
first, so a blob crosses the wire once per registry (and is fetched from a remote cache once
per registry).
*/

use std::sync::Arc;

use crate::auth::{self, Secret};
use crate::cache::RemoteCache;
use crate::cli::Plan;
use crate::error::Result;
use crate::layout::Layout;
use crate::push;
use crate::reference::{self, Repository};
use crate::referrer::Referrer;
use crate::registry::Client;
use crate::report::Reporter;

/// What became of one destination.
pub struct Outcome {
    pub repository: Repository,
    /// `REPO@DIGEST`, or the failure; None when an earlier destination failed.
    pub result: Option<Result<String>>,
    /// Its report, when it was attempted.
    pub reporter: Option<Reporter>,
}

/// What goes to every destination.
pub struct Content<'a> {
    pub layout: &'a Layout,
    /// Pushed after the image, before its tags.
    pub referrers: &'a [Referrer],
    /// Where the blobs a thin layout leaves out come from.
    pub cache: Option<Arc<RemoteCache>>,
}

/// Pushes to every destination of `plan` in order, up to the first failure.
pub fn push_all(plan: &Plan, content: &Content) -> Vec<Outcome> {
    let layout = content.layout;
    // Every destination's credentials and client first (no request goes out): a helper that
    // fails, or a bad certs.d file, for the last registry ends the run before the first
    // destination is touched, rather than after it was pushed and tagged.
    let mut clients: Vec<Shared> = Vec::new();
    let mut chosen: Vec<usize> = Vec::new();
    for (i, repository) in plan.repositories.iter().enumerate() {
        match client_for(plan, repository, layout, &mut clients) {
            Ok(at) => chosen.push(at),
            Err(e) => return failed_before_any(plan, layout, i, e),
        }
    }
    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut failed = false;
    for (i, repository) in plan.repositories.iter().enumerate() {
        if failed {
            outcomes.push(not_attempted(repository));
            continue;
        }
        let reporter = Reporter::new(plan.style(), &repository.to_string(), layout);
        let client = &clients[chosen[i]].client;
        let earlier = &plan.repositories[..i];
        let result = push_one(plan, repository, earlier, content, &reporter, client)
            .map(|digest| format!("{repository}@{digest}"));
        reporter.finish(result.is_ok());
        failed = result.is_err();
        outcomes.push(Outcome {
            repository: repository.clone(),
            result: Some(result),
            reporter: Some(reporter),
        });
    }
    outcomes
}

fn not_attempted(repository: &Repository) -> Outcome {
    Outcome {
        repository: repository.clone(),
        result: None,
        reporter: None,
    }
}

/// The outcomes when destination `at` could not be set up: it failed, none was attempted.
fn failed_before_any(
    plan: &Plan,
    layout: &Layout,
    at: usize,
    error: crate::error::Error,
) -> Vec<Outcome> {
    let mut outcomes: Vec<Outcome> = plan.repositories.iter().map(not_attempted).collect();
    let reporter = Reporter::new(plan.style(), &plan.repositories[at].to_string(), layout);
    reporter.finish(false);
    outcomes[at].result = Some(Err(error));
    outcomes[at].reporter = Some(reporter);
    outcomes
}

/// A client, and the registry and secret it was made for: another destination there with the
/// same credentials takes it (a namespace's own `auths` entry, as Podman's, gets its own).
struct Shared {
    registry: String,
    secret: Secret,
    client: Client,
}

/// The index in `clients` of the one for `repository`, made when none fits.
fn client_for(
    plan: &Plan,
    repository: &Repository,
    layout: &Layout,
    clients: &mut Vec<Shared>,
) -> Result<usize> {
    let credential = auth::find(repository, &plan.auth, plan.connection.deadline())?;
    let shared = clients
        .iter()
        .position(|c| c.registry == repository.registry() && c.secret == credential.secret);
    if let Some(at) = shared {
        return Ok(at);
    }
    let secret = credential.secret.clone();
    clients.push(Shared {
        registry: repository.registry().to_string(),
        secret,
        client: connect(plan, repository, layout, credential)?,
    });
    Ok(clients.len() - 1)
}

fn push_one(
    plan: &Plan,
    repository: &Repository,
    earlier: &[Repository],
    content: &Content,
    reporter: &Reporter,
    client: &Client,
) -> Result<String> {
    let layout = content.layout;
    // The first destination on this registry has every blob by now: mounts from it first.
    let first = earlier
        .iter()
        .find(|r| r.registry() == repository.registry())
        .map(|r| r.path().to_string());
    let mut mount_from: Vec<String> = first.iter().cloned().collect();
    for from in mount_sources(repository, &plan.mount_from, &layout.base_names) {
        if !mount_from.contains(&from) {
            mount_from.push(from);
        }
    }
    let options = push::Options {
        jobs: plan.jobs,
        mount_from,
        chunk_size: plan.chunk_size,
        dry_run: plan.dry_run,
        dry_run_after_first: plan.dry_run && first.is_some(),
        cache: content.cache.clone(),
    };
    push::push(
        client,
        repository,
        layout,
        content.referrers,
        &plan.tags,
        &options,
        reporter,
    )
}

/// The client of `repository`'s registry, with `credential` and a token scope for every
/// destination there and what each mounts from: one token serves them all.
fn connect(
    plan: &Plan,
    repository: &Repository,
    layout: &Layout,
    credential: auth::Credential,
) -> Result<Client> {
    let mut scopes: Vec<String> = Vec::new();
    let mut add = |scope: String| {
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    };
    for destination in plan
        .repositories
        .iter()
        .filter(|r| r.registry() == repository.registry())
    {
        add(format!("repository:{}:pull,push", destination.path()));
        for from in mount_sources(destination, &plan.mount_from, &layout.base_names) {
            add(format!("repository:{from}:pull"));
        }
    }
    Client::connect(repository, &plan.connection, credential, &scopes)
}

/// The repository paths to mount blobs from: `--mount-from` first, then the layout's base image
/// names; only those on the registry we push to (a mount cannot cross registries), each once.
fn mount_sources(target: &Repository, flags: &[Repository], base_names: &[String]) -> Vec<String> {
    let hinted = base_names
        .iter()
        .filter_map(|name| Repository::parse(reference::strip_tag_and_digest(name)).ok());
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
