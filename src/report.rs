/*!
What people and scripts see: progress while the push runs, a summary at the end, and the result
as JSON for `--format json`.

Progress goes to stderr in one of three styles: live bars on a terminal (cleared when done),
plain lines elsewhere (a CI log reads top to bottom, without carriage returns), or nothing with
`--quiet`. Every event is also recorded, for the summary and the JSON.
*/

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::destinations::Outcome;
use crate::layout::{BlobKind, Layout, Source, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX};
use crate::push::{BlobOutcome, Event, Observer, ReferrerIndex, ReferrerOutcome, TagOutcome};
use crate::units::{human_duration, human_size};

/// The live bars, while there are any: other lines go above them, not through them. Each
/// destination's reporter has its own, which replace the last one's.
static LIVE_BARS: Mutex<Option<MultiProgress>> = Mutex::new(None);

fn live_bars() -> Option<MultiProgress> {
    LIVE_BARS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// One line of diagnostics on stderr (a retry, a `--verbose` request): printed above the live
/// bars on a terminal, so that neither garbles the other.
fn log(text: &str) {
    match live_bars() {
        Some(multi) => multi.suspend(|| eprintln!("{text}")),
        None => eprintln!("{text}"),
    }
}

/// Prints the transport's diagnostics (the `log` facade) as [`log`] lines: warnings (`retry:`)
/// always, debug lines (every request) with `--verbose`. Only this program's own records are
/// printed: a library's debug output could show headers, credentials included.
struct Diagnostics;

impl log::Log for Diagnostics {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.target().starts_with("oci_push") && metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            log(&record.args().to_string());
        }
    }

    fn flush(&self) {}
}

/// Installs the logger for the transport's diagnostics; `verbose` adds a line per request.
pub fn install_logger(verbose: bool) {
    static DIAGNOSTICS: Diagnostics = Diagnostics;
    // Only the first call installs it; a second (tests in one process) keeps the first.
    let _ = log::set_logger(&DIAGNOSTICS);
    log::set_max_level(match verbose {
        true => log::LevelFilter::Debug,
        false => log::LevelFilter::Warn,
    });
}

/// How progress is shown on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Quiet,
    Lines,
    Bars,
}

/// The image being pushed, as reports describe it.
struct Image {
    repository: String,
    digest: String,
    media_type: String,
    platforms: Vec<String>,
    layers: usize,
    bytes: u64,
    blobs: usize,
    manifests: usize,
}

#[derive(Default)]
struct Record {
    dry_run: bool,
    image_exists: bool,
    blobs: Vec<BlobRecord>,
    /// When each blob's upload started, for its time.
    started: HashMap<String, Instant>,
    tags: Vec<TagRecord>,
    referrers: Vec<ReferrerRecord>,
}

struct ReferrerRecord {
    digest: String,
    artifact_type: String,
    subject: String,
    outcome: ReferrerOutcome,
    index: ReferrerIndex,
}

struct BlobRecord {
    digest: String,
    size: u64,
    kind: BlobKind,
    /// Its bytes were (or would be) fetched from the remote cache.
    cached: bool,
    outcome: BlobOutcome,
    seconds: Option<f64>,
}

struct TagRecord {
    tag: String,
    /// `applied`, `unchanged` or `failed`.
    outcome: &'static str,
    previous: Option<String>,
}

/// Receives the push's events; shows and records them.
pub struct Reporter {
    style: Style,
    image: Image,
    record: Mutex<Record>,
    bars: Option<Bars>,
    started: Instant,
    /// When [`Reporter::finish`] was called: the JSON's time, after later destinations too.
    finished: OnceLock<Instant>,
}

impl Reporter {
    pub fn new(style: Style, repository: &str, layout: &Layout) -> Reporter {
        let top = layout.top();
        let image = Image {
            repository: repository.to_string(),
            digest: top.digest.clone(),
            media_type: top.media_type.clone(),
            platforms: layout.platforms.clone(),
            layers: layout
                .blobs
                .iter()
                .filter(|b| b.kind == BlobKind::Layer)
                .count(),
            bytes: layout.blobs.iter().map(|b| b.size).sum(),
            blobs: layout.blobs.len(),
            manifests: layout.manifests.len(),
        };
        let bars = (style == Style::Bars).then(|| Bars::new(image.bytes));
        Reporter {
            style,
            image,
            record: Mutex::new(Record::default()),
            bars,
            started: Instant::now(),
            finished: OnceLock::new(),
        }
    }

