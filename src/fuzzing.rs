//! Entry points for the fuzz targets in `fuzz/` and for the test that replays their corpora
//! (`tests/fuzz_corpus.rs`); not a stable API.
//!
//! One function per broker parser of untrusted bytes; the protocol crate's parsers have theirs
//! in [`crate::protocol::fuzzing`]. Each takes arbitrary bytes, runs the parser the way the
//! broker does, and panics when a property that must hold for every input does not (which the
//! fuzzer reports as a crash). Where a target needs several inputs they are parts of the input
//! separated by NUL bytes ([`parts`]). These functions hold no parsing logic of their own.

use std::net::SocketAddr;
use std::str::FromStr as _;

use actix_web::http::header::{AUTHORIZATION, HeaderValue};
use actix_web::http::{Method, Uri};
use actix_web::test::TestRequest;
use percent_encoding::percent_decode_str;

use crate::config::{Config, connection_string};
use crate::http::{self, client_ws, negotiate as neg, rest};
use crate::id::validate_hub_name;
use crate::switchboard::SettingsPatch;
use crate::upstream::{self, Category, UpstreamRule, UpstreamRules};

pub use crate::protocol::fuzzing::parts;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The negotiate request's query and `Authorization` header (parts: query, header value): the
/// hub, the negotiate version, stateful reconnect, the token, and the query a hub server is
/// shown, which never carries the client's token or connection token. The query text also goes
/// through the protocol crate's negotiate parsers.
pub fn negotiate(data: &[u8]) {
    let [query, authorization] = parts::<2>(data);
    let query = text(query);
    crate::protocol::fuzzing::negotiate(query.as_bytes());
    let Ok(uri) = Uri::from_str(&format!("/client/negotiate?{query}")) else {
        return;
    };
    let mut req = TestRequest::post().uri(&uri.to_string());
    if let Ok(value) = HeaderValue::from_bytes(authorization) {
        req = req.insert_header((AUTHORIZATION, value));
    }
    let req = req.to_http_request();

    if let Ok(hub) = neg::hub_param(&req) {
        assert!(validate_hub_name(&hub).is_ok());
    }
    let version = http::query_value(&req, "negotiateVersion");
    if let Ok(v) = neg::negotiate_version(version.as_deref()) {
        assert!(v <= 1);
    }
    let _ = http::bearer_token(&req, true);
    let _ = http::bearer_token(&req, false);
    let headers = client_ws::forwarded_headers(&req);
    assert!(headers.iter().all(|(name, _)| name != "authorization"));
    let forwarded = client_ws::forwarded_query(&req);
    if let Some(kept) = forwarded.strip_prefix('?') {
        for (key, _) in form_urlencoded::parse(kept.as_bytes()) {
            assert!(
                key != "access_token" && !key.eq_ignore_ascii_case("id"),
                "the query shown to hub servers keeps '{key}': {forwarded}"
            );
        }
    } else {
        assert!(forwarded.is_empty());
    }
}

/// A REST request line: the first byte picks the method, then parts: path, query.
pub fn rest_route(data: &[u8]) {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let method = match m % 8 {
        0 => Method::GET,
        1 => Method::HEAD,
        2 => Method::POST,
        3 => Method::PUT,
        4 => Method::DELETE,
        5 => Method::PATCH,
        6 => Method::OPTIONS,
        _ => Method::TRACE,
    };
    let [path, query] = parts::<2>(rest);
    rest::fuzz::route(&method, &text(path), &text(query));
}

/// A REST send body: the first byte is the size limit in KiB (0: 1 MiB), then parts: the
/// `Content-Type` value (empty: no header), the body.
pub fn rest_body(data: &[u8]) {
    let Some((&kib, rest)) = data.split_first() else {
        return;
    };
    let limit = if kib == 0 {
        1 << 20
    } else {
        usize::from(kib) << 10
    };
    let [content_type, body] = parts::<2>(rest);
    let content_type = (!content_type.is_empty()).then_some(content_type);
    rest::fuzz::body(content_type, body, limit);
}

