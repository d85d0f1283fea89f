//! A strict reader of the Prometheus text exposition format (version 0.0.4), for tests that
//! scrape `/metrics`: every sample must belong to a family announced by `# TYPE` before it
//! (histograms through their `_bucket`, `_sum` and `_count`), `HELP` and `TYPE` come once per
//! family, label values are quoted with `\\`, `\"` and `\n` escapes, and values are numbers.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::{Context as _, Result, bail, ensure};

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug, Default)]
pub struct Scrape {
    /// Family name → type (`counter`, `gauge`, `histogram`, …).
    pub types: HashMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// Parse `text`, failing on anything malformed.
    pub fn parse(text: &str) -> Result<Self> {
        let mut scrape = Self::default();
        let mut helped = HashSet::new();
        for (n, line) in text.lines().enumerate() {
            let at = || format!("line {}: {line}", n + 1);
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default();
                ensure!(helped.insert(name.to_owned()), "second HELP: {}", at());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split(' ');
                let (Some(name), Some(kind), None) = (parts.next(), parts.next(), parts.next())
                else {
                    bail!("bad TYPE: {}", at());
                };
                ensure!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "unknown type: {}",
                    at()
                );
                ensure!(
                    scrape
                        .types
                        .insert(name.to_owned(), kind.to_owned())
                        .is_none(),
                    "second TYPE: {}",
                    at()
                );
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let sample = parse_sample(line).with_context(at)?;
            let family = scrape.family_of(&sample.name);
            ensure!(family.is_some(), "sample of no declared family: {}", at());
            if let Some((_, kind)) = family
                && kind == "counter"
            {
                ensure!(sample.value >= 0.0, "negative counter: {}", at());
            }
            scrape.samples.push(sample);
        }
        Ok(scrape)
    }

    /// The family a sample name belongs to, with its type.
    fn family_of(&self, name: &str) -> Option<(String, String)> {
        if let Some(kind) = self.types.get(name) {
            return Some((name.to_owned(), kind.clone()));
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix)
                && let Some(kind) = self.types.get(base)
                && (kind == "histogram" || kind == "summary")
            {
                return Some((base.to_owned(), kind.clone()));
            }
        }
        None
    }

    /// Whether a family or a sample called `name` exists.
    pub fn has_metric(&self, name: &str) -> bool {
        self.types.contains_key(name) || self.samples.iter().any(|s| s.name == name)
    }

    /// The samples named `name` whose labels include every pair of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The one sample named `name` with exactly these labels (0 when absent).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && s.labels.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map_or(0.0, |s| s.value)
    }

    /// The sum of the samples matching `labels` (a subset of theirs).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }
}

fn parse_sample(line: &str) -> Result<Sample> {
    let name_end = line.find(['{', ' ']).context("no value")?;
    let name = &line[..name_end];
    ensure!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !name.starts_with(|c: char| c.is_ascii_digit()),
        "bad metric name {name:?}"
    );
    let bytes = line.as_bytes();
    let mut i = name_end;
    let mut labels = BTreeMap::new();
    if bytes[i] == b'{' {
        i += 1;
        loop {
            if bytes.get(i) == Some(&b'}') {
                i += 1;
                break;
            }
            let eq = line[i..].find('=').context("label without '='")? + i;
            let key = &line[i..eq];
            ensure!(
                !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad label name {key:?}"
            );
            ensure!(bytes.get(eq + 1) == Some(&b'"'), "unquoted label value");
            i = eq + 2;
            let mut value = String::new();
            loop {
                match *bytes.get(i).context("unterminated label value")? {
                    b'\\' => {
                        match bytes.get(i + 1).context("dangling escape")? {
                            b'\\' => value.push('\\'),
                            b'"' => value.push('"'),
                            b'n' => value.push('\n'),
                            other => bail!("bad escape \\{}", *other as char),
                        }
                        i += 2;
                    }
                    b'"' => {
                        i += 1;
                        break;
                    }
                    _ => {
                        let ch = line[i..].chars().next().context("utf-8")?;
                        value.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            ensure!(
                labels.insert(key.to_owned(), value).is_none(),
                "label {key} twice"
            );
            match bytes.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => {}
                _ => bail!("expected ',' or '}}' after a label"),
            }
        }
    }
    ensure!(
        bytes.get(i) == Some(&b' '),
        "expected a space before the value"
    );
    let mut parts = line[i + 1..].split(' ');
    let value = parts.next().context("no value")?;
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().with_context(|| format!("bad value {v:?}"))?,
    };
    // An optional timestamp.
    if let Some(ts) = parts.next() {
        ts.parse::<i64>().context("bad timestamp")?;
    }
    ensure!(parts.next().is_none(), "trailing text");
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}
