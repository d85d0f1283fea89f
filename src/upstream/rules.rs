//! Upstream rules (`docs/protocol.md#upstream-rules`): which URL, if any, receives an event of
//! a hub. Owns the rule type as written in `switchboard.toml` and in the emulator's
//! `settings.json`, the compiled matcher and the URL template expansion. Pure: no I/O except
//! [`load_emulator_settings`] reading its file.

use std::path::Path;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Category;
use crate::hub::canonical_hub_name;

/// What `Uri.EscapeDataString` leaves alone: the RFC 3986 unreserved characters
/// (`A-Z a-z 0-9 - _ . ~`). Everything else is percent-encoded as UTF-8 with upper-case hex.
const DATA_STRING: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The pattern that matches every name.
const ANY: &str = "*";

/// Escapes `value` as .NET's `Uri.EscapeDataString` does (unreserved characters stay, the rest
/// become `%XX` of their UTF-8 bytes, upper-case hex).
pub fn escape_data_string(value: &str) -> String {
    utf8_percent_encode(value, DATA_STRING).to_string()
}

fn any_pattern() -> String {
    ANY.to_owned()
}

/// One upstream rule, as in `switchboard.toml`:
///
/// ```toml
/// [[upstream]]
/// url_template = "http://localhost:7071/runtime/webhooks/signalr"
/// hub_pattern = "chat, news"     # default "*"
/// category_pattern = "messages"  # default "*"
/// event_pattern = "*"            # default "*"
/// ```
///
/// The emulator's PascalCase names (`UrlTemplate`, `HubPattern`, `CategoryPattern`,
/// `EventPattern`) are accepted as aliases, so a template item copied from `settings.json`
/// deserializes too. Use [`parse_emulator_settings`] for a whole `settings.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamRule {
    /// Absolute `http`/`https` URL; `{hub}`, `{category}` and `{event}` are replaced by the
    /// URI-escaped values of the event (case-sensitive placeholders, as the emulator's regex).
    #[serde(alias = "UrlTemplate")]
    pub url_template: String,
    /// `*`, one hub name, or a comma-separated list of hub names (items trimmed).
    #[serde(default = "any_pattern", alias = "HubPattern")]
    pub hub_pattern: String,
    /// `*`, `connections`, `messages` or `connections,messages`.
    #[serde(default = "any_pattern", alias = "CategoryPattern")]
    pub category_pattern: String,
    /// `*`, one event name, or a comma-separated list (`connected`, `disconnected`, or
    /// invocation targets).
    #[serde(default = "any_pattern", alias = "EventPattern")]
    pub event_pattern: String,
}

impl UpstreamRule {
    /// The rule as it may be shown (the admin API): every query value of its URL replaced by
    /// `***`, since a query may carry a key (Azure Functions' `code=`).
    pub fn redacted(&self) -> Self {
        Self {
            url_template: redact_query(&self.url_template),
            ..self.clone()
        }
    }

    /// A rule sending every event of every hub to `url_template` (all patterns `*`).
    pub fn from_template(url_template: &str) -> Self {
        Self {
            url_template: url_template.to_owned(),
            hub_pattern: any_pattern(),
            category_pattern: any_pattern(),
            event_pattern: any_pattern(),
        }
    }

    /// Checks the rule: the template expands to an absolute `http`/`https` URL with a host, and
    /// no pattern is empty. Category items must be `*`, `connections` or `messages`
    /// (case-sensitive; any other item could never match). The error names the field.
    pub fn validate(&self) -> Result<(), String> {
        validate_template(&self.url_template).map_err(|e| format!("url_template: {e}"))?;
        for (field, pattern) in [
            ("hub_pattern", &self.hub_pattern),
            ("category_pattern", &self.category_pattern),
            ("event_pattern", &self.event_pattern),
        ] {
            if pattern.trim().is_empty() {
                return Err(format!(
                    "{field}: empty pattern matches nothing (use \"*\" for any)"
                ));
            }
        }
        for item in self.category_pattern.split(',').map(str::trim) {
            if !matches!(item, ANY | "connections" | "messages") {
                return Err(format!(
                    "category_pattern: unknown category '{item}' (expected connections, \
                     messages or *; names are case-sensitive)"
                ));
            }
        }
        Ok(())
    }
}

