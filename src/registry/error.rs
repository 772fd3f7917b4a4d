//! Registry error answers: the status, and the `{"errors":[{"code","message"}]}` body of the
//! distribution spec, turned into one line and an exit code.

use std::time::{Duration, SystemTime};

use ureq::http::{Method, Response, StatusCode};

use crate::error::{Error, Kind};

/// How much of an error body we read; registries send a few hundred bytes.
const MAX_ERROR_BODY: u64 = 64 * 1024;

/// A registry's error answer: its status, the spec's error codes, and a one-line description.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub codes: Vec<String>,
    detail: String,
    retry_after: Option<Duration>,
}

impl Refusal {
    /// Reads the error answer of a response with an unexpected status (part of its body).
    pub fn read(response: &mut Response<ureq::Body>, method: &Method) -> Refusal {
        // The start of a longer body still explains; what is past the bound is never read.
        let mut bytes = Vec::new();
        if *method != Method::HEAD {
            let reader = response.body_mut().as_reader();
            let _ = std::io::Read::read_to_end(
                &mut std::io::Read::take(reader, MAX_ERROR_BODY),
                &mut bytes,
            );
        }
        let body = String::from_utf8_lossy(&bytes);
        let (codes, detail) = describe_body(&body);
        Refusal {
            status: response.status(),
            codes,
            detail,
            retry_after: retry_after(response),
        }
    }

    /// A refusal as a registry would send it, for tests.
    #[cfg(test)]
    pub fn new(status: StatusCode, codes: &[&str]) -> Refusal {
        Refusal {
            status,
            codes: codes.iter().map(|c| c.to_string()).collect(),
            detail: String::new(),
            retry_after: None,
        }
    }

    /// `: CODE: message; ...`, or the start of a body in another form, or nothing.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// Worth another try (408, 429, 5xx).
    pub fn is_transient(&self) -> bool {
        is_transient(self.status)
    }

    /// `error`, marked worth a retry (after the server's `Retry-After`) when this refusal is.
    pub fn retried(&self, error: Error) -> Error {
        match self.is_transient() {
            true => error.transient(self.retry_after),
            false => error,
        }
    }

    pub fn has_code(&self, code: &str) -> bool {
        self.codes.iter().any(|c| c == code)
    }

    pub fn is_auth(&self) -> bool {
        matches!(
            self.status,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        )
    }

    /// The error to report: `Auth` for 401/403, `Rejected` for any other status.
    pub fn into_error(self, method: &Method, url: &str) -> Error {
        let kind = if self.is_auth() {
            Kind::Auth
        } else {
            Kind::Rejected
        };
        // A registry explains a missing route or method in the spec's error body; a web
        // server (a wrong host or port) does not.
        let no_route = [
            StatusCode::NOT_FOUND,
            StatusCode::METHOD_NOT_ALLOWED,
            StatusCode::NOT_IMPLEMENTED,
        ];
        let hint = match no_route.contains(&self.status)
            && self.codes.is_empty()
            && *method != Method::HEAD
        {
            true => " (not an OCI registry's answer: check the registry's host and port)",
            false => "",
        };
        let error = Error::new(
            kind,
            format!(
                "{method} {} answered {}{}{hint}",
                super::redact(url),
                self.status,
                self.detail
            ),
        );
        self.retried(error)
    }
}

/// The statuses worth a retry: the registry or something in front of it is busy or failing.
/// A 501 is an answer, not a failure: the registry does not do that (GAR's PATCH), or it is
/// no registry at all; asking again would only wait.
pub fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED)
}

/// `Retry-After`, in seconds or as an HTTP date.
pub fn retry_after<B>(response: &Response<B>) -> Option<Duration> {
    let value = response.headers().get("retry-after")?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = parse_http_date(value)?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// `Retry-After` as its text, for the property tests: the same parsing as [`retry_after`].
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let response = Response::builder()
        .header("retry-after", value)
        .body(())
        .ok()?;
    retry_after(&response)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// IMF-fixdate, the HTTP date format: `Sun, 06 Nov 1994 08:49:37 GMT`.
fn parse_http_date(text: &str) -> Option<SystemTime> {
    let mut parts = text.split_whitespace().skip(1);
    let day: u64 = parts.next()?.parse().ok()?;
    let month_name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == month_name)? as u64 + 1;
    let year: u64 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (clock.next()??, clock.next()??, clock.next()??);
    // Past 9999 an HTTP date is not a date (and the arithmetic below could overflow).
    if parts.next() != Some("GMT")
        || !(1..=31).contains(&day)
        || !(1970..=9999).contains(&year)
        || h > 23
        || m > 59
        || s > 60
    {
        return None;
    }
    let seconds = crate::units::unix_seconds(year, month, day, h, m, s)?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

/// The spec's error codes and messages, or the start of a body that is not in that form.
fn describe_body(body: &str) -> (Vec<String>, String) {
    let body = body.trim();
    if body.is_empty() {
        return (Vec::new(), String::new());
    }
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(body) {
        if let Some(errors) = value.get("errors").and_then(|e| e.as_array()) {
            let mut codes = Vec::new();
            let mut parts = Vec::new();
            for e in errors {
                let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("UNKNOWN");
                parts.push(match e.get("message").and_then(|m| m.as_str()) {
                    Some(message) if !message.is_empty() => format!("{code}: {message}"),
                    _ => code.to_string(),
                });
                codes.push(code.to_string());
            }
            if !parts.is_empty() {
                return (codes, format!(": {}", parts.join("; ")));
            }
        }
    }
    let one_line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut shown: String = one_line.chars().take(200).collect();
    if shown.len() < one_line.len() {
        shown.push('…');
    }
    (Vec::new(), format!(": {shown}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_errors_are_listed() {
        let body = r#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:ab"},{"code":"DENIED"}]}"#;
        let (codes, detail) = describe_body(body);
        assert_eq!(codes, ["MANIFEST_BLOB_UNKNOWN", "DENIED"]);
        assert_eq!(
            detail,
            ": MANIFEST_BLOB_UNKNOWN: blob unknown to registry; DENIED"
        );
    }

    #[test]
    fn http_dates() {
        let at = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(
            at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            784_111_777
        );
        let at = parse_http_date("Thu, 26 Nov 2026 02:19:00 GMT").unwrap();
        assert_eq!(
            at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            1_795_659_540
        );
        for bad in [
            "",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "x y z",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Mon, 01 Jan 300000000000 00:00:00 GMT",
            "Mon, 01 Jan 18446744073709551615 23:59:59 GMT",
            "Fri, 31 Dec 10000 23:59:59 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn retry_after_from_far_away_never_panics() {
        assert_eq!(
            parse_retry_after("18446744073709551615"),
            Some(Duration::from_secs(u64::MAX))
        );
        assert!(parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT").unwrap() > Duration::ZERO);
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Mon, 01 Jan 300000000000 00:00:00 GMT"),
            None
        );
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn other_bodies_are_cut_to_one_line() {
        let (codes, detail) = describe_body("<html>\n<b>Bad gateway</b>\n</html>");
        assert!(codes.is_empty());
        assert_eq!(detail, ": <html> <b>Bad gateway</b> </html>");
        assert_eq!(describe_body("  ").1, "");
        let long = "x".repeat(500);
        assert_eq!(describe_body(&long).1.chars().count(), 2 + 200 + 1);
    }
}
