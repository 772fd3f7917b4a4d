//! Registry error answers: the status, and the `{"errors":[{"code","message"}]}` body of the
//! distribution spec, turned into one line and an exit code.

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
}

impl Refusal {
    /// Reads the error answer of a response with an unexpected status (part of its body).
    pub fn read(response: &mut Response<ureq::Body>, method: &Method) -> Refusal {
        let body = if *method == Method::HEAD {
            String::new()
        } else {
            response
                .body_mut()
                .with_config()
                .limit(MAX_ERROR_BODY)
                .read_to_string()
                .unwrap_or_default()
        };
        let (codes, detail) = describe_body(&body);
        Refusal {
            status: response.status(),
            codes,
            detail,
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
        Error::new(
            kind,
            format!("{method} {url} answered {}{}", self.status, self.detail),
        )
    }
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
    fn other_bodies_are_cut_to_one_line() {
        let (codes, detail) = describe_body("<html>\n<b>Bad gateway</b>\n</html>");
        assert!(codes.is_empty());
        assert_eq!(detail, ": <html> <b>Bad gateway</b> </html>");
        assert_eq!(describe_body("  ").1, "");
        let long = "x".repeat(500);
        assert_eq!(describe_body(&long).1.chars().count(), 2 + 200 + 1);
    }
}
