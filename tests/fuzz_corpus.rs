//! Replays the fuzz corpora (`fuzz/corpus/<target>/`) through the fuzz targets' entry
//! functions on the stable toolchain, so that every input the fuzzer kept, and every crash it
//! found (their inputs are in the corpora), stays covered by `cargo test`. One test per target;
//! each fails when its corpus is missing or empty (it would test nothing) and names every input
//! that panics. A last test keeps this list in step with the targets of `fuzz/Cargo.toml`.
//!
//! To replay one input by hand: `cargo test --test fuzz_corpus <target>` after copying it into
//! the target's corpus, or `cargo +nightly fuzz run <target> <file>` (FUZZING.md).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use switchboard::fuzzing as broker;
use switchboard::protocol::fuzzing as protocol;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The inputs of `target`'s corpus, sorted; panics when there are none.
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join("corpus").join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {} is missing: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("a readable corpus directory").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "corpus {} is empty: the replay would test nothing",
        dir.display()
    );
    files
}

/// Runs every input of `target`'s corpus through `run`, failing with the list of inputs that
/// panicked.
fn replay(target: &str, run: fn(&[u8])) {
    let files = corpus(target);
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).expect("a readable corpus file");
        if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} inputs of {target} panicked:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

/// One test per target, and [`TARGETS`]: every target's name (as in `fuzz/Cargo.toml`).
macro_rules! replay_tests {
    ($($target:ident => $entry:path),* $(,)?) => {
        const TARGETS: &[&str] = &[$(stringify!($target)),*];
        $(
            #[test]
            fn $target() {
                replay(stringify!($target), $entry);
            }
        )*
    };
}

replay_tests!(
    hub_json => protocol::hub_json,
    hub_messagepack => protocol::hub_messagepack,
    handshake => protocol::handshake,
    framing => protocol::framing,
    service_protocol => protocol::service_protocol,
    jwt => protocol::jwt,
    negotiate => broker::negotiate,
    rest_route => broker::rest_route,
    rest_body => broker::rest_body,
    upstream_rules => broker::upstream_rules,
    config => broker::config,
    admin_settings => broker::admin_settings,
);

#[test]
fn every_fuzz_target_is_replayed() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let manifest: toml::Table = manifest.parse().expect("fuzz/Cargo.toml is TOML");
    let mut declared: Vec<&str> = manifest["bin"]
        .as_array()
        .expect("[[bin]] targets")
        .iter()
        .map(|bin| bin["name"].as_str().expect("a target name"))
        .collect();
    declared.sort_unstable();
    let mut replayed = TARGETS.to_vec();
    replayed.sort_unstable();
    assert_eq!(declared, replayed);
}
