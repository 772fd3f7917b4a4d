//! `~/.netrc` (or `$NETRC`): the login and password for a host, as curl and Bazel read them.
//! `machine HOST login USER password PASS`, a `default` entry for every other host, and
//! `macdef` blocks skipped. Only what a Basic header needs is read.

use std::path::{Path, PathBuf};

use crate::files;

/// A netrc file of a few hosts is a few KiB; anything past this is not one.
const MAX_NETRC_BYTES: u64 = 1 << 20;

/// The file to read: `$NETRC`, else `~/.netrc`.
pub fn path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("NETRC").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| Path::new(&home).join(".netrc"))
}

/// The login and password `path` holds for `host` (a name or address, without port), if any.
/// A file that is missing holds none; one that cannot be read is said so, once, as a warning.
pub fn lookup(path: &Path, host: &str) -> Option<(String, String)> {
    if !path.exists() {
        return None;
    }
    match files::read_bounded(path, MAX_NETRC_BYTES) {
        Ok(bytes) => find(&String::from_utf8_lossy(&bytes), host),
        Err(e) => {
            log::warn!("warning: skipping {}: {e}", path.display());
            None
        }
    }
}

/// The entry of `text` for `host`: its `machine` entry, else the `default` one.
fn find(text: &str, host: &str) -> Option<(String, String)> {
    let mut tokens = Tokens::new(text);
    let mut default = None;
    // The entry being read: whether it is ours (or the default), and its fields.
    let mut current: Option<(Which, Option<String>, Option<String>)> = None;
    let mut finished = Vec::new();
    while let Some(token) = tokens.next() {
        match token {
            "machine" | "default" => {
                finished.extend(current.take());
                let which = match token {
                    "default" => Which::Default,
                    _ => match tokens.next() {
                        Some(name) if name.eq_ignore_ascii_case(host) => Which::Ours,
                        _ => Which::Other,
                    },
                };
                current = Some((which, None, None));
            }
            "login" | "password" | "account" => {
                let value = tokens.next().map(str::to_string);
                if let Some((_, login, password)) = current.as_mut() {
                    match token {
                        "login" => *login = value,
                        "password" => *password = value,
                        _ => {}
                    }
                }
            }
            "macdef" => {
                tokens.next();
                tokens.skip_macro();
            }
            _ => {}
        }
    }
    finished.extend(current);
    for (which, login, password) in finished {
        let (Some(login), Some(password)) = (login, password) else {
            continue;
        };
        match which {
            Which::Ours => return Some((login, password)),
            Which::Default if default.is_none() => default = Some((login, password)),
            _ => {}
        }
    }
    default
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Which {
    Ours,
    Default,
    Other,
}

/// Whitespace-separated tokens; a `macdef` body runs to the next empty line.
struct Tokens<'a> {
    rest: &'a str,
}

impl<'a> Tokens<'a> {
    fn new(text: &'a str) -> Tokens<'a> {
        Tokens { rest: text }
    }

    fn next(&mut self) -> Option<&'a str> {
        let start = self.rest.trim_start();
        if start.is_empty() {
            self.rest = start;
            return None;
        }
        let end = start.find(char::is_whitespace).unwrap_or(start.len());
        let (token, rest) = start.split_at(end);
        self.rest = rest;
        Some(token)
    }

    /// Past the next empty line, in a file with LF or CRLF line ends.
    fn skip_macro(&mut self) {
        let lf = self.rest.find("\n\n").map(|at| at + 2);
        let crlf = self.rest.find("\r\n\r\n").map(|at| at + 4);
        self.rest = match lf.into_iter().chain(crlf).min() {
            Some(end) => &self.rest[end..],
            None => "",
        };
    }
}

#[cfg(test)]
mod tests {
    use super::find;

    fn pair(login: &str, password: &str) -> Option<(String, String)> {
        Some((login.to_string(), password.to_string()))
    }

    #[test]
    fn a_machine_entry_wins_over_default_wherever_it_stands() {
        let text = "default login anyone password any\n\
                    machine cache.example.com\n  login alice\n  password s3cret\n\
                    machine other.example.com login bob password b0b\n";
        assert_eq!(find(text, "cache.example.com"), pair("alice", "s3cret"));
        assert_eq!(find(text, "CACHE.example.com"), pair("alice", "s3cret"));
        assert_eq!(find(text, "other.example.com"), pair("bob", "b0b"));
        assert_eq!(find(text, "elsewhere.example.com"), pair("anyone", "any"));
    }

    #[test]
    fn no_entry_and_incomplete_entries_give_nothing() {
        assert_eq!(find("", "h"), None);
        assert_eq!(find("machine h login alice", "h"), None);
        assert_eq!(find("machine other login a password b", "h"), None);
        assert_eq!(find("machine", "h"), None);
        assert_eq!(find("login password machine h password", "h"), None);
    }

    #[test]
    fn a_macdef_body_is_skipped_in_crlf_files_too() {
        let text = "macdef init\r\nmachine h login evil password evil\r\n\r\n\
                    machine h login alice password pw\r\n";
        assert_eq!(find(text, "h"), pair("alice", "pw"));
    }

    #[test]
    fn a_file_past_its_bound_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("netrc");
        let mut text = "machine h login alice password pw\n".to_string();
        text.push_str(&" ".repeat(super::MAX_NETRC_BYTES as usize));
        std::fs::write(&path, text).unwrap();
        assert_eq!(super::lookup(&path, "h"), None);
    }

    #[test]
    fn a_macdef_body_is_skipped() {
        let text = "macdef init\nmachine h login evil password evil\n\n\
                    machine h login alice password pw\n";
        assert_eq!(find(text, "h"), pair("alice", "pw"));
    }
}
