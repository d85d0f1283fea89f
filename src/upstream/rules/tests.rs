//! Table tests of the upstream rules: escaping, template expansion, pattern matching, rule
//! validation, the TOML shape and the emulator's `settings.json`.

use super::*;

fn rule(url: &str, hub: &str, category: &str, event: &str) -> UpstreamRule {
    UpstreamRule {
        url_template: url.to_owned(),
        hub_pattern: hub.to_owned(),
        category_pattern: category.to_owned(),
        event_pattern: event.to_owned(),
    }
}

#[test]
fn escaping_follows_escape_data_string() {
    let table = [
        ("chat", "chat"),
        ("AZaz09-_.~", "AZaz09-_.~"),
        ("a b", "a%20b"),
        ("a/b?c#d&e=f+g", "a%2Fb%3Fc%23d%26e%3Df%2Bg"),
        ("{x}", "%7Bx%7D"),
        ("!*'()", "%21%2A%27%28%29"),
        ("%", "%25"),
        ("é", "%C3%A9"),
        ("日本", "%E6%97%A5%E6%9C%AC"),
        ("😀", "%F0%9F%98%80"),
        ("", ""),
    ];
    for (input, want) in table {
        assert_eq!(escape_data_string(input), want, "{input:?}");
    }
}

#[test]
fn template_expansion() {
    let table = [
        (
            "http://h/{hub}/{category}/{event}",
            "http://h/chat/messages/send%20it",
        ),
        (
            "http://h/api?h={hub}&e={event}",
            "http://h/api?h=chat&e=send%20it",
        ),
        ("http://h/{hub}{hub}", "http://h/chatchat"),
        ("http://h/{Hub}/{other}/{", "http://h/{Hub}/{other}/{"),
        ("http://h/{{hub}}", "http://h/{chat}"),
        ("http://h/", "http://h/"),
    ];
    for (template, want) in table {
        assert_eq!(
            expand(template, "chat", "messages", "send it").as_deref(),
            Ok(want),
            "{template}"
        );
    }
}

#[test]
fn pattern_matching_table() {
    // (hub pattern, category pattern, event pattern, hub, category, event, matches)
    let c = Category::Connections;
    let m = Category::Messages;
    let table = [
        ("*", "*", "*", "chat", m, "send", true),
        ("chat", "*", "*", "chat", m, "send", true),
        // Hub names are case-insensitive (canonical_hub_name); categories and events are not.
        ("chat", "*", "*", "Chat", m, "send", true),
        ("Chat", "*", "*", "chat", m, "send", true),
        ("chat", "*", "*", "chat2", m, "send", false),
        ("news, chat ,x", "*", "*", "chat", m, "send", true),
        ("news,chat", "*", "*", "x", m, "send", false),
        ("a,*", "*", "*", "anything", m, "send", true),
        ("*", "connections", "*", "chat", c, "connected", true),
        ("*", "connections", "*", "chat", m, "send", false),
        ("*", "messages", "*", "chat", m, "send", true),
        (
            "*",
            " connections , messages ",
            "*",
            "chat",
            c,
            "disconnected",
            true,
        ),
        ("*", "*", "connected", "chat", c, "connected", true),
        ("*", "*", "connected", "chat", c, "disconnected", false),
        ("*", "*", "Send", "chat", m, "send", false),
        ("*", "*", "send, broadcast", "chat", m, "broadcast", true),
        ("*", "*", "*", "", m, "", true),
        ("chat", "*", "*", "", m, "send", false),
    ];
    for (hp, cp, ep, hub, category, event, want) in table {
        let rules = UpstreamRules::new(&[rule("http://u/", hp, cp, ep)]).unwrap();
        assert_eq!(
            rules.resolve(hub, category, event).is_some(),
            want,
            "{hp:?} {cp:?} {ep:?} vs {hub:?} {category:?} {event:?}"
        );
    }
}

