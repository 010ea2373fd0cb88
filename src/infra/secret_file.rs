//! Where the deployment's secret key comes from: an env var, a key file, or (embedded
//! mode) a file created in the data dir on first start.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::domain::SecretKey;
use crate::domain::secret::SecretKeyError;

#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("cannot read secret key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot create secret key file {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error("secret key in {path}: {source}")]
    Invalid {
        path: String,
        source: SecretKeyError,
    },
    #[error(
        "secret key file {path} is {what}, but the data dir holds data written with a key: \
         restore the original secret.key from your backup (with another key every earlier \
         ticket id is unreadable and the log no longer reproduces its codes)"
    )]
    Lost { path: String, what: &'static str },
}

/// Reads the key of a data dir. Only while the dir holds no data may it be created: when
/// missing, or when empty (an earlier version that ran out of disk left a 0-byte file).
pub fn load_for_data_dir(path: &Path, holds_data: bool) -> Result<SecretKey, SecretFileError> {
    let lost = |what| SecretFileError::Lost {
        path: path.display().to_string(),
        what,
    };
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() && holds_data => Err(lost("empty")),
        Ok(text) if text.trim().is_empty() => {
            tracing::warn!(path = %path.display(), "the secret key file is empty and the data dir holds no data: replacing it");
            create(path)
        }
        Ok(text) => parse_and_check(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && holds_data => Err(lost("missing")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path),
        Err(source) => Err(SecretFileError::Read {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Reads an existing key file.
pub fn load(path: &Path) -> Result<SecretKey, SecretFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretFileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_and_check(path, &text)
}

fn parse_and_check(path: &Path, text: &str) -> Result<SecretKey, SecretFileError> {
    let key = SecretKey::from_hex(text).map_err(|source| SecretFileError::Invalid {
        path: path.display().to_string(),
        source,
    })?;
    #[cfg(unix)]
    if let Some(mode) = super::data_dir::open_to_others(path) {
        tracing::warn!(path = %path.display(), mode = %format!("{mode:o}"),
            "the secret key file is readable by group or others: `chmod 600` it");
    }
    Ok(key)
}

fn create(path: &Path) -> Result<SecretKey, SecretFileError> {
    let key = SecretKey::generate();
    write_atomically(path, format!("{}\n", key.to_hex()).as_bytes()).map_err(|source| {
        SecretFileError::Create {
            path: path.display().to_string(),
            source,
        }
    })?;
    tracing::info!(path = %path.display(), "created a new secret key; back it up with the data");
    Ok(key)
}

/// Writes `contents` (mode 0600) to a temp file beside `path`, syncs it, renames it over
/// `path` and syncs the dir: a crash or a full disk leaves no key or the whole key, never
/// a partial one that would block every later start.
fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let temp = PathBuf::from(temp);
    // A leftover of a crash in this very step: it never held a key in use.
    match std::fs::remove_file(&temp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let written = write_new(&temp, contents).and_then(|()| std::fs::rename(&temp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

fn write_new(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let first = load_for_data_dir(&path, false).unwrap();
        let second = load_for_data_dir(&path, true).unwrap();
        assert_eq!(first.to_hex(), second.to_hex());
        assert!(!dir.path().join("secret.key.tmp").exists());
        std::fs::write(&path, "short").unwrap();
        assert!(matches!(load(&path), Err(SecretFileError::Invalid { .. })));
    }

    #[test]
    fn never_created_on_a_data_dir_holding_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        assert!(matches!(
            load_for_data_dir(&path, true),
            Err(SecretFileError::Lost {
                what: "missing",
                ..
            })
        ));
        std::fs::write(&path, "").unwrap();
        assert!(matches!(
            load_for_data_dir(&path, true),
            Err(SecretFileError::Lost { what: "empty", .. })
        ));
        let replaced = load_for_data_dir(&path, false).unwrap();
        assert_eq!(load(&path).unwrap().to_hex(), replaced.to_hex());
    }
}
