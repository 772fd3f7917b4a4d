/*!
Which proxy, if any, a request goes through, from the environment, as curl and Go (docker,
crane) read it:

- `https://` URLs use `https_proxy` or `HTTPS_PROXY`, `http://` URLs `http_proxy` or
  `HTTP_PROXY`; either falls back to `all_proxy` or `ALL_PROXY`. The lower-case name wins when
  both are set, as in curl.
- `no_proxy` or `NO_PROXY`: a comma-separated list of host names (each also matching its
  subdomains; a leading `.` or `*.` is the same), IP addresses, CIDR ranges (`10.0.0.0/8`),
  any of them with `:PORT` to match that port only; `*` alone matches every host.
- Loopback (`localhost`, `127.0.0.0/8`, `::1`) never goes through a proxy: a proxy on another
  machine cannot reach this one's registry, and must not see what is sent to it.

ureq reads the first of `ALL_PROXY`, `HTTPS_PROXY` and `HTTP_PROXY` for every scheme and
never bypasses loopback, so the agents are built without a proxy and each request is given
the one chosen here.
*/

use std::net::IpAddr;

use ureq::Proxy;

use super::url::{is_loopback_host, split_authority};
use crate::error::{Error, Result};

/// The proxies of the environment, read once.
#[derive(Default)]
pub struct Proxies {
    http: Option<Proxy>,
    https: Option<Proxy>,
    no_proxy: Vec<NoProxy>,
}

/// One entry of `NO_PROXY`.
#[derive(Debug, PartialEq)]
enum Pattern {
    All,
    /// A host name and its subdomains (lower case, no leading dot).
    Domain(String),
    Address(IpAddr),
    Network(IpAddr, u8),
}

#[derive(Debug, PartialEq)]
struct NoProxy {
    pattern: Pattern,
    port: Option<u16>,
}

impl Proxies {
    pub fn from_env() -> Result<Proxies> {
        Proxies::from_vars(|name| std::env::var(name).ok())
    }

    /// From variables looked up by `var` (the environment, or a test's table).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Proxies> {
        let pick = |names: [&'static str; 2]| {
            names.iter().find_map(|name| {
                var(name)
                    .filter(|v| !v.trim().is_empty())
                    .map(|v| (*name, v))
            })
        };
        let all = pick(["all_proxy", "ALL_PROXY"]);
        let proxy = |names| -> Result<Option<Proxy>> {
            match pick(names).or_else(|| all.clone()) {
                None => Ok(None),
                Some((name, value)) => Proxy::new(value.trim()).map(Some).map_err(|e| {
                    // The value may hold the proxy's password: name the variable only.
                    Error::usage(format!(
                        "{name} is not a proxy URL ({e}); write http://host:port"
                    ))
                }),
            }
        };
        let no_proxy = pick(["no_proxy", "NO_PROXY"])
            .map(|(_, list)| list.split(',').filter_map(NoProxy::parse).collect())
            .unwrap_or_default();
        Ok(Proxies {
            http: proxy(["http_proxy", "HTTP_PROXY"])?,
            https: proxy(["https_proxy", "HTTPS_PROXY"])?,
            no_proxy,
        })
    }

    /// The proxy for `url`, or None to connect directly.
    pub fn for_url(&self, url: &str) -> Option<Proxy> {
        let (scheme, _) = url.split_once("://")?;
        let proxy = match scheme {
            "https" => self.https.as_ref()?,
            "http" => self.http.as_ref()?,
            _ => return None,
        };
        let authority = super::url::authority(url);
        let (host, port) = split_authority(authority, if scheme == "https" { 443 } else { 80 })?;
        if is_loopback_host(&host) || self.no_proxy.iter().any(|n| n.matches(&host, port)) {
            return None;
        }
        Some(proxy.clone())
    }
}

impl NoProxy {
    fn parse(entry: &str) -> Option<NoProxy> {
        let entry = entry.trim().to_ascii_lowercase();
        if entry.is_empty() {
            return None;
        }
        if entry == "*" {
            return Some(NoProxy {
                pattern: Pattern::All,
                port: None,
            });
        }
        if let Some((address, bits)) = entry.split_once('/') {
            let address: IpAddr = address.trim_matches(['[', ']']).parse().ok()?;
            let bits: u8 = bits.parse().ok()?;
            let max = if address.is_ipv4() { 32 } else { 128 };
            return (bits <= max).then_some(NoProxy {
                pattern: Pattern::Network(address, bits),
                port: None,
            });
        }
        if let Ok(address) = entry.trim_matches(['[', ']']).parse::<IpAddr>() {
            return Some(NoProxy {
                pattern: Pattern::Address(address),
                port: None,
            });
        }
        let (host, port) = match split_authority(&entry, 0) {
            Some((host, port)) if port != 0 => (host, Some(port)),
            _ => (entry.clone(), None),
        };
        if let Ok(address) = host.parse::<IpAddr>() {
            return Some(NoProxy {
                pattern: Pattern::Address(address),
                port,
            });
        }
        let domain = host.trim_start_matches("*.").trim_start_matches('.');
        (!domain.is_empty()).then(|| NoProxy {
            pattern: Pattern::Domain(domain.to_string()),
            port,
        })
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let address = host.parse::<IpAddr>().ok();
        match &self.pattern {
            Pattern::All => true,
            Pattern::Domain(domain) => {
                host == domain
                    || host
                        .strip_suffix(domain.as_str())
                        .is_some_and(|sub| sub.ends_with('.'))
            }
            Pattern::Address(a) => address == Some(*a),
            Pattern::Network(network, bits) => {
                address.is_some_and(|a| in_network(a, *network, *bits))
            }
        }
    }
}

