//! Where the day's master comes from: a configured file, or a download (live mode only, with a
//! timeout, once per trading day) kept as the last good copy under `data_dir`, falling back to
//! that copy with a warning when the download fails.

use std::fs;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveDate;

use super::{Instruments, parse_master_sized};

/// Dhan's detailed master (spec dhan-v2 §8).
pub const DHAN_DETAILED_URL: &str = "https://images.dhan.co/api-data/api-scrip-master-detailed.csv";

/// How to find the master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterSource {
    /// `[instruments] master_file`: always used when set.
    pub file: Option<PathBuf>,
    /// `[instruments] master_url`: downloaded when `download` is true.
    pub url: String,
    /// Download at all (live mode).
    pub download: bool,
    pub timeout: Duration,
    /// `<data_dir>/instruments`: the last good copy and the day it was fetched.
    pub cache_dir: PathBuf,
}

/// Where a loaded table came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    Downloaded,
    /// Today's copy, already downloaded earlier today.
    CachedToday,
    /// An older copy after a failed download; the reason is the download's error.
    LastGood {
        fetched: Option<NaiveDate>,
        reason: String,
    },
}

/// Downloads `url` into `dest` within `timeout`.
pub type Fetch<'a> = &'a dyn Fn(&str, Duration, &Path) -> Result<(), String>;

impl MasterSource {
    pub fn cache_file(&self) -> PathBuf {
        self.cache_dir.join("master.csv")
    }

    fn cache_date_file(&self) -> PathBuf {
        self.cache_dir.join("master.date")
    }

    fn cached_date(&self) -> Option<NaiveDate> {
        let text = fs::read_to_string(self.cache_date_file()).ok()?;
        NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()
    }

    /// Whether a reload today would fetch anything new.
    pub fn needs_download(&self, today: NaiveDate) -> bool {
        self.file.is_none()
            && self.download
            && !self.url.is_empty()
            && self.cached_date() != Some(today)
    }

    /// The day's master: `Ok(None)` when nothing is configured or cached (the caller decides
    /// whether that is fatal). A configured file that cannot be read or parsed is an error.
    pub fn load(
        &self,
        today: NaiveDate,
        fetch: Fetch<'_>,
    ) -> Result<Option<(Instruments, Origin)>, String> {
        if let Some(path) = &self.file {
            let table = parse_file(path)?;
            return Ok(Some((table, Origin::File(path.clone()))));
        }
        let cache = self.cache_file();
        let reason = if self.download && !self.url.is_empty() {
            if self.cached_date() == Some(today) && cache.exists() {
                match parse_file(&cache) {
                    Ok(t) => return Ok(Some((t, Origin::CachedToday))),
                    Err(e) => {
                        log::warn!("instruments: today's copy is unusable ({e}); downloading")
                    }
                }
            }
            match self.download(today, fetch) {
                Ok(t) => return Ok(Some((t, Origin::Downloaded))),
                Err(e) => e,
            }
        } else {
            String::from("downloads are off (paper mode or no master_url)")
        };
        if !cache.exists() {
            if self.download {
                log::warn!("instruments: download failed and no last good copy exists: {reason}");
                return Err(format!("instrument master unavailable: {reason}; no last good copy"));
            }
            return Ok(None);
        }
        let table = parse_file(&cache)?;
        let fetched = self.cached_date();
        if self.download {
            log::warn!(
                "instruments: download failed ({reason}); using the last good copy from {}",
                fetched.map_or_else(|| "an unknown day".to_string(), |d| d.to_string())
            );
        }
        Ok(Some((table, Origin::LastGood { fetched, reason })))
    }

    /// Downloads into a temporary file, parses it, and only then makes it the last good copy.
    fn download(&self, today: NaiveDate, fetch: Fetch<'_>) -> Result<Instruments, String> {
        fs::create_dir_all(&self.cache_dir)
            .map_err(|e| format!("cannot create {}: {e}", self.cache_dir.display()))?;
        let tmp = self.cache_dir.join("master.csv.part");
        let result = fetch(&self.url, self.timeout, &tmp).and_then(|()| parse_file(&tmp));
        match result {
            Ok(table) => {
                fs::rename(&tmp, self.cache_file())
                    .map_err(|e| format!("cannot keep the downloaded master: {e}"))?;
                let _ = fs::write(self.cache_date_file(), format!("{today}\n"));
                Ok(table)
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

/// Parses a master file, streaming (a first pass counts the lines so that the table is
/// allocated once).
pub fn parse_file(path: &Path) -> Result<Instruments, String> {
    let open = || fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()));
    let lines = count_lines(open()?).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_master_sized(BufReader::with_capacity(1 << 16, open()?), lines)
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn count_lines(mut f: fs::File) -> std::io::Result<usize> {
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0usize;
    loop {
        let got = f.read(&mut buf)?;
        if got == 0 {
            return Ok(n);
        }
        n += buf[..got].iter().filter(|&&b| b == b'\n').count();
    }
}

/// The real download: HTTP GET with a whole-request timeout, streamed to `dest`.
pub fn http_fetch(url: &str, timeout: Duration, dest: &Path) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into();
    let mut resp = agent.get(url).call().map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(format!("GET {url} answered {status}"));
    }
    let mut file =
        fs::File::create(dest).map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
    let mut body = resp.body_mut().with_config().limit(512 * 1024 * 1024).reader();
    std::io::copy(&mut body, &mut file).map_err(|e| format!("GET {url}: {e}"))?;
    Ok(())
}
