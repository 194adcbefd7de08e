//! One engine per data directory: `scalper run` holds an exclusive `flock(2)` on
//! `<data_dir>/lock` for its whole life, taken before anything else touches the directory
//! (control token, `http.addr`, store, order journal). The holder's pid is written into the
//! file so that a refused second process can name it.
//!
//! The lock belongs to the open file: it goes away when the process ends, however it ends
//! (a SIGKILL included), so a stale file never blocks a restart. The file itself is never
//! deleted: deleting it would let a third process lock a fresh inode while a second still
//! waits on the old one.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "lock";

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

/// Why the lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it; its pid as it wrote it, when readable.
    Held {
        path: PathBuf,
        holder: Option<u32>,
    },
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

impl std::fmt::Display for LockError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LockError::Held { path, holder: Some(pid) } => write!(
                f,
                "the data directory {} is in use by another scalper process (pid {pid}, lock {}); one engine per data directory",
                path.parent().unwrap_or(path).display(),
                path.display()
            ),
            LockError::Held { path, holder: None } => write!(
                f,
                "the data directory {} is in use by another scalper process (pid unknown, lock {}); one engine per data directory",
                path.parent().unwrap_or(path).display(),
                path.display()
            ),
            LockError::Io { path, error } => write!(f, "cannot lock {}: {error}", path.display()),
        }
    }
}

impl std::error::Error for LockError {}

impl DataDirLock {
    /// Takes the lock of `data_dir` (which must exist) without waiting, and writes this
    /// process's pid into it.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, LockError> {
        let path = data_dir.join(LOCK_FILE);
        let io = |error| LockError::Io { path: path.clone(), error };
        // Not truncated on open: until the lock is ours, the holder's pid must stay readable.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        // SAFETY: flock(2) on a descriptor this function owns for the call's duration.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
                let mut text = String::new();
                let holder =
                    file.read_to_string(&mut text).ok().and_then(|_| text.trim().parse().ok());
                return Err(LockError::Held { path, holder });
            }
            return Err(io(error));
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(DataDirLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().unwrap();
        let held = DataDirLock::acquire(dir.path()).unwrap();
        let text = std::fs::read_to_string(held.path()).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        // flock locks belong to the open file description: a second open in this process
        // conflicts just as another process would.
        match DataDirLock::acquire(dir.path()) {
            Err(LockError::Held { holder, .. }) => assert_eq!(holder, Some(std::process::id())),
            other => panic!("expected Held, got {other:?}"),
        }
        let err = DataDirLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        assert_eq!(std::fs::read_to_string(held.path()).unwrap(), text, "the holder's pid stays");
        drop(held);
        let again = DataDirLock::acquire(dir.path()).expect("free once the holder is gone");
        drop(again);
    }
}
