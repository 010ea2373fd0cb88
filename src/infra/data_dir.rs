//! The embedded mode's data dir: created readable by its owner only (it holds the secret
//! key and every coupon), and held by one process at a time. Two processes on one dir
//! would both append to the log and both run an issuing worker; only the offset fencing
//! would keep their counts exact, and their appends would collide.

use std::fs::{File, TryLockError};
use std::io::Write;
use std::path::Path;

/// The lock file in the data dir; it holds the holder's pid, for the refusal's message.
pub const LOCK_FILE: &str = "coupon.lock";

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("cannot create data dir {path}: {source}")]
    Create {
        path: String,
        source: std::io::Error,
    },
    #[error("data dir {path} is not writable: {file}: {source}")]
    NotWritable {
        path: String,
        file: String,
        source: std::io::Error,
    },
    #[error(
        "data dir {path} is in use by another coupon process (pid {holder}): stop that one, \
         or give this one another --data-dir"
    )]
    InUse { path: String, holder: String },
}

/// Held for the life of the process. The kernel releases a `flock` with the last
/// descriptor of its file, so any exit (kill -9 included) frees the dir; the stale pid
/// left in the file is overwritten by the next holder.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Creates `dir` (and missing parents) with mode 0700. An existing dir is left as it is
/// (it may be the operator's choice), with a warning when others can enter it.
pub fn create(dir: &Path) -> Result<(), DataDirError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|source| DataDirError::Create {
        path: dir.display().to_string(),
        source,
    })?;
    #[cfg(unix)]
    if let Some(mode) = open_to_others(dir) {
        tracing::warn!(data_dir = %dir.display(), mode = %format!("{mode:o}"),
            "the data dir is open to group or others: `chmod 700` it (it holds the secret key)");
    }
    Ok(())
}

/// The mode of `path` when group or others have any access to it.
#[cfg(unix)]
pub fn open_to_others(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

/// Takes the dir's lock or says who holds it; writes this process's pid into it.
pub fn lock(dir: &Path) -> Result<DataDirLock, DataDirError> {
    let path = dir.join(LOCK_FILE);
    let not_writable = |source| DataDirError::NotWritable {
        path: dir.display().to_string(),
        file: path.display().to_string(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path).map_err(not_writable)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(DataDirError::InUse {
                path: dir.display().to_string(),
                holder: holder(&path),
            });
        }
        Err(TryLockError::Error(source)) => return Err(not_writable(source)),
    }
    file.set_len(0).map_err(not_writable)?;
    file.write_all(format!("{}\n", std::process::id()).as_bytes())
        .map_err(not_writable)?;
    Ok(DataDirLock { _file: file })
}

/// The pid the holder wrote; it may not have written it yet in the instant after
/// taking the lock.
fn holder(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|pid| !pid.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().expect("dir");
        let first = lock(dir.path()).expect("first lock");
        let Err(DataDirError::InUse { holder, .. }) = lock(dir.path()) else {
            panic!("a second lock must be refused");
        };
        assert_eq!(holder, std::process::id().to_string());
        drop(first);
        assert!(lock(dir.path()).is_ok(), "free again once dropped");
    }

    #[cfg(unix)]
    #[test]
    fn a_new_data_dir_is_owner_only() {
        let dir = tempfile::tempdir().expect("dir");
        let data = dir.path().join("a").join("data");
        create(&data).expect("create");
        assert_eq!(open_to_others(&data), None);
    }
}
