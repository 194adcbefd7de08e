//! The feed URL (spec dhan-v2 §1.1): `<base>?version=2&token=…&clientId=…&authType=2`, its
//! redacted form for logs, and query parsing for the simulator. The token and the client id
//! are secrets: only [`feed_url`] ever puts them in a string, and that string goes to the
//! socket, nowhere else.

/// Percent-encodes everything outside RFC 3986's unreserved set. JWTs need no escaping, but a
/// token from a file must not be able to break the query.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes (and `+` as a space); a malformed escape is kept as it is.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `base` with a path (an HTTP request target must start with `/`: `wss://host` becomes
/// `wss://host/`) and the separator before the next query parameter.
fn with_path(base: &str) -> (String, char) {
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let has_path = base[after_scheme..].contains(['/', '?']);
    let base = if has_path { base.to_string() } else { format!("{base}/") };
    let sep = if base.contains('?') { '&' } else { '?' };
    (base, sep)
}

/// The v2 feed URL with all four query parameters.
pub fn feed_url(base: &str, token: &str, client_id: &str) -> String {
    let (base, sep) = with_path(base);
    format!(
        "{base}{sep}version=2&token={}&clientId={}&authType=2",
        percent_encode(token),
        percent_encode(client_id)
    )
}

/// The same URL with the token and the client id replaced by `***`, for logs and errors.
pub fn redacted_feed_url(base: &str) -> String {
    let (base, sep) = with_path(base);
    format!("{base}{sep}version=2&token=***&clientId=***&authType=2")
}

/// Removes every occurrence of `secret` (raw and percent-encoded) from `text`. Used on error
/// messages from libraries that might echo a URL.
pub fn scrub(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        return text.to_string();
    }
    text.replace(secret, "***").replace(&percent_encode(secret), "***")
}

/// The query parameters of a request target (`/path?a=1&b=2`), decoded, in order.
pub fn query_params(target: &str) -> Vec<(String, String)> {
    let Some((_, query)) = target.split_once('?') else { return Vec::new() };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_url_carries_all_four_parameters() {
        assert_eq!(
            feed_url("wss://api-feed.dhan.co", "eyJ.abc-_", "1000000001"),
            "wss://api-feed.dhan.co/?version=2&token=eyJ.abc-_&clientId=1000000001&authType=2"
        );
        assert_eq!(
            feed_url("ws://127.0.0.1:9000/?x=1", "t", "c"),
            "ws://127.0.0.1:9000/?x=1&version=2&token=t&clientId=c&authType=2"
        );
        assert_eq!(
            feed_url("ws://h:1/feed", "t", "c"),
            "ws://h:1/feed?version=2&token=t&clientId=c&authType=2"
        );
    }

    #[test]
    fn redacted_url_and_scrub_hide_the_token_and_the_client_id() {
        let url = redacted_feed_url("wss://api-feed.dhan.co");
        assert_eq!(url, "wss://api-feed.dhan.co/?version=2&token=***&clientId=***&authType=2");
        assert_eq!(scrub("bad url ws://h?token=a+b/c", "a+b/c"), "bad url ws://h?token=***");
        assert_eq!(scrub("bad url ws://h?token=a%2Bb%2Fc", "a+b/c"), "bad url ws://h?token=***");
    }

    #[test]
    fn odd_characters_survive_encode_then_query_parsing() {
        let token = "a+b/c=d&e f%";
        let url = feed_url("ws://h:1/", token, "c&1");
        let params = query_params(&url);
        assert!(params.contains(&("token".to_string(), token.to_string())), "{params:?}");
        assert!(params.contains(&("clientId".to_string(), "c&1".to_string())));
        assert_eq!(query_params("/no-query"), vec![]);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
