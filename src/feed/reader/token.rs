//! The access token and where the reader gets it. The token is a secret: its `Debug` is
//! redacted and only the connect step ever reads it, to build the URL.

/// A Dhan access token. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    pub fn new(token: impl Into<String>) -> AccessToken {
        AccessToken(token.into())
    }

    /// The token itself, for the URL only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken(***)")
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_token_debug_is_redacted() {
        assert_eq!(format!("{:?}", AccessToken::new("eyJsecret")), "AccessToken(***)");
    }
}
