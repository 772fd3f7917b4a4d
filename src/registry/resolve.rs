/*!
Host names resolved once per process.

ureq resolves the host before every request, even one that goes out on a pooled connection, and
with a timeout set it does so on a new thread each time. A push makes dozens of requests to one
registry (and perhaps a token server): this resolver asks the system once per host and port and
answers from memory after that. A push lasts minutes at most, so the addresses stay good; a
lookup that fails is not remembered and is tried again by the next request.
*/

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// Clones share what they remember: every agent of a client, and the client's own loopback
/// check, see the same addresses.
#[derive(Clone, Debug, Default)]
pub struct Remembering {
    known: Arc<Mutex<HashMap<String, ResolvedSocketAddrs>>>,
}

/// `--resolve HOST:PORT:ADDRESS`, as curl's and oras's option: connections to HOST:PORT go to
/// ADDRESS, whatever the system says. TLS still checks the certificate against HOST.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    /// `host:port`, lower case.
    authority: String,
    address: SocketAddr,
}

impl std::str::FromStr for Pin {
    type Err = String;

    fn from_str(text: &str) -> Result<Pin, String> {
        let bad = |why: &str| {
            format!(
                "--resolve {text}: {why}; expected HOST:PORT:ADDRESS, as in \
                 registry.example:443:192.0.2.7"
            )
        };
        let mut parts = text.splitn(3, ':');
        let (Some(host), Some(port), Some(address)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("missing a part"));
        };
        let name_char = |c: char| c.is_ascii_alphanumeric() || ".-_".contains(c);
        if host.is_empty() || !host.chars().all(name_char) {
            return Err(bad("not a host name"));
        }
        let port = match port.parse::<u16>() {
            Ok(number) if number > 0 && port.bytes().all(|b| b.is_ascii_digit()) => number,
            _ => return Err(bad("not a port number")),
        };
        let address = address.trim_start_matches('[').trim_end_matches(']');
        let address: IpAddr = address.parse().map_err(|_| bad("not an IP address"))?;
        Ok(Pin {
            authority: format!("{}:{port}", host.to_ascii_lowercase()),
            address: SocketAddr::new(address, port),
        })
    }
}

impl Remembering {
    /// A resolver that answers `pins` without asking the system.
    pub fn pinned(pins: &[Pin]) -> Remembering {
        let resolver = Remembering::default();
        if let Ok(mut known) = resolver.known.lock() {
            for pin in pins {
                let entry = known
                    .entry(pin.authority.clone())
                    .or_insert_with(|| DefaultResolver::default().empty());
                if !entry.contains(&pin.address) && entry.try_push(pin.address).is_err() {
                    log::debug!("--resolve: too many addresses for {}", pin.authority);
                }
            }
        }
        resolver
    }

    /// The addresses of `authority` (`host[:port]`) for `http://`, remembered for the requests
    /// that follow: what is checked is what is connected to.
    pub fn addresses(&self, authority: &str) -> Option<Vec<SocketAddr>> {
        let uri: Uri = format!("http://{authority}/").parse().ok()?;
        let timeout = NextTimeout {
            after: ureq::unversioned::transport::time::Duration::NotHappening,
            reason: ureq::Timeout::Resolve,
            per_read: None,
            per_write: None,
        };
        let found = self.resolve(&uri, &Config::default(), timeout).ok()?;
        Some(found.iter().copied().collect())
    }
}

impl Resolver for Remembering {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority)) => DefaultResolver::host_and_port(scheme, authority),
            _ => None,
        };
        let Some(key) = key.map(|mut k| {
            k.make_ascii_lowercase();
            k
        }) else {
            // Not a full URL: the system resolver gives ureq's own error for it.
            return DefaultResolver::default().resolve(uri, config, timeout);
        };
        if let Some(known) = self.known.lock().ok().and_then(|k| k.get(&key).cloned()) {
            return Ok(known);
        }
        let addresses = DefaultResolver::default().resolve(uri, config, timeout)?;
        if let Ok(mut known) = self.known.lock() {
            known.insert(key, addresses.clone());
        }
        Ok(addresses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(resolver: &Remembering, authority: &str) -> Vec<SocketAddr> {
        resolver.addresses(authority).unwrap_or_default()
    }

    #[test]
    fn clones_remember_together() {
        let resolver = Remembering::default();
        let clone = resolver.clone();
        assert_eq!(resolve(&clone, "127.0.0.1:5001").len(), 1);
        assert!(resolver
            .known
            .lock()
            .unwrap()
            .contains_key("127.0.0.1:5001"));
    }

    #[test]
    fn literals_and_default_ports_are_remembered_per_host_and_port() {
        let resolver = Remembering::default();
        assert_eq!(
            resolve(&resolver, "127.0.0.1:5000"),
            vec!["127.0.0.1:5000".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            resolve(&resolver, "[::1]:443"),
            vec!["[::1]:443".parse::<SocketAddr>().unwrap()]
        );
        let known = resolver.known.lock().unwrap();
        let mut keys: Vec<_> = known.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["127.0.0.1:5000", "[::1]:443"]);
    }

    #[test]
    fn pins_answer_for_their_host_and_port_only() {
        let pins: Vec<Pin> = ["Registry.Test:443:127.0.0.2", "registry.test:5000:[::1]"]
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        let resolver = Remembering::pinned(&pins);
        assert_eq!(
            resolve(&resolver, "registry.test:443"),
            vec!["127.0.0.2:443".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            resolve(&resolver, "REGISTRY.test:5000"),
            vec!["[::1]:5000".parse::<SocketAddr>().unwrap()]
        );
        assert!(resolve(&resolver, "registry.test:444").is_empty());
    }

    #[test]
    fn a_bad_pin_names_the_part_and_the_form() {
        for (pin, why) in [
            ("registry.test:443", "missing a part"),
            ("registry.test:https:127.0.0.1", "not a port number"),
            ("registry.test:+443:127.0.0.1", "not a port number"),
            ("registry.test:0:127.0.0.1", "not a port number"),
            ("[::1]:443:127.0.0.1", "not a host name"),
            ("a b:443:127.0.0.1", "not a host name"),
            ("registry.test:443:127.0.0.1,127.0.0.2", "not an IP address"),
            ("registry.test:443:localhost", "not an IP address"),
            (":443:127.0.0.1", "not a host name"),
        ] {
            let error = pin.parse::<Pin>().unwrap_err();
            assert!(error.contains(why), "{pin}: {error}");
            assert!(error.contains("HOST:PORT:ADDRESS"), "{error}");
        }
    }

    #[test]
    fn an_answer_is_reused_without_asking_again() {
        let resolver = Remembering::default();
        let planted: ResolvedSocketAddrs = {
            let mut a = DefaultResolver::default().empty();
            a.push("10.1.2.3:5000".parse().unwrap());
            a
        };
        resolver
            .known
            .lock()
            .unwrap()
            .insert("registry.invalid:5000".to_string(), planted);
        assert_eq!(
            resolve(&resolver, "registry.invalid:5000"),
            vec!["10.1.2.3:5000".parse::<SocketAddr>().unwrap()]
        );
    }
}
