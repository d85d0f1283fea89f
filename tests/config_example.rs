//! `switchboard.example.toml` documents every configuration key with its default value.

use std::collections::BTreeSet;

use switchboard::Config;

const EXAMPLE: &str = include_str!("../switchboard.example.toml");

fn keys(value: &toml::Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let toml::Value::Table(t) = value {
        for (k, v) in t {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if v.is_table() {
                keys(v, &path, out);
            } else {
                out.insert(path);
            }
        }
    }
}

#[test]
fn example_parses_to_the_defaults() {
    let parsed = Config::from_toml(EXAMPLE).expect("the example config parses");
    assert_eq!(parsed, Config::default());
    parsed.validate().expect("the example config is valid");
}

#[test]
fn example_lists_every_key() {
    let mut documented = BTreeSet::new();
    keys(&toml::from_str(EXAMPLE).unwrap(), "", &mut documented);
    let mut actual = BTreeSet::new();
    keys(
        &toml::Value::try_from(Config::default()).unwrap(),
        "",
        &mut actual,
    );
    assert_eq!(
        documented, actual,
        "switchboard.example.toml and the Config structs differ"
    );
}

#[test]
fn every_key_has_a_comment() {
    // A key must sit in a block of keys that a comment introduces.
    let is_key = |l: &str| !l.is_empty() && !l.starts_with('#') && !l.starts_with('[');
    let lines: Vec<&str> = EXAMPLE.lines().map(str::trim).collect();
    for (i, l) in lines.iter().enumerate() {
        if !is_key(l) {
            continue;
        }
        let above = lines[..i].iter().rev().find(|p| !is_key(p));
        assert!(
            above.is_some_and(|p| p.starts_with('#')),
            "key without a comment above it: {l}"
        );
    }
}
