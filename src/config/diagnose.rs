//! A configuration file's syntax and type errors in plain words, at their line and column.
//!
//! The `toml` crate reports what its parser or serde saw (`invalid boolean, expected `true``,
//! `invalid type: string "big", expected usize`) and a byte range. An operator wants the line,
//! the column and what to write instead: `switchboard.toml: line 3, column 8: string values must
//! be quoted: mode = "serverless"`. Messages this module does not recognise are kept as the
//! `toml` crate wrote them.

use std::ops::Range;

use super::{Config, ConfigError};

/// A problem in configuration text, before it is put into words.
#[derive(Debug)]
pub(super) enum Problem {
    /// The text is not TOML: the parser's message.
    Syntax {
        span: Option<Range<usize>>,
        message: String,
    },
    /// The TOML does not fit the configuration: the key's dotted path and serde's message.
    Value {
        span: Option<Range<usize>>,
        path: String,
        message: String,
    },
}

impl Problem {
    fn span(&self) -> Option<&Range<usize>> {
        match self {
            Self::Syntax { span, .. } | Self::Value { span, .. } => span.as_ref(),
        }
    }
}

/// Parse and deserialize `text`, keeping what went wrong and where.
pub(super) fn parse(text: &str) -> Result<Config, Problem> {
    let de = toml::Deserializer::parse(text).map_err(|e| Problem::Syntax {
        span: e.span(),
        message: one_line(e.message()),
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let e = e.into_inner();
        Problem::Value {
            span: e.span(),
            path,
            message: one_line(e.message()),
        }
    })
}

