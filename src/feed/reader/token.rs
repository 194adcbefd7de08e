//! The access token and where the reader gets it. The token is a secret: its `Debug` is
//! redacted and only the connect step ever reads it, to build the URL.

pub use crate::domain::Secret as AccessToken;

/// Where the reader gets the current access token (a file, the config's secret store, …).
/// Called on first connect and whenever the server says the token is no good. The error text
/// must not contain the token.
pub trait TokenSource: Send + Sync {
    fn token(&self) -> Result<AccessToken, String>;
}

impl<F> TokenSource for F
where
    F: Fn() -> Result<AccessToken, String> + Send + Sync,
{
    fn token(&self) -> Result<AccessToken, String> {
        self()
    }
}
