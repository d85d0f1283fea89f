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
mod tests {
    use super::*;

    fn from_file(name: &str, text: &str) -> (String, String) {
        let dir = std::env::temp_dir().join(format!("switchboard-diagnose-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let err = Config::from_file(&path).unwrap_err();
        assert_eq!(err.key, "", "{err}");
        (path.display().to_string(), err.to_string())
    }

    fn message(text: &str) -> String {
        let err = Config::from_toml(text).unwrap_err();
        assert_eq!(err.to_string(), err.message);
        err.message
    }

    #[test]
    fn a_bare_word_is_a_string_without_quotes() {
        let (path, err) = from_file(
            "bare.toml",
            "# Switchboard\nlisten = \"127.0.0.1:8080\"\nmode = serverless\n",
        );
        assert_eq!(
            err,
            format!(
                "{path}: line 3, column 8: string values must be quoted: mode = \"serverless\""
            )
        );
        assert_eq!(
            message("listen = 0.0.0.0:8080 # everywhere\n"),
            "line 1, column 10: string values must be quoted: listen = \"0.0.0.0:8080\""
        );
        assert_eq!(
            message("access_keys = [\"abc\", def]\n"),
            "line 1, column 23: string values must be quoted: \"def\""
        );
        // Where quotes would not help, the key's type is named instead.
        assert_eq!(
            message("[limits]\nmax_message_size = 1MB\n"),
            "line 2, column 20: limits.max_message_size: expected a whole number, found 1MB"
        );
        assert_eq!(
            message("tcp_nodelay = yes\n"),
            "line 1, column 15: tcp_nodelay: expected true or false, found yes"
        );
        assert_eq!(
            message("tcp_nodelay = True\n"),
            "line 1, column 15: true and false are written in lower case: tcp_nodelay = true"
        );
        assert_eq!(
            message("mode =\n"),
            "line 1, column 7: a value is missing: mode = ?"
        );
    }

    #[test]
    fn a_wrong_type_names_the_key_and_both_types() {
        let (path, err) = from_file("type.toml", "[limits]\nmax_message_size = \"big\"\n");
        assert_eq!(
            err,
            format!(
                "{path}: line 2, column 20: limits.max_message_size: expected a whole number, found the string \"big\""
            )
        );
        assert_eq!(
            message("[limits]\nmax_hubs = \"5\"\n"),
            "line 2, column 12: limits.max_hubs: expected a whole number, found the string \"5\" (write it without quotes: max_hubs = 5)"
        );
        assert_eq!(
            message("stateful_reconnect = 1\n"),
            "line 1, column 22: stateful_reconnect: expected true or false, found the number 1"
        );
        assert_eq!(
            message("access_keys = \"k\"\n"),
            "line 1, column 15: access_keys: expected a list [ ... ], found the string \"k\""
        );
        assert_eq!(
            message("limits = 3\n"),
            "line 1, column 10: limits: expected a table, found the number 3"
        );
        assert_eq!(
            message("\n[limits]\nmax_hubs = -1\n"),
            format!(
                "line 3, column 12: limits.max_hubs: -1 is out of range (expected a whole number from 0 to {})",
                usize::MAX
            )
        );
        assert_eq!(
            message("mode = \"turbo\"\n"),
            "line 1, column 8: mode: unknown value \"turbo\" (expected one of: default, serverless, classic)"
        );
    }

    #[test]
    fn a_missing_key_is_named_with_its_table() {
        assert_eq!(
            message("[[upstream]]\nhub_pattern = \"*\"\n"),
            "line 1, column 1: [[upstream]]: the key 'url_template' is missing"
        );
    }

    #[test]
    fn an_unknown_key_is_named_with_its_table_and_the_known_keys() {
        let (path, err) = from_file("unknown.toml", "mode = \"default\"\nacess_keys = [\"k\"]\n");
        let prefix = format!(
            "{path}: line 2, column 1: unknown key 'acess_keys' at the top level; did you mean 'access_keys'? (known keys: listen, mode, access_keys, "
        );
        assert!(err.starts_with(&prefix), "{err}");
        let err = message("[limits]\nmax_mesage_size = 3\n");
        assert!(
            err.starts_with("line 2, column 1: unknown key 'max_mesage_size' in [limits]; did you mean 'max_message_size'? (known keys: max_message_size, "),
            "{err}"
        );
        let err = message("[limits]\nmode = \"serverless\"\n");
        assert!(
            err.starts_with("line 2, column 1: unknown key 'mode' in [limits]; 'mode' is a top-level key: put it above the first [table] header (known keys: "),
            "{err}"
        );
        let err = message("max_message_size = 5\n");
        assert!(
            err.starts_with("line 1, column 1: unknown key 'max_message_size' at the top level; it belongs in [limits] (known keys: "),
            "{err}"
        );
        let err = message("[[upstream]]\nurl_template = \"http://x\"\nhub = \"*\"\n");
        assert!(
            err.starts_with("line 3, column 1: unknown key 'hub' in [[upstream]] (known keys: UrlTemplate, url_template, "),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_in_plain_words() {
        let (path, err) = from_file("syntax.toml", "[limits\nmax_hubs = 3\n");
        assert_eq!(
            err,
            format!("{path}: line 1, column 8: unclosed table header: [limits needs a closing ]")
        );
        assert_eq!(
            message("workers = 1\nmode = \"default\"\nworkers = 2\n"),
            "line 3, column 1: the key 'workers' is set twice (first on line 1)"
        );
        assert_eq!(
            message("[limits]\nmax_hubs = 1\n\n[limits]\nmax_connections = 2\n"),
            "line 4, column 2: the table [limits] is defined twice (first on line 1)"
        );
        assert_eq!(
            message("public_endpoint = \"http://x\nworkers = 1\n"),
            "line 1, column 28: unclosed string: a closing \" is missing"
        );
        assert_eq!(
            message("access_keys = [\"a\"\n"),
            "line 1, column 19: unclosed list: a closing ] is missing"
        );
        assert_eq!(
            message("workers 4\n"),
            "line 1, column 9: expected = after the key: workers = <value>"
        );
        assert_eq!(
            message("limits = { max_hubs = fast }\n"),
            "line 1, column 23: string values must be quoted: \"fast\""
        );
        assert_eq!(
            message("workers = 4 8\n"),
            "line 1, column 11: workers: expected a whole number, found 4 8"
        );
        // Anything else keeps the parser's words.
        assert_eq!(
            message("workers = 08\n"),
            "line 1, column 11: workers: expected a whole number, found 08 (unexpected leading zero)"
        );
        assert_eq!(
            message("\"workers\" = 1\n\"workers\" = 2\n"),
            "line 2, column 1: the key '\"workers\"' is set twice (first on line 1)"
        );
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(position("é = 1\nab", 0), (1, 1));
        assert_eq!(position("é = 1\nab", 4), (1, 4));
        assert_eq!(position("é = 1\nab", 7), (2, 1));
        assert_eq!(position("é = 1\nab", 9), (2, 3));
        assert_eq!(
            message("public_endpoint = \"é\"\nmode = sérverless\n"),
            "line 2, column 8: string values must be quoted: mode = \"sérverless\""
        );
    }
}
