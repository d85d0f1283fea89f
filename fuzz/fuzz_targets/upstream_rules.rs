#![no_main]
//! See `switchboard::fuzzing::upstream_rules`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard::fuzzing::upstream_rules(data));