    fn record(&self) -> std::sync::MutexGuard<'_, Record> {
        // A panic elsewhere while holding the lock leaves plain data: keep reporting.
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One line of progress (none when quiet), above the bars on a terminal.
    fn line(&self, text: String) {
        if self.style != Style::Quiet {
            log(&text);
        }
    }

    /// Clears the bars and prints the summary (unless quiet, or the run failed).
    pub fn finish(&self, succeeded: bool) {
        let _ = self.finished.set(Instant::now());
        if let Some(bars) = &self.bars {
            bars.multi.clear().ok();
            *LIVE_BARS.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        if self.style == Style::Quiet || !succeeded {
            return;
        }
        for line in self.summary() {
            eprintln!("{line}");
        }
    }

    fn summary(&self) -> Vec<String> {
        let record = self.record();
        let image = &self.image;
        // Past tense for what was done, conditional for what a dry run would do.
        let words = if record.dry_run {
            ["dry run for", "would send", "would mount", "would apply"]
        } else {
            ["pushed", "sent", "mounted", "applied"]
        };
        let [verb, send, mount, apply] = words;
        let mut lines = vec![format!("{verb} {}@{}", image.repository, image.digest)];
        let mut what = vec![describe_media_type(&image.media_type).to_string()];
        match image.platforms.as_slice() {
            [] => {}
            [one] => what.push(one.clone()),
            many => what.push(format!("{} platforms ({})", many.len(), many.join(", "))),
        }
        what.push(format!("{} layer(s)", image.layers));
        what.push(human_size(image.bytes));
        lines.push(format!("  image:  {}", what.join(", ")));
        let totals = Totals::of(&record, image.bytes);
        lines.push(if record.image_exists {
            format!(
                "  blobs:  none {}: the registry has the image ({})",
                if record.dry_run { "to send" } else { "sent" },
                human_size(image.bytes)
            )
        } else {
            format!(
                "  blobs:  {send} {} ({}), {mount} {} ({}), already there {} ({})",
                human_size(totals.sent),
                totals.sent_count,
                human_size(totals.mounted),
                totals.mounted_count,
                human_size(totals.skipped),
                totals.skipped_count,
            )
        });
        let applied: Vec<&str> = record
            .tags
            .iter()
            .filter(|t| t.outcome == "applied")
            .map(|t| t.tag.as_str())
            .collect();
        let unchanged: Vec<&str> = record
            .tags
            .iter()
            .filter(|t| t.outcome == "unchanged")
            .map(|t| t.tag.as_str())
            .collect();
        let mut tags = Vec::new();
        if !applied.is_empty() {
            tags.push(format!("{apply} {}", applied.join(", ")));
        }
        if !unchanged.is_empty() {
            tags.push(format!("unchanged {}", unchanged.join(", ")));
        }
        if tags.is_empty() {
            tags.push("none (pushed by digest only)".to_string());
        }
        if totals.fetched_count > 0 {
            lines.push(format!(
                "  cache:  {} {} ({}) from the remote cache",
                if record.dry_run {
                    "would fetch"
                } else {
                    "fetched"
                },
                human_size(totals.fetched),
                totals.fetched_count
            ));
        }
        if !record.referrers.is_empty() {
            lines.push(format!(
                "  refs:   {}",
                referrers_summary(&record.referrers)
            ));
        }
        lines.push(format!("  tags:   {}", tags.join("; ")));
        lines.push(format!("  time:   {}", human_duration(self.took())));
        lines
    }

    /// How long this destination took: until [`Reporter::finish`], or so far.
    fn took(&self) -> Duration {
        let end = self.finished.get().copied().unwrap_or_else(Instant::now);
        end.duration_since(self.started)
    }

    /// The result for `--format json`; `error` is the message and exit code of a failed run.
    pub fn json(&self, error: Option<(&str, u8)>) -> serde_json::Value {
        let record = self.record();
        let image = &self.image;
        let totals = Totals::of(&record, image.bytes);
        let wire = crate::registry::stats::totals();
        let blobs: Vec<serde_json::Value> = record
            .blobs
            .iter()
            .map(|b| {
                json!({
                    "digest": b.digest,
                    "size": b.size,
                    "kind": match b.kind { BlobKind::Config => "config", BlobKind::Layer => "layer" },
                    "outcome": outcome_name(b.outcome),
                    "seconds": b.seconds,
                    "from": if b.cached { "remoteCache" } else { "file" },
                })
            })
            .collect();
        let tags: Vec<serde_json::Value> = record
            .tags
            .iter()
            .map(|t| json!({"tag": t.tag, "outcome": t.outcome, "previous": t.previous}))
            .collect();
        let referrers: Vec<serde_json::Value> = record
            .referrers
            .iter()
            .map(|r| {
                let (index, tag, changed) = match &r.index {
                    ReferrerIndex::Registry => ("registry", None, false),
                    ReferrerIndex::Tag { tag, changed } => ("tag", Some(tag), *changed),
                    ReferrerIndex::NotListed { tag } => ("notListed", Some(tag), false),
                };
                json!({
                    "digest": r.digest,
                    "artifactType": r.artifact_type,
                    "subject": r.subject,
                    "outcome": match r.outcome {
                        ReferrerOutcome::Pushed => "pushed",
                        ReferrerOutcome::Exists => "exists",
                        ReferrerOutcome::WouldPush => "wouldPush",
                    },
                    "index": index,
                    "indexTag": tag,
                    "indexChanged": changed,
                })
            })
            .collect();
        json!({
            "repository": image.repository,
            "digest": image.digest,
            "reference": format!("{}@{}", image.repository, image.digest),
            "mediaType": image.media_type,
            "platforms": image.platforms,
            "dryRun": record.dry_run,
            "imageExisted": record.image_exists,
            "blobs": blobs,
            "tags": tags,
            "referrers": referrers,
            "bytes": {
                "total": image.bytes,
                "sent": totals.sent,
                "mounted": totals.mounted,
                "skipped": totals.skipped,
                "fetched": totals.fetched,
            },
            "seconds": round_ms(self.took()),
            "wire": {
                "requests": wire.requests,
                "connections": wire.connections,
                "roundTrips": wire.round_trips,
            },
            "error": error.map(|(message, code)| json!({"message": message, "exitCode": code})),
        })
    }

    /// Tags the run never got to, after a failure: reported as `notAttempted` in the JSON.
    pub fn not_attempted(&self, tags: &[String]) {
        let mut record = self.record();
        let seen: Vec<String> = record.tags.iter().map(|t| t.tag.clone()).collect();
        for tag in tags.iter().filter(|t| !seen.contains(t)) {
            record.tags.push(TagRecord {
                tag: tag.clone(),
                outcome: "notAttempted",
                previous: None,
            });
        }
    }
}

impl Observer for Reporter {
    fn event(&self, event: Event) {
        match event {
            Event::Start { dry_run } => {
                self.record().dry_run = dry_run;
                let image = &self.image;
                let head = if dry_run {
                    "dry run: nothing will be written to"
                } else {
                    "pushing to"
                };
                self.line(format!(
                    "{head} {}: {} blob(s) ({}), {} manifest(s)",
                    image.repository,
                    image.blobs,
                    human_size(image.bytes),
                    image.manifests
                ));
            }
            Event::ImageExists(m) => {
                self.record().image_exists = true;
                if let Some(bars) = &self.bars {
                    bars.total.set_position(self.image.bytes);
                }
                self.line(format!(
                    "  {:<12} {} {} (the registry has the image: no blob is sent)",
                    "exists", m.digest, m.media_type
                ));
            }
            Event::BlobUploading(blob) => {
                self.record()
                    .started
                    .entry(blob.digest.clone())
                    .or_insert_with(Instant::now);
                match &self.bars {
                    Some(bars) => bars.start(blob),
                    None => self.line(format!(
                        "  {:<12} {} {}{}",
                        "uploading",
                        blob.digest,
                        human_size(blob.size),
                        match blob.source {
                            Source::Cache => " from the remote cache",
                            Source::File(_) => "",
                        }
                    )),
                }
            }
            Event::BlobProgress(blob, at) => {
                if let Some(bars) = &self.bars {
                    bars.advance(blob, at);
                }
            }
            Event::Blob(blob, outcome) => {
                let seconds = self.record().started.get(&blob.digest).map(|t| t.elapsed());
                if let Some(bars) = &self.bars {
                    bars.done(blob);
                }
                let dry_run = self.record().dry_run;
                let word = match (outcome, dry_run) {
                    (BlobOutcome::Exists, _) => "exists",
                    (BlobOutcome::Mounted, false) => "mounted",
                    (BlobOutcome::Uploaded, false) => "uploaded",
                    (BlobOutcome::Mounted, true) => "would mount",
                    (BlobOutcome::Uploaded, true) => "would upload",
                };
                let took = match seconds {
                    Some(t) if outcome == BlobOutcome::Uploaded => {
                        format!(" in {}", human_duration(t))
                    }
                    _ => String::new(),
                };
                self.line(format!(
                    "  {word:<12} {} {}{took}",
                    blob.digest,
                    human_size(blob.size)
                ));
                self.record().blobs.push(BlobRecord {
                    digest: blob.digest.clone(),
                    size: blob.size,
                    kind: blob.kind,
                    cached: blob.source == Source::Cache,
                    outcome,
                    seconds: seconds
                        .filter(|_| outcome == BlobOutcome::Uploaded)
                        .map(round_ms),
                });
            }
            Event::Manifest(m) => {
                let word = if self.record().dry_run {
                    "would push"
                } else {
                    "manifest"
                };
                self.line(format!("  {word:<12} {} {}", m.digest, m.media_type));
            }
            Event::Tag {
                tag,
                outcome,
                previous,
            } => {
                let dry_run = self.record().dry_run;
                let (word, note) = match (outcome, previous, dry_run) {
                    (TagOutcome::Unchanged, _, _) => {
                        ("unchanged", " (already points at the image)".to_string())
                    }
                    (TagOutcome::Applied, None, false) => ("tagged", String::new()),
                    (TagOutcome::Applied, Some(old), false) => ("tagged", format!(" (was {old})")),
                    (TagOutcome::Applied, None, true) => ("would tag", " (new tag)".to_string()),
                    (TagOutcome::Applied, Some(old), true) => {
                        ("would move", format!(" from {old}"))
                    }
                };
                self.line(format!("  {word:<12} {tag}{note}"));
                self.record().tags.push(TagRecord {
                    tag: tag.to_string(),
                    outcome: match outcome {
                        TagOutcome::Applied => "applied",
                        TagOutcome::Unchanged => "unchanged",
                    },
                    previous: previous.map(str::to_string),
                });
            }
            Event::Referrer {
                referrer,
                outcome,
                index,
            } => {
                let digest = &referrer.manifest().digest;
                let dry_run = self.record().dry_run;
                let word = match outcome {
                    ReferrerOutcome::Pushed => "referrer",
                    ReferrerOutcome::Exists => "exists",
                    ReferrerOutcome::WouldPush => "would push",
                };
                let listed = match (index, dry_run) {
                    (ReferrerIndex::Registry, false) => "indexed by the registry".to_string(),
                    (ReferrerIndex::Registry, true) => "the registry would index it".to_string(),
                    (ReferrerIndex::Tag { tag, changed: true }, false) => {
                        format!("added to the index tag {}", short_tag(tag))
                    }
                    (ReferrerIndex::Tag { tag, changed: true }, true) => {
                        format!("would be added to the index tag {}", short_tag(tag))
                    }
                    (
                        ReferrerIndex::Tag {
                            tag,
                            changed: false,
                        },
                        _,
                    ) => {
                        format!("listed in the index tag {} already", short_tag(tag))
                    }
                    (ReferrerIndex::NotListed { tag }, _) => {
                        format!("not yet in the index tag {}", short_tag(tag))
                    }
                };
                self.line(format!(
                    "  {word:<12} {digest} {} of {} ({listed})",
                    referrer.artifact_type,
                    short(&referrer.subject)
                ));
                self.record().referrers.push(ReferrerRecord {
                    digest: digest.clone(),
                    artifact_type: referrer.artifact_type.clone(),
                    subject: referrer.subject.clone(),
                    outcome,
                    index: index.clone(),
                });
            }
            Event::TagFailed(tag) => {
                self.line(format!("  {:<12} {tag}", "tag failed"));
                self.record().tags.push(TagRecord {
                    tag: tag.to_string(),
                    outcome: "failed",
                    previous: None,
                });
            }
        }
    }
}

/// Bytes by what happened to them.
struct Totals {
    sent: u64,
    sent_count: usize,
    mounted: u64,
    mounted_count: usize,
    skipped: u64,
    skipped_count: usize,
    /// Sent, from the remote cache.
    fetched: u64,
    fetched_count: usize,
}

impl Totals {
    fn of(record: &Record, total: u64) -> Totals {
        let sum = |outcome| {
            let matching = record.blobs.iter().filter(|b| b.outcome == outcome);
            (matching.clone().map(|b| b.size).sum(), matching.count())
        };
        let (sent, sent_count) = sum(BlobOutcome::Uploaded);
        let (mounted, mounted_count) = sum(BlobOutcome::Mounted);
        let fetched = record
            .blobs
            .iter()
            .filter(|b| b.cached && b.outcome == BlobOutcome::Uploaded);
        let (fetched_count, fetched) = (fetched.clone().count(), fetched.map(|b| b.size).sum());
        let (skipped, skipped_count) = if record.image_exists {
            (total, 0)
        } else {
            sum(BlobOutcome::Exists)
        };
        Totals {
            sent,
            sent_count,
            mounted,
            mounted_count,
            skipped,
            skipped_count,
            fetched,
            fetched_count,
        }
    }
}

fn outcome_name(outcome: BlobOutcome) -> &'static str {
    match outcome {
        BlobOutcome::Exists => "exists",
        BlobOutcome::Mounted => "mounted",
        BlobOutcome::Uploaded => "uploaded",
    }
}