#[test]
fn first_matching_rule_wins() {
    let rules = UpstreamRules::new(&[
        rule("http://a/{event}", "chat", "messages", "send"),
        rule("http://b/{hub}/{event}", "chat,news", "*", "*"),
        rule("http://c/{category}", "*", "*", "*"),
    ])
    .unwrap();
    let m = Category::Messages;
    let c = Category::Connections;
    assert_eq!(
        url(rules.resolve("chat", m, "send")).as_deref(),
        Some("http://a/send")
    );
    assert_eq!(
        url(rules.resolve("chat", m, "other")).as_deref(),
        Some("http://b/chat/other")
    );
    assert_eq!(
        url(rules.resolve("news", c, "connected")).as_deref(),
        Some("http://b/news/connected")
    );
    assert_eq!(
        url(rules.resolve("x y", c, "connected")).as_deref(),
        Some("http://c/connections")
    );
    assert!(!rules.is_empty());
    assert!(rules.has_rules_for_hub("anything"));

    let narrow = UpstreamRules::new(&[rule("http://a/", "chat", "*", "*")]).unwrap();
    assert!(narrow.has_rules_for_hub("chat"));
    assert!(narrow.has_rules_for_hub("CHAT"));
    assert!(!narrow.has_rules_for_hub("chats"));
    assert_eq!(narrow.resolve("news", m, "send"), None);

    let empty = UpstreamRules::new(&[]).unwrap();
    assert!(empty.is_empty());
    assert!(!empty.has_rules_for_hub("chat"));
    assert_eq!(empty.resolve("chat", m, "send"), None);
    assert!(UpstreamRules::default().is_empty());
}

/// The resolved URL of a rule that matched and could carry the values.
fn url(resolved: Option<Result<String, DotSegment>>) -> Option<String> {
    resolved.map(|r| r.expect("the values fit the URL"))
}

#[test]
fn resolved_urls_escape_every_value() {
    let rules = UpstreamRules::new(&[UpstreamRule::from_template(
        "https://fn.example/{hub}/{category}/{event}?code=k",
    )])
    .unwrap();
    assert_eq!(
        url(rules.resolve("a/b", Category::Messages, "x?y#z é")).as_deref(),
        Some("https://fn.example/a%2Fb/messages/x%3Fy%23z%20%C3%A9?code=k")
    );
}

/// Every substituted value stays exactly one path segment: `/`, `?`, `#` and `%` are escaped,
/// and a value that would be a `.` or `..` segment (which no escape keeps, see [`DotSegment`])
/// is refused; dots anywhere else are ordinary characters.
#[test]
fn a_value_stays_one_path_segment_or_is_refused() {
    let t = "https://fn.example/api/{hub}/{event}/x?code=k";
    let ok = |event: &str| expand(t, "chat", "messages", event);
    for (event, path) in [
        ("a/../b", "a%2F..%2Fb"),
        ("..%2F", "..%252F"),
        ("%2e%2e", "%252e%252e"),
        ("?x=1#f", "%3Fx%3D1%23f"),
        ("...", "..."),
        (".a", ".a"),
        ("", ""),
    ] {
        assert_eq!(
            ok(event),
            Ok(format!("https://fn.example/api/chat/{path}/x?code=k")),
            "{event:?}"
        );
        // The URL the HTTP client sends is the same: nothing was a dot segment.
        let sent = reqwest::Url::parse(&ok(event).unwrap()).unwrap();
        assert_eq!(sent.path(), format!("/api/chat/{path}/x"), "{event:?}");
    }
    for event in [".", ".."] {
        assert_eq!(ok(event), Err(DotSegment), "{event:?}");
    }
    // Why escaping cannot help: the HTTP client reads %2E%2E as `..` and moves the path.
    let moved = reqwest::Url::parse("https://fn.example/api/chat/%2E%2E/x").unwrap();
    assert_eq!(moved.path(), "/api/x");
    // A segment made of two values, at the end of the path, before a fragment.
    assert_eq!(
        expand("http://h/{event}{event}", "chat", "messages", "."),
        Err(DotSegment)
    );
    assert_eq!(
        expand("http://h/p/{event}#f", "chat", "messages", ".."),
        Err(DotSegment)
    );
    // Dots in the query, in the authority or inside a longer segment are harmless.
    for template in [
        "http://h/p?e={event}",
        "http://h/p#{event}",
        "http://{event}h.example/p",
        "http://h/p/x{event}",
    ] {
        assert!(
            expand(template, "chat", "messages", "..").is_ok(),
            "{template}"
        );
    }
    // resolve() says a rule matched but cannot carry the event.
    let rules = UpstreamRules::new(&[UpstreamRule::from_template(t)]).unwrap();
    assert_eq!(
        rules.resolve("chat", Category::Messages, ".."),
        Some(Err(DotSegment))
    );
}

