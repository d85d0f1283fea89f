#![no_main]
//! See `switchboard::fuzzing::admin_settings`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard::fuzzing::admin_settings(data));
