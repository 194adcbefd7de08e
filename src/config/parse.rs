//! The TOML layer: config text → [`RawConfig`], collecting every structural problem (unknown
//! keys and tables, wrongly typed values, unknown enum variants, missing fields in an array
//! entry) instead of stopping at the first.
//!
//! serde stops at the first error, so the document is deserialized again after taking out the
//! offending key, until it deserializes; each removed key then has its default, which lets
//! validation check the rest of the file. A problem inside an array removes the whole array
//! (so later entries keep their indices in the messages). Syntax errors end it: nothing past a
//! broken line can be trusted.

use serde_path_to_error::Segment;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::raw::RawConfig;
use super::{ConfigError, ConfigErrors};

/// The parsed file, possibly with keys taken out, and what was wrong with it.
pub(super) struct Parsed {
    pub raw: RawConfig,
    /// Structural errors, in the order they were found.
    pub errors: Vec<ConfigError>,
    /// Key paths taken out of the document (their defaults were used instead).
    pub removed: Vec<String>,
}

/// Parses `text`. `Err` only for a syntax error (or a problem that cannot be taken out).
pub(super) fn parse(text: &str) -> Result<Parsed, ConfigErrors> {
    let position = |span: Option<std::ops::Range<usize>>| span.map(|s| line_col(text, s.start));
    let mut doc = DeTable::parse(text).map_err(|e| {
        ConfigErrors::new(
            None,
            vec![ConfigError {
                key: String::new(),
                message: e.message().trim().to_string(),
                position: position(e.span()),
            }],
        )
    })?;
    let mut errors: Vec<ConfigError> = Vec::new();
    let mut removed = Vec::new();
    loop {
        let de = toml::Deserializer::from(doc.clone());
        let e = match serde_path_to_error::deserialize::<_, RawConfig>(de) {
            Ok(raw) => {
                // In file order (serde walks tables in key order).
                errors.sort_by_key(|e| e.position);
                return Ok(Parsed { raw, errors, removed });
            }
            Err(e) => e,
        };
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        let taken = remove(doc.get_mut(), e.path().iter());
        let inner = e.into_inner();
        errors.push(ConfigError {
            key,
            message: inner.message().trim().to_string(),
            position: position(inner.span()),
        });
        match taken {
            Some(path) => removed.push(path),
            // Nothing left to take out: report what was found so far.
            None => {
                errors.sort_by_key(|e| e.position);
                return Err(ConfigErrors::new(None, errors));
            }
        }
    }
}

/// Takes the key an error points at out of `table`: the last key of the path, or the key
/// holding an array when the path goes into one. Returns the removed key's dotted path.
fn remove<'a>(table: &mut DeTable<'_>, path: impl Iterator<Item = &'a Segment>) -> Option<String> {
    let mut keys = Vec::new();
    for segment in path {
        match segment {
            Segment::Map { key } => keys.push(key.as_str()),
            Segment::Seq { .. } => break,
            Segment::Enum { .. } | Segment::Unknown => return None,
        }
    }
    let (last, parents) = keys.split_last()?;
    let mut here = table;
    for key in parents {
        match here.iter_mut().find(|(k, _)| k.get_ref().as_ref() == *key) {
            Some((_, value)) => match value.get_mut() {
                DeValue::Table(t) => here = t,
                _ => return None,
            },
            None => return None,
        }
    }
    let key: Spanned<_> = here.keys().find(|k| k.get_ref().as_ref() == *last)?.clone();
    here.remove(&key)?;
    Some(keys.join("."))
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