#[test]
fn validation_errors_name_the_field() {
    let ok = UpstreamRule::from_template("http://localhost:7071/runtime/webhooks/signalr");
    assert_eq!(ok.validate(), Ok(()));
    assert_eq!(ok.hub_pattern, "*");
    assert_eq!(ok.category_pattern, "*");
    assert_eq!(ok.event_pattern, "*");
    assert!(
        UpstreamRule::from_template("http://{hub}.example/")
            .validate()
            .is_ok()
    );
    assert!(
        rule("http://h/", "*", "connections,messages", "*")
            .validate()
            .is_ok()
    );

    let table = [
        (rule("", "*", "*", "*"), "url_template"),
        (rule("  ", "*", "*", "*"), "url_template"),
        (rule("/relative/{hub}", "*", "*", "*"), "url_template"),
        (rule("ftp://h/", "*", "*", "*"), "url_template"),
        (rule("http://", "*", "*", "*"), "url_template"),
        (rule("localhost:7071/x", "*", "*", "*"), "url_template"),
        (rule("http://h/", "", "*", "*"), "hub_pattern"),
        (rule("http://h/", "*", " ", "*"), "category_pattern"),
        (rule("http://h/", "*", "*", ""), "event_pattern"),
        (rule("http://h/", "*", "message", "*"), "category_pattern"),
        (rule("http://h/", "*", "Messages", "*"), "category_pattern"),
        (rule("http://h/", "*", "messages,", "*"), "category_pattern"),
    ];
    for (r, field) in table {
        let err = r.validate().expect_err(&format!("{r:?} should be invalid"));
        assert!(err.starts_with(field), "{r:?}: {err}");
    }
    let err = UpstreamRules::new(&[ok.clone(), rule("nope", "*", "*", "*")]).unwrap_err();
    assert!(err.starts_with("upstream[1].url_template:"), "{err}");
}

#[test]
fn toml_shape() {
    #[derive(Deserialize)]
    struct File {
        upstream: Vec<UpstreamRule>,
    }
    let file: File = toml::from_str(
        r#"
        [[upstream]]
        url_template = "http://a/{event}"
        hub_pattern = "chat"
        [[upstream]]
        url_template = "http://b/"
        category_pattern = "connections"
        event_pattern = "connected, disconnected"
        "#,
    )
    .unwrap();
    assert_eq!(
        file.upstream,
        vec![
            rule("http://a/{event}", "chat", "*", "*"),
            rule("http://b/", "*", "connections", "connected, disconnected"),
        ]
    );
    let unknown =
        toml::from_str::<File>("[[upstream]]\nurl_template = \"http://a/\"\nhub = \"x\"\n");
    assert!(unknown.is_err());
    let missing = toml::from_str::<File>("[[upstream]]\nhub_pattern = \"x\"\n");
    assert!(missing.is_err());
    // The emulator's names are aliases.
    let pascal: UpstreamRule =
        serde_json::from_str(r#"{"UrlTemplate":"http://a/","HubPattern":"chat"}"#).unwrap();
    assert_eq!(pascal, rule("http://a/", "chat", "*", "*"));
    // Serialises with the snake_case names.
    let back = toml::to_string(&pascal).unwrap();
    assert!(back.contains("url_template = \"http://a/\""), "{back}");
}

#[test]
fn emulator_settings() {
    // What `asrs-emulator upstream init` writes.
    let init = r#"{
      "UpstreamSettings": {
        "Templates": [
          {
            "UrlTemplate": "http://localhost:7071/runtime/webhooks/signalr",
            "EventPattern": "*",
            "HubPattern": "*",
            "CategoryPattern": "*"
          }
        ]
      }
    }"#;
    assert_eq!(
        parse_emulator_settings(init).unwrap(),
        vec![UpstreamRule::from_template(
            "http://localhost:7071/runtime/webhooks/signalr"
        )]
    );

    let several = r#"{"upstreamSettings":{"templates":[
        {"urlTemplate":"http://a/{event}","hubPattern":"chat","Auth":{"Type":"None"}},
        {"URLTEMPLATE":"http://b/","categoryPattern":"connections","eventpattern":"connected","auth":null}
      ]},"Logging":{"LogLevel":{"Default":"Warning"}}}"#;
    assert_eq!(
        parse_emulator_settings(several).unwrap(),
        vec![
            rule("http://a/{event}", "chat", "*", "*"),
            rule("http://b/", "*", "connections", "connected"),
        ]
    );

    for empty in [
        "{}",
        r#"{"UpstreamSettings":{}}"#,
        r#"{"UpstreamSettings":null}"#,
        r#"{"UpstreamSettings":{"Templates":[]}}"#,
        r#"{"UpstreamSettings":{"Templates":null}}"#,
    ] {
        assert_eq!(parse_emulator_settings(empty).unwrap(), vec![], "{empty}");
    }
}

