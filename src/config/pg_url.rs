//! The TLS options of a PostgreSQL connection string, as libpq reads them.
//!
//! The driver understands `sslmode=disable|prefer|require` only and refuses any other key it
//! does not know, so [`split_tls`] takes `sslmode` (all five libpq values) and `sslrootcert`
//! out of a `postgresql://` URL or a `key=value` string and hands back the rest for the driver.
//! Pure text handling; the store builds the TLS connector from the result.

use std::path::PathBuf;

/// `sslmode`, with libpq's meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgSslMode {
    /// Plain TCP only.
    Disable,
    /// TLS when the server offers it, plain otherwise; the certificate is not checked (the
    /// default, as in libpq).
    Prefer,
    /// TLS or no connection; the certificate is not checked unless `sslrootcert` is given
    /// (then as `VerifyCa`, as libpq does).
    Require,
    /// TLS with the certificate chain checked against the roots, whatever name it carries.
    VerifyCa,
    /// TLS with the chain checked and the host name matched against the certificate.
    VerifyFull,
}

impl PgSslMode {
    fn parse(value: &str) -> Option<PgSslMode> {
        Some(match value {
            "disable" => PgSslMode::Disable,
            "prefer" => PgSslMode::Prefer,
            "require" => PgSslMode::Require,
            "verify-ca" => PgSslMode::VerifyCa,
            "verify-full" => PgSslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// Where the trusted roots for `verify-ca`/`verify-full` come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PgRoots {
    /// The bundled web PKI roots (no `sslrootcert`, or `sslrootcert=system`).
    WebPki,
    /// A PEM file of one or more CA certificates.
    File(PathBuf),
}

/// The TLS part of a connection string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgTls {
    pub mode: PgSslMode,
    pub roots: PgRoots,
}

impl PgTls {
    /// Whether the server certificate is checked at all.
    pub fn verifies(&self) -> bool {
        match self.mode {
            PgSslMode::Disable | PgSslMode::Prefer => false,
            PgSslMode::Require => matches!(self.roots, PgRoots::File(_)),
            PgSslMode::VerifyCa | PgSslMode::VerifyFull => true,
        }
    }
}

/// Splits `sslmode` and `sslrootcert` out of `text` (a `postgres://`/`postgresql://` URL or
/// libpq `key=value` pairs). Returns the rest, for the driver, and the TLS options. The error
/// never quotes the text (it may carry a password).
pub fn split_tls(text: &str) -> Result<(String, PgTls), String> {
    let mut mode = None;
    let mut root = None;
    let mut take = |key: &str, value: &str| -> Result<bool, String> {
        match key {
            "sslmode" => {
                mode = Some(PgSslMode::parse(value).ok_or_else(|| {
                    format!(
                        "sslmode {value:?} is not one of disable, prefer, require, verify-ca, verify-full"
                    )
                })?);
                Ok(true)
            }
            "sslrootcert" => {
                if value.is_empty() {
                    return Err("sslrootcert is empty".to_string());
                }
                root = Some(value.to_string());
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let trimmed = text.trim();
    let rest = if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        split_url(trimmed, &mut take)?
    } else {
        split_pairs(trimmed, &mut take)?
    };
    let roots = match root.as_deref() {
        None | Some("system") => PgRoots::WebPki,
        Some(path) => PgRoots::File(PathBuf::from(path)),
    };
    Ok((rest, PgTls { mode: mode.unwrap_or(PgSslMode::Prefer), roots }))
}

type Take<'a> = dyn FnMut(&str, &str) -> Result<bool, String> + 'a;

/// The query of a URL, without the parameters `take` consumes.
fn split_url(url: &str, take: &mut Take<'_>) -> Result<String, String> {
    let (head, query) = match url.split_once('?') {
        None => return Ok(url.to_string()),
        Some(parts) => parts,
    };
    let mut kept = Vec::new();
    for segment in query.split('&').filter(|s| !s.is_empty()) {
        let (key, value) = url::form_urlencoded::parse(segment.as_bytes())
            .next()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .unwrap_or_default();
        if !take(&key, &value)? {
            kept.push(segment);
        }
    }
    Ok(if kept.is_empty() { head.to_string() } else { format!("{head}?{}", kept.join("&")) })
}

/// `key = value` pairs (values bare or single-quoted with `\` escapes, as libpq writes them),
/// without the pairs `take` consumes; the rest is written back quoted.
fn split_pairs(text: &str, take: &mut Take<'_>) -> Result<String, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') || key.is_empty() {
            return Err("not a PostgreSQL connection string (expected key=value pairs)".into());
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err("unterminated quoted value in the connection string".into()),
                    Some('\'') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => {
                            return Err("unterminated quoted value in the connection string".into());
                        }
                    },
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(next) = chars.next() {
                        value.push(next);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        if !take(&key, &value)? {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            out.push(format!("{key}='{quoted}'"));
        }
    }
    Ok(out.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str) -> (String, PgSslMode, PgRoots) {
        let (rest, tls) = split_tls(text).unwrap();
        (rest, tls.mode, tls.roots)
    }

    #[test]
    fn urls_lose_only_the_tls_parameters() {
        let cases = [
            (
                "postgresql://u@h:5432/db",
                "postgresql://u@h:5432/db",
                PgSslMode::Prefer,
                PgRoots::WebPki,
            ),
            (
                "postgresql://u@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
                "postgresql://u@h/db",
                PgSslMode::VerifyFull,
                PgRoots::File("/etc/ca.pem".into()),
            ),
            (
                "postgres://u@h/db?application_name=x&sslmode=require&connect_timeout=3",
                "postgres://u@h/db?application_name=x&connect_timeout=3",
                PgSslMode::Require,
                PgRoots::WebPki,
            ),
            (
                "postgres://u@h/db?sslmode=disable",
                "postgres://u@h/db",
                PgSslMode::Disable,
                PgRoots::WebPki,
            ),
            (
                "postgres://u@h/db?sslmode=verify-ca&sslrootcert=system",
                "postgres://u@h/db",
                PgSslMode::VerifyCa,
                PgRoots::WebPki,
            ),
        ];
        for (text, rest, mode, roots) in cases {
            assert_eq!(split(text), (rest.to_string(), mode, roots), "{text}");
        }
    }

    #[test]
    fn pairs_lose_only_the_tls_parameters() {
        let (rest, mode, roots) = split(
            "host=db.example user=scalper sslmode = verify-full sslrootcert='/a b/ca.pem' dbname=x",
        );
        assert_eq!(rest, "host='db.example' user='scalper' dbname='x'");
        assert_eq!(mode, PgSslMode::VerifyFull);
        assert_eq!(roots, PgRoots::File("/a b/ca.pem".into()));
        let (rest, mode, _) = split("host=h application_name='it\\'s'");
        assert_eq!(rest, "host='h' application_name='it\\'s'");
        assert_eq!(mode, PgSslMode::Prefer);
        // What is written back parses to the same values.
        let cfg: postgres::Config = rest.parse().unwrap();
        assert_eq!(cfg.get_application_name(), Some("it's"));
    }

    #[test]
    fn bad_tls_options_are_refused_without_quoting_the_text() {
        for text in [
            "postgres://u:hunter2@h/db?sslmode=verify-everything",
            "host=h password=hunter2 sslmode=allow-ish",
            "host=h password='hunter2",
            "postgres://u:hunter2@h/db?sslrootcert=",
        ] {
            let err = split_tls(text).unwrap_err();
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn verification_follows_libpq() {
        let tls = |mode, roots| PgTls { mode, roots };
        let file = PgRoots::File("/ca.pem".into());
        assert!(!tls(PgSslMode::Prefer, file.clone()).verifies());
        assert!(!tls(PgSslMode::Require, PgRoots::WebPki).verifies());
        assert!(tls(PgSslMode::Require, file).verifies());
        assert!(tls(PgSslMode::VerifyCa, PgRoots::WebPki).verifies());
        assert!(tls(PgSslMode::VerifyFull, PgRoots::WebPki).verifies());
    }
}
