//! Host resolution for the REST client without a lookup on the hot path.
//!
//! ureq resolves the URL's host before every request, even one that reuses a pooled
//! connection, and with a timeout set (ours always is) it does so on a thread it spawns per
//! request: ≈ 100–250 µs of an order's path on a small VM for an IP literal, a DNS round
//! trip for a host name. [`CachedResolver`] answers an IP literal by parsing it, and a host
//! name from a cache refreshed at most every `ttl` (ureq's resolver on a miss). The client's
//! fresh-connection agent, used once after a failed connect, keeps ureq's own resolver, so a
//! changed address is looked up again there.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a host name's addresses are reused.
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub(crate) struct CachedResolver {
    lookup: DefaultResolver,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, ResolvedSocketAddrs)>>,
}

impl CachedResolver {
    pub(crate) fn new(ttl: Duration) -> CachedResolver {
        CachedResolver { lookup: DefaultResolver::default(), ttl, cache: Mutex::default() }
    }
}

/// `host:port` of the URI (the scheme's default port when it has none).
fn host_and_port(uri: &Uri) -> Option<String> {
    DefaultResolver::host_and_port(uri.scheme()?, uri.authority()?)
}

impl Resolver for CachedResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let Some(key) = host_and_port(uri) else {
            return self.lookup.resolve(uri, config, timeout);
        };
        // An IP literal (`[::1]:443` too) needs no lookup.
        if let Ok(addr) = key.parse::<SocketAddr>() {
            let mut out = self.empty();
            out.push(addr);
            return Ok(out);
        }
        if let Some((at, addrs)) = self.cache.lock().get(&key)
            && at.elapsed() < self.ttl
        {
            return Ok(addrs.clone());
        }
        let addrs = self.lookup.resolve(uri, config, timeout)?;
        self.cache.lock().insert(key, (Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(r: &CachedResolver, url: &str) -> Vec<SocketAddr> {
        let uri: Uri = url.parse().expect("uri");
        let config = ureq::Agent::config_builder().build();
        let timeout = NextTimeout {
            after: ureq::unversioned::transport::time::Duration::from_secs(1),
            reason: ureq::Timeout::Resolve,
            per_read: None,
            per_write: None,
        };
        r.resolve(&uri, &config, timeout).expect("resolves").to_vec()
    }

    #[test]
    fn ip_literals_are_parsed_and_host_names_cached() {
        let r = CachedResolver::new(DEFAULT_TTL);
        assert_eq!(
            resolve(&r, "http://127.0.0.1:8443/v2/orders"),
            vec!["127.0.0.1:8443".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            resolve(&r, "https://[::1]/v2"),
            vec!["[::1]:443".parse::<SocketAddr>().unwrap()]
        );
        assert!(r.cache.lock().is_empty(), "literals are not cached: nothing to look up");
        let first = resolve(&r, "http://localhost:9000/v2");
        assert!(!first.is_empty());
        assert!(r.cache.lock().contains_key("localhost:9000"));
        assert_eq!(resolve(&r, "http://localhost:9000/v2/other"), first, "from the cache");
    }
}
