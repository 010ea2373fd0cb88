//! Where the deployment's secret key comes from: an env var, a key file, or (embedded
//! mode) a file created in the data dir on first start.

use std::io::Write;
use std::path::Path;

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
}

/// Reads the key at `path`, creating it (mode 0600) when it does not exist yet.
pub fn load_or_create(path: &Path) -> Result<SecretKey, SecretFileError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text),
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
    parse(path, &text)
}

fn parse(path: &Path, text: &str) -> Result<SecretKey, SecretFileError> {
    SecretKey::from_hex(text).map_err(|source| SecretFileError::Invalid {
        path: path.display().to_string(),
        source,
    })
}

fn create(path: &Path) -> Result<SecretKey, SecretFileError> {
    let key = SecretKey::generate();
    let error = |source| SecretFileError::Create {
        path: path.display().to_string(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(error)?;
    file.write_all(format!("{}\n", key.to_hex()).as_bytes())
        .map_err(error)?;
    file.sync_all().map_err(error)?;
    tracing::info!(path = %path.display(), "created a new secret key; back it up with the data");
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let first = load_or_create(&path).unwrap();
        let second = load_or_create(&path).unwrap();
        assert_eq!(first.to_hex(), second.to_hex());
        std::fs::write(&path, "short").unwrap();
        assert!(matches!(load(&path), Err(SecretFileError::Invalid { .. })));
    }
}
