//! The one reader of the admin listener's `/metrics`: a parser of the
//! Prometheus text format into samples, lookups that sum every sample of a
//! name carrying at least the given labels, and [`wait_metric`] for
//! counters that the gateway flushes a moment after the bytes move.

use super::client::http_get;
use super::TIMEOUT;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// One sample line: `name{k="v",…} value`.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Sample {
    /// `None` for comments, blank lines and anything unparseable.
    fn parse(line: &str) -> Option<Sample> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let (series, value) = line.rsplit_once(' ')?;
        let value = value.parse().ok()?;
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
            None => (series, Vec::new()),
        };
        Some(Sample {
            name: name.to_string(),
            labels,
            value,
        })
    }

    fn has(&self, labels: &[(&str, &str)]) -> bool {
        labels
            .iter()
            .all(|(k, v)| self.labels.iter().any(|(lk, lv)| lk == k && lv == v))
    }
}

/// `k="v",k2="v2"` with `\"`, `\\` and `\n` escapes inside values.
fn parse_labels(mut text: &str) -> Option<Vec<(String, String)>> {
    let mut labels = Vec::new();
    while !text.is_empty() {
        let (key, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim_start_matches(',').to_string(), value));
        text = &rest[end + 1..];
    }
    Some(labels)
}

/// One scrape of `/metrics`.
#[derive(Debug, Clone)]
pub struct Metrics {
    samples: Vec<Sample>,
    /// The text as served, for failure messages and "no secret in it".
    text: String,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        Metrics {
            samples: text.lines().filter_map(Sample::parse).collect(),
            text: text.to_string(),
        }
    }

    /// Sum of every sample `name` carrying at least `labels`; `None` when
    /// no sample matches (the series was never created).
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .filter(|s| s.name == name && s.has(labels))
            .map(|s| s.value)
            .reduce(|a, b| a + b)
    }

    /// [`Metrics::get`], with a missing series read as 0.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Scrape the admin listener's `/metrics`.
pub async fn scrape(admin: SocketAddr) -> Metrics {
    let resp = http_get(admin, "/metrics").await;
    assert_eq!(resp.status, 200, "/metrics answers 200");
    Metrics::parse(&resp.body_text())
}

/// What [`wait_metric`] waits for; a bare `f64` means [`Want::Eq`].
#[derive(Debug, Clone, Copy)]
pub enum Want {
    Eq(f64),
    AtLeast(f64),
}

impl Want {
    fn met(self, got: f64) -> bool {
        match self {
            Want::Eq(want) => got == want,
            Want::AtLeast(want) => got >= want,
        }
    }
}

impl From<f64> for Want {
    fn from(want: f64) -> Want {
        Want::Eq(want)
    }
}

/// Poll `/metrics` until the sum of `name{labels…}` (a missing series
/// reads 0) is what `want` says, and return it; fail with the last scrape
/// after [`TIMEOUT`].
pub async fn wait_metric(
    admin: SocketAddr,
    name: &str,
    labels: &[(&str, &str)],
    want: impl Into<Want>,
) -> f64 {
    let want = want.into();
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let metrics = scrape(admin).await;
        let got = metrics.sum(name, labels);
        if want.met(got) {
            return got;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{name}{labels:?}: expected {want:?}, got {got}\n--- /metrics ---\n{metrics}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn parser_reads_labels_escapes_and_sums() {
    let m = Metrics::parse(
        "# HELP x a counter\n# TYPE x counter\n\
         x{route=\"r\",reason=\"a\"} 2\n\
         x{route=\"r\",reason=\"b,\\\"c\\\"\"} 3\n\
         x_total 7\n\
         y 1.5\n",
    );
    assert_eq!(m.get("x", &[("route", "r")]), Some(5.0));
    assert_eq!(m.get("x", &[("reason", "b,\"c\"")]), Some(3.0));
    assert_eq!(m.get("x", &[("reason", "z")]), None);
    assert_eq!(m.sum("x", &[("reason", "z")]), 0.0);
    assert_eq!(m.get("x_total", &[]), Some(7.0));
    assert_eq!(m.get("y", &[]), Some(1.5));
}