#[test]
fn emulator_settings_errors() {
    let table = [
        ("", "invalid JSON"),
        ("{\"UpstreamSettings\":{\"Templates\":[],}}", "invalid JSON"),
        ("// comment\n{}", "invalid JSON"),
        ("[]", "must be a JSON object"),
        (
            r#"{"UpstreamSettings":[]}"#,
            "UpstreamSettings must be an object",
        ),
        (
            r#"{"UpstreamSettings":{},"upstreamsettings":{}}"#,
            "duplicate key",
        ),
        (
            r#"{"UpstreamSettings":{"Templates":{}}}"#,
            "Templates must be an array",
        ),
        (
            r#"{"UpstreamSettings":{"Templates":[1]}}"#,
            "Templates[0] must be an object",
        ),
        (
            r#"{"UpstreamSettings":{"Templates":[{"HubPattern":"*"}]}}"#,
            "Templates[0]: missing UrlTemplate",
        ),
        (
            r#"{"UpstreamSettings":{"Templates":[{"UrlTemplate":"http://a/"},{"UrlTemplate":"http://a/","Hub":"x"}]}}"#,
            "Templates[1].Hub: unknown key",
        ),
        (
            r#"{"UpstreamSettings":{"Templates":[{"UrlTemplate":"http://a/","HubPattern":null}]}}"#,
            "Templates[0].HubPattern: null pattern",
        ),
        (
            r#"{"UpstreamSettings":{"Templates":[{"UrlTemplate":"http://a/","EventPattern":3}]}}"#,
            "Templates[0].EventPattern must be a string",
        ),
        (
            r#"{"UpstreamSettings":{"Templates":[{"UrlTemplate":null}]}}"#,
            "Templates[0].UrlTemplate must be a string",
        ),
        (
            r#"{"UpstreamSettings":{"Templates":[{"UrlTemplate":"http://a/","urltemplate":"http://b/"}]}}"#,
            "duplicate key",
        ),
        (
            r#"{"UpstreamSettings":{"Templates":[{"UrlTemplate":"http://a/","Auth":{"Type":"ManagedIdentity","ManagedIdentity":{"Resource":"x"}}}]}}"#,
            "Templates[0].Auth.Type: upstream auth 'ManagedIdentity' is not supported",
        ),
        (
            r#"{"UpstreamSettings":{"Templates":[{"UrlTemplate":"http://a/","Auth":"None"}]}}"#,
            "Templates[0].Auth must be an object",
        ),
    ];
    for (text, want) in table {
        let err = parse_emulator_settings(text).expect_err(text);
        assert!(err.contains(want), "{text}: {err}");
    }
}

#[test]
fn emulator_settings_from_a_file() {
    let dir = std::env::temp_dir().join(format!("switchboard-upstream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("settings.json");
    std::fs::write(
        &path,
        r#"{"UpstreamSettings":{"Templates":[{"UrlTemplate":"http://a/{hub}"}]}}"#,
    )
    .unwrap();
    assert_eq!(
        load_emulator_settings(&path).unwrap(),
        vec![UpstreamRule::from_template("http://a/{hub}")]
    );
    std::fs::write(&path, "{").unwrap();
    let err = load_emulator_settings(&path).unwrap_err();
    assert!(err.starts_with(&path.display().to_string()), "{err}");
    std::fs::remove_file(&path).unwrap();
    let err = load_emulator_settings(&path).unwrap_err();
    assert!(err.starts_with(&path.display().to_string()), "{err}");
    let _ = std::fs::remove_dir(&dir); // best effort; a leftover empty temp dir is harmless
}

#[test]
fn shown_rules_hide_query_values() {
    assert_eq!(
        redact_query("https://f.example/api/{hub}?code=S3CR3T&x=1&flag"),
        "https://f.example/api/{hub}?code=***&x=***&***"
    );
    assert_eq!(
        redact_query("http://u.example/{event}"),
        "http://u.example/{event}"
    );
    assert_eq!(
        redact_query("http://u.example/?code=k#frag"),
        "http://u.example/?code=***"
    );
    let rule = UpstreamRule::from_template("http://u.example/{hub}?code=k");
    assert_eq!(
        rule.redacted().url_template,
        "http://u.example/{hub}?code=***"
    );
    assert_eq!(rule.redacted().hub_pattern, rule.hub_pattern);
}
