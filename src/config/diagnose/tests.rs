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
        format!("{path}: line 3, column 8: string values must be quoted: mode = \"serverless\"")
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