/// The error for `problem` in `text`, read from `origin` (a file name; `None`: no file).
pub(super) fn error(origin: Option<&str>, text: &str, problem: &Problem) -> ConfigError {
    let mut start = problem.span().map(|s| s.start);
    let message = match problem {
        Problem::Syntax { span, message } => {
            let (message, at) = syntax(text, span.as_ref(), message);
            start = start.map(|s| at.unwrap_or(s));
            message
        }
        Problem::Value { path, message, .. } => value(path, message),
    };
    let mut at = String::new();
    if let Some(origin) = origin {
        at.push_str(origin);
        at.push_str(": ");
    }
    if let Some(start) = start {
        let (line, column) = position(text, start);
        at.push_str(&format!("line {line}, column {column}: "));
    }
    // An empty key: the message names its place itself.
    ConfigError::new("", format!("{at}{message}"))
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
pub(super) fn position(text: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(text, offset);
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    (line, before[line_start..].chars().count() + 1)
}

fn floor_char_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// The line of `text` holding byte `offset`: its start offset and its text (without the line
/// break).
fn line_at(text: &str, offset: usize) -> (usize, &str) {
    let offset = floor_char_boundary(text, offset);
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    (start, text[start..end].trim_end_matches('\r'))
}

fn one_line(message: &str) -> String {
    message.replace('\n', " ").trim().to_owned()
}

/// A parser message in plain words, and where it is better shown than at the parser's span
/// (the start of a value written without quotes).
fn syntax(text: &str, span: Option<&Range<usize>>, message: &str) -> (String, Option<usize>) {
    match span {
        Some(span) => {
            let (line_start, line) = line_at(text, span.start);
            if let Some((plain, at)) = bare_value(text, span, line_start, line, message) {
                return (plain, Some(at));
            }
            (syntax_words(text, span, line_start, line, message), None)
        }
        None => (message.to_owned(), None),
    }
}

fn syntax_words(
    text: &str,
    span: &Range<usize>,
    line_start: usize,
    line: &str,
    message: &str,
) -> String {
    // The parser's message, without its list of expected tokens.
    let (what, expected) = message
        .split_once(", expected ")
        .map_or((message, None), |(w, e)| (w, Some(e)));
    let header = line.split('#').next().unwrap_or("").trim();
    match what {
        "duplicate key" if header.starts_with('[') => {
            let name = header
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("");
            let name = name.trim();
            let first = earlier_header(text, line_start, name)
                .map(|n| format!(" (first on line {n})"))
                .unwrap_or_default();
            format!("the table [{name}] is defined twice{first}")
        }
        "duplicate key" => {
            let key = text.get(span.clone()).unwrap_or("").trim();
            let first = earlier_key(text, line_start, key)
                .map(|n| format!(" (first on line {n})"))
                .unwrap_or_default();
            format!("the key '{key}' is set twice{first}")
        }
        "unclosed table" | "unclosed array table" => {
            let close = if header.starts_with("[[") { "]]" } else { "]" };
            format!("unclosed table header: {header} needs a closing {close}")
        }
        // A word where a value belongs, inside a list or an inline table (`fast` makes the
        // parser expect `false`).
        "string values must be quoted" | "invalid boolean" => format!(
            "string values must be quoted: \"{}\"",
            text.get(span.clone()).unwrap_or("").trim()
        ),
        "unclosed array" => "unclosed list: a closing ] is missing".to_owned(),
        "unclosed inline table" => "unclosed inline table: a closing } is missing".to_owned(),
        "invalid basic string" | "invalid multi-line basic string" => {
            "unclosed string: a closing \" is missing".to_owned()
        }
        "invalid literal string" | "invalid multi-line literal string" => {
            "unclosed string: a closing ' is missing".to_owned()
        }
        "key with no value" => {
            let key = text.get(line_start..span.start).unwrap_or("").trim();
            format!("expected = after the key: {key} = <value>")
        }
        "unexpected key or value" => {
            "unexpected text after the value (one key = value per line; comments start with #)"
                .to_owned()
        }
        _ if expected == Some("nothing") => what.to_owned(),
        _ => message.to_owned(),
    }
}

/// `key = word` where the parser stopped in `word`: a string written without quotes (or
/// `True`, or a value missing). The words, and the offset of `word`.
fn bare_value(
    text: &str,
    span: &Range<usize>,
    line_start: usize,
    line: &str,
    message: &str,
) -> Option<(String, usize)> {
    let (key, rest) = line.split_once('=')?;
    let key = key.trim();
    if key.is_empty() || key.starts_with('[') || key.contains(['"', '\'']) {
        return None;
    }
    let value_start = line_start + key_len(line) + 1 + (rest.len() - rest.trim_start().len());
    let rest = rest.trim_start();
    let word = rest.split('#').next().unwrap_or("").trim_end();
    if word.starts_with(['"', '\'', '[', '{']) {
        return None;
    }
    if span.start < value_start || span.start > value_start + word.len() {
        return None;
    }
    if word.is_empty() {
        return Some((format!("a value is missing: {key} = ?"), value_start));
    }
    // Would the word do, quoted?
    let quoted = format!("\"{}\"", word.replace('\\', "\\\\").replace('"', "\\\""));
    let mut fixed = String::with_capacity(text.len() + 2);
    fixed.push_str(&text[..value_start]);
    fixed.push_str(&quoted);
    fixed.push_str(&text[value_start + word.len()..]);
    let line_of = |offset: usize| position(&fixed, offset).0;
    let this_line = line_of(value_start);
    let quoting_fails = match parse(&fixed) {
        Ok(_) => None,
        Err(p) if p.span().is_some_and(|s| line_of(s.start) == this_line) => Some(p),
        Err(_) => None,
    };
    let type_error = match &quoting_fails {
        Some(Problem::Value { path, message, .. }) => message
            .strip_prefix("invalid type: string ")
            .and_then(|m| m.split_once(", expected "))
            .map(|(_, expected)| (path.as_str(), expected)),
        _ => None,
    };
    let plain = match type_error {
        None => format!("string values must be quoted: {key} = {quoted}"),
        Some(_) if word.eq_ignore_ascii_case("true") || word.eq_ignore_ascii_case("false") => {
            format!(
                "true and false are written in lower case: {key} = {}",
                word.to_ascii_lowercase()
            )
        }
        Some((path, expected)) => {
            // A number TOML does not take: the parser's words say why.
            let what = message.split(", expected ").next().unwrap_or(message);
            let why = if word.starts_with(|c: char| c.is_ascii_digit() || "+-.".contains(c))
                && !matches!(
                    what,
                    "string values must be quoted" | "unexpected key or value"
                ) {
                format!(" ({what})")
            } else {
                String::new()
            };
            format!(
                "{path}: expected {}, found {word}{why}",
                plain_expected(expected)
            )
        }
    };
    Some((plain, value_start))
}

/// Bytes of `line` before its first `=`.
fn key_len(line: &str) -> usize {
    line.find('=').unwrap_or(0)
}

/// The line number of the header `[name]` (or `[[name]]`) above byte `before`.
fn earlier_header(text: &str, before: usize, name: &str) -> Option<usize> {
    text[..before].lines().enumerate().find_map(|(i, l)| {
        let l = l.trim();
        let inner = l.strip_prefix('[')?.split(']').next()?;
        (inner.trim_start_matches('[').trim() == name).then_some(i + 1)
    })
}

/// The line number where `key` is set in the table that holds byte `before`.
fn earlier_key(text: &str, before: usize, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text[..before].lines().collect();
    let table_start = lines
        .iter()
        .rposition(|l| l.trim_start().starts_with('['))
        .map_or(0, |i| i + 1);
    (table_start..lines.len()).find_map(|i| {
        let (k, _) = lines[i].split_once('=')?;
        (k.trim() == key).then_some(i + 1)
    })
}

/// A serde message about key `path` in plain words.
fn value(path: &str, message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let names = backticked(rest);
        let (key, known) = names.split_first().map_or(("", &[][..]), |(k, v)| (*k, v));
        return unknown_key(path, key, known);
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let names = backticked(rest);
        if let Some((word, known)) = names.split_first() {
            return format!(
                "{path}: unknown value \"{word}\" (expected one of: {})",
                known.join(", ")
            );
        }
    }
    if let Some(rest) = message.strip_prefix("invalid type: ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        let expected_plain = plain_expected(expected);
        let unquote = found
            .strip_prefix("string \"")
            .and_then(|s| s.strip_suffix('"'))
            .filter(|s| unquoted_fits(s, expected))
            .map(|s| format!(" (write it without quotes: {} = {s})", last_key(path)))
            .unwrap_or_default();
        return format!(
            "{path}: expected {expected_plain}, found {}{unquote}",
            plain_found(found)
        );
    }
    if let Some(rest) = message.strip_prefix("invalid value: ")
        && let Some((found, expected)) = rest.split_once(", expected ")
        && let Some(range) = integer_range(expected)
    {
        return format!(
            "{path}: {} is out of range (expected a whole number from {range})",
            found.trim_start_matches("integer ").trim_matches('`')
        );
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        return format!("{}: the key '{field}' is missing", section(path, true));
    }
    if path.is_empty() || path == "." {
        message.to_owned()
    } else {
        format!("{path}: {message}")
    }
}