/// Upstream rules. Parts: an emulator `settings.json`, a URL template, a hub name, an event
/// name. The settings are parsed and compiled; the template becomes a catch-all rule. Every
/// URL a rule resolves to is an absolute http(s) URL (unless a placeholder is in the host: an open
/// finding, FUZZING.md), and escaping is reversible.
pub fn upstream_rules(data: &[u8]) {
    let [settings, template, hub, event] = parts::<4>(data);
    let (hub, event) = (text(hub), text(event));
    let escaped = upstream::escape_data_string(&hub);
    assert!(
        escaped
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b))
    );
    assert_eq!(
        percent_decode_str(&escaped).decode_utf8().ok().as_deref(),
        Some(hub.as_str())
    );

    if let Ok(rules) = upstream::parse_emulator_settings(&text(settings))
        && let Ok(compiled) = UpstreamRules::new(&rules)
    {
        check_resolved(&compiled, &hub, &event);
    }
    let rule = UpstreamRule::from_template(&text(template));
    if let Ok(compiled) = UpstreamRules::new(&[rule]) {
        assert!(compiled.has_rules_for_hub(&hub));
        for category in [Category::Connections, Category::Messages] {
            assert!(compiled.resolve(&hub, category, &event).is_some());
        }
        check_resolved(&compiled, &hub, &event);
    }
}

fn check_resolved(rules: &UpstreamRules, hub: &str, event: &str) {
    let _ = rules.has_rules_for_hub(hub);
    if rules
        .rules()
        .iter()
        .any(|r| placeholder_outside_path(&r.url_template))
    {
        // Known: a value put into the host need not make a valid URL (FUZZING.md). The call
        // then fails with "invalid upstream URL".
        for category in [Category::Connections, Category::Messages] {
            let _ = rules.resolve(hub, category, event);
        }
        return;
    }
    for category in [Category::Connections, Category::Messages] {
        // A value that would be a `.` or `..` segment is refused (`DotSegment`), not resolved.
        if let Some(Ok(url)) = rules.resolve(hub, category, event) {
            let parsed = reqwest::Url::parse(&url)
                .unwrap_or_else(|e| panic!("{url} (hub {hub:?}, event {event:?}): {e}"));
            assert!(matches!(parsed.scheme(), "http" | "https"), "{url}");
            assert!(parsed.host_str().is_some_and(|h| !h.is_empty()), "{url}");
        }
    }
}

/// Whether a placeholder of `template` lands in the URL's scheme, user info, host or port:
/// the authority differs between two expansions with different values (compared after
/// parsing, so that IDNA's rewriting of the host cannot hide a marker).
fn placeholder_outside_path(template: &str) -> bool {
    let authority = |value: &str| {
        let expanded = template
            .replace("{hub}", value)
            .replace("{category}", value)
            .replace("{event}", value);
        reqwest::Url::parse(&expanded).ok().map(|url| {
            (
                url.scheme().to_owned(),
                url.username().to_owned(),
                url.password().map(str::to_owned),
                url.host_str().map(str::to_owned),
                url.port(),
            )
        })
    };
    match (authority("aaa"), authority("bbb")) {
        (Some(a), Some(b)) => a != b,
        // A template that does not parse with some value has it outside the path.
        _ => true,
    }
}

/// `switchboard.toml`: parsed, validated (without reading the `upstream_settings` file it may
/// name), and written back to TOML, which parses to the same configuration.
pub fn config(data: &[u8]) {
    let Ok(mut config) = Config::from_toml(&text(data)) else {
        return;
    };
    config.upstream_settings.clear();
    let _ = config.validate();
    let _ = SettingsPatch::from_config(&config);
    let endpoint = config.public_endpoint_or(SocketAddr::from(([127, 0, 0, 1], 8080)));
    for key in &config.access_keys {
        let _ = connection_string(&endpoint, key);
    }
    let written = toml::to_string(&config).expect("a configuration serializes to TOML");
    let again = Config::from_toml(&written)
        .unwrap_or_else(|e| panic!("written configuration does not parse: {e}\n{written}"));
    assert_eq!(again, config, "{written}");
}

/// A `PATCH /admin/settings` body: parsed and checked as the admin endpoint does before it
/// changes anything.
pub fn admin_settings(data: &[u8]) {
    if let Ok(patch) = serde_json::from_slice::<SettingsPatch>(data)
        && let Ok(rules) = patch.check()
    {
        if let Some(keys) = &patch.access_keys {
            assert!(!keys.is_empty());
        }
        if let Some(rules) = rules {
            assert_eq!(rules.rules(), patch.upstream.as_deref().unwrap_or_default());
        }
    }
}
