/*!
What people see on stderr while a push runs: one plain line per step, readable in a CI log.
*/

use crate::push::{BlobOutcome, Event, Observer, TagOutcome};
use crate::units::human_size;

/// Writes one line per event to stderr.
pub struct Lines {
    pub repository: String,
}

impl Observer for Lines {
    fn event(&self, event: Event) {
        match event {
            Event::Start {
                blobs,
                manifests,
                bytes,
            } => eprintln!(
                "pushing {blobs} blob(s) ({}) and {manifests} manifest(s) to {}",
                human_size(bytes),
                self.repository
            ),
            Event::Blob(blob, outcome) => {
                let word = match outcome {
                    BlobOutcome::Exists => "exists  ",
                    BlobOutcome::Mounted => "mounted ",
                    BlobOutcome::Uploaded => "uploaded",
                };
                eprintln!(
                    "  blob     {word} {} {}",
                    blob.digest,
                    human_size(blob.size)
                );
            }
            Event::Manifest(m) => eprintln!("  manifest pushed   {} {}", m.digest, m.media_type),
            Event::ImageExists(m) => eprintln!("  manifest exists   {} {}", m.digest, m.media_type),
            Event::Tag(tag, TagOutcome::Applied) => eprintln!("  tag      applied  {tag}"),
            Event::Tag(tag, TagOutcome::Unchanged) => eprintln!("  tag      unchanged {tag}"),
        }
    }
}