/// "unknown key 'acess_keys' at the top level (did you mean 'access_keys'? known keys: …)".
fn unknown_key(path: &str, key: &str, known: &[&str]) -> String {
    let parent = path.rsplit_once('.').map_or("", |(p, _)| p);
    let place = section(parent, false);
    let mut hint = String::new();
    let layout = layout();
    if parent.is_empty() {
        if let Some((table, _)) = layout
            .iter()
            .find(|(t, keys)| !t.is_empty() && keys.iter().any(|k| k == key))
        {
            hint = format!("; it belongs in [{table}]");
        }
    } else if layout
        .iter()
        .any(|(t, keys)| t.is_empty() && keys.iter().any(|k| k == key))
    {
        hint = format!("; '{key}' is a top-level key: put it above the first [table] header");
    }
    if hint.is_empty()
        && let Some(near) = nearest(key, known)
    {
        hint = format!("; did you mean '{near}'?");
    }
    let known = if known.is_empty() {
        "none".to_owned()
    } else {
        known.join(", ")
    };
    format!("unknown key '{key}' {place}{hint} (known keys: {known})")
}

/// Where a dotted path's table is, in words: "in [limits]", "in [[upstream]]", "at the top
/// level". `bare`: without "in".
fn section(parent: &str, bare: bool) -> String {
    if parent.is_empty() || parent == "." {
        return if bare {
            "the top level"
        } else {
            "at the top level"
        }
        .to_owned();
    }
    let array = parent.ends_with(']');
    let mut name = String::new();
    let mut depth = 0;
    for c in parent.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            c if depth == 0 => name.push(c),
            _ => {}
        }
    }
    let table = if array {
        format!("[[{name}]]")
    } else {
        format!("[{name}]")
    };
    if bare { table } else { format!("in {table}") }
}

