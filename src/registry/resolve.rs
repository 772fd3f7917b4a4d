/*!
Host names resolved once per process.

ureq resolves the host before every request, even one that goes out on a pooled connection, and
with a timeout set it does so on a new thread each time. A push makes dozens of requests to one
registry (and perhaps a token server): this resolver asks the system once per host and port and
answers from memory after that. A push lasts minutes at most, so the addresses stay good; a
lookup that fails is not remembered and is tried again by the next request.
*/

use std::collections::HashMap;
use std::net::SocketAddr;
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

impl Remembering {
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
        let Some(key) = key else {
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
