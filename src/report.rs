/*!
What people see on stderr while a push runs: one plain line per step, readable in a CI log.
*/

use crate::push::{BlobOutcome, Event, Observer, TagOutcome};

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

/// Sizes in binary units with one decimal: `512 B`, `4.2 MiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn human_sizes() {
        assert_eq!(super::human_size(0), "0 B");
        assert_eq!(super::human_size(1023), "1023 B");
        assert_eq!(super::human_size(1536), "1.5 KiB");
        assert_eq!(super::human_size(5 * 1024 * 1024), "5.0 MiB");
    }
}