/// The last key of a dotted path (`limits.max_message_size` → `max_message_size`).
fn last_key(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// Every table of the default configuration with its keys (`""`: the top level).
fn layout() -> Vec<(String, Vec<String>)> {
    let Ok(toml::Value::Table(top)) = toml::Value::try_from(Config::default()) else {
        return Vec::new();
    };
    let mut tables = vec![(String::new(), Vec::new())];
    for (k, v) in &top {
        match v {
            toml::Value::Table(t) => tables.push((k.clone(), t.keys().cloned().collect())),
            _ => tables[0].1.push(k.clone()),
        }
    }
    // Unset by default, so absent above.
    tables[0]
        .1
        .extend(["admin_listen".to_owned(), "admin_key".to_owned()]);
    tables
}

/// The known name closest to `word`, if it is close (a typo or two).
fn nearest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(word, k), *k))
        .filter(|(d, k)| *d <= 2 && *d * 3 <= k.len().max(word.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The `a`, `b` of "`a`, `b`" and "`a` or `b`" (the start of `text` is inside the first one).
fn backticked(text: &str) -> Vec<&str> {
    text.split('`').step_by(2).collect()
}

/// Serde's "expected" in plain words.
fn plain_expected(expected: &str) -> String {
    if integer_range(expected).is_some() {
        return "a whole number".to_owned();
    }
    match expected {
        "f32" | "f64" => "a number",
        "a boolean" => "true or false",
        "a string" | "a borrowed string" | "a character" => "a string in quotes",
        "a sequence" => "a list [ ... ]",
        "a map" => "a table",
        e if e.starts_with("struct ") => "a table",
        e => return e.to_owned(),
    }
    .to_owned()
}

/// Serde's "found" (`string "x"`, ``integer `3` ``) in plain words.
fn plain_found(found: &str) -> String {
    let literal = |kind: &str| {
        found
            .strip_prefix(kind)
            .map(|v| v.trim().trim_matches('`').to_owned())
    };
    if let Some(s) = found.strip_prefix("string ") {
        return format!("the string {s}");
    }
    if let Some(n) = literal("integer").or_else(|| literal("floating point")) {
        return format!("the number {n}");
    }
    if let Some(b) = literal("boolean") {
        return b;
    }
    match found {
        "sequence" => "a list".to_owned(),
        "map" => "a table".to_owned(),
        other => other.to_owned(),
    }
}

/// Whether the text of a quoted string would have been right without the quotes.
fn unquoted_fits(s: &str, expected: &str) -> bool {
    match expected {
        "a boolean" => s == "true" || s == "false",
        "f32" | "f64" => s.parse::<f64>().is_ok(),
        e if integer_range(e).is_some() => s.parse::<i128>().is_ok(),
        _ => false,
    }
}

/// "0 to 4294967295" for serde's integer type names.
fn integer_range(expected: &str) -> Option<String> {
    let (min, max): (i128, i128) = match expected {
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "u64" => (0, u64::MAX.into()),
        "usize" => (0, usize::MAX as i128),
        "i8" => (i8::MIN.into(), i8::MAX.into()),
        "i16" => (i16::MIN.into(), i16::MAX.into()),
        "i32" => (i32::MIN.into(), i32::MAX.into()),
        "i64" => (i64::MIN.into(), i64::MAX.into()),
        "isize" => (isize::MIN as i128, isize::MAX as i128),
        _ => return None,
    };
    Some(format!("{min} to {max}"))
}

#[cfg(test)]
mod tests;
