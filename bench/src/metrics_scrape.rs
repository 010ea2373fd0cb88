//! Reads the server's Prometheus text (`GET /metrics`) for the one counter the
//! poll-storm scenario judges by: `coupon_result_reads_total{source=...}`, how each
//! GetIssueResult answer was found (memory: PENDING by arithmetic; cache: a final result
//! kept by the node; store: a database read).

use std::time::Duration;

use serde::Serialize;

pub const RESULT_READS: &str = "coupon_result_reads_total";

/// GetIssueResult answers by where they were found. A source the server has not
/// reported yet counts 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ResultReads {
    pub memory: u64,
    pub cache: u64,
    pub store: u64,
}

impl ResultReads {
    /// Reads between `before` and `self` (a counter that went back, e.g. a restarted
    /// node, counts 0).
    pub fn since(&self, before: &ResultReads) -> ResultReads {
        ResultReads {
            memory: self.memory.saturating_sub(before.memory),
            cache: self.cache.saturating_sub(before.cache),
            store: self.store.saturating_sub(before.store),
        }
    }

    pub fn total(&self) -> u64 {
        self.memory + self.cache + self.store
    }

    fn add(&mut self, other: &ResultReads) {
        self.memory += other.memory;
        self.cache += other.cache;
        self.store += other.store;
    }
}

/// Sums every `coupon_result_reads_total` series by its `source` label (series that
/// differ by other labels add up). Comments, other metrics and unknown sources are
/// skipped.
pub fn parse(text: &str) -> ResultReads {
    let mut reads = ResultReads::default();
    for line in text.lines().map(str::trim) {
        let Some((labels, value)) = sample(line, RESULT_READS) else {
            continue;
        };
        let slot = match label(labels, "source").as_deref() {
            Some("memory") => &mut reads.memory,
            Some("cache") => &mut reads.cache,
            Some("store") => &mut reads.store,
            _ => continue,
        };
        *slot += value;
    }
    reads
}

/// `name{labels} value [timestamp]` → (labels, value) when the line is a sample of
/// `name`. Values are floats in the text format; counters are whole.
fn sample<'a>(line: &'a str, name: &str) -> Option<(&'a str, u64)> {
    let rest = line.strip_prefix(name)?;
    let (labels, rest) = match rest.strip_prefix('{') {
        Some(inner) => {
            let end = closing_brace(inner)?;
            (&inner[..end], &inner[end + 1..])
        }
        None if rest.starts_with([' ', '\t']) => ("", rest),
        None => return None, // another metric whose name starts with `name`
    };
    let value: f64 = rest.split_whitespace().next()?.parse().ok()?;
    (value.is_finite() && value >= 0.0).then_some((labels, value.round() as u64))
}

/// Index of the `}` closing a label set, skipping braces inside quoted values.
fn closing_brace(inner: &str) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in inner.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

/// The value of label `key` in `a="x",b="y"` (escapes `\"`, `\\`, `\n` undone).
fn label(labels: &str, key: &str) -> Option<String> {
    let mut rest = labels.trim_start_matches([',', ' ']);
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=')?;
        let mut chars = after.strip_prefix('"')?.char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => value.push(match chars.next()?.1 {
                    'n' => '\n',
                    other => other,
                }),
                (_, c) => value.push(c),
            }
        };
        if name.trim() == key {
            return Some(value);
        }
        rest = after[end + 2..].trim_start_matches([',', ' ']);
    }
    None
}

#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("GET {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("GET {url}: HTTP {status}")]
    Status { url: String, status: u16 },
}

/// The metrics pages of a deployment: one URL per API node, read and summed.
#[derive(Clone)]
pub struct Scraper {
    http: reqwest::Client,
    urls: Vec<String>,
}

impl Scraper {
    pub fn new(urls: Vec<String>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self { http, urls })
    }

    /// `<target>/metrics` for each target.
    pub fn for_targets(targets: &[String]) -> Result<Self, reqwest::Error> {
        let urls = targets
            .iter()
            .map(|t| format!("{}/metrics", t.trim_end_matches('/')))
            .collect();
        Self::new(urls)
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// The counter summed over every URL; any page that cannot be read fails the scrape.
    pub async fn scrape(&self) -> Result<ResultReads, ScrapeError> {
        let mut total = ResultReads::default();
        for url in &self.urls {
            total.add(&parse(&self.page(url).await?));
        }
        Ok(total)
    }

    async fn page(&self, url: &str) -> Result<String, ScrapeError> {
        let http = |source| ScrapeError::Http {
            url: url.to_owned(),
            source,
        };
        let response = self.http.get(url).send().await.map_err(http)?;
        if !response.status().is_success() {
            return Err(ScrapeError::Status {
                url: url.to_owned(),
                status: response.status().as_u16(),
            });
        }
        response.text().await.map_err(http)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"# HELP coupon_result_reads_total How GetIssueResult answers were found.
# TYPE coupon_result_reads_total counter
coupon_result_reads_total{source="memory"} 1200
coupon_result_reads_total{source="cache"} 34
coupon_result_reads_total{source="store"} 5
coupon_result_reads_total_other{source="store"} 999
coupon_requests_total{method="GetIssueResult",source="store"} 77
"#;

    #[test]
    fn the_three_sources_are_read() {
        let reads = parse(PAGE);
        assert_eq!(
            reads,
            ResultReads {
                memory: 1200,
                cache: 34,
                store: 5
            }
        );
        assert_eq!(reads.total(), 1239);
    }

    #[test]
    fn missing_sources_count_zero() {
        let reads = parse("coupon_result_reads_total{source=\"cache\"} 3\n");
        assert_eq!(
            reads,
            ResultReads {
                memory: 0,
                cache: 3,
                store: 0
            }
        );
        assert_eq!(parse(""), ResultReads::default());
        assert_eq!(parse("# only comments\n"), ResultReads::default());
    }

    #[test]
    fn series_with_more_labels_add_up_and_timestamps_and_floats_are_read() {
        let text = concat!(
            "coupon_result_reads_total{node=\"a\",source=\"store\"} 2 1700000000000\n",
            "coupon_result_reads_total{ source=\"store\" , node=\"b\"} 3.0\n",
            "coupon_result_reads_total{node=\"we\\\"ird}\",source=\"memory\"} 1e3\n",
            "coupon_result_reads_total{source=\"disk\"} 50\n",
            "coupon_result_reads_total{source=\"cache\"} NaN\n",
        );
        let reads = parse(text);
        assert_eq!(
            reads,
            ResultReads {
                memory: 1000,
                cache: 0,
                store: 5
            }
        );
    }

    #[test]
    fn deltas_never_go_negative() {
        let before = ResultReads {
            memory: 10,
            cache: 5,
            store: 7,
        };
        let after = ResultReads {
            memory: 25,
            cache: 5,
            store: 1,
        };
        assert_eq!(
            after.since(&before),
            ResultReads {
                memory: 15,
                cache: 0,
                store: 0
            }
        );
    }

    #[test]
    fn label_values_are_unescaped() {
        assert_eq!(label(r#"a="x\"y",b="z""#, "a").as_deref(), Some("x\"y"));
        assert_eq!(label(r#"a="x\"y",b="z""#, "b").as_deref(), Some("z"));
        assert_eq!(label(r#"a="x""#, "c"), None);
        assert_eq!(label("broken", "a"), None);
    }
}
