#![no_main]
//! See `switchboard::fuzzing::config`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard::fuzzing::config(data));