fn validate_template(template: &str) -> Result<(), String> {
    if template.trim().is_empty() {
        return Err("empty URL template".to_owned());
    }
    let sample = expand(template, "hub", Category::Messages.as_str(), "event")
        .map_err(|e| format!("'{template}': {e}"))?;
    let url = reqwest::Url::parse(&sample)
        .map_err(|e| format!("'{template}' is not an absolute URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "'{template}': scheme '{}' is not http or https",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("'{template}' has no host"));
    }
    Ok(())
}

/// A substituted value would be a `.` or `..` segment of the URL's path. Escaping cannot help:
/// URL parsers (the WHATWG rules the HTTP client follows, and most servers) read `%2E` and `%2E%2E`
/// as dot segments too and remove them with the segment before, so the request would go to
/// another path. Such an event is not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'.' and '..' cannot be one segment of an upstream URL's path")]
pub struct DotSegment;

/// Replaces `{hub}`, `{category}` and `{event}` (exactly these, case-sensitive) by the
/// escaped values; any other text, braces included, is kept. Escaping keeps every value inside
/// its segment (`/`, `?`, `#` and `%` are encoded); a path segment made of substituted dots is
/// refused ([`DotSegment`]).
fn expand(template: &str, hub: &str, category: &str, event: &str) -> Result<String, DotSegment> {
    let mut out = String::with_capacity(template.len() + hub.len() + event.len());
    // Where the values went in `out`.
    let mut substituted = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let tail = &rest[open..];
        let replaced = [("{hub}", hub), ("{category}", category), ("{event}", event)]
            .into_iter()
            .find(|(name, _)| tail.starts_with(name));
        match replaced {
            Some((name, value)) => {
                let start = out.len();
                out.push_str(&escape_data_string(value));
                substituted.push(start..out.len());
                rest = &tail[name.len()..];
            }
            None => {
                out.push('{');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    let (path_start, path_end) = path_range(&out);
    let mut segment_start = path_start;
    for segment in out[path_start..path_end].split('/') {
        let range = segment_start..segment_start + segment.len();
        segment_start = range.end + 1;
        let is_dots = matches!(segment, "." | "..");
        if is_dots
            && substituted
                .iter()
                .any(|s| s.start < range.end && range.start < s.end)
        {
            return Err(DotSegment);
        }
    }
    Ok(out)
}

/// Where the path of `url` (an absolute URL) starts and ends: after `scheme://authority`, up to
/// the query or the fragment. Escaped values contain no `/`, `?` or `#`, so the template's own
/// text decides.
fn path_range(url: &str) -> (usize, usize) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let end = url[after_scheme..]
        .find(['?', '#'])
        .map_or(url.len(), |i| after_scheme + i);
    let start = url[after_scheme..end]
        .find('/')
        .map_or(end, |i| after_scheme + i);
    (start, end)
}

/// A compiled pattern: `*` anywhere in the list matches everything, as in the emulator.
#[derive(Clone, Debug)]
enum Pattern {
    Any,
    Names(Box<[String]>),
}

impl Pattern {
    fn compile(pattern: &str) -> Self {
        let names: Vec<String> = pattern.split(',').map(|s| s.trim().to_owned()).collect();
        if names.iter().any(|n| n == ANY) {
            Self::Any
        } else {
            Self::Names(names.into_boxed_slice())
        }
    }

    /// Ordinal (case-sensitive) comparison, as the emulator's `HashSet<string>`.
    fn matches(&self, name: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Names(names) => names.iter().any(|n| n == name),
        }
    }
}

#[derive(Clone, Debug)]
struct CompiledRule {
    url_template: String,
    hub: Pattern,
    category: Pattern,
    event: Pattern,
}

/// Compiled, ordered rules: for an event, the **first** rule whose three patterns match wins;
/// no match means the event is not delivered.
///
/// Categories and events are compared ordinally (case-sensitive), like the emulator; the real
/// service's behaviour is unknown. Hub names are case-insensitive in Switchboard (one hub per
/// name in any case, see [`canonical_hub_name`]): hub patterns and the hub compared are both
/// taken in lower case, so `hub_pattern = "Chat"` matches the hub clients reach as `?hub=chat`
/// or `?hub=CHAT`.
#[derive(Clone, Debug, Default)]
pub struct UpstreamRules {
    rules: Vec<CompiledRule>,
    source: Vec<UpstreamRule>,
}

impl UpstreamRules {
    /// Validates and compiles `rules`, keeping their order. The error names the failing rule
    /// (`upstream[1].url_template: …`).
    pub fn new(rules: &[UpstreamRule]) -> Result<Self, String> {
        let mut compiled = Vec::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            rule.validate().map_err(|e| format!("upstream[{i}].{e}"))?;
            compiled.push(CompiledRule {
                url_template: rule.url_template.clone(),
                hub: Pattern::compile(&canonical_hub_name(&rule.hub_pattern)),
                category: Pattern::compile(&rule.category_pattern),
                event: Pattern::compile(&rule.event_pattern),
            });
        }
        Ok(Self {
            rules: compiled,
            source: rules.to_vec(),
        })
    }

    /// The rules as configured, in order.
    pub fn rules(&self) -> &[UpstreamRule] {
        &self.source
    }

    /// Whether there are no rules at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The URL for an event: the first matching rule's template with `{hub}`, `{category}` and
    /// `{event}` replaced by their `Uri.EscapeDataString` escapes; `None` when no rule matches,
    /// `Some(Err(_))` when the rule's URL cannot carry the values (a value that would be a `.`
    /// or `..` path segment: the event is not sent).
    pub fn resolve(
        &self,
        hub: &str,
        category: Category,
        event: &str,
    ) -> Option<Result<String, DotSegment>> {
        let category = category.as_str();
        let hub_key = canonical_hub_name(hub);
        self.rules
            .iter()
            .find(|r| {
                r.hub.matches(&hub_key) && r.category.matches(category) && r.event.matches(event)
            })
            .map(|r| expand(&r.url_template, hub, category, event))
    }

    /// Whether some rule's hub pattern matches `hub`, i.e. some event of the hub may go
    /// upstream.
    pub fn has_rules_for_hub(&self, hub: &str) -> bool {
        let hub_key = canonical_hub_name(hub);
        self.rules.iter().any(|r| r.hub.matches(&hub_key))
    }
}

