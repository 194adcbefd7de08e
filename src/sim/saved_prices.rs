//! The in-process simulator's last prices, kept in `<data_dir>/sim-prices.json` so that after
//! a restart of `make run` the random walk continues where it stopped: recovered positions
//! then see the market they left, not a jump back to the configured opening prices.
//!
//! [`PriceKeeper`] writes the price board on a cadence and once more when dropped (graceful
//! stop), each time to a temporary file that is then renamed over the old one, so a crash
//! leaves either the previous file or the new one. [`load`] reads it at start; a file that
//! does not parse or holds a non-positive price is refused as a whole (the caller warns and
//! starts from the configured prices).

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};
use serde::{Deserialize, Serialize};

use crate::domain::{InstrumentKey, Paise, Timestamp};
use crate::sim::prices::PriceBoard;

/// The file's name in the data directory.
pub const FILE_NAME: &str = "sim-prices.json";

/// How often the keeper writes the board.
pub const EVERY: Duration = Duration::from_secs(1);

const VERSION: u32 = 1;
/// Above any listed price (₹1 crore): a larger value is a damaged file.
const MAX_PRICE: Paise = Paise(1_000_000_000);

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedFile {
    version: u32,
    prices: Vec<SavedPrice>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SavedPrice {
    instrument: InstrumentKey,
    paise: Paise,
}

/// The saved prices in `path`: `Ok(None)` when there is no file, an error (for a warning)
/// when it cannot be read or is not a valid price file.
pub fn load(path: &Path) -> Result<Option<Vec<(InstrumentKey, Paise)>>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let file: SavedFile = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: not a price file: {e}", path.display()))?;
    if file.version != VERSION {
        return Err(format!("{}: version {} is not {VERSION}", path.display(), file.version));
    }
    let mut out = Vec::with_capacity(file.prices.len());
    for p in file.prices {
        if p.paise <= Paise::ZERO || p.paise > MAX_PRICE {
            return Err(format!(
                "{}: price {} paise of {} is out of range",
                path.display(),
                p.paise.0,
                p.instrument
            ));
        }
        out.push((p.instrument, p.paise));
    }
    Ok(Some(out))
}

/// Writes every price of `board` to `path` through a temporary file and a rename.
pub fn save(path: &Path, board: &PriceBoard) -> std::io::Result<()> {
    let prices = board
        .instruments()
        .into_iter()
        .filter_map(|k| board.get(k).map(|(paise, _)| SavedPrice { instrument: k, paise }))
        .collect();
    let json = serde_json::to_vec_pretty(&SavedFile { version: VERSION, prices })
        .map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&json)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Sets the saved prices on `board` (over the configured opening prices).
pub fn restore(board: &PriceBoard, prices: &[(InstrumentKey, Paise)], at: Timestamp) {
    for &(key, price) in prices {
        board.set(key, price, at);
    }
}

/// Writes the board every [`EVERY`] on its own thread, and a last time when dropped.
pub struct PriceKeeper {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
    board: PriceBoard,
}

impl PriceKeeper {
    pub fn start(
        path: PathBuf,
        board: PriceBoard,
        every: Duration,
    ) -> std::io::Result<PriceKeeper> {
        let (stop, stopped) = bounded::<()>(0);
        let thread = {
            let (path, board) = (path.clone(), board.clone());
            std::thread::Builder::new().name("sim-prices".into()).spawn(move || {
                let mut failing = false;
                // Returns on the stop signal (the sender dropped).
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    match save(&path, &board) {
                        Ok(()) => failing = false,
                        Err(e) if !failing => {
                            failing = true;
                            log::warn!(target: "sim", "cannot keep the simulator's prices in {}: {e}", path.display());
                        }
                        Err(_) => {}
                    }
                }
            })?
        };
        Ok(PriceKeeper { stop: Some(stop), thread: Some(thread), path, board })
    }
}

impl Drop for PriceKeeper {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Err(e) = save(&self.path, &self.board) {
            log::warn!(target: "sim", "cannot keep the simulator's prices in {}: {e}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Segment;

    const A: InstrumentKey = InstrumentKey::new(Segment::NseFno, 52175);
    const B: InstrumentKey = InstrumentKey::new(Segment::NseEq, 2885);

    #[test]
    fn saved_prices_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert_eq!(load(&path).unwrap(), None, "no file: nothing to restore");
        let board = PriceBoard::new();
        board.set(A, Paise(12_345), Timestamp(1));
        board.set(B, Paise(250_000), Timestamp(1));
        save(&path, &board).unwrap();
        assert!(!path.with_extension("json.tmp").exists(), "the temporary file is renamed");
        let mut got = load(&path).unwrap().unwrap();
        got.sort();
        let mut want = vec![(A, Paise(12_345)), (B, Paise(250_000))];
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn damaged_files_are_refused_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        for text in [
            "",
            "{",
            "[]",
            r#"{"version":2,"prices":[]}"#,
            r#"{"version":1,"prices":[{"instrument":"NSE_FNO:52175","paise":0}]}"#,
            r#"{"version":1,"prices":[{"instrument":"NSE_FNO:52175","paise":-5}]}"#,
            r#"{"version":1,"prices":[{"instrument":"NSE_FNO:52175","paise":100000000000}]}"#,
            r#"{"version":1,"prices":[{"instrument":"MARS:1","paise":100}]}"#,
            r#"{"version":1,"prices":[{"instrument":"NSE_FNO:52175","paise":1.5}]}"#,
        ] {
            std::fs::write(&path, text).unwrap();
            assert!(load(&path).is_err(), "{text:?} accepted");
        }
    }

    #[test]
    fn the_keeper_writes_on_its_cadence_and_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let board = PriceBoard::new();
        board.set(A, Paise(100), Timestamp(1));
        let keeper =
            PriceKeeper::start(path.clone(), board.clone(), Duration::from_millis(5)).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while load(&path).ok().flatten() != Some(vec![(A, Paise(100))]) {
            assert!(std::time::Instant::now() < deadline, "never written on the cadence");
            std::thread::sleep(Duration::from_millis(5));
        }
        board.set(A, Paise(105), Timestamp(2));
        drop(keeper);
        assert_eq!(load(&path).unwrap(), Some(vec![(A, Paise(105))]), "written at stop");
    }
}