fn describe_media_type(media_type: &str) -> &'static str {
    match media_type {
        OCI_INDEX => "OCI image index",
        DOCKER_MANIFEST_LIST => "Docker manifest list",
        DOCKER_MANIFEST => "Docker image",
        _ => "OCI image",
    }
}

fn round_ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Live bars on a terminal: one for the whole push, one per blob being uploaded.
struct Bars {
    multi: MultiProgress,
    total: ProgressBar,
    /// Per blob being uploaded: its bar and the position last reported.
    active: Mutex<HashMap<String, (ProgressBar, u64)>>,
}

impl Bars {
    fn new(bytes: u64) -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        *LIVE_BARS.lock().unwrap_or_else(|e| e.into_inner()) = Some(multi.clone());
        let total = multi.add(ProgressBar::new(bytes));
        total.set_style(style(
            "total        [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        ));
        Bars {
            multi,
            total,
            active: Mutex::new(HashMap::new()),
        }
    }

    fn active(&self) -> std::sync::MutexGuard<'_, HashMap<String, (ProgressBar, u64)>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn start(&self, blob: &crate::layout::Blob) {
        // An upload that starts over keeps its bar, back at zero (and the total with it).
        if self.active().contains_key(&blob.digest) {
            return self.advance(blob, 0);
        }
        let bar = self.multi.add(ProgressBar::new(blob.size));
        bar.set_style(style(
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        ));
        bar.set_prefix(short(&blob.digest));
        self.active().insert(blob.digest.clone(), (bar, 0));
    }

