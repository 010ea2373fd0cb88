//! A process's resident memory (Linux `/proc/<pid>/status`, `VmRSS`), to see what the
//! server spends per waiting long-poll.

#[derive(Debug, thiserror::Error)]
pub enum RssError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} has no VmRSS line")]
    Missing { path: String },
}

/// `VmRSS:   123456 kB` → 123456 (KiB).
pub fn vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => Some(value),
        Some(_) => None,
    }
}

/// The resident set of process `pid`, in KiB.
pub fn read_rss_kib(pid: u32) -> Result<u64, RssError> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).map_err(|source| RssError::Read {
        path: path.clone(),
        source,
    })?;
    vm_rss_kib(&status).ok_or(RssError::Missing { path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\tcoupon\nVmPeak:\t  900000 kB\nVmRSS:\t  123456 kB\nThreads:\t8\n";
        assert_eq!(vm_rss_kib(status), Some(123_456));
    }

    #[test]
    fn no_or_odd_vm_rss_is_none() {
        assert_eq!(vm_rss_kib("Name:\tkthreadd\n"), None);
        assert_eq!(vm_rss_kib("VmRSS:\t12 MB\n"), None);
        assert_eq!(vm_rss_kib("VmRSS:\tlots kB\n"), None);
    }

    #[test]
    fn this_process_has_a_resident_set() {
        let kib = read_rss_kib(std::process::id()).expect("own /proc status");
        assert!(kib > 0);
    }
}
