//! `WWW-Authenticate` challenges (RFC 7235): which scheme a registry wants, and for Bearer the
//! token server (`realm`), its `service` and the `scope` that was missing.

/// One challenge: a scheme and its parameters (names lower-cased).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn is_bearer(&self) -> bool {
        self.scheme == "bearer"
    }

    pub fn is_basic(&self) -> bool {
        self.scheme == "basic"
    }
}

/// Parses a header value into its challenges; malformed parts are skipped, never a panic.
pub fn parse(header: &str) -> Vec<Challenge> {
    let mut lexer = Lexer {
        chars: header.chars().collect(),
        at: 0,
    };
    let mut challenges: Vec<Challenge> = Vec::new();
    loop {
        lexer.skip(|c| c == ' ' || c == '\t' || c == ',');
        let Some(word) = lexer.token() else {
            // Not a token: skip one character so the loop always advances.
            if lexer.next().is_none() {
                return challenges;
            }
            continue;
        };
        lexer.skip(|c| c == ' ' || c == '\t');
        if lexer.peek() == Some('=') {
            lexer.next();
            lexer.skip(|c| c == ' ' || c == '\t');
            let value = if lexer.peek() == Some('"') {
                lexer.quoted()
            } else {
                lexer.token().unwrap_or_default()
            };
            if let Some(current) = challenges.last_mut() {
                current.params.push((word.to_ascii_lowercase(), value));
            }
        } else {
            challenges.push(Challenge {
                scheme: word.to_ascii_lowercase(),
                params: Vec::new(),
            });
        }
    }
}

struct Lexer {
    chars: Vec<char>,
    at: usize,
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.at += 1;
        Some(c)
    }

    fn skip(&mut self, what: impl Fn(char) -> bool) {
        while self.peek().is_some_and(&what) {
            self.at += 1;
        }
    }

    /// An RFC 7230 token (token68 included: `/`, `+` and trailing `=` of base64 are kept
    /// only when not followed by a value).
    fn token(&mut self) -> Option<String> {
        let start = self.at;
        self.skip(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~/:".contains(c));
        (self.at > start).then(|| self.chars[start..self.at].iter().collect())
    }

    /// A quoted string with backslash escapes; an unclosed one runs to the end.
    fn quoted(&mut self) -> String {
        self.next();
        let mut out = String::new();
        while let Some(c) = self.next() {
            match c {
                '"' => break,
                '\\' => {
                    if let Some(escaped) = self.next() {
                        out.push(escaped);
                    }
                }
                c => out.push(c),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_with_scope_and_error() {
        let header = r#"Bearer realm="http://127.0.0.1:5081/token",service="test-registry",scope="repository:a/b:pull,push",error="insufficient_scope""#;
        let parsed = parse(header);
        assert_eq!(parsed.len(), 1);
        let c = &parsed[0];
        assert!(c.is_bearer());
        assert_eq!(c.param("realm"), Some("http://127.0.0.1:5081/token"));
        assert_eq!(c.param("service"), Some("test-registry"));
        assert_eq!(c.param("scope"), Some("repository:a/b:pull,push"));
        assert_eq!(c.param("error"), Some("insufficient_scope"));
    }

    #[test]
    fn basic_and_several_challenges() {
        let parsed = parse(
            r#"Basic realm="Registry Realm", Bearer realm=https://auth.example/token , service=reg"#,
        );
        assert_eq!(parsed.len(), 2);
        assert!(parsed[0].is_basic());
        assert_eq!(parsed[0].param("realm"), Some("Registry Realm"));
        assert_eq!(parsed[1].param("realm"), Some("https://auth.example/token"));
        assert_eq!(parsed[1].param("service"), Some("reg"));
    }

    #[test]
    fn escapes_case_and_garbage() {
        let parsed = parse(r#"BEARER Realm="a\"b\\c""#);
        assert_eq!(parsed[0].scheme, "bearer");
        assert_eq!(parsed[0].param("realm"), Some(r#"a"b\c"#));
        for garbage in [
            "",
            "=",
            "\"",
            "Bearer realm=\"unclosed",
            ",,,",
            "Bearer ==x",
            "é=ü",
        ] {
            let _ = parse(garbage);
        }
        assert!(parse("").is_empty());
    }
}