    fn advance(&self, blob: &crate::layout::Blob, at: u64) {
        let mut active = self.active();
        if let Some((bar, last)) = active.get_mut(&blob.digest) {
            bar.set_position(at);
            // An upload that starts over goes back on the total too.
            if at >= *last {
                self.total.inc(at - *last);
            } else {
                self.total
                    .set_position(self.total.position().saturating_sub(*last - at));
            }
            *last = at;
        }
    }

    fn done(&self, blob: &crate::layout::Blob) {
        let finished = self.active().remove(&blob.digest);
        let counted = match finished {
            Some((bar, last)) => {
                bar.finish_and_clear();
                self.multi.remove(&bar);
                last
            }
            None => 0,
        };
        self.total.inc(blob.size.saturating_sub(counted));
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// The summary's referrers: how many, of which types, and who lists them.
fn referrers_summary(referrers: &[ReferrerRecord]) -> String {
    let mut types: Vec<&str> = Vec::new();
    for r in referrers {
        if !types.contains(&r.artifact_type.as_str()) {
            types.push(&r.artifact_type);
        }
    }
    let mut tags: Vec<String> = Vec::new();
    for r in referrers {
        if let ReferrerIndex::Tag { tag, .. } = &r.index {
            let tag = short_tag(tag);
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
    }
    let listed = match tags.as_slice() {
        [] => "indexed by the registry".to_string(),
        tags => format!("listed in the index tag {}", tags.join(", ")),
    };
    format!("{} ({}), {listed}", referrers.len(), types.join(", "))
}

/// `sha256-0123456789ab...`: a fallback tag, short enough for a line.
fn short_tag(tag: &str) -> String {
    match tag.chars().count() > 19 {
        true => format!("{}...", short(tag)),
        false => tag.to_string(),
    }
}

/// `sha256:0123456789ab`: enough to tell blobs apart on a bar.
fn short(digest: &str) -> String {
    digest.chars().take(19).collect()
}

/// After a push to several destinations, one line on stderr saying what became of each:
/// `destinations: pushed A, B; failed C; not attempted D`.
pub fn destinations_line(outcomes: &[Outcome], dry_run: bool) -> String {
    let named = |pick: fn(&Outcome) -> bool| {
        outcomes
            .iter()
            .filter(|o| pick(o))
            .map(|o| o.repository.to_string())
            .collect::<Vec<_>>()
    };
    let groups = [
        (
            if dry_run { "would push" } else { "pushed" },
            named(|o| matches!(o.result, Some(Ok(_)))),
        ),
        ("failed", named(|o| matches!(o.result, Some(Err(_))))),
        ("not attempted", named(|o| o.result.is_none())),
    ];
    let parts: Vec<String> = groups
        .iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(word, names)| format!("{word} {}", names.join(", ")))
        .collect();
    format!("destinations: {}", parts.join("; "))
}

/// The result for `--format json`: the first attempted destination's fields at the top (all
/// there is with one), `destinations` with each one's, and `error`, what ended the run.
pub fn json(
    outcomes: &[Outcome],
    digest: &str,
    tags: &[String],
    error: Option<(&str, u8)>,
) -> serde_json::Value {
    let mut top = serde_json::Value::Null;
    let mut each = Vec::new();
    for outcome in outcomes {
        let (Some(reporter), Some(result)) = (&outcome.reporter, &outcome.result) else {
            each.push(json!({
                "repository": outcome.repository.to_string(),
                "reference": format!("{}@{digest}", outcome.repository),
                "outcome": "notAttempted",
            }));
            continue;
        };
        if result.is_err() {
            reporter.not_attempted(tags);
        }
        let failed = result.as_ref().err();
        let mut value = reporter.json(failed.map(|e| (e.message(), e.kind().exit_code())));
        if top.is_null() {
            top = value.clone();
        }
        if let Some(object) = value.as_object_mut() {
            object.remove("wire");
            let word = if failed.is_some() { "failed" } else { "pushed" };
            object.insert("outcome".to_string(), json!(word));
        }
        each.push(value);
    }
    if let Some(object) = top.as_object_mut() {
        object.insert(
            "error".to_string(),
            error.map_or(
                serde_json::Value::Null,
                |(message, code)| json!({"message": message, "exitCode": code}),
            ),
        );
        object.insert("destinations".to_string(), json!(each));
    }
    top
}