/// Reads the local emulator's `settings.json` (`{"UpstreamSettings":{"Templates":[...]}}`);
/// see [`parse_emulator_settings`]. The error names the file.
pub fn load_emulator_settings(path: &Path) -> Result<Vec<UpstreamRule>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_emulator_settings(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses the text of the emulator's `settings.json`.
///
/// Keys are matched case-insensitively, as .NET configuration binding does. A missing
/// `UpstreamSettings` or `Templates` means no rules (the emulator's "No upstream is set yet").
/// Absent patterns default to `*`. Stricter than the emulator, so that mistakes show at load
/// time instead of as silently dropped events: unknown keys inside a template are errors, a
/// `null` pattern (which matches nothing in the emulator) is an error, an `Auth` other than
/// `{"Type": "None"}` is an error (managed identity is not available self-hosted), and JSON
/// comments or trailing commas (tolerated by .NET's JSON configuration) are not accepted.
/// The rules are not validated here; [`UpstreamRules::new`] does that.
pub fn parse_emulator_settings(text: &str) -> Result<Vec<UpstreamRule>, String> {
    let root: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(root) = root else {
        return Err("the settings must be a JSON object".to_owned());
    };
    let Some(settings) = get_ci(&root, "UpstreamSettings", "")? else {
        return Ok(Vec::new());
    };
    let settings = match settings {
        Value::Null => return Ok(Vec::new()),
        Value::Object(map) => map,
        _ => return Err("UpstreamSettings must be an object".to_owned()),
    };
    let templates = match get_ci(settings, "Templates", "UpstreamSettings.")? {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err("UpstreamSettings.Templates must be an array".to_owned()),
    };
    templates
        .iter()
        .enumerate()
        .map(|(i, item)| parse_template(item, &format!("UpstreamSettings.Templates[{i}]")))
        .collect()
}

/// The value under `key` (case-insensitive); an error when two keys differ only by case.
fn get_ci<'a>(
    map: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a Value>, String> {
    let mut found = None;
    for (k, v) in map {
        if k.eq_ignore_ascii_case(key) {
            if found.is_some() {
                return Err(format!("{path}{key}: duplicate key (keys ignore case)"));
            }
            found = Some(v);
        }
    }
    Ok(found)
}

fn parse_template(item: &Value, path: &str) -> Result<UpstreamRule, String> {
    let Value::Object(map) = item else {
        return Err(format!("{path} must be an object"));
    };
    let mut url_template = None;
    let mut patterns = [any_pattern(), any_pattern(), any_pattern()];
    let mut seen = Vec::with_capacity(map.len());
    for (key, value) in map {
        let lower = key.to_ascii_lowercase();
        if seen.contains(&lower) {
            return Err(format!("{path}.{key}: duplicate key (keys ignore case)"));
        }
        let slot = match lower.as_str() {
            "urltemplate" => None,
            "hubpattern" => Some(0),
            "categorypattern" => Some(1),
            "eventpattern" => Some(2),
            "auth" => {
                check_auth(value, &format!("{path}.{key}"))?;
                seen.push(lower);
                continue;
            }
            _ => {
                return Err(format!(
                    "{path}.{key}: unknown key (expected UrlTemplate, HubPattern, \
                     CategoryPattern, EventPattern or Auth)"
                ));
            }
        };
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Null if slot.is_some() => {
                return Err(format!(
                    "{path}.{key}: null pattern would match nothing; use \"*\" or remove the \
                     template"
                ));
            }
            _ => return Err(format!("{path}.{key} must be a string")),
        };
        match slot {
            None => url_template = Some(text),
            Some(i) => patterns[i] = text,
        }
        seen.push(lower);
    }
    let Some(url_template) = url_template else {
        return Err(format!("{path}: missing UrlTemplate"));
    };
    let [hub_pattern, category_pattern, event_pattern] = patterns;
    Ok(UpstreamRule {
        url_template,
        hub_pattern,
        category_pattern,
        event_pattern,
    })
}

/// Accepts a missing/`null` auth or `{"Type": "None"}` (enum names ignore case in .NET).
fn check_auth(value: &Value, path: &str) -> Result<(), String> {
    let map = match value {
        Value::Null => return Ok(()),
        Value::Object(map) => map,
        _ => return Err(format!("{path} must be an object")),
    };
    match get_ci(map, "Type", &format!("{path}."))? {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(t)) if t.eq_ignore_ascii_case("None") => Ok(()),
        Some(Value::String(t)) => Err(format!(
            "{path}.Type: upstream auth '{t}' is not supported (only None)"
        )),
        Some(_) => Err(format!("{path}.Type must be a string")),
    }
}

/// `url` with every query value replaced by `***` (names kept, a bare item replaced whole; a
/// fragment dropped).
pub(crate) fn redact_query(url: &str) -> String {
    let url = url.split('#').next().unwrap_or(url);
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) => format!("{name}=***"),
            None if pair.is_empty() => String::new(),
            // A bare item may be the key itself.
            None => "***".to_owned(),
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

#[cfg(test)]
mod tests;
