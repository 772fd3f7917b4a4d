/*!
The one error type of the pusher, and the exit code each kind of failure maps to.

Every error is a single line that names the thing that failed (blob, file, URL, tag) and, where
there is one, the next step. The message is built where the context is known; `main` prints it
once and exits with the kind's code.
*/

use std::fmt;
use std::time::Duration;

/// What went wrong, as far as the caller's exit code is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Bad command line, or a failure that fits no other kind (exit 1).
    Usage,
    /// The registry refused our credentials or their permissions (exit 2).
    Auth,
    /// The registry could not be reached: DNS, connection, TLS (exit 3).
    Network,
    /// The image, layout, a tag or the repository name is invalid (exit 4).
    Invalid,
    /// The registry answered a request with an error status (exit 5).
    Rejected,
    /// A request or the whole push took too long (exit 6).
    Timeout,
    /// The registry will not move a tag that names another digest: immutable tags (exit 7).
    Immutable,
    /// The remote cache (`--remote-cache`) lacks a blob, or could not be reached or read
    /// (exit 8): a cache's failure is told apart from the registry's, since its fix is another.
    Cache,
}

impl Kind {
    /// The process exit code documented in the README and `--help`.
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::Usage => 1,
            Kind::Auth => 2,
            Kind::Network => 3,
            Kind::Invalid => 4,
            Kind::Rejected => 5,
            Kind::Timeout => 6,
            Kind::Immutable => 7,
            Kind::Cache => 8,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Error {
    kind: Kind,
    message: String,
    /// Worth trying again: a dropped connection, a timeout, 408, 429 or a 5xx.
    transient: bool,
    /// Retried already until the retries ran out: an enclosing step must not try it again.
    spent: bool,
    /// How long the registry asked us to wait (`Retry-After`).
    retry_after: Option<Duration>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: one_line(message.into()),
            transient: false,
            spent: false,
            retry_after: None,
        }
    }

    /// Marks the error as worth a retry, after `retry_after` if the registry said so.
    pub fn transient(mut self, retry_after: Option<Duration>) -> Error {
        self.transient = true;
        self.retry_after = retry_after;
        self
    }

    /// Marks a transient error as retried until the retries ran out.
    pub fn spent(mut self) -> Error {
        self.spent = true;
        self
    }

    pub fn is_transient(&self) -> bool {
        self.transient && !self.spent
    }

    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    pub fn usage(message: impl Into<String>) -> Error {
        Error::new(Kind::Usage, message)
    }

    pub fn invalid(message: impl Into<String>) -> Error {
        Error::new(Kind::Invalid, message)
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The message, one line.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Adds what we were doing in front of the message, keeping the kind.
    pub fn context(self, what: impl fmt::Display) -> Error {
        Error {
            message: one_line(format!("{what}: {}", self.message)),
            ..self
        }
    }
}

/// Control characters (a line break in a flag value, a file name or a registry's answer) are
/// shown escaped: an error is always one line, for people and for log parsers.
fn one_line(message: String) -> String {
    if !message.chars().any(char::is_control) {
        return message;
    }
    message
        .chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
