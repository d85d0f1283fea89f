//! The repository stands alone: no file cites documents that are not in it. Protocol facts are
//! cited from `docs/protocol.md` or from public sources, performance facts from
//! `docs/performance.md`; the team's private notes (the protocol and design notes kept outside
//! the repository) and their section numbers must not come back.
//!
//! Scans the repository's text files (skipping hidden directories, `target*`, `node_modules` and
//! the fuzzers' corpora) and fails with the `file:line` of every such citation. The patterns are
//! assembled at run time, so this file does not match them itself.

use std::path::{Path, PathBuf};

/// Extensions of the files scanned: sources, scripts, docs and configuration.
const TEXT_EXTENSIONS: &[&str] = &[
    "rs", "sh", "mjs", "js", "ts", "md", "toml", "json", "html", "css", "conf", "py", "yml",
    "yaml", "txt",
];

/// Directories never scanned: build output, installed packages, fuzzer inputs.
fn skipped_dir(relative: &Path) -> bool {
    let name = relative
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    name.starts_with('.')
        || name.starts_with("target")
        || name == "node_modules"
        || relative.starts_with("fuzz/corpus")
        || relative.starts_with("fuzz/artifacts")
}

fn text_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a readable directory entry").path();
        let relative = path.strip_prefix(root).expect("under the root");
        if path.is_dir() {
            if !skipped_dir(relative) {
                text_files(root, &path, out);
            }
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| TEXT_EXTENSIONS.contains(&e))
        {
            out.push(path);
        }
    }
}

/// Whether `name` occurs in `line` where it is not the last segment of a longer path or word:
/// `docs/x.md` and `./x.md` are files of the repository, a bare `x.md` is not.
fn bare(line: &str, name: &str) -> bool {
    line.match_indices(name).any(|(at, _)| {
        line[..at]
            .chars()
            .next_back()
            .is_none_or(|c| c != '/' && c != '-' && c != '_' && !c.is_alphanumeric())
    })
}

/// Why `line` cites a document outside the repository, if it does.
fn private_citation(line: &str) -> Option<&'static str> {
    let section = '\u{a7}';
    let notes = ["client-protocol", "service-protocol"];
    let designs = ["performance", "cluster", "style"];
    if line.contains(&["/work/", "shared"].concat()) {
        return Some("a path outside the repository");
    }
    for note in notes {
        if line.contains(&["spec", "/", note, ".md"].concat())
            || bare(line, &[note, ".md"].concat())
            || line.contains(&format!("{note} {section}"))
        {
            return Some("the private protocol notes: cite docs/protocol.md or a public source");
        }
    }
    for design in designs {
        if bare(line, &[design, ".md"].concat()) {
            return Some(
                "the private design notes: cite docs/performance.md or another docs/ file",
            );
        }
    }
    let numbered = line.match_indices(section).any(|(at, s)| {
        line[at + s.len()..]
            .trim_start()
            .starts_with(|c: char| c.is_ascii_digit())
    });
    if numbered && !line.contains("RFC") {
        return Some("a section number of a private document: cite a section by its title");
    }
    None
}

#[test]
fn no_file_cites_documents_outside_the_repository() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    text_files(&root, &root, &mut files);
    files.sort();
    assert!(
        files.len() > 100,
        "found only {} text files under {}",
        files.len(),
        root.display()
    );
    let mut found = Vec::new();
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            if let Some(why) = private_citation(line) {
                let relative = file.strip_prefix(&root).expect("under the root");
                found.push(format!(
                    "{}:{}: {why}\n    {}",
                    relative.display(),
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "{} citation(s) of documents that are not in the repository:\n{}",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn the_rules_flag_private_citations_only() {
    let s = '\u{a7}';
    let flagged = [
        format!("(`spec{}{}.md` {s}5.3)", '/', "client-protocol"),
        format!("see spec{}{}.md", '/', "service-protocol"),
        format!("({}.md {s}4.4)", "client-protocol"),
        format!("(Serverless mode, {} {s}5)", "service-protocol"),
        format!("(`{}.md` {s}5 of the design notes)", "performance"),
        format!("target ({}.md)", "performance"),
        format!("`/work/{}/design/{}.md`", "shared", "performance"),
        format!("the Ping sub-protocol ({s}3.8)"),
        format!("answer any HandshakeRequest ({s} 3.14)"),
    ];
    for line in &flagged {
        assert!(private_citation(line).is_some(), "not flagged: {line}");
    }
    let passed = [
        "(`docs/protocol.md#stateful-reconnect`)".to_owned(),
        format!("[raw ceilings](docs/{}.md#raw-ceilings)", "performance"),
        format!("[peers](./{}.md#peers)", "performance"),
        "https://github.com/Azure/azure-signalr/blob/dev/specs/ServiceProtocol.md".to_owned(),
        "protocol/tests/vectors/service-protocol.json".to_owned(),
        format!("a close frame (RFC 6455 {s}5.5.1, {s}7.4)"),
        format!("the sign {s} alone"),
    ];
    for line in &passed {
        assert_eq!(private_citation(line), None, "flagged: {line}");
    }
}
