//! Dhan credentials: the client id and the access token, and where they come from.
//!
//! The token rolls daily (spec dhan-v2 §4.1), so the REST client and the order-update socket ask a
//! [`CredentialSource`] for the current pair on every call or connect, and ask it to reload when
//! the broker answers as if the token had expired. The token is an [`AccessToken`]: it has no
//! `Display`, its `Debug` is redacted, and the only way to read it is [`AccessToken::expose`],
//! which the transport calls when it writes a header or the socket login frame.

use std::fmt;
use std::sync::Arc;

use parking_lot::RwLock;

/// The Dhan access token (a JWT): a [`Secret`], never printed.
pub use crate::domain::Secret as AccessToken;

/// The pair every Dhan call carries. Both are secrets: `Debug` shows neither.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub client_id: String,
    pub access_token: AccessToken,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("client_id", &"***")
            .field("access_token", &self.access_token)
            .finish()
    }
}

impl Credentials {
    pub fn new(client_id: impl Into<String>, access_token: impl Into<String>) -> Credentials {
        Credentials { client_id: client_id.into(), access_token: AccessToken::new(access_token) }
    }
}

/// Why credentials could not be (re)loaded. Says where from, never the token.
#[derive(Debug, Clone, thiserror::Error)]
#[error("could not load Dhan credentials from {source_name}: {reason}")]
pub struct CredentialError {
    pub source_name: String,
    pub reason: String,
}

/// Where the current credentials come from. Shared by every thread that talks to Dhan.
pub trait CredentialSource: Send + Sync {
    /// The credentials to use now (cheap; called on every request).
    fn current(&self) -> Credentials;

    /// Calls `f` with the current credentials, borrowed: no copy of the pair (the REST
    /// client's path to the wire reads them on every order). `f` must be quick: it may run
    /// under the source's lock.
    fn with_current(&self, f: &mut dyn FnMut(&Credentials)) {
        f(&self.current());
    }

    /// Reads the credentials again from their origin (a file, the environment, a secret
    /// store) and returns the fresh pair. Called after the broker answered as if the token had
    /// expired. On error the previous pair stays current.
    fn reload(&self) -> Result<Credentials, CredentialError>;
}

/// Fixed credentials (tests, the simulator, one-shot commands). `reload` returns the same pair.
#[derive(Clone, Debug)]
pub struct StaticCredentials(Credentials);

impl StaticCredentials {
    pub fn new(creds: Credentials) -> StaticCredentials {
        StaticCredentials(creds)
    }
}

impl CredentialSource for StaticCredentials {
    fn current(&self) -> Credentials {
        self.0.clone()
    }

    fn with_current(&self, f: &mut dyn FnMut(&Credentials)) {
        f(&self.0);
    }

    fn reload(&self) -> Result<Credentials, CredentialError> {
        Ok(self.0.clone())
    }
}

type Loader = dyn Fn() -> Result<Credentials, CredentialError> + Send + Sync;

/// Credentials read by a loader function (e.g. from the secrets file named in the config) and
/// cached; `reload` calls the loader again. `set` replaces them directly (a control command
/// handing over the day's new token).
#[derive(Clone)]
pub struct ReloadableCredentials {
    current: Arc<RwLock<Credentials>>,
    loader: Arc<Loader>,
}

impl ReloadableCredentials {
    /// Loads once now; fails if the first load fails.
    pub fn new(
        loader: impl Fn() -> Result<Credentials, CredentialError> + Send + Sync + 'static,
    ) -> Result<ReloadableCredentials, CredentialError> {
        let first = loader()?;
        Ok(ReloadableCredentials {
            current: Arc::new(RwLock::new(first)),
            loader: Arc::new(loader),
        })
    }

    pub fn set(&self, creds: Credentials) {
        *self.current.write() = creds;
    }
}

impl fmt::Debug for ReloadableCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadableCredentials").field("current", &*self.current.read()).finish()
    }
}

impl CredentialSource for ReloadableCredentials {
    fn current(&self) -> Credentials {
        self.current.read().clone()
    }

    fn with_current(&self, f: &mut dyn FnMut(&Credentials)) {
        f(&self.current.read());
    }

    fn reload(&self) -> Result<Credentials, CredentialError> {
        let fresh = (self.loader)()?;
        *self.current.write() = fresh.clone();
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_token_or_the_client_id() {
        let c = Credentials::new("1000000001", "eyJ-secret-token");
        let text = format!("{c:?} {:?}", c.access_token);
        assert!(!text.contains("eyJ-secret-token"), "{text}");
        assert!(!text.contains("1000000001"), "{text}");
        let r = ReloadableCredentials::new(move || Ok(c.clone())).unwrap();
        let text = format!("{r:?}");
        assert!(!text.contains("eyJ-secret-token") && !text.contains("1000000001"), "{text}");
    }

    #[test]
    fn reload_replaces_the_current_pair_and_keeps_it_on_error() {
        let n = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let n2 = n.clone();
        let src = ReloadableCredentials::new(move || {
            let i = n2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if i == 2 {
                return Err(CredentialError { source_name: "test".into(), reason: "gone".into() });
            }
            Ok(Credentials::new("1", format!("t{i}")))
        })
        .unwrap();
        assert_eq!(src.current().access_token.expose(), "t0");
        assert_eq!(src.reload().unwrap().access_token.expose(), "t1");
        assert!(src.reload().is_err());
        assert_eq!(src.current().access_token.expose(), "t1");
    }
}
