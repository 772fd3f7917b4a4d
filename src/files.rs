//! Reading the small files we are given (index.json, a tags file, a Docker config), bounded:
//! the limit is checked on the bytes read, not on the file's metadata, which says 0 for a FIFO
//! or a device, and anything but a regular file (after symlinks) is refused where a file is
//! expected, so that `--tags-file /dev/zero` is an error, not gigabytes of memory.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use crate::units::human_size;

/// The whole of a regular file of at most `limit` bytes. The error says which rule the file
/// broke (not a regular file, too large) in words meant for `cannot read X: {error}`.
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    // Checked before opening too: opening a FIFO blocks until something writes to it.
    let regular = |meta: std::fs::Metadata| match meta.is_file() {
        true => Ok(()),
        false => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file; give the path of a file",
        )),
    };
    regular(std::fs::metadata(path)?)?;
    let file = File::open(path)?;
    regular(file.metadata()?)?;
    read_at_most(file, limit)
}

/// All of `reader`, failing once it has given more than `limit` bytes.
pub fn read_at_most(reader: impl Read, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "larger than {}, more than such a file holds",
                human_size(limit)
            ),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked_on_what_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").unwrap();
        assert_eq!(read_bounded(&path, 5).unwrap(), b"12345");
        let err = read_bounded(&path, 4).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            err.to_string(),
            "larger than 4 B, more than such a file holds"
        );
        let err = read_bounded(dir.path(), 4).unwrap_err();
        assert!(err.to_string().starts_with("not a regular file"), "{err}");
        let err = read_bounded(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        // A FIFO nobody writes to: refused, not waited on.
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        let err = read_bounded(&fifo, 1 << 20).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            read_at_most(io::repeat(0), 10).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