fn in_network(address: IpAddr, network: IpAddr, bits: u8) -> bool {
    let (a, n, width) = match (address, network) {
        (IpAddr::V4(a), IpAddr::V4(n)) => (u128::from(u32::from(a)), u128::from(u32::from(n)), 32),
        (IpAddr::V6(a), IpAddr::V6(n)) => (u128::from(a), u128::from(n), 128),
        _ => return false,
    };
    let shift = width - u32::from(bits);
    shift >= width || (a >> shift) == (n >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(vars: &[(&str, &str)]) -> Proxies {
        Proxies::from_vars(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
        .unwrap()
    }

    fn via(p: &Proxies, url: &str) -> Option<String> {
        p.for_url(url).map(|p| format!("{}:{}", p.host(), p.port()))
    }

    #[test]
    fn each_scheme_has_its_own_variable() {
        let p = proxies(&[("HTTPS_PROXY", "http://s:1"), ("HTTP_PROXY", "http://p:2")]);
        assert_eq!(via(&p, "https://ghcr.io/v2/").as_deref(), Some("s:1"));
        assert_eq!(
            via(&p, "http://reg.example:5000/v2/").as_deref(),
            Some("p:2")
        );
        let p = proxies(&[("HTTPS_PROXY", "http://s:1")]);
        assert_eq!(via(&p, "http://reg.example:5000/v2/"), None);
        let p = proxies(&[("ALL_PROXY", "http://a:3"), ("https_proxy", "http://s:1")]);
        assert_eq!(via(&p, "https://ghcr.io/").as_deref(), Some("s:1"));
        assert_eq!(via(&p, "http://x.example/").as_deref(), Some("a:3"));
        let p = proxies(&[
            ("https_proxy", "http://lower:1"),
            ("HTTPS_PROXY", "http://upper:1"),
        ]);
        assert_eq!(via(&p, "https://ghcr.io/").as_deref(), Some("lower:1"));
    }

    #[test]
    fn loopback_never_goes_through_a_proxy() {
        let p = proxies(&[("HTTPS_PROXY", "http://s:1"), ("HTTP_PROXY", "http://s:1")]);
        for url in [
            "http://localhost:5000/v2/",
            "https://localhost/v2/",
            "http://127.0.0.1:5000/v2/",
            "http://127.9.9.9/v2/",
            "https://[::1]:5000/v2/",
        ] {
            assert_eq!(via(&p, url), None, "{url}");
        }
        assert!(via(&p, "http://127.0.0.1.nip.io/").is_some());
    }

    #[test]
    fn no_proxy_entries() {
        let list = "example.com, .corp.internal,*.dev.test,10.0.0.0/8,192.168.1.7,\
                    [fd00::1],fd01::/16,reg.io:5000";
        let p = proxies(&[("HTTPS_PROXY", "http://s:1"), ("NO_PROXY", list)]);
        for direct in [
            "https://example.com/",
            "https://EXAMPLE.com/",
            "https://reg.example.com:443/",
            "https://a.corp.internal/",
            "https://corp.internal/",
            "https://x.dev.test/",
            "https://10.1.2.3:5000/",
            "https://192.168.1.7/",
            "https://[fd00::1]:5000/",
            "https://[fd01:1::2]/",
            "https://reg.io:5000/",
        ] {
            assert_eq!(via(&p, direct), None, "{direct}");
        }
        for proxied in [
            "https://notexample.com/",
            "https://example.com.evil.net/",
            "https://11.0.0.1/",
            "https://192.168.1.8/",
            "https://reg.io/",
            "https://reg.io:5001/",
            "https://[fd02::1]/",
        ] {
            assert!(via(&p, proxied).is_some(), "{proxied}");
        }
        let p = proxies(&[("HTTPS_PROXY", "http://s:1"), ("no_proxy", "*")]);
        assert_eq!(via(&p, "https://ghcr.io/"), None);
    }

    #[test]
    fn a_bad_proxy_url_names_the_variable_not_its_value() {
        let err = Proxies::from_vars(|name| {
            (name == "HTTPS_PROXY").then(|| "http://user:pw-s3cret@[bad".to_string())
        })
        .err()
        .unwrap();
        assert!(
            err.to_string()
                .starts_with("HTTPS_PROXY is not a proxy URL"),
            "{err}"
        );
        assert!(!err.to_string().contains("pw-s3cret"), "{err}");
    }
}
