//! The building blocks of validation: a decimal kept as the text it was written as, a charge
//! rate in millionths of a percent, and the collector that turns raw values into typed ones
//! while recording every problem with its key path.
//!
//! `raw.rs` deserializes into these loose shapes, `validate.rs` calls the collector's parsers,
//! and `mod.rs` reports what it collected.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use chrono::NaiveDate;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::domain::money::{MoneyError, parse_scaled};
use crate::domain::{Bp, InstrumentKey, Paise, TimeOfDay};
use crate::pnl::charges::Rate;

use super::{ConfigError, ConfigErrors};

/// A decimal number as written in the file: a TOML integer, float or string, kept as text so
/// that it is parsed exactly (never through a float). A TOML float is turned back into the
/// shortest text that reads as the same float (`12.345` stays `12.345`), so an over-precise
/// value is reported rather than silently rounded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Dec(pub String);

impl Dec {
    pub fn new(text: impl Into<String>) -> Dec {
        Dec(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Dec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Dec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Dec, D::Error> {
        struct DecVisitor;
        impl Visitor<'_> for DecVisitor {
            type Value = Dec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a decimal number (an integer, a float or a string such as \"2.5\")")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dec, E> {
                Ok(Dec(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dec, E> {
                Ok(Dec(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Dec, E> {
                // Rust's `{}` is the shortest text that reads back as the same f64 and never
                // uses an exponent: 12.345 → "12.345", 1e-7 → "0.0000001".
                Ok(Dec(format!("{v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dec, E> {
                Ok(Dec(v.trim().to_string()))
            }
        }
        d.deserialize_any(DecVisitor)
    }
}

fn places_word(places: u32) -> &'static str {
    match places {
        2 => "two",
        6 => "six",
        _ => "the allowed",
    }
}

/// Every duration in the config is at most a day: no timeout, backoff or age needs more, and
/// a bound keeps every conversion (seconds to milliseconds, durations to instants) exact.
pub const MAX_DURATION_SECS: i64 = 86_400;

/// Collects every error found while turning the raw file into typed values. Each parser
/// records a problem under its key path and returns `None`, so validation goes on and the
/// caller reports everything at once.
#[derive(Debug, Default)]
pub struct Collector {
    errors: Vec<ConfigError>,
}

impl Collector {
    pub fn new() -> Collector {
        Collector::default()
    }

    pub fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::new(key, message));
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn into_errors(self) -> ConfigErrors {
        ConfigErrors::new(None, self.errors)
    }

    fn decimal(&mut self, key: &str, value: &Dec, places: u32) -> Option<i64> {
        match parse_scaled(value.as_str(), places) {
            Ok(v) => Some(v),
            Err(MoneyError::TooPrecise { .. }) => {
                self.push(key, format!("{value} has more than {} decimals", places_word(places)));
                None
            }
            Err(MoneyError::OutOfRange(_)) => {
                self.push(key, format!("{value} is out of range"));
                None
            }
            Err(_) => {
                self.push(key, format!("{:?} is not a decimal number", value.as_str()));
                None
            }
        }
    }

    /// A percentage with at most two decimals, within `[min, max]` (both in percent × 100).
    pub fn pct(&mut self, key: &str, value: &Dec, min: Bp, max: Bp, why: &str) -> Option<Bp> {
        let bp = Bp(self.decimal(key, value, 2)?);
        if bp < min || bp > max {
            self.push(key, format!("{value} is out of range: {why}"));
            return None;
        }
        Some(bp)
    }

    /// Rupees with at most two decimals, at least `min`.
    pub fn rupees(&mut self, key: &str, value: &Dec, min: Paise, why: &str) -> Option<Paise> {
        let p = Paise(self.decimal(key, value, 2)?);
        if p < min {
            self.push(key, format!("{value} is out of range: {why}"));
            return None;
        }
        Some(p)
    }

    /// A charge rate: a percentage with at most six decimals, between 0 and 100.
    pub fn rate(&mut self, key: &str, value: &Dec) -> Option<Rate> {
        let r = Rate(self.decimal(key, value, Rate::PLACES)?);
        if r.0 < 0 || r > Rate::HUNDRED {
            self.push(key, format!("{value} is out of range: a rate is between 0 and 100 percent"));
            return None;
        }
        Some(r)
    }

    /// An integer within `[min, max]`.
    pub fn int(&mut self, key: &str, value: i64, min: i64, max: i64) -> Option<i64> {
        if value < min || value > max {
            // Counts and durations have no real upper bound: say only what is wrong.
            let unbounded = max >= i64::from(u32::MAX);
            let msg = if unbounded && value < min {
                format!("{value} is out of range: must be at least {min}")
            } else if unbounded {
                format!("{value} is out of range: must be at most {max}")
            } else {
                format!("{value} is out of range: must be between {min} and {max}")
            };
            self.push(key, msg);
            return None;
        }
        Some(value)
    }

    /// A count that must be at least `min`.
    pub fn count(&mut self, key: &str, value: i64, min: i64) -> Option<u32> {
        self.int(key, value, min, i64::from(u32::MAX)).map(|v| v as u32)
    }

    /// A size (queue capacity, bytes) that must be at least `min`.
    pub fn size(&mut self, key: &str, value: i64, min: i64) -> Option<usize> {
        self.int(key, value, min, i64::from(u32::MAX)).map(|v| v as usize)
    }

    /// Milliseconds, at least `min_ms` and at most [`MAX_DURATION_SECS`].
    pub fn millis(&mut self, key: &str, value: i64, min_ms: i64) -> Option<Duration> {
        self.duration(key, value, min_ms, MAX_DURATION_SECS * 1_000)
            .map(|v| Duration::from_millis(v as u64))
    }

    /// Seconds, at least `min_secs` and at most [`MAX_DURATION_SECS`].
    pub fn secs(&mut self, key: &str, value: i64, min_secs: i64) -> Option<Duration> {
        self.duration(key, value, min_secs, MAX_DURATION_SECS)
            .map(|v| Duration::from_secs(v as u64))
    }

    fn duration(&mut self, key: &str, value: i64, min: i64, max: i64) -> Option<i64> {
        if value > max {
            self.push(key, format!("{value} is out of range: must be at most {max} (a day)"));
            return None;
        }
        self.int(key, value, min, i64::MAX)
    }

    /// `HH:MM` or `HH:MM:SS`.
    pub fn time_of_day(&mut self, key: &str, text: &str) -> Option<TimeOfDay> {
        text.parse::<TimeOfDay>().map_err(|e| self.push(key, e)).ok()
    }

    /// An ISO date, `2026-01-26`.
    pub fn date(&mut self, key: &str, text: &str) -> Option<NaiveDate> {
        NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
            .map_err(|_| self.push(key, format!("{text:?} is not a date (YYYY-MM-DD)")))
            .ok()
    }

    /// `SEGMENT:SECURITY_ID`.
    pub fn instrument(&mut self, key: &str, text: &str) -> Option<InstrumentKey> {
        text.parse::<InstrumentKey>().map_err(|e| self.push(key, e.to_string())).ok()
    }

    /// An IP address and port, `127.0.0.1:8080` (port 0 lets the system pick one).
    pub fn socket_addr(&mut self, key: &str, text: &str) -> Option<SocketAddr> {
        text.trim()
            .parse::<SocketAddr>()
            .map_err(|_| {
                self.push(
                    key,
                    format!("{text:?} is not an IP address and port (e.g. \"127.0.0.1:8080\")"),
                )
            })
            .ok()
    }

    /// A URL whose scheme is one of `schemes`. The message never repeats the URL's userinfo.
    pub fn url(&mut self, key: &str, text: &str, schemes: &[&str]) -> Option<Url> {
        let url = match Url::parse(text.trim()) {
            Ok(u) => u,
            Err(e) => {
                self.push(key, format!("not a URL ({e})"));
                return None;
            }
        };
        if !schemes.contains(&url.scheme()) {
            let want: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
            self.push(
                key,
                format!(
                    "scheme {}:// is not allowed here (use {})",
                    url.scheme(),
                    want.join(" or ")
                ),
            );
            return None;
        }
        if url.host_str().is_none_or(str::is_empty) {
            self.push(key, "the URL has no host");
            return None;
        }
        Some(url)
    }
}

/// Whether a URL names this machine (`127.0.0.0/8`, `::1` or `localhost`).
pub fn is_loopback_url(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_floats_keep_their_shortest_text() {
        #[derive(Deserialize)]
        struct T {
            a: Dec,
            b: Dec,
            c: Dec,
            d: Dec,
        }
        let t: T = toml::from_str("a = 12.345\nb = 10\nc = \"2.5\"\nd = 0.1\n").unwrap();
        assert_eq!(
            (t.a.as_str(), t.b.as_str(), t.c.as_str(), t.d.as_str()),
            ("12.345", "10", "2.5", "0.1")
        );
    }

    #[test]
    fn percentage_with_three_decimals_is_reported_as_written() {
        let mut c = Collector::new();
        assert_eq!(c.pct("risk.stop_loss_pct", &Dec::new("12.345"), Bp(0), Bp(10_000), ""), None);
        let errs = c.into_errors();
        assert_eq!(errs.lines(), vec!["risk.stop_loss_pct: 12.345 has more than two decimals"]);
    }

    #[test]
    fn percentages_within_two_decimals_become_basis_points() {
        let cases = [("10", 1000), ("2.5", 250), ("0.03", 3), ("12.50", 1250), ("0", 0)];
        for (text, bp) in cases {
            let mut c = Collector::new();
            assert_eq!(c.pct("k", &Dec::new(text), Bp(0), Bp(10_000), ""), Some(Bp(bp)), "{text}");
        }
    }

    #[test]
    fn charge_rates_take_six_decimals_and_no_more() {
        let mut c = Collector::new();
        assert_eq!(c.rate("k", &Dec::new("0.03503")), Some(Rate(35_030)));
        assert_eq!(c.rate("k", &Dec::new("0.0001")), Some(Rate(100)));
        assert_eq!(c.rate("k", &Dec::new("18")), Some(Rate(18_000_000)));
        assert!(c.is_empty());
        assert_eq!(c.rate("charges.sebi_pct", &Dec::new("0.0000001")), None);
        assert_eq!(c.rate("charges.gst_pct", &Dec::new("101")), None);
        assert_eq!(
            c.into_errors().lines(),
            vec![
                "charges.sebi_pct: 0.0000001 has more than six decimals",
                "charges.gst_pct: 101 is out of range: a rate is between 0 and 100 percent",
            ]
        );
    }

    #[test]
    fn urls_are_checked_for_scheme_and_host() {
        let mut c = Collector::new();
        assert!(c.url("k", "wss://api-feed.dhan.co", &["ws", "wss"]).is_some());
        assert!(c.url("feed.url", "https://api-feed.dhan.co", &["ws", "wss"]).is_none());
        assert!(c.url("broker.rest_url", "not a url", &["https"]).is_none());
        let lines = c.into_errors().lines();
        assert_eq!(lines[0], "feed.url: scheme https:// is not allowed here (use ws:// or wss://)");
        assert!(lines[1].starts_with("broker.rest_url: not a URL"), "{}", lines[1]);
    }

    #[test]
    fn loopback_urls_are_recognised() {
        for (u, want) in [
            ("http://127.0.0.1:0/v2", true),
            ("ws://[::1]:9000", true),
            ("ws://localhost:1", true),
            ("https://api.dhan.co/v2", false),
            ("ws://10.0.0.1:80", false),
        ] {
            assert_eq!(is_loopback_url(&Url::parse(u).unwrap()), want, "{u}");
        }
    }
}
