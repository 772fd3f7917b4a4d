/*!
Tags: the OCI tag grammar, and the tags file (one tag a line) that the Bazel rule hands over.
*/

use std::path::Path;

use crate::error::{Error, Result};

/// The longest tags file we read; a real one is a few lines, a bigger one is a mistake.
const MAX_TAGS_FILE_BYTES: u64 = 1024 * 1024;

/// Checks one tag against `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<()> {
    let bad = |why: String| Error::invalid(format!("invalid tag '{}': {why}", tag.escape_debug()));
    let Some(first) = tag.chars().next() else {
        return Err(bad("it is empty".into()));
    };
    if !(first.is_ascii_alphanumeric() || first == '_') {
        return Err(bad(format!(
            "it starts with '{}'; a tag starts with a letter, digit or '_'",
            first.escape_debug()
        )));
    }
    if let Some(c) = tag
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(bad(format!(
            "it has the character '{}'; tags use only A-Z a-z 0-9 _ . -",
            c.escape_debug()
        )));
    }
    // Only ASCII is left: bytes are characters.
    if tag.len() > 128 {
        return Err(bad(format!(
            "it is {} characters long; tags have at most 128",
            tag.len()
        )));
    }
    Ok(())
}

/// Reads a tags file: one tag a line, surrounding white space and blank lines ignored, CRLF
/// tolerated. Every tag is checked; the first bad one is the error, with its line number.
pub fn read_tags_file(path: &Path) -> Result<Vec<String>> {
    let shown = path.display();
    let bytes = crate::files::read_bounded(path, MAX_TAGS_FILE_BYTES)
        .map_err(|e| Error::invalid(format!("cannot read tags file {shown}: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::invalid(format!(
            "tags file {shown} is not UTF-8 text (bad byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let mut tags = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let tag = line.trim();
        if tag.is_empty() {
            continue;
        }
        check_tag(tag).map_err(|e| e.context(format!("{shown}:{}", index + 1)))?;
        tags.push(tag.to_string());
    }
    Ok(tags)
}

/// Drops repeated tags, keeping the first place each appears: a tag is pushed once.
pub fn dedup(tags: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    tags.into_iter()
        .filter(|t| seen.insert(t.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn tag_grammar() {
        for ok in ["latest", "v1.2.3", "_x", "A-b_c.d", &"a".repeat(128)] {
            check_tag(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let reason = |t: &str| check_tag(t).unwrap_err().to_string();
        assert_eq!(reason(""), "invalid tag '': it is empty");
        assert!(reason(".v1").contains("starts with '.'"));
        assert!(reason("-v1").contains("starts with '-'"));
        assert!(reason("v1:x").contains("the character ':'"));
        assert!(reason("v1/x").contains("the character '/'"));
        assert!(reason("vé").contains("the character 'é'"));
        assert!(reason(&"a".repeat(129)).contains("129 characters long"));
    }

    fn file_with(content: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content).unwrap();
        f
    }

    #[test]
    fn tags_file_lines() {
        let f = file_with(b"  v1 \r\n\r\nlatest\n\n\tv1\nlast");
        let tags = read_tags_file(f.path()).unwrap();
        assert_eq!(tags, ["v1", "latest", "v1", "last"]);
        assert_eq!(dedup(tags), ["v1", "latest", "last"]);
        assert!(read_tags_file(file_with(b"").path()).unwrap().is_empty());
        assert!(read_tags_file(file_with(b"\n \n").path())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn tags_file_errors_name_the_line() {
        let f = file_with(b"ok\nnot ok\n");
        let err = read_tags_file(f.path()).unwrap_err();
        assert_eq!(err.kind(), crate::error::Kind::Invalid);
        assert_eq!(
            err.to_string(),
            format!(
                "{}:2: invalid tag 'not ok': it has the character ' '; tags use only A-Z a-z 0-9 _ . -",
                f.path().display()
            )
        );
        let binary = file_with(b"v1\n\xff\xfe\n");
        assert!(read_tags_file(binary.path())
            .unwrap_err()
            .to_string()
            .contains("is not UTF-8 text"));
    }
}
